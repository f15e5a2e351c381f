"""Content-addressed completion cache (SQLite), shared by every run on this machine.

The key hashes the rendered messages, schema, token budget, model identity, sampling parameters and
repeat index, so a second identical run makes no model calls, and changing one task's prompt
re-annotates that task only. Only engine answers are stored (with the log probabilities at each
value, so a cached label keeps its probabilities), never engine errors.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from annotate.engines.base import Completion
from annotate.errors import RunStoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    value_logprobs TEXT
)
"""
_COLUMNS = "text, finish_reason, prompt_tokens, completion_tokens, latency_ms, value_logprobs"


class CompletionCache:
    def __init__(self, path: Path | None) -> None:
        """``path=None`` gives a cache that remembers nothing (``--no-cache``)."""
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            with self._errors():
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, timeout=60)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(_SCHEMA)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(completions)")}
                if "value_logprobs" not in columns:  # a cache written before answers kept probabilities
                    self._db.execute("ALTER TABLE completions ADD COLUMN value_logprobs TEXT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A damaged or unwritable cache file is one line, never a traceback; the run directory is untouched."""
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise RunStoreError(
                f"{self.path}: the completion cache cannot be used ({e}); delete that file, or run with --no-cache"
            ) from None

    def get(self, key: str) -> Completion | None:
        if self._db is None:
            return None
        with self._errors():
            row = self._db.execute(f"SELECT {_COLUMNS} FROM completions WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        text, finish_reason, prompt_tokens, completion_tokens, latency_ms, logprobs = row
        return Completion(
            text,
            finish_reason,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            value_logprobs=None if logprobs is None else json.loads(logprobs),
        )

    def put(self, key: str, completion: Completion) -> None:
        if self._db is None or completion.error is not None:
            return
        c = completion
        logprobs = None if c.value_logprobs is None else json.dumps(c.value_logprobs)
        values = (key, c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens, c.latency_ms, logprobs)
        with self._errors():
            self._db.execute(
                f"INSERT OR REPLACE INTO completions (key, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", values
            )
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
