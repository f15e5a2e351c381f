"""A labeller's worth in human labels: how many human labels the prediction-powered estimate is worth per 100
coded, with a chat bootstrap interval. The one answer to "what is a labeller worth": `estimate` and `validate`
both call ``worth``.

The ratio is 100 x (human-only variance / variance of the prediction-powered estimate), where each half of the
coded chats uses the LLM share chosen on the other half (``shares.cross_fitted_shares``). So it is measured out
of sample: a share that looked good by chance on the chats that chose it is judged on chats that did not, and a
study in which the tool happened to use the LLM does not report a ratio selected to be high (the winner's curse
of measuring the ratio on the data that chose it; docs/methods.md measures both).

A ratio of two variances measured on a few dozen chats still runs high on average (a noisy denominator, and a
share that moves from study to study). So the point value is the ratio corrected for the bias the bootstrap
measures (multiplied by ratio / its bootstrap mean), and no value is shown under ``FEW_CODED_CHATS``.

The interval resamples the coded chats within each half, updates the two coded-unit fits by one Newton step in
each resample (coefficients, residuals, curvature and leverages move as they do from sample to sample; holding
them at their full-sample values made the interval too narrow where chats were drawn with very unequal
probabilities) and repeats the whole choice (tuning, evidence test), so it describes the procedure the estimate
used, not the best share in hindsight. It is widened by the same correction on the side the correction moves the
value to (only shifting it made it miss the truth for weak labellers, whose correction is largest). Its status is
typed: ``shown``, ``none`` (no half gave the LLM a share: exactly 100) or ``not_estimable``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

from annotate.analysis.estimation import ppi, shares
from annotate.analysis.estimation.glm import Array, GLMFit, mean_and_curvature
from annotate.analysis.results import Worth

RESAMPLES = 400
BLOCK = 100
"""Resamples whose Newton steps are computed at once (bounds the memory: resamples x coded units x terms)."""
NO_GAIN = 100.0
FEW_CODED_CHATS = 60
"""Below this many (effective) coded chats no worth is shown: the ratio of two variances, each measured on a few
chats, runs high even out of sample (docs/methods.md: 11-20% high at 40 chats and up to 1.4x at 15 before the
correction), and the bootstrap's correction takes out only part of that."""
NONE = "none: no half of the coded chats shows that the LLM labels' error tracks the human labels'"


def worth(parts: ppi.Parts, human: ppi.Fit, seed: int = 0, unbounded: bool = False) -> list[Worth]:
    """Per coefficient: human labels per 100 coded that the cross-fitted prediction-powered estimate of ``parts``
    is worth, with a 95% interval. ``unbounded``: as if the coded units were a sample of a much larger set the
    LLM labelled alike (validate's forecast: the gold usually covers every unit of the run)."""
    chosen = shares.cross_fitted_shares(parts, seed, unbounded)
    rng = np.random.default_rng(seed)  # one stream across the terms, drawn in order
    return [_term_worth(parts, human, chosen[:, j], j, seed, unbounded, rng) for j in range(parts.terms)]


def _term_worth(
    parts: ppi.Parts, human: ppi.Fit, chosen: Array, j: int, seed: int, unbounded: bool, rng: np.random.Generator
) -> Worth:
    """The worth of coefficient ``j`` given each chat's share ``chosen``, or why it cannot be shown."""
    if human.problems[j]:
        return _not_estimable("not estimable")
    llm_fits = (parts.llm_coded,) if unbounded else (parts.llm_coded, parts.llm_all)
    if not chosen.any() or any(f.problem or f.partial for f in llm_fits):
        return Worth(value=NO_GAIN, low=None, high=None, status="none", note=NONE)
    chats = parts.df_coded + parts.terms
    if chats < FEW_CODED_CHATS:
        return _not_estimable(
            f"the LLM labels get a share, but {chats:.0f} effective coded chats (under {FEW_CODED_CHATS}) "
            "are too few to measure what they save"
        )
    variance = shares.shared_variance(parts, chosen, j, unbounded)
    if not variance > 0:
        return _not_estimable("the LLM labels leave no error on the coded chats: no finite worth can be measured")
    ratio = NO_GAIN * float(np.sum(parts.p[:, j] ** 2)) * parts.factor_coded / variance
    draws = _resampled(parts, j, seed, unbounded, rng)
    if len(draws) < RESAMPLES / 2:
        return _not_estimable(
            "the bootstrap of the coded chats leaves no finite worth in most resamples: it cannot be measured"
        )
    correction = ratio / float(np.mean(draws))
    low, high = np.percentile(draws, [2.5, 97.5])
    low, high = min(correction, 1.0) * low, max(correction, 1.0) * high
    return Worth(value=ratio * correction, low=float(low), high=float(high), status="shown")


def _not_estimable(note: str) -> Worth:
    return Worth(value=None, low=None, high=None, status="not_estimable", note=note)


def _resampled(parts: ppi.Parts, j: int, seed: int, unbounded: bool, rng: np.random.Generator) -> Array:
    """The finite ratios over chat resamples within each half: the two coded-unit fits updated by one Newton step
    in each resample, and the choice of shares repeated in each."""
    half = shares.folds(parts, seed)
    counts = np.ones((RESAMPLES, len(half)))
    for fold in range(shares.FOLDS):
        members = np.flatnonzero(half == fold)
        drawn = np.zeros((RESAMPLES, len(members)))
        np.add.at(drawn, (np.arange(RESAMPLES)[:, None], rng.integers(0, len(members), (RESAMPLES, len(members)))), 1)
        counts[:, members] = drawn
    data = parts.data
    p = _stepped(parts, parts.human, data.x, data.y, counts, j, parts.p[:, j])
    q_coded = -_stepped(parts, parts.llm_coded, data.xhat, data.yhat, counts, j, -parts.q_coded[:, j])
    q_all = parts.q_all[:, j]  # the LLM labels of all units barely move when the coded chats are resampled
    q = q_coded if unbounded else q_coded + q_all
    drawn_shares = np.zeros_like(counts)
    for fold in range(shares.FOLDS):
        train = half == 1 - fold
        df = shares.effective_df(parts, train)
        drawn_shares[:, half == fold] = _shares(counts[:, train], p[:, train], q[:, train], df)[:, None]
    weight = counts * parts.chat_weight
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_share = np.sum(drawn_shares * weight, axis=1) / weight.sum(axis=1)
        spread = 0.0 if unbounded else mean_share[:, None] * q_all
        combined = p + drawn_shares * q_coded + spread
        ratios = NO_GAIN * np.sum(counts * p**2, axis=1) / np.sum(counts * combined**2, axis=1)
    return ratios[np.isfinite(ratios)]


def _stepped(parts: ppi.Parts, fit: GLMFit, x: Array, y: Array, counts: Array, j: int, fixed: Array) -> Array:
    """Per resample (rows of ``counts``, per chat) and chat: coefficient ``j``'s chat sum of influence over one
    minus the chat's leverage, as ``ppi.decompose`` computes it, after one Newton step of the coded-unit ``fit``
    from its full-sample coefficients on the resample. Holding each chat's influence at its full-sample value
    instead made the interval too narrow where chats were drawn with very unequal weights: the coefficients,
    residuals, curvature and leverage all move from sample to sample (bench/worth_spread.py). A fit with a term
    it cannot estimate keeps its full-sample influence (``fixed``)."""
    if fit.problem or fit.partial:
        return np.broadcast_to(fixed, counts.shape)
    data = parts.data
    chats = np.searchsorted(np.unique(data.clusters_all), data.clusters)
    share = data.weights / data.weights.sum()
    full_mu, full_curvature = mean_and_curvature(parts.family, x @ fit.coef)
    out = np.zeros(counts.shape)
    for block in range(0, len(counts), BLOCK):
        weight = counts[block : block + BLOCK, chats] * share
        step = np.linalg.pinv(_hessian(weight * full_curvature, x)) @ ((weight * (y - full_mu)) @ x)[:, :, None]
        mu, curvature = mean_and_curvature(parts.family, (fit.coef + step[:, :, 0]) @ x.T)
        bread = np.linalg.pinv(_hessian(weight * curvature, x))
        influence = (bread[:, j, :] @ x.T) * share * (y - mu)
        leverage = share * curvature * np.einsum("rnk,nk->rn", x @ bread, x)
        sums, leverages = np.zeros((counts.shape[1], len(weight))), np.zeros((counts.shape[1], len(weight)))
        np.add.at(sums, chats, influence.T)
        np.add.at(leverages, chats, leverage.T)
        out[block : block + BLOCK] = (sums / (1 - np.minimum(leverages, ppi.MAX_LEVERAGE))).T
    return out


def _hessian(weight: Array, x: Array) -> Array:
    """Per row of ``weight`` (units' weight times curvature): the weighted Hessian x' W x."""
    return np.einsum("rn,nk,nl->rkl", weight, x, x, optimize=True)


def _shares(counts: Array, p: Array, q: Array, df: float) -> Array:
    """``shares.tuned`` for every resample at once (rows of ``counts``, ``p`` and ``q``): the share, 0 where the
    test fails."""
    s_pq, s_qq, s_pp = np.sum(counts * p * q, 1), np.sum(counts * q**2, 1), np.sum(counts * p**2, 1)
    if df < 1:
        return np.zeros(len(counts))
    with np.errstate(divide="ignore", invalid="ignore"):
        best = np.where(s_qq > 1e-300, -s_pq / s_qq, 0.0)
        residual = np.maximum(s_pp + 2 * best * s_pq + best**2 * s_qq, 0)
        statistic = np.where(residual > 0, best / np.sqrt(residual / (df * s_qq)), np.inf)
    evident = (s_qq > 1e-300) & (statistic > student_t.ppf(1 - shares.EVIDENCE, df))
    return np.where(evident, np.clip(best, 0, 1), 0.0)
