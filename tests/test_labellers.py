"""Issue 19: several labellers (cross-fitted combination), recalibration, LLM-measured regressors
(predict-then-debias), chat-level samples, a labeller's worth in human labels, and the multiverse flags."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.analysis.estimation import combine, ppi
from annotate.analysis.estimation.estimate_results import Estimator
from annotate.analysis.estimation.estimator import robustness
from annotate.analysis.estimation.worth import worth
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT, library_flags
from tests.test_agree_diff import varied

sys.path.insert(0, str(ROOT / "bench"))
import labellers as bench

GOLD = ROOT / "examples" / "gold.csv"
needs_ppi_python = pytest.mark.skipif(importlib.util.find_spec("ppi_py") is None, reason="ppi-python is not installed")


def measured_data(seed: int = 3, big_n: int = 3000, n: int = 200) -> tuple[ppi.Sample, np.ndarray, np.ndarray]:
    """y ~ 1 + t + s with s measured by the LLM with an error that depends on t; returns the sample, the LLM
    terms of all units and the true terms."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, big_n).astype(float)
    s = rng.integers(1, 6, big_n).astype(float)
    y = 1 + 0.4 * t + 0.3 * s + rng.normal(0, 0.7, big_n)
    s_hat = s + (t == 1) * (rng.random(big_n) < 0.5)
    y_hat = y + rng.normal(0, 0.5, big_n)
    x_true, x_llm = np.column_stack([np.ones(big_n), t, s]), np.column_stack([np.ones(big_n), t, s_hat])
    labelled = np.sort(rng.choice(big_n, n, replace=False))
    data = ppi.sample(x_llm, y_hat, labelled, y[labelled], x_human=x_true[labelled])
    return data, x_llm, x_true


def ols(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(x, y, rcond=None)[0]


def test_llm_measured_regressors_are_debiased_with_three_fits() -> None:
    """Predict-then-debias: human fit (true terms) + share x (LLM fit over all - LLM fit over the coded units)."""
    data, x_llm, _ = measured_data()
    lab = data.labelled
    fixed = ppi.ppi(data, lam=0.7)
    expected = ols(data.x, data.y) + 0.7 * (ols(x_llm, data.yhat_all) - ols(x_llm[lab], data.yhat))
    np.testing.assert_allclose(fixed.coef, expected, atol=1e-10)
    fit = ppi.ppi(data)
    assert (fit.lam > 0).all()
    naive = ppi.llm_only(data)
    assert abs(naive.coef[1] - 0.4) > 0.08  # treated chats read angrier: the naive effect is biased; PTD is not
    low, high = fit.interval()
    assert low[1] <= 0.4 <= high[1] and low[2] <= 0.3 <= high[2]


@needs_ppi_python
def test_with_regressors_measured_without_error_it_is_ppi_pythons_estimate() -> None:
    import ppi_py

    data, x_llm, _ = measured_data()
    exact = ppi.sample(x_llm, data.yhat_all, data.labelled, data.y)
    for share in (0.4, 0.9):
        fit = ppi.ppi(exact, lam=share)
        reference = ppi_py.ppi_ols_pointestimate(exact.x, exact.y, exact.yhat, x_llm, data.yhat_all, lam=share)
        np.testing.assert_allclose(fit.coef, reference, atol=1e-10)


def test_predict_then_debias_standard_errors_agree_with_its_bootstrap() -> None:
    """Kluger et al. bootstrap the coded and the LLM-labelled sets apart at a fixed share; the analytic
    leave-one-chat-out standard errors must agree with that to within Monte Carlo error."""
    data, x_llm, _ = measured_data(big_n=6000, n=300)
    fit = ppi.ppi(data, lam=0.8)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(400):
        coded = rng.integers(0, data.n, data.n)
        everyone = rng.integers(0, data.big_n, data.big_n)
        draws.append(
            ols(data.x[coded], data.y[coded])
            + 0.8 * (ols(x_llm[everyone], data.yhat_all[everyone]) - ols(data.xhat[coded], data.yhat[coded]))
        )
    np.testing.assert_allclose(fit.se, np.std(draws, axis=0), rtol=0.15)


def test_a_units_combined_prediction_never_sees_its_own_chats_human_label() -> None:
    data, _, _ = measured_data(n=120)
    noise = np.random.default_rng(1).normal(size=data.big_n)  # a poor single reading: the fitted one is chosen
    features = [combine.LabellerFeatures(np.column_stack([data.yhat_all, data.yhat_all**2]), noise)]
    first = combine.cross_fitted(features, data, (0.0, 10.0))
    changed = ppi.Sample(**{**data.__dict__, "y": np.where(np.arange(data.n) == 0, 100.0, data.y)})
    second = combine.cross_fitted(features, changed, (0.0, 10.0))
    unit = data.labelled[0]
    assert first[unit] == pytest.approx(second[unit], rel=1e-9)  # the closed-form leave-one-chat-out fit
    assert not np.allclose(first, second)  # the label did move other folds' predictions


@pytest.mark.parametrize("scenario", bench.SCENARIOS)
def test_the_combination_covers_and_is_never_wider_than_the_best_labeller(scenario: str) -> None:
    """A fast version of bench/labellers.py (1,000 studies a scenario there; docs/methods.md)."""
    result = bench.run(scenario, studies=120, coded=100, seed=7)
    coverage, width, _ = result["combined"]
    assert coverage >= 0.88, result
    singles = [w for name, (_, w, _) in result.items() if name.startswith("PPI++")]
    assert width <= min(singles) + 0.05, result
    if scenario in ("miscalibrated", "complementary", "rounds", "confidence"):
        assert width <= 0.9 * result["PPI++ labeller 1"][1], result
    if scenario == "measured-control":
        assert result["LLM only"][0] < 0.5


def test_a_labellers_worth_is_none_without_signal_and_above_100_with_it() -> None:
    rng = np.random.default_rng(2)
    big_n, n = 2000, 150
    x = np.ones((big_n, 1))
    y = rng.normal(2, 1, big_n)
    labelled = np.sort(rng.choice(big_n, n, replace=False))
    for yhat, informative in ((rng.normal(2, 1, big_n), False), (y + rng.normal(0, 0.5, big_n), True)):
        parts = ppi.decompose(ppi.sample(x, yhat, labelled, y[labelled]))
        human = ppi.fits(parts)["human_only"]
        (value,) = worth(parts, human)
        (unbounded,) = worth(parts, human, unbounded=True)
        if informative:
            assert value.status == "shown" and value.value is not None and value.value > 200 and value.saves
            assert value.low is not None and value.high is not None and value.low <= value.value <= value.high
            assert unbounded.value is not None and unbounded.value >= value.value
        else:
            assert value.status == "none" and value.value == pytest.approx(100) and not value.saves


def test_labellers_that_disagree_in_sign_or_significance_are_flagged() -> None:
    def est(value: float, low: float, high: float) -> Estimator:
        return Estimator(estimate=value, se=0.1, low=low, high=high)

    assert robustness({"a": est(0.3, 0.1, 0.5), "b": est(0.2, 0.05, 0.35)}) is None
    flag = robustness({"a": est(0.3, 0.1, 0.5), "b": est(-0.1, -0.4, 0.2)})
    assert flag is not None and "sign differs" in flag and "excludes 0 with a but not with b" in flag
    assert robustness({"a": est(0.3, 0.1, 0.5)}) is None


# -- the commands


def other_answers(request) -> str:  # type: ignore[no-untyped-def]
    """A second labeller: deterministic, with other errors than ``varied``."""
    props = request.schema["properties"]
    size = len(request.messages[-1]["content"]) // 7
    return json.dumps({name: spec["enum"][size % len(spec["enum"])] for name, spec in props.items()})


@pytest.fixture
def two_runs(library: PromptLibrary, tmp_path: Path) -> tuple[Path, Path]:
    runs = []
    for name, script in (("first", varied), ("second", other_answers)):
        config = RunConfig(inputs=[EXAMPLES], out=tmp_path / name, prompts=library.paths, backend="fake")
        run(config, backend=FakeBackend(script=script))
        runs.append(tmp_path / name)
    return runs[0], runs[1]


def invoke(library: PromptLibrary, *args: str) -> object:
    dirs = library_flags(library)
    return CliRunner().invoke(app, [*args, *dirs])


def test_estimate_with_two_labellers_combines_them_and_shows_each(
    two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path
) -> None:
    first, second = two_runs
    out = tmp_path / "e"
    formula = "empathy ~ C(escalation) + initial_sentiment"
    result = invoke(
        library,
        "estimate",
        str(first),
        "--labellers",
        str(second),
        "--gold",
        str(GOLD),
        "--formula",
        formula,
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "combined: first + second" in result.output and "PPI second" in result.output
    assert "LLM-measured regressors: initial_sentiment" in result.output
    (model,) = json.loads((out / "estimate.json").read_text())["models"]
    assert model["labellers"] == ["first", "second"] and model["measured_regressors"] == ["initial_sentiment"]
    term = model["terms"][1]
    assert set(term["by_labeller"]) == {"first", "second"} and term["combined"]["estimate"] is not None
    assert term["by_labeller"]["first"] == term["ppi"]  # the run's own estimate is the plain one
    assert "combined labellers" in (out / "report.html").read_text()
    paper = (out / "estimate_table.md").read_text()
    assert "Labellers combined" in paper and "Reference levels: escalation = ai_unable" in paper
    assert "initial\\_sentiment" in (out / "estimate_table.tex").read_text()
    table = pd.read_csv(out / "estimate.csv")
    assert {"combined", "combined_low", "ppi_first", "ppi_second_high", "worth_per_100", "robustness"} <= set(
        table.columns
    )


def test_recalibrating_one_labeller(two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path) -> None:
    result = invoke(
        library,
        "estimate",
        str(two_runs[0]),
        "--recalibrate",
        "--gold",
        str(GOLD),
        "--variable",
        "empathy",
        "--out",
        str(tmp_path / "e"),
    )
    assert result.exit_code == 0, result.output
    assert "first (recalibrated)" in result.output


def test_labellers_over_other_transcripts_or_the_same_run_are_refused(
    two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path
) -> None:
    lines = EXAMPLES.read_text().splitlines()
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join([lines[0].replace('"text": "', '"text": "Another export. ', 1), *lines[1:]]) + "\n")
    config = RunConfig(inputs=[other], out=tmp_path / "other", prompts=library.paths, backend="fake")
    run(config, backend=FakeBackend(script=varied))
    base = ["estimate", str(two_runs[0]), "--gold", str(GOLD), "--variable", "empathy", "--out", str(tmp_path / "e")]
    result = invoke(library, *base, "--labellers", str(tmp_path / "other"))
    assert result.exit_code == 1 and "label different transcripts under the same chat ids" in result.output
    result = invoke(library, *base, "--labellers", str(two_runs[0]))
    assert result.exit_code == 1 and "given twice" in result.output


def test_an_llm_measured_regressor_without_human_values_is_one_line(
    two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path
) -> None:
    gold = pd.read_csv(GOLD, dtype=str, keep_default_na=False)
    keep = gold[(gold["variable"] != "initial_urgency") | (gold["chat_id"] > "c10")]
    keep.to_csv(tmp_path / "gold.csv", index=False)
    formula = "empathy ~ initial_urgency"
    result = invoke(
        library,
        "estimate",
        str(two_runs[0]),
        "--gold",
        str(tmp_path / "gold.csv"),
        "--formula",
        formula,
        "--out",
        str(tmp_path / "e"),
    )
    assert result.exit_code == 1
    message = result.output.strip()
    assert "lacks human values of LLM-measured regressors" in message and "initial_urgency (" in message
    assert "--unit chat" in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("design", ["random", "disputed", "stratified"])
def test_a_chat_level_sample_codes_every_named_variable_of_each_drawn_chat(
    two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path, design: str
) -> None:
    coding = tmp_path / "chats.csv"
    names = ["--variable", "empathy", "--variable", "initial_sentiment", "--variable", "negative_sentiment"]
    strata = ["--stratify-by", "escalation"] if design == "stratified" else []
    source = two_runs[0]
    if design == "disputed":
        source = tmp_path / "consensus"
        CliRunner().invoke(app, ["consensus", str(two_runs[0]), str(two_runs[1]), "--out", str(source)])
    result = invoke(
        library,
        "sample",
        str(source),
        "--unit",
        "chat",
        "--chats",
        "12",
        "--design",
        design,
        *names,
        *strata,
        "--out",
        str(coding),
    )
    assert result.exit_code == 0, result.output
    assert "chats: 12 of 30" in result.output
    table = pd.read_csv(coding)
    assert table["chat_id"].nunique() == 12
    blocks = (table["chat_id"] != table["chat_id"].shift()).sum()
    assert blocks == 12  # each chat's items are together
    labels = pd.read_parquet(two_runs[0] / "labels.parquet")
    named = labels[labels["variable"].isin(["empathy", "initial_sentiment", "negative_sentiment"])]
    for chat, items in table.groupby("chat_id"):
        mine = named[named["chat_id"] == chat]
        assert len(items) == len(mine)  # every named variable of the chat, every round of the per-round one
        assert set(items["variable"]) == set(mine["variable"]) and items["inclusion_probability"].nunique() == 1
    per_chat = table.groupby("chat_id")["inclusion_probability"].first()
    assert (per_chat > 0).all()
    assert (1 / per_chat).sum() == pytest.approx(30)  # chats without a handoff can be drawn too
    plan = json.loads(coding.with_suffix(".sample.json").read_text())
    assert plan["unit"] == "chat" and plan["chats"]["population"] == 30


def test_a_chat_level_confidence_design_needs_probabilities(
    two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path
) -> None:
    args = ["sample", str(two_runs[0]), "--unit", "chat", "--design", "confidence", "--out", str(tmp_path / "c.csv")]
    result = invoke(library, *args)
    assert result.exit_code == 1 and "cannot weigh them" in result.output


def test_a_coded_chat_sample_feeds_an_estimate_with_measured_controls(
    two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path
) -> None:
    coding = tmp_path / "chats.csv"
    names = ["--variable", "empathy", "--variable", "initial_sentiment", "--variable", "initial_urgency"]
    invoke(
        library,
        "sample",
        str(two_runs[0]),
        "--unit",
        "chat",
        "--chats",
        "22",
        "--design",
        "stratified",
        "--stratify-by",
        "escalation",
        "--seed",
        "3",
        *names,
        "--out",
        str(coding),
    )
    table = pd.read_csv(coding, dtype=str, keep_default_na=False)
    gold = pd.read_csv(GOLD, dtype=str, keep_default_na=False).set_index(["chat_id", "round", "variable"])["value"]
    table["value"] = [gold[key] for key in zip(table["chat_id"], table["round"], table["variable"], strict=True)]
    table["annotator"] = "coder"
    table.to_csv(coding, index=False)
    formula = "empathy ~ C(escalation) + initial_sentiment + initial_urgency"
    result = invoke(
        library,
        "estimate",
        str(two_runs[0]),
        "--labellers",
        str(two_runs[1]),
        "--gold",
        str(coding),
        "--formula",
        formula,
        "--out",
        str(tmp_path / "e"),
    )
    assert result.exit_code == 0, result.output
    assert "16 human labels from 16 chats, inclusion probabilities from the gold" in result.output


def test_validate_reports_what_the_labels_are_worth(
    two_runs: tuple[Path, Path], library: PromptLibrary, tmp_path: Path
) -> None:
    result = invoke(
        library, "validate", str(two_runs[0]), "--gold", str(GOLD), "--bootstrap", "50", "--out", str(tmp_path / "v")
    )
    assert result.exit_code == 0, result.output
    assert "in human labels per 100 coded" in result.output
    data = json.loads((tmp_path / "v" / "agreement.json").read_text())
    for variable in data["variables"]:
        w = variable["worth"]
        assert w["status"] in {"shown", "none", "not_estimable"}, w
        if w["status"] == "none":
            assert w["value"] == 100
        elif w["status"] == "not_estimable":
            assert w["value"] is None and w["note"]
        else:
            assert w["low"] <= w["high"]
    html = (tmp_path / "v" / "report.html").read_text()
    assert "What the LLM labels are worth" in html and "A forecast" in html


def test_the_chat_level_confidence_design_draws_unsure_chats_more_often(tmp_path: Path) -> None:
    from annotate.analysis.sample import SampleOptions, draw_chats

    rng = np.random.default_rng(0)
    chats = [f"c{i:02d}" for i in range(40)]
    sureness = dict(zip(chats, rng.uniform(0.3, 1.0, 40), strict=True))
    ok = pd.DataFrame(
        [
            {"chat_id": c, "variable": v, "round": None, "value": 1, "confidence": sureness[c], "stratum_meta": ""}
            for c in chats
            for v in ("a", "b")
        ]
    )
    options = SampleOptions(design="confidence", unit="chat", chats=10, floor=0.1)
    chosen, plan = draw_chats(ok, options, rng, tmp_path)
    per_chat = chosen.groupby("chat_id")["inclusion_probability"].first()
    assert len(per_chat) == 10 and plan["chats"]["sample"] == 10
    expected = {c: 10 * (0.1 + 1 - sureness[c]) / sum(0.1 + 1 - s for s in sureness.values()) for c in chats}
    for chat, probability in per_chat.items():
        assert probability == pytest.approx(min(1.0, expected[chat]), rel=1e-6) or expected[chat] > 1
    assert (chosen.groupby("chat_id")["variable"].nunique() == 2).all()


def test_leaving_a_chat_out_in_closed_form_is_refitting_without_it() -> None:
    from annotate.analysis.estimation.combine import _Model

    rng = np.random.default_rng(4)
    x = rng.normal(size=(80, 3))
    labelled = np.arange(0, 80, 2)
    clusters = labelled // 6  # several coded units per chat
    y = x[labelled] @ [1.0, -0.5, 0.3] + rng.normal(size=len(labelled))
    model = _Model.fit(x, labelled, y, clusters, penalty=2.0, features=2)
    first_chat = clusters == clusters[0]
    predicted = model.predict(labelled[first_chat], labelled)
    z = model.design[labelled][~first_chat]
    ridge = np.diag([0.0, 2.0, 2.0, 2.0])
    beta = np.linalg.solve(z.T @ z + ridge, z.T @ y[~first_chat])
    expected = model.design[labelled[first_chat]][:, :3] @ beta[:3]  # intercept and the two features, not the term
    np.testing.assert_allclose(predicted, expected, rtol=1e-9)
