"""Human gold labels: ``chat_id``, ``round`` (empty for chat-level variables), ``variable``, ``value``,
optional ``annotator``, ``inclusion_probability`` (written by ``annotate sample``: the chance the item had of
being drawn, which ``annotate estimate`` weights by) and ``sample`` (which draw the item came from). CSV or
Parquet; other columns are ignored."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotate.errors import InputError
from annotate.hashing import file_sha256
from annotate.ingest.readers import chat_id_text, read_table
from annotate.runs.outputs import undo_formula_guard

GOLD_COLUMNS = ["chat_id", "round", "variable", "value", "annotator", "inclusion_probability", "sample", "line"]
"""``line``: where the label is in the file, for error messages."""


def read_gold(path: Path) -> pd.DataFrame:
    """One row per (chat_id, round, variable, annotator); errors name the file, line and field."""
    raw, first_line = read_table(path, "gold labels")
    for column in ("chat_id", "variable", "value"):
        if column not in raw.columns:
            raise InputError(str(path), None, column, "missing column (gold needs chat_id, round, variable, value)")
    if raw.empty:
        raise InputError(str(path), None, None, "no gold labels (the file has a header only)")
    rows = []
    for i, rec in enumerate(raw.to_dict("records")):
        line = i + first_line
        rows.append(
            {
                "chat_id": _chat_id(rec, path, line),
                "round": _round(rec.get("round"), path, line),
                "variable": _required(rec, "variable", path, line),
                "value": _integer(rec.get("value"), path, line, "value"),
                "annotator": str(rec.get("annotator") or "gold").strip() or "gold",
                "inclusion_probability": _probability(rec, path, line),
                "sample": _text(rec.get("sample")),
                "line": line,
            }
        )
    gold = pd.DataFrame(rows, columns=GOLD_COLUMNS)
    gold["round"] = gold["round"].astype("Int64")
    duplicated = gold.duplicated(["chat_id", "round", "variable", "annotator"], keep=False)
    if duplicated.any():
        first = int(np.flatnonzero(duplicated.to_numpy())[1]) + first_line
        raise InputError(str(path), first, "value", "the same annotator labels this item twice")
    return gold


def consensus(gold: pd.DataFrame) -> pd.DataFrame:
    """One label per item: the majority; a tie goes to the lower median of all annotators' labels."""

    def pick(values: pd.Series) -> int:
        counts = values.value_counts()
        top = counts[counts == counts.max()].index
        if len(top) == 1:
            return int(top[0])
        return int(np.floor(np.median(values.to_numpy())))

    keys = ["chat_id", "round", "variable"]
    grouped = gold.groupby(keys, dropna=False, sort=False)["value"]
    return grouped.agg(pick).reset_index()


def _chat_id(rec: dict[str, Any], path: Path, line: int) -> str:
    """As transcripts read ids (``8.0`` is chat ``8``), with the coding file's spreadsheet guard undone."""
    value = chat_id_text(rec.get("chat_id"))
    if value is None:
        raise InputError(str(path), line, "chat_id", "empty")
    return undo_formula_guard(value)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()


def _required(rec: dict[str, Any], field: str, path: Path, line: int) -> str:
    value = rec.get(field)
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        raise InputError(str(path), line, field, "empty")
    return str(value).strip()


def _probability(rec: dict[str, Any], path: Path, line: int) -> float:
    """The item's inclusion probability, in (0, 1]; NaN when the file has no such column."""
    if "inclusion_probability" not in rec:
        return float("nan")
    value = rec["inclusion_probability"]
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InputError(str(path), line, "inclusion_probability", f"not a number: '{value}'") from None
    if not 0 < number <= 1:
        raise InputError(str(path), line, "inclusion_probability", f"{value} is not a probability in (0, 1]")
    return number


def _round(value: Any, path: Path, line: int) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    return _integer(value, path, line, "round")


def _integer(value: Any, path: Path, line: int, field: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InputError(str(path), line, field, f"not a whole number: '{value}'") from None
    if not number.is_integer():
        raise InputError(str(path), line, field, f"not a whole number: '{value}'")
    return int(number)


def read_truth(path: Path, scales: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """The reference label per item: the only annotator's, or the consensus of several."""
    gold = read_gold(path)
    check_scales(gold, path, scales)
    return truth_of(gold)


def truth_of(gold: pd.DataFrame) -> pd.DataFrame:
    """One reference label per item (chat_id, round, variable, value): the only annotator's, or the consensus."""
    return consensus(gold) if gold["annotator"].nunique() > 1 else gold[["chat_id", "round", "variable", "value"]]


def check_scales(gold: pd.DataFrame, path: Path, scales: Mapping[str, Sequence[int]]) -> None:
    """Refuse a gold value outside its variable's scale (it would be silently uncountable), naming its line."""
    for variable, categories in scales.items():
        rows = gold[(gold["variable"] == variable) & ~gold["value"].isin(list(categories))]
        if len(rows):
            first = rows.iloc[0]
            allowed = ", ".join(map(str, categories))
            message = f"{first['value']} is not a value of {variable} (allowed: {allowed})"
            raise InputError(str(path), int(first["line"]), "value", message)


def gold_sha256(path: Path) -> str:
    return file_sha256(path)
