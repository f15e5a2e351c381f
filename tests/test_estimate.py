"""`annotate estimate`: PPI++ against ppi-python, the variance when the human sample is part of the data,
clusters, the simulation's coverage, and the command's inputs and errors."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from annotate.analysis import ppi
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.labelling.library import PromptLibrary
from annotate.labelling.pipeline import run
from tests.conftest import EXAMPLES, ROOT
from tests.test_agree_diff import varied

sys.path.insert(0, str(ROOT / "bench"))
import ppi_coverage

needs_ppi_python = pytest.mark.skipif(
    importlib.util.find_spec("ppi_py") is None, reason="ppi-python is not installed (make install)"
)


def regression_data(seed: int = 1, big_n: int = 400, n: int = 60) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(big_n), rng.normal(size=big_n), rng.integers(0, 2, big_n)])
    y = x @ [1.0, 0.5, -0.7] + rng.normal(size=big_n)
    yhat = 0.8 * y + 0.3 + rng.normal(scale=0.6, size=big_n)
    labelled = np.sort(rng.choice(big_n, n, replace=False))
    return x, y, yhat, labelled, rng.uniform(0.1, 0.9, n)


def disjoint(x: np.ndarray, y: np.ndarray, yhat: np.ndarray, labelled: np.ndarray, w: np.ndarray) -> ppi.Sample:
    """ppi-python's setting: the LLM-only set is a separate sample from the human-labelled one."""
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    return ppi.Sample(
        x[rest], yhat[rest], rest, x[labelled], y[labelled], yhat[labelled], labelled, w / w.mean(), False
    )


@needs_ppi_python
@pytest.mark.parametrize("weighted", [False, True])
def test_ols_equals_ppi_python_for_every_coefficient(weighted: bool) -> None:
    import ppi_py

    x, y, yhat, labelled, inclusion = regression_data()
    w = 1 / inclusion if weighted else np.ones(len(labelled))
    data = disjoint(x, y, yhat, labelled, w)
    fit = ppi.ppi(data, never_wider=False)
    low, high = fit.interval(0.95)
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    for j in range(3):
        expected = ppi_py.ppi_ols_ci(
            data.x, data.y, data.yhat, x[rest], yhat[rest], alpha=0.05, coord=j, w=w if weighted else None
        )
        assert (low[j], high[j]) == pytest.approx((expected[0][j], expected[1][j]), abs=1e-10)
    human = ppi.human_only(data).interval(0.95)
    classical = ppi_py.ppi_ols_ci(data.x, data.y, data.yhat, x[rest], yhat[rest], alpha=0.05, lam=0, w=w)
    np.testing.assert_allclose(human, classical, atol=1e-10)


@needs_ppi_python
def test_logistic_equals_ppi_python() -> None:
    import ppi_py

    x, _, _, labelled, inclusion = regression_data()
    rng = np.random.default_rng(5)
    y = (rng.uniform(size=len(x)) < 1 / (1 + np.exp(-(x @ [0.2, 1.0, -0.5])))).astype(float)
    probability = np.clip(0.7 * y + 0.15 + rng.normal(scale=0.1, size=len(x)), 0, 1)
    data = disjoint(x, y, probability, labelled, 1 / inclusion)
    fit = ppi.ppi(data, "logit", never_wider=False)
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    # ppi-python's logistic functions accept ``coord`` but tune one share for all coefficients,
    # so each coefficient is compared at the share tuned for it here
    for j in range(3):
        low, high = ppi_py.ppi_logistic_ci(
            data.x, data.y, data.yhat, x[rest], probability[rest], alpha=0.05, lam=float(fit.lam[j]), w=1 / inclusion
        )
        assert (fit.interval(0.95)[0][j], fit.interval(0.95)[1][j]) == pytest.approx((low[j], high[j]), abs=1e-6)
    assert 0 < fit.lam.min() < 1


@needs_ppi_python
def test_with_the_sample_inside_the_data_the_point_estimate_is_still_ppi_pythons() -> None:
    import ppi_py

    x, y, yhat, labelled, inclusion = regression_data()
    data = ppi.sample(x, yhat, labelled.astype(np.int64), y[labelled], inclusion)
    fit = ppi.ppi(data)
    for j in range(3):
        expected = ppi_py.ppi_ols_pointestimate(
            data.x, data.y, data.yhat, x, yhat, lam=float(fit.lam[j]), w=1 / inclusion
        )
        assert fit.coef[j] == pytest.approx(expected[j], abs=1e-10)


def test_when_every_unit_is_coded_the_llm_labels_add_nothing() -> None:
    """Without the covariance term the PPI interval would claim more than the human labels hold."""
    x, y, yhat, _, _ = regression_data()
    data = ppi.sample(x, yhat, np.arange(len(y)), y)
    fit, human = ppi.ppi(data), ppi.human_only(data)
    np.testing.assert_allclose(fit.lam, 0, atol=1e-12)
    np.testing.assert_allclose(fit.se, human.se)
    np.testing.assert_allclose(ppi.effective_labels(human, fit), len(y))


@pytest.mark.parametrize("seed", [4, 6, 17])
def test_no_coefficient_is_less_precise_than_with_humans_alone(seed: int) -> None:
    """With 15 human labels the tuned share sometimes widens a coefficient's interval; that one then uses 0."""
    x, y, yhat, labelled, inclusion = regression_data(seed=seed, n=15)
    data = ppi.sample(x, yhat, labelled.astype(np.int64), y[labelled], inclusion)
    human = ppi.human_only(data)
    unguarded = ppi.ppi(data, never_wider=False)
    wider = unguarded.se > human.se
    assert wider.any()  # these seeds were picked because the tuned share widens a coefficient
    fit = ppi.ppi(data)
    assert np.all(fit.se <= human.se * (1 + 1e-9))
    np.testing.assert_allclose(fit.lam[wider], 0)
    np.testing.assert_allclose(fit.coef[wider], human.coef[wider])
    np.testing.assert_allclose(fit.se[~wider], unguarded.se[~wider])


def test_clusters_of_identical_copies_give_the_same_interval_as_one_copy() -> None:
    x, y, yhat, labelled, _ = regression_data(big_n=200, n=40)
    once = ppi.human_only(ppi.sample(x, yhat, labelled.astype(np.int64), y[labelled]))
    copies = 3
    chats = np.repeat(np.arange(len(y)), copies)
    rows = np.repeat(labelled, copies) * copies + np.tile(np.arange(copies), len(labelled))
    thrice = ppi.human_only(
        ppi.sample(
            np.repeat(x, copies, axis=0), np.repeat(yhat, copies), rows, np.repeat(y[labelled], copies), None, chats
        )
    )
    np.testing.assert_allclose(thrice.coef, once.coef)
    np.testing.assert_allclose(thrice.se, once.se)


def test_labels_needed_for_a_target_width() -> None:
    x, y, yhat, labelled, _ = regression_data()
    fit = ppi.human_only(ppi.sample(x, yhat, labelled.astype(np.int64), y[labelled]))
    width = float(np.diff(np.array(fit.interval(0.95)), axis=0)[0][1])
    assert ppi.labels_for_width(fit, width)[1] == pytest.approx(len(labelled), abs=1)
    assert ppi.labels_for_width(fit, width / 2)[1] == pytest.approx(4 * len(labelled), abs=1)


@pytest.mark.parametrize("scenario", ppi_coverage.SCENARIOS, ids=lambda s: s.name)
def test_simulation_prediction_powered_intervals_cover_the_true_effect(scenario: ppi_coverage.Scenario) -> None:
    """The fast version of bench/ppi_coverage.py (which runs 500 studies a scenario)."""
    result = ppi_coverage.coverage(scenario, studies=150, seed=11)
    assert result["ppi"][0] >= 0.9
    assert result["human_only"][0] >= 0.9
    assert result["ppi"][1] <= result["human_only"][1] * 1.02  # never wider than the humans alone
    if scenario.accuracy > 0:
        assert result["llm_only"][0] < 0.5  # the biased labeller's own interval misses the truth
        assert result["ppi"][1] < 0.9 * result["human_only"][1]  # and its labels still narrow the interval


# -- the command


@pytest.fixture
def labelled_run(library: PromptLibrary, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    config = RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake")
    run(config, backend=FakeBackend(script=varied))
    return out


def estimate(run_dir: Path, library: PromptLibrary, out: Path, *args: str) -> object:
    dirs = ["--prompts-dir", str(library.prompts_dir), "--rubrics-dir", str(library.rubrics_dir)]
    return CliRunner().invoke(app, ["estimate", str(run_dir), "--out", str(out), *dirs, *args])


def test_estimate_prints_and_writes_the_three_estimators(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = ROOT / "examples" / "gold.csv"
    result = estimate(
        labelled_run, library, tmp_path / "e", "--gold", str(gold), "--formula", "empathy ~ C(escalation)"
    )
    assert result.exit_code == 0, result.output
    assert "treated as a simple random sample" in result.output
    assert "prediction-powered" in result.output and "C(escalation)[T.supervisor]" in result.output
    data = json.loads((tmp_path / "e" / "estimate.json").read_text())
    (model,) = data["models"]
    assert model["units"] == 22 and model["human_labels"] == 22 and not model["clustered_by_chat"]
    assert model["terms"][0]["term"] == "Intercept"
    table = pd.read_csv(tmp_path / "e" / "estimate.csv")
    assert {"llm_only", "human_only_low", "ppi_high", "effective_human_labels"} <= set(table.columns)
    page = (tmp_path / "e" / "report.html").read_text()
    assert "data:image/png;base64," in page and "prediction-powered" in page


def test_per_round_outcomes_are_clustered_by_chat_and_means_by_group_need_no_formula(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = ROOT / "examples" / "gold.csv"
    result = estimate(
        labelled_run,
        library,
        tmp_path / "e",
        "--gold",
        str(gold),
        "--variable",
        "negative_sentiment",
        "--by",
        "category",
    )
    assert result.exit_code == 0, result.output
    (model,) = json.loads((tmp_path / "e" / "estimate.json").read_text())["models"]
    assert model["clustered_by_chat"] and model["chats"] == 30 and model["units"] > 30
    assert all(t["term"].startswith("C(category)[") for t in model["terms"])


def test_inclusion_probabilities_in_the_gold_weight_the_estimate(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = pd.read_csv(ROOT / "examples" / "gold.csv")
    gold["inclusion_probability"] = np.where(gold["chat_id"] < "c12", 0.9, 0.3)
    path = tmp_path / "weighted.csv"
    gold.to_csv(path, index=False)
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", str(path), "--variable", "empathy")
    assert result.exit_code == 0, result.output
    assert "simple random sample" not in result.output
    (model,) = json.loads((tmp_path / "e" / "estimate.json").read_text())["models"]
    assert model["design"] == "inclusion probabilities from the gold"
    weighted = gold[gold["variable"] == "empathy"]
    expected = np.average(weighted["value"], weights=1 / weighted["inclusion_probability"])
    assert model["terms"][0]["human_only"]["estimate"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formula", "warmth ~ C(escalation)"], "'warmth' is not a variable of the run"),
        (["--formula", "empathy ~ colour"], "formula names 'colour', which is not a column"),
        (["--formula", "empathy ~ C(escalation)", "--family", "logit"], "needs a 0/1 outcome"),
        (["--variable", "empathy", "--label", "expected"], "have no probabilities"),
    ],
)
def test_bad_estimate_requests_are_one_line(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path, args: list[str], message: str
) -> None:
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", str(ROOT / "examples" / "gold.csv"), *args)
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_missing_covariates_stop_the_estimate_unless_dropped(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    covariates = tmp_path / "cov.csv"
    chats = [f"c{i:02d}" for i in range(1, 31)]
    pd.DataFrame({"chat_id": chats[3:], "shift": ["day", "night"] * 13 + ["day"]}).to_csv(covariates, index=False)
    gold = str(ROOT / "examples" / "gold.csv")
    args = ["--gold", gold, "--covariates", str(covariates), "--formula", "initial_urgency ~ C(shift)"]
    stopped = estimate(labelled_run, library, tmp_path / "e", *args)
    assert stopped.exit_code == 1
    assert "3 of 30 chats have no shift (c01, c02, c03): add them, or pass --drop-missing" in stopped.output
    dropped = estimate(labelled_run, library, tmp_path / "e", *args, "--drop-missing")
    assert dropped.exit_code == 0, dropped.output
    assert "3 of 30 chats have no shift (c01, c02, c03): dropped" in dropped.output
    (model,) = json.loads((tmp_path / "e" / "estimate.json").read_text())["models"]
    assert model["units"] == 27


def test_too_few_human_labels_for_the_model(labelled_run: Path, library: PromptLibrary, tmp_path: Path) -> None:
    gold = pd.read_csv(ROOT / "examples" / "gold.csv")
    few = tmp_path / "few.csv"
    gold[gold["variable"] == "empathy"].head(8).to_csv(few, index=False)
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", str(few), "--variable", "empathy")
    assert result.exit_code == 1 and "8 human labels match" in result.output and "needs at least 10" in result.output


def test_gold_that_chose_a_prompt_is_flagged_as_development_data(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = tmp_path / "dev.csv"
    gold.write_bytes((ROOT / "examples" / "gold.csv").read_bytes())
    dirs = ["--prompts-dir", str(library.prompts_dir), "--rubrics-dir", str(library.rubrics_dir)]
    diff = CliRunner().invoke(
        app,
        [
            *("diff", "empathy", "v1", "v2", "--on", str(EXAMPLES), "--gold", str(gold), "--out", str(tmp_path / "d")),
            *("--backend", "fake", "--limit", "6", "--bootstrap", "0", *dirs),
        ],
    )
    assert diff.exit_code == 0, diff.output
    recorded = json.loads((tmp_path / "d" / "agreement.json").read_text())["gold_sha256"]
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", str(gold), "--variable", "empathy")
    assert result.exit_code == 0, result.output
    assert "the gold a prompt diff used to choose a prompt" in result.output
    assert json.loads((tmp_path / "e" / "estimate.json").read_text())["gold_sha256"] == recorded
