"""Figures for reports, as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def agreement_intervals(rows: Sequence[dict[str, Any]], statistics: Sequence[str]) -> bytes:
    """Point estimate and 95% interval of each statistic for each row (variable or pair)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(rows) * len(statistics) / 2 + 0.6))
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    height = 0.8 / len(statistics)
    for s_index, stat in enumerate(statistics):
        for r_index, row in enumerate(rows):
            y = r_index + s_index * height - 0.4 + height / 2
            value = row.get(stat)
            if value is None:
                continue
            low, high = (row.get("ci95", {}).get(stat) or [None, None])[:2]
            if low is not None and high is not None:
                ax.plot([low, high], [y, y], color=colours[s_index % 4], lw=2, alpha=0.6)
            ax.plot([value], [y], "o", color=colours[s_index % 4], label=stat if r_index == 0 else None)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([row["name"] for row in rows])
    ax.invert_yaxis()
    ax.axvline(0, color="grey", lw=0.8)
    for x in (0.6, 0.8):
        ax.axvline(x, color="grey", lw=0.5, ls=":")
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("agreement (dots) with 95% bootstrap interval over chats (lines)")
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    return _png(fig)


def confusion_heatmap(
    matrix: Sequence[Sequence[int]],
    categories: Sequence[int],
    title: str,
    row_name: str = "human",
    column_name: str = "LLM",
) -> bytes:
    plt = _pyplot()
    data = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.1 + 0.55 * len(categories), 1.0 + 0.5 * len(categories)))
    ax.imshow(data, cmap="Blues")
    for (i, j), count in np.ndenumerate(data):
        ax.text(
            j, i, str(count), ha="center", va="center", color="white" if count > data.max() / 2 else "black", fontsize=9
        )
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories)
    ax.set_yticks(range(len(categories)))
    ax.set_yticklabels(categories)
    ax.set_xlabel(column_name)
    ax.set_ylabel(row_name)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def trajectory_frame(labels: pd.DataFrame, meta: dict[str, dict[str, Any]], group_by: str | None) -> pd.DataFrame:
    """Per-round negative sentiment placed on each chat's 0-100% timeline, with its group."""
    rows = labels[(labels["variable"] == "negative_sentiment") & (labels["status"] == "ok")].copy()
    if rows.empty:
        return rows
    rows["round"] = rows["round"].astype(int)
    last = rows.groupby("chat_id")["round"].transform("max")
    rows["position"] = np.where(last > 1, (rows["round"] - 1) / (last - 1).clip(lower=1) * 100, 0.0)
    rows["group"] = [str(meta.get(c, {}).get(group_by, "all")) if group_by else "all" for c in rows["chat_id"]]
    return rows[["chat_id", "round", "position", "value", "group"]]


def trajectories(frame: pd.DataFrame, group_by: str | None, n_boot: int = 200, seed: int = 0) -> bytes:
    """LOESS of negative sentiment over the chat timeline, one curve and 95% band (chat bootstrap) per group."""
    plt = _pyplot()
    grid = np.linspace(0, 100, 41)
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(7, 4))
    for group, rows in sorted(frame.groupby("group"), key=lambda g: str(g[0])):
        x, y = rows["position"].to_numpy(float), rows["value"].to_numpy(float)
        if len(np.unique(x)) < 3:
            continue
        curve = _smooth(x, y, grid)
        chats = rows["chat_id"].to_numpy()
        unique = np.unique(chats)
        members = {c: np.flatnonzero(chats == c) for c in unique}
        draws = []
        for _ in range(n_boot):
            picked = np.concatenate([members[c] for c in rng.choice(unique, len(unique))])
            if len(np.unique(x[picked])) >= 3:
                draws.append(_smooth(x[picked], y[picked], grid))
        line = ax.plot(grid, curve, label=f"{group} ({len(unique)} chats)")[0]
        if len(draws) >= 20:
            band = np.nanpercentile(np.asarray(draws), [2.5, 97.5], axis=0)
            ax.fill_between(grid, band[0], band[1], color=line.get_color(), alpha=0.15)
        ax.scatter(x, y + rng.uniform(-0.08, 0.08, len(y)), s=8, color=line.get_color(), alpha=0.35)
    ax.set_xlabel("position in chat (% of rounds)")
    ax.set_ylabel("customer negative sentiment (1-5)")
    ax.set_ylim(0.7, 5.3)
    ax.set_title("Negative sentiment across the chat" + (f", by {group_by}" if group_by else ""), fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def _smooth(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """LOESS fitted at the data, then read off on the grid (NaN outside the data's range).

    No robustness iterations (``it=0``): with many tied ordinal values they down-weight whole levels.
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate resamples give NaN, dropped from the band
        fitted = lowess(y, x, frac=0.6, it=0, return_sorted=True)
    xs, ys = fitted[:, 0], fitted[:, 1]
    xs, first = np.unique(xs, return_index=True)
    return np.interp(grid, xs, ys[first], left=np.nan, right=np.nan)


def finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
