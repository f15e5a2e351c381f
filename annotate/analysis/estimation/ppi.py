"""Prediction-powered estimates of regression coefficients, with design weights and chat clusters.

Every unit has an LLM label ``yhat``; a sample of them also has a human label ``y``, drawn with known
inclusion probabilities ``pi``. Three estimators, all from one machinery (``Parts``, computed once per
model by ``decompose``):

- human only: the weighted fit of ``y`` on the coded units, weights ``1/pi`` (the Hajek form: a ratio of
  weighted sums, so ``sum 1/pi`` need not equal the number of units; it has a small bias, of order
  1/n, which the coverage grid in docs/methods.md measures);
- LLM only: the fit of ``yhat`` on all units, as if the LLM were right (biased when it errs);
- prediction-powered: ``theta_human(y) + lam * (theta_all(yhat) - theta_human(yhat))`` per coefficient.
  The bracket is the LLM labels' own coefficient over all units minus the same fit on the coded units
  only: it has mean zero whatever the labeller, so the estimate is valid for any labeller and any
  ``lam``; it helps exactly as far as the LLM labels' error in the coded sample tracks the human one's.
  For OLS this is ppi-python's PPI++ point estimate; for the logit it is the same control-variate
  form (ppi-python solves one joint equation instead; both have the same first-order behaviour).

Variances come from each fit's influence on its coefficients, summed within chats and over chats, each
chat's sum divided by one minus its leverage, times (G - 1) / G: the one-step leave-one-chat-out
(jackknife, CR3-type) form, which stays honest when a few heavily weighted chats pull the fit towards
themselves. Because the coded units are part of all units, the covariance between the two parts is in
the chat sums. Intervals use Student's t with Kish's effective number of coded chats minus the terms.

``lam`` is cross-fitted (shares.py): each half of the coded chats uses the share chosen, and tested, on the
other half, so the choice never flatters the estimate or the variance it enters. A labeller that carries no
information earns nothing (a constant labeller gives ``lam = 0`` exactly), and ``lam = 0`` is the human-only
estimate and interval, to the last digit.

Degenerate data is "not estimable", with a reason, rather than a number: a constant or separated
outcome, a coefficient whose human labels do not vary, weights that leave fewer effective coded chats
than the model has terms plus two.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import null_space
from scipy.stats import norm
from scipy.stats import t as student_t

from annotate.analysis.estimation.glm import Array, Family, GLMFit, fit_glm, number, shifted_influence
from annotate.analysis.estimation.shares import cross_fitted_shares, kish, mean_share, shared_variance

LEVEL = 0.95
MAX_LEVERAGE = 0.99
MIN_EFFECTIVE_DF = 2
"""Effective coded chats (Kish) minus terms below which no interval is given."""


@dataclass(frozen=True)
class Sample:
    """The data of one estimate: all units (LLM labels) and the human-labelled subset."""

    x_all: Array
    """The model's terms for all units, from LLM labels where a regressor is LLM-measured."""
    yhat_all: Array
    clusters_all: NDArray[np.int64]
    x: Array
    """The terms of the human-labelled units, from human labels where a regressor is LLM-measured."""
    y: Array
    yhat: Array
    clusters: NDArray[np.int64]
    weights: Array
    """Inverse inclusion probabilities of the human-labelled units (any common scale)."""
    xhat: Array
    """The terms of the human-labelled units as the LLM measured them (``x`` when no regressor is LLM-measured)."""
    labelled: NDArray[np.int64]
    """Positions of the human-labelled units among all units."""

    def predicting(self, yhat_all: Array) -> Sample:
        """The same sample with other predictions standing in for the LLM labels (e.g. a cross-fitted combination)."""
        return replace(self, yhat_all=yhat_all, yhat=yhat_all[self.labelled])

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def big_n(self) -> int:
        return len(self.yhat_all)

    @property
    def coded_chats(self) -> int:
        return len(np.unique(self.clusters))

    @property
    def kish_chats(self) -> float:
        """Kish's effective number of coded chats from the chats' own weights (the mean of their units' inverse
        inclusion probabilities): equal-probability chats count fully however many rounds each has."""
        _, index = np.unique(self.clusters, return_inverse=True)
        chat = np.bincount(index, weights=self.weights) / np.bincount(index)
        return kish(chat)

    @property
    def kish_units(self) -> float:
        return float(self.weights.sum() ** 2 / np.sum(self.weights**2))


def sample(
    x_all: Array,
    yhat_all: Array,
    labelled: NDArray[np.int64],
    y: Array,
    inclusion: Array | None = None,
    clusters_all: NDArray[np.int64] | None = None,
    x_human: Array | None = None,
) -> Sample:
    """A Sample from all units and the positions (into them) of the human-labelled ones; ``x_human`` holds the
    coded units' terms from human labels when some regressor is LLM-measured (predict-then-debias)."""
    clusters_all = np.arange(len(yhat_all)) if clusters_all is None else clusters_all
    weights = np.ones(len(y)) if inclusion is None else 1.0 / np.asarray(inclusion, dtype=float)
    return Sample(
        x_all=x_all,
        yhat_all=yhat_all,
        clusters_all=clusters_all,
        x=x_all[labelled] if x_human is None else x_human,
        y=y,
        yhat=yhat_all[labelled],
        clusters=clusters_all[labelled],
        weights=weights / weights.mean(),
        xhat=x_all[labelled],
        labelled=labelled,
    )


@dataclass(frozen=True)
class Fit:
    """One estimator's coefficients, standard errors and degrees of freedom; NaN where not estimable."""

    coef: Array
    se: Array
    df: float
    lam: Array
    """Per coefficient: the LLM labels' share (0 for the human-only estimate)."""
    problems: list[str | None]
    """Per coefficient: why it is not estimable, or None."""
    llm_var: Array = field(default_factory=lambda: np.zeros(0))
    """The part of ``se**2`` that comes from the LLM labels of all units (does not shrink with more coding)."""

    def interval(self, level: float = LEVEL) -> tuple[Array, Array]:
        """Student's t interval with ``df`` degrees of freedom (effective coded chats minus terms)."""
        q = student_t.ppf(0.5 + level / 2, self.df) if self.df >= 1 else np.nan
        return self.coef - q * self.se, self.coef + q * self.se

    @property
    def estimable(self) -> NDArray[np.bool_]:
        return np.array([p is None for p in self.problems])


# -- cluster sums and the three estimators


@dataclass(frozen=True)
class Parts:
    """One model's fits, decomposed once into per-chat pieces: every estimator and every worth is built from these.

    Chat sums of each fit's influence, on one index of chats (all chats, coded or not), and the jackknife factors
    (G - 1) / G."""

    human: GLMFit
    llm_all: GLMFit
    llm_coded: GLMFit
    p: Array
    """Per chat: the human-only estimate's influence."""
    q_coded: Array
    """Per chat: minus the coded-units LLM fit's influence."""
    q_all: Array
    """Per chat: the all-units LLM fit's influence."""
    gap: Array
    """Per chat: its exact share of the LLM bracket ``coef(all units) - coef(coded units)`` (zero for uncoded
    chats; the bracket's all-units part is spread over the coded chats by their weight in the coded fit)."""
    coded: NDArray[np.bool_]
    """Per chat: whether it was coded."""
    chat_weight: Array
    """Per chat: the sum of its coded units' weights."""
    chat_units: Array
    """Per chat: its coded units."""
    factor_coded: float
    factor_all: float
    df_coded: float
    df_all: float
    terms: int
    cell_problems: list[str | None]
    data: Sample
    """The units the fits were made from (the worth's bootstrap updates the coded-unit fits in each resample)."""
    family: Family


def decompose(data: Sample, family: Family = "ols") -> Parts:
    """The three fits of one model and their per-chat pieces (computed once per model)."""
    k = data.x.shape[1]
    ids = np.unique(data.clusters_all)
    coded_index, all_index = np.searchsorted(ids, data.clusters), np.searchsorted(ids, data.clusters_all)
    human = fit_glm(data.x, data.y, data.weights, family, "human labels")
    llm_all = fit_glm(data.x_all, data.yhat_all, np.ones(data.big_n), family, "LLM labels")
    llm_coded = fit_glm(data.xhat, data.yhat, data.weights, family, "LLM labels of the coded units")

    def sums(values: Array, index: NDArray[np.int64]) -> Array:
        out = np.zeros((len(ids), k))
        np.add.at(out, index, values)
        return out

    def jackknifed(fit: GLMFit, index: NDArray[np.int64]) -> Array:
        """Chat sums of influence, each divided by 1 - the chat's leverage: the one-step leave-one-chat-out
        (CR3) form, exact for OLS with one unit per chat (HC3). Heavily weighted chats pull the fit towards
        themselves, so their residuals understate their error; this undoes that."""
        leverage = np.bincount(index, weights=fit.leverage, minlength=len(ids))
        return sums(fit.influence, index) / (1 - np.minimum(leverage, MAX_LEVERAGE))[:, None]

    if llm_coded.problem or llm_all.problem or llm_coded.partial or llm_all.partial:
        gap = np.zeros((len(ids), k))
    else:
        gap = -sums(shifted_influence(llm_coded, data.xhat, llm_coded.coef - llm_all.coef), coded_index)
    chats_coded, chats_all = data.coded_chats, len(ids)
    return Parts(
        human=human,
        llm_all=llm_all,
        llm_coded=llm_coded,
        p=jackknifed(human, coded_index),
        q_coded=-jackknifed(llm_coded, coded_index),
        q_all=jackknifed(llm_all, all_index),
        gap=gap,
        coded=np.bincount(coded_index, minlength=len(ids)) > 0,
        chat_weight=np.bincount(coded_index, weights=data.weights, minlength=len(ids)).astype(float),
        chat_units=np.bincount(coded_index, minlength=len(ids)).astype(float),
        factor_coded=(chats_coded - 1) / chats_coded if chats_coded > 1 else np.nan,
        factor_all=(chats_all - 1) / chats_all if chats_all > 1 else np.nan,
        df_coded=min(float(chats_coded), data.kish_chats) - k,
        df_all=float(chats_all - k),
        terms=k,
        cell_problems=_flat_cells(data, human) if family == "ols" else [None] * k,
        data=data,
        family=family,
    )


def _flat_cells(data: Sample, human: GLMFit) -> list[str | None]:
    """Terms resting on a group of coded units (same terms, two or more chats) whose human labels all agree:
    without the group the term could not be estimated at all, and the sandwich gives the group no variance,
    so the interval would claim a precision the data lack (rare outcomes, small cells). A group of units that
    merely happen to share the values of numeric regressors rests no term on itself and is left alone."""
    k = data.x.shape[1]
    problems: list[str | None] = [None] * k
    if human.problem:
        return problems
    _, index = np.unique(data.x, axis=0, return_inverse=True)
    index = index.ravel()
    for cell in np.unique(index):
        members = index == cell
        if len(np.unique(data.clusters[members])) < 2 or np.ptp(data.y[members]) != 0:
            continue
        free = null_space(data.x[~members]) if (~members).any() else np.eye(k)
        for j in np.flatnonzero(np.abs(free).max(axis=1, initial=0) > 1e-9):
            problems[j] = problems[j] or (
                f"all {int(members.sum())} human labels of one group are {number(data.y[members][0])}: "
                "its variance cannot be estimated"
            )
    return problems


def _finish(coef: Array, var: Array, df: float, lam: Array, problems: list[str | None], llm_var: Array) -> Fit:
    problems = list(problems)
    if df < MIN_EFFECTIVE_DF:
        terms = "1 term" if len(coef) == 1 else f"{len(coef)} terms"
        reason = f"the weights leave {df + len(coef):.1f} effective coded chats for {terms}"
        problems = [p or reason for p in problems]
    ok = np.array([p is None for p in problems])
    coef = np.where(ok, coef, np.nan)
    se = np.where(ok, np.sqrt(np.maximum(var, 0)), np.nan)
    return Fit(coef, se, df, np.where(ok, lam, np.nan), problems, np.where(ok, llm_var, np.nan))


def human_only(data: Sample, family: Family = "ols") -> Fit:
    """The classical estimate from the human labels alone (weighted by inverse inclusion probabilities)."""
    return _human(decompose(data, family))


def _human(parts: Parts) -> Fit:
    fit, k = parts.human, parts.terms
    var = parts.factor_coded * np.sum(parts.p**2, axis=0)
    problems = [
        fit.term_problem(j) or cell or _flat(var[j], fit.coef[j], "human") for j, cell in enumerate(parts.cell_problems)
    ]
    return _finish(fit.coef, var, parts.df_coded, np.zeros(k), problems, np.zeros(k))


def _flat(var: float, coef: float, who: str) -> str | None:
    scale = max(1.0, abs(coef)) if np.isfinite(coef) else 1.0
    return f"the {who} labels behind this term do not vary" if not var > 1e-24 * scale**2 else None


def llm_only(data: Sample, family: Family = "ols") -> Fit:
    """The naive estimate that treats the LLM labels of all units as if they were true."""
    return _llm(decompose(data, family))


def _llm(parts: Parts) -> Fit:
    fit = parts.llm_all
    var = parts.factor_all * np.sum(parts.q_all**2, axis=0)
    problems = [fit.term_problem(j) or _flat(var[j], fit.coef[j], "LLM") for j in range(len(var))]
    k = len(var)
    return _finish(fit.coef, var, parts.df_all, np.zeros(k), problems, var)


def ppi(data: Sample, family: Family = "ols", lam: float | None = None, seed: int = 0) -> Fit:
    """The prediction-powered estimate; ``lam=None`` gives each half of the coded chats the share chosen on the
    other half (see ``cross_fitted_shares``)."""
    return _ppi(decompose(data, family), lam, seed)


def three(data: Sample, family: Family = "ols", seed: int = 0) -> dict[str, Fit]:
    """LLM-only, human-only and prediction-powered fits from one decomposition of the data."""
    return fits(decompose(data, family), seed)


def fits(parts: Parts, seed: int = 0) -> dict[str, Fit]:
    """LLM-only, human-only and prediction-powered fits of one decomposed model."""
    return {"llm_only": _llm(parts), "human_only": _human(parts), "ppi": _ppi(parts, None, seed)}


def _ppi(parts: Parts, lam: float | None, seed: int) -> Fit:
    human = _human(parts)
    if lam == 0 or any(f.problem or f.partial for f in (parts.llm_all, parts.llm_coded)):
        return human
    k = parts.terms
    shares = np.full((len(parts.p), k), float(lam)) if lam is not None else cross_fitted_shares(parts, seed)
    coef, var, average, llm_var = human.coef.copy(), human.se**2, np.zeros(k), np.zeros(k)
    for j in np.flatnonzero(human.estimable):
        if not shares[:, j].any():
            continue
        average[j] = mean_share(parts, shares[:, j])
        coef[j] = parts.human.coef[j] + float(shares[:, j] @ parts.gap[:, j])
        var[j] = shared_variance(parts, shares[:, j], int(j))
        llm_var[j] = parts.factor_coded * average[j] ** 2 * np.sum(parts.q_all[:, j] ** 2)
    return _finish(coef, var, parts.df_coded, average, human.problems, llm_var)


def labels_for_width(fit: Fit, n: int, width: float, level: float = LEVEL) -> Array:
    """Human labels needed for an interval of ``width`` (all else as now); inf when the LLM part alone is wider.

    The coded part of the variance shrinks as 1/n; the LLM labels' own part stays (normal quantile)."""
    z = norm.ppf(0.5 + level / 2)
    coded = fit.se**2 - fit.llm_var
    room = (width / (2 * z)) ** 2 - fit.llm_var
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(room > 0, np.ceil(n * coded / np.where(room > 0, room, 1)), np.inf)
