"""The tables a researcher brings besides transcripts, read once by the command and passed on typed: the coded
file (gold) and the covariates. Every problem is one line naming the file, the line and the field.

Gold: ``chat_id``, ``round`` (empty for chat-level variables), ``variable``, ``value``,
optional ``annotator``, ``inclusion_probability`` (written by ``annotate sample``: the chance the item had of
being drawn, which ``annotate estimate`` weights by) and ``sample`` (which draw the item came from). CSV or
Parquet; other columns are ignored."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotate.errors import InputError
from annotate.hashing import file_sha256
from annotate.ingest.readers import chat_id_text, read_table
from annotate.runs.outputs import undo_formula_guard

MISSING = ("", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "none", "#N/A")
"""Covariate cells read as missing."""
GOLD_COLUMNS = ["chat_id", "round", "variable", "value", "annotator", "inclusion_probability", "sample", "line"]
"""``line``: where the label is in the file, for error messages."""


@dataclass(frozen=True)
class Gold:
    """A coded file as read: where it is, its content hash (what estimates and diffs record), and its rows."""

    path: Path
    sha256: str
    table: pd.DataFrame
    """One row per (chat_id, round, variable, annotator): the columns of ``GOLD_COLUMNS``."""


@dataclass(frozen=True)
class Covariates:
    """A table keyed by ``chat_id``: per-chat regressors for ``estimate``."""

    path: Path
    table: pd.DataFrame


def read_gold(path: Path) -> Gold:
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
    return Gold(path, file_sha256(path), gold)


def read_covariates(path: Path) -> Covariates:
    """A table keyed by ``chat_id`` (CSV or Parquet); numeric-looking CSV columns become numbers, missing markers
    NaN (so missing covariates are caught, not taken as a category)."""
    table, first_line = read_table(path, "covariates")
    if first_line == 2:  # CSV: every cell a string
        table = table.apply(lambda column: column.str.strip()).replace(list(MISSING), np.nan)
        for column in table.columns:
            numbers = pd.to_numeric(table[column], errors="coerce")
            if column != "chat_id" and numbers.notna().sum() == table[column].notna().sum():
                table[column] = numbers
    if "chat_id" not in table.columns:
        raise InputError(str(path), None, "chat_id", "missing column (covariates are keyed by chat_id)")
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) and np.isinf(values.to_numpy(dtype=float)).any():
            line = int(np.flatnonzero(np.isinf(values.to_numpy(dtype=float)))[0]) + first_line
            raise InputError(str(path), line, column, f"{values.iloc[line - first_line]} is not a usable value")
    table["chat_id"] = table["chat_id"].astype(str).str.strip()
    duplicated = table["chat_id"].duplicated()
    if duplicated.any():
        line = int(np.flatnonzero(duplicated.to_numpy())[0]) + 2
        raise InputError(str(path), line, "chat_id", f"'{table['chat_id'][line - 2]}' appears twice")
    return Covariates(path, table)


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
