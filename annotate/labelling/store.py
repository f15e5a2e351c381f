"""The run directory: an append-only journal, the manifest, and the label tables.

``journal.jsonl`` gets every label row as soon as it exists (flushed, fsynced per batch). A killed
run resumes from it: a torn last line is cut off, finished units are skipped, and ``labels.parquet``
/ ``labels.csv`` are rebuilt from the journal with one row per label (the newest wins).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from annotate.errors import RunStoreError
from annotate.labelling.rows import LABEL_COLUMNS, LABEL_KEY


class RunStore:
    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir
        self.journal_path = out_dir / "journal.jsonl"
        self.manifest_path = out_dir / "manifest.json"
        self._journal: Any = None

    # -- opening and resuming
    def open(self, fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
        """Create or reopen the run directory; return the rows already journaled.

        ``fingerprint`` is the configuration that decides the labels; resuming under another one is
        refused, because the run directory would mix labels from two setups.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        previous = self.read_manifest()
        if previous is not None and previous.get("fingerprint") != fingerprint:
            changed = sorted(
                k
                for k in set(fingerprint) | set(previous.get("fingerprint", {}))
                if fingerprint.get(k) != previous.get("fingerprint", {}).get(k)
            )
            raise RunStoreError(
                f"{self.dir} holds a run with another configuration ({', '.join(changed)} differ): "
                "choose a new --out directory"
            )
        rows = self._read_journal()
        self._journal = self.journal_path.open("a", encoding="utf-8")
        return rows

    def _read_journal(self) -> list[dict[str, Any]]:
        if not self.journal_path.is_file():
            return []
        rows = []
        good_bytes = 0
        with self.journal_path.open("rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn write from a killed run
                try:
                    rows.append(json.loads(raw))
                except json.JSONDecodeError:
                    break
                good_bytes += len(raw)
        if good_bytes != self.journal_path.stat().st_size:
            with self.journal_path.open("r+b") as f:
                f.truncate(good_bytes)
        return rows

    # -- writing
    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._journal.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._journal.flush()

    def sync(self) -> None:
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())

    def close(self) -> None:
        if self._journal is not None:
            self.sync()
            self._journal.close()
            self._journal = None

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        data: dict[str, Any] = json.loads(self.manifest_path.read_text())
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, self.manifest_path)

    def write_tables(self) -> Any:
        """Rebuild labels.parquet and labels.csv from the journal; return the DataFrame."""
        import pandas as pd

        rows = self._read_journal()
        df = pd.DataFrame(rows, columns=LABEL_COLUMNS)
        if not df.empty:
            df = df.drop_duplicates(subset=LABEL_KEY, keep="last").reset_index(drop=True)
        df["round"] = df["round"].astype("Int64")
        df["value"] = df["value"].astype("Int64")
        df["repeat"] = df["repeat"].astype("Int64")
        df.to_parquet(self.dir / "labels.parquet", index=False)
        df.to_csv(self.dir / "labels.csv", index=False)
        return df
