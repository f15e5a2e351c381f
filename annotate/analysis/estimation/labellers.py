"""Several labellers of the same units: other runs (models, prompt versions, repeats, a consensus) read beside
the primary run, as features for the cross-fitted combination and as predictions of their own."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from annotate.analysis.estimation.combine import LabellerFeatures
from annotate.errors import AnnotateError

if TYPE_CHECKING:
    from annotate.runs.reader import Run


@dataclass(frozen=True)
class Labeller:
    name: str
    """The run directory's name (its path where two share a name)."""
    model: str
    ok: pd.DataFrame
    """The run's ok labels."""


def labellers_of(primary: Run, others: tuple[Run, ...]) -> list[Labeller]:
    """The primary run and the others (read and checked for the same transcripts by the command), each named by its
    folder; a run that labels none of the primary's chats is refused."""
    runs = [primary, *others]
    names = Counter(r.path.name for r in runs)
    primary_chats = set(primary.labels["chat_id"])
    out = []
    for run in runs:
        ok = run.labels[run.labels["status"] == "ok"]
        if not primary_chats & set(ok["chat_id"]):
            raise AnnotateError(
                f"{run.path}: labels none of {primary.path}'s chats: a labeller must label the same chats"
            )
        model = str(ok["model"].iloc[0]) if len(ok) else ""
        out.append(Labeller(run.path.name if names[run.path.name] == 1 else str(run.path), model, ok))
    return out


def features(labeller: Labeller, units: pd.DataFrame, outcome: str, categories: list[int]) -> LabellerFeatures:
    """Per unit: the labeller's probability of each value but the first (averaged over repeats), or the share of
    repeats that chose it when the engine gave no probabilities, a column marking units it did not label; and
    its probability-weighted label (its mean over the units it labelled where it did not)."""
    rows = labeller.ok[labeller.ok["variable"] == outcome]
    shares = np.zeros((len(rows), len(categories)))
    position = {value: i for i, value in enumerate(categories)}
    for i, (value, probs) in enumerate(zip(rows["value"], rows["probs"], strict=True)):
        parsed = _parse(probs)
        if parsed:
            for v, p in parsed.items():
                if v in position:
                    shares[i, position[v]] = p
        elif value is not None and int(value) in position:
            shares[i, position[int(value)]] = 1.0
    table = pd.DataFrame(shares, columns=categories).assign(chat_id=rows["chat_id"].to_numpy(), round=_rounds(rows))
    mean = table.groupby(["chat_id", "round"], dropna=False).mean().reset_index()
    merged = units[["chat_id", "round"]].assign(round=_rounds(units)).merge(mean, on=["chat_id", "round"], how="left")
    values = merged[categories].to_numpy(dtype=float)
    missing = np.isnan(values).any(axis=1)
    totals = values.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = values @ np.asarray(categories, dtype=float) / totals
    fill = float(np.nanmean(expected)) if (~missing).any() else 0.0
    return LabellerFeatures(
        probabilities=np.column_stack([np.nan_to_num(values[:, 1:]), missing.astype(float)]),
        expected=np.where(np.isfinite(expected), expected, fill),
    )


def own_labels(labeller: Labeller, units: pd.DataFrame, outcome: str, column: str) -> tuple[np.ndarray, int]:
    """Per unit: the labeller's label (``value`` or ``expected``, mean over repeats), and how many units it did
    not label (those get its mean label: a constant, so the estimate stays valid)."""
    rows = labeller.ok[labeller.ok["variable"] == outcome]
    table = pd.DataFrame(
        {"chat_id": rows["chat_id"].to_numpy(), "round": _rounds(rows), "own": rows[column].astype(float)}
    )
    mean = table.groupby(["chat_id", "round"], dropna=False)["own"].mean().reset_index()
    merged = units[["chat_id", "round"]].assign(round=_rounds(units)).merge(mean, on=["chat_id", "round"], how="left")
    values = merged["own"].to_numpy(dtype=float)
    missing = int(np.isnan(values).sum())
    fill = np.nanmean(values) if missing < len(values) else 0.0
    return np.where(np.isnan(values), fill, values), missing


def _rounds(rows: pd.DataFrame) -> np.ndarray:
    return rows["round"].astype("float").fillna(-1).to_numpy()


def _parse(probs: object) -> dict[int, float] | None:
    if not isinstance(probs, str) or not probs:
        return None
    return {int(k): float(v) for k, v in json.loads(probs).items()}
