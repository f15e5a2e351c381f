from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.analysis.sample import (
    SampleOptions,
    allocate,
    draw_sample,
    draw_units,
    inclusion_probabilities,
    sample_size,
    systematic_pps,
)
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.base import Completion, Request
from annotate.engines.fake import FakeBackend, lowest_values
from annotate.errors import AnnotateError
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.runs.coded import read_gold
from annotate.runs.reader import read_run
from tests.conftest import EXAMPLES, library_flags, with_chats
from tests.test_agree_diff import varied


def answer_with_probabilities_by_chat(request: Request) -> Completion:
    """The lowest value, with a confidence that differs from chat to chat (from the message hash)."""
    text = lowest_values(request)
    spread = hashlib.sha256(json.dumps(request.messages).encode()).digest()[0] / 255
    candidates = {}
    for key, spec in request.schema["properties"].items():
        low, high = sorted(spec["enum"])[:2]
        candidates[key] = {str(low): math.log(0.5 + 0.45 * spread), str(high): math.log(0.5 - 0.45 * spread)}
    return Completion(text, "stop", value_logprobs=candidates)


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
    options = SampleOptions(per_variable=20, stratify_by="escalation", seed=3)
    coding, info = draw_sample(*with_chats(read_run(labelled)), library, options)
    again, _ = draw_sample(*with_chats(read_run(labelled)), library, options)
    assert coding.equals(again)
    assert list(coding.columns) == [
        "item",
        "chat_id",
        "round",
        "variable",
        "value",
        "annotator",
        "context",
        "target",
        "inclusion_probability",
        "design",
        "sample",
    ]
    assert coding["sample"].nunique() == 1 and coding["sample"].iloc[0] == info["sample"]
    assert (coding.groupby("variable").size() == 20).all()
    assert (coding["value"] == "").all()  # no LLM label leaks into the coding file
    assert coding["target"].str.len().gt(0).all()
    labels = pd.read_parquet(labelled / "labels.parquet")
    empathy_strata = labels[labels["variable"] == "empathy"]["value"].nunique()
    assert len(info["variables"]["empathy"]["strata"]) >= empathy_strata


def test_designs_that_would_give_a_unit_no_chance_are_refused(labelled: Path, library: PromptLibrary) -> None:
    """Fewer items than strata left strata unsampled; --floor 0 left sure units unsampled (probability 0)."""
    with pytest.raises(AnnotateError, match=r"initial_sentiment: a stratified sample of 10 cannot reach all 16 strata"):
        draw_sample(*with_chats(read_run(labelled)), library, SampleOptions(per_variable=10, stratify_by="escalation"))
    with pytest.raises(AnnotateError, match="needs a floor above 0"):
        draw_units("confidence", 3, 2, np.random.default_rng(0), confidence=np.array([1.0, 0.5, 1.0]), floor=0)


def test_strata_from_chats_that_moved_name_the_way_out(labelled: Path, library: PromptLibrary) -> None:
    """A run copied away from its transcripts said "no chat has that meta field (known: none)"."""
    with pytest.raises(AnnotateError, match=r"not where its manifest says .*: pass them with --transcripts"):
        draw_sample(read_run(labelled), [], library, SampleOptions(stratify_by="escalation"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SampleOptions(variables=("empathyy",)), "--variable empathyy: the run has no ok labels of it (known: empathy"),
        (SampleOptions(stratify_by="colour"), "--stratify-by colour: no chat has that meta field (known: category"),
    ],
)
def test_a_sample_of_nothing_is_refused(
    labelled: Path, library: PromptLibrary, options: SampleOptions, message: str
) -> None:
    """A mistyped variable wrote a header-only coding file; an unknown stratum field was ignored."""
    with pytest.raises(AnnotateError, match=re.escape(message)):
        draw_sample(*with_chats(read_run(labelled)), library, options)


@pytest.mark.parametrize("disputed", [3, 30, 60])
def test_the_disputed_design_keeps_every_unit_drawable(disputed: int) -> None:
    """More disputed units than the sample size once gave every undisputed unit probability 0."""
    flags = np.arange(100) < disputed
    for seed in range(20):
        drawn = draw_units("disputed", 100, 30, np.random.default_rng(seed), disputed=flags)
        assert len(drawn.index) == 30 and len(set(drawn.index)) == 30
        assert (~flags[drawn.index]).sum() >= 10  # a third stays for the undisputed units
        assert np.sum(1 / drawn.probability) == pytest.approx(100)  # Horvitz-Thompson count of the units
    assert drawn.described["disputed drawn"] == min(disputed, 20)


def test_coded_sample_comes_back_as_gold(labelled: Path, library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "to_label.csv"
    dirs = library_flags(library)
    result = CliRunner().invoke(app, ["sample", str(labelled), "--out", str(out), "--per-variable", "5", *dirs])
    assert result.exit_code == 0, result.output
    assert out.with_suffix(".rubric.md").read_text().startswith("# Coding instructions")
    coded = pd.read_csv(out, dtype=str, keep_default_na=False)
    coded["value"], coded["annotator"] = "1", "coder1"
    coded.to_csv(out, index=False)
    gold = read_gold(out).table
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


def test_each_design_records_the_probability_every_drawn_item_had(labelled: Path, library: PromptLibrary) -> None:
    labels = pd.read_parquet(labelled / "labels.parquet")
    population = labels[(labels["status"] == "ok") & (labels["variable"] == "empathy")]
    random, _ = draw_sample(
        *with_chats(read_run(labelled)), library, SampleOptions(per_variable=8, design="random", variables=("empathy",))
    )
    assert (random["inclusion_probability"] == round(8 / len(population), 8)).all()
    assert (random["design"] == "random").all()
    options = SampleOptions(per_variable=8, variables=("empathy",))
    stratified, _ = draw_sample(*with_chats(read_run(labelled)), library, options)
    by_value = population.groupby("value").size()
    drawn = stratified.merge(population[["chat_id", "value"]].rename(columns={"value": "llm"}), on="chat_id")
    for value, rows in drawn.groupby("llm"):
        assert (rows["inclusion_probability"] == round(len(rows) / by_value[value], 8)).all()


def test_the_confidence_design_needs_probabilities(labelled: Path, library: PromptLibrary) -> None:
    with pytest.raises(AnnotateError, match="no probabilities"):
        draw_sample(*with_chats(read_run(labelled)), library, SampleOptions(per_variable=5, design="confidence"))


def test_inclusion_probabilities_follow_uncertainty_with_a_cap_and_sum_to_n() -> None:
    size = np.array([0.1, 0.2, 0.3, 0.4, 5.0])
    probability = inclusion_probabilities(size, 3)
    assert probability.sum() == pytest.approx(3)
    assert probability[-1] == 1.0  # capped; the rest share the other two draws in proportion
    assert probability[:4] == pytest.approx(2 * size[:4] / size[:4].sum())


def test_systematic_pps_draws_each_unit_with_its_probability() -> None:
    rng = np.random.default_rng(7)
    probability = inclusion_probabilities(rng.uniform(0.1, 1.0, 40), 10)
    counts = np.zeros(40)
    draws = 20_000
    for _ in range(draws):
        drawn = systematic_pps(probability, rng)
        assert len(drawn) == 10 and len(set(drawn)) == 10
        counts[drawn] += 1
    # each frequency within 4 binomial standard errors of its probability
    assert np.all(np.abs(counts / draws - probability) <= 4 * np.sqrt(probability * (1 - probability) / draws) + 1e-9)


def test_a_confidence_sample_favours_uncertain_labels(library: PromptLibrary, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(
        RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake"),
        backend=FakeBackend(script=answer_with_probabilities_by_chat),
    )
    labels = pd.read_parquet(out / "labels.parquet")
    coding, info = draw_sample(
        *with_chats(read_run(out)), library, SampleOptions(per_variable=6, design="confidence", variables=("empathy",))
    )
    assert info["design"] == "confidence" and len(coding) == 6
    empathy = labels[labels["variable"] == "empathy"].set_index("chat_id")["confidence"]
    chosen = coding.set_index("chat_id")["inclusion_probability"]
    sure, unsure = empathy.idxmax(), empathy.idxmin()
    everyone = inclusion_probabilities(0.1 + (1 - empathy.to_numpy()), 6)
    assert everyone[list(empathy.index).index(unsure)] > everyone[list(empathy.index).index(sure)]
    for chat_id, probability in chosen.items():
        assert probability == pytest.approx(everyone[list(empathy.index).index(chat_id)], abs=1e-7)


def test_a_coding_file_round_trip_keeps_ids_a_spreadsheet_would_read_as_formulas(
    library: PromptLibrary, tmp_path: Path
) -> None:
    """Issue 18: ids starting with = + - @ came back as '=... and matched nothing."""
    from annotate.runs.coded import read_gold

    path = tmp_path / "c.jsonl"
    ids = ["=sum", "+49", "-7", "@home", "plain"]
    chats = [
        {"chat_id": chat, "messages": [{"role": "customer", "text": "Where is it?"}, {"role": "ai", "text": "Here."}]}
        for chat in ids
    ]
    path.write_text("".join(json.dumps(chat) + "\n" for chat in chats))
    out = tmp_path / "run"
    run(
        RunConfig(inputs=[path], out=out, prompts=library.paths, backend="fake", tasks=["initial_state"]), FakeBackend()
    )
    coding = tmp_path / "coding.csv"
    from annotate.commands.sample import sample_command

    sample_command(out, coding, library, SampleOptions(design="random", per_variable=5))
    assert "'=sum" in coding.read_text()  # guarded for spreadsheets
    coded = pd.read_csv(coding, dtype=str, keep_default_na=False).assign(value="1", annotator="me")
    coded.to_csv(coding, index=False)  # a coder fills in the values
    assert set(read_gold(coding).table["chat_id"]) == set(ids)


def test_gold_ids_are_read_as_transcript_ids(tmp_path: Path) -> None:
    """Issue 18: transcripts read chat id 8.0 as '8', gold did not, so a Parquet gold matched nothing."""
    from annotate.runs.coded import read_gold

    path = tmp_path / "gold.parquet"
    pd.DataFrame({"chat_id": [8.0, 9.0], "variable": ["empathy"] * 2, "value": [1, 2]}).to_parquet(path)
    assert read_gold(path).table["chat_id"].tolist() == ["8", "9"]
