"""Per-round negative sentiment around the handoff: LOESS curves with 95% chat-bootstrap bands.

Rounds are counted from the handoff (0: the round in which the human agent takes over), so that curves of
chats of different lengths line up where the treatment happens; a chat without a handoff is counted from its
first round. The numbers only; report/plots.py draws them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from annotate.analysis.statistics import cluster_resamples
from annotate.errors import RunStoreError
from annotate.ingest.segmentation import handoff_round

if TYPE_CHECKING:
    from annotate.ingest.model import Chat
    from annotate.runs.reader import Run

GRID_POINTS = 81
"""Positions, evenly spread over the rounds drawn, at which curves and bands are read off."""
TRAJECTORY_RESAMPLES = 200
"""Chat resamples for a band at most (validate's --bootstrap, when smaller, is used instead)."""
DELTA = 0.005
"""LOESS is computed exactly at points this far apart (as a share of the rounds' span) and interpolated between,
so the cost does not grow with the square of a long chat's rounds."""


@dataclass(frozen=True)
class Trajectory:
    group: str
    chats: int
    grid: np.ndarray
    """Rounds from the handoff at which ``curve`` and ``band`` are read off."""
    curve: np.ndarray
    """LOESS fit on ``grid`` (NaN outside the group's range)."""
    band: tuple[np.ndarray, np.ndarray] | None
    """2.5 and 97.5 percentiles over chat resamples; None with too few usable resamples."""
    position: np.ndarray
    value: np.ndarray
    """The labels themselves, for the scatter."""


def trajectory_frame(
    labels: pd.DataFrame,
    meta: dict[str, dict[str, Any]],
    group_by: str | None,
    handoffs: dict[str, int | None] | None = None,
) -> pd.DataFrame:
    """Per-round negative sentiment placed in rounds from each chat's handoff (from round 1 without one)."""
    rows = labels[(labels["variable"] == "negative_sentiment") & (labels["status"] == "ok")].copy()
    if rows.empty:
        return rows
    rows["round"] = rows["round"].astype(int)
    zero = [(handoffs or {}).get(c) or 1 for c in rows["chat_id"]]
    rows["position"] = (rows["round"] - np.asarray(zero)).astype(float)
    rows["group"] = [str(meta.get(c, {}).get(group_by, "all")) if group_by else "all" for c in rows["chat_id"]]
    return rows[["chat_id", "round", "position", "value", "group"]]


@dataclass(frozen=True)
class SentimentCurves:
    """A run's per-round sentiment placed around the handoff, and the curves drawn from it."""

    frame: pd.DataFrame
    curves: list[Trajectory]
    group_by: str | None

    @property
    def undrawn(self) -> list[str]:
        """Groups with labels but no curve (fewer than three distinct positions): the figure names them."""
        drawn = {t.group for t in self.curves}
        groups = sorted({str(g) for g in self.frame["group"]}) if len(self.frame) else []
        return [g for g in groups if g not in drawn]


def run_trajectories(
    run: Run,
    chats: list[Chat],
    group_by: str | None = None,
    n_boot: int = TRAJECTORY_RESAMPLES,
    seed: int = 0,
    repeat: int = 0,
    strict: bool = True,
) -> SentimentCurves:
    """The curves of one repeat of a run. ``strict``: a missing group field or no sentiment labels is an error
    (``annotate trajectories``); otherwise the grouping falls back to ``escalation`` when chats carry it.
    ``chats``: the run's chats (their meta fields group the curves)."""
    meta = {c.chat_id: dict(c.meta) for c in chats}
    if strict and group_by and not any(group_by in m for m in meta.values()):
        raise RunStoreError(f"no chat of {run.path} has the metadata field '{group_by}'")
    if not strict and group_by is None and any("escalation" in m for m in meta.values()):
        group_by = "escalation"
    handoffs = {c.chat_id: handoff_round(c) for c in chats}
    frame = trajectory_frame(run.labels[run.labels["repeat"] == repeat], meta, group_by, handoffs)
    if strict and frame.empty:
        raise RunStoreError(f"{run.path} has no ok negative_sentiment labels (task round_sentiment)")
    curves = trajectories(frame, n_boot, seed) if len(frame) else []
    return SentimentCurves(frame, curves, group_by)


def trajectories(frame: pd.DataFrame, n_boot: int = TRAJECTORY_RESAMPLES, seed: int = 0) -> list[Trajectory]:
    """One curve per group; groups with fewer than three distinct positions have none."""
    found: list[Trajectory] = []
    if frame.empty:
        return found
    grid = np.linspace(frame["position"].min(), frame["position"].max(), GRID_POINTS)
    for group, rows in sorted(frame.groupby("group"), key=lambda g: str(g[0])):
        x, y = rows["position"].to_numpy(float), rows["value"].to_numpy(float)
        if len(np.unique(x)) < 3:
            continue
        chats = rows["chat_id"].to_numpy()
        draws = [
            smooth(x[picked], y[picked], grid)
            for picked in cluster_resamples(chats, n_boot, seed)
            if len(np.unique(x[picked])) >= 3
        ]
        band = None
        if len(draws) >= 20:
            with warnings.catch_warnings():  # grid points outside every resample's range stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                low, high = np.nanpercentile(np.asarray(draws), [2.5, 97.5], axis=0)
            band = (low, high)
        found.append(Trajectory(str(group), len(np.unique(chats)), grid, smooth(x, y, grid), band, x, y))
    return found


def smooth(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """LOESS fitted at the data, then read off on ``grid`` (NaN outside the data's range).

    No robustness iterations (``it=0``): with many tied ordinal values they down-weight whole levels.
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate resamples give NaN, dropped from the band
        fitted = lowess(y, x, frac=0.6, it=0, delta=DELTA * float(np.ptp(x)), return_sorted=True)
    xs, ys = fitted[:, 0], fitted[:, 1]
    xs, first = np.unique(xs, return_index=True)
    return np.interp(grid, xs, ys[first], left=np.nan, right=np.nan)
