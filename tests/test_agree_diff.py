from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from annotate.analysis.agree import agree_repeats, agree_runs
from annotate.analysis.diff import text_diff
from annotate.cli import app
from annotate.commands.diff import diff_command
from annotate.config import RunConfig, Sampling
from annotate.engines.base import Request
from annotate.engines.fake import FakeBackend, lowest_values
from annotate.errors import RunStoreError
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.runs.reader import read_run
from tests.conftest import EXAMPLES, library_flags, read_runs

GOLD = Path(__file__).resolve().parent.parent / "examples" / "gold.csv"


def varied(request: Request) -> str:
    """Deterministic per prompt, but not constant: the answer depends on the prompt's text."""
    props = request.schema["properties"]
    size = len(request.messages[-1]["content"])
    return json.dumps({n: spec["enum"][size % len(spec["enum"])] for n, spec in props.items()})


def make_run(library: PromptLibrary, out: Path, script=varied, **kw) -> Path:  # type: ignore[no-untyped-def]
    config = RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake", limit=10, **kw)
    run(config, backend=FakeBackend(script=script))
    return out


def test_repeats_of_a_deterministic_engine_agree_perfectly(library: PromptLibrary, tmp_path: Path) -> None:
    result = agree_repeats(read_run(make_run(library, tmp_path / "r", repeats=3)), library)
    assert result.coders == ["repeat 0", "repeat 1", "repeat 2"]
    sentiment = next(v for v in result.variables if v.variable == "negative_sentiment")
    assert sentiment.repeats is not None
    assert sentiment.repeats.identical_share == 1.0 and sentiment.repeats.mean_pairwise_kappa == 1.0
    assert sentiment.repeats.units > 10 and sentiment.items_left_out == 0


def test_one_repeat_is_refused(library: PromptLibrary, tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="--repeats"):
        agree_repeats(read_run(make_run(library, tmp_path / "r")), library)


def test_runs_are_compared_pairwise_and_differences_named(library: PromptLibrary, tmp_path: Path) -> None:
    a = make_run(library, tmp_path / "a")
    b = make_run(library, tmp_path / "b", script=lowest_values, sampling=Sampling(top_p=0.9))
    result = agree_runs(read_runs(a, b), library, n_boot=100).as_json()
    assert result["differences"]["a vs b"] == [
        "sampling: {'temperature': 0.0, 'top_p': 1.0, 'seed': 0} vs {'temperature': 0.0, 'top_p': 0.9, 'seed': 0}"
    ]
    empathy = next(v for v in result["variables"] if v["variable"] == "empathy")
    pair = empathy["pairs"]["a vs b"]
    la = pd.read_parquet(a / "labels.parquet").query("variable == 'empathy'")["value"]
    lb = pd.read_parquet(b / "labels.parquet").query("variable == 'empathy'")["value"]
    assert pair["percent_agreement"] == pytest.approx((la.to_numpy() == lb.to_numpy()).mean())
    expected = cohen_kappa_score(la, lb, labels=[1, 2, 3])
    if lb.nunique() == 1:  # lowest_values gives one label: kappa is 0 by construction, so not reported
        assert pair["cohen_kappa"] is None and expected == 0
    else:
        assert pair["cohen_kappa"] == pytest.approx(expected)
    three = agree_runs(read_runs(a, b, make_run(library, tmp_path / "c")), library, n_boot=0).as_json()
    assert three["variables"][0]["all_runs"] is not None and len(three["variables"][0]["pairs"]) == 3


def test_agree_command(library: PromptLibrary, tmp_path: Path) -> None:
    a, b = make_run(library, tmp_path / "a"), make_run(library, tmp_path / "b")
    dirs = library_flags(library)
    result = CliRunner().invoke(
        app, ["agree", str(a), str(b), "--out", str(tmp_path / "rep"), "--bootstrap", "50", *dirs]
    )
    assert result.exit_code == 0, result.output
    assert "a vs b: same configuration (a replication)" in result.output
    table = pd.read_csv(tmp_path / "rep" / "agreement.csv")
    assert (table["cohen_kappa"].dropna() == 1.0).all()
    assert "Agreement across runs" in (tmp_path / "rep" / "report.html").read_text()
    one = CliRunner().invoke(app, ["agree", str(a), "--out", str(tmp_path / "x"), *dirs])
    assert one.exit_code == 1 and "has one repeat" in one.output


def _second_version(library: PromptLibrary) -> None:
    folder = library.prompts_dir / "proactivity"
    (folder / "v2.j2").write_text((folder / "v1.j2").read_text().replace("careful", "meticulous"))
    (folder / "v2.yaml").write_text((folder / "v1.yaml").read_text().replace("parent: null", "parent: v1"))


def test_text_diff_names_what_changed(library: PromptLibrary) -> None:
    _second_version(library)
    diff = text_diff(library.get("proactivity", "v1"), library.get("proactivity", "v2"))
    assert "### template: " in diff and "-You are a careful" in diff and "+You are a meticulous" in diff
    assert "+parent: v1" in diff
    assert "### rubric: no change" in diff
    shipped = text_diff(library.get("empathy", "v1"), library.get("empathy", "v2"))
    assert "empathy.v2.yaml" in shipped and "+  - Solving the problem well is not empathy" in shipped


def test_diff_labels_both_versions_and_measures_the_change(library: PromptLibrary, tmp_path: Path) -> None:
    _second_version(library)

    def by_version(request: Request) -> str:
        meticulous = "meticulous" in request.messages[0]["content"]
        return json.dumps({"proactivity": 1 if meticulous else 0})

    base = RunConfig(inputs=[EXAMPLES], out=tmp_path / "d", prompts=library.paths, backend="fake", limit=10)
    fake = FakeBackend(script=by_version)
    written = diff_command(library, "proactivity", "v1", "v2", tmp_path / "report", base, GOLD, 100, backend=fake)
    result = written.result.as_json()
    (entry,) = result["variables"]
    assert entry["transitions"] == [[0, entry["n"]], [0, 0]]
    assert len(entry["flipped"]) == entry["n"] == 10  # c01-c10 are all escalated
    assert all(f["target"].startswith("Human agent:") for f in entry["flipped"])  # what the model rated
    gold = pd.read_csv(GOLD).query("variable == 'proactivity'").set_index("chat_id")["value"]
    expected_v1 = (gold.loc[[f["chat_id"] for f in entry["flipped"]]] == 0).mean()
    assert entry["gold"]["by_side"]["v1"]["percent_agreement"] == pytest.approx(expected_v1)
    assert entry["gold"]["change"]["percent_agreement"] == pytest.approx(1 - 2 * expected_v1)
    low, high = entry["gold"]["change_ci95"]["percent_agreement"]
    assert low <= entry["gold"]["change"]["percent_agreement"] <= high
    assert set(result["runs"]) == {"v1", "v2"}


def test_diff_command_without_transcripts(library: PromptLibrary, tmp_path: Path) -> None:
    dirs = library_flags(library)
    result = CliRunner().invoke(app, ["diff", "empathy", "v1", "v2", "--out", str(tmp_path / "d"), *dirs])
    assert result.exit_code == 0, result.output
    assert "### rubric:" in result.output
    assert (tmp_path / "d" / "prompt.diff").is_file() and (tmp_path / "d" / "report.html").is_file()
    bad = CliRunner().invoke(
        app, ["diff", "empathy", "v1", "v2", "--out", str(tmp_path / "d"), "--gold", str(GOLD), *dirs]
    )
    assert bad.exit_code == 2 and "--gold needs --on" in bad.output


def test_runs_over_different_transcripts_that_reuse_chat_ids_are_not_compared(
    library: PromptLibrary, tmp_path: Path
) -> None:
    """Issue 18: agree and consensus combined runs over different transcripts that reuse chat ids, silently."""
    import shutil

    lines = EXAMPLES.read_text().splitlines()
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join([lines[0].replace('"text": "', '"text": "Another export. ', 1), *lines[1:]]) + "\n")
    a = make_run(library, tmp_path / "a")
    config = RunConfig(inputs=[other], out=tmp_path / "b", prompts=library.paths, backend="fake", limit=10)
    run(config, backend=FakeBackend(script=varied))
    with pytest.raises(RunStoreError, match=r"label different transcripts under the same chat ids \(1 chats differ"):
        agree_runs(read_runs(a, tmp_path / "b"), library, n_boot=0)
    consensus = ["consensus", str(a), str(tmp_path / "b"), "--out", str(tmp_path / "c")]
    refused = CliRunner().invoke(app, consensus)
    assert refused.exit_code == 1 and "label different transcripts" in refused.output
    shutil.copytree(a, tmp_path / "copy")
    with pytest.raises(RunStoreError, match="are one run"):
        read_runs(a, tmp_path / "copy")
    same = make_run(library, tmp_path / "same", script=lowest_values)  # the same input, another labeller: fine
    assert agree_runs(read_runs(a, same), library, n_boot=0).variables


def test_agree_refuses_one_run_given_twice(library: PromptLibrary, tmp_path: Path) -> None:
    """The same folder twice made agree crash ('DataFrame' object has no attribute 'tolist')."""
    a = make_run(library, tmp_path / "a")
    with pytest.raises(RunStoreError, match="is given twice"):
        agree_runs(read_runs(a, a), library, n_boot=0)
