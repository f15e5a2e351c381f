"""The context fit: a unit cut further, by the same policy as ``--max-chars``, when the whole rendered prompt would
not fit the model's context. Used by the run (labelling/resume.py) and by ``prompts render``, so what the render
shows is what is sent."""

from __future__ import annotations

from dataclasses import replace

from annotate.prompts.template import PromptVersion
from annotate.prompts.units import Unit, estimated_tokens, fit_unit

MESSAGE_OVERHEAD_TOKENS = 16 / 3
"""The chat template's tokens around each message (role markers), estimated high."""


def fit_to_context(unit: Unit, pv: PromptVersion, max_model_len: int) -> Unit:
    """Truncate further (same policy) when the whole rendered prompt would not fit the model's context.

    Token counts are estimated from the text's script (``estimated_tokens``): Chinese needs about one token a
    character where English needs a third of one, so a character budget alone would overflow on Chinese chats.
    """
    budget_tokens = max_model_len - 2 * pv.max_tokens_for(unit) - 32  # room for a re-ask's extra answer

    def tokens(messages: list[dict[str, str]]) -> float:
        return sum(estimated_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)

    if tokens(pv.render(unit)) <= budget_tokens:
        return unit
    transcript = "".join(t.text for t in (*unit.context, *unit.target))
    chars_per_token = len(transcript) / max(1.0, estimated_tokens(transcript)) if transcript else 3.0
    allowed = max(400, int((budget_tokens - tokens(pv.static_messages) - 400 / 3) * chars_per_token))
    fitted = fit_unit(unit, allowed)
    note = f"context limit {max_model_len} tokens"
    return replace(fitted, truncation=f"{note}: {fitted.truncation}" if fitted.truncation else note)
