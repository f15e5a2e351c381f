"""``annotate estimate``: effects from LLM labels plus a human sample."""

from __future__ import annotations

from pathlib import Path

from annotate.analysis.estimate import EstimateOptions, estimate, estimate_table
from annotate.analysis.estimate_results import EstimateResult
from annotate.commands import Written
from annotate.prompts.library import PromptLibrary
from annotate.report.estimate import write_estimate
from annotate.runs.reader import read_run


def estimate_command(
    run_dir: Path, options: EstimateOptions, out: Path, library: PromptLibrary | None
) -> Written[EstimateResult]:
    """Every requested model three ways (LLM only, human only, prediction-powered), written with its page."""
    result = estimate(read_run(run_dir), options, library)
    table = estimate_table(result)
    return Written(result, write_estimate(out, result, table), table)
