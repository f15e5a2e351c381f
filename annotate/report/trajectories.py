"""``annotate trajectories``: the sentiment-over-the-chat figure of one run, as a PNG file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from annotate.analysis.trajectories import trajectories, trajectory_frame
from annotate.errors import RunStoreError
from annotate.ingest.segmentation import handoff_round
from annotate.report import plots
from annotate.runs.outputs import write_atomic
from annotate.runs.reader import read_run


def write_trajectories(
    run_dir: Path,
    out: Path,
    group_by: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    transcripts: list[Path] | None = None,
) -> pd.DataFrame:
    """Draw per-round negative sentiment by ``group_by`` into ``out``; return the rounds drawn."""
    run = read_run(run_dir)
    labels = run.labels
    chats = run.chats(transcripts)
    meta = {c.chat_id: dict(c.meta) for c in chats}
    if group_by and not any(group_by in m for m in meta.values()):
        raise RunStoreError(f"no chat of {run_dir} has the metadata field '{group_by}'")
    handoffs = {c.chat_id: handoff_round(c) for c in chats}
    frame = trajectory_frame(labels[labels["repeat"] == 0], meta, group_by, handoffs)
    if frame.empty:
        raise RunStoreError(f"{run_dir} has no ok negative_sentiment labels (task round_sentiment)")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, plots.trajectories(trajectories(frame, n_boot, seed), group_by, seed=seed))
    return frame
