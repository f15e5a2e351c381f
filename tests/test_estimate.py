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

from annotate.analysis.estimation import ppi, shares
from annotate.analysis.estimation.worth import worth
from annotate.cli import app
from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from tests.conftest import EXAMPLES, ROOT, library_flags
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


def coded(x: np.ndarray, yhat: np.ndarray, y: np.ndarray, labelled: np.ndarray, **kwargs: object) -> ppi.Sample:
    return ppi.sample(x, yhat, labelled.astype(np.int64), y[labelled], **kwargs)  # type: ignore[arg-type]


@needs_ppi_python
@pytest.mark.parametrize("weighted", [False, True])
def test_the_ols_point_estimate_is_ppi_pythons_at_the_same_share(weighted: bool) -> None:
    import ppi_py

    x, y, yhat, labelled, inclusion = regression_data()
    data = coded(x, yhat, y, labelled, inclusion=inclusion if weighted else None)
    w = 1 / inclusion if weighted else None
    for share in (0.3, 0.8):
        fit = ppi.ppi(data, lam=share)
        expected = ppi_py.ppi_ols_pointestimate(data.x, data.y, data.yhat, x, yhat, lam=share, w=w)
        np.testing.assert_allclose(fit.coef, expected, atol=1e-10)


def test_each_half_of_the_coded_chats_gets_the_share_chosen_on_the_other() -> None:
    """The chats' pieces of the LLM bracket add up to it exactly, and a half's share ignores its own labels."""
    x, y, yhat, labelled, _ = regression_data()
    parts = ppi.decompose(coded(x, yhat, y, labelled))
    bracket = parts.llm_all.coef - parts.llm_coded.coef
    np.testing.assert_allclose(parts.gap.sum(axis=0), bracket, atol=1e-12)
    half = shares.folds(parts, seed=3)
    assert (
        sorted(np.bincount(half[half >= 0])) == [30, 30] and (half[np.setdiff1d(np.arange(len(y)), labelled)] < 0).all()
    )
    chosen = shares.cross_fitted_shares(parts, seed=3)
    assert (chosen > 0).any()
    q = parts.q_coded + parts.q_all
    for fold in (0, 1):
        other = half == 1 - fold
        for j in range(3):
            share, evident = shares.tuned(parts.p[other, j], q[other, j], shares.effective_df(parts, other))
            assert (chosen[half == fold, j] == (share if evident else 0.0)).all()
    fit = ppi.fits(parts, seed=3)["ppi"]
    np.testing.assert_allclose(fit.coef, parts.human.coef + (chosen * parts.gap).sum(axis=0), atol=1e-12)


@pytest.mark.parametrize("clustered", [False, True])
def test_human_only_standard_errors_are_the_leave_one_chat_out_jackknife(clustered: bool) -> None:
    """OLS: the one-step CR3 form is exact, so it equals refitting without each coded chat (weights kept)."""
    x, y, yhat, labelled, inclusion = regression_data()
    chats = np.arange(len(y)) // 3 if clustered else np.arange(len(y))
    data = coded(x, yhat, y, labelled, inclusion=inclusion, clusters_all=chats)
    fit = ppi.human_only(data)
    w = data.weights
    groups = np.unique(data.clusters)
    refits = []
    for g in groups:
        keep = data.clusters != g
        root = np.sqrt(w[keep])
        refits.append(np.linalg.lstsq(data.x[keep] * root[:, None], data.y[keep] * root, rcond=None)[0])
    refits = np.array(refits)
    jackknife = (len(groups) - 1) / len(groups) * ((refits - fit.coef) ** 2).sum(axis=0)
    if not clustered:  # one unit per chat: exact
        np.testing.assert_allclose(fit.se**2, jackknife, rtol=1e-9)
    else:  # several units per chat: the scalar leverage is an approximation of the block
        np.testing.assert_allclose(fit.se**2, jackknife, rtol=0.25)


def test_human_only_is_at_least_statsmodels_cr1_and_equal_without_leverage() -> None:
    import statsmodels.api as sm

    x, y, yhat, labelled, inclusion = regression_data(n=200)
    chats = np.arange(len(y)) // 4
    data = coded(x, yhat, y, labelled, inclusion=inclusion, clusters_all=chats)
    fit = ppi.human_only(data)
    model = sm.WLS(data.y, data.x, weights=data.weights).fit(cov_type="cluster", cov_kwds={"groups": data.clusters})
    np.testing.assert_allclose(fit.coef, model.params, rtol=1e-10)
    assert (fit.se >= model.bse * 0.97).all() and (fit.se <= model.bse * 1.1).all()


def test_a_constant_labeller_earns_nothing() -> None:
    """Defect 1: the fake engine (one answer for all) was credited with human labels. Now lam = 0 exactly."""
    x, y, _, labelled, _ = regression_data(n=12)
    data = coded(x, np.full(len(y), 2.0), y, labelled)
    fits = ppi.three(data)
    np.testing.assert_array_equal(fits["ppi"].lam, 0)
    np.testing.assert_array_equal(fits["ppi"].coef, fits["human_only"].coef)
    np.testing.assert_array_equal(fits["ppi"].se, fits["human_only"].se)
    parts = ppi.decompose(data)
    assert all(w.status == "none" and w.value == 100 for w in worth(parts, fits["human_only"]))


def test_lambda_zero_is_exactly_the_human_only_estimate_and_interval() -> None:
    x, y, yhat, labelled, inclusion = regression_data()
    data = coded(x, yhat, y, labelled, inclusion=inclusion)
    zero, human = ppi.ppi(data, lam=0.0), ppi.human_only(data)
    np.testing.assert_array_equal(zero.coef, human.coef)
    np.testing.assert_array_equal(zero.interval(), human.interval())


def test_when_every_unit_is_coded_the_llm_labels_add_nothing() -> None:
    x, y, yhat, _, _ = regression_data()
    data = ppi.sample(x, yhat, np.arange(len(y)), y)
    fits = ppi.three(data)
    np.testing.assert_allclose(fits["ppi"].lam, 0, atol=1e-12)
    np.testing.assert_allclose(fits["ppi"].se, fits["human_only"].se)


def test_a_labeller_that_knows_nothing_rarely_gets_a_share_and_none_is_exactly_human_only() -> None:
    x, y, _, labelled, inclusion = regression_data(n=40)
    used = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        noise = rng.normal(size=len(y))  # a labeller that knows nothing
        data = coded(x, noise, y, labelled, inclusion=inclusion)
        fits = ppi.three(data, seed=seed)
        same = fits["ppi"].lam == 0
        np.testing.assert_array_equal(fits["ppi"].se[same], fits["human_only"].se[same])
        np.testing.assert_array_equal(fits["ppi"].coef[same], fits["human_only"].coef[same])
        used += int((~same).sum())
    assert used <= 4  # each half's test is at 1%: about 1.2 of the 60 terms by chance


def test_unequal_weights_with_one_sided_errors_keep_their_coverage() -> None:
    """Defect 2: centring the weighted term on its plain mean made SEs up to a third too small."""
    cell = ppi_coverage.Cell("confidence", "one-sided", 40, 1, "ols")
    result = ppi_coverage.run_cell(cell, studies=300, seed=5)
    assert result["human_only"]["coverage"] >= 0.92 and result["ppi"]["coverage"] >= 0.92


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [(np.zeros(60), "the human labels are all 0"), (None, "separated")],
)
def test_constant_or_separated_logit_outcomes_are_not_estimable(outcome: np.ndarray | None, reason: str) -> None:
    """Defect 4: all-zero labels gave -1.50 [-2.57, -0.43] and separated ones 67.20 [66.64, 67.76]."""
    x, _, _, labelled, _ = regression_data()
    y = (x[:, 2] == 1).astype(float) if outcome is None else np.zeros(len(x))
    data = coded(x, y * 0.8 + 0.1, y, labelled)
    fits = ppi.three(data, "logit")
    for name in ("human_only", "ppi"):
        assert not fits[name].estimable.any() and reason in str(fits[name].problems[0])
        assert np.isnan(fits[name].coef).all()


def test_a_rare_logit_outcome_never_raises() -> None:
    """Defect 4: with a rare outcome 23% of studies crashed (LinAlgError) or gave huge coefficients."""
    cell = ppi_coverage.Cell("random", "informative", 20, 1, "rare")
    result = ppi_coverage.run_cell(cell, studies=100, seed=2)
    assert result["human_only"]["refused"] > 0.3  # most samples hold too few events
    assert result["ppi"]["coverage"] >= 0.9


def test_a_group_whose_human_labels_all_agree_is_not_estimable() -> None:
    x = np.column_stack([np.ones(200), np.repeat([0.0, 1.0], 100)])
    y = np.where(x[:, 1] == 1, np.arange(200) % 3, 0.0)
    data = coded(x, y, y, np.arange(0, 200, 5))
    fit = ppi.human_only(data)
    assert "all 20 human labels of one group are 0" in str(fit.problems[0])
    assert not fit.estimable.any()  # the intercept is that group; the contrast rests on it too


def test_few_coded_chats_count_as_chats_not_labels() -> None:
    """Defect 5: rounds from two chats gave zero-width intervals and 'effective n 535 for 24 labels'."""
    x, y, yhat, _, _ = regression_data(big_n=240)
    chats = np.arange(240) // 12
    data = coded(x, yhat, y, np.arange(24), clusters_all=chats)
    assert data.coded_chats == 2
    fits = ppi.three(data)
    assert not fits["human_only"].estimable.any() and not fits["ppi"].estimable.any()
    assert "effective coded chats" in str(fits["human_only"].problems[0])


def test_an_extreme_weight_is_not_estimable_rather_than_precise() -> None:
    """Defect 7: one item with pi = 0.001 among 0.5s collapsed the interval (0.77 -> 0.16)."""
    x, y, yhat, labelled, _ = regression_data(n=22)
    inclusion = np.full(22, 0.5)
    inclusion[3] = 0.001
    data = coded(x, yhat, y, labelled, inclusion=inclusion)
    assert data.kish_chats < 1.1
    assert not ppi.human_only(data).estimable.any()


def test_clusters_of_identical_copies_give_the_same_point_estimate_as_one_copy() -> None:
    x, y, yhat, labelled, _ = regression_data(big_n=200, n=40)
    once = ppi.human_only(coded(x, yhat, y, labelled))
    copies = 3
    chats = np.repeat(np.arange(len(y)), copies)
    rows = np.repeat(labelled, copies) * copies + np.tile(np.arange(copies), len(labelled))
    thrice = ppi.human_only(
        ppi.sample(
            np.repeat(x, copies, axis=0), np.repeat(yhat, copies), rows, np.repeat(y[labelled], copies), None, chats
        )
    )
    np.testing.assert_allclose(thrice.coef, once.coef)
    np.testing.assert_allclose(thrice.se, once.se, rtol=0.02)
    assert thrice.df == once.df


def test_labels_needed_for_a_target_width() -> None:
    x, y, yhat, labelled, _ = regression_data()
    data = coded(x, yhat, y, labelled)
    fit = ppi.human_only(data)
    width = float(np.diff(np.array(fit.interval()), axis=0)[0][1])
    assert ppi.labels_for_width(fit, data.n, width)[1] == pytest.approx(len(labelled) * 1.05, rel=0.1)
    assert ppi.labels_for_width(fit, data.n, width / 2)[1] == pytest.approx(4 * len(labelled) * 1.05, rel=0.1)


@pytest.mark.parametrize("cell", ppi_coverage.grid(quick=True, only="ols")[:8], ids=str)
def test_simulation_intervals_cover_the_true_effect(cell: ppi_coverage.Cell) -> None:
    """The fast version of bench/ppi_coverage.py (1,000 studies a cell there)."""
    result = ppi_coverage.run_cell(cell, studies=150, seed=11)
    assert result["ppi"]["coverage"] >= 0.9 and result["human_only"]["coverage"] >= 0.9
    ratio = result["ppi"]["width"] / result["human_only"]["width"]
    if cell.labeller == "uninformative":
        assert ratio >= 0.97  # no narrower than the humans alone beyond Monte Carlo error
    else:
        assert result["llm_only"]["coverage"] < 0.9  # the biased labeller's own interval misses the truth
        assert ratio < 0.9  # and its labels still narrow the interval


# -- the command


@pytest.fixture
def labelled_run(library: PromptLibrary, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    config = RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake")
    run(config, backend=FakeBackend(script=varied))
    return out


def estimate(run_dir: Path, library: PromptLibrary, out: Path, *args: str) -> object:
    dirs = library_flags(library)
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
    gold = gold[(gold["chat_id"] < "c12") | (gold.index % 2 == 0)].copy()  # every early chat, half of the rest
    gold["inclusion_probability"] = np.where(gold["chat_id"] < "c12", 1.0, 0.5)
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


def test_probabilities_that_do_not_describe_a_sample_of_the_units_stop_the_estimate(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    """Defect 3: with some units given no chance the weights added up to too few units, and the human-only
    estimate was wrong (0.30 for a true 0.42) with nothing said."""
    gold = pd.read_csv(ROOT / "examples" / "gold.csv")
    gold["inclusion_probability"] = 0.1  # every empathy unit is coded, yet each claims a one-in-ten chance
    path = tmp_path / "inconsistent.csv"
    gold.to_csv(path, index=False)
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", str(path), "--variable", "empathy")
    assert result.exit_code == 1, result.output
    assert "inclusion probabilities add up to 220 units (sum of 1/pi) but the run has 22" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_annotators_giving_one_item_different_probabilities_is_one_line(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    """Defect 7: the first row used to win."""
    gold = pd.read_csv(ROOT / "examples" / "gold.csv").assign(inclusion_probability=1.0, annotator="ann")
    other = gold.head(1).assign(annotator="bob", inclusion_probability=0.5)
    path = tmp_path / "two.csv"
    pd.concat([gold, other]).to_csv(path, index=False)
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", str(path), "--variable", "empathy")
    assert result.exit_code == 1, result.output
    line = len(gold) + 2
    assert (
        f"{path}:{line}: field 'inclusion_probability': annotators give item (c01, initial_sentiment)" in result.output
    )


def test_a_constant_labeller_is_credited_with_no_human_labels_end_to_end(
    library: PromptLibrary, tmp_path: Path
) -> None:
    """Defect 1 through the command: the fake engine's single answer earns lambda 0 on every term."""
    out = tmp_path / "run"
    run(RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake"), backend=FakeBackend())
    gold = str(ROOT / "examples" / "gold.csv")
    result = estimate(out, library, tmp_path / "e", "--gold", gold, "--formula", "empathy ~ C(escalation)")
    assert result.exit_code == 0, result.output
    (model,) = json.loads((tmp_path / "e" / "estimate.json").read_text())["models"]
    for term in model["terms"]:
        assert term["lam"] in (0, None)
        assert term["ppi"] == term["human_only"]
        assert term["worth"]["status"] == "none" and term["effective_human_labels"] == model["human_labels"]


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("empathy ~ I(np.lib._npyio_impl.os.system('touch pwned'))", "which formulas may not"),
        ("empathy ~ category.__class__", "reaches into an object; formulas may not"),
        ("empathy ~ 0", "has no terms"),
        ("empathy ~ -1", "has no terms"),
        ("empathy ~ category | escalation", "'|' (a multi-part formula) is not supported"),
        ("empathy ~ value", "a column the estimate uses itself"),
        ("empathy ~ yhat", "a column the estimate uses itself"),
    ],
)
def test_formulas_are_data_not_code(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path, formula: str, message: str, monkeypatch: object
) -> None:
    """Defect 8: a formula ran a shell command."""
    import os

    os.chdir(tmp_path)
    result = estimate(
        labelled_run, library, tmp_path / "e", "--gold", str(ROOT / "examples" / "gold.csv"), "--formula", formula
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"shift": "NA"}, "1 of 30 chats have no hours / shift (c01)"),
        ({"shift": "NaN"}, "1 of 30 chats have no hours / shift (c01)"),
        ({"hours": "inf"}, "cov.csv:2: field 'hours': inf is not a usable value"),
        ({"yhat": "1"}, "cov.csv: field 'yhat': a column the estimate uses itself"),
    ],
)
def test_bad_covariate_values_are_one_line(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path, cells: dict[str, str], message: str
) -> None:
    """Defect 8: 'NA' was read as a category level, so a missing covariate went unnoticed."""
    chats = [f"c{i:02d}" for i in range(1, 31)]
    table = pd.DataFrame({"chat_id": chats, "shift": ["day", "night"] * 15, "hours": np.arange(30.0)})
    for column, value in cells.items():
        table[column] = table.get(column, pd.Series(["0"] * 30)).astype(str)
        table.loc[0, column] = value
    covariates = tmp_path / "cov.csv"
    table.to_csv(covariates, index=False)
    gold = str(ROOT / "examples" / "gold.csv")
    formula = "initial_urgency ~ C(shift) + hours"
    result = estimate(
        labelled_run, library, tmp_path / "e", "--gold", gold, "--covariates", str(covariates), "--formula", formula
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


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
    assert result.exit_code == 1, result.output
    assert "8 human labels match the run's units, from 8 chats" in result.output
    assert "needs at least 10 coded chats" in result.output


def test_gold_that_chose_a_prompt_is_flagged_as_development_data(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = tmp_path / "dev.csv"
    gold.write_bytes((ROOT / "examples" / "gold.csv").read_bytes())
    dirs = library_flags(library)
    diff = CliRunner().invoke(
        app,
        [
            *("diff", "empathy", "v1", "v2", "--on", str(EXAMPLES), "--gold", str(gold), "--out", str(tmp_path / "d")),
            *("--backend", "fake", "--limit", "6", "--bootstrap", "0", *dirs),
        ],
    )
    assert diff.exit_code == 0, diff.output
    recorded = json.loads((tmp_path / "d" / "agreement.json").read_text())["gold_sha256"]
    plain = estimate(labelled_run, library, tmp_path / "p", "--gold", str(gold), "--variable", "empathy")
    assert plain.exit_code == 0 and "a prompt diff used" not in plain.output  # no hidden state between commands
    told = ("--prompt-diff", str(tmp_path / "d"))
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", str(gold), "--variable", "empathy", *told)
    assert result.exit_code == 0, result.output
    assert "the gold a prompt diff used to choose a prompt" in result.output
    assert json.loads((tmp_path / "e" / "estimate.json").read_text())["gold_sha256"] == recorded


def test_equal_probability_chats_count_fully_in_kishs_effective_size_whatever_their_rounds() -> None:
    """Issue 27 (5): 20 chats of 1 to 6 rounds, each chat drawn with the same probability, are 20 effective chats."""
    rng = np.random.default_rng(0)
    rounds = rng.integers(1, 7, 200)
    chat = np.repeat(np.arange(200), rounds)
    coded_chats = rng.choice(200, 20, replace=False)
    labelled = np.flatnonzero(np.isin(chat, coded_chats))
    y = rng.normal(size=len(chat))
    data = ppi.sample(np.ones((len(chat), 1)), y, labelled, y[labelled], np.full(len(labelled), 0.1), chat)
    assert data.kish_chats == pytest.approx(20)
    unequal = ppi.sample(np.ones((len(chat), 1)), y, labelled, y[labelled], rng.uniform(0.05, 0.5, len(labelled)), chat)
    assert unequal.kish_chats < 20


def test_a_logit_separated_in_one_group_refuses_only_that_groups_term() -> None:
    """Issue 27 (5): one small group without events made every term not estimable; now only its own term is, and the
    treatment effect keeps its coverage at a 3% base rate."""
    from scipy.special import expit

    rng = np.random.default_rng(1)
    refused = covered = estimated = 0
    for _ in range(150):
        group, treated = rng.integers(0, 4, 300), rng.integers(0, 2, 300)
        y = (rng.uniform(size=300) < expit(-3.5 + 0.8 * treated + 0.3 * (group == 1))).astype(float)
        x = np.column_stack([np.ones(300), treated, group == 1, group == 2, group == 3]).astype(float)
        fit = ppi.human_only(ppi.sample(x, y.copy(), np.arange(300), y), "logit")
        if fit.problems[1]:
            refused += 1
            continue
        low, high = fit.interval()
        estimated += 1
        covered += int(low[1] <= 0.8 <= high[1])
    assert refused <= 8 and covered / estimated >= 0.92
    y = np.zeros(300)
    y[:60:5] = 1
    group = np.arange(300) % 3
    x = np.column_stack([np.ones(300), np.arange(300) % 2, group == 1, group == 2]).astype(float)
    y[group == 2] = 0
    fit = ppi.human_only(ppi.sample(x, y.copy(), np.arange(300), y), "logit")
    assert fit.problems[3] and "separated by this term" in fit.problems[3]
    assert all(p is None for p in fit.problems[:3]) and np.isfinite(fit.coef[:3]).all()


def test_each_model_is_fitted_once(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27: the three fits of a model (human, LLM over all units, LLM over the coded ones) are computed once
    and every estimator, interval and worth is read from that one decomposition."""
    calls: list[str] = []
    original = ppi.fit_glm

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(str(args[-1]))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ppi, "fit_glm", counting)
    gold = str(ROOT / "examples" / "gold.csv")
    formulas = ("--formula", "empathy ~ C(escalation)", "--formula", "information_seeking ~ 1")
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", gold, *formulas)
    assert result.exit_code == 0, result.output
    assert sorted(calls) == sorted(["human labels", "LLM labels", "LLM labels of the coded units"] * 2)


def test_the_estimate_verdict_counts_effects_not_intercepts_or_means(
    labelled_run: Path, library: PromptLibrary, tmp_path: Path
) -> None:
    gold = str(ROOT / "examples" / "gold.csv")
    formulas = ("--formula", "empathy ~ C(escalation)", "--formula", "information_seeking ~ 1")
    result = estimate(labelled_run, library, tmp_path / "e", "--gold", gold, *formulas)
    assert result.exit_code == 0, result.output
    models = json.loads((tmp_path / "e" / "estimate.json").read_text())["models"]
    effects = [t for t in models[0]["terms"] if t["term"] != "Intercept"]
    html = (tmp_path / "e" / "report.html").read_text()
    assert f"of {len(effects)} effects have prediction-powered intervals that exclude 0" in html
    assert f"{sum(len(m['terms']) for m in models)} coefficients" in html


def test_the_worth_shown_is_not_a_winners_curse_and_chosen_shares_keep_their_coverage() -> None:
    """Issue 27 (1-3), fast version of bench/worth_honesty.py (docs/methods.md has the 1,000-study grid): where the
    LLM gets a share, the mean worth shown is near the true variance ratio of the estimate returned, its
    interval covers that truth, and the estimate's interval keeps its coverage among the studies that used the
    LLM; under 60 coded chats no worth is shown at all."""
    import worth_honesty

    strong = worth_honesty.run_cell(worth_honesty.Cell(0.5, 60, "mean"), studies=300, seed=11)
    assert strong["used"] > 0.8 and strong["shown"] > 0.8
    assert strong["reported_when_used"] <= 1.15 * strong["true_worth_used"]
    assert strong["worth_interval_covers"] >= 0.88 and strong["coverage_when_used"] >= 0.92
    weak = worth_honesty.run_cell(worth_honesty.Cell(0.15, 15, "contrast"), studies=300, seed=11)
    assert weak["shown"] == 0  # 15 chats: the share may be used, the worth is not measured
    assert worth_honesty.run_cell(worth_honesty.Cell(0.5, 40, "mean"), studies=30, seed=11)["shown"] == 0
    assert weak["coverage_ppi"] >= weak["coverage_human"] - 0.02 and weak["coverage_ppi"] >= 0.92


def test_validates_forecast_worth_is_measured_as_validate_measures_it_and_is_not_a_winners_curse() -> None:
    """Issue 27 (4), fast version of bench/worth_honesty.py --forecast: the worth measured on the coded chats alone
    (as on a gold set) is near the truth of a study with 4,000 LLM-labelled chats; on 40 chats it is not shown."""
    import worth_honesty

    strong = worth_honesty.run_cell(worth_honesty.Cell(0.5, 60, "mean", forecast=True), studies=60, seed=5)
    assert strong["shown"] > 0.8
    assert strong["reported_when_used"] <= 1.2 * strong["true_worth_used"]
    weak = worth_honesty.run_cell(worth_honesty.Cell(0.15, 40, "mean", forecast=True), studies=20, seed=5)
    assert weak["shown"] == 0


def test_the_worths_bootstrap_sees_how_far_the_worth_moves_with_a_confidence_design() -> None:
    """Fast version of bench/worth_spread.py: with a logit, the confidence design and a one-sided labeller, a
    bootstrap that held each chat's influence fixed saw 0.152 of the worth's 0.218 spread (log scale) across
    studies, and its interval held the truth in 0.77 of them; stepping the fits in each resample sees it."""
    import worth_spread

    cell = ppi_coverage.Cell("confidence", "one-sided", 100, 1, "logit")
    result = worth_spread.spreads(cell, studies=120, refits=0, seed=3)
    assert result["shown"] >= 100
    assert 0.85 <= result["bootstrap"] / result["across"] <= 1.3


@pytest.mark.parametrize(("family", "rounds"), [("ols", 1), ("ols", 4), ("logit", 1), ("logit", 4)])
def test_the_worths_bootstrap_steps_from_the_fits_the_estimate_used(family: str, rounds: int) -> None:
    """The bootstrap updates the coded-unit fits by one Newton step in each resample; a resample that draws every
    chat once must give back the chat influence the estimate itself used, to rounding."""
    from annotate.analysis.estimation.worth import _stepped

    cell = ppi_coverage.Cell("confidence", "one-sided", 100, rounds, family)
    data = ppi_coverage.study(cell, np.random.default_rng(1))
    parts = ppi.decompose(data, "ols" if family == "ols" else "logit")
    every_chat_once = np.ones((2, len(parts.p)))
    for j in range(parts.terms):
        human = _stepped(parts, parts.human, data.x, data.y, every_chat_once, j, parts.p[:, j])
        llm = _stepped(parts, parts.llm_coded, data.xhat, data.yhat, every_chat_once, j, -parts.q_coded[:, j])
        np.testing.assert_allclose(human, np.broadcast_to(parts.p[:, j], human.shape), atol=1e-12)
        np.testing.assert_allclose(llm, np.broadcast_to(-parts.q_coded[:, j], llm.shape), atol=1e-12)


def test_a_collinear_model_names_the_term_and_the_reason() -> None:
    """Issue 29 (5): an LLM-measured control with one value in every unit was refused as "a group is empty?"."""
    from annotate.analysis.estimation.formulas import why_collinear

    ones, treated = np.ones(6), np.array([0, 1, 0, 1, 0, 1.0])
    assert "initial_urgency has one value (3) in every unit" in why_collinear(
        np.column_stack([ones, treated, np.full(6, 3.0)]), ["Intercept", "treated", "initial_urgency"]
    )
    assert "C(g)[T.b] is 0 in every unit" in why_collinear(
        np.column_stack([ones, np.zeros(6)]), ["Intercept", "C(g)[T.b]"]
    )
    combined = why_collinear(np.column_stack([ones, treated, 2 * treated]), ["Intercept", "a", "b"])
    assert "the terms a, b are collinear" in combined


def test_the_markdown_table_escapes_names_from_the_data() -> None:
    """Issue 28 (13): a category with '|', a newline or HTML must not add columns, break rows or inject markup."""
    from annotate.analysis.estimation.estimate_results import Estimator, ModelEstimate, TermEstimate
    from annotate.report.paper import markdown

    e = Estimator(estimate=0.1, se=0.05, low=0.0, high=0.2)
    term = TermEstimate(
        term="C(kind)[T.a|b\n<script>x</script>]", llm_only=e, human_only=e, ppi=e, lam=0.0, effective_human_labels=None
    )
    model = ModelEstimate.model_validate(
        {
            "outcome": "empathy",
            "formula": "empathy ~ C(kind)",
            "family": "ols",
            "clustered_by_chat": False,
            "units": 10,
            "human_labels": 10,
            "chats": 10,
            "coded_chats": 10,
            "effective_coded_chats": 10.0,
            "design": "random",
            "terms": [term.model_dump()],
            "reference_levels": {"kind": "x|y"},
        }
    )
    table = markdown(model)
    row = next(line for line in table.splitlines() if line.startswith("| kind: "))
    header = next(line for line in table.splitlines() if line.startswith("| term"))
    assert row.count(" | ") == header.count(" | ") and "<script>" not in table and "\n<" not in table
    # issue 29 (6): a name a journal prints, against its reference level; the share and the worth in the table
    assert row.startswith("| kind: a\\|b") and "(vs x\\|y)" in row and row.endswith("| 0.00; – |")
    assert "λ; worth /100 coded" in header and "n = 10 human labels from 10 coded chats of N = 10 units" in table
    from annotate.report.paper import latex, term_name

    assert latex(model).startswith("% needs \\usepackage{booktabs}")
    assert term_name("C(escalation)[T.customer_upset]", {"escalation": "ai_unable"}) == (
        "escalation: customer_upset (vs ai_unable)"
    )
    assert term_name("initial_sentiment", {}) == "initial_sentiment"


def test_a_model_with_no_estimable_term_draws_without_a_warning() -> None:
    """Issue 28 (21): matplotlib's legend warning (a source path and a line of code) reached the terminal."""
    import warnings

    from annotate.analysis.estimation.estimate_results import Estimator, TermEstimate
    from annotate.report.plots import coefficients

    none = Estimator(estimate=None, se=None, low=None, high=None, not_estimable="the human labels are all 1")
    term = TermEstimate(term="x", llm_only=none, human_only=none, ppi=none, lam=None, effective_human_labels=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert coefficients([term], "y ~ x").startswith(b"\x89PNG")


def test_a_constant_measured_control_is_named_not_called_collinear(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 29 (5): an LLM-measured control with one value in every unit was refused as "the terms are collinear
    (a group is empty?)"; the refusal names the term and the reason."""
    out = tmp_path / "run"
    run(RunConfig(inputs=[EXAMPLES], out=out, prompts=library.paths, backend="fake"), backend=FakeBackend())
    gold = str(ROOT / "examples" / "gold.csv")
    result = estimate(out, library, tmp_path / "e", "--gold", gold, "--formula", "empathy ~ initial_urgency")
    assert result.exit_code == 1
    assert "initial_urgency has one value (1) in every unit: it cannot be told from the intercept" in result.output


def test_the_figure_axis_calls_slopes_slopes() -> None:
    """Issue 29 (6): the axis said "differences from escalation = ai_unable" for a numeric control's slope too."""
    from annotate.analysis.estimation.estimate_results import Estimator, ModelEstimate, TermEstimate
    from annotate.report.estimate import axis_label

    e = Estimator(estimate=0.1, se=0.05, low=0.0, high=0.2)
    terms = [
        TermEstimate(term=name, llm_only=e, human_only=e, ppi=e, lam=0.0, effective_human_labels=None).model_dump()
        for name in ("Intercept", "C(escalation)[T.supervisor]", "initial_sentiment")
    ]
    fields = {"outcome": "empathy", "formula": "f", "family": "ols", "clustered_by_chat": False, "units": 9}
    counts = {"human_labels": 9, "chats": 9, "coded_chats": 9, "effective_coded_chats": 9.0, "design": "random"}
    model = ModelEstimate.model_validate(
        {**fields, **counts, "terms": terms, "reference_levels": {"escalation": "ai_unable"}}
    )
    label = axis_label(model)
    assert "levels are differences from escalation = ai_unable" in label and "other terms are slopes" in label
    model.terms = model.terms[:2]
    assert "slopes" not in axis_label(model)
