"""The run: transcripts -> units -> rendered prompts -> engine -> parsed labels -> run directory.

Requests go to the engine in batches (one engine call per batch, never one per prompt), ordered by
task so that consecutive requests share the static prompt prefix. Every answer is cached by content
and journaled as it arrives; a killed run resumes from the journal.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from annotate.config import RunConfig, RunSummary, cache_dir
from annotate.engines import Backend, Completion, create_engine
from annotate.engines.embedded import EMBEDDED
from annotate.errors import PromptError, RunStoreError
from annotate.ingest.model import Chat, ReadResult
from annotate.ingest.readers import read_transcripts
from annotate.ingest.redaction import redact_chat
from annotate.ingest.segmentation import handoff_index
from annotate.labelling.cache import CompletionCache
from annotate.labelling.jobs import Job, RowContext, fit_to_context
from annotate.labelling.library import PromptLibrary
from annotate.labelling.manifest import build_manifest
from annotate.labelling.prompts import PromptVersion
from annotate.labelling.rows import FINAL_STATUSES, LabelRow, unit_key
from annotate.labelling.store import RunStore
from annotate.labelling.units import units_for


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


@dataclass
class _Tally:
    model_calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0


def run(config: RunConfig, backend: Backend | None = None, progress: Progress | None = None) -> RunSummary:
    """Label every unit of every selected task, resuming whatever ``config.out`` already holds.

    ``backend`` is an engine already started (tests pass a scripted one); by default the run starts its own.
    """
    started = time.time()
    read, chats = _read_chats(config)
    versions = select_prompts(config)
    engine = backend or create_engine(config.backend, config.options, config.ray)
    try:
        return _label(config, engine, read, chats, versions, started, progress)
    finally:
        if backend is None:
            engine.close()


def _label(
    config: RunConfig,
    engine: Backend,
    read: ReadResult,
    chats: list[Chat],
    versions: list[PromptVersion],
    started: float,
    progress: Progress | None,
) -> RunSummary:
    identity = engine.identity()
    fingerprint = {
        "backend": config.backend,
        "model": identity,
        "sampling": config.sampling.as_dict(),
        "max_chars": config.max_chars,
        "redact": config.redact,
    }
    store = RunStore(config.out)
    previous_rows = store.open(fingerprint)
    previous = store.read_manifest() or {}
    _check_prompts_unchanged(previous, versions, config.out)
    run_id = previous.get("run_id") or _new_run_id()
    ctx = RowContext(run_id, _model_name(config), config.backend, config.sampling, config.max_attempts)

    def manifest(status: str, summary: RunSummary | None) -> dict[str, Any]:
        return build_manifest(
            run_id=run_id,
            status=status,
            started=previous.get("started_at") or _iso(started),
            config=config,
            versions={**previous.get("prompts", {}), **{pv.task: _prompt_entry(pv) for pv in versions}},
            fingerprint=fingerprint,
            summary=summary,
        )

    store.write_manifest(manifest("running", None))
    done = {unit_key(r) for r in previous_rows if r["status"] in FINAL_STATUSES}
    tally = _Tally()
    cache = CompletionCache(cache_dir() / "completions.sqlite3" if config.use_cache else None)
    try:
        skip_rows = [LabelRow.skipped(s.chat_id, s.reason, run_id, config.backend) for s in read.skipped]
        store.append(r.model_dump() for r in skip_rows if unit_key(r.model_dump()) not in done)
        jobs = _jobs(chats, versions, config, done)
        if progress:
            progress.start(len(jobs))
        _execute(jobs, engine, identity, config, ctx, cache, store, tally, progress)
    except KeyboardInterrupt:
        store.close()
        store.write_manifest(manifest("interrupted", None))
        raise
    finally:
        cache.close()
    store.close()
    summary = _summarise(config, store, read, chats, versions, tally, run_id, started)
    store.write_manifest(manifest("complete", summary))
    return summary


def _summarise(
    config: RunConfig,
    store: RunStore,
    read: ReadResult,
    chats: list[Chat],
    versions: list[PromptVersion],
    tally: _Tally,
    run_id: str,
    started: float,
) -> RunSummary:
    table = store.write_tables()
    counts: dict[str, dict[str, int]] = {}
    for (task, status), n in Counter(zip(table["task"], table["status"], strict=True)).items():
        counts.setdefault(task or "(input)", {})[status] = int(n)
    has_post_handoff = any(pv.rubric.unit == "post_handoff" for pv in versions)
    return RunSummary(
        run_id=run_id,
        out=config.out,
        counts=counts,
        chats=len(chats),
        chats_without_handoff=sum(handoff_index(c) is None for c in chats) if has_post_handoff else 0,
        skipped_records=len(read.skipped),
        model_calls=tally.model_calls,
        cache_hits=tally.cache_hits,
        prompt_tokens=tally.prompt_tokens,
        cached_prompt_tokens=tally.cached_prompt_tokens,
        completion_tokens=tally.completion_tokens,
        seconds=time.time() - started,
    )


def _read_chats(config: RunConfig) -> tuple[ReadResult, list[Chat]]:
    read = read_transcripts(config.inputs, config.role_map, strict=config.strict)
    chats = read.chats[: config.limit] if config.limit is not None else read.chats
    if config.redact:
        chats = [redact_chat(c) for c in chats]
    return read, chats


def select_prompts(config: RunConfig) -> list[PromptVersion]:
    """The selected prompt versions, checked (metadata, examples, lock) before any engine starts."""
    library = PromptLibrary.from_paths(config.prompts)
    tasks = config.tasks or library.default_tasks()
    if not tasks:
        raise PromptError(
            f"no task to run: {config.prompts.rubrics_dir} and {config.prompts.prompts_dir} hold no task "
            "(a rubric <task>.yaml with a prompt folder <task>/ of versions)"
        )
    for task, version in config.prompt_versions.items():
        library.get(task, version)
        if task not in tasks:
            raise PromptError(
                f"a prompt version is chosen for '{task}', which this run does not label (add --task {task})"
            )
    versions = [library.get(t, config.prompt_versions.get(t)) for t in tasks]
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


def _jobs(chats: list[Chat], versions: list[PromptVersion], config: RunConfig, done: set[tuple[Any, ...]]) -> list[Job]:
    """Every unit x repeat not yet finished, grouped by task so consecutive requests share their prefix."""
    jobs: list[Job] = []
    for pv in versions:
        for chat in chats:
            for unit in units_for(chat, pv.task, pv.rubric.unit, config.max_chars):
                fitted = fit_to_context(unit, pv, config.options.max_model_len)
                jobs.extend(
                    Job(fitted, pv, rep, max_tokens=pv.max_tokens_for(fitted))
                    for rep in range(config.repeats)
                    if any((unit.task, unit.chat_id, r, rep) not in done for r in unit.label_rounds)
                )
    return jobs


def _execute(
    jobs: list[Job],
    engine: Backend,
    identity: Mapping[str, Any],
    config: RunConfig,
    ctx: RowContext,
    cache: CompletionCache,
    store: RunStore,
    tally: _Tally,
    progress: Progress | None,
) -> None:
    pending = jobs
    while pending:
        retries: list[Job] = []
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start : start + config.batch_size]
            for job, completion, cached in _answers(batch, engine, identity, config, cache, tally):
                rows, retry = job.settle(completion, cached, ctx)
                if retry is not None:
                    retries.append(retry)
                else:
                    store.append(row.model_dump() for row in rows)
                    if progress:
                        progress.advance()
            store.sync()
        pending = retries


def _answers(
    batch: list[Job],
    engine: Backend,
    identity: Mapping[str, Any],
    config: RunConfig,
    cache: CompletionCache,
    tally: _Tally,
) -> Iterator[tuple[Job, Completion, bool]]:
    """Cached answers first, then one engine call for the rest, yielded as they arrive."""
    requests = [job.request(identity, config.sampling) for job in batch]
    misses = []
    for job, request in zip(batch, requests, strict=True):
        hit = cache.get(request.key)
        if hit is None:
            misses.append((job, request))
        else:
            tally.cache_hits += 1
            yield job, hit, True
    if not misses:
        return
    tally.model_calls += len(misses)
    completions = engine.complete([r for _, r in misses])
    for (job, request), completion in zip(misses, completions, strict=True):
        tally.prompt_tokens += completion.prompt_tokens
        tally.cached_prompt_tokens += completion.cached_tokens
        tally.completion_tokens += completion.completion_tokens
        cache.put(request.key, completion)
        yield job, completion, False


def _model_name(config: RunConfig) -> str:
    return config.options.model or f"{EMBEDDED.name} (embedded)"


def _prompt_entry(pv: PromptVersion) -> dict[str, Any]:
    return {"version": pv.version, "hash": pv.content_hash, "parent": pv.meta.parent, "max_tokens": pv.meta.max_tokens}


def _check_prompts_unchanged(previous: Mapping[str, Any], versions: list[PromptVersion], out: Path) -> None:
    for pv in versions:
        before = previous.get("prompts", {}).get(pv.task)
        if before and (before["version"], before["hash"]) != (pv.version, pv.content_hash):
            raise RunStoreError(
                f"{out} already holds {pv.task} labels from prompt {before['version']} ({before['hash']}); "
                f"this run uses {pv.version} ({pv.content_hash}): choose a new --out directory"
            )


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
