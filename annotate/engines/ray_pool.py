"""Scale-out on Ray: the same run, with each engine call shared among engine workers (Ray actors).

The driver does everything that makes a run a run: it reads transcripts, renders prompts, checks the
completion cache, settles answers and writes the journal, labels and manifest. Only the engine work
moves: :class:`RayEnginePool` is a Backend whose ``complete`` cuts the requests of one batch into
chunks of whole chats (in order, so that a chunk's requests share their prompt prefix) and hands the
chunks to whichever worker is free. Each worker is an actor that holds one engine for the whole run
(a vLLM engine takes tens of seconds to start). So a Ray run resumes like any run, from its journal, and a
run started on one machine can be resumed on Ray and the other way round.

On a GPU cluster: one worker per GPU (``gpus_per_worker=1``) running ``--backend vllm``; for a model
larger than one GPU, ``--tensor-parallel-size N`` with ``gpus_per_worker=N``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from annotate.config import BackendOptions, RayOptions
from annotate.engines import create_backend
from annotate.engines.base import Completion, Request
from annotate.errors import BackendError


class _EngineWorker:
    """One engine inside a Ray actor."""

    def __init__(self, engine: str, options: BackendOptions) -> None:
        self.engine = create_backend(engine, options)

    def identity(self) -> dict[str, Any]:
        return self.engine.identity()

    def complete(self, requests: list[Request]) -> list[Completion]:
        return list(self.engine.complete(requests))


class RayEnginePool:
    """A Backend that spreads each call's requests over engine workers on Ray, chat by chat."""

    name = "ray"

    def __init__(self, engine: str, options: BackendOptions, ray_options: RayOptions) -> None:
        try:
            import ray
        except ImportError:
            raise BackendError("the Ray executor needs the ray package: pip install 'annotate[ray]'") from None
        self._ray = ray
        self.engine = engine
        self.ray_options = ray_options
        threads = options.threads or max(1, math.floor(ray_options.cpus_per_worker))
        self.options = BackendOptions(**{**options.__dict__, "threads": threads})
        self._identity: dict[str, Any] | None = None
        self._pool: Any = None
        self._actors: list[Any] = []
        self._owns_ray = False

    def identity(self) -> dict[str, Any]:
        """The engine's own identity, as a worker sees it (its hardware decides, e.g., vLLM's dtype).

        It is the identity a local run records, so a Ray run's labels and cache entries match a local run's.
        """
        if self._identity is None:
            self._start()
            try:
                self._identity = self._ray.get(self._actors[0].identity.remote())
            except self._ray.exceptions.RayError as e:
                raise _worker_failed(e) from None
        return self._identity

    def _start(self) -> Any:
        if self._pool is not None:
            return self._pool
        ray = self._ray
        if not ray.is_initialized():
            self._owns_ray = True
            ray.init(
                address=self.ray_options.address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="warning",
                configure_logging=False,
                ignore_reinit_error=True,
            )
        worker = ray.remote(num_cpus=self.ray_options.cpus_per_worker, num_gpus=self.ray_options.gpus_per_worker)(
            _EngineWorker
        )
        self._actors = [worker.remote(self.engine, self.options) for _ in range(self.ray_options.workers)]
        self._pool = ray.util.ActorPool(self._actors)
        return self._pool

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        pool = self._start()
        chunks = chunk_by_group(list(requests), self.ray_options.workers * self.ray_options.chunks_per_worker)
        try:
            for answers in pool.map(lambda actor, chunk: actor.complete.remote(chunk), chunks):
                yield from answers
        except self._ray.exceptions.RayError as e:
            raise _worker_failed(e) from None

    def count_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """The workers hold the engines: the context fit estimates."""
        return None

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._pool = [], None
        if self._owns_ray:  # a local instance this run started; a cluster we joined stays up
            self._ray.shutdown()
            self._owns_ray = False


def _worker_failed(error: Exception) -> BackendError:
    cause = getattr(error, "cause", None)  # the worker's own exception, when it raised one
    what = f"{type(cause).__name__}: {cause}" if cause is not None else str(error).strip() or type(error).__name__
    return BackendError(f"a Ray engine worker failed: {what.splitlines()[0]}")


def chunk_by_group(requests: list[Request], n_chunks: int) -> list[list[Request]]:
    """About ``n_chunks`` consecutive runs of requests, cut only where the group (chat) changes."""
    if not requests:
        return []
    target = max(1, math.ceil(len(requests) / max(1, n_chunks)))
    chunks: list[list[Request]] = [[]]
    for request in requests:
        current = chunks[-1]
        if len(current) >= target and current[-1].group != request.group:
            chunks.append([request])
        else:
            current.append(request)
    return chunks
