"""The prompt library: finding, loading and checking prompt versions, their content hashes, and the lock file.

Every check happens when a version is loaded (metadata fields, the rubric, every few-shot answer against
the rubric), so that a broken prompt is reported before any engine starts.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from annotate.config import PACKAGE_DEFAULTS, PromptPaths
from annotate.errors import PromptError
from annotate.files import exclusive, read_utf8, write_atomic
from annotate.prompts.rubrics import (
    ParseFailure,
    Rubric,
    load_rubric,
    parse_output,
    parse_rounds_output,
    yaml_problem,
)
from annotate.prompts.template import FewShotExample, PromptVersion, VersionMeta

VERSION_RE = re.compile(r"^(?:(?P<family>[a-z]{2,8})-)?v(?P<number>\d+)$")
"""``v3`` is the English family's third version; ``zh-v1`` the Chinese family's first."""
LOCK_GUARD = ".versions.lock.json.lock"
"""Beside the lock file: held (flock) while a run reads, extends and rewrites the lock file."""
DEFAULT_FAMILY = "en"
"""The family of versions named without a prefix."""


def family_of(version: str) -> str:
    match = VERSION_RE.match(version)
    return (match and match["family"]) or DEFAULT_FAMILY


def _version_order(version: str) -> tuple[bool, str, int]:
    match = VERSION_RE.match(version)
    assert match is not None
    family = match["family"] or DEFAULT_FAMILY
    return family != DEFAULT_FAMILY, family, int(match["number"])


class PromptLibrary:
    """The prompt versions under ``prompts_dir`` and the rubrics under ``rubrics_dir``, over ``base`` (the packaged
    library, for a project's own folders): a project's versions and rubrics add to the packaged ones, and one of
    the same name overrides it."""

    def __init__(
        self, prompts_dir: Path, rubrics_dir: Path, read_only: bool = False, base: PromptLibrary | None = None
    ) -> None:
        self.prompts_dir = prompts_dir
        self.rubrics_dir = rubrics_dir
        self.read_only = read_only
        """The package's own prompts: the lock file is checked, never written."""
        self.base = base
        """The packaged library under a project's own folders (None: this is the whole library)."""

    @classmethod
    def from_paths(cls, paths: PromptPaths) -> PromptLibrary:
        packaged = PromptPaths(PACKAGE_DEFAULTS / "prompts", PACKAGE_DEFAULTS / "rubrics")
        if paths.prompts_dir.resolve() == packaged.prompts_dir.resolve():
            return cls(paths.prompts_dir, paths.rubrics_dir, read_only=paths.packaged)
        base = cls(packaged.prompts_dir, packaged.rubrics_dir, read_only=packaged.packaged)
        return cls(paths.prompts_dir, paths.rubrics_dir, base=base)

    @property
    def paths(self) -> PromptPaths:
        return PromptPaths(self.prompts_dir, self.rubrics_dir)

    def _own_versions(self, task: str) -> list[str]:
        return [p.stem for p in (self.prompts_dir / task).glob("*.j2") if VERSION_RE.match(p.stem)]

    def _rubric_path(self, name: str) -> Path:
        """A rubric file: the project's, else the packaged one."""
        own = self.rubrics_dir / name
        return own if own.is_file() or self.base is None else self.base._rubric_path(name)

    def tasks(self) -> list[str]:
        own = {p.name for p in self.prompts_dir.glob("*") if p.is_dir() and self._own_versions(p.name)}
        found = {task for task in own if self._rubric_path(f"{task}.yaml").is_file()}
        if self.base is None:
            found |= {p.stem for p in self.rubrics_dir.glob("*.yaml") if (self.prompts_dir / p.stem).is_dir()}
            return sorted(found)
        return sorted(found | set(self.base.tasks()))

    def source(self, pv: PromptVersion) -> str:
        """Where a version comes from: ``project`` or ``packaged``."""
        return "packaged" if self.base is None or not pv.template_path.is_relative_to(self.prompts_dir) else "project"

    def default_tasks(self) -> list[str]:
        """The tasks a run labels when none are named: every task, except one whose variables another task
        already rates together with more (``empathy`` is left out when ``agent_behaviour`` rates it too)."""
        variables = {t: set(self.get(t).rubric.variables) for t in self.tasks()}
        return [t for t, own in variables.items() if not any(own < other for other in variables.values())]

    def versions(self, task: str, family: str | None = None) -> list[str]:
        """The task's versions (the project's and the packaged ones), English first, each family oldest first;
        with ``family``, that family's only."""
        found = set(self._own_versions(task)) | set(self.base.versions(task) if self.base else [])
        return sorted((v for v in found if family is None or family_of(v) == family), key=_version_order)

    def families(self) -> list[str]:
        """Every prompt family of the library (``en`` first)."""
        found = {family_of(v) for task in self.tasks() for v in self.versions(task)}
        return sorted(found, key=lambda f: (f != DEFAULT_FAMILY, f))

    def get(self, task: str, version: str | None = None, family: str = DEFAULT_FAMILY) -> PromptVersion:
        """A version of a task; without one, the newest of ``family``."""
        if task not in self.tasks():
            known = ", ".join(self.tasks()) or f"none: {self.rubrics_dir} has no rubric with a prompt folder"
            raise PromptError(f"unknown task '{task}' (known: {known})")
        versions = self.versions(task)
        if not versions:
            raise PromptError(f"{self.prompts_dir / task}: no prompt versions (expected v1.j2 and v1.yaml)")
        if version is None:
            newest = self.versions(task, family)
            if not newest:
                known = ", ".join(self.families())
                raise PromptError(f"task '{task}' has no prompt of family '{family}' (families: {known})")
            version = newest[-1]
        if version not in versions:
            raise PromptError(f"task '{task}' has no prompt version '{version}' (versions: {', '.join(versions)})")
        if self.base is not None and version not in self._own_versions(task):
            return self.base._load(task, version)
        return self._load(task, version)

    def _load(self, task: str, version: str) -> PromptVersion:
        template_path = self.prompts_dir / task / f"{version}.j2"
        meta_path = self.prompts_dir / task / f"{version}.yaml"
        if not meta_path.is_file():
            raise PromptError(f"{meta_path}: missing (every version needs its .j2 and .yaml)")
        meta_source = read_utf8(meta_path)
        meta = _read_meta(meta_path, meta_source)
        rubric_path = self._rubric_path(meta.rubric or f"{task}.yaml")
        if meta.parent and meta.parent not in self.versions(task):
            raise PromptError(
                f"{meta_path}: field 'parent': {task} has no version '{meta.parent}' (versions: "
                f"{', '.join(self.versions(task))}): name the version this one was copied from"
            )
        rubric = load_rubric(rubric_path, task)
        _check_examples(meta_path, meta.examples, rubric)
        template_source = read_utf8(template_path)
        rubric_files = [rubric_path, *(rubric_path.parent / name for name in rubric.combines)]
        rubric_sources = [read_utf8(f) for f in rubric_files]
        digest = hashlib.sha256()
        for part in (template_source, meta_source, *rubric_sources):
            digest.update(hashlib.sha256(part.encode("utf-8")).digest())
        return PromptVersion(
            task=task,
            version=version,
            template_path=template_path,
            meta_path=meta_path,
            rubric_path=rubric_path,
            template_source=template_source,
            meta_source=meta_source,
            rubric_source=rubric_sources[0],
            meta=meta,
            rubric=rubric,
            content_hash=digest.hexdigest()[:16],
        )

    def check_locked(self, versions: list[PromptVersion], record: bool) -> None:
        """Refuse a version whose content changed after a run used it; record first uses.

        The lock file ``prompts/versions.lock.json`` is meant to be committed next to the prompts. Packaged
        versions under a project's folders are checked against the package's own lock file.
        """
        if self.base is not None:
            packaged = [pv for pv in versions if self.source(pv) == "packaged"]
            self.base.check_locked(packaged, record)
            versions = [pv for pv in versions if self.source(pv) == "project"]
        lock_path = self.prompts_dir / "versions.lock.json"
        if not record or self.read_only:
            self._check_against(_read_lock(lock_path), versions, lock_path)
            return
        try:
            with exclusive(lock_path.with_name(LOCK_GUARD)):  # two runs recording at once lose nothing
                lock = _read_lock(lock_path)
                if self._check_against(lock, versions, lock_path):
                    write_atomic(lock_path, json.dumps(dict(sorted(lock.items())), indent=2) + "\n")
        except OSError as e:
            raise PromptError(
                f"{lock_path}: cannot record the prompt versions ({e.strerror or e}); it is as it was"
            ) from None

    @staticmethod
    def _check_against(lock: dict[str, str], versions: list[PromptVersion], lock_path: Path) -> bool:
        """Refuse a version whose hash differs from its locked one; add first uses to ``lock``. True if any was."""
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
        return changed


def _read_lock(path: Path) -> dict[str, str]:
    """The lock file's entries; one line naming the file when it is not a JSON object of strings (a merge left
    conflict markers in it, say)."""
    if not path.is_file():
        return {}
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PromptError(f"{path}: not valid JSON ({e}): resolve the merge conflict or restore the file") from None
    if not isinstance(lock, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in lock.items()):
        raise PromptError(f"{path}: must be a JSON object of task/version -> hash: restore the file")
    return lock


def _read_meta(path: Path, source: str) -> VersionMeta:
    try:
        return VersionMeta.model_validate(yaml.safe_load(source))
    except yaml.YAMLError as e:
        raise PromptError(f"{path}: not valid YAML ({yaml_problem(e)})") from None
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise PromptError(f"{path}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None


def _check_examples(path: Path, examples: list[FewShotExample], rubric: Rubric) -> None:
    """Every few-shot answer must be one the rubric's schema accepts, or the prompt teaches a wrong format."""
    for i, example in enumerate(examples):
        try:
            _check_example(example, rubric)
        except (ParseFailure, ValueError) as e:
            raise PromptError(f"{path}: field 'examples[{i}].output': {e}") from None


def _check_example(example: FewShotExample, rubric: Rubric) -> Any:
    text = json.dumps(example.output)
    if rubric.unit != "chat_rounds":
        return parse_output(rubric, text)
    rated = [n for n, turns in enumerate(example.rounds, 1) if any(t.speaker == "customer" for t in turns)]
    if not rated:
        raise ValueError("a chat_rounds example needs 'rounds' with customer turns")
    return parse_rounds_output(rubric, text, rated)


def copy_version(library: PromptLibrary, task: str, version: str, target: Path) -> Path:
    """A new version in the project folder ``target``, started from ``version`` (packaged or the project's): the
    next number of its family, ``parent`` set to it, the changelog left for the researcher to write. Returns
    the new template's path."""
    source = library.get(task, version)
    family = family_of(version)
    numbers = [int(m["number"]) for v in library.versions(task, family) if (m := VERSION_RE.match(v))]
    folder = target / task
    numbers += [int(m["number"]) for p in folder.glob("*.j2") if (m := VERSION_RE.match(p.stem))]
    prefix = "" if family == DEFAULT_FAMILY else f"{family}-"
    new = f"{prefix}v{max(numbers, default=0) + 1}"
    meta = re.sub(r"(?m)^parent:.*\n", "", source.meta_source)
    origin = f"{task} {version} ({library.source(source)})"
    changelog = f"changelog: >\n  Started from {origin}: say here what changes and why.\n"
    meta = re.sub(r"(?m)^changelog:.*\n(?:[ \t]+.*\n?)*", "", meta)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{new}.yaml", f"parent: {version}\n{changelog}{meta}")
    write_atomic(folder / f"{new}.j2", source.template_source)
    return folder / f"{new}.j2"
