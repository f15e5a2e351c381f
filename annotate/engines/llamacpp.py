"""llama.cpp in-process (the ``xllamacpp`` wheel): the light CPU default.

Requests run one at a time on one slot with llama.cpp's prompt cache on, so consecutive requests
of a task re-use the evaluated static prefix (instructions, rubric, examples) and only the chat
is new work. The pipeline orders requests to make that happen.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from annotate.config import BackendOptions, cache_dir
from annotate.engines import embedded
from annotate.engines.base import Completion, Request
from annotate.engines.openai_format import completion_from_openai, logprob_fields
from annotate.errors import BackendError
from annotate.hashing import file_sha256


def remembered_sha256(path: Path) -> str:
    """sha256 of a model file, remembered in the cache by path, size and mtime (hashing 1 GB takes seconds)."""
    stat = path.stat()
    memo = (
        cache_dir()
        / "hashes"
        / hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    )
    if memo.is_file():
        return memo.read_text().strip()
    digest = file_sha256(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(digest)
    return digest


class LlamaCppBackend:
    name = "llamacpp"

    def __init__(self, options: BackendOptions) -> None:
        self.options = options
        chosen = embedded.resolve(options.model)
        if chosen is not None:
            self.model_path = embedded.gguf_path(chosen)
            self._identity: dict[str, Any] = embedded.identity(chosen)
        else:
            self.model_path = Path(str(options.model))
            if not self.model_path.is_file():
                raise BackendError(
                    f"{options.model}: no such GGUF file (the llamacpp backend takes a local .gguf path, "
                    f"or {embedded.PREFIX}<name>: see `annotate models list`)"
                )
            with self.model_path.open("rb") as head:
                if head.read(4) != b"GGUF":
                    raise BackendError(f"{options.model}: not a GGUF model file (it does not start with 'GGUF')")
            self._identity = {"name": self.model_path.name, "sha256": remembered_sha256(self.model_path)}
        self._server: Any = None

    def identity(self) -> dict[str, Any]:
        identity = {"engine": "llama.cpp", "prefix_cache": self.options.prefix_cache, **self._identity}
        return {**identity, "top_logprobs": self.options.top_logprobs} if self.options.top_logprobs else identity

    def _start(self) -> Any:
        if self._server is None:
            try:
                import xllamacpp
            except ImportError:
                raise BackendError("the llamacpp backend needs the xllamacpp package: run `make install`") from None
            params = xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.options.max_model_len
            params.n_parallel = 1
            params.cache_prompt = self.options.prefix_cache
            threads = self.options.threads or os.cpu_count() or 1
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
            params.verbosity = -1
            try:
                self._server = xllamacpp.Server(params)
            except RuntimeError:
                raise BackendError(
                    f"{self.model_path}: llama.cpp could not load it (a truncated or damaged GGUF file?)"
                ) from None
        return self._server

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        server = self._start()
        for request in requests:
            body = {
                "messages": request.messages,
                "max_tokens": request.max_tokens,
                "temperature": request.sampling.temperature,
                "top_p": request.sampling.top_p,
                "seed": request.sampling.seed,
                "cache_prompt": self.options.prefix_cache,
                **logprob_fields(self.options.top_logprobs),
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": request.schema, "strict": True},
                },
            }
            started = time.perf_counter()
            result = server.handle_chat_completions(body)
            latency = (time.perf_counter() - started) * 1000
            yield completion_from_openai(result, latency)

    def count_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """xllamacpp's in-process server offers no tokenizer: the context fit estimates (docs/prompts.md measures
        the estimate above the real count in every script tested)."""
        return None

    def close(self) -> None:
        self._server = None
