"""The run: transcripts -> units -> rendered prompts -> engine -> parsed labels -> run directory.

Requests go to the engine in batches (one engine call per batch, never one per prompt), ordered by
task so that consecutive requests share the static prompt prefix. Every answer is cached by content
and journaled as it arrives. An invalid answer is retried only with a change: a larger token budget
after ``length``, or a re-ask that quotes the validation error; after that it becomes a typed
failure row that keeps the raw text.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from annotate import embedded
from annotate.backends import Backend, BackendOptions, Completion, Request, Sampling, create_backend
from annotate.cache import CompletionCache
from annotate.errors import PromptError, RunStoreError
from annotate.manifest import build_manifest
from annotate.prompts import PromptLibrary, PromptVersion
from annotate.redact import redact_chat
from annotate.schema import ParseFailure
from annotate.store import FINAL_STATUSES, RunStore
from annotate.tasks import Unit, fit_unit, units_for
from annotate.transcripts import Chat, ReadResult, Speaker, handoff_index, read_transcripts

if TYPE_CHECKING:
    from annotate.ray_executor import RayOptions

REASK = (
    "Your previous answer could not be used: {problem}. Answer again with only the JSON object, "
    "using exactly the keys and allowed values described in the instructions."
)


@dataclass
class RunConfig:
    inputs: list[Path]
    out: Path
    library: PromptLibrary
    tasks: list[str] | None = None
    """None means every task that has a rubric and prompts."""
    prompt_versions: dict[str, str] = field(default_factory=dict)
    """Task -> version; tasks not named get their newest version."""
    backend: str = "llamacpp"
    options: BackendOptions = field(default_factory=BackendOptions)
    sampling: Sampling = field(default_factory=Sampling)
    repeats: int = 1
    limit: int | None = None
    strict: bool = False
    role_map: Mapping[str, Speaker] | None = None
    max_chars: int = 12000
    """Transcript characters per unit before the truncation policy applies (see tasks.py)."""
    batch_size: int = 512
    """Requests per engine call; each batch is journaled when done."""
    max_attempts: int = 3
    use_cache: bool = True
    redact: bool = False
    """Mask emails, phone numbers, order numbers, IBANs and card numbers before text reaches the model."""
    ray: RayOptions | None = None
    """Run the engine on Ray workers instead of in this process (see ray_executor.py)."""


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


@dataclass
class RunSummary:
    run_id: str
    out: Path
    counts: dict[str, dict[str, int]]
    """task -> status -> labels."""
    chats: int
    chats_without_handoff: int
    skipped_records: int
    model_calls: int
    cache_hits: int
    prompt_tokens: int
    cached_prompt_tokens: int
    """Prompt tokens the engine reused from its prefix cache (not evaluated again)."""
    completion_tokens: int
    seconds: float


@dataclass
class Job:
    unit: Unit
    prompt: PromptVersion
    repeat: int
    attempt: int = 1
    max_tokens: int = 0
    followup: list[dict[str, str]] = field(default_factory=list)
    """Extra messages of a re-ask (the rejected answer and the complaint)."""

    def request(self, model_identity: Mapping[str, Any], sampling: Sampling) -> Request:
        messages = [*self.prompt.render(self.unit), *self.followup]
        schema = self.prompt.schema_for(self.unit)
        key = hashlib.sha256(
            json.dumps(
                [messages, schema, self.max_tokens, dict(model_identity), sampling.as_dict(), self.repeat],
                sort_keys=True,
                ensure_ascii=False,
            ).encode()
        ).hexdigest()
        return Request(key, messages, schema, self.max_tokens, sampling, group=self.unit.chat_id)


@dataclass
class _Tally:
    model_calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0


def run(config: RunConfig, backend: Backend | None = None, progress: Progress | None = None) -> RunSummary:
    """Label every unit of every selected task, resuming whatever ``config.out`` already holds."""
    started = time.time()
    read, chats = _read_chats(config)
    versions = _prompt_versions(config)
    owns_backend = backend is None
    engine = backend or _engine(config)
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
    cache = CompletionCache(embedded.cache_dir() / "completions.sqlite3" if config.use_cache else None)

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
    done = {_unit_key(r) for r in previous_rows if r["status"] in FINAL_STATUSES}
    tally = _Tally()
    try:
        skip_rows = [_skip_row(s.chat_id, s.reason, run_id, config.backend) for s in read.skipped]
        store.append(r for r in skip_rows if _unit_key(r) not in done)
        jobs = _jobs(chats, versions, config, done)
        if progress:
            progress.start(len(jobs))
        _execute(jobs, engine, identity, config, cache, store, tally, run_id, progress)
    except KeyboardInterrupt:
        store.close()
        store.write_manifest(manifest("interrupted", None))
        raise
    finally:
        cache.close()
        if owns_backend:
            engine.close()
    store.close()
    table = store.write_tables()
    counts: dict[str, dict[str, int]] = {}
    for (task, status), n in Counter(zip(table["task"], table["status"], strict=True)).items():
        counts.setdefault(task or "(input)", {})[status] = int(n)
    has_post_handoff = any(pv.rubric.unit == "post_handoff" for pv in versions)
    summary = RunSummary(
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
    store.write_manifest(manifest("complete", summary))
    return summary


def _engine(config: RunConfig) -> Backend:
    if config.ray is None:
        return create_backend(config.backend, config.options)
    from annotate.ray_executor import RayEnginePool

    return RayEnginePool(config.backend, config.options, config.ray)


def _read_chats(config: RunConfig) -> tuple[ReadResult, list[Chat]]:
    read = read_transcripts(config.inputs, config.role_map, strict=config.strict)
    chats = read.chats[: config.limit] if config.limit is not None else read.chats
    if config.redact:
        chats = [redact_chat(c) for c in chats]
    return read, chats


def _prompt_versions(config: RunConfig) -> list[PromptVersion]:
    """The selected prompt versions, checked (metadata, examples, lock) before any engine starts."""
    tasks = config.tasks or config.library.default_tasks()
    for task, version in config.prompt_versions.items():
        config.library.get(task, version)
        if task not in tasks:
            raise PromptError(
                f"a prompt version is chosen for '{task}', which this run does not label (add --task {task})"
            )
    versions = [config.library.get(t, config.prompt_versions.get(t)) for t in tasks]
    rated_by: dict[str, str] = {}
    for pv in versions:
        _ = pv.meta
        for variable in pv.rubric.variables:
            if variable in rated_by:
                raise PromptError(
                    f"tasks '{rated_by[variable]}' and '{pv.task}' both rate '{variable}': run one of them "
                    "(compare the two in separate runs with annotate agree or validate)"
                )
            rated_by[variable] = pv.task
    config.library.check_locked(versions, record=True)
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
    cache: CompletionCache,
    store: RunStore,
    tally: _Tally,
    run_id: str,
    progress: Progress | None,
) -> None:
    pending = jobs
    while pending:
        retries: list[Job] = []
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start : start + config.batch_size]
            for job, completion, cached in _answers(batch, engine, identity, config, cache, tally):
                rows, retry = _settle(job, completion, cached, config, run_id)
                if retry is not None:
                    retries.append(retry)
                else:
                    store.append(rows)
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


CHARS_PER_TOKEN = 3
"""A conservative estimate (English runs near 4): a prompt judged to fit does fit."""


def fit_to_context(unit: Unit, pv: PromptVersion, max_model_len: int) -> Unit:
    """Truncate further (same policy) when the whole rendered prompt would not fit the model's context."""
    budget_tokens = max_model_len - 2 * pv.max_tokens_for(unit) - 32  # room for a re-ask's extra answer
    static_chars = sum(len(m["content"]) + 16 for m in pv.static_messages)
    if sum(len(m["content"]) + 16 for m in pv.render(unit)) <= budget_tokens * CHARS_PER_TOKEN:
        return unit
    allowed = max(400, budget_tokens * CHARS_PER_TOKEN - static_chars - 400)
    fitted = fit_unit(unit, allowed)
    note = f"context limit {max_model_len} tokens"
    return replace(fitted, truncation=f"{note}: {fitted.truncation}" if fitted.truncation else note)


def _settle(
    job: Job, completion: Completion, cached: bool, config: RunConfig, run_id: str
) -> tuple[list[dict[str, Any]], Job | None]:
    """Label rows for a finished job, or the changed job to try next."""
    can_retry = job.attempt < config.max_attempts
    if completion.error is not None:
        return _rows(job, completion, cached, config, run_id, "backend_error", completion.error, None), None
    if completion.finish_reason == "length":
        if can_retry:
            return [], replace(job, attempt=job.attempt + 1, max_tokens=job.max_tokens * 2)
        return _rows(
            job, completion, cached, config, run_id, "length", f"cut off at {job.max_tokens} tokens", None
        ), None
    try:
        values = job.prompt.parse(job.unit, completion.text)
    except ParseFailure as failure:
        if can_retry:
            followup = [
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": REASK.format(problem=failure.message)},
            ]
            return [], replace(job, attempt=job.attempt + 1, followup=followup)
        return _rows(job, completion, cached, config, run_id, failure.kind, failure.message, None), None
    return _rows(job, completion, cached, config, run_id, "ok", "", values), None


def _rows(
    job: Job,
    completion: Completion,
    cached: bool,
    config: RunConfig,
    run_id: str,
    status: str,
    error: str,
    values: dict[int | None, dict[str, int]] | None,
) -> list[dict[str, Any]]:
    """One row per label: per variable, and for ``chat_rounds`` units per rated round too."""
    pv, unit = job.prompt, job.unit
    return [
        {
            "chat_id": unit.chat_id,
            "round": round_number,
            "task": pv.task,
            "variable": variable,
            "value": None if values is None else values[round_number][variable],
            "status": status,
            "error": error,
            "repeat": job.repeat,
            "prompt_version": pv.version,
            "prompt_hash": pv.content_hash,
            "model": _model_name(config),
            "backend": config.backend,
            "sampling": json.dumps({**config.sampling.as_dict(), "max_tokens": job.max_tokens}),
            "raw_output": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "latency_ms": round(completion.latency_ms, 1),
            "attempts": job.attempt,
            "cached": cached,
            "truncation": unit.truncation,
            "run_id": run_id,
        }
        for round_number in unit.label_rounds
        for variable in pv.rubric.variables
    ]


def _skip_row(chat_id: str, reason: str, run_id: str, backend: str) -> dict[str, Any]:
    return {
        "chat_id": chat_id,
        "round": None,
        "task": "",
        "variable": "",
        "value": None,
        "status": "skipped",
        "error": reason,
        "repeat": 0,
        "prompt_version": "",
        "prompt_hash": "",
        "model": "",
        "backend": backend,
        "sampling": "",
        "raw_output": "",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_ms": 0.0,
        "attempts": 0,
        "cached": False,
        "truncation": "",
        "run_id": run_id,
    }


def _model_name(config: RunConfig) -> str:
    return config.options.model or f"{embedded.EMBEDDED.name} (embedded)"


def _unit_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["task"], row["chat_id"], row["round"], row["repeat"])


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
