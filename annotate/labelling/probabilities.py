"""A label's probability distribution over its allowed values, from the engine's token log probabilities.

The engine reports, at the first token of each answer value, the log probabilities of its top
candidate tokens (before the grammar mask). Keeping the candidates that write an allowed value and
renormalising gives the model's distribution over the scale. Two approximations, both documented in
the README: a value absent from the top list (20 candidates; every scale here has at most 10 values)
gets probability 0; and a value written in several tokens is scored by its first token, so when that
token also writes a shorter value on its own (``1`` for both 1 and 10), its mass goes to the shorter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NO_ENGINE_PROBABILITIES = "the engine returned no log probabilities"
VALUE_NOT_FOUND = "the value's token was not found among the answer's tokens"


@dataclass(frozen=True)
class Distribution:
    probs: dict[int, float]
    """Every allowed value -> probability; sums to 1."""
    confidence: float
    """The probability of the chosen value."""
    expected: float | None
    """The probability-weighted mean value, for ordinal and binary scales (None for nominal ones)."""

    def probs_json(self) -> str:
        return json.dumps({str(v): round(p, 6) for v, p in self.probs.items()})


def distribution(
    candidates: Mapping[str, float] | None, allowed: Sequence[int], chosen: int, scale: str
) -> Distribution | str:
    """The label's distribution, or the reason there is none."""
    if candidates is None:
        return NO_ENGINE_PROBABILITIES
    mass = dict.fromkeys(sorted(allowed), 0.0)
    for piece, logprob in candidates.items():
        value = _value_of(piece, mass)
        if value is not None and math.isfinite(logprob):
            mass[value] += math.exp(logprob)
    total = sum(mass.values())
    if mass[chosen] <= 0 or total <= 0:
        return VALUE_NOT_FOUND
    probs = {v: m / total for v, m in mass.items()}
    expected = sum(v * p for v, p in probs.items()) if scale in ("ordinal", "binary") else None
    return Distribution(probs, probs[chosen], expected)


def _value_of(piece: str, values: Mapping[int, float]) -> int | None:
    """The allowed value a candidate token writes: exactly, or as the first token of exactly one value."""
    exact = [v for v in values if str(v) == piece]
    if exact:
        return exact[0]
    begun = [v for v in values if str(v).startswith(piece)]
    return begun[0] if len(begun) == 1 else None
