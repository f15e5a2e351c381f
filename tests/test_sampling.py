from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.analysis.gold import read_gold
from annotate.analysis.sample import allocate, draw_sample, sample_size
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.labelling.library import PromptLibrary
from annotate.labelling.pipeline import run
from tests.conftest import EXAMPLES
from tests.test_agree_diff import varied


@pytest.mark.parametrize(
    ("population", "confidence", "margin", "expected"),
    [
        (10**9, 0.95, 0.05, 385),  # 1.96^2 * .25 / .05^2 = 384.1
        (1000, 0.95, 0.05, 278),  # finite-population correction: 384.1 / (1 + 383.1 / 1000) = 277.7
        (10**9, 0.99, 0.05, 664),  # 2.576^2 * .25 / .0025 = 663.5
        (50, 0.95, 0.05, 45),
        (0, 0.95, 0.05, 0),
    ],
)
def test_sample_size(population: int, confidence: float, margin: float, expected: int) -> None:
    assert sample_size(population, confidence, margin) == expected


def test_allocation_is_proportional_and_covers_every_stratum() -> None:
    assert allocate({"a": 80, "b": 15, "c": 5}, 20) == {"a": 16, "b": 3, "c": 1}
    assert allocate({"a": 98, "b": 1, "c": 1}, 10) == {"a": 8, "b": 1, "c": 1}
    assert sum(allocate({"a": 3, "b": 2}, 100).values()) == 5


@pytest.fixture
def labelled(library: PromptLibrary, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    run(
        RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake"), backend=FakeBackend(script=varied)
    )
    return out


def test_sample_is_blinded_stratified_and_reproducible(labelled: Path, library: PromptLibrary) -> None:
    coding, info = draw_sample(labelled, library, per_variable=10, stratify_by="escalation", seed=3)
    again, _ = draw_sample(labelled, library, per_variable=10, stratify_by="escalation", seed=3)
    assert coding.equals(again)
    assert list(coding.columns) == ["item", "chat_id", "round", "variable", "value", "annotator", "context", "target"]
    assert (coding.groupby("variable").size() == 10).all()
    assert (coding["value"] == "").all()  # no LLM label leaks into the coding file
    assert coding["target"].str.len().gt(0).all()
    labels = pd.read_parquet(labelled / "labels.parquet")
    empathy_strata = labels[labels["variable"] == "empathy"]["value"].nunique()
    assert len(info["variables"]["empathy"]["strata"]) >= empathy_strata


def test_coded_sample_comes_back_as_gold(labelled: Path, library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "to_label.csv"
    dirs = ["--prompts-dir", str(library.prompts_dir), "--rubrics-dir", str(library.rubrics_dir)]
    result = CliRunner().invoke(app, ["sample", str(labelled), "--out", str(out), "--per-variable", "5", *dirs])
    assert result.exit_code == 0, result.output
    assert out.with_suffix(".rubric.md").read_text().startswith("# Coding instructions")
    coded = pd.read_csv(out, dtype=str, keep_default_na=False)
    coded["value"], coded["annotator"] = "1", "coder1"
    coded.to_csv(out, index=False)
    gold = read_gold(out)
    assert len(gold) == len(coded) and set(gold["annotator"]) == {"coder1"}
    check = CliRunner().invoke(
        app, ["validate", str(labelled), "--gold", str(out), "--out", str(tmp_path / "r"), "--bootstrap", "0", *dirs]
    )
    assert check.exit_code == 0, check.output


def test_trajectories_command(labelled: Path, tmp_path: Path) -> None:
    png = tmp_path / "t.png"
    result = CliRunner().invoke(app, ["trajectories", str(labelled), "--group-by", "escalation", "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "30 chats" in result.output
    missing = CliRunner().invoke(app, ["trajectories", str(labelled), "--group-by", "colour", "--out", str(png)])
    assert missing.exit_code == 1 and "metadata field 'colour'" in missing.output
