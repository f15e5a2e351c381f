from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from annotate.config import RunConfig
from annotate.engines.base import Completion, Request
from annotate.engines.fake import FakeBackend, lowest_values
from annotate.errors import RunStoreError
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.runs.rows import LABEL_COLUMNS
from tests.conftest import DEFAULT_VARIABLES, EXAMPLES, NOT_ESCALATED, write_jsonl


def config(library: PromptLibrary, out: Path, **kw: object) -> RunConfig:
    return RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=4, **kw)  # type: ignore[arg-type]


def test_run_labels_all_seven_variables_with_full_provenance(library: PromptLibrary, tmp_path: Path) -> None:
    fake = FakeBackend()
    summary = run(config(library, tmp_path / "run"), backend=fake)
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert list(labels.columns) == LABEL_COLUMNS
    assert set(labels["task"]) == {"agent_behaviour", "initial_state", "round_sentiment"}
    assert set(labels["variable"]) == DEFAULT_VARIABLES
    assert (labels["status"] == "ok").all()
    # 4 escalated chats x 4 post-handoff variables in one request each + 4 first rounds (2 variables)
    assert summary.counts["agent_behaviour"] == {"ok": 16}
    assert summary.counts["initial_state"] == {"ok": 8}
    assert sum(r.messages[0]["content"].startswith("You are") for r in fake.requests) == len(fake.requests)
    assert len([r for r in fake.requests if "four constructs" in r.messages[0]["content"]]) == 4
    for column in ["prompt_version", "prompt_hash", "model", "backend", "sampling", "run_id", "raw_output"]:
        assert labels[column].astype(str).str.len().gt(0).all(), column
    assert json.loads(labels["sampling"][0])["temperature"] == 0.0
    assert labels["run_id"].nunique() == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["prompts"]["agent_behaviour"]["hash"] == library.get("agent_behaviour").content_hash
    assert manifest["inputs"][0]["sha256"] and manifest["model"]["engine"] == "fake"
    assert manifest["summary"]["model_calls"] == len(fake.requests)
    csv = pd.read_csv(tmp_path / "run" / "labels.csv")
    assert len(csv) == len(labels)


def test_engine_gets_whole_batches_ordered_by_task(library: PromptLibrary, tmp_path: Path) -> None:
    fake = FakeBackend()
    run(config(library, tmp_path / "run", batch_size=1000), backend=fake)
    assert len(fake.calls) == 1
    system_prompts = [r.messages[0]["content"] for r in fake.requests]
    changes = sum(a != b for a, b in itertools.pairwise(system_prompts))
    assert changes == len(library.default_tasks()) - 1


def test_second_identical_run_makes_no_model_calls(library: PromptLibrary, tmp_path: Path) -> None:
    first = run(config(library, tmp_path / "a"), backend=FakeBackend())
    fake = FakeBackend()
    second = run(config(library, tmp_path / "b"), backend=fake)
    assert fake.requests == [] and second.model_calls == 0
    assert second.cache_hits == first.model_calls
    a = pd.read_parquet(tmp_path / "a" / "labels.parquet")
    b = pd.read_parquet(tmp_path / "b" / "labels.parquet")
    assert a["value"].tolist() == b["value"].tolist()
    assert b["cached"].all()


def test_changing_one_prompt_reannotates_only_that_task(library: PromptLibrary, tmp_path: Path) -> None:
    run(config(library, tmp_path / "a"), backend=FakeBackend())
    folder = library.prompts_dir / "agent_behaviour"
    newest = library.versions("agent_behaviour", "en")[-1]
    following = f"v{int(newest[1:]) + 1}"
    (folder / f"{following}.yaml").write_text(
        (folder / f"{newest}.yaml").read_text().replace("parent: null", f"parent: {newest}")
    )
    (folder / f"{following}.j2").write_text((folder / f"{newest}.j2").read_text().replace("careful", "meticulous"))
    fake = FakeBackend()
    run(config(library, tmp_path / "b"), backend=fake)
    assert {r.messages[0]["content"].split()[3] for r in fake.requests} == {"meticulous"}
    assert len(fake.requests) == 4


def test_repeats_get_their_own_cache_keys(library: PromptLibrary, tmp_path: Path) -> None:
    fake = FakeBackend()
    run(config(library, tmp_path / "run", repeats=3, tasks=["empathy"]), backend=fake)
    assert len(fake.requests) == 12 and len({r.key for r in fake.requests}) == 12
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert sorted(labels["repeat"].unique().tolist()) == [0, 1, 2]


def test_length_retry_raises_the_token_budget(library: PromptLibrary, tmp_path: Path) -> None:
    def script(request: Request) -> Completion:
        if request.max_tokens < 24:
            return Completion('{"empathy', "length", completion_tokens=request.max_tokens)
        return Completion('{"empathy":2}', "stop")

    fake = FakeBackend(script=script)
    run(config(library, tmp_path / "run", tasks=["empathy"]), backend=fake)
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["value"].tolist() == [2, 2, 2, 2]
    assert labels["attempts"].tolist() == [2, 2, 2, 2]
    assert [r.max_tokens for r in fake.requests] == [12] * 4 + [24] * 4
    assert len(fake.calls) == 2


def test_invalid_answer_is_reasked_quoting_the_error(library: PromptLibrary, tmp_path: Path) -> None:
    def script(request: Request) -> str:
        return '{"empathy": 1}' if "could not be used" in request.messages[-1]["content"] else '{"empathy": 9}'

    fake = FakeBackend(script=script)
    run(config(library, tmp_path / "run", tasks=["empathy"]), backend=fake)
    reask = fake.calls[1][0].messages
    assert reask[-2] == {"role": "assistant", "content": '{"empathy": 9}'}
    assert "could not be used: empathy: Input should be 1, 2 or 3" in reask[-1]["content"]
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["status"].tolist() == ["ok"] * 4


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Completion("not json at all", "stop"), "parse_error"),
        (Completion('{"empathy": 7}', "stop"), "schema_error"),
        (Completion('{"empathy": ' + " " * 40, "length"), "length"),
        (Completion("", "error", error="engine exploded"), "backend_error"),
    ],
)
def test_failures_become_typed_rows_with_the_raw_text(
    library: PromptLibrary, tmp_path: Path, answer: Completion, status: str
) -> None:
    fake = FakeBackend(script=lambda r: answer)
    summary = run(config(library, tmp_path / "run", tasks=["empathy"], max_attempts=2), backend=fake)
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert labels["status"].tolist() == [status] * 4
    assert labels["value"].isna().all()
    assert (labels["raw_output"] == answer.text).all()
    assert labels["error"].str.len().gt(0).all()
    assert summary.counts["empathy"] == {status: 4}
    assert len(fake.calls) == (1 if status == "backend_error" else 2)


def test_resume_skips_finished_units_and_retries_backend_errors(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    flaky = FakeBackend(
        script=lambda r: (
            Completion("", "error", error="down")
            if "c02" in str(r.messages[-1]) or "Tracking" in r.messages[-1]["content"]
            else lowest_values(r)
        )
    )
    run(config(library, out, tasks=["initial_state"]), backend=flaky)
    first = pd.read_parquet(out / "labels.parquet")
    assert "backend_error" in set(first["status"])
    healthy = FakeBackend()
    run(config(library, out, tasks=["initial_state"]), backend=healthy)
    final = pd.read_parquet(out / "labels.parquet")
    assert (final["status"] == "ok").all() and len(final) == 8
    assert len(healthy.requests) == first["status"].eq("backend_error").sum() // 2


def test_resume_repairs_a_torn_journal_line(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(config(library, out, tasks=["empathy"]), backend=FakeBackend())
    journal = out / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:2]) + lines[2][:25])  # killed mid-write
    fake = FakeBackend()
    run(config(library, out, tasks=["empathy"]), backend=fake)
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) == 4 and labels["chat_id"].is_unique
    # the torn unit and the one never written are redone, from the cache since their answers were stored
    assert fake.requests == [] and labels["cached"].tolist() == [False, False, True, True]
    assert all(json.loads(line) for line in journal.read_text().splitlines())


def test_resume_with_another_configuration_is_refused(library: PromptLibrary, tmp_path: Path) -> None:
    from annotate.config import Sampling

    run(config(library, tmp_path / "run", tasks=["empathy"]), backend=FakeBackend())
    with pytest.raises(RunStoreError, match="sampling differ"):
        run(
            config(library, tmp_path / "run", tasks=["empathy"], sampling=Sampling(temperature=0.7)),
            backend=FakeBackend(),
        )


def test_bad_input_records_become_skipped_rows(library: PromptLibrary, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", ['{"chat_id": "broken"', NOT_ESCALATED])
    cfg = RunConfig(inputs=[path], out=tmp_path / "run", prompts=library.paths, backend="fake", tasks=["empathy"])
    summary = run(cfg, backend=FakeBackend())
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    skipped = labels[labels["status"] == "skipped"]
    assert len(skipped) == 1 and "in.jsonl:1: not valid JSON" in skipped["error"].iloc[0]
    assert summary.chats_without_handoff == 1 and summary.skipped_records == 1
