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
DEFERRED = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
"""Shares of the least confident labels handed to humans in the risk-coverage curve."""


def calibration(
    confidence: Sequence[float], human: Sequence[int], llm: Sequence[int], categories: list[int], scale: str
) -> Calibration:
    """Calibration of the chosen labels' confidence against gold, on the items that have a confidence."""
    conf = np.asarray(confidence, dtype=float)
    right = np.asarray(human) == np.asarray(llm)
    bins = []
    error = 0.0
    edges = np.linspace(0, 1, BINS + 1)
    for low, high in itertools.pairwise(edges):
        inside = (conf > low) & (conf <= high) if low > 0 else (conf >= low) & (conf <= high)
        if inside.any():
            mean_conf, accuracy = float(conf[inside].mean()), float(right[inside].mean())
            bins.append(
                ReliabilityBin(low=low, high=high, n=int(inside.sum()), confidence=mean_conf, accuracy=accuracy)
            )
            error += inside.mean() * abs(mean_conf - accuracy)
    both_kinds = 0 < right.sum() < len(right)
    return Calibration(
        n=len(conf),
        mean_confidence=float(conf.mean()),
        accuracy=float(right.mean()),
        ece=float(error),
        auroc=float(roc_auc_score(right, conf)) if both_kinds else float("nan"),
        brier=float(np.mean((conf - right) ** 2)),
        reliability=bins,
        risk_coverage=_risk_coverage(conf, right, list(human), list(llm), categories, scale),
    )


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
