"""Agreement statistics between coders (humans, runs, repeats, models).

Two-coder statistics are computed once, from a confusion matrix of counts: percentage agreement,
Cohen's kappa (plain, linear and quadratic weights), Gwet's AC1, and per-class precision and recall.
The bootstrap resamples chats thousands of times, so counts are what it needs; tests check every
figure against scikit-learn and irrCAC. Krippendorff's alpha comes from ``krippendorff`` and Fleiss'
kappa from statsmodels. Undefined values (kappa when both coders use one label only) are NaN, never a
made-up number: kappa is also NaN when one coder uses a single label.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import combinations
from typing import Literal

import numpy as np

Scale = str  # "ordinal" | "nominal" | "binary"
Weights = Literal["linear", "quadratic"] | None


def confusion_counts(
    a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray, categories: Sequence[int]
) -> np.ndarray:
    """q x q counts of (a, b) label pairs: rows coder a, columns coder b, in ``categories`` order."""
    index = {int(k): i for i, k in enumerate(categories)}
    q = len(categories)
    ia = np.array([index.get(int(x), -1) for x in a], dtype=int)
    ib = np.array([index.get(int(x), -1) for x in b], dtype=int)
    keep = (ia >= 0) & (ib >= 0)
    return np.bincount(ia[keep] * q + ib[keep], minlength=q * q).reshape(q, q)


def agreement_from_counts(counts: np.ndarray) -> float:
    n = counts.sum()
    return float(np.trace(counts) / n) if n else math.nan


def kappa_from_counts(counts: np.ndarray, weights: Weights = None) -> float:
    """Cohen's kappa from a confusion matrix (scikit-learn's formula); NaN when undefined.

    Undefined includes one coder using a single label: kappa is then 0 by construction (observed and
    chance agreement coincide), which reads as "no agreement beyond chance" when nothing was measured."""
    n = counts.sum()
    if n == 0 or single_label(counts):
        return math.nan
    q = counts.shape[0]
    expected = np.outer(counts.sum(axis=1), counts.sum(axis=0)) / n
    if weights is None:
        w = 1 - np.eye(q)
    else:
        grid = np.abs(np.subtract.outer(np.arange(q), np.arange(q)))
        w = grid if weights == "linear" else grid**2
    denominator = float(np.sum(w * expected))
    return 1 - float(np.sum(w * counts)) / denominator if denominator > 0 else math.nan


def single_label(counts: np.ndarray) -> bool:
    """Whether either coder (rows or columns of the confusion matrix) used one label only."""
    return bool((counts.sum(axis=1) > 0).sum() < 2 or (counts.sum(axis=0) > 0).sum() < 2)


FEW_ITEMS = 5
"""Under this many items no agreement figure means much, and chat-bootstrap intervals collapse."""


def degenerate_note(a: Sequence[int], b: Sequence[int], names: tuple[str, str]) -> str | None:
    """A line saying that kappa is undefined because a coder used one label, naming which and the label; or
    that the items are too few for any figure (an AC1 of 1.000 [1.00, 1.00] from one item says nothing)."""
    if len(a) < FEW_ITEMS:
        return (
            f"only {len(a)} item{'s' if len(a) != 1 else ''}: every figure rests on {'them' if len(a) != 1 else 'it'}, "
            "and their intervals (zero-width or whole-scale) are not evidence"
        )
    for values, name in ((a, names[0]), (b, names[1])):
        used = sorted(set(int(v) for v in values))
        if len(used) == 1:
            return (
                f"{name} used the label {used[0]} for all {len(values)} items: κ is not defined (AC1 and agreement are)"
            )
    return None


def ac1_from_counts(counts: np.ndarray) -> float:
    """Gwet's AC1 for two coders (Gwet 2008): chance agreement from the mean category prevalence.

    ``pe = sum_k pi_k (1 - pi_k) / (q - 1)`` with ``pi_k`` the share of all ratings in category k and
    ``q`` the number of categories on the scale. Unlike kappa it stays stable when one label dominates.
    """
    n = counts.sum()
    q = counts.shape[0]
    if n == 0 or q < 2:
        return math.nan
    pa = np.trace(counts) / n
    pi = (counts.sum(axis=0) + counts.sum(axis=1)) / (2 * n)
    pe = float(np.sum(pi * (1 - pi)) / (q - 1))
    return float((pa - pe) / (1 - pe)) if pe < 1 else math.nan


def per_class_from_counts(counts: np.ndarray, categories: Sequence[int]) -> dict[int, dict[str, float | int]]:
    """Precision and recall of coder b (columns) against coder a (rows, the reference), per category."""
    if counts.sum() == 0:
        return {}
    hits = np.diag(counts).astype(float)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), np.nan)
        recall = np.where(actual > 0, hits / np.maximum(actual, 1), np.nan)
    return {
        int(k): {"precision": float(p), "recall": float(r), "support": int(s)}
        for k, p, r, s in zip(categories, precision, recall, actual, strict=True)
    }


def cohen_kappa(a: Sequence[int], b: Sequence[int], categories: Sequence[int], weights: Weights = None) -> float:
    return kappa_from_counts(confusion_counts(a, b, categories), weights)


def percent_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    if len(a) == 0:
        return math.nan
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def krippendorff_alpha(ratings: np.ndarray, categories: Sequence[int], scale: Scale) -> float:
    """Krippendorff's alpha; ``ratings`` is coders x units with NaN for missing ratings."""
    import krippendorff

    values = ratings[~np.isnan(ratings)]
    if values.size == 0 or len(np.unique(values)) < 2:
        return math.nan  # no variation at all: expected disagreement is zero and alpha is undefined
    level: Literal["ordinal", "nominal"] = "ordinal" if scale == "ordinal" else "nominal"
    return float(
        krippendorff.alpha(
            reliability_data=ratings, level_of_measurement=level, value_domain=np.asarray(categories, dtype=float)
        )
    )


def fleiss_kappa(ratings: np.ndarray, categories: Sequence[int]) -> float:
    """Fleiss' kappa over units x coders (complete rows only); NaN when undefined."""
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    if ratings.shape[0] == 0 or ratings.shape[1] < 2:
        return math.nan
    counts = np.stack([(ratings == k).sum(axis=1) for k in categories], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(sm_fleiss(counts, method="fleiss"))


def prevalence(values: Sequence[int], categories: Sequence[int]) -> dict[int, float]:
    arr = np.asarray(values)
    return {int(k): (float(np.mean(arr == k)) if arr.size else math.nan) for k in categories}


def pair_statistics(a: Sequence[int], b: Sequence[int], categories: Sequence[int], scale: Scale) -> dict[str, float]:
    """Point estimates of every two-coder statistic (weighted kappa for ordinal scales only)."""
    counts = confusion_counts(a, b, categories)
    ordinal = scale == "ordinal"
    return {
        "n": float(len(a)),
        "percent_agreement": agreement_from_counts(counts),
        "cohen_kappa": kappa_from_counts(counts),
        "kappa_linear": kappa_from_counts(counts, "linear") if ordinal else math.nan,
        "kappa_quadratic": kappa_from_counts(counts, "quadratic") if ordinal else math.nan,
        "krippendorff_alpha": krippendorff_alpha(np.array([a, b], dtype=float), categories, scale),
        "gwet_ac1": ac1_from_counts(counts),
    }


def cluster_resamples(clusters: Sequence[str], n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Row indices of ``n_boot`` resamples of whole clusters (chats) with replacement: the one bootstrap.

    Per-round labels are nested in chats, so rows of one chat always travel together.
    """
    rng = np.random.default_rng(seed)
    ids = np.asarray(clusters)
    unique = np.unique(ids)
    rows_of = {c: np.flatnonzero(ids == c) for c in unique}
    for _ in range(n_boot):
        picked = rng.choice(unique, size=len(unique), replace=True)
        yield np.concatenate([rows_of[c] for c in picked])


def cluster_bootstrap(
    clusters: Sequence[str],
    statistic: Callable[[np.ndarray], dict[str, float]],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of named statistics over chat resamples; NaN bounds when mostly undefined."""
    if n_boot <= 0 or len(clusters) == 0:
        return {}
    draws: dict[str, list[float]] = {}
    for rows in cluster_resamples(clusters, n_boot, seed):
        for name, value in statistic(rows).items():
            draws.setdefault(name, []).append(value)
    intervals = {}
    for name, values in draws.items():
        finite = np.asarray([v for v in values if not math.isnan(v)])
        if finite.size < n_boot * 0.5:
            intervals[name] = (math.nan, math.nan)  # undefined in most resamples: no honest interval
        else:
            intervals[name] = (float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5)))
    return intervals


def pair_bootstrap(
    a: Sequence[int],
    b: Sequence[int],
    clusters: Sequence[str],
    categories: Sequence[int],
    scale: Scale,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    a_arr, b_arr = np.asarray(a), np.asarray(b)

    def stat(rows: np.ndarray) -> dict[str, float]:
        counts = confusion_counts(a_arr[rows], b_arr[rows], categories)
        values = {
            "percent_agreement": agreement_from_counts(counts),
            "cohen_kappa": kappa_from_counts(counts),
            "krippendorff_alpha": krippendorff_alpha(
                np.array([a_arr[rows], b_arr[rows]], dtype=float), categories, scale
            ),
            "gwet_ac1": ac1_from_counts(counts),
        }
        if scale == "ordinal":
            values["kappa_quadratic"] = kappa_from_counts(counts, "quadratic")
        return values

    return cluster_bootstrap(clusters, stat, n_boot, seed)


def paired_delta_bootstrap(
    reference: Sequence[int],
    first: Sequence[int],
    second: Sequence[int],
    clusters: Sequence[str],
    categories: Sequence[int],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% intervals for (second - first) agreement with ``reference``, resampling the same chats for both.

    Pairing matters: both versions are scored on the same items, so their errors are correlated and
    the change is far more precise than two separate intervals suggest.
    """
    ref, a, b = np.asarray(reference), np.asarray(first), np.asarray(second)

    def stat(rows: np.ndarray) -> dict[str, float]:
        ca = confusion_counts(ref[rows], a[rows], categories)
        cb = confusion_counts(ref[rows], b[rows], categories)
        return {
            "percent_agreement": agreement_from_counts(cb) - agreement_from_counts(ca),
            "cohen_kappa": kappa_from_counts(cb) - kappa_from_counts(ca),
            "gwet_ac1": ac1_from_counts(cb) - ac1_from_counts(ca),
        }

    return cluster_bootstrap(clusters, stat, n_boot, seed)


def multi_coder_statistics(ratings: np.ndarray, categories: Sequence[int], scale: Scale) -> dict[str, object]:
    """Units x coders (complete rows): pairwise kappa matrix, mean pairwise kappa, Fleiss, alpha, identical share."""
    k = ratings.shape[1]
    pairwise = np.full((k, k), np.nan)
    for i, j in combinations(range(k), 2):
        pairwise[i, j] = pairwise[j, i] = cohen_kappa(ratings[:, i].tolist(), ratings[:, j].tolist(), categories)
    np.fill_diagonal(pairwise, 1.0)
    upper = pairwise[np.triu_indices(k, 1)]
    finite = upper[~np.isnan(upper)]
    return {
        "units": int(ratings.shape[0]),
        "coders": k,
        "pairwise_kappa": pairwise.tolist(),
        "mean_pairwise_kappa": float(finite.mean()) if finite.size else math.nan,
        "fleiss_kappa": fleiss_kappa(ratings, categories),
        "krippendorff_alpha": krippendorff_alpha(ratings.T.astype(float), categories, scale),
        "identical_share": float(np.mean(np.all(ratings == ratings[:, :1], axis=1))) if ratings.size else math.nan,
    }
