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
    problem: str | None = None


def fit_glm(x: Array, y: Array, w: Array, family: Family, who: str) -> GLMFit:
    """Weighted OLS or logistic fit with each row's influence; a problem instead of a fit where none exists."""
    k = x.shape[1]
    nan, zero = np.full(k, np.nan), np.zeros_like(x)
    if np.ptp(y) == 0:
        return GLMFit(nan, zero, zero[:, 0], f"the {who} are all {number(y[0])}")
    if family == "logit":
        found = logistic(x, y, w)
        if found is None or np.abs(found).max() > LARGEST_LOGIT:
            # no finite estimate: perfect prediction, or a fit that did not settle (the check is exact)
            reason = "are separated by the terms (perfect prediction)" if separated(x, y) else "did not converge"
            return GLMFit(nan, zero, zero[:, 0], f"the logistic fit of the {who} {reason}")
        coef = found
        mu = expit(x @ coef)
        curvature = mu * (1 - mu)
    else:
        root = np.sqrt(w)
        coef = np.asarray(np.linalg.lstsq(x * root[:, None], y * root, rcond=None)[0], dtype=float)
        mu, curvature = x @ coef, np.ones(len(y))
    share = w / w.sum()
    inverse = np.linalg.pinv((x.T * (share * curvature)) @ x)
    influence = (x * (share * (y - mu))[:, None]) @ inverse.T
    leverage = share * curvature * np.einsum("ij,jk,ik->i", x, inverse, x)
    return GLMFit(np.asarray(coef, dtype=float), influence, leverage)


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


def separated(x: Array, y: Array) -> bool:
    """Whether some direction ``b`` predicts the 0/1 outcome perfectly (``x b >= 0`` where ``y = 1``, ``<= 0``
    where ``y = 0``, ``= 0`` where ``y`` is fractional): then the logistic estimate does not exist
    (Albert and Anderson 1984). Checked as a linear programme over the distinct rows."""
    from scipy.optimize import linprog

    sign = np.where(y >= 1 - 1e-12, 1.0, np.where(y <= 1e-12, -1.0, 0.0))
    rows = np.unique(np.column_stack([x, sign]), axis=0)
    xs, signs = rows[:, :-1], rows[:, -1]
    strict, middle = xs[signs != 0] * signs[signs != 0, None], xs[signs == 0]
    if not len(strict):
        return False
    result = linprog(
        -strict.sum(axis=0),
        A_ub=-strict,
        b_ub=np.zeros(len(strict)),
        A_eq=middle if len(middle) else None,
        b_eq=np.zeros(len(middle)) if len(middle) else None,
        bounds=[(-1, 1)] * x.shape[1],
        method="highs",
    )
    return bool(result.status == 0 and -result.fun > 1e-7 * max(1.0, float(np.abs(strict).max())))


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
