"""The run: transcripts -> units -> rendered prompts -> engine -> parsed labels -> run directory.

Requests go to the engine in batches (one engine call per batch, never one per prompt), ordered by
task so that consecutive requests share the static prompt prefix. Every answer is cached by content
and journaled as it arrives; a killed run resumes from the journal.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from annotate.config import RunConfig, RunSummary, cache_dir
from annotate.engines import Backend, Completion, create_engine, model_label
from annotate.errors import AnnotateError, RunStoreError
from annotate.ingest.readers import check_inputs
from annotate.labelling.cache import CompletionCache
from annotate.labelling.jobs import Job, RowContext
from annotate.labelling.plan import RunPlan, count_requests, select_prompts
from annotate.labelling.probabilities import NO_ENGINE_PROBABILITIES, VALUE_NOT_FOUND
from annotate.labelling.resume import Survey, chat_stream, pending_jobs, survey, unit_key
from annotate.prompts.template import PromptVersion
from annotate.runs.manifest import RunManifest, build_manifest
from annotate.runs.resume import check_resume
from annotate.runs.rows import LabelRow
from annotate.runs.store import Journal, RunStore, UnitKey


class Progress(Protocol):
    def plan(self, plan: RunPlan) -> None:
        """What the run is about to send, told before the first request (the cost before the wait)."""
        ...

    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1, cached: bool = False) -> None:
        """``cached``: answered from the completion cache, so it says nothing of the engine's speed."""
        ...


@dataclass
class _Tally:
    model_calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    without_probabilities: dict[str, int] = field(default_factory=dict)
    """Why ``ok`` labels of this session have no probabilities -> how many."""


def run(config: RunConfig, backend: Backend | None = None, progress: Progress | None = None) -> RunSummary:
    """Label every unit of every selected task, resuming whatever ``config.out`` already holds.

    ``backend`` is an engine already started (tests pass a scripted one); by default the run starts its own.
    """
    started = time.time()
    check_inputs(config.inputs)
    versions = select_prompts(config)
    engine = backend or create_engine(config.backend, config.options, config.ray)
    try:
        return _label(config, engine, versions, started, progress)
    finally:
        if backend is None:
            engine.close()


@dataclass
class _Session:
    """One process writing one run directory: what it was asked, what it found, and what it does."""

    config: RunConfig
    engine: Backend
    identity: dict[str, Any]
    fingerprint: dict[str, Any]
    store: RunStore
    journal: Journal
    previous: RunManifest | None
    """The manifest the directory held (None for a new run)."""
    survey: Survey
    versions: list[PromptVersion]
    started: float
    run_id: str = ""

    def manifest(self, status: str, summary: RunSummary | None) -> RunManifest:
        this = {"started_at": _iso(self.started), "units_added": self.survey.added}
        prompts = {pv.task: _prompt_entry(pv) for pv in self.versions}
        before = self.previous
        return build_manifest(
            run_id=self.run_id,
            status=status,
            started=(before.started_at if before else None) or _iso(self.started),
            config=self.config,
            versions={**(before.prompts if before else {}), **prompts},
            fingerprint=self.fingerprint,
            summary=summary,
            history=[*(before.history if before else []), this],
        )


def _label(
    config: RunConfig, engine: Backend, versions: list[PromptVersion], started: float, progress: Progress | None
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
    try:
        journal = store.open(skip_corrupt=config.skip_corrupt_journal)
        previous = store.read_manifest()
        check_resume(
            previous,
            config.out,
            fingerprint=fingerprint,
            prompts={pv.task: (pv.version, pv.content_hash) for pv in versions},
            rated_by={v: pv.task for pv in versions for v in pv.rubric.variables},
            labelled=store.labelled,
        )
        found = survey(chat_stream(config), versions, config, journal, previous)
        session = _Session(config, engine, identity, fingerprint, store, journal, previous, found, versions, started)
        session.run_id = previous.run_id if previous else _new_run_id()
        tally = _write_labels(session, progress)
        summary = _summarise(session, tally)
        manifest = session.manifest("complete", summary)
        manifest.probabilities = _probabilities_entry(session, tally, summary.counts)
        store.write_manifest(manifest)
        return summary
    finally:
        store.release()


def _write_labels(session: _Session, progress: Progress | None) -> _Tally:
    config, store = session.config, session.store
    ctx = RowContext(
        session.run_id,
        model_label(config.backend, config.options),
        config.backend,
        config.sampling,
        config.max_attempts,
    )
    store.write_manifest(session.manifest("running", None))
    tally = _Tally()
    cacheable = session.identity.get("cacheable", True)  # False: the server did not say what it serves
    cache = CompletionCache(_cache_path(config) if cacheable else None)
    try:
        for skip in session.survey.skipped:
            key: UnitKey = ("", skip.chat_id, None, 0)
            if key not in session.journal.done:
                row = LabelRow.skipped(skip.chat_id, skip.reason, session.run_id, config.backend)
                store.append_unit(key, None, [row.model_dump()])
        count = session.engine.count_tokens
        if progress:  # one more pass that renders, fitted by the run's own count: the cost before the wait
            progress.plan(count_requests(config, session.versions, session.journal, session.survey, count))
            progress.start(session.survey.pending)
        chunks = pending_jobs(chat_stream(config), session.versions, config, session.journal, CHUNK_JOBS, count)
        for jobs in chunks:
            _execute(jobs, session.engine, session.identity, config, ctx, cache, store, tally, progress)
    except AnnotateError as e:  # the engine could not start or went away: say so in the run, keep what was done
        store.close()
        manifest = session.manifest("failed", None)
        manifest.error = str(e)
        store.write_manifest(manifest)
        raise
    except KeyboardInterrupt:
        store.close()
        manifest = session.manifest("interrupted", None)
        manifest.probabilities = {"missing": _missing_probabilities(session, tally)}  # carried into the resume
        store.write_manifest(manifest)
        raise
    finally:
        cache.close()
    store.close()
    return tally


CHUNK_JOBS = 4096
"""Jobs planned at a time: memory stays flat however large the corpus, and each chunk is grouped by task."""


def _summarise(session: _Session, tally: _Tally) -> RunSummary:
    counts = session.store.write_tables()
    return RunSummary(
        run_id=session.run_id,
        out=session.config.out,
        counts=counts,
        chats=session.survey.chats,
        chats_without_handoff=session.survey.chats_without_handoff,
        skipped_records=len(session.survey.skipped),
        model_calls=tally.model_calls,
        cache_hits=tally.cache_hits,
        prompt_tokens=tally.prompt_tokens,
        cached_prompt_tokens=tally.cached_prompt_tokens,
        completion_tokens=tally.completion_tokens,
        seconds=time.time() - session.started,
    )


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
                _count_missing_probabilities(rows, completion, tally)
                if retry is not None:
                    retries.append(retry)
                else:
                    key = unit_key(job.unit, job.repeat)
                    store.append_unit(key, job.unit_hash, [row.model_dump() for row in rows])
                    if progress:
                        progress.advance(cached=cached)
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


def _count_missing_probabilities(rows: list[LabelRow], completion: Completion, tally: _Tally) -> None:
    missing = sum(1 for row in rows if row.status == "ok" and row.probs is None)
    if missing:
        why = NO_ENGINE_PROBABILITIES if completion.value_logprobs is None else VALUE_NOT_FOUND
        tally.without_probabilities[why] = tally.without_probabilities.get(why, 0) + missing


def _probabilities_entry(session: _Session, tally: _Tally, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """How the run's labels got their probabilities, how many have them, and why the others do not."""
    top = session.identity.get("top_logprobs")
    missing = _missing_probabilities(session, tally)
    return {
        "method": (
            f"the engine's top-{top} token log probabilities at each value's first token, renormalised over the "
            "allowed values (a value outside the top list gets 0)"
            if top
            else "none: turned off (--top-logprobs 0)"
            if session.config.options.top_logprobs == 0
            else f"none: {NO_ENGINE_PROBABILITIES} ({session.config.backend} engine)"
        ),
        "ok_labels": sum(by_status.get("ok", 0) for by_status in counts.values()),
        "with_probabilities": session.store.with_probabilities,
        "missing": missing,
    }


def _missing_probabilities(session: _Session, tally: _Tally) -> dict[str, int]:
    """Why ok labels lack probabilities -> how many, over this session and the ones before it."""
    previous = session.previous.probabilities if session.previous else None
    earlier = (previous or {}).get("missing", {})
    now = tally.without_probabilities
    return {k: earlier.get(k, 0) + now.get(k, 0) for k in sorted({*earlier, *now})}


def _cache_path(config: RunConfig) -> Path | None:
    if not config.use_cache:
        return None
    try:
        return cache_dir() / "completions.sqlite3"
    except OSError as e:
        raise RunStoreError(
            f"cannot create the cache folder ({e}); set ANNOTATE_CACHE_DIR, or run with --no-cache"
        ) from None


def _prompt_entry(pv: PromptVersion) -> dict[str, Any]:
    return {
        "version": pv.version,
        "hash": pv.content_hash,
        "parent": pv.meta.parent,
        "max_tokens": pv.meta.max_tokens,
        "variables": list(pv.rubric.variables),
    }


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
