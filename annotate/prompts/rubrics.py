"""Rubric files, and the output model and JSON schema generated from them.

The rubric is the one source of truth for a task's variables and allowed values: the pydantic model
that parses the LLM's answer and the JSON schema that constrains decoding are both built from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from annotate.errors import PromptError
from annotate.files import read_utf8

UnitKind = Literal["post_handoff", "first_round", "round", "chat_rounds"]


class ScalePoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str
    """Short name of the value, e.g. ``tailored``."""
    definition: str
    """What a coder must see in the text to give this value."""


class Variable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    """What the variable measures, in one or two sentences."""
    scale: Literal["ordinal", "nominal", "binary"] = "ordinal"
    """Ordinal scales get weighted agreement statistics; nominal and binary do not."""
    values: dict[int, ScalePoint]
    """Allowed integer values and their definitions."""


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str
    """Task name; equals the file name and the prompt folder name."""
    title: str
    unit: UnitKind
    """Which part of a chat one label describes (see units.py)."""
    measures: str
    """What the task measures and whose behaviour is judged."""
    variables: dict[str, Variable] = Field(default_factory=dict)
    """The variables one answer carries; for a rubric that ``combines`` others, filled from its parts."""
    combines: list[str] = Field(default_factory=list)
    """Rubric files (in the same folder) whose constructs this task rates together in one request. Their
    variables, rules and edge cases are used as written there, so that rating them jointly or one by one
    measures the same definitions."""
    parts: list[Rubric] = Field(default_factory=list)
    """The rubrics named in ``combines``, loaded; never written in a rubric file."""
    decision_rules: list[str] = Field(default_factory=list)
    """Rules that separate look-alike behaviour."""
    thin_evidence: str
    """What to answer when the text gives little to go on."""
    edge_cases: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_variable_per_round(self) -> Rubric:
        if self.unit == "chat_rounds" and len(self.variables) != 1:
            raise ValueError("a chat_rounds rubric rates one variable per round (answers map round -> value)")
        if not self.variables:
            raise ValueError("a rubric needs 'variables', or 'combines' naming the rubrics it rates together")
        return self

    @cached_property
    def output_model(self) -> type[BaseModel]:
        fields: dict[str, Any] = {
            name: (Literal[tuple(sorted(var.values))], Field(description=var.description))
            for name, var in self.variables.items()
        }
        return create_model(
            f"{self.task.title().replace('_', '')}Output",
            __config__=ConfigDict(extra="forbid", strict=True),
            **fields,
        )

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        """A plain JSON schema (no $refs, no titles) that grammar engines accept."""
        return {
            "type": "object",
            "properties": {
                name: {"type": "integer", "enum": sorted(var.values)} for name, var in self.variables.items()
            },
            "required": list(self.variables),
            "additionalProperties": False,
        }

    def rounds_schema(self, rounds: Sequence[int]) -> dict[str, Any]:
        """``chat_rounds`` answers: one key per rated round, in order, each the variable's allowed values."""
        (var,) = self.variables.values()
        return {
            "type": "object",
            "properties": {round_key(n): {"type": "integer", "enum": sorted(var.values)} for n in rounds},
            "required": [round_key(n) for n in rounds],
            "additionalProperties": False,
        }

    def rounds_model(self, rounds: Sequence[int]) -> type[BaseModel]:
        (var,) = self.variables.values()
        fields: dict[str, Any] = {round_key(n): (Literal[tuple(sorted(var.values))], ...) for n in rounds}
        return create_model(
            f"{self.task.title().replace('_', '')}Rounds", __config__=ConfigDict(extra="forbid", strict=True), **fields
        )


def round_key(number: int) -> str:
    """The answer's key for one round of a ``chat_rounds`` unit."""
    return f"round_{number}"


class ParseFailure(Exception):
    """The model's text is not the JSON the rubric asks for; ``kind`` is the failure row's status."""

    def __init__(self, kind: Literal["parse_error", "schema_error"], message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(message)


def parse_output(rubric: Rubric, text: str) -> dict[str, int]:
    """Parse and check one answer; raise ParseFailure with a message fit to quote back to the model."""
    return _parse(rubric.output_model, text)


def parse_rounds_output(rubric: Rubric, text: str, rounds: Sequence[int]) -> dict[int, dict[str, int]]:
    """Parse a ``chat_rounds`` answer into round -> {variable: value}."""
    values = _parse(rubric.rounds_model(rounds), text)
    (name,) = rubric.variables
    return {n: {name: values[round_key(n)]} for n in rounds}


def _parse(model: type[BaseModel], text: str) -> dict[str, int]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseFailure("parse_error", f"not valid JSON ({e.msg})") from None
    try:
        parsed = model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'answer'}: {err['msg']}" for err in e.errors(include_url=False)
        )
        raise ParseFailure("schema_error", problems) from None
    return parsed.model_dump()


def load_rubric(path: Path, task: str | None = None) -> Rubric:
    """Load and check a rubric; ``task`` is the task it must describe [default: the file name]."""
    try:
        data = yaml.safe_load(read_utf8(path))
    except FileNotFoundError:
        raise PromptError(f"{path}: no such rubric") from None
    except yaml.YAMLError as e:
        raise PromptError(f"{path}: not valid YAML ({yaml_problem(e)})") from None
    if isinstance(data, dict) and data.get("combines"):
        data = {**data, **_combined(path, data)}
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise PromptError(f"{path}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
    expected = task or path.stem
    if rubric.task != expected:
        raise PromptError(f"{path}: field 'task': '{rubric.task}' does not match the task '{expected}'")
    return rubric


def _combined(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The ``parts`` and merged ``variables`` of a rubric that rates several rubrics' constructs at once."""
    for field in ("parts", "variables"):
        if field in data:
            raise PromptError(f"{path}: field '{field}': not allowed with 'combines' (it comes from the parts)")
    try:
        parts = [load_rubric(path.parent / str(name), _task_of(path.parent / str(name))) for name in data["combines"]]
    except PromptError as e:
        raise PromptError(f"{path}: field 'combines': {e}") from None
    variables: dict[str, Any] = {}
    for name, part in zip(data["combines"], parts, strict=True):
        if part.combines:
            raise PromptError(f"{path}: field 'combines': {name} combines other rubrics itself")
        if part.unit != data.get("unit"):
            raise PromptError(
                f"{path}: field 'combines': {name} rates unit '{part.unit}', this rubric '{data.get('unit')}'"
            )
        for variable in part.variables:
            if variable in variables:
                raise PromptError(f"{path}: field 'combines': variable '{variable}' appears in two parts")
        variables.update({k: v.model_dump() for k, v in part.variables.items()})
    return {"parts": [p.model_dump() for p in parts], "variables": variables}


def _task_of(path: Path) -> str:
    """A part's task is its file name up to the first dot (``empathy.v2.yaml`` describes ``empathy``)."""
    return path.name.split(".")[0]


def yaml_problem(e: yaml.YAMLError) -> str:
    """One line: the problem and where, instead of PyYAML's multi-line report."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem
