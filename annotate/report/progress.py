"""What the terminal shows of a run: its cost before the wait, a warm-up estimate, a progress bar, the summary.

On a busy 2-core machine a run can take 40 minutes where an idle one takes one; the user learns what a run will
send before the first request, and how long it will take on this machine once a few requests have been timed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pathlib import Path

    from annotate.config import RunSummary
    from annotate.labelling.plan import RunPlan

err = Console(stderr=True)
out = Console()

WARM_UP = 3
"""Requests answered by the engine (after the first, which pays for loading the model) that time the estimate."""


class ProgressBar:
    """The plan, then units labelled, units/s and ETA on stderr; ``start`` counts from zero again (diff runs two
    sides). Nothing is drawn until the first ``plan``/``start``, so an error found before labelling stays one line.
    """

    def __enter__(self) -> ProgressBar:
        self._progress: Any = None
        self._task: Any = None
        self._clock = _WarmUp(0)
        return self

    def plan(self, plan: RunPlan) -> None:
        if plan.total:
            err.print(plan_line(plan), markup=False, highlight=False, soft_wrap=True)

    def start(self, total: int) -> None:
        if not total and self._progress is None:  # nothing to label: no empty bar
            return
        if self._progress is None:
            self._progress = _rich_progress()
            self._progress.start()
            self._task = self._progress.add_task("units", total=total)
        self._progress.reset(self._task, total=total)
        self._clock = _WarmUp(total)

    def advance(self, n: int = 1, cached: bool = False) -> None:
        self._progress.advance(self._task, n)
        estimate = self._clock.tick(n, cached)
        if estimate:
            self._progress.console.print(estimate, markup=False, highlight=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


class _WarmUp:
    """Times the first few engine answers and says, once, what the rest will take at that rate."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.first: tuple[float, int] | None = None  # (when, answers done) at the first engine answer
        self.told = False

    def tick(self, n: int, cached: bool) -> str | None:
        self.done += n
        if cached or self.told:
            return None
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, self.done)
            return None
        timed = self.done - self.first[1]
        if timed < WARM_UP:
            return None
        self.told = True
        left = self.total - self.done
        if left <= 0:
            return None
        span = now - self.first[0]
        if span < 0.05 * (self.first[0] - self.started):  # a batched engine answers a batch at once
            return warm_up_line((now - self.started) / self.done, self.done, left, batched=True)
        return warm_up_line(span / timed, timed, left, batched=False)


def plan_line(plan: RunPlan, run_dir: Path | None = None) -> str:
    """Requests, prompt tokens and answer tokens still to send, told before the first request."""
    by_task = ", ".join(f"{task} {n}" for task, n in sorted(plan.requests.items())) or "none"
    counted = "counted by the engine" if plan.counted_by == "engine" else "estimated high"
    held = f"; {plan.done} units already in {run_dir}" if plan.done and run_dir else ""
    return (
        f"to send: {plan.total} requests ({by_task}), {plan.prompt_tokens:,} prompt tokens ({counted}), at most "
        f"{plan.answer_tokens:,} answer tokens{held}; answers already in the cache cost none"
    )


def warm_up_line(seconds_each: float, timed: int, left: int, batched: bool) -> str:
    """What the rest will take at the rate the warm-up measured on this machine."""
    how = f"{timed} requests in one batch, model load included" if batched else f"over {timed} requests"
    return (
        f"measured here: {seconds_each:.2f} s a request ({how}): about {duration(seconds_each * left)} for the "
        f"{left} left; the eta on the progress line follows the rate as it goes"
    )


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_plan(plan: RunPlan, run_dir: Path) -> None:
    """What ``run --dry-run`` found: the plan, and where the time estimate comes from."""
    lines = [f"dry run: {plan.chats} chats ({plan.skipped} records skipped)"]
    if not plan.total:
        _say("\n".join([*lines, f"nothing to send: the {plan.done} units these chats give are in {run_dir} already"]))
        return
    lines += [
        plan_line(plan, run_dir),
        "time: a run times its first few requests and says how long the rest will take on this machine; "
        "docs/engines.md gives what a request costs per model on a 2-core machine. Start small with --limit or "
        "--task.",
    ]
    _say("\n".join(lines))


def print_run_summary(summary: RunSummary) -> None:
    labelled = sum(sum(counts.values()) for counts in summary.counts.values())
    if summary.chats and labelled and not summary.model_calls and not summary.cache_hits:
        _say(f"finished already: nothing to do ({labelled} labels in {summary.out} from an earlier run)")
        return
    statuses = sorted({s for counts in summary.counts.values() for s in counts})
    _say(f"run {summary.run_id}: labels by task and status")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("task", no_wrap=True)
    for s in statuses:
        table.add_column(s, justify="right")
    for task_name, counts in sorted(summary.counts.items()):
        table.add_row(task_name, *(str(counts.get(s, 0)) for s in statuses))
    out.print(table)
    rate = summary.model_calls / summary.seconds if summary.seconds else 0.0
    lines = [
        f"chats: {summary.chats} ({summary.chats_without_handoff} without a handoff, so no post-handoff units)",
        f"input records skipped: {summary.skipped_records}",
        f"model calls: {summary.model_calls}, cache hits: {summary.cache_hits}",
        f"tokens: {summary.prompt_tokens} prompt ({summary.cached_prompt_tokens} reused from the engine's prefix cache)"
        f" + {summary.completion_tokens} completion",
        f"time: {summary.seconds:.1f} s ({rate:.2f} model calls/s)",
        f"labels: {summary.out / 'labels.parquet'} (and labels.csv, manifest.json)",
    ]
    _say("\n".join(lines))


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _rich_progress() -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            # Completed over elapsed: engines that answer a batch at once make the windowed speed meaningless.
            elapsed = task.elapsed or 0.0
            return Text(f"{task.completed / elapsed:.2f} units/s" if elapsed and task.completed else "- units/s")

    columns = [TextColumn("labelling"), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn()]
    return Progress(*columns, TextColumn("eta"), TimeRemainingColumn(), console=err)
