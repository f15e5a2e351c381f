"""What every engine takes and gives back."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
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
    value_logprobs: dict[str, dict[str, float]] | None = None
    """Per answer key, the engine's log probabilities of the candidate tokens at the first token of its
    value (see value_logprobs); None when the engine gave no log probabilities."""


@dataclass(frozen=True)
class TokenChoice:
    """One generated token with the engine's top alternatives at that position."""

    text: str
    logprob: float
    top: dict[str, float]
    """Candidate token text -> log probability (the engine's top list, before any grammar mask)."""


_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*')
_VALUE_PIECE = re.compile(r"\s*(-?[0-9]*)[\s,}\]]*")


def value_logprobs(tokens: Iterable[TokenChoice]) -> dict[str, dict[str, float]]:
    """For each ``"key":`` in the generated tokens, the candidates at the first token of its value.

    The tokens are aligned with their own concatenated text, not the answer's, because some servers
    tidy the answer (llama.cpp drops a JSON code fence the model wrote). A candidate counts by the
    integer text it begins with, after the part of the token that precedes the value (``":`` when a
    tokenizer merges it with the digit); candidates that begin no integer are dropped, which keeps
    cache entries small. The chosen token is always among them, with its own log probability.
    """
    tokens = list(tokens)
    starts, text = [], ""
    for token in tokens:
        starts.append(len(text))
        text += token.text
    found: dict[str, dict[str, float]] = {}
    position = 0
    for match in _KEY.finditer(text):
        value_start = match.end()
        while position + 1 < len(tokens) and starts[position + 1] <= value_start:
            position += 1
        if not tokens or starts[position] > value_start:
            continue
        token = tokens[position]
        before = text[starts[position] : value_start]
        pieces: dict[str, float] = {}
        for candidate, logprob in {**token.top, token.text: token.logprob}.items():
            piece = _integer_piece(candidate, before)
            if piece:
                pieces[piece] = max(logprob, pieces.get(piece, -float("inf")))
        found[match.group(1)] = pieces
    return found


def _integer_piece(candidate: str, before: str) -> str:
    """The integer text a candidate token writes where the value starts ('' when it writes none)."""
    if candidate.startswith(before):
        candidate = candidate[len(before) :]
    elif before.strip():
        return ""
    matched = _VALUE_PIECE.fullmatch(candidate)
    return matched.group(1) if matched and matched.group(1) not in ("", "-") else ""


class Backend(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """Model identity (name, file hash or revision, engine): goes into cache keys and the manifest."""
        ...

    def complete(self, requests: Sequence[Request]) -> Iterator[Completion]:
        """One completion per request, in request order, yielded as soon as each is ready."""
        ...

    def count_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """The prompt's tokens by the engine's own tokenizer and chat template; None when it cannot count (the
        context fit then estimates)."""
        ...

    def close(self) -> None: ...
