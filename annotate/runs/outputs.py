"""How every output file is written: whole, then swapped in (a full disk leaves the old file, and a link at
the path is replaced rather than followed), and CSV safe to open in a spreadsheet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from annotate.files import temporary_path, write_atomic

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection)."""


def write_csv(df: pd.DataFrame, path: Path, append: bool = False) -> None:
    """CSV for people who open it in a spreadsheet: text that would start a formula gets a leading ``'``.

    Only text cells change (numbers stay numbers); Parquet and JSON outputs keep every value exact.
    """
    if append:
        with path.open("a", encoding="utf-8") as out:
            out.write(csv_text(df).split("\n", 1)[1])
    else:
        write_atomic(path, csv_text(df))


def csv_text(df: pd.DataFrame) -> str:
    """The CSV ``write_csv`` writes, as text."""
    safe = df.copy()
    for column in safe.columns:
        if pd.api.types.is_object_dtype(safe[column]) or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = [_defuse(v) for v in safe[column]]
    return str(safe.to_csv(index=False))


def undo_formula_guard(value: str) -> str:
    """A text cell as it was before ``write_csv`` guarded it, so a coding file's ids come back unchanged."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def _defuse(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def write_all_atomic(files: dict[Path, bytes | str]) -> None:
    """Several files that belong together (a run's tables and manifest): every one is written in full first,
    then all are swapped in, so a full disk leaves the old set whole rather than new labels beside an old
    manifest."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            tmp = temporary_path(path)
            written.append((tmp, path))
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        for tmp, path in written:
            os.replace(tmp, path)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
