"""The run directory: a locked, append-only journal, the manifest, and the label tables.

``journal.jsonl`` gets one line per finished unit (a unit's rows, its key and the hash of what was
labelled), flushed as it comes and fsynced per batch, so a unit is either wholly in the journal or not
at all. A killed run resumes from it: a torn last line is cut off and that unit is labelled again;
a damaged line anywhere else stops the run with its line number. ``labels.parquet`` / ``labels.csv``
are rebuilt from the journal with one row per label (the newest wins). One process at a time may
write a run directory: ``.lock`` is held with ``flock``, which the kernel releases when the holder
dies, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from annotate.errors import RunStoreError
from annotate.runs.manifest import RunManifest, check_format
from annotate.runs.outputs import csv_text, temporary_path, write_all_atomic, write_atomic, write_csv
from annotate.runs.rows import FINAL_STATUSES, LABEL_COLUMNS, LABEL_KEY, LabelRow

UnitKey = tuple[str, str, int | None, int]
"""(task, chat_id, round, repeat): one request's worth of labels."""


def compact(key: UnitKey) -> int:
    """A unit key as 8 bytes: a resume of millions of units keeps only these in memory."""
    return int.from_bytes(hashlib.blake2b(json.dumps(key).encode(), digest_size=8).digest(), "big")


@dataclass
class Journal:
    """What a run directory already holds, in compact form (see ``compact``)."""

    path: Path
    hashes: dict[int, int | None] = field(default_factory=dict)
    """Every journaled unit and the hash of what it labelled (None for a skipped record)."""
    done: set[int] = field(default_factory=set)
    """Units whose rows are final (``backend_error`` units are tried again)."""
    legacy_done: set[int] = field(default_factory=set)
    """Final label rounds journaled one row per line (runs from before unit lines), checked one by one."""
    units_by_task: dict[str, int] = field(default_factory=dict)
    """How many distinct units of each task the journal holds (skipped records count under "")."""
    dropped_lines: list[int] = field(default_factory=list)

    def unit_hash(self, key: UnitKey) -> int | None:
        return self.hashes.get(compact(key))

    def holds(self, key: UnitKey) -> bool:
        return compact(key) in self.hashes

    def finished(self, key: UnitKey, label_rounds: tuple[int | None, ...]) -> bool:
        """The unit is done: as one unit line, or (older journals) every one of its label rounds."""
        if compact(key) in self.done:
            return True
        task, chat_id, _, repeat = key
        return bool(self.legacy_done) and all(
            compact((task, chat_id, r, repeat)) in self.legacy_done for r in label_rounds
        )

    def written_keys(self) -> Iterator[UnitKey]:
        """Every unit key as written, read back from the journal file (for error messages only)."""
        with self.path.open("rb") as f:
            for raw in f:
                entry = _parse(raw)
                if entry and "unit" in entry:
                    task, chat_id, round_number, repeat = entry["unit"]
                    yield (task, chat_id, round_number, repeat)


class RunStore:
    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir
        self.journal_path = out_dir / "journal.jsonl"
        self.manifest_path = out_dir / "manifest.json"
        self._journal: Any = None
        self._lock: Any = None
        self.with_probabilities = 0
        """Labels with probabilities in the tables last written."""

    # -- opening and resuming
    def open(self, skip_corrupt: bool = False) -> Journal:
        """Create or reopen the run directory, locked for this process; return what it already holds (whether
        this run may resume it is runs/resume.py's decision, made before anything is written)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
        except OSError as e:
            raise RunStoreError(f"{self.dir}: cannot write the run directory ({e.strerror or e})") from None
        journal = Journal(self.journal_path)
        for entry in self._entries(skip_corrupt, journal.dropped_lines):
            if "rows" in entry:
                task, chat_id, round_number, repeat = entry["unit"]
                key = compact((task, chat_id, round_number, repeat))
                if key not in journal.hashes:
                    journal.units_by_task[task] = journal.units_by_task.get(task, 0) + 1
                journal.hashes[key] = int(entry["hash"], 16) if entry.get("hash") else None
                if all(row["status"] in FINAL_STATUSES for row in entry["rows"]):
                    journal.done.add(key)
                else:
                    journal.done.discard(key)
            elif entry["status"] in FINAL_STATUSES:
                journal.legacy_done.add(compact((entry["task"], entry["chat_id"], entry["round"], entry["repeat"])))
        self._journal = self._guard(lambda: self.journal_path.open("a", encoding="utf-8"))
        return journal

    def _acquire_lock(self) -> None:
        import fcntl

        handle = (self.dir / ".lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunStoreError(
                f"{self.dir} is being written by another annotate run (pid {holder}): wait for it to finish, "
                "or choose another --out directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def _entries(self, skip_corrupt: bool, dropped: list[int]) -> Iterator[dict[str, Any]]:
        """Journal entries in order, streamed; a torn last line is cut off, any other damaged line is an error."""
        if not self.journal_path.is_file():
            return
        good_bytes = 0
        damaged = False
        with self.journal_path.open("rb") as f:
            lines = enumerate(f, start=1)
            current = next(lines, None)
            while current is not None:
                number, raw = current
                following = next(lines, None)
                entry = _parse(raw)
                if entry is None and following is None:
                    break  # torn write from a killed run: that unit is labelled again
                if entry is None:
                    if not skip_corrupt:
                        raise RunStoreError(
                            f"{self.journal_path}:{number}: damaged journal line (not a complete JSON entry) with "
                            "good lines after it; restore the file, or run again with --skip-corrupt-journal-lines "
                            "to drop it and label its unit again"
                        )
                    dropped.append(number)
                    damaged = True
                else:
                    good_bytes += len(raw)
                    yield entry
                current = following
        if damaged:
            self._guard(lambda: self._rewrite_without(set(dropped)))
        elif good_bytes != self.journal_path.stat().st_size:
            with self.journal_path.open("r+b") as f:
                f.truncate(good_bytes)

    def _rewrite_without(self, numbers: set[int]) -> None:
        tmp = self.journal_path.with_name(self.journal_path.name + ".tmp")
        with self.journal_path.open("rb") as src, tmp.open("wb") as dst:
            for number, raw in enumerate(src, start=1):
                if number not in numbers and _parse(raw) is not None:
                    dst.write(raw)
        os.replace(tmp, self.journal_path)

    # -- writing
    def append_unit(self, key: UnitKey, unit_hash: str | None, rows: list[dict[str, Any]]) -> None:
        """One unit's rows, as one journal line: a unit is never half written."""
        line = json.dumps({"unit": list(key), "hash": unit_hash, "rows": rows}, ensure_ascii=False) + "\n"
        self._guard(lambda: self._write(line))

    def _write(self, line: str) -> None:
        self._journal.write(line)
        self._journal.flush()

    def sync(self) -> None:
        if self._journal is not None:
            self._guard(self._flush)

    def _flush(self) -> None:
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def close(self) -> None:
        """Close the journal (fsynced); the directory stays locked until ``release``."""
        if self._journal is not None:
            try:
                self.sync()
            finally:
                self._journal.close()
                self._journal = None

    def release(self) -> None:
        """Close everything and give the directory back (the kernel does the same if this process dies)."""
        try:
            self.close()
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _guard(self, action: Any) -> Any:
        """Run a write; a failure (disk full, read-only folder) becomes one line, and nothing written is lost."""
        try:
            return action()
        except OSError as e:
            raise RunStoreError(
                f"{self.dir}: cannot write ({e.strerror or e}); everything journaled so far is kept: "
                "fix that and run the same command again to resume"
            ) from None

    @property
    def labelled(self) -> bool:
        """Whether the journal holds anything."""
        return self.journal_path.is_file() and self.journal_path.stat().st_size > 0

    def read_manifest(self) -> RunManifest | None:
        if not self.manifest_path.is_file():
            return None
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            check_format(data, self.manifest_path)
            return RunManifest.read(data)
        except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as e:
            reason = str(e).splitlines()[0]
            where = (
                "the labels are in journal.jsonl beside it"
                if self.journal_path.is_file()
                else "the labels beside it are whole; restore the manifest from a copy, or rebuild the run"
            )
            raise RunStoreError(f"{self.manifest_path}: damaged ({reason}); {where}") from None

    def write_manifest(self, manifest: RunManifest) -> None:
        self._guard(lambda: write_atomic(self.manifest_path, manifest.as_json()))

    def journal_table(self) -> pd.DataFrame:
        """The label table straight from the journal (each unit's newest entry), in memory: what readers use
        when labels.parquet is older than the journal, so that nothing is written into the run."""
        newest = {_entry_key(entry): n for n, entry in enumerate(self._entries(skip_corrupt=False, dropped=[]))}
        return label_table([row for batch in self._row_batches(newest) for row in batch])

    def rows(self) -> list[dict[str, Any]]:
        """Every journaled label row, in journal order (for small runs and tests; tables are streamed)."""
        return [row for batch in self._row_batches(None) for row in batch]

    def _row_batches(self, newest: dict[int, int] | None, size: int = 20_000) -> Iterator[list[dict[str, Any]]]:
        """Label rows in batches; with ``newest`` (key -> last entry number), only each unit's newest entry."""
        batch: list[dict[str, Any]] = []
        for number, entry in enumerate(self._entries(skip_corrupt=False, dropped=[])):
            if newest is not None and newest.get(_entry_key(entry)) != number:
                continue
            batch.extend(entry.get("rows", [entry]))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def write_tables(self) -> dict[str, dict[str, int]]:
        """Rebuild labels.parquet and labels.csv from the journal, a batch at a time; return task -> status -> n.

        Also counts the labels that carry probabilities (``with_probabilities``).

        A unit labelled twice (a retried engine error) keeps its newest entry only.
        """
        newest = {_entry_key(entry): n for n, entry in enumerate(self._entries(skip_corrupt=False, dropped=[]))}
        result: dict[str, dict[str, int]] = self._guard(lambda: self._write_tables(newest))
        return result

    def _write_tables(self, newest: dict[int, int]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        self.with_probabilities = 0

        def counted(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for df in frames:
                for (task, status), n in df.groupby(["task", "status"]).size().items():
                    by_task = counts.setdefault(str(task) or "(input)", {})
                    by_task[str(status)] = by_task.get(str(status), 0) + int(n)
                self.with_probabilities += int(df["probs"].notna().sum())
                yield df

        write_label_tables(self.dir, counted(map(label_table, self._row_batches(newest))))
        return counts


def write_label_tables(folder: Path, frames: Iterable[pd.DataFrame], columns: list[str] = LABEL_COLUMNS) -> list[Path]:
    """The one writer of ``labels.parquet`` and ``labels.csv``: written a batch at a time beside the final files,
    then swapped in, so a reader never sees half a table."""
    final = [folder / "labels.parquet", folder / "labels.csv"]
    parquet, csv_path = (temporary_path(path) for path in final)
    writer: Any = None
    try:
        for df in frames:
            write_csv(df, csv_path, append=writer is not None)
            writer = writer or _parquet_writer(parquet, df)
            writer.write_table(_arrow(df, writer.schema))
        if writer is None:
            label_table([], columns).to_parquet(parquet, index=False)
            write_csv(label_table([], columns), csv_path)
    except BaseException:
        for leftover in (parquet, csv_path):
            leftover.unlink(missing_ok=True)
        raise
    finally:
        if writer is not None:
            writer.close()
    for done, path in zip((parquet, csv_path), final, strict=True):
        os.replace(done, path)
    return final


def write_run(folder: Path, rows: Sequence[LabelRow], manifest: RunManifest) -> list[Path]:
    """A whole run directory from typed rows held in memory (a consensus run)."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = list(type(rows[0]).model_fields) if rows else LABEL_COLUMNS
    table = label_table([row.model_dump() for row in rows], columns)
    files: dict[Path, bytes | str] = {
        folder / "labels.parquet": table.to_parquet(index=False),
        folder / "labels.csv": csv_text(table),
        folder / "manifest.json": manifest.as_json(),
    }
    write_all_atomic(files)  # all three new, or all three as they were: never new labels beside an old manifest
    return list(files)


def _entry_key(entry: dict[str, Any]) -> int:
    """A unit entry's compact key, or for an old one-row-per-line journal, the label's."""
    return compact(tuple(entry["unit"]) if "rows" in entry else tuple(entry[k] for k in LABEL_KEY))


def label_table(rows: list[dict[str, Any]], columns: list[str] = LABEL_COLUMNS) -> pd.DataFrame:
    """Label rows as a table with the same column types in every batch and every run."""
    df = pd.DataFrame(rows, columns=columns)
    for column in ("round", "value", "repeat", "majority", "dawid_skene"):
        if column in df.columns:
            df[column] = df[column].astype("Int64")
    for column in ("confidence", "expected", "share", "dawid_skene_probability"):
        if column in df.columns:
            df[column] = df[column].astype("float64")
    df["probs"] = df["probs"].astype("string")  # typed even when a batch has none, so every batch writes alike
    return df


def _parquet_writer(path: Path, df: pd.DataFrame) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.ParquetWriter(path, pa.Table.from_pandas(df, preserve_index=False).schema)


def _arrow(df: pd.DataFrame, schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw.endswith(b"\n"):
        return None
    try:
        entry = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None
