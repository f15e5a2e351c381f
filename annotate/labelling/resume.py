"""What a run still has to do, given what its directory already holds, and whether it may go on at all.

Every journaled unit carries a hash of exactly what was labelled (the transcript as the model saw it).
Resuming is allowed when every unit already labelled is still produced by the input, unchanged: new
units (chats appended to the input, a larger ``--limit``, more ``--repeats``) are labelled and recorded
as growth. A unit whose text changed (an edited chat, another role map or redaction), or that the input
no longer produces (a smaller ``--limit`` or ``--repeats``, a shortened file), is refused, because the
run directory would otherwise mix labels of two inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from annotate.config import RunConfig
from annotate.errors import RunStoreError
from annotate.hashing import file_sha256
from annotate.ingest.model import Chat, Skip
from annotate.ingest.readers import read_as_run
from annotate.ingest.segmentation import handoff_index
from annotate.labelling.jobs import Job
from annotate.prompts.context import TokenCounter, fit_to_context
from annotate.prompts.template import PromptVersion
from annotate.prompts.units import Unit, units_for
from annotate.runs.manifest import RunManifest, recorded_options
from annotate.runs.store import Journal, UnitKey, compact


@dataclass
class Survey:
    """What the input gives, counted in one streaming pass before anything is labelled."""

    pending: int = 0
    """Units x repeats still to label."""
    added: int = 0
    """Units the directory did not hold before (all of them for a new run)."""
    chats: int = 0
    chats_without_handoff: int = 0
    skipped: list[Skip] = field(default_factory=list)


def chat_stream(config: RunConfig) -> Iterator[Chat | Skip]:
    """The input's chats (the first ``--limit`` of them, redacted if asked) and skipped records, streamed."""
    return read_as_run(config.inputs, config.role_map, config.limit, config.redact, config.strict)


def unit_hash(unit: Unit, max_model_len: int) -> str:
    """What one request labels: the task, the round, and the transcript exactly as the template gets it.

    The context length is part of it, because a smaller one cuts long units further (see prompts/context.py).
    """
    payload = [unit.task, unit.round, unit.truncation, max_model_len, unit.as_template_data()]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def unit_key(unit: Unit, repeat: int) -> UnitKey:
    return (unit.task, unit.chat_id, unit.round, repeat)


def survey(
    items: Iterable[Chat | Skip],
    versions: list[PromptVersion],
    config: RunConfig,
    journal: Journal,
    previous: RunManifest | None,
) -> Survey:
    """Count the work left, and refuse an input that changed or shrank since ``previous`` (the old manifest)."""
    found = Survey()
    tasks = {pv.task for pv in versions}
    matched = 0
    changed: list[UnitKey] = []
    post_handoff = any(pv.rubric.unit == "post_handoff" for pv in versions)
    for item in items:
        if isinstance(item, Skip):
            found.skipped.append(item)
            continue
        found.chats += 1
        found.chats_without_handoff += post_handoff and handoff_index(item) is None
        for _, unit in _units(item, versions, config):
            digest = unit_hash(unit, config.options.max_model_len)
            for repeat in range(config.repeats):
                key = unit_key(unit, repeat)
                short = compact(key)
                before = journal.hashes.get(short)  # None: new, or a row from before unit hashes
                matched += short in journal.hashes
                found.added += short not in journal.hashes
                found.pending += not journal.finished(key, unit.label_rounds)
                if before is not None and before != int(digest, 16):
                    changed.append(key)
    gone = sum(journal.units_by_task.get(t, 0) for t in tasks) - matched
    _refuse_mixing(changed, gone, journal, versions, config, previous)
    return found


def pending_jobs(
    items: Iterable[Chat | Skip],
    versions: list[PromptVersion],
    config: RunConfig,
    journal: Journal,
    chunk: int,
    count: TokenCounter | None = None,
) -> Iterator[list[Job]]:
    """The jobs left to do, about ``chunk`` at a time, each chunk grouped by task so prompts share a prefix.
    ``count``: the engine's token count, for the fit to the context (None: the estimate)."""
    order = {pv.task: i for i, pv in enumerate(versions)}
    jobs: list[Job] = []
    for item in items:
        if isinstance(item, Skip):
            continue
        for pv, unit in _units(item, versions, config):
            digest = unit_hash(unit, config.options.max_model_len)
            todo = [r for r in range(config.repeats) if not journal.finished(unit_key(unit, r), unit.label_rounds)]
            if todo:
                fitted = fit_to_context(unit, pv, config.options.max_model_len, count)
                jobs += [Job(fitted, pv, r, max_tokens=pv.max_tokens_for(fitted), unit_hash=digest) for r in todo]
        if len(jobs) >= chunk:
            yield sorted(jobs, key=lambda job: order[job.prompt.task])
            jobs = []
    if jobs:
        yield sorted(jobs, key=lambda job: order[job.prompt.task])


def _units(chat: Chat, versions: list[PromptVersion], config: RunConfig) -> Iterator[tuple[PromptVersion, Unit]]:
    for pv in versions:
        for unit in units_for(chat, pv.task, pv.rubric.unit, config.max_chars):
            yield pv, unit


def _refuse_mixing(
    changed: list[UnitKey],
    gone: int,
    journal: Journal,
    versions: list[PromptVersion],
    config: RunConfig,
    previous: RunManifest | None,
) -> None:
    if changed:
        what = f"{len(changed)} labelled unit(s) now have other text (e.g. {_describe(changed[0])})"
    elif gone:
        given = _given(versions, config)  # a second pass over the input, on this error path only
        tasks = {pv.task for pv in versions}
        example = next(k for k in journal.written_keys() if k[0] in tasks and compact(k) not in given)
        what = f"it holds labels for {gone} unit(s) this input does not give (e.g. {_describe(example)})"
    else:
        return
    causes = _option_changes(previous, config)
    because = f" ({'; '.join(causes)})" if causes else ""
    raise RunStoreError(
        f"{config.out}: the input changed since this run labelled it{because}: {what}; resuming would mix old and "
        "new labels: choose a new --out directory (appending chats or raising --limit or --repeats is fine)"
    )


def _given(versions: list[PromptVersion], config: RunConfig) -> set[int]:
    return {
        compact(unit_key(unit, r))
        for item in chat_stream(config)
        if isinstance(item, Chat)
        for _, unit in _units(item, versions, config)
        for r in range(config.repeats)
    }


def _option_changes(previous: RunManifest | None, config: RunConfig) -> list[str]:
    """Which recorded options or input files differ from the run being resumed."""
    if previous is None:
        return []
    before, now = previous.options.model_dump(), recorded_options(config)
    found = [
        f"{name} {before.get(name)} -> {now[name]}" for name in now if name in before and before[name] != now[name]
    ]
    old_inputs = {Path(e.path).name: e.sha256 for e in previous.inputs}
    for path in config.inputs:
        if path.name in old_inputs and old_inputs[path.name] != file_sha256(path):
            found.append(f"{path.name} has other content")
    return found


def _describe(key: UnitKey) -> str:
    task, chat_id, round_number, repeat = key
    where = f" round {round_number}" if round_number is not None else ""
    return f"chat {chat_id}{where}, task {task}, repeat {repeat}"
