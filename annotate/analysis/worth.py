"""A labeller's worth in human labels: how many human labels the prediction-powered estimate is worth per 100
coded, with a chat bootstrap interval.

The point value is the estimate's own: 100 x (human-only variance / prediction-powered variance), with the
share the estimate uses (0, and so exactly 100, when the coded sample shows no evidence that the LLM labels
track the human ones: then the labeller is worth "none"). The interval resamples chats and recomputes the
best share's ratio, 100 / (1 - rho^2) with rho the chat-level correlation of the human and LLM parts: the
most the labeller could be worth on data like these. Dorner et al. (2024) bound the gain of any
prediction-powered estimate by 2x when the labeller is no better than the human measure itself.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from annotate.analysis import ppi
from annotate.analysis.glm import Array, Family
from annotate.analysis.results import Worth

RESAMPLES = 400
NO_GAIN = 100.0
FEW_CODED_CHATS = 40
"""Below this many coded chats the value runs high (bench/ppi_coverage.py --worth: 3-25% at 40)."""


def worth(data: ppi.Sample, family: Family, human: ppi.Fit, combined: ppi.Fit, seed: int = 0) -> list[Worth]:
    """Per coefficient: effective human labels per 100 coded of the prediction-powered fit ``combined`` made
    from ``data``, with a 95% interval; a note under ``FEW_CODED_CHATS``."""
    p, q, _, _ = ppi.chat_influence(data, family)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(p), size=(RESAMPLES, len(p)))
    out = []
    for j in range(p.shape[1]):
        if human.problems[j] or combined.problems[j]:
            out.append(Worth(value=None, low=None, high=None, note="not estimable"))
            continue
        value = float(NO_GAIN * human.se[j] ** 2 / combined.se[j] ** 2)
        ratios = [_best_ratio(p[rows, j], q[rows, j]) for rows in draws]
        low, high = (float(v) for v in np.nanpercentile(ratios, [2.5, 97.5]))
        out.append(Worth(value=value, low=low, high=high, note=_note(bool(combined.lam[j]), data.coded_chats)))
    return out


def worth_unbounded(data: ppi.Sample, family: Family = "ols", seed: int = 0) -> list[Worth]:
    """Per coefficient: what the labels would be worth if the coded units were a sample of a much larger set
    the LLM labelled (validate's question: the gold usually covers every unit of the run, and then no labeller
    can add anything to an estimate over those same units)."""
    p, q, factor, df = ppi.chat_influence(data, family, unbounded=True)
    human = ppi.human_only(data, family)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(p), size=(RESAMPLES, len(p)))
    out = []
    for j in range(p.shape[1]):
        if human.problems[j]:
            out.append(Worth(value=None, low=None, high=None, note="not estimable"))
            continue
        share, honest, evident = ppi.tuned_share(p[:, j], q[:, j], factor, df)
        used = bool(share > 0 and evident and honest < human.se[j] ** 2)
        value = (NO_GAIN * human.se[j] ** 2 / honest if honest > 0 else np.inf) if used else NO_GAIN
        ratios = np.array([_best_ratio(p[r, j], q[r, j]) for r in draws])
        finite = ratios[~np.isnan(ratios)]
        method: Literal["linear", "lower"] = "linear" if np.isfinite(finite).all() else "lower"  # inf - inf is NaN
        low, high = (
            (float(np.percentile(finite, b, method=method)) for b in (2.5, 97.5)) if finite.size else (np.nan,) * 2
        )
        out.append(Worth(value=float(value), low=low, high=high, note=_note(used, data.coded_chats)))
    return out


def _note(used: bool, coded_chats: int) -> str | None:
    if not used:
        return "none: the coded sample shows no evidence that the LLM labels track the human ones"
    if coded_chats < FEW_CODED_CHATS:
        return f"only {coded_chats} coded chats: the ratio of two noisy variances runs high (docs/methods.md)"
    return None


def _best_ratio(p: Array, q: Array) -> float:
    """100 x human-only variance / variance with the best share in [0, 1]."""
    s_pp, s_pq, s_qq = float(p @ p), float(p @ q), float(q @ q)
    if s_pp <= 0:
        return np.nan
    share = float(np.clip(-s_pq / s_qq, 0, 1)) if s_qq > 0 else 0.0
    left = float(np.sum((p + share * q) ** 2))
    return NO_GAIN * s_pp / left if left > 0 else np.inf  # labels equal to the human ones in this resample
