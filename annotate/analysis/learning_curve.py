"""How well a learned labeller did, and what it could save: cross-validated κ, quadratic κ and AUROC with chat-
bootstrap intervals at each point of the learning curve, the source run's zero-shot κ on the same units, ρ,
and the worth ``estimate`` gives the learned labels for a mean.

Every figure comes from out-of-fold predictions: a coded unit's label is from a model that never saw its chat.
Coded items are weighted by 1/inclusion probability, so a sample drawn where the learner was least sure still
describes the whole run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from annotate.analysis.estimation import mean_worth
from annotate.analysis.learning_results import CurveStatistics, LearningResult, VariableLearning, WorthFigure
from annotate.analysis.results import Worth
from annotate.analysis.statistics import cluster_bootstrap
from annotate.learning.learn import Learned
from annotate.learning.learn import VariableLearning as Learning

Array = NDArray[np.float64]
RISING = 0.05
"""κ gained from half the coded chats to all of them above which coding more is called likely to pay."""


def learning_result(learned: Learned, run_dir: str, n_boot: int = 1000, seed: int = 0) -> LearningResult:
    info = learned.manifest.learned
    assert info is not None
    return LearningResult(
        run_dir=run_dir,
        source_run=info.source_run,
        coded=info.coded,
        features=info.features,
        folds=info.folds,
        seed=info.seed,
        variables=[_variable(v, n_boot, seed, learned.unmatched.get(name, 0)) for name, v in learned.variables.items()],
    )


def _variable(v: Learning, n_boot: int, seed: int, unmatched: int) -> VariableLearning:
    weights = 1.0 / v.coded["inclusion_probability"].fillna(1.0).to_numpy(dtype=float)
    human = v.coded["human"].to_numpy(dtype=int)
    chats = v.coded["chat_id"].to_numpy(dtype=str)
    curve = [
        curve_statistics(p.fraction, human[p.rows], p.probabilities, chats[p.rows], weights[p.rows], v, n_boot, seed)
        for p in v.curve
    ]
    zero, zero_ci, zero_items = _zero_shot(v, human, chats, weights, n_boot, seed)
    notes = [f"{unmatched} coded items name no unit of the run and were left out"] if unmatched else []
    notes += _constant_notes(v)
    if zero is not None and v.coded["llm"].dropna().nunique() == 1:
        value = int(v.coded["llm"].dropna().iloc[0])
        notes.append(f"the source run's labels are all {value}: its κ is 0 by construction, not shown")
        zero, zero_ci = None, None
    return VariableLearning(
        variable=v.variable,
        scale=v.scale,
        units=v.units,
        coded_chats=len(set(chats)),
        coded_items=len(human),
        cv_kappa=curve[-1].kappa if curve else math.nan,
        curve=curve,
        zero_shot_kappa=zero,
        zero_shot_kappa_ci=zero_ci,
        zero_shot_items=zero_items,
        worth=worth_figure(v, human, chats, weights, n_boot, seed),
        more_coding=more_coding(v, human, chats, weights, n_boot, seed),
        penalties=v.penalties,
        notes=notes,
    )


def _constant_notes(v: Learning) -> list[str]:
    labels = np.asarray(v.categories)[v.probabilities.argmax(axis=1)]
    if len(set(labels)) > 1:
        return []
    return [f"the learned labels of the coded units are all {labels[0]}: κ 0 by construction (nothing learned)"]


def kappa(
    a: NDArray[np.int64], b: NDArray[np.int64], weights: Array, categories: list[int], kind: str | None = None
) -> float:
    """Cohen's κ from a weighted confusion table (``kind``: None or quadratic); NaN when undefined."""
    k = len(categories)
    position = {c: i for i, c in enumerate(categories)}
    table = np.zeros((k, k))
    np.add.at(table, ([position[int(x)] for x in a], [position[int(x)] for x in b]), weights)
    total = table.sum()
    if total <= 0:
        return math.nan
    table /= total
    expected = np.outer(table.sum(axis=1), table.sum(axis=0))
    i, j = np.indices((k, k))
    disagreement = (i != j).astype(float) if kind is None else ((i - j) / max(k - 1, 1)) ** 2
    chance = float((disagreement * expected).sum())
    return math.nan if chance <= 1e-12 else 1.0 - float((disagreement * table).sum()) / chance


def concordance(human: NDArray[np.int64], score: Array, weights: Array) -> float:
    """Weighted chance that of two items with different codes the higher-coded one scores higher (ties: half);
    the AUROC for a binary scale."""
    order = np.argsort(human)
    human, score, weights = human[order], score[order], weights[order]
    numerator = denominator = 0.0
    for value in np.unique(human)[1:]:
        low, high = human < value, human == value
        if not low.any():
            continue
        diff = score[high][:, None] - score[low][None, :]
        pair = weights[high][:, None] * weights[low][None, :]
        numerator += float((pair * ((diff > 0) + 0.5 * (diff == 0))).sum())
        denominator += float(pair.sum())
    return math.nan if denominator == 0 else numerator / denominator


def curve_statistics(
    fraction: float,
    human: NDArray[np.int64],
    probabilities: Array,
    chats: NDArray[np.str_],
    weights: Array,
    v: Learning,
    n_boot: int,
    seed: int,
) -> CurveStatistics:
    categories = v.categories
    label = np.asarray(categories)[probabilities.argmax(axis=1)]
    score = probabilities[:, -1] if len(categories) == 2 else probabilities @ np.asarray(categories, dtype=float)
    ordinal = v.scale == "ordinal" and len(categories) > 2

    def stat(rows: NDArray[np.int64]) -> dict[str, float]:
        found = {
            "kappa": kappa(human[rows], label[rows], weights[rows], categories),
            "auroc": concordance(human[rows], score[rows], weights[rows]),
        }
        if ordinal:
            found["kappa_quadratic"] = kappa(human[rows], label[rows], weights[rows], categories, "quadratic")
        return found

    every = np.arange(len(human))
    point, ci = stat(every), _intervals(chats, stat, n_boot, seed)
    return CurveStatistics(
        fraction=fraction,
        chats=len(set(chats)),
        items=len(human),
        kappa=point["kappa"],
        kappa_ci=ci.get("kappa", (math.nan, math.nan)),
        kappa_quadratic=point.get("kappa_quadratic"),
        kappa_quadratic_ci=ci.get("kappa_quadratic") if ordinal else None,
        auroc=point["auroc"],
        auroc_ci=ci.get("auroc", (math.nan, math.nan)),
    )


def _intervals(
    chats: NDArray[np.str_], stat: Callable[[NDArray[np.int64]], dict[str, float]], n_boot: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals over chat resamples (the project's one chat bootstrap)."""
    return cluster_bootstrap(list(chats), stat, n_boot, seed)


def _zero_shot(
    v: Learning, human: NDArray[np.int64], chats: NDArray[np.str_], weights: Array, n_boot: int, seed: int
) -> tuple[float | None, tuple[float, float] | None, int]:
    llm = v.coded["llm"]
    has = llm.notna().to_numpy()
    if not has.any():
        return None, None, 0
    zero = llm[has].to_numpy(dtype=int)
    h, c, w = human[has], chats[has], weights[has]

    def stat(rows: NDArray[np.int64]) -> dict[str, float]:
        return {"kappa": kappa(h[rows], zero[rows], w[rows], v.categories)}

    return stat(np.arange(len(h)))["kappa"], _intervals(c, stat, n_boot, seed).get("kappa"), int(has.sum())


def _rho(human: Array, score: Array, weights: Array) -> float:
    w = weights / weights.sum()
    dh, ds = human - w @ human, score - w @ score
    denominator = math.sqrt(float(w @ dh**2) * float(w @ ds**2))
    return math.nan if denominator <= 1e-12 else float(w @ (dh * ds)) / denominator


def worth_figure(
    v: Learning, human: NDArray[np.int64], chats: NDArray[np.str_], weights: Array, n_boot: int, seed: int
) -> WorthFigure:
    """ρ of the out-of-fold expected value with the coded value (chat-bootstrap interval), and the estimator's
    own worth of the learned labels for the variable's mean in this study: one figure with ``estimate``."""
    score = v.expected[v.positions]

    def stat(rows: NDArray[np.int64]) -> dict[str, float]:
        return {"rho": _rho(human[rows].astype(float), score[rows], weights[rows])}

    rho = stat(np.arange(len(human)))["rho"]
    rho_ci = _intervals(chats, stat, n_boot, seed).get("rho", (math.nan, math.nan))
    if len(human) >= v.units:
        note = "every unit is coded: labels can save no human work here"
        none = Worth(value=None, low=None, high=None, status="none", note=note)
        return WorthFigure(rho=rho, rho_ci=rho_ci, worth=none)
    inclusion = 1.0 / weights
    worth = mean_worth(v.expected, v.positions, human.astype(float), inclusion, v.unit_chats, seed)
    return WorthFigure(rho=rho, rho_ci=rho_ci, worth=worth)


def more_coding(
    v: Learning, human: NDArray[np.int64], chats: NDArray[np.str_], weights: Array, n_boot: int, seed: int
) -> str:
    """Whether κ still rises from half the coded chats to all of them, on the same items (paired chat bootstrap)."""
    half = next((p for p in v.curve if p.fraction == 0.5), None)
    full = next((p for p in v.curve if p.fraction == 1.0), None)
    if half is None or full is None:
        return "not estimable: too few coded chats for a learning curve"
    rows = half.rows
    categories = np.asarray(v.categories)
    before = categories[half.probabilities.argmax(axis=1)]
    after = categories[full.probabilities[rows].argmax(axis=1)]
    h, w, c = human[rows], weights[rows], chats[rows]

    def stat(sub: NDArray[np.int64]) -> dict[str, float]:
        return {
            "gain": kappa(h[sub], after[sub], w[sub], v.categories) - kappa(h[sub], before[sub], w[sub], v.categories)
        }

    gain = stat(np.arange(len(rows)))["gain"]
    low, high = _intervals(c, stat, n_boot, seed).get("gain", (math.nan, math.nan))
    if math.isnan(gain) or math.isnan(low):
        return "not estimable: κ undefined on half the coded chats"
    said = f"κ {gain:+.2f} [{low:+.2f}, {high:+.2f}] from half the coded chats to all"
    if low > 0:
        return f"likely to pay: {said}"
    if high < 0:
        return f"no gain: {said} (κ fell: the curve is noise at this size)"
    if gain >= RISING:
        return f"may pay: {said}, an interval that reaches 0"
    return f"no clear gain: {said}; more coding would mostly narrow intervals"
