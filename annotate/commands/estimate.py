"""``annotate estimate``: effects from LLM labels plus a human sample."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from annotate.analysis.estimation import EstimateOptions, EstimateResult, estimate, estimate_table
from annotate.commands import Written
from annotate.errors import InputError
from annotate.prompts.library import PromptLibrary
from annotate.report.estimate import write_estimate
from annotate.runs.reader import read_run


def estimate_command(
    run_dir: Path,
    options: EstimateOptions,
    out: Path,
    library: PromptLibrary | None,
    prompt_diffs: tuple[Path, ...] = (),
) -> Written[EstimateResult]:
    """Every requested model three ways (LLM only, human only, prediction-powered), written with its page."""
    diffs = tuple(prompt_diff_gold(path) for path in prompt_diffs)
    result = estimate(read_run(run_dir), replace(options, development_gold=diffs), library)
    table = estimate_table(result)
    return Written(result, write_estimate(out, result, table), table)


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
