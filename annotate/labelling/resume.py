"""What a run still has to do, given what its directory already holds, and whether it may go on at all.

Every journaled unit carries a hash of exactly what was labelled (the transcript as the model saw it).
Resuming is allowed when every unit already labelled is still produced by the input, unchanged: new
units (chats appended to the input, a larger ``--limit``, more ``--repeats``) are labelled and recorded
as growth. A unit whose text changed (an edited chat, another role map or redaction), or that the input
no longer produces (a smaller ``--limit`` or ``--repeats``, a shortened file), is refused, because the
run directory would otherwise mix labels of two inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotate.config import RunConfig
from annotate.errors import RunStoreError
from annotate.ingest.model import Chat
from annotate.labelling.jobs import Job, fit_to_context
from annotate.labelling.manifest import file_sha256, recorded_options
from annotate.labelling.prompts import PromptVersion
from annotate.labelling.store import Journal, UnitKey
from annotate.labelling.units import Unit, units_for


@dataclass(frozen=True)
class Plan:
    jobs: list[Job]
    """Units x repeats still to label, grouped by task so consecutive requests share their prefix."""
    added: int
    """Units the directory did not hold before (all of them for a new run)."""


def unit_hash(unit: Unit) -> str:
    """What one request labels: the task, the round, and the transcript exactly as the template gets it."""
    payload = [unit.task, unit.round, unit.truncation, unit.as_template_data()]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def unit_key(unit: Unit, repeat: int) -> UnitKey:
    return (unit.task, unit.chat_id, unit.round, repeat)


def plan(
    chats: list[Chat], versions: list[PromptVersion], config: RunConfig, journal: Journal, previous: Mapping[str, Any]
) -> Plan:
    """The jobs left to do; refuses an input that changed or shrank since ``previous`` (the old manifest)."""
    jobs: list[Job] = []
    current: dict[UnitKey, str] = {}
    for pv in versions:
        for chat in chats:
            for unit in units_for(chat, pv.task, pv.rubric.unit, config.max_chars):
                fitted = fit_to_context(unit, pv, config.options.max_model_len)
                digest = unit_hash(fitted)
                for repeat in range(config.repeats):
                    key = unit_key(fitted, repeat)
                    current[key] = digest
                    if not _finished(journal, key, fitted):
                        jobs.append(Job(fitted, pv, repeat, max_tokens=pv.max_tokens_for(fitted), unit_hash=digest))
    _check_unchanged(journal, current, {pv.task for pv in versions}, config, previous)
    return Plan(jobs, added=sum(key not in journal.hashes for key in current))


def _finished(journal: Journal, key: UnitKey, unit: Unit) -> bool:
    if key in journal.done:
        return True
    task, chat_id, _, repeat = key
    return bool(journal.legacy_done) and all(
        (task, chat_id, r, repeat) in journal.legacy_done for r in unit.label_rounds
    )


def _check_unchanged(
    journal: Journal, current: Mapping[UnitKey, str], tasks: set[str], config: RunConfig, previous: Mapping[str, Any]
) -> None:
    changed = [k for k, h in journal.hashes.items() if k[0] in tasks and h is not None and current.get(k, h) != h]
    gone = [k for k in journal.hashes if k[0] in tasks and k not in current]
    if not changed and not gone:
        return
    example = changed[0] if changed else gone[0]
    what = (
        f"{len(changed)} labelled unit(s) now have other text (e.g. {_describe(example)})"
        if changed
        else f"it holds labels for {len(gone)} unit(s) this input does not give (e.g. {_describe(example)})"
    )
    causes = _option_changes(previous, config)
    because = f" ({'; '.join(causes)})" if causes else ""
    raise RunStoreError(
        f"{config.out}: the input changed since this run labelled it{because}: {what}; resuming would mix old and "
        "new labels: choose a new --out directory (appending chats or raising --limit or --repeats is fine)"
    )


def _option_changes(previous: Mapping[str, Any], config: RunConfig) -> list[str]:
    """Which recorded options or input files differ from the run being resumed."""
    before, now = previous.get("options", {}), recorded_options(config)
    found = [
        f"{name} {before.get(name)} -> {now[name]}" for name in now if name in before and before[name] != now[name]
    ]
    old_inputs = {Path(e["path"]).name: e["sha256"] for e in previous.get("inputs", [])}
    for path in config.inputs:
        if path.name in old_inputs and old_inputs[path.name] != file_sha256(path):
            found.append(f"{path.name} has other content")
    return found


def _describe(key: UnitKey) -> str:
    task, chat_id, round_number, repeat = key
    where = f" round {round_number}" if round_number is not None else ""
    return f"chat {chat_id}{where}, task {task}, repeat {repeat}"


def check_variables(previous: Mapping[str, Any], versions: list[PromptVersion], out: Any) -> None:
    """One task per variable in a run directory, across resumes too."""
    rated_now = {v: pv.task for pv in versions for v in pv.rubric.variables}
    for task, entry in previous.get("prompts", {}).items():
        for variable in entry.get("variables", []):
            if variable in rated_now and rated_now[variable] != task:
                raise RunStoreError(
                    f"{out} holds {variable} labels from task '{task}'; this run rates {variable} with "
                    f"'{rated_now[variable]}': one task per variable in a run directory, choose a new --out"
                )
