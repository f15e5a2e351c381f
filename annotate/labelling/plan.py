"""``annotate run --dry-run``: what a run would send, counted before any model call.

The same units, the same fit to the context and the same resume rules as the run itself (labelling/resume.py), so
the plan counts exactly the requests the run would make (answers already in the completion cache cost none), and
the prompt tokens as the context fit counts them: by the engine's tokenizer where one is given, else estimated
high (prompts/units.py ``estimated_tokens``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from annotate.config import RunConfig
from annotate.engines import Backend
from annotate.labelling.pipeline import select_prompts
from annotate.labelling.resume import chat_stream, pending_jobs, survey
from annotate.prompts.context import prompt_tokens
from annotate.runs.store import Journal, RunStore

CHUNK = 10_000


@dataclass
class RunPlan:
    """A run's cost before it starts."""

    chats: int = 0
    skipped: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    """Per task: requests still to send (units x repeats not yet in the run directory)."""
    prompt_tokens: int = 0
    """Prompt tokens of those requests (answers excluded)."""
    answer_tokens: int = 0
    """The most answer tokens they may generate (each request's ``max_tokens``)."""
    counted_by: str = "estimate"
    """``engine``: the engine's own tokenizer counted; ``estimate``: estimated high."""
    done: int = 0
    """Units x repeats the run directory already holds."""


def plan_run(config: RunConfig, backend: Backend | None = None) -> RunPlan:
    """Count what ``run`` would send; nothing is written and no model is called. ``backend``: an engine whose
    tokenizer counts (none: the estimate)."""
    versions = select_prompts(config)
    journal = _journal(config)
    found = survey(chat_stream(config), versions, config, journal, None)
    count = backend.count_tokens if backend else None
    result = RunPlan(chats=found.chats, skipped=len(found.skipped))
    requests: Counter[str] = Counter()
    for jobs in pending_jobs(chat_stream(config), versions, config, journal, CHUNK, count):
        for job in jobs:
            requests[job.prompt.task] += 1
            result.prompt_tokens += round(prompt_tokens(job.prompt.render(job.unit), count))
            result.answer_tokens += job.max_tokens
    result.requests = dict(requests)
    result.done = len(journal.done) + len(journal.legacy_done)
    if count is not None and any(requests.values()):
        result.counted_by = "engine"
    return result


def _journal(config: RunConfig) -> Journal:
    """What the run directory already holds, read without taking it (a dry run writes nothing)."""
    if not (config.out / "journal.jsonl").is_file():
        return Journal(config.out / "journal.jsonl")
    store = RunStore(config.out)
    try:
        return store.open(skip_corrupt=config.skip_corrupt_journal)
    finally:
        store.release()
