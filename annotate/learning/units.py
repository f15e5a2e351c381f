"""The units a learned labeller labels, with the text the model saw for each (after redaction and the context fit).

A unit is one (chat, round, variable) of the source: chat-level tasks give their post-handoff or first-round
unit; per-round variables give each round's customer turn with what came before it as context, whatever way the
run asked for them (one request per round, or one per chat). The source is a run directory, or plain transcript
files read as ``annotate run`` reads them with its defaults (no LLM labels at all).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from annotate.errors import AnnotateError
from annotate.ingest.model import Chat
from annotate.prompts.library import PromptLibrary
from annotate.prompts.rubrics import UnitKind
from annotate.prompts.units import units_for
from annotate.runs.manifest import InputFile, PromptEntry, RunManifest, file_entry
from annotate.runs.reader import Run
from annotate.runs.rows import LABEL_COLUMNS

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
    """Columns: chat_id, round, target, context, target_turns, truncation, prompt_version, prompt_hash,
    llm_probs (the source run's distribution as a dict, or None), llm_value (its first repeat's label, or None)."""

    @property
    def keys(self) -> list[tuple[str, int | None]]:
        rounds = self.table["round"]
        return [(c, None if pd.isna(r) else int(r)) for c, r in zip(self.table["chat_id"], rounds, strict=True)]


@dataclass(frozen=True)
class Rated:
    """How the source rates one variable: its task, the prompt version, the unit the learner reads, the scale."""

    task: str
    entry: PromptEntry
    kind: UnitKind
    scale: str
    categories: list[int]


def variable_units(run: Run, library: PromptLibrary, variables: list[str]) -> dict[str, VariableUnits]:
    """Per variable, every unit of the source's chats with its texts (and the source's LLM label, if any)."""
    rated = rated_variables(run, library)
    chats = run.chats()
    if not chats:
        where = ", ".join(i.path for i in run.manifest.inputs)
        raise AnnotateError(f"{run.path}: its transcripts are not where the manifest says ({where})")
    found = {}
    for variable in variables:
        if variable not in rated:
            known = ", ".join(sorted(rated))
            raise AnnotateError(f"{run.path}: no task of the run rates {variable} (it rates: {known})")
        how = rated[variable]
        labels = run.labels[(run.labels["variable"] == variable) & (run.labels["status"] == "ok")]
        table = _table(chats, how, run.manifest.options.max_chars, labels)
        if table.empty:
            raise AnnotateError(f"{run.path}: no chat has a unit of {variable} (task {how.task})")
        found[variable] = VariableUnits(variable, how.task, how.scale, how.categories, table)
    return found


def rated_variables(run: Run, library: PromptLibrary) -> dict[str, Rated]:
    """Per variable: the run's task that rates it, with the rubric's scale (one task per variable in a run)."""
    found = {}
    for task, entry in run.manifest.prompts.items():
        rubric = library.get(task, entry.version).rubric
        kind: UnitKind = "round" if rubric.unit == "chat_rounds" else rubric.unit
        for name, var in rubric.variables.items():
            found[name] = Rated(task, entry, kind, var.scale, sorted(var.values))
    return found


def _table(chats: list[Chat], how: Rated, max_chars: int, labels: pd.DataFrame) -> pd.DataFrame:
    llm = {
        (str(c), None if pd.isna(r) else int(r)): unit
        for (c, r), unit in labels.groupby(["chat_id", "round"], dropna=False, sort=False)
    }
    records = []
    for chat in chats:
        for unit in units_for(chat, how.task, how.kind, max_chars):
            rows = llm.get((unit.chat_id, unit.round))
            records.append(
                {
                    "chat_id": unit.chat_id,
                    "round": unit.round,
                    "target": "\n".join(t.text for t in unit.target),
                    "context": "\n".join(t.text for t in unit.context[-CONTEXT_TURNS:]),
                    "target_turns": len(unit.target),
                    "truncation": unit.truncation,
                    "prompt_version": how.entry.version,
                    "prompt_hash": how.entry.hash,
                    "llm_probs": None if rows is None else _mean_distribution(rows),
                    "llm_value": None if rows is None else _first_value(rows),
                }
            )
    table = pd.DataFrame.from_records(records)
    if not table.empty:
        table["round"] = table["round"].astype("Int64")
    return table


def _first_value(unit: pd.DataFrame) -> int | None:
    first = unit[unit["repeat"] == 0]
    return None if first.empty else int(first["value"].iloc[0])


def _mean_distribution(unit: pd.DataFrame) -> dict[int, float]:
    """The source run's distribution over values for the unit, mean over its ok repeats (a chosen label counts as
    certain when the engine gave no probabilities)."""
    total: dict[int, float] = {}
    for value, probs in zip(unit["value"], unit["probs"], strict=True):
        parsed = {int(k): float(v) for k, v in json.loads(probs).items()} if isinstance(probs, str) and probs else None
        for v, p in (parsed or {int(value): 1.0}).items():
            total[v] = total.get(v, 0.0) + p / len(unit)
    return total


def transcripts_as_source(paths: list[Path], library: PromptLibrary, family: str = "en") -> Run:
    """Plain transcript files as a source with no labels: the chats as ``annotate run`` reads them by default, and
    the tasks (newest prompt of ``family``) it would run without ``--task``."""
    for path in paths:
        if not path.is_file():
            raise AnnotateError(f"{path}: neither a run directory nor a transcript file")
    prompts = {}
    for task in library.default_tasks():
        version = library.get(task, family=family)
        prompts[task] = PromptEntry(
            version=version.version, hash=version.content_hash, variables=list(version.rubric.variables)
        )
    manifest = RunManifest(
        run_id="transcripts",
        status="complete",
        backend="none",
        prompts=prompts,
        inputs=[InputFile.model_validate(file_entry(p)) for p in paths],
    )
    return Run(paths[0], pd.DataFrame(columns=LABEL_COLUMNS), manifest)
