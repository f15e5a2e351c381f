"""``annotate validate``: a run's labels against human gold labels.

Labels and gold are joined on (chat_id, round, variable). Whatever does not match is reported,
not dropped: gold items the run never labelled, and items whose label is a failure row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotate import agreement as ag
from annotate.gold import consensus, read_gold
from annotate.prompts import PromptLibrary
from annotate.store import load_run
from annotate.tasks import SPEAKER_NAMES, units_for
from annotate.transcripts import Chat, read_transcripts

KEY = ["chat_id", "round", "variable"]


@dataclass(frozen=True)
class VariableInfo:
    task: str
    scale: str
    categories: list[int]
    labels: dict[int, str]


def variable_info(
    labels: pd.DataFrame, manifest: dict[str, Any], library: PromptLibrary | None
) -> dict[str, VariableInfo]:
    """Scale and allowed values of every variable in a run, from the rubric its prompts used."""
    info: dict[str, VariableInfo] = {}
    for task, entry in manifest.get("prompts", {}).items():
        rubric = None
        if library is not None:
            try:
                rubric = library.get(task, entry["version"]).rubric
            except Exception:
                rubric = None
        if rubric is None:
            continue
        for name, var in rubric.variables.items():
            info[name] = VariableInfo(task, var.scale, sorted(var.values), {k: v.label for k, v in var.values.items()})
    for name, group in labels[labels["status"] == "ok"].groupby("variable"):
        if name not in info:  # no rubric at hand: fall back to the values seen
            info[str(name)] = VariableInfo(str(group["task"].iloc[0]), "nominal", sorted(group["value"].unique()), {})
    return info


def validate(
    run_dir: Path,
    gold_path: Path,
    library: PromptLibrary | None = None,
    transcripts: list[Path] | None = None,
    repeat: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    labels, manifest = load_run(run_dir)
    labels = labels[(labels["status"] != "skipped") & (labels["repeat"] == repeat)].copy()
    gold = read_gold(gold_path)
    info = variable_info(labels, manifest, library)
    annotators = sorted(gold["annotator"].unique())
    truth = consensus(gold) if len(annotators) > 1 else gold[[*KEY, "value"]]

    joined = truth.merge(labels, on=KEY, how="left", suffixes=("_gold", ""), indicator=True)
    never = joined[joined["_merge"] == "left_only"]
    failed = joined[(joined["_merge"] == "both") & (joined["status"] != "ok")]
    ok = joined[(joined["_merge"] == "both") & (joined["status"] == "ok")].copy()
    ok["value"] = ok["value"].astype(int)
    extra = labels[labels["status"] == "ok"].merge(truth[KEY], on=KEY, how="left", indicator=True)
    excerpts = unit_excerpts(manifest, transcripts, library)

    variables = []
    for variable, rows in ok.groupby("variable", sort=True):
        meta = info.get(str(variable)) or VariableInfo(
            str(rows["task"].iloc[0]), "nominal", sorted(set(rows["value"]) | set(rows["value_gold"])), {}
        )
        variables.append(_variable_report(str(variable), rows, meta, gold, annotators, n_boot, seed))

    disagreements = [
        {
            "variable": r.variable,
            "task": r.task,
            "chat_id": r.chat_id,
            "round": None if pd.isna(r.round) else int(r.round),
            "gold": int(r.value_gold),
            "llm": int(r.value),
            "direction": "over" if r.value > r.value_gold else "under",
            "truncation": r.truncation or "",
            **excerpts.get((r.task, r.chat_id, None if pd.isna(r.round) else int(r.round)), {}),
        }
        for r in ok[ok["value"] != ok["value_gold"]].itertuples()
    ]
    return {
        "run": {k: manifest.get(k) for k in ("run_id", "backend", "model", "sampling", "prompts")}
        | {"dir": str(run_dir)},
        "gold": {
            "path": str(gold_path),
            "annotators": annotators,
            "items": len(truth),
            "consensus": "majority; ties go to the lower median" if len(annotators) > 1 else None,
        },
        "repeat": repeat,
        "bootstrap": {"resamples": n_boot, "unit": "chat", "seed": seed},
        "variables": variables,
        "unmatched": {
            "gold_not_labelled": _items(never),
            "failed_labels": [{**item, "status": s} for item, s in zip(_items(failed), failed["status"], strict=True)],
            "labels_without_gold": int((extra["_merge"] == "left_only").sum()),
        },
        "disagreements": disagreements,
    }


def _variable_report(
    variable: str,
    rows: pd.DataFrame,
    meta: VariableInfo,
    gold: pd.DataFrame,
    annotators: list[str],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    human = rows["value_gold"].astype(int).tolist()
    llm = rows["value"].tolist()
    cats = meta.categories
    point = ag.pair_statistics(human, llm, cats, meta.scale)
    intervals = ag.pair_bootstrap(human, llm, rows["chat_id"].tolist(), cats, meta.scale, n_boot, seed)
    report: dict[str, Any] = {
        "variable": variable,
        "task": meta.task,
        "scale": meta.scale,
        "categories": cats,
        "category_labels": {str(k): v for k, v in meta.labels.items()},
        "n": len(rows),
        "chats": int(rows["chat_id"].nunique()),
        **{k: _num(v) for k, v in point.items() if k != "n"},
        "ci95": {k: [_num(lo), _num(hi)] for k, (lo, hi) in intervals.items()},
        "prevalence_gold": ag.prevalence(human, cats),
        "prevalence_llm": ag.prevalence(llm, cats),
        "confusion": {"rows": "gold", "columns": "llm", "matrix": ag.confusion(human, llm, cats)},
        "per_class": ag.per_class(human, llm, cats),
    }
    if len(annotators) > 1:
        report["by_annotator"] = _by_annotator(variable, rows, gold, annotators, meta)
    return report


def _by_annotator(
    variable: str, rows: pd.DataFrame, gold: pd.DataFrame, annotators: list[str], meta: VariableInfo
) -> dict[str, Any]:
    """The LLM against each annotator, and human against human: the ceiling the LLM is judged by."""
    mine = gold[gold["variable"] == variable]
    wide = mine.pivot_table(
        index=["chat_id", "round"], columns="annotator", values="value", dropna=False, aggfunc="first"
    )
    llm = rows.set_index(["chat_id", "round"])["value"]
    wide = wide[wide.index.isin(llm.index)]  # the ceiling is measured on the same items as the LLM
    result: dict[str, Any] = {"llm_vs": {}, "human_pairs": {}}
    for name in annotators:
        if name not in wide:
            continue
        both = pd.concat([wide[name], llm], axis=1, join="inner").dropna()
        result["llm_vs"][name] = _clean(
            ag.pair_statistics(
                both.iloc[:, 0].astype(int).tolist(), both.iloc[:, 1].astype(int).tolist(), meta.categories, meta.scale
            )
        )
    for i, first in enumerate(annotators):
        for second in annotators[i + 1 :]:
            if first in wide and second in wide:
                both = wide[[first, second]].dropna()
                result["human_pairs"][f"{first} vs {second}"] = _clean(
                    ag.pair_statistics(
                        both[first].astype(int).tolist(), both[second].astype(int).tolist(), meta.categories, meta.scale
                    )
                )
    kappas = [p["cohen_kappa"] for p in result["human_pairs"].values() if p["cohen_kappa"] is not None]
    result["human_mean_kappa"] = float(np.mean(kappas)) if kappas else None
    return result


def unit_excerpts(
    manifest: dict[str, Any], transcripts: list[Path] | None, library: PromptLibrary | None
) -> dict[tuple[str, str, int | None], dict[str, str]]:
    """What the model saw for each unit, shortened, rebuilt from the run's input files."""
    chats = run_chats(manifest, transcripts)
    if library is None or not chats:
        return {}
    max_chars = int(manifest.get("options", {}).get("max_chars", 12000))
    found: dict[tuple[str, str, int | None], dict[str, str]] = {}
    for task, entry in manifest.get("prompts", {}).items():
        try:
            kind = library.get(task, entry["version"]).rubric.unit
        except Exception:
            continue
        if kind == "chat_rounds":
            kind = "round"  # each label rated one round: show that round's customer turn
        for chat in chats:
            for unit in units_for(chat, task, kind, max_chars):
                found[(task, unit.chat_id, unit.round)] = {
                    "context": _shorten(
                        " | ".join(f"{SPEAKER_NAMES[t.speaker]}: {t.text}" for t in unit.context[-3:]), 400
                    ),
                    "target": _shorten(" | ".join(f"{SPEAKER_NAMES[t.speaker]}: {t.text}" for t in unit.target), 700),
                }
    return found


def run_chats(manifest: dict[str, Any], transcripts: list[Path] | None = None) -> list[Chat]:
    """The chats a run read: from ``transcripts`` if given, else from the input paths in its manifest."""
    paths = transcripts or [Path(entry["path"]) for entry in manifest.get("inputs", [])]
    if not paths or not all(p.is_file() for p in paths):
        return []
    return read_transcripts(paths).chats


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _items(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"chat_id": r.chat_id, "round": None if pd.isna(r.round) else int(r.round), "variable": r.variable}
        for r in frame.itertuples()
    ]


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _clean(stats: dict[str, float]) -> dict[str, float | None]:
    return {k: _num(v) for k, v in stats.items()}
