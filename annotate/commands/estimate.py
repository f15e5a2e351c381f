"""``annotate estimate``: effects from LLM labels plus a human sample."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from annotate.analysis.estimation import EstimateInputs, EstimateOptions, EstimateResult, estimate, estimate_table
from annotate.commands import Written, unfinished
from annotate.errors import InputError
from annotate.prompts.library import PromptLibrary
from annotate.report.estimate import write_estimate
from annotate.runs.coded import read_covariates, read_gold
from annotate.runs.reader import read_beside, read_run


@dataclass(frozen=True)
class EstimateFiles:
    """The files an estimate reads besides the run."""

    gold: Path
    covariates: Path | None = None
    transcripts: tuple[Path, ...] = ()
    """Where the run's transcripts are now, when they moved."""
    labellers: tuple[Path, ...] = ()
    prompt_diffs: tuple[Path, ...] = ()
    """Prompt diffs' outputs: the gold they chose a prompt on is flagged when estimated on."""


def estimate_command(
    run_dir: Path, files: EstimateFiles, options: EstimateOptions, out: Path, library: PromptLibrary | None
) -> Written[EstimateResult]:
    """Every requested model three ways (LLM only, human only, prediction-powered), written with its page."""
    diffs = tuple(prompt_diff_gold(path) for path in files.prompt_diffs)
    inputs = estimate_inputs(run_dir, files)
    result = estimate(inputs, replace(options, development_gold=diffs), library)
    warnings = unfinished(inputs.run, *inputs.labellers)
    result.warnings[:0] = warnings
    table = estimate_table(result)
    return Written(result, write_estimate(out, result, table), table)  # the warnings print with the result


def estimate_inputs(run_dir: Path, files: EstimateFiles) -> EstimateInputs:
    """Every input read once, here: the estimator opens no file."""
    run = read_run(run_dir)
    return EstimateInputs(
        run=run,
        chats=run.chats(list(files.transcripts) or None),
        gold=read_gold(files.gold),
        covariates=read_covariates(files.covariates) if files.covariates else None,
        labellers=tuple(read_beside(run, files.labellers)),
    )


def prompt_diff_gold(path: Path) -> tuple[str, str]:
    """The sha256 of the gold a prompt diff (its output folder or its agreement.json) used to choose a prompt."""
    file = path / "agreement.json" if path.is_dir() else path
    try:
        digest = json.loads(file.read_text(encoding="utf-8")).get("gold_sha256")
    except (OSError, ValueError, AttributeError) as e:
        raise InputError(str(file), None, "gold_sha256", f"not a prompt diff's output: {e}") from e
    if not isinstance(digest, str):
        raise InputError(str(file), None, "gold_sha256", "this diff was run without --gold: no gold to compare")
    return digest, f"the prompt diff in {path}"
