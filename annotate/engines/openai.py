"""Any OpenAI-compatible chat server (``vllm serve``, llama.cpp's server, ...), with bounded concurrency.

Without ``--base-url``, ``--model embedded:<name>`` starts llama.cpp's HTTP server on 127.0.0.1 with
that embedded model and talks to it over HTTP like any other server.

Uses ``response_format: json_schema``; transient failures (connection refused, 429, 5xx) are retried
with exponential backoff, then reported as a ``backend_error`` completion; a request that times out
(``--timeout``, 300 s by default, for the whole reply) is not retried. Requests run on daemon threads, so
Ctrl-C and SIGTERM stop a run at once even while a server holds a request open.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from annotate.config import BackendOptions
from annotate.engines import embedded
from annotate.engines.base import Completion, Request
from annotate.engines.openai_format import completion_from_openai, logprob_fields
from annotate.errors import BackendError

T = TypeVar("T")
R = TypeVar("R")


class TransientHTTPError(Exception):
    pass


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: a busy or restarting server. Not a timeout: a server that did not answer within
    ``timeout`` seconds will not answer the same request the next time either."""
    if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
        return False
    return isinstance(exc, (TransientHTTPError, urllib.error.URLError, ConnectionError))


def in_daemon_threads(work: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``ThreadPoolExecutor.map`` on daemon threads: results in order, as each is ready. A pool's threads are
    joined at exit, so Ctrl-C or SIGTERM would wait for a server that never answers; these are not."""
    jobs: queue.Queue[tuple[int, T]] = queue.Queue()
    for job in enumerate(items):
        jobs.put(job)
    results: dict[int, R] = {}
    ready = threading.Condition()

    def worker() -> None:
        while True:
            try:
                index, item = jobs.get_nowait()
            except queue.Empty:
                return
            result = work(item)
            with ready:
                results[index] = result
                ready.notify_all()

    for _ in range(min(workers, len(items))):
        threading.Thread(target=worker, daemon=True).start()
    for index in range(len(items)):
        with ready:
            while index not in results:
                ready.wait(timeout=0.5)
            yield results.pop(index)


TOKENIZE_SECONDS = 5.0
"""How long a server may take to count a prompt's tokens before the context fit estimates instead."""


def _within(seconds: float, call: Any) -> Any:
    """``call()`` on a daemon thread, abandoned after ``seconds`` (its socket closes when the server gives up):
    the main thread waits in an interruptible join, so Ctrl-C and SIGTERM stop a run whose server hangs."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["reply"] = call()
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no whole reply within {seconds:g} s (--timeout)")
    if "error" in box:
        raise box["error"]
    return box["reply"]


class OpenAIBackend:
    name = "openai"

    def __init__(self, options: BackendOptions) -> None:
        self.embedded = embedded.resolve(options.model) if options.model and not options.base_url else None
        self._server: Any = None
        if self.embedded is not None:
            self._server, base_url = _serve(self.embedded, options)
        elif not options.base_url:
            raise BackendError(
                "the openai backend needs --base-url, e.g. http://127.0.0.1:8000/v1 "
                f"(or --model {embedded.PREFIX}<name> to serve an embedded model on 127.0.0.1)"
            )
        elif not options.model:
            raise BackendError("the openai backend needs --model: the model name the server serves")
        else:
            base_url = options.base_url
        self.options = options
        self.base_url = base_url.rstrip("/")
        self.api_key = options.api_key
        self.timeout = float(options.timeout)
        self.attempts = int(options.attempts)
        self.extra_body: dict[str, Any] = dict(options.extra_body)
        """Server-specific fields added to every request, e.g. llama.cpp's ``{"cache_prompt": false}``."""
        self._tokenizer_kind: str | None = None
        """Which tokenize endpoint the server answers ("vllm", "llama.cpp"), "none", or None before asking."""
        self.served = None if self.embedded is not None else self._served_model()
        """What the server says it serves under ``--model`` (its ``/models`` entry), or None if it does not say."""

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {
            "engine": "openai-compatible",
            "name": self.options.model,
            "base_url": self.base_url,
        }
        if self.embedded is not None:  # the port changes from run to run; the served file does not
            identity |= {**embedded.identity(self.embedded), "base_url": "a llama.cpp server started by annotate"}
        elif self.served is not None:
            identity["served"] = self.served
        else:
            identity["cacheable"] = False
        if self.options.top_logprobs:
            identity["top_logprobs"] = self.options.top_logprobs
        return {**identity, "extra_body": self.extra_body} if self.extra_body else identity

    def _served_model(self) -> dict[str, Any] | None:
        """The server's own description of the model named ``--model`` (``GET /models``): id, owner, creation
        time and what else it gives (vLLM: the weights' path and context length; llama.cpp: size and parameter
        count). It goes into the identity and so the cache key: another model served under the same name at
        the same URL is another identity. A server that lists one model only (llama.cpp, whatever the name
        asked) is taken to serve that one. None when the server does not say; the run then caches nothing."""
        request = urllib.request.Request(f"{self.base_url}/models", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=min(self.timeout, 30)) as resp:
                listing = json.loads(resp.read())
            entries = listing.get("data") or listing.get("models") or []
            listed = [e for e in entries if isinstance(e, dict)]
            named = [e for e in listed if self.options.model in (e.get("id"), e.get("model"))]
            found = (named or (listed if len(listed) == 1 else []))[0]
        except (OSError, ValueError, AttributeError, IndexError):
            return None
        return {k: v for k, v in found.items() if isinstance(v, str | int | float | bool | dict)}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request with a deadline for the whole reply: a socket timeout only bounds each read, so a server
        that trickles its answer a byte at a time would hold the request forever."""
        reply: dict[str, Any] = _within(self.timeout, lambda: self._post_once(body))
        return reply  # whatever JSON the server sent: completion_from_openai checks it

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=data, headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                parsed: dict[str, Any] = json.loads(resp.read())
                return parsed
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")[:500]
            if e.code == 429 or e.code >= 500:
                raise TransientHTTPError(f"HTTP {e.code}: {text}") from None
            return {"error": {"message": f"HTTP {e.code}: {text}"}}

    def _one(self, request: Request) -> Completion:
        body = {
            "model": self.options.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "seed": request.sampling.seed,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema, "strict": True},
            },
            **logprob_fields(self.options.top_logprobs),
            **self.extra_body,
        }
        post = retry(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=30),
            reraise=True,
        )(self._post)
        started = time.perf_counter()
        try:
            result = post(body)
        except Exception as e:
            return Completion(
                "", "error", latency_ms=(time.perf_counter() - started) * 1000, error=f"{type(e).__name__}: {e}"
            )
        return completion_from_openai(result, (time.perf_counter() - started) * 1000)

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        yield from in_daemon_threads(self._one, requests, max(1, self.options.concurrency))

    def count_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """The server's own count, where it has one: vLLM's ``/tokenize`` takes the messages; llama.cpp's server
        applies its chat template (``/apply-template``) and tokenizes the prompt. None once neither answers (the
        context fit then estimates), and never asked again."""
        if self._tokenizer_kind == "none":
            return None
        root = self.base_url.removesuffix("/v1")
        for kind in ("vllm", "llama.cpp") if self._tokenizer_kind is None else (self._tokenizer_kind,):
            try:
                if kind == "vllm":
                    body = {"model": self.options.model, "messages": messages, "add_generation_prompt": True}
                    reply = self._get_json(f"{root}/tokenize", body)
                    found = int(reply.get("count") or len(reply.get("tokens") or []))
                else:
                    prompt = self._get_json(f"{root}/apply-template", {"messages": messages})["prompt"]
                    found = len(self._get_json(f"{root}/tokenize", {"content": prompt})["tokens"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if found > 0:
                self._tokenizer_kind = kind
                return found
        self._tokenizer_kind = "none"
        return None

    def _get_json(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """A tokenizer call: a few seconds at most (a server that cannot tokenize must not delay the run), and, like
        every request, on a thread the run's signals do not wait for."""
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=self._headers())

        def call() -> dict[str, Any]:
            with urllib.request.urlopen(request, timeout=TOKENIZE_SECONDS) as resp:
                reply: dict[str, Any] = json.loads(resp.read())
                return reply

        found: dict[str, Any] = _within(TOKENIZE_SECONDS, call)
        return found

    def close(self) -> None:
        self._server = None


def _serve(model: embedded.EmbeddedModel, options: BackendOptions) -> tuple[Any, str]:
    """llama.cpp's HTTP server on 127.0.0.1 with an embedded model, one slot per request in flight."""
    try:
        import xllamacpp
    except ImportError:
        raise BackendError("serving an embedded model needs the xllamacpp package: run `make install`") from None
    params = xllamacpp.CommonParams()
    params.model.path = str(embedded.gguf_path(model))
    slots = max(1, options.concurrency)
    params.n_ctx = options.max_model_len * slots
    params.n_parallel = slots
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = options.threads or os.cpu_count() or 1
    params.verbosity = -1
    server = xllamacpp.Server(params)
    return server, f"{server.listening_address}/v1"
