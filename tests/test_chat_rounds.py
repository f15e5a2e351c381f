"""round_sentiment v2: one request per chat that returns every round's label (unit kind chat_rounds)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from annotate.config import RunConfig
from annotate.engines.base import Request
from annotate.engines.fake import FakeBackend
from annotate.errors import PromptError
from annotate.ingest.readers import read_transcripts
from annotate.ingest.segmentation import split_rounds
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.prompts.rubrics import ParseFailure, load_rubric, parse_rounds_output
from annotate.prompts.units import units_for
from tests.conftest import ESCALATED, EXAMPLES, write_jsonl


def per_version(library: PromptLibrary, out: Path, version: str, **kw: object) -> RunConfig:
    kw.setdefault("limit", 6)
    return RunConfig(
        inputs=[EXAMPLES],
        out=out,
        prompts=library.paths,
        backend="fake",
        tasks=["round_sentiment"],
        prompt_versions={"round_sentiment": version},
        **kw,  # type: ignore[arg-type]
    )


def test_one_request_per_chat_gives_the_same_label_rows_as_one_per_round(
    library: PromptLibrary, tmp_path: Path
) -> None:
    per_round, per_chat = FakeBackend(), FakeBackend()
    run(per_version(library, tmp_path / "v1", "v1"), backend=per_round)
    run(per_version(library, tmp_path / "v2", "v2"), backend=per_chat)
    a = pd.read_parquet(tmp_path / "v1" / "labels.parquet")
    b = pd.read_parquet(tmp_path / "v2" / "labels.parquet")
    key = ["chat_id", "round", "variable"]
    assert sorted(map(tuple, a[key].astype(str).values)) == sorted(map(tuple, b[key].astype(str).values))
    assert len(per_chat.requests) == 6 and len(per_round.requests) == len(a)
    assert (b["status"] == "ok").all() and b["round"].notna().all()
    for row in b.itertuples():  # every round's row keeps the chat's whole answer
        assert f"round_{row.round}" in json.loads(row.raw_output)


def test_the_schema_asks_for_exactly_the_chats_rounds(library: PromptLibrary, tmp_path: Path) -> None:
    fake = FakeBackend()
    run(per_version(library, tmp_path / "run", "v2", limit=3), backend=fake)
    chats = read_transcripts([EXAMPLES]).chats[:3]
    for chat, request in zip(chats, fake.requests, strict=True):
        rounds = [f"round_{r.number}" for r in split_rounds(chat)]
        assert request.schema["required"] == rounds
        assert list(request.schema["properties"]) == rounds and request.schema["additionalProperties"] is False
        assert request.max_tokens == 8 * len(rounds) + 4
        assert "Round 1:" in request.messages[-1]["content"]


def test_a_wrong_number_of_rounds_is_reasked_then_becomes_a_failure_row_per_round(
    library: PromptLibrary, tmp_path: Path
) -> None:
    def one_round_only(request: Request) -> str:
        return '{"round_1": 2}'

    fake = FakeBackend(script=one_round_only)
    summary = run(per_version(library, tmp_path / "run", "v2", limit=1), backend=fake)
    assert len(fake.requests) == 2  # the third attempt repeats the second re-ask: answered from the cache
    assert "round_2" in fake.requests[1].messages[-1]["content"]  # the re-ask names the missing key
    labels = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert (labels["status"] == "schema_error").all() and labels["value"].isna().all()
    assert (labels["attempts"] == 3).all()
    assert len(labels) == summary.counts["round_sentiment"]["schema_error"] > 1


def test_resume_skips_chats_whose_rounds_are_all_done(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(per_version(library, out, "v2", limit=2), backend=FakeBackend())
    fake = FakeBackend()
    summary = run(per_version(library, out, "v2", limit=4, use_cache=False), backend=fake)
    assert len(fake.requests) == 2 and summary.model_calls == 2


def test_whole_chat_truncation_clips_the_shops_turns_before_the_customers(tmp_path: Path) -> None:
    chat = {
        "chat_id": "long",
        "messages": [
            {"role": "customer" if i % 2 == 0 else "ai", "text": f"turn {i} " + ("c" if i % 2 == 0 else "a") * 400}
            for i in range(10)
        ],
    }
    (parsed,) = read_transcripts([write_jsonl(tmp_path / "c.jsonl", [chat])]).chats
    (unit,) = units_for(parsed, "round_sentiment", "chat_rounds", 3000)
    shop = [t for t in unit.target if t.speaker == "ai"]
    customer = [t for t in unit.target if t.speaker == "customer"]
    assert all(len(t.text) < 300 for t in shop) and all(len(t.text) > len(shop[0].text) for t in customer)
    assert unit.truncation.startswith("clipped shop turns") and unit.rated_rounds == (1, 2, 3, 4, 5)


def test_units_group_every_turn_into_its_round(tmp_path: Path) -> None:
    (chat,) = read_transcripts([write_jsonl(tmp_path / "c.jsonl", [ESCALATED])]).chats
    (unit,) = units_for(chat, "round_sentiment", "chat_rounds", 10_000)
    rounds = unit.as_template_data()["rounds"]
    assert [r["key"] for r in rounds] == ["round_1", "round_2"]
    assert [len(r["turns"]) for r in rounds] == [4, 2]
    assert [t["text"] for r in rounds for t in r["turns"]] == [t.text for t in unit.target]


def test_parse_rounds_output_maps_keys_to_rounds(library: PromptLibrary) -> None:
    rubric = library.get("round_sentiment", "v2").rubric
    assert parse_rounds_output(rubric, '{"round_1":1,"round_3":5}', [1, 3]) == {
        1: {"negative_sentiment": 1},
        3: {"negative_sentiment": 5},
    }
    with pytest.raises(ParseFailure) as failure:
        parse_rounds_output(rubric, '{"round_1":1,"round_3":6}', [1, 3])
    assert failure.value.kind == "schema_error" and "round_3" in failure.value.message


def test_a_chat_rounds_rubric_rates_exactly_one_variable(library: PromptLibrary) -> None:
    path = library.rubrics_dir / "round_sentiment.v2.yaml"
    extra = "  other:\n    description: x\n    values: {1: {label: a, definition: b}}\n"
    path.write_text(path.read_text().replace("variables:\n", "variables:\n" + extra))
    with pytest.raises(PromptError, match="one variable per round"):
        load_rubric(path, "round_sentiment")


def test_a_few_shot_answer_with_the_wrong_rounds_is_refused(library: PromptLibrary) -> None:
    path = library.prompts_dir / "round_sentiment" / "v2.yaml"
    path.write_text(path.read_text().replace("output: {round_1: 1, round_2: 2, round_3: 1}", "output: {round_1: 1}"))
    with pytest.raises(PromptError, match=r"examples\[0\]\.output"):
        _ = library.get("round_sentiment", "v2").meta


def test_rendered_examples_show_rounds_and_compact_answers(library: PromptLibrary) -> None:
    messages = library.get("round_sentiment", "v2").static_messages
    assert messages[1]["content"].startswith("Round 1:") and "Round 3:" in messages[1]["content"]
    assert json.loads(messages[2]["content"]) == {"round_1": 1, "round_2": 2, "round_3": 1}
