"""``annotate validate``: a run's labels against human gold labels."""

from __future__ import annotations

from pathlib import Path

from annotate.analysis.results import ValidationResult
from annotate.analysis.trajectories import TRAJECTORY_RESAMPLES, run_trajectories
from annotate.analysis.validate import validate
from annotate.commands import Written, unfinished
from annotate.prompts.library import PromptLibrary
from annotate.report.validation import write_validation
from annotate.runs.coded import read_gold
from annotate.runs.reader import incomplete_note, read_run


def validate_command(
    run_dir: Path,
    gold: Path,
    out: Path,
    library: PromptLibrary,
    transcripts: list[Path] | None = None,
    repeat: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
    group_by: str | None = None,
) -> Written[ValidationResult]:
    """Agreement, calibration and worth per variable, and the sentiment trajectories when the run has them."""
    run = read_run(run_dir)
    chats = run.chats(transcripts)
    result = validate(run, read_gold(gold), chats, library, repeat, n_boot, seed)
    result.run.incomplete = incomplete_note(run)
    bands = min(n_boot, TRAJECTORY_RESAMPLES)  # --bootstrap 0: curves without bands, one LOESS fit per group
    sentiment = run_trajectories(run, chats, group_by, bands, seed, repeat, strict=False)
    return Written(result, write_validation(out, result, sentiment, seed), warnings=unfinished(run))
