"""The LLM labels' share in a prediction-powered estimate, chosen out of sample.

The coded chats are split at random into two halves. On each half the variance-minimising share is tuned and
kept only where that half shows (one-sided test at level ``EVIDENCE``) that the LLM labels' error tracks the
human labels'; the other half's chats then use it. A chat's own labels never choose its share, so neither the
estimate nor the variance reported for it is the winner of a contest judged on the same data (docs/methods.md
measures what that costs and what it fixes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy.stats import t as student_t

from annotate.analysis.estimation.glm import Array

if TYPE_CHECKING:
    from annotate.analysis.estimation.ppi import Parts

EVIDENCE = 0.01
"""One-sided level at which a half of the coded chats must show that the LLM labels' error tracks the human
labels'."""
FOLDS = 2
"""Halves of the coded chats: each half's LLM share is chosen on the other half."""


def kish(weights: Array) -> float:
    """Kish's effective sample size: (sum of weights)^2 / sum of squared weights (0 for no weight)."""
    total = float(np.sum(weights))
    return total**2 / float(np.sum(weights**2)) if total > 0 else 0.0


def mean_share(parts: Parts, shares: Array) -> float:
    """The coded chats' shares averaged by their weight in the coded fit: the share of the all-units fit."""
    total = float(parts.chat_weight.sum())
    return float(shares @ parts.chat_weight / total) if total > 0 else 0.0


def shared_variance(parts: Parts, shares: Array, j: int, unbounded: bool = False) -> float:
    """The variance of coefficient ``j`` when each coded chat's bracket has its own share. ``unbounded``: as if
    the LLM had labelled endlessly many more units like these (no all-units variance: validate's forecast)."""
    q_all = 0.0 if unbounded else mean_share(parts, shares) * parts.q_all[:, j]
    return parts.factor_coded * float(np.sum((parts.p[:, j] + shares * parts.q_coded[:, j] + q_all) ** 2))


def folds(parts: Parts, seed: int) -> NDArray[np.int64]:
    """Per chat: its half of the coded chats (0 or 1) drawn at random with ``seed``; -1 for an uncoded chat."""
    coded = np.flatnonzero(parts.coded)
    out = np.full(len(parts.coded), -1, dtype=np.int64)
    out[np.random.default_rng(seed).permutation(coded)] = np.arange(len(coded)) % FOLDS
    return out


def cross_fitted_shares(parts: Parts, seed: int, unbounded: bool = False) -> Array:
    """Per chat and coefficient: the LLM labels' share, chosen on the other half of the coded chats.

    The share that minimises the variance is tuned there and kept only where that half shows (one-sided test at
    level ``EVIDENCE``) that the LLM labels' error tracks the human labels'; otherwise 0. A chat's own labels
    never choose its share, so the choice cannot flatter the estimate it enters or the variance reported for
    it: the figure is not the winner of a contest judged on the same data (docs/methods.md measures this)."""
    half = folds(parts, seed)
    q = parts.q_coded if unbounded else parts.q_coded + parts.q_all
    shares = np.zeros((len(half), parts.terms))
    for fold in range(FOLDS):
        train = half == 1 - fold
        df = effective_df(parts, train)
        for j in range(parts.terms):
            share, evident = tuned(parts.p[train, j], q[train, j], df)
            shares[half == fold, j] = share if evident else 0.0
    return shares


def effective_df(parts: Parts, chats: NDArray[np.bool_]) -> float:
    """Effective chats (Kish) among ``chats`` minus the terms: the test's degrees of freedom."""
    mean_weight = parts.chat_weight[chats] / np.maximum(parts.chat_units[chats], 1)
    return min(float(chats.sum()), kish(mean_weight)) - parts.terms


def tuned(p: Array, q: Array, df: float) -> tuple[float, bool]:
    """The variance-minimising share in [0, 1] on these chats, and whether they show that the LLM labels' error
    tracks the human labels' at all (one-sided test of the share, level ``EVIDENCE``). Without that test, a
    labeller that carries nothing still wins now and then by chance, and its share only adds noise."""
    s_pq, s_qq = float(p @ q), float(q @ q)
    if s_qq <= 1e-300 or df < 1:
        return 0.0, False
    best = -s_pq / s_qq
    residual = float(np.sum((p + best * q) ** 2))
    statistic = best / np.sqrt(residual / (df * s_qq)) if residual > 0 else np.inf
    return float(np.clip(best, 0, 1)), bool(statistic > student_t.ppf(1 - EVIDENCE, df))
