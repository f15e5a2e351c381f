"""``annotate trajectories``: the sentiment-over-the-chat figure of one run, as a PNG file."""

from __future__ import annotations

from pathlib import Path

from annotate.analysis.trajectories import SentimentCurves
from annotate.report import plots
from annotate.runs.outputs import write_atomic


def write_trajectories(out: Path, sentiment: SentimentCurves, seed: int = 0) -> Path:
    """Draw the curves into ``out`` (a PNG file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, plots.trajectories(sentiment.curves, sentiment.group_by, seed, sentiment.undrawn))
    return out
