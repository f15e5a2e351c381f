"""``annotate sample``: a blinded, stratified sample of a run's items for human coders.

The coding file has the gold columns (``chat_id``, ``round``, ``variable``, ``value``, ``annotator``)
plus what the model saw, shuffled, without the LLM's labels; once coded it goes straight into
``annotate validate --gold``. The rubric text goes beside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from annotate.labelling.library import PromptLibrary
from annotate.labelling.runs import load_run, run_chats, unit_excerpts
from annotate.labelling.store import write_csv


def sample_size(population: int, confidence: float = 0.95, margin: float = 0.05, proportion: float = 0.5) -> int:
    """Items needed to estimate a proportion within ``margin`` at ``confidence``, with the finite-population
    correction: n0 = z^2 p (1 - p) / e^2, n = n0 / (1 + (n0 - 1) / N)."""
    if population <= 0:
        return 0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    n0 = z * z * proportion * (1 - proportion) / (margin * margin)
    return min(population, math.ceil(n0 / (1 + (n0 - 1) / population)))


def allocate(sizes: dict[Any, int], total: int) -> dict[Any, int]:
    """Proportional allocation over strata (largest remainder), at least one per stratum when possible."""
    population = sum(sizes.values())
    total = min(total, population)
    if total == 0:
        return dict.fromkeys(sizes, 0)
    exact = {k: total * n / population for k, n in sizes.items()}
    alloc = {k: math.floor(v) for k, v in exact.items()}
    if total >= len(sizes):
        for k in sizes:
            alloc[k] = max(alloc[k], 1 if sizes[k] else 0)
    while sum(alloc.values()) > total:
        biggest = max((k for k in alloc if alloc[k] > 1), key=lambda k: alloc[k] - exact[k])
        alloc[biggest] -= 1
    for k in sorted(sizes, key=lambda k: exact[k] - alloc[k], reverse=True):
        if sum(alloc.values()) >= total:
            break
        if alloc[k] < sizes[k]:
            alloc[k] += 1
    return alloc


def draw_sample(
    run_dir: Path,
    library: PromptLibrary | None,
    per_variable: int | None = None,
    confidence: float = 0.95,
    margin: float = 0.05,
    stratify_by: str | None = None,
    variables: list[str] | None = None,
    seed: int = 0,
    transcripts: list[Path] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    labels, manifest = load_run(run_dir)
    ok = labels[(labels["status"] == "ok") & (labels["repeat"] == 0)].copy()
    if variables:
        ok = ok[ok["variable"].isin(variables)]
    chats = run_chats(manifest, transcripts)
    meta = {c.chat_id: dict(c.meta) for c in chats}
    ok["stratum_meta"] = [str(meta.get(c, {}).get(stratify_by, "")) if stratify_by else "" for c in ok["chat_id"]]
    rng = np.random.default_rng(seed)
    picked = []
    plan: dict[str, Any] = {}
    for variable, rows in ok.groupby("variable", sort=True):
        n = per_variable if per_variable is not None else sample_size(len(rows), confidence, margin)
        strata = rows.groupby(["value", "stratum_meta"]).size().to_dict()
        alloc = allocate(strata, n)
        for (value, group), k in alloc.items():
            members = rows[(rows["value"] == value) & (rows["stratum_meta"] == group)]
            picked.append(members.iloc[rng.choice(len(members), size=k, replace=False)])
        plan[str(variable)] = {
            "population": len(rows),
            "sample": int(sum(alloc.values())),
            "strata": {
                f"llm={v}" + (f", {stratify_by}={g}" if stratify_by else ""): int(k) for (v, g), k in alloc.items()
            },
        }
    chosen = pd.concat(picked, ignore_index=True) if picked else ok.iloc[:0]
    chosen = chosen.iloc[rng.permutation(len(chosen))].reset_index(drop=True)
    seen = unit_excerpts(manifest, transcripts, library)
    coding = pd.DataFrame(
        {
            "item": [f"i{i + 1:05d}" for i in range(len(chosen))],
            "chat_id": chosen["chat_id"],
            "round": chosen["round"].astype("Int64"),
            "variable": chosen["variable"],
            "value": "",
            "annotator": "",
            "context": [
                seen.get((t, c, None if pd.isna(r) else int(r)), {}).get("context", "")
                for t, c, r in zip(chosen["task"], chosen["chat_id"], chosen["round"], strict=True)
            ],
            "target": [
                seen.get((t, c, None if pd.isna(r) else int(r)), {}).get("target", "")
                for t, c, r in zip(chosen["task"], chosen["chat_id"], chosen["round"], strict=True)
            ],
        }
    )
    info = {
        "run_id": manifest.get("run_id"),
        "run_dir": str(run_dir),
        "seed": seed,
        "confidence": confidence,
        "margin": margin,
        "per_variable": per_variable,
        "stratified_by": ["llm label", *([stratify_by] if stratify_by else [])],
        "variables": plan,
    }
    return coding, info


def rubric_text(library: PromptLibrary, manifest_prompts: dict[str, Any], variables: set[str]) -> str:
    """The coding instructions: each variable's rubric, as the prompts of the run used it."""
    parts = [
        "# Coding instructions",
        "",
        "Give each row's `value` from the scale below and put your name in `annotator`.",
        "",
    ]
    for task, entry in manifest_prompts.items():
        combined = library.get(task, entry["version"]).rubric
        for rubric, name, var in ((r, n, v) for r in combined.parts or [combined] for n, v in r.variables.items()):
            if name not in variables:
                continue
            parts += [f"## {name} ({rubric.title})", "", rubric.measures.strip(), "", var.description, ""]
            parts += [f"- **{value}** {point.label}: {point.definition.strip()}" for value, point in var.values.items()]
            parts += ["", "Rules:"] + [f"- {rule}" for rule in rubric.decision_rules]
            parts += [f"- {rubric.thin_evidence.strip()}"] + [f"- {case}" for case in rubric.edge_cases] + [""]
    return "\n".join(parts)


@dataclass(frozen=True)
class CodingFiles:
    coding: Path
    """The blinded, shuffled items to code (gold format)."""
    instructions: Path
    """The rubric text coders follow."""
    plan: Path
    """How the sample was drawn (json)."""
    info: dict[str, Any]


def write_sample(
    run_dir: Path,
    out: Path,
    library: PromptLibrary,
    per_variable: int | None = None,
    confidence: float = 0.95,
    margin: float = 0.05,
    stratify_by: str | None = None,
    variables: list[str] | None = None,
    seed: int = 0,
    transcripts: list[Path] | None = None,
) -> CodingFiles:
    """Draw the sample and write the coding file, its coding instructions and the sampling plan beside it."""
    coding, info = draw_sample(
        run_dir, library, per_variable, confidence, margin, stratify_by, variables, seed, transcripts
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(coding, out)
    _, manifest = load_run(run_dir)
    files = CodingFiles(out, out.with_suffix(".rubric.md"), out.with_suffix(".sample.json"), info)
    files.instructions.write_text(rubric_text(library, manifest.get("prompts", {}), set(coding["variable"])))
    files.plan.write_text(json.dumps(info, indent=2) + "\n")
    return files
