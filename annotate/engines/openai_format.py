"""OpenAI chat-completion responses, as llama.cpp's in-process server and HTTP servers give them."""

from __future__ import annotations

import json
from typing import Any

from annotate.engines.base import Completion, TokenChoice, value_logprobs

MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def completion_from_openai(result: Any, latency_ms: float) -> Completion:
    """An OpenAI chat-completion response (or error object) as a Completion; a reply of another shape (no
    ``choices``, a list, a non-numeric token count or log probability) is a failed completion for that
    request, never an exception that stops the run."""
    try:
        if not isinstance(result, dict):
            raise TypeError(f"expected a JSON object, got {type(result).__name__}")
        return _completion(result, latency_ms)
    except MALFORMED as e:
        shown = json.dumps(result)[:200] if isinstance(result, (dict, list)) else repr(result)[:200]
        return Completion("", "error", latency_ms=latency_ms, error=f"malformed server reply ({e}): {shown}")


def _completion(result: dict[str, Any], latency_ms: float) -> Completion:
    if "error" in result:
        err = result["error"]
        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        return Completion("", "error", latency_ms=latency_ms, error=message)
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    return Completion(
        text=str(choice["message"].get("content") or ""),
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        latency_ms=latency_ms,
        cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)),
        value_logprobs=_value_logprobs(choice),
    )


def _value_logprobs(choice: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """``choices[0].logprobs.content`` as candidates per answer key; None when the server sent none."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return value_logprobs(
        TokenChoice(
            text=token.get("token", ""),
            logprob=float(token.get("logprob", float("-inf"))),
            top={
                alt.get("token", ""): float(alt.get("logprob", float("-inf")))
                for alt in token.get("top_logprobs") or []
            },
        )
        for token in content
    )


def logprob_fields(top: int) -> dict[str, Any]:
    """What a chat request adds to get the ``top`` alternatives at every generated token (none for 0)."""
    return {"logprobs": True, "top_logprobs": top} if top else {}
