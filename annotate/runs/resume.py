"""Whether a run directory may take this run: the one place that decides, from the manifest it holds.

A resume must not mix two setups in one directory. It is refused when the directory already holds labels
made under another configuration (backend, model, sampling, truncation, redaction: the fingerprint), made
with another version or content of a task's prompt, or rating a variable with another task. (Which units
changed or vanished since, and why, is decided while the input is read again: labelling/resume.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from annotate.errors import RunStoreError
from annotate.runs.manifest import RunManifest


def check_resume(
    previous: RunManifest | None,
    out: Path,
    *,
    fingerprint: dict[str, Any],
    prompts: dict[str, tuple[str, str]],
    rated_by: dict[str, str],
    labelled: bool,
) -> None:
    """``prompts``: task -> (version, content hash) of this run; ``rated_by``: variable -> the task rating it;
    ``labelled``: whether the directory's journal holds anything (a run whose model failed to load may be run
    again with another one)."""
    if previous is None:
        return
    if labelled and previous.fingerprint != fingerprint:
        before = previous.fingerprint or {}
        changed = sorted(k for k in set(fingerprint) | set(before) if fingerprint.get(k) != before.get(k))
        raise RunStoreError(
            f"{out} holds a run with another configuration ({', '.join(changed)} differ): choose a new --out directory"
        )
    for task, (version, digest) in prompts.items():
        held = previous.prompts.get(task)
        if held and (held.version, held.hash) != (version, digest):
            raise RunStoreError(
                f"{out} already holds {task} labels from prompt {held.version} ({held.hash}); "
                f"this run uses {version} ({digest}): choose a new --out directory"
            )
    for task, entry in previous.prompts.items():
        for variable in entry.variables:
            if variable in rated_by and rated_by[variable] != task:
                raise RunStoreError(
                    f"{out} holds {variable} labels from task '{task}'; this run rates {variable} with "
                    f"'{rated_by[variable]}': one task per variable in a run directory, choose a new --out"
                )


def check_not_a_run_file(out: Path) -> None:
    """No command writes over a run directory's own files (its labels, manifest or journal)."""
    if (out.parent / "manifest.json").is_file() and not out.name.startswith(("report", "learning")):
        raise RunStoreError(f"{out}: inside the run directory {out.parent}; write it somewhere else")


def check_coding_out(out: Path, force: bool) -> None:
    """A coding file may hold a coder's work: an existing one is refused unless ``force`` (then see ``move_aside``)."""
    check_not_a_run_file(out)
    if out.exists() and not force:
        raise RunStoreError(
            f"{out} exists (coders may have filled it in): choose another --out, or --force to replace it"
        )


def move_aside(out: Path) -> Path:
    """Rename an existing file to FILE.bak (FILE.bak1, ... when taken) and return the new name."""
    backup = out.with_name(out.name + ".bak")
    number = 1
    while backup.exists():
        backup, number = out.with_name(f"{out.name}.bak{number}"), number + 1
    out.rename(backup)
    return backup


def check_derived_out(out: Path, sources: list[Path], what: str = "learned run") -> None:
    """A run made from other runs (a consensus, a learned labeller) goes to a directory that is neither a labelling
    run nor one of its own sources; one it wrote before is replaced whole."""
    if (out / "journal.jsonl").exists():
        raise RunStoreError(f"{out} holds a labelling run; write the {what} to a new --out directory")
    if any(out.resolve() == source.resolve() for source in sources):
        raise RunStoreError(f"{out} is one of the {what}'s own sources; write it to a new --out directory")
