"""What every engine takes and gives back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from annotate.config import Sampling


@dataclass(frozen=True)
class Request:
    key: str
    """Content hash of everything that decides the answer (see labelling/jobs.py)."""
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


class Backend(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """Model identity (name, file hash or revision, engine): goes into cache keys and the manifest."""
        ...

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        """One completion per request, in request order, yielded as soon as each is ready."""
        ...

    def close(self) -> None: ...
