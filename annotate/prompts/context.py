"""The context fit: a unit cut further, by the same policy as ``--max-chars``, when the whole rendered prompt would
not fit the model's context. Used by the run (labelling/resume.py) and by ``prompts render``, so what the render
shows is what is sent.

Tokens are counted by the engine's own tokenizer where it offers one (vLLM, an OpenAI-compatible server with
``/tokenize``); otherwise by ``estimated_tokens``, a per-script estimate built to stay above the real count."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from annotate.errors import PromptError
from annotate.prompts.template import PromptVersion
from annotate.prompts.units import Unit, estimated_tokens, fit_unit

MESSAGE_OVERHEAD_TOKENS = 16 / 3
"""The chat template's tokens around each message (role markers), estimated high."""
MIN_TRANSCRIPT_TOKENS = 200
"""Room a chat needs beside the instructions and examples; less, and no label can mean anything."""
TRIES = 6
"""Cuts tried, each shorter, until the engine's count fits (the estimate fits at the first)."""

TokenCounter = Callable[[list[dict[str, str]]], "int | None"]
"""The engine's count of a prompt's tokens (its chat template included), or None when it cannot count."""


def prompt_tokens(messages: list[dict[str, str]], count: TokenCounter | None = None) -> float:
    """The prompt's tokens: the engine's count, or the estimate."""
    counted = count(messages) if count else None
    if counted is not None:
        return counted
    return sum(estimated_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


_STATIC: dict[tuple[TokenCounter | None, str, str, str], float] = {}
"""Tokens of a version's instructions and examples, per counter: the same for every unit, so counted once."""


def static_tokens(pv: PromptVersion, count: TokenCounter | None) -> float:
    key = (count, pv.task, pv.version, pv.content_hash)  # a bound method compares by its engine
    if key not in _STATIC:
        _STATIC[key] = prompt_tokens(pv.static_messages, count)
    return _STATIC[key]


def fit_to_context(unit: Unit, pv: PromptVersion, max_model_len: int, count: TokenCounter | None = None) -> Unit:
    """Truncate further (same policy) when the whole rendered prompt would not fit the model's context; refuse in
    one line when the instructions and examples leave a chat no room at all."""
    budget = max_model_len - 2 * pv.max_tokens_for(unit) - 32  # room for a re-ask's extra answer
    static = static_tokens(pv, count)
    if budget - static < MIN_TRANSCRIPT_TOKENS:
        raise PromptError(
            f"--max-model-len {max_model_len}: the {pv.task} prompt {pv.version} needs about {static:.0f} tokens "
            f"before any chat and {2 * pv.max_tokens_for(unit)} for its answer, which leaves a chat under "
            f"{MIN_TRANSCRIPT_TOKENS}: raise --max-model-len"
        )
    total = prompt_tokens(pv.render(unit), count)
    if total <= budget:
        return unit
    transcript = "".join(t.text for t in (*unit.context, *unit.target))
    chars_per_token = len(transcript) / max(1.0, total - static)
    allowed = int((budget - static - MIN_TRANSCRIPT_TOKENS / 2) * chars_per_token)
    for _ in range(TRIES):
        fitted = fit_unit(unit, max(allowed, 1))
        if prompt_tokens(pv.render(fitted), count) <= budget:
            break
        allowed = int(allowed * 0.8)
    note = f"context limit {max_model_len} tokens"
    return replace(fitted, truncation=f"{note}: {fitted.truncation}" if fitted.truncation else note)
