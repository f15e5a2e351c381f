"""Figures for reports, as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from annotate.analysis.trajectories import Trajectory
from annotate.prompts.units import WIDE

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)
"""Fonts with Chinese glyphs, used after matplotlib's own when one is installed (Debian: fonts-noto-cjk)."""


@cache
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cjk_font():  # matplotlib falls back glyph by glyph along the families named here
        plt.rcParams["font.family"] = [*plt.rcParams["font.sans-serif"][:1], cjk_font()]
    return plt


CJK_FILES = re.compile(r"(?i)wqy|noto.*cjk|sourcehan|source-han|droidsansfallback|simhei|msyh|pingfang")
"""File names of the fonts in ``CJK_FONTS``, to find one on disk that matplotlib's font cache predates."""


@cache
def cjk_font() -> str | None:
    """A font with Chinese glyphs: from matplotlib's font list, else from the disk as it is now (a font installed
    after matplotlib cached its list, e.g. by ``make install-browser`` after ``make install``, is added)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    known = next((name for name in CJK_FONTS if name in installed), None)
    if known:
        return known
    for path in sorted(font_manager.findSystemFonts()):
        if CJK_FILES.search(Path(path).name):
            font_manager.fontManager.addfont(path)
            name = font_manager.FontProperties(fname=path).get_name()
            if name in CJK_FONTS:
                return name
    return None


def drawable(text: str) -> str:
    """The text, or where it holds Chinese and no font can draw it, the text without it (the page's tables
    carry the names in full): a figure never shows empty boxes."""
    if cjk_font() or not WIDE.search(text):
        return text
    return WIDE.sub("", text).strip()


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def agreement_intervals(rows: Sequence[tuple[str, Any]], statistics: Sequence[str]) -> bytes:
    """Point estimate and 95% interval of each statistic for each named row (a variable, or a pair of runs).

    Each row's object has the statistics as attributes and a ``ci95`` mapping; NaN values are left out.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(rows) * len(statistics) / 2 + 0.6))
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    height = 0.8 / len(statistics)
    named: set[str] = set()  # each statistic in the legend once, at its first drawn point
    for s_index, stat in enumerate(statistics):
        for r_index, (_, row) in enumerate(rows):
            y = r_index + s_index * height - 0.4 + height / 2
            value = getattr(row, stat)
            if np.isnan(value):
                continue
            low, high = row.ci95.get(stat, (np.nan, np.nan))
            if not (np.isnan(low) or np.isnan(high)):
                ax.plot([low, high], [y, y], color=colours[s_index % 4], lw=2, alpha=0.6)
            ax.plot([value], [y], "o", color=colours[s_index % 4], label=None if stat in named else stat)
            named.add(stat)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in rows])
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
    names: dict[str, str] | None = None,
) -> bytes:
    """Counts per (row label, column label); each value shown with its category name when the rubric gives one."""
    plt = _pyplot()
    data = np.asarray(matrix)
    ticks = [drawable(f"{c} {names[str(c)]}") if names and names.get(str(c)) else str(c) for c in categories]
    wide = max(len(t) for t in ticks) if ticks else 1
    fig, ax = plt.subplots(figsize=(1.1 + 0.55 * len(categories) + 0.05 * wide, 1.0 + 0.5 * len(categories)))
    ax.imshow(data, cmap="Blues")
    for (i, j), count in np.ndenumerate(data):
        ax.text(
            j, i, str(count), ha="center", va="center", color="white" if count > data.max() / 2 else "black", fontsize=9
        )
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(ticks, rotation=30 if wide > 3 else 0, ha="right" if wide > 3 else "center", fontsize=8)
    ax.set_yticks(range(len(categories)))
    ax.set_yticklabels(ticks, fontsize=8)
    ax.set_xlabel(column_name)
    ax.set_ylabel(row_name)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def trajectories(
    curves: Sequence[Trajectory], group_by: str | None, seed: int = 0, undrawn: Sequence[str] = ()
) -> bytes:
    """One LOESS curve and 95% band per group, over the labels themselves (jittered); groups too small for a
    curve are named under the figure."""
    plt = _pyplot()
    jitter = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(7, 4))
    for t in curves:
        line = ax.plot(t.grid, t.curve, label=f"{t.group} ({t.chats} chats)")[0]
        if t.band is not None:
            ax.fill_between(t.grid, t.band[0], t.band[1], color=line.get_color(), alpha=0.15)
        ax.scatter(
            t.position, t.value + jitter.uniform(-0.08, 0.08, len(t.value)), s=8, color=line.get_color(), alpha=0.35
        )
    ax.axvline(0, color="#999", lw=1, ls="--")
    ax.set_xlabel("rounds from the handoff (0: the human agent takes over; no handoff: from round 1)")
    ax.set_ylabel("customer negative sentiment (1-5)")
    ax.set_ylim(0.7, 5.3)
    ax.set_title("Negative sentiment around the handoff" + (f", by {group_by}" if group_by else ""), fontsize=10)
    if curves:
        ax.legend(fontsize=8, frameon=False)
    if undrawn:
        names = ", ".join(drawable(g) for g in undrawn)
        fig.text(0.01, -0.02, f"no curve (fewer than 3 distinct rounds): {names}", fontsize=7, va="top")
    return _png(fig)


ESTIMATORS = [
    ("llm_only", "LLM labels only", "#d62728"),
    ("human_only", "human labels only", "#7f7f7f"),
    ("ppi", "prediction-powered", "#1f77b4"),
    ("combined", "prediction-powered, labellers combined", "#2ca02c"),
]


def coefficients(terms: Sequence[Any], title: str, axis: str = "") -> bytes:
    """Each term's estimates (three, and the combination of labellers when there is one) with their 95%
    intervals, one row per term."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(terms)))
    shown = [e for e in ESTIMATORS if any(getattr(t, e[0], None) is not None for t in terms)]
    for k, (name, label, colour) in enumerate(shown):
        for i, term in enumerate(terms):
            est = getattr(term, name)
            if est is None or est.estimate is None:
                continue
            y = len(terms) - 1 - i + ((len(shown) - 1) / 2 - k) * 0.2
            ax.plot([est.low, est.high], [y, y], color=colour, lw=2.2, alpha=0.7)
            ax.plot([est.estimate], [y], "o", color=colour, label=label if i == 0 else None)
    ax.set_yticks(range(len(terms)))
    ax.set_yticklabels([t.term for t in reversed(terms)])
    ax.axvline(0, color="#bbb", lw=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(axis, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14 - 0.3 / len(terms)), ncol=2, fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no term is estimable", transform=ax.transAxes, ha="center", va="center", color="#777")
    return _png(fig)


def reliability(scored: Sequence[tuple[str, Any]]) -> bytes:
    """Accuracy against mean confidence per confidence bin: one panel per variable (dot area: labels in the bin)."""
    plt = _pyplot()
    columns = min(4, max(1, len(scored)))
    rows = -(-len(scored) // columns) if scored else 1
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.6 * columns, 2.5 * rows), squeeze=False, sharex=True, sharey=True
    )
    for ax in axes.flat[len(scored) :]:
        ax.set_visible(False)
    for ax, (name, calibration) in zip(axes.flat, scored, strict=False):
        bins = calibration.reliability
        ax.plot([0, 1], [0, 1], color="#bbb", lw=1)
        ax.plot([b.confidence for b in bins], [b.accuracy for b in bins], "-", lw=1, alpha=0.6)
        ax.scatter([b.confidence for b in bins], [b.accuracy for b in bins], s=[8 + 4 * b.n for b in bins])
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("confidence", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("share = human label", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def risk_coverage(scored: Sequence[tuple[str, Any]]) -> bytes:
    """Cohen's kappa of the labels kept as the least confident share goes to humans."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for name, calibration in scored:
        points = [p for p in calibration.risk_coverage if np.isfinite(p.cohen_kappa)]
        if points:  # a variable whose κ is undefined everywhere draws no line, so the legend does not name it
            ax.plot([100 * p.deferred for p in points], [p.cohen_kappa for p in points], "o-", label=name)
    ax.axhline(0, color="#bbb", lw=1)
    ax.set_xlabel("% least confident labels sent to humans")
    ax.set_ylabel("Cohen κ of the labels kept")
    ax.legend(fontsize=7)
    return _png(fig)
