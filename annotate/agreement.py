"""Agreement statistics between coders (humans, runs, repeats, models).

Everything that a maintained library computes comes from it: Cohen's kappa (plain and weighted),
confusion matrices and per-class precision/recall from scikit-learn, Krippendorff's alpha from
``krippendorff``, Fleiss' kappa from statsmodels. Gwet's AC1, which no maintained package here
provides, is written out below. Undefined values (kappa when both coders use one label only)
are NaN, never a made-up number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any, Literal

import numpy as np

Scale = str  # "ordinal" | "nominal" | "binary"


def percent_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    if not a:
        return math.nan
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def cohen_kappa(a: Sequence[int], b: Sequence[int], categories: Sequence[int], weights: str | None = None) -> float:
    """Cohen's kappa (``weights`` None, "linear" or "quadratic"); NaN when undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0:
        return math.nan
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # "undefined" warnings: the NaN we return says it
        value = cohen_kappa_score(a, b, labels=list(categories), weights=weights)
    return float(value)


def confusion_counts(a: np.ndarray, b: np.ndarray, categories: Sequence[int]) -> np.ndarray:
    """q x q counts of (a, b) label pairs; values outside ``categories`` are not counted."""
    index = {k: i for i, k in enumerate(categories)}
    q = len(categories)
    ia = np.array([index.get(int(x), -1) for x in a])
    ib = np.array([index.get(int(x), -1) for x in b])
    keep = (ia >= 0) & (ib >= 0)
    return np.bincount(ia[keep] * q + ib[keep], minlength=q * q).reshape(q, q)


def kappa_from_counts(counts: np.ndarray, weights: str | None = None) -> float:
    """Cohen's kappa from a confusion matrix, the same formula scikit-learn uses.

    The bootstrap calls this thousands of times; scikit-learn's input checks would dominate the cost.
    tests/test_agreement.py checks it equals ``cohen_kappa_score``.
    """
    n = counts.sum()
    if n == 0:
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


def ac1_from_counts(counts: np.ndarray) -> float:
    """Gwet's AC1 from a confusion matrix (see ``gwet_ac1``)."""
    n = counts.sum()
    q = counts.shape[0]
    if n == 0 or q < 2:
        return math.nan
    pa = np.trace(counts) / n
    pi = (counts.sum(axis=0) + counts.sum(axis=1)) / (2 * n)
    pe = float(np.sum(pi * (1 - pi)) / (q - 1))
    return float((pa - pe) / (1 - pe)) if pe < 1 else math.nan


def gwet_ac1(a: Sequence[int], b: Sequence[int], categories: Sequence[int]) -> float:
    """Gwet's AC1 for two coders (Gwet 2008): chance agreement from the mean category prevalence.

    ``pe = sum_k pi_k (1 - pi_k) / (q - 1)`` with ``pi_k`` the share of all ratings in category k and
    ``q`` the number of categories on the scale. Unlike kappa it stays stable when one label dominates.
    """
    if len(a) == 0 or len(categories) < 2:
        return math.nan
    pa = percent_agreement(a, b)
    ratings = np.concatenate([np.asarray(a), np.asarray(b)])
    pi = np.array([np.mean(ratings == k) for k in categories])
    pe = float(np.sum(pi * (1 - pi)) / (len(categories) - 1))
    return (pa - pe) / (1 - pe) if pe < 1 else math.nan


def krippendorff_alpha(ratings: np.ndarray, categories: Sequence[int], scale: Scale) -> float:
    """Krippendorff's alpha; ``ratings`` is coders x units with NaN for missing ratings."""
    import krippendorff

    values = ratings[~np.isnan(ratings)]
    if values.size == 0 or len(np.unique(values)) < 2:
        # No variation at all: expected disagreement is zero and alpha is undefined.
        return math.nan
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


def confusion(a: Sequence[int], b: Sequence[int], categories: Sequence[int]) -> list[list[int]]:
    """Rows: coder a's label; columns: coder b's label; in ``categories`` order."""
    from sklearn.metrics import confusion_matrix

    if len(a) == 0:
        return [[0] * len(categories) for _ in categories]
    matrix: np.ndarray = confusion_matrix(a, b, labels=list(categories))
    return [[int(x) for x in row] for row in matrix]


def per_class(reference: Sequence[int], predicted: Sequence[int], categories: Sequence[int]) -> dict[int, Any]:
    """Precision and recall of ``predicted`` against ``reference`` for each category."""
    from sklearn.metrics import precision_recall_fscore_support

    if len(reference) == 0:
        return {}
    precision, recall, _, support = precision_recall_fscore_support(
        reference, predicted, labels=list(categories), zero_division=np.nan
    )
    return {
        int(k): {"precision": _num(p), "recall": _num(r), "support": int(s)}
        for k, p, r, s in zip(categories, precision, recall, support, strict=True)
    }


def prevalence(values: Sequence[int], categories: Sequence[int]) -> dict[int, float]:
    arr = np.asarray(values)
    return {int(k): (float(np.mean(arr == k)) if arr.size else math.nan) for k in categories}


def pair_statistics(a: Sequence[int], b: Sequence[int], categories: Sequence[int], scale: Scale) -> dict[str, float]:
    """Point estimates of every two-coder statistic."""
    stats = {
        "n": float(len(a)),
        "percent_agreement": percent_agreement(a, b),
        "cohen_kappa": cohen_kappa(a, b, categories),
        "kappa_linear": math.nan,
        "kappa_quadratic": math.nan,
        "krippendorff_alpha": krippendorff_alpha(np.array([a, b], dtype=float), categories, scale),
        "gwet_ac1": gwet_ac1(a, b, categories),
    }
    if scale == "ordinal":
        stats["kappa_linear"] = cohen_kappa(a, b, categories, "linear")
        stats["kappa_quadratic"] = cohen_kappa(a, b, categories, "quadratic")
    return stats


def cluster_bootstrap(
    clusters: Sequence[str],
    statistic: Callable[[np.ndarray], dict[str, float]],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals from resampling whole clusters (chats) with replacement.

    ``statistic`` gets the row indices of one resample and returns named values. Per-round labels
    are nested in chats, so rows of one chat always travel together.
    """
    if n_boot <= 0 or len(clusters) == 0:
        return {}
    rng = np.random.default_rng(seed)
    ids = np.asarray(clusters)
    unique = np.unique(ids)
    rows_of = {c: np.flatnonzero(ids == c) for c in unique}
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        picked = rng.choice(unique, size=len(unique), replace=True)
        rows = np.concatenate([rows_of[c] for c in picked])
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
            "percent_agreement": float(np.trace(counts) / counts.sum()),
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


def multi_coder_statistics(ratings: np.ndarray, categories: Sequence[int], scale: Scale) -> dict[str, Any]:
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
        "pairwise_kappa": [[_num(x) for x in row] for row in pairwise],
        "mean_pairwise_kappa": _num(float(finite.mean())) if finite.size else None,
        "fleiss_kappa": _num(fleiss_kappa(ratings, categories)),
        "krippendorff_alpha": _num(krippendorff_alpha(ratings.T.astype(float), categories, scale)),
        "identical_share": _num(float(np.mean(np.all(ratings == ratings[:, :1], axis=1)))) if ratings.size else None,
    }


def _num(x: Any) -> float | None:
    """JSON-safe number: NaN becomes None."""
    value = float(x)
    return None if math.isnan(value) else value


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
            "percent_agreement": float((np.trace(cb) - np.trace(ca)) / ca.sum()),
            "cohen_kappa": kappa_from_counts(cb) - kappa_from_counts(ca),
            "gwet_ac1": ac1_from_counts(cb) - ac1_from_counts(ca),
        }

    return cluster_bootstrap(clusters, stat, n_boot, seed)
