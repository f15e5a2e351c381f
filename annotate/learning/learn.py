"""``annotate learn``: one learned labeller per coded variable, cross-fitted by chat, as the rows of a run.

Also the learning curve's raw material: the cross-validated predictions of the coded units when the learner
sees 25%, 50%, 75% and all of the coded chats (analysis/learning_curve.py turns them into κ with intervals).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from annotate import __version__
from annotate.errors import AnnotateError
from annotate.learning.features import DEFAULT_FEATURES, build_features, check_features
from annotate.learning.learner import LEARNER, cross_fit
from annotate.learning.units import VariableUnits, variable_units
from annotate.prompts.library import PromptLibrary
from annotate.runs.manifest import LearnedFrom, RunManifest, package_versions
from annotate.runs.reader import Run
from annotate.runs.rows import LabelRow

CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
MIN_CODED_CHATS = 6
"""Fewer coded chats than this (of a variable) teach nothing that cross-validation could check."""
MIN_CURVE_CHATS = 4


@dataclass(frozen=True)
class LearnOptions:
    features: tuple[str, ...] = DEFAULT_FEATURES
    folds: int = 5
    """Cross-fitting folds of coded chats (fewer when there are fewer chats)."""
    seed: int = 0
    fractions: tuple[float, ...] = CURVE_FRACTIONS


@dataclass(frozen=True)
class CurvePoint:
    """Cross-validated predictions of the coded units of a random share of the coded chats."""

    fraction: float
    chats: int
    rows: NDArray[np.int64]
    """Positions into the variable's coded units."""
    probabilities: NDArray[np.float64]


@dataclass(frozen=True)
class VariableLearning:
    """What the learner did for one variable: its coded units with their out-of-fold predictions, and the curve."""

    variable: str
    task: str
    scale: str
    categories: list[int]
    coded: pd.DataFrame
    """chat_id, round, human (the coded value), inclusion_probability, llm (the source run's label or None)."""
    probabilities: NDArray[np.float64]
    """Out-of-fold probabilities of the coded units, rows as in ``coded``."""
    curve: list[CurvePoint]
    penalties: list[float]
    units: int
    """Units labelled (coded or not)."""
    expected: NDArray[np.float64]
    """Every unit's learned expected value (out of fold for coded units, the fold models' mean for the rest)."""
    positions: NDArray[np.int64]
    """Where the coded units (rows of ``coded``) are among all units."""
    unit_chats: NDArray[np.int64]
    """Every unit's chat, as an integer (the estimator clusters on it)."""


@dataclass(frozen=True)
class Learned:
    rows: list[LabelRow]
    manifest: RunManifest
    variables: dict[str, VariableLearning]
    unmatched: dict[str, int] = field(default_factory=dict)
    """Per variable, coded items that name no unit of the run (a chat or round it does not have)."""


def learn(
    run: Run, coded: pd.DataFrame, coded_path: Path, coded_sha256: str, library: PromptLibrary, options: LearnOptions
) -> Learned:
    """``coded``: one human label per item (chat_id, round, variable, value, inclusion_probability)."""
    features = check_features(list(options.features))
    if options.folds < 2:
        raise AnnotateError(f"--folds {options.folds}: cross-fitting needs two folds or more")
    variables = sorted(set(coded["variable"]))
    units = variable_units(run, library, variables)
    embed = _embedder() if "embeddings" in features else None
    run_id = "learned-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    rows: list[LabelRow] = []
    learned, unmatched = {}, {}
    for variable in variables:
        vu = units[variable]
        x = build_features(vu, features, embed.embed if embed else None)
        positions, items = _match(vu, coded[coded["variable"] == variable])
        unmatched[variable] = int(len(coded[coded["variable"] == variable]) - len(items))
        _check_coded(variable, items, vu)
        y = items["value"].to_numpy(dtype=np.int64)
        chats = items["chat_id"].to_numpy(dtype=str)
        fit = cross_fit(x, positions, y, chats, vu.categories, options.folds, options.seed)
        curve = learning_curve(x, positions, y, chats, vu.categories, options)
        learned[variable] = VariableLearning(
            variable,
            vu.task,
            vu.scale,
            vu.categories,
            items.assign(human=y, llm=vu.table["llm_value"].to_numpy()[positions])[
                ["chat_id", "round", "human", "inclusion_probability", "llm"]
            ].reset_index(drop=True),
            fit.probabilities[positions],
            curve,
            fit.penalties,
            len(vu.table),
            fit.probabilities @ np.asarray(vu.categories, dtype=float),
            positions,
            pd.factorize(vu.table["chat_id"].astype(str))[0].astype(np.int64),
        )
        rows += label_rows(vu, fit.probabilities, features, options, fit.penalties, run_id)
    manifest = _manifest(run, coded_path, coded_sha256, features, options, learned, rows, run_id, embed)
    return Learned(rows, manifest, learned, unmatched)


def _embedder() -> Any:
    from annotate.learning.embeddings import Embedder

    return Embedder.load()


def _match(vu: VariableUnits, items: pd.DataFrame) -> tuple[NDArray[np.int64], pd.DataFrame]:
    """Positions (into the variable's units) of the coded items, and the items that name a unit."""
    index = {key: i for i, key in enumerate(vu.keys)}
    found = [
        index.get((str(c), None if pd.isna(r) else int(r)))
        for c, r in zip(items["chat_id"], items["round"], strict=True)
    ]
    keep = np.array([f is not None for f in found], dtype=bool)
    positions = np.array([f for f in found if f is not None], dtype=np.int64)
    return positions, items[keep].reset_index(drop=True)


def _check_coded(variable: str, items: pd.DataFrame, vu: VariableUnits) -> None:
    chats = items["chat_id"].nunique()
    if chats < MIN_CODED_CHATS:
        raise AnnotateError(
            f"{variable}: {chats} coded chats match the run's units; a learner needs {MIN_CODED_CHATS} or more "
            "(code more chats, or leave the variable out of the coded file)"
        )
    outside = sorted(set(items["value"]) - set(vu.categories))
    if outside:
        raise AnnotateError(f"{variable}: coded value {outside[0]} is not on its scale ({vu.categories})")


def learning_curve(
    x: Any,
    positions: NDArray[np.int64],
    y: NDArray[np.int64],
    chats: NDArray[np.str_],
    categories: list[int],
    options: LearnOptions,
) -> list[CurvePoint]:
    """Cross-validated predictions (label-stratified folds) of the coded units of nested random shares of the
    coded chats, the last share all of them."""
    unique = np.unique(chats)
    order = unique[np.random.default_rng(options.seed + 7).permutation(len(unique))]
    points = []
    for fraction in options.fractions:
        take = max(1, round(fraction * len(unique)))
        if take < MIN_CURVE_CHATS:
            continue
        rows = np.flatnonzero(np.isin(chats, order[:take]))
        sub = positions[rows]
        fit = cross_fit(
            x[sub], np.arange(len(sub)), y[rows], chats[rows], categories, options.folds, options.seed, True
        )
        points.append(CurvePoint(fraction, take, rows, fit.probabilities))
    return points


def label_rows(
    vu: VariableUnits,
    probabilities: NDArray[np.float64],
    features: list[str],
    options: LearnOptions,
    penalties: list[float],
    run_id: str,
) -> list[LabelRow]:
    model = "learned:" + "+".join(features)
    sampling = json.dumps({"learner": "logistic", "folds": options.folds, "seed": options.seed, "penalties": penalties})
    categories = np.asarray(vu.categories, dtype=float)
    rows = []
    for unit, probs in zip(vu.table.itertuples(index=False), probabilities, strict=True):
        best = int(np.argmax(probs))
        rows.append(
            LabelRow(
                chat_id=str(unit.chat_id),
                round=None if pd.isna(unit.round) else int(unit.round),
                task=vu.task,
                variable=vu.variable,
                value=vu.categories[best],
                probs=json.dumps({str(v): round(float(p), 6) for v, p in zip(vu.categories, probs, strict=True)}),
                confidence=round(float(probs[best]), 6),
                expected=round(float(probs @ categories), 6),
                status="ok",
                error="",
                repeat=0,
                prompt_version=str(unit.prompt_version),
                prompt_hash=str(unit.prompt_hash),
                model=model,
                backend="learned",
                sampling=sampling,
                raw_output="",
                prompt_tokens=0,
                completion_tokens=0,
                latency_ms=0.0,
                attempts=0,
                cached=False,
                truncation=str(unit.truncation or ""),
                run_id=run_id,
            )
        )
    return rows


def _manifest(
    run: Run,
    coded_path: Path,
    coded_sha256: str,
    features: list[str],
    options: LearnOptions,
    learned: dict[str, VariableLearning],
    rows: list[LabelRow],
    run_id: str,
    embed: object,
) -> RunManifest:
    tasks = {v.task for v in learned.values()}
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row.task, {}).setdefault(row.status, 0)
        counts[row.task][row.status] += 1
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return RunManifest(
        run_id=run_id,
        status="complete",
        kind="learned",
        started_at=now,
        finished_at=now,
        annotate_version=__version__,
        packages=package_versions(),
        backend="learned",
        model={"name": "learned:" + "+".join(features), "engine": "learned", "learner": LEARNER},
        prompts={task: entry for task, entry in run.manifest.prompts.items() if task in tasks},
        inputs=run.manifest.inputs,
        options=run.manifest.options,
        learned=LearnedFrom(
            source_run=str(run.path),
            source_run_id=run.manifest.run_id,
            coded=str(coded_path),
            coded_sha256=coded_sha256,
            features=features,
            learner=LEARNER,
            folds=options.folds,
            seed=options.seed,
            penalties={v: r.penalties for v, r in learned.items()},
            coded_chats={v: int(r.coded["chat_id"].nunique()) for v, r in learned.items()},
            embedding_model=getattr(embed, "describe", lambda: None)(),
        ),
        summary={"counts": counts},
    )
