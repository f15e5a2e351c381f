"""For a run read back: each variable's scale (from the rubric its prompt used) and what the model saw for each
unit (rebuilt from the run's input files), for reports and coding files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from annotate.errors import AnnotateError
from annotate.ingest.model import Chat
from annotate.prompts.library import PromptLibrary
from annotate.prompts.rubrics import UnitKind
from annotate.prompts.units import SPEAKER_NAMES, units_for
from annotate.runs.manifest import RunManifest

Excerpts = dict[tuple[str, str, int | None], dict[str, str]]
"""(task, chat_id, round) -> {"context", "target"}: what the model saw, shortened."""


@dataclass(frozen=True)
class VariableInfo:
    """A variable's task, scale and allowed values, from the rubric the run's prompt used."""

    task: str
    scale: str
    categories: list[int]
    labels: dict[int, str]


def variable_info(
    labels: pd.DataFrame, manifest: RunManifest, library: PromptLibrary | None
) -> dict[str, VariableInfo]:
    """Scale and allowed values of every variable in a run; without its rubric, the values seen (nominal)."""
    info: dict[str, VariableInfo] = {}
    for task, entry in manifest.prompts.items():
        rubric = _rubric(library, task, entry.version)
        if rubric is None:
            continue
        for name, var in rubric.variables.items():
            info[name] = VariableInfo(task, var.scale, sorted(var.values), {k: v.label for k, v in var.values.items()})
    for name, group in labels[labels["status"] == "ok"].groupby("variable"):
        if name not in info:
            info[str(name)] = VariableInfo(str(group["task"].iloc[0]), "nominal", sorted(group["value"].unique()), {})
    return info


def _rubric(library: PromptLibrary | None, task: str, version: str) -> Any:
    """The rubric a run used, or None when this library no longer has that version."""
    if library is None:
        return None
    try:
        return library.get(task, version).rubric
    except AnnotateError:
        return None


def unit_excerpts(manifest: RunManifest, chats: list[Chat], library: PromptLibrary | None) -> Excerpts:
    """What the model saw for each unit, shortened, rebuilt from the run's chats (none: no excerpts)."""
    if library is None or not chats:
        return {}
    max_chars = manifest.options.max_chars
    found: Excerpts = {}
    for task, entry in manifest.prompts.items():
        rubric = _rubric(library, task, entry.version)
        if rubric is None:
            continue
        kind: UnitKind = "round" if rubric.unit == "chat_rounds" else rubric.unit  # show the round each label rated
        for chat in chats:
            for unit in units_for(chat, task, kind, max_chars):
                found[(task, unit.chat_id, unit.round)] = {
                    "context": _shorten(_turns(unit.context[-3:]), 400),
                    "target": _shorten(_turns(unit.target), 700),
                }
    return found


def _turns(turns: Any) -> str:
    return " | ".join(f"{SPEAKER_NAMES[t.speaker]}: {t.text}" for t in turns)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
