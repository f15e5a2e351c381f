"""The units a learned labeller labels, with the text the model saw for each (after redaction and the context fit).

A unit is one (chat, round, variable) of the source run. Chat-level tasks give their post-handoff or first-round
unit; per-round variables give each round's customer turn with what came before it as context, whatever way the
run asked for them (one request per round, or one per chat).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from annotate.errors import AnnotateError
from annotate.prompts.library import PromptLibrary
from annotate.prompts.rubrics import UnitKind
from annotate.prompts.units import units_for
from annotate.runs.reader import Run

CONTEXT_TURNS = 3
"""Context turns kept as the unit's context text: the last few before the target."""


@dataclass(frozen=True)
class VariableUnits:
    """Every unit of one variable, in a fixed order, with its texts and the source run's label."""

    variable: str
    task: str
    scale: str
    categories: list[int]
    table: pd.DataFrame
    """Columns: chat_id, round, target, context, target_turns, prompt_version, prompt_hash, truncation,
    llm_probs (the source run's distribution as a dict, or None), llm_value (its first repeat's label, or None)."""

    @property
    def keys(self) -> list[tuple[str, int | None]]:
        return [
            (c, None if pd.isna(r) else int(r)) for c, r in zip(self.table["chat_id"], self.table["round"], strict=True)
        ]


def variable_units(run: Run, library: PromptLibrary, variables: list[str]) -> dict[str, VariableUnits]:
    """Per variable, the run's units (every unit the run has a row for, ok or not) with their texts."""
    scales = _scales(run, library)
    labels = run.labels[(run.labels["status"] != "skipped") & run.labels["variable"].isin(variables)]
    chats = {chat.chat_id: chat for chat in run.chats()}
    if not chats:
        where = ", ".join(i.path for i in run.manifest.inputs)
        raise AnnotateError(f"{run.path}: its transcripts are not where the manifest says ({where})")
    found = {}
    for variable in variables:
        rows = labels[labels["variable"] == variable]
        if rows.empty:
            known = ", ".join(sorted(set(run.labels["variable"]) - {""}))
            raise AnnotateError(f"{run.path}: the run has no units of {variable} (it has: {known})")
        task = str(rows["task"].iloc[0])
        kind, scale, categories = scales[task][variable]
        texts = _texts(chats, task, kind, run.manifest.options.max_chars)
        found[variable] = VariableUnits(variable, task, scale, categories, _table(rows, texts))
    return found


def _scales(run: Run, library: PromptLibrary) -> dict[str, dict[str, tuple[UnitKind, str, list[int]]]]:
    """Per task and variable: the unit kind the learner reads, the scale and its values, from the run's rubric."""
    found: dict[str, dict[str, tuple[UnitKind, str, list[int]]]] = {}
    for task, entry in run.manifest.prompts.items():
        rubric = library.get(task, entry.version).rubric
        kind: UnitKind = "round" if rubric.unit == "chat_rounds" else rubric.unit
        found[task] = {name: (kind, var.scale, sorted(var.values)) for name, var in rubric.variables.items()}
    return found


def _texts(chats: dict, task: str, kind: UnitKind, max_chars: int) -> dict[tuple[str, int | None], dict]:
    found = {}
    for chat in chats.values():
        for unit in units_for(chat, task, kind, max_chars):
            found[(unit.chat_id, unit.round)] = {
                "target": "\n".join(t.text for t in unit.target),
                "context": "\n".join(t.text for t in unit.context[-CONTEXT_TURNS:]),
                "target_turns": len(unit.target),
                "truncation": unit.truncation,
            }
    return found


def _table(rows: pd.DataFrame, texts: dict[tuple[str, int | None], dict]) -> pd.DataFrame:
    """One row per unit (repeats of the source run averaged into one distribution)."""
    records = []
    for (chat_id, round_number), unit in rows.groupby(["chat_id", "round"], dropna=False, sort=True):
        key = (str(chat_id), None if pd.isna(round_number) else int(round_number))
        text = texts.get(key)
        if text is None:
            continue  # a unit the replayed chats no longer have (the run's reader names such changes)
        records.append(
            {
                "chat_id": key[0],
                "round": key[1],
                **text,
                "prompt_version": str(unit["prompt_version"].iloc[0]),
                "prompt_hash": str(unit["prompt_hash"].iloc[0]),
                "llm_probs": _mean_distribution(unit),
                "llm_value": _first_value(unit),
            }
        )
    table = pd.DataFrame.from_records(records)
    table["round"] = table["round"].astype("Int64")
    return table


def _first_value(unit: pd.DataFrame) -> int | None:
    ok = unit[(unit["status"] == "ok") & (unit["repeat"] == 0)]
    return None if ok.empty else int(ok["value"].iloc[0])


def _mean_distribution(unit: pd.DataFrame) -> dict[int, float] | None:
    """The source run's distribution over values for the unit (mean over repeats; a chosen label counts as
    certain when the engine gave no probabilities); None when no repeat has an ok label."""
    ok = unit[unit["status"] == "ok"]
    if ok.empty:
        return None
    total: dict[int, float] = {}
    for value, probs in zip(ok["value"], ok["probs"], strict=True):
        parsed = {int(k): float(v) for k, v in json.loads(probs).items()} if isinstance(probs, str) and probs else None
        for v, p in (parsed or {int(value): 1.0}).items():
            total[v] = total.get(v, 0.0) + p / len(ok)
    return total
