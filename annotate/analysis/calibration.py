"""How far the model's confidence can be trusted: calibration, separation of right from wrong labels,
the agreement left when the least confident labels go to humans, and the probability-weighted label.

``confidence`` is the probability the engine gave the chosen value (see labelling/probabilities.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from annotate.analysis import statistics as st
from annotate.analysis.results import Calibration, CoveragePoint, ReliabilityBin
from annotate.errors import AnnotateError

BINS = 10
MIN_EACH = 5
"""AUROC needs at least this many right and this many wrong labels; below it, one label moves it by a fifth."""
RESAMPLES = 200
"""Draws for the calibrated labeller's ECE and for the bootstrap intervals."""
DEFERRED = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
"""Shares of the least confident labels handed to humans in the risk-coverage curve."""


def calibration(
    confidence: Sequence[float], human: Sequence[int], llm: Sequence[int], categories: list[int], scale: str
) -> Calibration:
    """Calibration of the chosen labels' confidence against gold, on the items that have a confidence.

    With few items the ECE of even a perfectly calibrated labeller is far from 0 (a bin of three labels is
    right 0, 1/3, 2/3 or 1 of the time), so the ECE comes with the value such a labeller shows at this n
    (``ece_if_calibrated``, from draws where each label is right with its confidence) and an interval."""
    conf = np.asarray(confidence, dtype=float)
    right = np.asarray(human) == np.asarray(llm)
    rng = np.random.default_rng(0)
    reference = [_ece(conf, rng.uniform(size=len(conf)) < conf) for _ in range(RESAMPLES)]
    draws = [rng.integers(0, len(conf), len(conf)) for _ in range(RESAMPLES)]
    notes = []
    if min(right.sum(), (~right).sum()) < MIN_EACH:
        notes.append(
            f"AUROC not given: {int(right.sum())} right and {int((~right).sum())} wrong labels "
            f"(needs {MIN_EACH} of each)"
        )
    if len(conf) < 30:
        notes.append(f"calibration rests on {len(conf)} items: read the ECE against its calibrated value")
    auroc = _auroc(conf, right) if not notes or "AUROC" not in notes[0] else float("nan")
    return Calibration(
        n=len(conf),
        mean_confidence=float(conf.mean()),
        accuracy=float(right.mean()),
        ece=_ece(conf, right),
        ece_if_calibrated=float(np.mean(reference)),
        ece_ci95=_percentiles([_ece(conf[d], right[d]) for d in draws]),
        auroc=auroc,
        auroc_ci95=_percentiles([_auroc(conf[d], right[d]) for d in draws]) if np.isfinite(auroc) else None,
        brier=float(np.mean((conf - right) ** 2)),
        reliability=_bins(conf, right),
        risk_coverage=_risk_coverage(conf, right, list(human), list(llm), categories, scale),
        notes=notes,
    )


def _edges() -> list[tuple[float, float]]:
    return list(itertools.pairwise(np.linspace(0, 1, BINS + 1)))


def _inside(conf: np.ndarray, low: float, high: float) -> np.ndarray:
    return (conf > low) & (conf <= high) if low > 0 else (conf >= low) & (conf <= high)


def _bins(conf: np.ndarray, right: np.ndarray) -> list[ReliabilityBin]:
    bins = []
    for low, high in _edges():
        inside = _inside(conf, low, high)
        if inside.any():
            bins.append(
                ReliabilityBin(
                    low=low,
                    high=high,
                    n=int(inside.sum()),
                    confidence=float(conf[inside].mean()),
                    accuracy=float(right[inside].mean()),
                )
            )
    return bins


def _ece(conf: np.ndarray, right: np.ndarray) -> float:
    """The bins' |mean confidence - accuracy|, weighted by their share of the labels."""
    error = 0.0
    for low, high in _edges():
        inside = _inside(conf, low, high)
        if inside.any():
            error += inside.mean() * abs(conf[inside].mean() - right[inside].mean())
    return float(error)


def _auroc(conf: np.ndarray, right: np.ndarray) -> float:
    return float(roc_auc_score(right, conf)) if 0 < right.sum() < len(right) else float("nan")


def _percentiles(values: list[float]) -> tuple[float, float] | None:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    if finite.size < len(values) / 2:
        return None
    return float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))


def _risk_coverage(
    conf: np.ndarray, right: np.ndarray, human: list[int], llm: list[int], categories: list[int], scale: str
) -> list[CoveragePoint]:
    """Agreement on the labels kept when the least confident share goes to humans (ties broken by order)."""
    order = np.argsort(conf, kind="stable")
    points = []
    for share in DEFERRED:
        kept = np.sort(order[round(share * len(conf)) :])
        if len(kept) == 0:
            continue
        stats = st.pair_statistics([human[i] for i in kept], [llm[i] for i in kept], categories, scale)
        points.append(
            CoveragePoint(
                deferred=share, kept=len(kept), accuracy=float(right[kept].mean()), cohen_kappa=stats["cohen_kappa"]
            )
        )
    return points


def probability_weighted(expected: pd.Series, categories: Sequence[int]) -> pd.Series:
    """The allowed value nearest the probability-weighted mean (ties to the lower value)."""
    allowed = np.asarray(sorted(categories), dtype=float)
    values = expected.to_numpy(dtype=float)
    distance = np.abs(values[:, None] - allowed[None, :])
    return pd.Series(allowed[np.argmin(distance, axis=1)].astype(int), index=expected.index)


def use_label(labels: pd.DataFrame, label: str, scales: dict[str, tuple[str, list[int]]], source: str) -> pd.DataFrame:
    """Labels whose ``value`` is the chosen one, or the probability-weighted one (``label='expected'``).

    ``scales``: variable -> (scale, categories). Nominal variables keep the chosen value (a mean of
    categories means nothing); an ok label without probabilities is an error naming the run.
    """
    if label == "chosen":
        return labels
    out = labels.copy()
    ok = out["status"] == "ok"
    for variable, (scale, categories) in scales.items():
        rows = ok & (out["variable"] == variable)
        if scale == "nominal" or not rows.any():
            continue
        missing = int(out.loc[rows, "expected"].isna().sum())
        if missing:
            raise AnnotateError(
                f"{source}: {missing} {variable} labels have no probabilities (the engine gave none): "
                "use --label chosen"
            )
        out.loc[rows, "value"] = probability_weighted(out.loc[rows, "expected"], categories).to_numpy()
    return out
