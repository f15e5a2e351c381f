"""Versioned few-shot prompts: the metadata model, and how a loaded version renders units.

A prompt version is two files in ``prompts/<task>/``:

* ``<version>.j2`` — a Jinja template with two blocks: ``system`` (instructions and rubric; static)
  and ``user`` (one unit's transcript, passed in as data).
* ``<version>.yaml`` — metadata (parent version, changelog, max_tokens) and the few-shot examples.

Messages are laid out static part first and the chat last, so an engine can reuse the shared
prefix: ``system``, then for each example a ``user``/``assistant`` pair, then the unit's ``user``.
Loading, checking and hashing the files is library.py's job; rendering happens here, in a sandbox.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from annotate.errors import PromptError
from annotate.prompts.rubrics import Rubric, parse_output, parse_rounds_output
from annotate.prompts.units import SPEAKER_NAMES, Unit, group_rounds


class ExampleTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    speaker: str
    text: str


class FewShotExample(BaseModel):
    """A worked example: a unit in the same shape the template sees, and the expected answer."""

    model_config = ConfigDict(extra="forbid")
    round: int | None = None
    context: list[ExampleTurn] = Field(default_factory=list)
    target: list[ExampleTurn] = Field(default_factory=list)
    rounds: list[list[ExampleTurn]] = Field(default_factory=list)
    """``chat_rounds`` tasks: the whole example chat, one list of turns per round (instead of ``target``)."""
    output: dict[str, int]
    note: str = ""
    """Why this answer; for people reading the prompt, never sent to the model."""


class VersionMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent: str | None = None
    """The version this one was derived from."""
    changelog: str
    """What changed relative to the parent, and why."""
    max_tokens: int = 32
    """Output token budget for one answer; for ``chat_rounds`` tasks, per rated round."""
    rubric: str | None = None
    """Rubric file in the rubrics folder [default: ``<task>.yaml``]. A version that changes the rubric names a
    new file (e.g. ``empathy.v2.yaml``), so that earlier versions keep theirs and stay reproducible."""
    examples: list[FewShotExample] = Field(default_factory=list)


@dataclass(frozen=True)
class PromptVersion:
    """One loaded, checked prompt version (see library.py), and how it renders units and reads answers."""

    task: str
    version: str
    template_path: Path
    meta_path: Path
    rubric_path: Path
    template_source: str
    meta_source: str
    rubric_source: str
    """The rubric file's text as read (the content hash covers it and any rubric it combines)."""
    meta: VersionMeta
    rubric: Rubric
    content_hash: str
    """sha256 over template, metadata with examples, and every rubric file the version reads (16 hex digits)."""

    @cached_property
    def _template(self) -> Any:
        try:
            template = _ENV.from_string(self.template_source)
        except TemplateError as e:
            raise PromptError(f"{self.template_path}: {e}") from None
        missing = {"system", "user"} - set(template.blocks)
        if missing:
            raise PromptError(f"{self.template_path}: needs blocks 'system' and 'user' (missing {sorted(missing)})")
        return template

    def _render_block(self, block: str, data: dict[str, Any]) -> str:
        template = self._template
        try:
            context = template.new_context({"rubric": self.rubric.model_dump(), **data})
            return "".join(template.blocks[block](context)).strip()
        except Exception as e:  # sandbox violations, undefined variables, overflows: all fixed in the template
            raise PromptError(f"{self.template_path}: block '{block}': {type(e).__name__}: {e}") from None

    @cached_property
    def static_messages(self) -> list[dict[str, str]]:
        """System message and few-shot pairs: identical for every unit of the task."""
        messages = [{"role": "system", "content": self._render_block("system", {})}]
        for ex in self.meta.examples:
            unit: dict[str, Any] = {
                "round": ex.round,
                "context": [_example_turn(t) for t in ex.context],
                "target": [_example_turn(t) for t in ex.target],
            }
            if ex.rounds:
                unit["target"] = [_example_turn(t) for turns in ex.rounds for t in turns]
                numbers = tuple(n for n, turns in enumerate(ex.rounds, 1) for _ in turns)
                unit["rounds"] = group_rounds(unit["target"], numbers)
            messages.append({"role": "user", "content": self._render_block("user", {"unit": unit})})
            messages.append({"role": "assistant", "content": json.dumps(ex.output, separators=(",", ":"))})
        return messages

    def render(self, unit: Unit) -> list[dict[str, str]]:
        """The exact chat messages the model sees for one unit."""
        user = self._render_block("user", {"unit": unit.as_template_data()})
        return [*self.static_messages, {"role": "user", "content": user}]

    def schema_for(self, unit: Unit) -> dict[str, Any]:
        """The JSON schema that constrains the answer for ``unit``."""
        if self.rubric.unit == "chat_rounds":
            return self.rubric.rounds_schema(unit.rated_rounds)
        return self.rubric.json_schema

    def max_tokens_for(self, unit: Unit) -> int:
        if self.rubric.unit == "chat_rounds":
            return self.meta.max_tokens * max(1, len(unit.rated_rounds)) + 4
        return self.meta.max_tokens

    def parse(self, unit: Unit, text: str) -> dict[int | None, dict[str, int]]:
        """The answer for ``unit`` as round -> {variable: value} (round None for one label set per unit).

        Raises ParseFailure when the text is not the JSON the schema asks for.
        """
        if self.rubric.unit == "chat_rounds":
            by_round = parse_rounds_output(self.rubric, text, unit.rated_rounds)
            return {n: by_round[n] for n in unit.rated_rounds}
        return {unit.round: parse_output(self.rubric, text)}


def _example_turn(t: ExampleTurn) -> dict[str, str]:
    return {"speaker": t.speaker, "name": SPEAKER_NAMES.get(t.speaker, t.speaker), "text": t.text}


class _NoFiles(BaseLoader):
    """Templates are self-contained: include, import and extend never read a file."""

    def get_source(self, environment: Any, template: str) -> Any:
        raise TemplateNotFound(f"{template} (prompt templates may not include, import or extend files)")


MAX_RESULT = 1_000_000
"""Longest string or list a template may build with ``*`` or ``**`` (a prompt is far shorter)."""


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, with ``*`` and ``**`` checked so a template cannot build a giant string or number.

    ``range`` is already capped by Jinja (100,000 items).
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(f"exponent {right} is too large for a prompt template")
        if operator == "*":
            size = _repeat_size(left, right) or _repeat_size(right, left)
            if size > MAX_RESULT:
                raise SecurityError(f"'*' would build {size} items; a prompt template may build {MAX_RESULT} at most")
        return super().call_binop(context, operator, left, right)


def _repeat_size(seq: Any, times: Any) -> int:
    if isinstance(seq, str | list | tuple) and isinstance(times, int):
        return len(seq) * times
    return 0


FENCE = "```"
JSON_SPAN = re.compile(r"\{[^{}]*\}")
WITHHELD = "⟦JSON-like text withheld⟧"


def as_data(text: str) -> str:
    """Transcript text made unmistakably data (the ``as_data`` filter of prompt templates).

    A fence marker inside the text cannot close the fence around it, and anything shaped like a JSON
    object is withheld (``⟦JSON-like text withheld⟧``): a chat has no need of one, and a model shown a
    ready-made answer tends to copy it. Prompt versions that use this filter are hashed by their files,
    not by this code, so its behaviour is frozen: a different treatment needs a filter of another name.
    """
    text = text.replace(FENCE, "'" * 3)
    while JSON_SPAN.search(text):  # nested objects: innermost first, until none is left
        text = JSON_SPAN.sub(WITHHELD, text)
    return text


_ENV = _Sandbox(loader=_NoFiles(), undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["as_data"] = as_data
