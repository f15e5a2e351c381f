"""Prediction-powered inference (PPI++) for OLS and logistic regression, with design weights and clusters.

Every unit has an LLM label ``yhat``; a random subset also has a human label ``y``, drawn with known
inclusion probabilities. The estimate solves the PPI++ estimating equation (Angelopoulos, Duchi and
Zrnic 2023): the LLM labels of all units, plus the human-minus-LLM correction measured on the human
subset, with the LLM labels' share ``lam`` tuned to minimise the variance (``lam = 0`` is the
human-only estimate, so a useless labeller cannot make the interval worse in large samples).

The point estimates are ppi-python's (``ppi_ols_ci``, ``ppi_logistic_ci``) with the LLM-labelled set
being *all* units and the human subset weighted by inverse inclusion probabilities. Two things
ppi-python does not cover are added:

- the human subset is part of the LLM-labelled set here, not an independent second sample, so the
  variance has a covariance term, ``2 lam Cov(psi - lam psi_hat, psi_hat) / N``: without it a run whose
  every unit is coded would claim more information than its human labels hold. The variance-minimising
  share is then ``lam = Cov(psi, psi_hat) / Var(psi_hat)`` (traces over coefficients), clipped to [0, 1];
- cluster-robust (CR1) variances, summing gradients within a chat, when a chat has several units.

With ``labelled_in_all=False`` (an independent LLM-only set, ppi-python's setting) and one unit per
cluster, estimates and intervals equal ppi-python's; tests/test_estimate.py checks both settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import norm
from scipy.stats import t as student_t

Family = Literal["ols", "logit"]
Array = NDArray[np.float64]


@dataclass(frozen=True)
class Sample:
    """The data of one estimate: all units (LLM labels) and the human-labelled subset."""

    x_all: Array
    yhat_all: Array
    clusters_all: NDArray[np.int64]
    x: Array
    y: Array
    yhat: Array
    clusters: NDArray[np.int64]
    weights: Array
    """Inverse inclusion probabilities of the human-labelled units, scaled to mean 1."""
    labelled_in_all: bool = True
    """The human-labelled units are among ``x_all`` (a sample of them), not a separate sample."""

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def big_n(self) -> int:
        return len(self.yhat_all)


@dataclass(frozen=True)
class Fit:
    """One estimator's coefficients with their variance parts (``se**2 = labelled / n + unlabelled / N``)."""

    coef: Array
    labelled_var: Array
    """Per coefficient: n times the variance contributed by the human subset."""
    unlabelled_var: Array
    """Per coefficient: N times the variance contributed by the LLM labels of all units."""
    n: int
    big_n: int
    lam: Array
    """Per coefficient: the share of the LLM labels (0 for the human-only estimate)."""

    @property
    def se(self) -> Array:
        """NaN where the variance estimate is negative (tiny samples): ``ppi`` then uses the human-only fit."""
        with np.errstate(invalid="ignore"):
            return np.sqrt(self.labelled_var / self.n + (self.unlabelled_var / self.big_n if self.big_n else 0.0))

    def interval(self, level: float = 0.95, df: int | None = None) -> tuple[Array, Array]:
        """Normal interval (ppi-python's); with ``df``, Student's t, which covers better with few human labels."""
        q = norm.ppf(0.5 + level / 2) if df is None else student_t.ppf(0.5 + level / 2, max(df, 1))
        return self.coef - q * self.se, self.coef + q * self.se


def sample(
    x_all: Array,
    yhat_all: Array,
    labelled: NDArray[np.int64],
    y: Array,
    inclusion: Array | None = None,
    clusters_all: NDArray[np.int64] | None = None,
) -> Sample:
    """A Sample from all units and the positions (into them) of the human-labelled ones."""
    clusters_all = np.arange(len(yhat_all)) if clusters_all is None else clusters_all
    weights = np.ones(len(y)) if inclusion is None else 1.0 / inclusion
    return Sample(
        x_all=x_all,
        yhat_all=yhat_all,
        clusters_all=clusters_all,
        x=x_all[labelled],
        y=y,
        yhat=yhat_all[labelled],
        clusters=clusters_all[labelled],
        weights=weights / weights.mean(),
    )


def ppi(data: Sample, family: Family = "ols", lam: float | None = None, never_wider: bool = True) -> Fit:
    """The PPI++ estimate; ``lam=None`` tunes the LLM labels' share for each coefficient separately.

    Tuning per coefficient (ppi-python's ``coord``) lets each coefficient use the LLM labels as far as
    they help it. Each share is tuned twice, as ppi-python's ``*_ci`` functions do: at the estimate with
    ``lam = 1``, then at the one it gives. In small samples the tuned share can still give a wider
    interval than the human labels alone (the share is tuned on noisy variance estimates); the
    coefficient then takes share 0, the human-only estimate, so PPI is never reported wider
    (``never_wider=False`` keeps ppi-python's behaviour, for the tests that compare with it).
    """
    if lam is not None:
        return _fit(data, family, lam)
    human = _fit(data, family, 0.0)
    fits = []
    for j in range(data.x.shape[1]):
        share = 1.0
        for _ in range(2):
            share = _tuned_lambda(data, _stats(data, family, _point(data, family, share), use_all=True), j)
        tuned = _fit(data, family, share)
        fits.append(tuned if tuned.se[j] <= human.se[j] or not never_wider else human)
    pick = np.arange(len(fits))
    return Fit(
        coef=np.array([f.coef[j] for j, f in zip(pick, fits, strict=True)]),
        labelled_var=np.array([f.labelled_var[j] for j, f in zip(pick, fits, strict=True)]),
        unlabelled_var=np.array([f.unlabelled_var[j] for j, f in zip(pick, fits, strict=True)]),
        n=data.n,
        big_n=data.big_n,
        lam=np.array([f.lam[0] for f in fits]),
    )


def _fit(data: Sample, family: Family, lam: float) -> Fit:
    """The estimate with a given share of the LLM labels, with its variance parts."""
    coef = _point(data, family, lam)
    stats = _stats(data, family, coef, use_all=lam != 0)
    labelled = _diag(stats.inv_h, _cov(stats.g - lam * stats.g_hat, data.clusters))
    unlabelled = np.zeros_like(coef)
    if lam != 0:
        middle = lam**2 * _cov(stats.g_hat_all, data.clusters_all)
        if data.labelled_in_all:
            middle += lam * _overlap(stats.g - lam * stats.g_hat, stats.g_hat_all, data)
        unlabelled = _diag(stats.inv_h, middle)
    return Fit(coef, labelled, unlabelled, data.n, data.big_n, np.full(len(coef), float(lam)))


def human_only(data: Sample, family: Family = "ols") -> Fit:
    """The classical estimate from the human labels alone (weighted by inverse inclusion probabilities)."""
    fit = ppi(data, family, lam=0.0)
    return Fit(fit.coef, fit.labelled_var, fit.unlabelled_var, fit.n, 0, fit.lam)


def llm_only(data: Sample, family: Family = "ols") -> Fit:
    """The naive estimate that treats the LLM labels of all units as if they were true."""
    everyone = Sample(
        x_all=data.x_all,
        yhat_all=data.yhat_all,
        clusters_all=data.clusters_all,
        x=data.x_all,
        y=data.yhat_all,
        yhat=data.yhat_all,
        clusters=data.clusters_all,
        weights=np.ones(data.big_n),
    )
    return human_only(everyone, family)


def _point(data: Sample, family: Family, lam: float) -> Array:
    if family == "ols":
        imputed = _wls(data.x_all, lam * data.yhat_all, np.ones(data.big_n))
        return imputed + _wls(data.x, data.y - lam * data.yhat, data.weights)
    return _logistic_point(data, lam)


def _wls(x: Array, y: Array, w: Array) -> Array:
    root = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(x * root[:, None], y * root, rcond=None)
    return np.asarray(coef, dtype=float)


def _logistic_point(data: Sample, lam: float) -> Array:
    """Minimise the rectified logistic loss (ppi-python's, with its L-BFGS-B settings)."""
    n, big_n, w = data.n, data.big_n, data.weights

    def loss(theta: Array) -> float:
        eta_all, eta = data.x_all @ theta, data.x @ theta
        total = lam / big_n * np.sum(-data.yhat_all * eta_all + np.logaddexp(0, eta_all))
        total -= lam / n * np.sum(w * (-data.yhat * eta + np.logaddexp(0, eta)))
        return float(total + np.sum(w * (-data.y * eta + np.logaddexp(0, eta))) / n)

    def grad(theta: Array) -> Array:
        g = lam / big_n * data.x_all.T @ (expit(data.x_all @ theta) - data.yhat_all)
        g -= lam / n * data.x.T @ (w * (expit(data.x @ theta) - data.yhat))
        return np.asarray(g + data.x.T @ (w * (expit(data.x @ theta) - data.y)) / n, dtype=float)

    start = np.zeros(data.x.shape[1])
    result = minimize(loss, start, jac=grad, method="L-BFGS-B", tol=1e-15, options={"ftol": 1e-15})
    return np.asarray(result.x, dtype=float)


@dataclass(frozen=True)
class _Stats:
    g: Array
    """Per human-labelled unit: the weighted gradient with the human label."""
    g_hat: Array
    """The same with the LLM label."""
    g_hat_all: Array
    """Per unit of the LLM-labelled set: the gradient with the LLM label."""
    inv_h: Array


def _stats(data: Sample, family: Family, coef: Array, use_all: bool) -> _Stats:
    """Per-unit gradients and the inverse Hessian (ppi-python's ``_ols_get_stats`` / ``_logistic_get_stats``)."""
    mean = _mean_function(family)
    mu, mu_all = mean(data.x @ coef), mean(data.x_all @ coef)
    curvature = np.ones_like if family == "ols" else (lambda m: m * (1 - m))
    w = data.weights
    g = data.x * (w * (mu - data.y))[:, None]
    g_hat = data.x * (w * (mu - data.yhat))[:, None]
    g_hat_all = data.x_all * (mu_all - data.yhat_all)[:, None]
    if use_all:
        hessian = (data.x.T * (w * curvature(mu))) @ data.x + (data.x_all.T * curvature(mu_all)) @ data.x_all
        hessian /= data.n + data.big_n
    else:
        hessian = (data.x.T * (w * curvature(mu))) @ data.x / data.n
    return _Stats(g, g_hat, g_hat_all, np.linalg.inv(hessian))


def _mean_function(family: Family) -> Callable[[Array], Array]:
    return (lambda eta: eta) if family == "ols" else expit


def _cov(values: Array, clusters: NDArray[np.int64]) -> Array:
    """n times the variance of the mean of ``values``, summing within clusters (CR1); np.cov for singletons."""
    centred = values - values.mean(axis=0)
    _, index = np.unique(clusters, return_inverse=True)
    sums = np.zeros((index.max() + 1, values.shape[1]))
    np.add.at(sums, index, centred)
    groups = len(sums)
    return np.asarray(sums.T @ sums / len(values) * groups / max(groups - 1, 1), dtype=float)


def _diag(inv_h: Array, middle: Array) -> Array:
    return np.diag(inv_h @ middle @ inv_h).copy()


def _tuned_lambda(data: Sample, stats: _Stats, coord: int | None = None) -> float:
    """The LLM labels' share that minimises the variance ``ppi`` reports, clipped to [0, 1]: of coefficient
    ``coord``, or the sum over all coefficients."""
    n, big_n = data.n, data.big_n
    v = stats.inv_h if coord is None else stats.inv_h[coord : coord + 1, :]
    cross = _cross(stats.g, stats.g_hat, data.clusters)  # 2 Cov(g, g_hat), symmetrised
    if data.labelled_in_all:
        numerator = cross / (2 * n) - _overlap(stats.g, stats.g_hat_all, data) / (2 * big_n)
        denominator = _cov(stats.g_hat, data.clusters) / n + _cov(stats.g_hat_all, data.clusters_all) / big_n
        denominator -= _overlap(stats.g_hat, stats.g_hat_all, data) / big_n
        ratio = np.trace(v @ numerator @ v.T), np.trace(v @ denominator @ v.T)
    else:  # ppi-python's rule for an independent LLM-only set
        offset = data.clusters_all.max() + 1
        pooled = np.concatenate([stats.g_hat, stats.g_hat_all])
        var_hat = _cov(pooled, np.concatenate([data.clusters, data.clusters_all + offset]))
        ratio = np.trace(v @ cross @ v.T), 2 * (1 + n / big_n) * np.trace(v @ var_hat @ v.T)
    if ratio[1] <= 1e-12 * max(abs(ratio[0]), 1e-300):
        return 0.0
    return float(np.clip(ratio[0] / ratio[1], 0, 1))


def _cross(a: Array, b: Array, clusters: NDArray[np.int64]) -> Array:
    """(a'b + b'a) / n over cluster sums of the centred values (for one unit per cluster, over units)."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    _, index = np.unique(clusters, return_inverse=True)
    sums_a, sums_b = np.zeros((index.max() + 1, a.shape[1])), np.zeros((index.max() + 1, b.shape[1]))
    np.add.at(sums_a, index, a)
    np.add.at(sums_b, index, b)
    return np.asarray((sums_a.T @ sums_b + sums_b.T @ sums_a) / len(a), dtype=float)


def _overlap(labelled: Array, everyone: Array, data: Sample) -> Array:
    """2 Cov(mean over the human subset of ``labelled``, mean over all units of ``everyone``) times n N, symmetrised.

    A coded unit's term co-varies with the LLM-label term of every unit of its chat, coded or not, so the
    subset's cluster sums pair with the cluster sums over all units.
    """
    ids = np.unique(data.clusters_all)
    index_all = np.searchsorted(ids, data.clusters_all)
    sums_all = np.zeros((len(ids), everyone.shape[1]))
    np.add.at(sums_all, index_all, everyone - everyone.mean(axis=0))
    sums_labelled = np.zeros_like(sums_all)
    np.add.at(sums_labelled, np.searchsorted(ids, data.clusters), labelled - labelled.mean(axis=0))
    product = sums_labelled.T @ sums_all / len(labelled)
    return np.asarray(product + product.T, dtype=float)


def degrees_of_freedom(data: Sample, estimator: str) -> int:
    """For t intervals: independent pieces of evidence (chats, or units) minus coefficients.

    The human-only and PPI variances rest on the human-labelled clusters; the LLM-only one on all of them.
    """
    clusters = data.clusters_all if estimator == "llm_only" else data.clusters
    return len(np.unique(clusters)) - data.x.shape[1]


def effective_labels(human: Fit, combined: Fit) -> Array:
    """Human labels the combined estimate is worth, per coefficient: n times the ratio of variances."""
    return np.asarray(human.n * human.se**2 / combined.se**2, dtype=float)


def labels_for_width(fit: Fit, width: float, level: float = 0.95) -> Array:
    """Human labels needed for an interval of ``width`` (all else as now); inf when the LLM part alone is wider."""
    z = norm.ppf(0.5 + level / 2)
    room = (width / (2 * z)) ** 2 - (fit.unlabelled_var / fit.big_n if fit.big_n else 0.0)
    with np.errstate(divide="ignore"):
        return np.where(room > 0, np.ceil(fit.labelled_var / np.where(room > 0, room, 1)), np.inf)
