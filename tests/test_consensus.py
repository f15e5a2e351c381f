"""`annotate consensus`: majority with its tie rule, Dawid-Skene, missing sources, probabilities, and the
consensus run read by validate, agree, sample (--design disputed), trajectories and estimate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.analysis.consensus import decide, mean_distribution
from annotate.analysis.dawid_skene import dawid_skene
from annotate.cli import app
from annotate.commands.consensus import consensus_command
from annotate.config import RunConfig
from annotate.engines.base import Completion, Request
from annotate.engines.fake import FakeBackend, lowest_values, values_from_content
from annotate.errors import RunStoreError
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT, library_flags

runner = CliRunner()


def highest_values(request: Request) -> str:
    props = request.schema["properties"]
    return json.dumps({name: max(spec["enum"]) for name, spec in props.items()})


def lowest_with_probabilities(request: Request) -> Completion:
    """The lowest value with 70%, the next with 30%."""
    candidates = {}
    for key, spec in request.schema["properties"].items():
        low, high = sorted(spec["enum"])[:2]
        candidates[key] = {str(low): math.log(0.7), str(high): math.log(0.3)}
    return Completion(lowest_values(request), "stop", value_logprobs=candidates)


def labelled(library: PromptLibrary, out: Path, script: object, limit: int = 6, repeats: int = 1) -> Path:
    config = RunConfig(
        inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=limit, repeats=repeats, use_cache=False
    )
    run(config, backend=FakeBackend(script=script))  # type: ignore[arg-type]
    return out


def consensus(*args: str) -> object:
    return runner.invoke(app, ["consensus", *args])


def test_majority_ties_follow_the_documented_rule() -> None:
    assert decide([1, 1, 2], None) == 1
    assert decide([1, 3], None) == 1  # nearest the median (2): both; then the lower
    assert decide([1, 2, 2, 3, 3], None) == 2  # 2 and 3 tie; the median of all votes is 2
    assert decide([2, 3, 3, 4, 4, 5], None) == 3  # median 3.5: 3 and 4 equally near, the lower wins
    # with probabilities the tied value with the larger mean probability wins, whatever the median
    assert decide([1, 3], [{1: 0.4, 3: 0.6}, {1: 0.3, 3: 0.7}]) == 3
    assert mean_distribution([{1: 0.4, 3: 0.6}, {1: 0.2, 2: 0.8}]) == pytest.approx({1: 0.3, 2: 0.4, 3: 0.3})


def test_dawid_skene_trusts_the_reliable_labeller_more_than_a_majority_does() -> None:
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.integers(1, 4, n)
    accuracy = [0.9, 0.5, 0.4, 0.4]
    labels = [np.where(rng.uniform(size=n) < a, truth, rng.integers(1, 4, n)) for a in accuracy]
    item = np.tile(np.arange(n), len(accuracy))
    worker = np.repeat(np.arange(len(accuracy)), n)
    values, posterior = dawid_skene(item, worker, np.concatenate(labels))
    majority = np.array([decide([int(lab[i]) for lab in labels], None) for i in range(n)])
    assert (values == truth).mean() > (majority == truth).mean() + 0.05
    assert np.all((posterior > 0) & (posterior <= 1))


def test_dawid_skene_with_unanimous_sources_returns_their_value() -> None:
    item, worker = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2])
    values, posterior = dawid_skene(item, worker, np.array([2, 2, 2, 1, 1, 1]))
    assert values.tolist() == [2, 1] and np.all(posterior > 0.9)


def test_consensus_of_three_runs_with_a_source_that_misses_units(library: PromptLibrary, tmp_path: Path) -> None:
    low = labelled(library, tmp_path / "low", lowest_values)
    content = labelled(library, tmp_path / "content", values_from_content)
    high = labelled(library, tmp_path / "high", highest_values, limit=4)  # misses the units of chats 5 and 6
    result = consensus(str(low), str(content), str(high), "--out", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(tmp_path / "c" / "labels.parquet")
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["sources"]] == ["low", "content", "high"]
    assert manifest["sources"][0]["model"]["engine"] == "fake" and manifest["tie_rule"]
    empathy = manifest["coverage"]["empathy"]
    assert empathy["by_some_sources"] > 0 and empathy["per_source"]["high"] < empathy["per_source"]["low"]
    assert empathy["by_every_source"] + empathy["by_some_sources"] == empathy["units"]
    assert "by some" in result.output
    every = labels[labels["sources"] == 3]
    assert every["dawid_skene"].notna().all()
    # with the two script answers differing, the units where all three agree are not disputed
    agreed = every[every["votes"].map(lambda v: len(set(json.loads(v).values())) == 1)]
    assert not agreed["disputed"].any() and (agreed["share"] == 1).all()
    disputed = labels[labels["disputed"] == True]  # noqa: E712
    assert len(disputed) and (disputed["share"] < 1).all()
    two = labels[labels["sources"] == 2]
    assert len(two) and set(two["votes"].map(lambda v: tuple(sorted(json.loads(v))))) == {("content", "low")}


def test_repeats_inside_one_run_are_sources_and_probabilities_are_averaged(
    library: PromptLibrary, tmp_path: Path
) -> None:
    probs = labelled(library, tmp_path / "probs", lowest_with_probabilities, limit=3, repeats=2)
    result = consensus(str(probs), "--out", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(tmp_path / "c" / "labels.parquet")
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["sources"][1]["name"] == "probs#1"
    first = labels.iloc[0]
    nonzero = {k: v for k, v in json.loads(first["probs"]).items() if v > 0}
    assert nonzero == pytest.approx({str(first["value"]): 0.7, str(first["value"] + 1): 0.3})
    assert first["confidence"] == pytest.approx(0.7)
    without = labelled(library, tmp_path / "plain", lowest_values, limit=3)
    mixed = consensus(str(probs), str(without), "--out", str(tmp_path / "m"))
    assert mixed.exit_code == 0, mixed.output
    assert pd.read_parquet(tmp_path / "m" / "labels.parquet")["probs"].isna().all()  # not every source has them


def test_consensus_refuses_what_it_cannot_combine(library: PromptLibrary, tmp_path: Path) -> None:
    one = labelled(library, tmp_path / "one", lowest_values, limit=2)
    alone = consensus(str(one), "--out", str(tmp_path / "c"))
    assert alone.exit_code == 1 and "two or more sources" in alone.output
    two = labelled(library, tmp_path / "two", highest_values, limit=2)
    ds = consensus(str(one), str(two), "--out", str(tmp_path / "c"), "--method", "dawid-skene")
    assert ds.exit_code == 1 and "three or more sources" in ds.output


def test_a_consensus_run_is_read_like_any_run(library: PromptLibrary, tmp_path: Path) -> None:
    low = labelled(library, tmp_path / "low", lowest_values, limit=30)
    content = labelled(library, tmp_path / "content", values_from_content, limit=30)
    high = labelled(library, tmp_path / "high", highest_values, limit=30)
    out = tmp_path / "c"
    assert consensus(str(low), str(content), str(high), "--out", str(out)).exit_code == 0
    dirs = library_flags(library)
    gold = str(ROOT / "examples" / "gold.csv")

    validated = runner.invoke(app, ["validate", str(out), "--gold", gold, "--out", str(tmp_path / "v"), *dirs])
    assert validated.exit_code == 0, validated.output
    result = json.loads((tmp_path / "v" / "agreement.json").read_text())
    empathy = next(v for v in result["variables"] if v["variable"] == "empathy")
    assert set(empathy["by_dispute"]) <= {"disputed", "undisputed"} and empathy["by_dispute"]
    assert "disputed" in validated.output

    agreed = runner.invoke(app, ["agree", str(low), str(high), str(out), "--out", str(tmp_path / "a"), *dirs])
    assert agreed.exit_code == 0, agreed.output
    coders = json.loads((tmp_path / "a" / "agreement.json").read_text())["coders"]
    assert len(coders) == 3 and "low vs c" in agreed.output

    coding = tmp_path / "coding.csv"
    sampled = runner.invoke(
        app, ["sample", str(out), "--design", "disputed", "--per-variable", "25", "--out", str(coding), *dirs]
    )
    assert sampled.exit_code == 0, sampled.output
    drawn = pd.read_csv(coding)
    labels = pd.read_parquet(out / "labels.parquet")
    for variable, rows in drawn.groupby("variable"):
        mine = labels[(labels["variable"] == variable) & (labels["status"] == "ok")]
        n_disputed = int(mine["disputed"].sum())
        fill = rows[~rows["disputed"]]
        # disputed units first, but a third of the sample stays for the rest, so every unit can be drawn
        assert len(fill) >= min(math.ceil(len(rows) / 3), len(mine) - n_disputed)
        assert rows["disputed"].sum() == min(n_disputed, len(rows) - len(fill))
        taken = rows[rows["disputed"]]["inclusion_probability"]
        assert taken.round(6).eq(round(len(taken) / n_disputed, 6)).all()
        if len(fill):
            expected = len(fill) / (len(mine) - n_disputed)
            assert fill["inclusion_probability"].round(6).eq(round(expected, 6)).all()
        assert (1 / rows["inclusion_probability"]).sum() == pytest.approx(len(mine))

    png = tmp_path / "t.png"
    plotted = runner.invoke(app, ["trajectories", str(out), "--group-by", "escalation", "--out", str(png)])
    assert plotted.exit_code == 0, plotted.output

    estimated = runner.invoke(
        app,
        [
            "estimate",
            str(out),
            "--gold",
            gold,
            "--formula",
            "empathy ~ C(escalation)",
            "--out",
            str(tmp_path / "e"),
            *dirs,
        ],
    )
    assert estimated.exit_code == 0, estimated.output


def test_the_disputed_design_needs_a_consensus_run(library: PromptLibrary, tmp_path: Path) -> None:
    low = labelled(library, tmp_path / "low", lowest_values, limit=4)
    result = runner.invoke(app, ["sample", str(low), "--design", "disputed", "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "needs a consensus run" in result.output


def test_a_consensus_cannot_overwrite_one_of_its_sources(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 18: consensus --out onto one of its own (consensus) sources overwrote it."""
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        run(RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=3), FakeBackend())
    combined = tmp_path / "c"
    consensus_command([first, second], combined)
    before = (combined / "manifest.json").read_bytes()
    with pytest.raises(RunStoreError, match="is one of the consensus's own sources"):
        consensus_command([combined, first], combined)
    assert (combined / "manifest.json").read_bytes() == before


def test_a_consensus_written_over_an_older_one_is_all_new_or_all_old(
    library: PromptLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: a full disk while rewriting a consensus kept the old manifest beside new labels."""
    import errno

    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        run(RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=3), FakeBackend())
    combined = tmp_path / "c"
    consensus_command([first, second], combined)
    before = {p.name: p.read_bytes() for p in combined.iterdir()}
    real = Path.write_bytes

    def full_on_the_manifest(self: Path, data: bytes) -> int:
        if "manifest" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_on_the_manifest)
    with pytest.raises(OSError, match="No space left"):
        consensus_command([first, second], combined, method="majority")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in combined.iterdir()} == before


def test_consensus_rows_are_typed_rows_and_failures_are_kept(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 20: consensus rows go through a typed row model (ConsensusRow), as label rows do."""
    from annotate.runs.rows import ConsensusRow

    def broken_for_c01(request: Request) -> str:
        return "no json here" if request.group == "c01" else lowest_values(request)

    a = labelled(library, tmp_path / "a", broken_for_c01, limit=3)
    b = labelled(library, tmp_path / "b", broken_for_c01, limit=3)
    written = consensus_command([a, b], tmp_path / "c")
    labels = pd.read_parquet(tmp_path / "c" / "labels.parquet")
    assert list(labels.columns) == list(ConsensusRow.model_fields)
    rows = [
        ConsensusRow(**{k: (None if v is pd.NA or v != v else v) for k, v in row.items()})
        for row in labels.astype(object).to_dict("records")
    ]
    assert rows == written.result.rows
    failed = [r for r in rows if r.status != "ok"]
    assert failed and all(
        r.chat_id == "c01" and r.sources == 0 and "no source gave an ok label" in r.error for r in failed
    )
    assert all(r.backend == "consensus" and r.run_id == written.result.manifest.run_id for r in rows)
    with pytest.raises(ValueError, match="sources"):
        ConsensusRow(**{**rows[0].model_dump(), "sources": "many"})


def test_a_consensus_across_prompt_families_keeps_each_version_beside_its_own_hash(
    library: PromptLibrary, tmp_path: Path
) -> None:
    """Issue 28 (22): the manifest named only the first source's versions, and rows paired v1|zh-v1 with hashes
    sorted apart from them."""
    en = labelled(library, tmp_path / "en", lowest_values)
    zh_config = RunConfig(
        inputs=[EXAMPLES],
        out=tmp_path / "zh",
        prompts=library.paths,
        backend="fake",
        limit=6,
        use_cache=False,
        prompt_family="zh",
    )
    run(zh_config, backend=FakeBackend(script=lowest_values))
    result = consensus(str(en), str(tmp_path / "zh"), "--out", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    entry = manifest["prompts"]["agent_behaviour"]
    zh = json.loads((tmp_path / "zh" / "manifest.json").read_text())["prompts"]["agent_behaviour"]
    assert f"{zh['version']} {zh['hash']}" in entry["other_versions"]
    labels = pd.read_parquet(tmp_path / "c" / "labels.parquet")
    row = labels[labels["task"] == "agent_behaviour"].iloc[0]
    versions, hashes = row["prompt_version"].split("|"), row["prompt_hash"].split("|")
    assert dict(zip(versions, hashes, strict=True))[zh["version"]] == zh["hash"]
