"""Weighted OLS and logistic fits with each row's influence and leverage, or the reason no fit exists.

The estimators of ppi.py are built from these: the influence of a row is its first-order contribution to
the coefficients (so sums of influence give sandwich variances), its leverage how far the fit bends
towards it (for the leave-one-chat-out correction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import null_space
from scipy.special import expit

Family = Literal["ols", "logit"]
Array = NDArray[np.float64]

LARGEST_LOGIT = 20.0
"""A log-odds coefficient beyond this (an odds ratio of 5e8) is taken as a fit running off to infinity."""


@dataclass(frozen=True)
class GLMFit:
    coef: Array
    influence: Array
    """Per row: its first-order contribution to ``coef`` minus the truth (weights included)."""
    leverage: Array
    """Per row: its weighted leverage (the diagonal of the hat matrix; sums to the number of terms)."""
    curvature: Array | None = None
    """Per row: its share of the weighted Hessian (weight share times the variance function)."""
    bread: Array | None = None
    """The inverse of the weighted Hessian (sum over rows of curvature x x')."""
    problem: str | None = None
    """Why no coefficient can be estimated."""
    term_problems: tuple[str | None, ...] = ()
    """Per term, why it alone cannot be estimated (a logit separated in one group); empty when all can."""

    def term_problem(self, j: int) -> str | None:
        return self.problem or (self.term_problems[j] if self.term_problems else None)

    @property
    def partial(self) -> bool:
        """Some terms, not all, could not be estimated."""
        return any(self.term_problems)


def fit_glm(x: Array, y: Array, w: Array, family: Family, who: str) -> GLMFit:
    """Weighted OLS or logistic fit with each row's influence; a problem instead of a fit where none exists."""
    k = x.shape[1]
    nan, zero = np.full(k, np.nan), np.zeros_like(x)
    if np.ptp(y) == 0:
        return GLMFit(nan, zero, zero[:, 0], problem=f"the {who} are all {number(y[0])}")
    if family == "logit":
        found = logistic(x, y, w)
        if found is None or np.abs(found).max() > LARGEST_LOGIT:
            # no finite estimate: perfect prediction, or a fit that did not settle (the check is exact)
            direction = separating_direction(x, y)
            if direction is None:
                return GLMFit(nan, zero, zero[:, 0], problem=f"the logistic fit of the {who} did not converge")
            return _without_separated(x, y, w, who, direction)
        coef = found
    else:
        root = np.sqrt(w)
        coef = np.asarray(np.linalg.lstsq(x * root[:, None], y * root, rcond=None)[0], dtype=float)
    mu, curvature = mean_and_curvature(family, x @ coef)
    share = w / w.sum()
    inverse = np.linalg.pinv((x.T * (share * curvature)) @ x)
    influence = (x * (share * (y - mu))[:, None]) @ inverse.T
    leverage = share * curvature * np.einsum("ij,jk,ik->i", x, inverse, x)
    return GLMFit(np.asarray(coef, dtype=float), influence, leverage, share * curvature, inverse)


def mean_and_curvature(family: Family, eta: Array) -> tuple[Array, Array]:
    """The fitted mean at the linear predictor ``eta`` and the variance function (each row's log-likelihood
    curvature): the logistic mean and mu(1 - mu), or ``eta`` itself and 1."""
    if family == "logit":
        mu = expit(eta)
        return mu, mu * (1 - mu)
    return eta, np.ones_like(eta)


def shifted_influence(fit: GLMFit, x: Array, shift: Array) -> Array:
    """Per row: its first-order contribution to ``fit.coef - (fit.coef - shift)``, i.e. the influence measured from
    another value of the coefficients. Rows sum to ``shift`` exactly, so chat sums split a difference of two fits
    (for OLS exactly; for the logit to first order) into the chats' contributions."""
    assert fit.curvature is not None and fit.bread is not None
    return fit.influence + (fit.curvature * (x @ shift))[:, None] * (x @ fit.bread.T)


def logistic(x: Array, y: Array, w: Array) -> Array | None:
    """Newton-Raphson with step halving on the weighted log-likelihood; None if it does not converge."""
    coef = np.zeros(x.shape[1])

    def loglik(c: Array) -> float:
        eta = x @ c
        return float(np.sum(w * (y * eta - np.logaddexp(0, eta))))

    current = loglik(coef)
    for _ in range(100):
        mu = expit(x @ coef)
        hessian = (x.T * (w * mu * (1 - mu))) @ x
        try:
            step = np.linalg.solve(hessian, x.T @ (w * (y - mu)))
        except np.linalg.LinAlgError:
            return None
        size = 1.0
        while loglik(coef + size * step) < current - 1e-12 and size > 1e-6:
            size /= 2
        coef = coef + size * step
        current = loglik(coef)
        if np.max(np.abs(size * step)) < 1e-10:
            return coef
    return None


def _without_separated(x: Array, y: Array, w: Array, who: str, direction: Array) -> GLMFit:
    """A logit separated only in part (a small group whose outcomes all agree): the rows the separating direction
    predicts perfectly are set aside, and the terms they alone identified are not estimable; the other terms are
    fitted on the rest (their estimate is the limit of the full fit). Only when nothing is left is every term
    refused."""
    k = x.shape[1]
    nan, zero = np.full(k, np.nan), np.zeros_like(x)
    reason = f"the logistic fit of the {who} are separated by the terms (perfect prediction)"
    refused = GLMFit(nan, zero, zero[:, 0], problem=reason)
    scale = max(1.0, float(np.abs(x).max()))
    kept = np.abs(x @ direction) <= 1e-7 * scale
    if kept.sum() < 2 or np.ptp(y[kept]) == 0:
        return refused
    free = null_space(x[kept])
    identified = np.abs(free).max(axis=1, initial=0) <= 1e-9
    if not identified.any() or kept.all():
        return refused
    inner = fit_glm(x[kept][:, identified], y[kept], w[kept], "logit", who)
    if inner.problem or inner.curvature is None or inner.bread is None:
        return refused
    coef, influence, leverage, curvature = nan.copy(), zero.copy(), zero[:, 0].copy(), zero[:, 0].copy()
    coef[identified] = inner.coef
    influence[np.ix_(kept, identified)] = inner.influence
    leverage[kept], curvature[kept] = inner.leverage, inner.curvature
    bread = np.zeros((k, k))
    bread[np.ix_(identified, identified)] = inner.bread
    inner_problems = iter(inner.term_problems or [None] * int(identified.sum()))
    problems = tuple(
        next(inner_problems)
        if ok
        else f"the logistic fit of the {who} is separated by this term (perfect prediction in a group)"
        for ok in identified
    )
    return GLMFit(coef, influence, leverage, curvature, bread, term_problems=problems)


def separating_direction(x: Array, y: Array) -> Array | None:
    """A direction ``b`` that predicts the 0/1 outcome perfectly (``x b >= 0`` where ``y = 1``, ``<= 0`` where
    ``y = 0``, ``= 0`` where ``y`` is fractional, strictly somewhere), or None: with one, the logistic estimate
    does not exist (Albert and Anderson 1984). Found as a linear programme over the distinct rows."""
    from scipy.optimize import linprog

    sign = np.where(y >= 1 - 1e-12, 1.0, np.where(y <= 1e-12, -1.0, 0.0))
    rows = np.unique(np.column_stack([x, sign]), axis=0)
    xs, signs = rows[:, :-1], rows[:, -1]
    strict, middle = xs[signs != 0] * signs[signs != 0, None], xs[signs == 0]
    if not len(strict):
        return None
    result = linprog(
        -strict.sum(axis=0),
        A_ub=-strict,
        b_ub=np.zeros(len(strict)),
        A_eq=middle if len(middle) else None,
        b_eq=np.zeros(len(middle)) if len(middle) else None,
        bounds=[(-1, 1)] * x.shape[1],
        method="highs",
    )
    if result.status == 0 and -result.fun > 1e-7 * max(1.0, float(np.abs(strict).max())):
        return np.asarray(result.x, dtype=float)
    return None


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
