"""``annotate trajectories``: per-round negative sentiment over the chats, as a figure."""

from __future__ import annotations

from pathlib import Path

from annotate.analysis.trajectories import SentimentCurves, run_trajectories
from annotate.commands import Written, unfinished
from annotate.report.trajectories import write_trajectories
from annotate.runs.reader import read_run
from annotate.runs.resume import check_not_a_run_file


def trajectories_command(
    run_dir: Path,
    out: Path,
    group_by: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    transcripts: list[Path] | None = None,
) -> Written[SentimentCurves]:
    """The curves by ``group_by`` drawn into ``out``."""
    check_not_a_run_file(out)
    run = read_run(run_dir)
    sentiment = run_trajectories(run, run.chats(transcripts), group_by, n_boot, seed)
    return Written(sentiment, [write_trajectories(out, sentiment, seed)], sentiment.frame, unfinished(run))
