"""One unit to label with one prompt: its request, and what its answer becomes (label rows or a retry).

An invalid answer is retried only with a change: a larger token budget after ``length``, or a re-ask
that quotes the validation error; after that it becomes a typed failure row that keeps the raw text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from annotate.config import Sampling
from annotate.engines.base import Completion, Request
from annotate.labelling.probabilities import Distribution, distribution
from annotate.prompts.library import family_of
from annotate.prompts.rubrics import ParseFailure, round_key
from annotate.prompts.template import PromptVersion
from annotate.prompts.units import Unit
from annotate.runs.rows import LabelRow, Status

REASK = {
    "en": (
        "Your previous answer could not be used: {problem}. Answer again with only the JSON object, "
        "using exactly the keys and allowed values described in the instructions."
    ),
    "zh": "你上一次的回答无法使用：{problem}。请重新回答，只写JSON对象，键和取值必须与说明中的完全一致。",
}
"""The re-ask after an invalid answer, in the language of the prompt's family (the problem itself is English)."""


@dataclass(frozen=True)
class RowContext:
    """What every row of a run records besides the answer itself."""

    run_id: str
    model: str
    backend: str
    sampling: Sampling
    max_attempts: int


@dataclass
class Job:
    unit: Unit
    prompt: PromptVersion
    repeat: int
    attempt: int = 1
    max_tokens: int = 0
    followup: list[dict[str, str]] = field(default_factory=list)
    """Extra messages of a re-ask (the rejected answer and the complaint)."""
    unit_hash: str | None = None
    """What the unit labels (see resume.unit_hash): journaled with its rows, checked on resume."""

    def request(self, model_identity: Mapping[str, Any], sampling: Sampling) -> Request:
        """The engine request; its key hashes everything that decides the answer (the cache key)."""
        messages = [*self.prompt.render(self.unit), *self.followup]
        schema = self.prompt.schema_for(self.unit)
        key = hashlib.sha256(
            json.dumps(
                [messages, schema, self.max_tokens, dict(model_identity), sampling.as_dict(), self.repeat],
                sort_keys=True,
                ensure_ascii=False,
            ).encode()
        ).hexdigest()
        return Request(key, messages, schema, self.max_tokens, sampling, group=self.unit.chat_id)

    def settle(self, completion: Completion, cached: bool, ctx: RowContext) -> tuple[list[LabelRow], Job | None]:
        """Label rows for a finished job, or the changed job to try next."""
        can_retry = self.attempt < ctx.max_attempts
        if completion.error is not None:
            return self.rows(completion, cached, ctx, "backend_error", completion.error, None), None
        if completion.finish_reason == "length":
            if can_retry:
                return [], replace(self, attempt=self.attempt + 1, max_tokens=self.max_tokens * 2)
            return self.rows(completion, cached, ctx, "length", f"cut off at {self.max_tokens} tokens", None), None
        try:
            values = self.prompt.parse(self.unit, completion.text)
        except ParseFailure as failure:
            if can_retry:
                followup = [
                    {"role": "assistant", "content": completion.text},
                    {"role": "user", "content": reask(self.prompt.version).format(problem=failure.message)},
                ]
                return [], replace(self, attempt=self.attempt + 1, followup=followup)
            return self.rows(completion, cached, ctx, failure.kind, failure.message, None), None
        return self.rows(completion, cached, ctx, "ok", "", values), None

    def rows(
        self,
        completion: Completion,
        cached: bool,
        ctx: RowContext,
        status: Status,
        error: str,
        values: dict[int | None, dict[str, int]] | None,
    ) -> list[LabelRow]:
        """One row per label: per variable, and for ``chat_rounds`` units per rated round too."""
        pv, unit = self.prompt, self.unit
        rows = []
        for round_number in unit.label_rounds:
            for variable in pv.rubric.variables:
                value = None if values is None else values[round_number][variable]
                dist = None if value is None else self.distribution(completion, round_number, variable, value)
                rows.append(
                    LabelRow(
                        chat_id=unit.chat_id,
                        round=round_number,
                        task=pv.task,
                        variable=variable,
                        value=value,
                        probs=dist.probs_json() if dist else None,
                        confidence=round(dist.confidence, 6) if dist else None,
                        expected=round(dist.expected, 6) if dist and dist.expected is not None else None,
                        status=status,
                        error=error,
                        repeat=self.repeat,
                        prompt_version=pv.version,
                        prompt_hash=pv.content_hash,
                        model=ctx.model,
                        backend=ctx.backend,
                        sampling=json.dumps({**ctx.sampling.as_dict(), "max_tokens": self.max_tokens}),
                        raw_output=completion.text,
                        prompt_tokens=completion.prompt_tokens,
                        completion_tokens=completion.completion_tokens,
                        latency_ms=round(completion.latency_ms, 1),
                        attempts=self.attempt,
                        cached=cached,
                        truncation=unit.truncation,
                        run_id=ctx.run_id,
                    )
                )
        return rows

    def distribution(
        self, completion: Completion, round_number: int | None, variable: str, value: int
    ) -> Distribution | None:
        """The label's probabilities over its scale, when the engine's log probabilities give them."""
        spec = self.prompt.rubric.variables[variable]
        key = variable if self.prompt.rubric.unit != "chat_rounds" or round_number is None else round_key(round_number)
        candidates = None if completion.value_logprobs is None else completion.value_logprobs.get(key, {})
        found = distribution(candidates, list(spec.values), value, spec.scale)
        return found if isinstance(found, Distribution) else None


def reask(version: str) -> str:
    return REASK.get(family_of(version), REASK["en"])
