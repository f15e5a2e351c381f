"""``annotate diff``: two prompt versions (or task sets) side by side; with transcripts, both label them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from annotate.analysis.diff import Side, compare_runs, describe, diff_truth, task_set, versions
from annotate.analysis.results import DiffResult, SideRun
from annotate.commands import Written
from annotate.config import RunConfig
from annotate.labelling.pipeline import Progress, run
from annotate.prompts.library import PromptLibrary
from annotate.report.diff import write_diff
from annotate.runs.coded import read_gold
from annotate.runs.reader import read_run

if TYPE_CHECKING:
    from annotate.engines import Backend  # a started engine passes through to the pipeline untouched


def diff_command(
    library: PromptLibrary,
    first: str,
    second: str,
    third: str | None,
    out: Path,
    base: RunConfig | None = None,
    gold: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> Written[DiffResult]:
    """``first second third`` name a task and two versions; ``first second`` two task sets.

    With ``base`` (transcripts and engine) both sides label the same units (``backend``: an engine already
    started, as tests pass a scripted one); writes the report and prompt.diff.
    """
    if third is None:
        a, b = task_set(library, first), task_set(library, second)
        result = describe(a, b, gold)
    else:
        a, b = versions(library, first, second, third)
        result = describe(a, b, gold, title=first)
    if base is not None:
        coded = read_gold(gold) if gold else None
        truth = diff_truth(a, b, coded) if coded else None  # bad gold stops the diff before any labelling
        if coded:
            result.gold_sha256 = coded.sha256  # estimate --prompt-diff reads it back: no hidden state
        for side in (a, b):
            result.runs[side.name] = label_side(side, base, progress, backend)
        first_run, second_run = (read_run(Path(result.runs[side.name].dir)) for side in (a, b))
        chats = first_run.chats()
        result = compare_runs(result, a, b, first_run, second_run, library, truth, n_boot, seed, chats)
    return Written(result, write_diff(out, result))


def label_side(side: Side, base: RunConfig, progress: Progress | None, backend: Backend | None) -> SideRun:
    """One side's run over the diff's transcripts, in ``<out>/runs/<side>`` (the cache makes a rerun free)."""
    config = replace(
        base,
        tasks=[pv.task for pv in side.prompts],
        prompt_versions={pv.task: pv.version for pv in side.prompts},
        out=base.out / "runs" / side.name,
    )
    summary = run(config, backend=backend, progress=progress)
    return SideRun(
        dir=str(config.out),
        model_calls=summary.model_calls,
        cache_hits=summary.cache_hits,
        prompt_tokens=summary.prompt_tokens,
        evaluated_prompt_tokens=summary.prompt_tokens - summary.cached_prompt_tokens,
        completion_tokens=summary.completion_tokens,
        seconds=round(summary.seconds, 1),
    )
