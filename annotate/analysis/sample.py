"""``annotate sample``: a blinded sample of a run's items for human coders, with known inclusion probabilities.

The coding file has the gold columns (``chat_id``, ``round``, ``variable``, ``value``, ``annotator``)
plus what the model saw, shuffled, without the LLM's labels, and each item's inclusion probability
and the design; once coded it goes straight into ``annotate validate --gold`` and ``annotate estimate
--gold`` (which weights by the probabilities). The rubric text goes beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from annotate.analysis.excerpts import unit_excerpts
from annotate.errors import AnnotateError
from annotate.ingest.model import Chat
from annotate.prompts.library import PromptLibrary
from annotate.runs.manifest import PromptEntry
from annotate.runs.reader import Run
from annotate.vocabulary import Design, values


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


DESIGNS = values(Design)


@dataclass(frozen=True)
class SampleOptions:
    per_variable: int | None = None
    """Items per variable (default: from ``confidence`` and ``margin``)."""
    confidence: float = 0.95
    margin: float = 0.05
    stratify_by: str | None = None
    variables: tuple[str, ...] = ()
    seed: int = 0
    design: str = "stratified"
    """``stratified`` by LLM label (and ``stratify_by``), ``random``, ``confidence`` (the less sure the
    model, the likelier a unit is drawn), or ``disputed`` (a consensus run's disputed units, all of them,
    then a random fill)."""
    floor: float = 0.1
    """``confidence`` design: added to every unit's uncertainty (1 - confidence), so every unit can be drawn."""
    unit: str = "item"
    """``item``: each variable's items drawn apart; ``chat``: chats drawn, every named variable of each coded."""
    chats: int | None = None
    """``unit="chat"``: chats to draw (default: from ``confidence`` and ``margin``)."""


def draw_sample(
    run: Run, chats: list[Chat], library: PromptLibrary | None, options: SampleOptions
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The coding file and its plan. ``chats``: the run's chats (their meta fields stratify; the coders read
    excerpts of them)."""
    run_dir, labels, manifest = run.path, run.labels, run.manifest
    ok = labels[(labels["status"] == "ok") & (labels["repeat"] == 0)].copy()
    known = sorted(set(ok["variable"]))
    for variable in options.variables:
        if variable not in known:
            raise AnnotateError(f"--variable {variable}: the run has no ok labels of it (known: {', '.join(known)})")
    if options.variables:
        ok = ok[ok["variable"].isin(options.variables)]
    meta = {c.chat_id: dict(c.meta) for c in chats}
    by = options.stratify_by
    if by and not chats:
        raise AnnotateError(
            f"--stratify-by {by}: the chats this run read are not where its manifest says (moved or renamed?): "
            "pass them with --transcripts"
        )
    if by and not any(by in fields for fields in meta.values()):
        fields = sorted({name for fields in meta.values() for name in fields})
        raise AnnotateError(f"--stratify-by {by}: no chat has that meta field (known: {', '.join(fields) or 'none'})")
    ok["stratum_meta"] = [str(meta.get(c, {}).get(by, "")) if by else "" for c in ok["chat_id"]]
    if options.design not in DESIGNS:
        raise AnnotateError(f"unknown sampling design '{options.design}' (known: {', '.join(DESIGNS)})")
    rng = np.random.default_rng(options.seed)
    if options.unit == "chat":
        chosen, plan = draw_chats(ok, options, rng, run_dir)
    else:
        chosen, plan = _draw_items(ok, options, rng, run_dir)
    info = {
        "run_id": manifest.run_id,
        "run_dir": str(run_dir),
        "unit": options.unit,
        "design": options.design,
        "seed": options.seed,
        "confidence": options.confidence,
        "margin": options.margin,
        "per_variable": options.per_variable,
        "floor": options.floor if options.design == "confidence" else None,
        "stratified_by": _strata_names(options),
        **plan,
    }
    info["sample"] = sample_id(info)
    return _coding_file(chosen, unit_excerpts(manifest, chats, library), options.design, info["sample"]), info


def sample_id(plan: dict[str, Any]) -> str:
    """A name for one draw, from its plan (run, design, seed, sizes): every item of a coding file carries it, so a
    coded file that mixes two draws is recognised (their inclusion probabilities do not combine by stacking)."""
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()
    return "s" + digest[:10]


def _strata_names(options: SampleOptions) -> list[str]:
    if options.design != "stratified":
        return []
    by = [options.stratify_by] if options.stratify_by else []
    return by if options.unit == "chat" else ["llm label", *by]


def _draw_items(
    ok: pd.DataFrame, options: SampleOptions, rng: np.random.Generator, run_dir: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each variable's items drawn apart, then all shuffled together."""
    picked, plan = [], {}
    for variable, rows in ok.groupby("variable", sort=True):
        n = options.per_variable or sample_size(len(rows), options.confidence, options.margin)
        try:
            chosen, described = _draw(rows.reset_index(drop=True), min(n, len(rows)), options, rng, run_dir)
        except AnnotateError as e:
            raise AnnotateError(f"{variable}: {e}") from None
        picked.append(chosen)
        plan[str(variable)] = {"population": len(rows), "sample": len(chosen), **described}
    chosen = pd.concat(picked, ignore_index=True) if picked else ok.iloc[:0].assign(inclusion_probability=1.0)
    return chosen.iloc[rng.permutation(len(chosen))].reset_index(drop=True), {"variables": plan}


def draw_chats(
    ok: pd.DataFrame, options: SampleOptions, rng: np.random.Generator, run_dir: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Chats drawn under the design (a chat's uncertainty: its units' mean; disputed: any unit disputed), with
    every item of the named variables in each drawn chat, chats in random order and each chat's items together.
    Every chat with an ok label of any named variable can be drawn, so each variable's items keep a positive
    inclusion probability (a chat without a handoff is drawn too, and gives only its other variables)."""
    chats = pd.DataFrame({"chat_id": sorted(set(ok["chat_id"]))})
    if chats.empty:
        raise AnnotateError("the run has no ok labels of the variables named")
    rows = ok
    per_chat = rows.groupby("chat_id").agg(
        confidence=("confidence", lambda c: np.nan if c.isna().any() else float(c.mean())),
        stratum=("stratum_meta", "first"),
        **({"disputed": ("disputed", "max")} if "disputed" in rows.columns else {}),
    )
    per_chat = per_chat.loc[chats["chat_id"]].reset_index()
    n = min(options.chats or sample_size(len(chats), options.confidence, options.margin), len(chats))
    by = options.stratify_by
    strata = per_chat["stratum"].map(lambda g: f"{by}={g}" if by else "all").to_numpy()
    drawn, described = _draw(per_chat, n, options, rng, run_dir, strata)
    probability = dict(zip(drawn["chat_id"], drawn["inclusion_probability"], strict=True))
    order = {chat: i for i, chat in enumerate(rng.permutation(drawn["chat_id"].to_numpy()))}
    chosen = rows[rows["chat_id"].isin(probability)].assign(
        inclusion_probability=lambda r: r["chat_id"].map(probability)
    )
    chosen = chosen.assign(order=chosen["chat_id"].map(order)).sort_values(["order", "variable", "round"])
    plan = {
        "chats": {"population": len(chats), "sample": len(drawn), **described},
        "variables": {
            str(v): {"population": int((rows["variable"] == v).sum()), "sample": int((chosen["variable"] == v).sum())}
            for v in sorted(set(ok["variable"]))
        },
    }
    return chosen.drop(columns="order").reset_index(drop=True), plan


def _draw(
    rows: pd.DataFrame,
    n: int,
    options: SampleOptions,
    rng: np.random.Generator,
    run_dir: Path,
    strata: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The drawn rows (one variable's items, or chats), each with the probability it had of being drawn;
    ``strata`` replaces the LLM label (and meta field) as the strata of the stratified design."""
    design = options.design
    confidence = disputed = None
    if design == "confidence":
        if rows["confidence"].isna().any():
            raise AnnotateError(
                f"{run_dir}: {int(rows['confidence'].isna().sum())} labels have no probabilities (the engine gave "
                "none), so the confidence design cannot weigh them: use --design random or stratified"
            )
        confidence = rows["confidence"].to_numpy(dtype=float)
    if design == "disputed":
        if "disputed" not in rows.columns:
            raise AnnotateError(
                f"{run_dir}: --design disputed needs a consensus run (annotate consensus RUN_A RUN_B ...)"
            )
        disputed = rows["disputed"].astype(bool).to_numpy()
    if design == "stratified" and strata is None:
        label = options.stratify_by
        strata = np.array(
            [
                f"llm={v}" + (f", {label}={g}" if label else "")
                for v, g in zip(rows["value"], rows["stratum_meta"], strict=True)
            ]
        )
    drawn = draw_units(
        design, len(rows), n, rng, strata=strata, confidence=confidence, disputed=disputed, floor=options.floor
    )
    return rows.iloc[drawn.index].assign(inclusion_probability=drawn.probability), drawn.described


@dataclass(frozen=True)
class Drawn:
    index: np.ndarray
    """Positions of the drawn units."""
    probability: np.ndarray
    """Each drawn unit's inclusion probability (every unit of the population had a positive one)."""
    described: dict[str, Any]


MIN_FILL_SHARE = 1 / 3
"""``disputed`` design: the share of the sample kept for undisputed units, so that each can be drawn."""


def draw_units(
    design: str,
    population: int,
    n: int,
    rng: np.random.Generator,
    *,
    strata: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    disputed: np.ndarray | None = None,
    floor: float = 0.1,
) -> Drawn:
    """Draw ``n`` of the units under ``design``; a design that would give some unit no chance is refused."""
    if design == "random":
        index = np.sort(rng.choice(population, size=n, replace=False))
        return Drawn(index, np.full(n, n / population), {})
    if design == "confidence" and confidence is not None:
        if not floor > 0:
            raise AnnotateError(
                f"--floor {floor:g}: the confidence design needs a floor above 0, or units the model is sure of "
                "could never be drawn"
            )
        probability = inclusion_probabilities(floor + (1 - confidence), n)
        index = systematic_pps(probability, rng)
        return Drawn(index, probability[index], {})
    if design == "disputed" and disputed is not None:
        return _disputed(disputed, n, rng)
    if design == "stratified" and strata is not None:
        return _stratified(strata, n, rng)
    raise AnnotateError(f"unknown sampling design '{design}' (known: {', '.join(DESIGNS)})")


def _stratified(strata: np.ndarray, n: int, rng: np.random.Generator) -> Drawn:
    names, index = np.unique(strata, return_inverse=True)
    sizes = dict(enumerate(np.bincount(index).tolist()))
    if n < len(names):
        raise AnnotateError(
            f"a stratified sample of {n} cannot reach all {len(names)} strata ({'; '.join(map(str, names[:3]))}"
            f"{' ...' if len(names) > 3 else ''}): ask for at least {len(names)} items or use --design random"
        )
    alloc = allocate(sizes, n)
    drawn, probability = [], []
    for stratum, k in alloc.items():
        members = np.flatnonzero(index == stratum)
        drawn.append(rng.choice(members, size=k, replace=False))
        probability.append(np.full(k, k / len(members)))
    order = np.argsort(np.concatenate(drawn))
    described = {str(names[s]): int(k) for s, k in alloc.items()}
    return Drawn(np.concatenate(drawn)[order], np.concatenate(probability)[order], {"strata": described})


def _disputed(disputed: np.ndarray, n: int, rng: np.random.Generator) -> Drawn:
    """Disputed units first, all of them when the size allows, but never less than a third of the sample for the
    undisputed ones: every unit keeps a positive inclusion probability."""
    hot, rest = np.flatnonzero(disputed), np.flatnonzero(~disputed)
    fill = min(len(rest), max(n - len(hot), math.ceil(MIN_FILL_SHARE * n) if len(rest) else 0))
    take = min(len(hot), n - fill)
    parts = [rng.choice(hot, size=take, replace=False), rng.choice(rest, size=fill, replace=False)]
    probability = [np.full(take, take / max(len(hot), 1)), np.full(fill, fill / max(len(rest), 1))]
    order = np.argsort(np.concatenate(parts))
    described = {"disputed": len(hot), "disputed drawn": int(take), "random fill": int(fill)}
    return Drawn(np.concatenate(parts)[order], np.concatenate(probability)[order], described)


def inclusion_probabilities(size: np.ndarray, n: int) -> np.ndarray:
    """Probabilities proportional to ``size`` that sum to ``n``, none above 1 (the excess spread over the rest)."""
    probability = np.zeros(len(size))
    capped = np.zeros(len(size), dtype=bool)
    while True:
        rest = n - capped.sum()
        probability[~capped] = rest * size[~capped] / size[~capped].sum() if rest > 0 else 0.0
        probability[capped] = 1.0
        over = (probability > 1) & ~capped
        if not over.any():
            return probability
        capped |= over


def systematic_pps(probability: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic sampling in a random order: exactly round(sum) units, unit i drawn with ``probability[i]``."""
    order = rng.permutation(len(probability))
    cumulative = np.cumsum(probability[order])
    n = round(float(cumulative[-1])) if len(order) else 0
    if n == 0:
        return np.array([], dtype=int)
    cumulative[-1] = n  # rounding must not push the last point past the end
    points = rng.uniform() + np.arange(n)
    return np.sort(order[np.searchsorted(cumulative, points, side="right")])


def _coding_file(chosen: pd.DataFrame, seen: Any, design: str, sample: str) -> pd.DataFrame:
    def excerpt(part: str) -> list[str]:
        return [
            seen.get((t, c, None if pd.isna(r) else int(r)), {}).get(part, "")
            for t, c, r in zip(chosen["task"], chosen["chat_id"], chosen["round"], strict=True)
        ]

    return pd.DataFrame(
        {
            "item": [f"i{i + 1:05d}" for i in range(len(chosen))],
            "chat_id": chosen["chat_id"],
            "round": chosen["round"].astype("Int64"),
            "variable": chosen["variable"],
            "value": "",
            "annotator": "",
            "context": excerpt("context"),
            "target": excerpt("target"),
            "inclusion_probability": chosen["inclusion_probability"].round(8),
            "design": design,
            "sample": sample,
        }
        | ({"disputed": chosen["disputed"].astype(bool).to_numpy()} if "disputed" in chosen.columns else {})
    )


def rubric_text(library: PromptLibrary, manifest_prompts: dict[str, PromptEntry], variables: set[str]) -> str:
    """The coding instructions: each variable's rubric, as the prompts of the run used it."""
    parts = [
        "# Coding instructions",
        "",
        "Give each row's `value` from the scale below and put your name in `annotator`.",
        "",
    ]
    for task, entry in manifest_prompts.items():
        combined = library.get(task, entry.version).rubric
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
    """The files a sample is written to."""

    coding: Path
    """The blinded, shuffled items to code (gold format)."""
    instructions: Path
    """The rubric text coders follow."""
    plan: Path
    """How the sample was drawn (json)."""
    info: dict[str, Any]
