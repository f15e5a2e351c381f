"""What every engine takes and gives back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; recorded on every label row and part of every cache key."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    key: str
    """Content hash of everything that decides the answer (see pipeline.request_key)."""
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    max_tokens: int
    sampling: Sampling
    group: str = ""
    """The chat the request belongs to: the Ray executor keeps a chat's requests on one worker."""


@dataclass
class Completion:
    text: str
    finish_reason: str
    """``stop`` for a complete answer, ``length`` when max_tokens cut it off, ``error`` on failure."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    error: str | None = None
    """Set when the engine failed for this request (after its own retries)."""
    cached_tokens: int = 0
    """Prompt tokens the engine reused from its prefix cache instead of evaluating."""


@dataclass(frozen=True)
class BackendOptions:
    """Engine settings a user can pass on the command line."""

    model: str | None = None
    """Model path or name; None means the embedded model."""
    base_url: str | None = None
    """For the openai backend."""
    max_model_len: int = 8192
    concurrency: int = 4
    """Requests in flight at once (openai backend)."""
    threads: int | None = None
    """CPU threads for in-process engines; default: all cores."""
    prefix_cache: bool = True
    """Reuse the evaluated shared prompt prefix (llamacpp, vllm). Much faster, but greedy outputs can then
    depend on the request evaluated before (see bench/prefix_cache_determinism.py); off gives bit-exact repeats."""
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """Model identity (name, file hash or revision, engine): goes into cache keys and the manifest."""
        ...

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        """One completion per request, in request order, yielded as soon as each is ready."""
        ...

    def close(self) -> None: ...
