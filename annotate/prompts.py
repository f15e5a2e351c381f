"""Versioned few-shot prompts: discovery, sandboxed rendering and content hashes.

A prompt version is two files in ``prompts/<task>/``:

* ``<version>.j2`` — a Jinja template with two blocks: ``system`` (instructions and rubric; static)
  and ``user`` (one unit's transcript, passed in as data).
* ``<version>.yaml`` — metadata (parent version, changelog, max_tokens) and the few-shot examples.

Messages are laid out static part first and the chat last, so an engine can reuse the shared
prefix: ``system``, then for each example a ``user``/``assistant`` pair, then the unit's ``user``.
The content hash covers template, metadata with examples, and rubric.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annotate.errors import PromptError
from annotate.schema import Rubric, _yaml_problem, load_rubric, parse_output, parse_rounds_output
from annotate.tasks import SPEAKER_NAMES, Unit, group_rounds

VERSION_RE = re.compile(r"^v(\d+)$")


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
    task: str
    version: str
    template_path: Path
    meta_path: Path
    rubric_path: Path

    @cached_property
    def template_source(self) -> str:
        return self.template_path.read_text(encoding="utf-8")

    @cached_property
    def meta_source(self) -> str:
        return self.meta_path.read_text(encoding="utf-8")

    @cached_property
    def rubric(self) -> Rubric:
        return load_rubric(self.rubric_path, self.task)

    @cached_property
    def meta(self) -> VersionMeta:
        try:
            meta = VersionMeta.model_validate(yaml.safe_load(self.meta_source))
        except yaml.YAMLError as e:
            raise PromptError(f"{self.meta_path}: not valid YAML ({_yaml_problem(e)})") from None
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            raise PromptError(f"{self.meta_path}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
        for i, ex in enumerate(meta.examples):
            try:
                if self.rubric.unit == "chat_rounds":
                    rated = [n for n, turns in enumerate(ex.rounds, 1) if any(t.speaker == "customer" for t in turns)]
                    if not rated:
                        raise ValueError("a chat_rounds example needs 'rounds' with customer turns")
                    parse_rounds_output(self.rubric, json.dumps(ex.output), rated)
                else:
                    parse_output(self.rubric, json.dumps(ex.output))
            except Exception as e:
                raise PromptError(f"{self.meta_path}: field 'examples[{i}].output': {e}") from None
        return meta

    @cached_property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        rubric_files = [self.rubric_path, *(self.rubric_path.parent / name for name in self.rubric.combines)]
        for part in (self.template_source, self.meta_source, *(f.read_text(encoding="utf-8") for f in rubric_files)):
            h.update(hashlib.sha256(part.encode("utf-8")).digest())
        return h.hexdigest()[:16]

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
        except TemplateError as e:  # includes sandbox violations and undefined variables
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


_ENV = SandboxedEnvironment(
    loader=_NoFiles(), undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
)


class PromptLibrary:
    """The prompt versions under ``prompts_dir`` and the rubrics under ``rubrics_dir``."""

    def __init__(self, prompts_dir: Path, rubrics_dir: Path) -> None:
        self.prompts_dir = prompts_dir
        self.rubrics_dir = rubrics_dir

    def tasks(self) -> list[str]:
        return sorted(p.stem for p in self.rubrics_dir.glob("*.yaml") if (self.prompts_dir / p.stem).is_dir())

    def default_tasks(self) -> list[str]:
        """The tasks a run labels when none are named: every task, except one whose variables another task
        already rates together with more (``empathy`` is left out when ``agent_behaviour`` rates it too)."""
        variables = {t: set(self.get(t).rubric.variables) for t in self.tasks()}
        return [t for t, own in variables.items() if not any(own < other for other in variables.values())]

    def versions(self, task: str) -> list[str]:
        folder = self.prompts_dir / task
        found = [p.stem for p in folder.glob("v*.j2") if VERSION_RE.match(p.stem)]
        return sorted(found, key=lambda v: int(v[1:]))

    def get(self, task: str, version: str | None = None) -> PromptVersion:
        if task not in self.tasks():
            raise PromptError(f"unknown task '{task}' (known: {', '.join(self.tasks())})")
        versions = self.versions(task)
        if not versions:
            raise PromptError(f"{self.prompts_dir / task}: no prompt versions (expected v1.j2 and v1.yaml)")
        version = version or versions[-1]
        if version not in versions:
            raise PromptError(f"task '{task}' has no prompt version '{version}' (versions: {', '.join(versions)})")
        meta_path = self.prompts_dir / task / f"{version}.yaml"
        if not meta_path.is_file():
            raise PromptError(f"{meta_path}: missing (every version needs its .j2 and .yaml)")
        try:
            rubric_name = (yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}).get("rubric")
        except yaml.YAMLError as e:
            raise PromptError(f"{meta_path}: not valid YAML ({_yaml_problem(e)})") from None
        return PromptVersion(
            task,
            version,
            self.prompts_dir / task / f"{version}.j2",
            meta_path,
            self.rubrics_dir / (rubric_name or f"{task}.yaml"),
        )

    def check_locked(self, versions: list[PromptVersion], record: bool) -> None:
        """Refuse a version whose content changed after a run used it; record first uses.

        The lock file ``prompts/versions.lock.json`` is meant to be committed next to the prompts.
        """
        lock_path = self.prompts_dir / "versions.lock.json"
        lock: dict[str, str] = json.loads(lock_path.read_text()) if lock_path.is_file() else {}
        changed = False
        for pv in versions:
            key = f"{pv.task}/{pv.version}"
            if key in lock and lock[key] != pv.content_hash:
                raise PromptError(
                    f"prompt {key} changed after a run used it (locked hash {lock[key]}, now {pv.content_hash}): "
                    f"save the change as a new version, or remove '{key}' from {lock_path} if no run matters"
                )
            if key not in lock:
                lock[key] = pv.content_hash
                changed = True
        if changed and record:
            lock_path.write_text(json.dumps(dict(sorted(lock.items())), indent=2) + "\n")


def default_dirs() -> tuple[Path, Path]:
    """``./prompts`` and ``./rubrics`` when the working directory has them, else the project's own."""
    here = Path.cwd()
    if (here / "prompts").is_dir() and (here / "rubrics").is_dir():
        return here / "prompts", here / "rubrics"
    root = Path(__file__).resolve().parent.parent
    return root / "prompts", root / "rubrics"
