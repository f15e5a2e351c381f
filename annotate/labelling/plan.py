"""What a run will do, known before any model call: the prompt versions it uses, and what it will send.

``run`` prints this plan before labelling and ``run --dry-run`` prints it alone. The same units, the same fit to the
context and the same resume rules as the run itself (labelling/resume.py), so the plan counts exactly the requests the
run would make (answers already in the completion cache cost none), and the prompt tokens as the context fit counts
them: by the engine's tokenizer where one is given, else estimated high (prompts/units.py ``estimated_tokens``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from annotate.config import RunConfig
from annotate.engines import Backend
from annotate.errors import PromptError
from annotate.labelling.resume import Survey, chat_stream, pending_jobs, survey
from annotate.prompts.context import TokenCounter, prompt_tokens
from annotate.prompts.library import PromptLibrary
from annotate.prompts.template import PromptVersion
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

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def plan_run(config: RunConfig, backend: Backend | None = None) -> RunPlan:
    """Count what ``run`` would send; nothing is written and no model is called. ``backend``: an engine whose
    tokenizer counts (none: the estimate)."""
    versions = select_prompts(config)
    journal = _journal(config)
    found = survey(chat_stream(config), versions, config, journal, None)
    return count_requests(config, versions, journal, found, backend.count_tokens if backend else None)


def count_requests(
    config: RunConfig, versions: list[PromptVersion], journal: Journal, found: Survey, count: TokenCounter | None = None
) -> RunPlan:
    """The requests still to send and their tokens, in one pass over the input that renders every prompt (no model
    call). ``found``: the run's survey of the same input."""
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


def select_prompts(config: RunConfig) -> list[PromptVersion]:
    """The selected prompt versions, checked (metadata, examples, lock) before any engine starts."""
    library = PromptLibrary.from_paths(config.prompts)
    tasks = config.tasks or library.default_tasks()
    if not tasks:
        raise PromptError(
            f"no task to run: {config.prompts.rubrics_dir} and {config.prompts.prompts_dir} hold no task "
            "(a rubric <task>.yaml with a prompt folder <task>/ of versions)"
        )
    if config.prompt_family not in library.families():
        known = ", ".join(library.families())
        raise PromptError(f"--prompt-family {config.prompt_family}: no prompt of that family (families: {known})")
    for task, version in config.prompt_versions.items():
        library.get(task, version)
        if task not in tasks:
            raise PromptError(
                f"a prompt version is chosen for '{task}', which this run does not label (add --task {task})"
            )
    versions = [library.get(t, config.prompt_versions.get(t), config.prompt_family) for t in tasks]
    rated_by: dict[str, str] = {}
    for pv in versions:
        for variable in pv.rubric.variables:
            if variable in rated_by:
                raise PromptError(
                    f"tasks '{rated_by[variable]}' and '{pv.task}' both rate '{variable}': run one of them "
                    "(compare the two in separate runs with annotate agree or validate)"
                )
            rated_by[variable] = pv.task
    library.check_locked(versions, record=True)
    return versions


def _journal(config: RunConfig) -> Journal:
    """What the run directory already holds, read without taking it (a dry run writes nothing)."""
    if not (config.out / "journal.jsonl").is_file():
        return Journal(config.out / "journal.jsonl")
    store = RunStore(config.out)
    try:
        return store.open(skip_corrupt=config.skip_corrupt_journal)
    finally:
        store.release()
