"""OpenAI chat-completion responses, as llama.cpp's in-process server and HTTP servers give them."""

from __future__ import annotations

from typing import Any

from annotate.engines.base import Completion


def completion_from_openai(result: dict[str, Any], latency_ms: float) -> Completion:
    """An OpenAI chat-completion response (or error object) as a Completion."""
    if "error" in result:
        err = result["error"]
        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        return Completion("", "error", latency_ms=latency_ms, error=message)
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    return Completion(
        text=choice["message"].get("content") or "",
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        latency_ms=latency_ms,
        cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)),
    )
