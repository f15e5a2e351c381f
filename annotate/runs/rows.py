"""One label row: the value, its status, and everything needed to reproduce it. Declared once, here.

The journal, ``labels.parquet`` and ``labels.csv`` all have exactly these columns, in this order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["ok", "parse_error", "schema_error", "length", "backend_error", "skipped"]

FINAL_STATUSES = {"ok", "parse_error", "schema_error", "length", "skipped"}
"""Statuses a resumed run keeps; ``backend_error`` rows are tried again."""


class LabelRow(BaseModel):
    """A label for one (chat, round, variable, repeat), or the typed failure that stands in for it."""

    model_config = ConfigDict(extra="forbid")

    chat_id: str
    round: int | None
    """The round a per-round label describes; None for chat-level variables."""
    task: str
    """The task (prompt) that produced the label; empty for a skipped input record."""
    variable: str
    value: int | None
    """The label; None unless ``status`` is ``ok``."""
    probs: str | None = None
    """JSON, value -> the engine's probability of it (renormalised over the allowed values); None when the
    engine gave no log probabilities (the manifest says why)."""
    confidence: float | None = None
    """The chosen value's probability."""
    expected: float | None = None
    """The probability-weighted mean value (ordinal and binary scales)."""
    status: Status
    error: str
    """Why the row is not ``ok``: the parse or schema problem, the engine error, or the skip reason."""
    repeat: int
    prompt_version: str
    prompt_hash: str
    model: str
    backend: str
    sampling: str
    """JSON of the sampling parameters and the token budget of the final attempt."""
    raw_output: str
    """The model's text exactly as it came back."""
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    attempts: int
    cached: bool
    """True when the answer came from the completion cache."""
    truncation: str
    """What the truncation policy cut from the unit's transcript; empty when nothing."""
    run_id: str

    @classmethod
    def skipped(cls, chat_id: str, reason: str, run_id: str, backend: str) -> LabelRow:
        """An input record that could not become a chat: kept in the labels so nothing vanishes silently."""
        return cls(
            chat_id=chat_id,
            round=None,
            task="",
            variable="",
            value=None,
            status="skipped",
            error=reason,
            repeat=0,
            prompt_version="",
            prompt_hash="",
            model="",
            backend=backend,
            sampling="",
            raw_output="",
            prompt_tokens=0,
            completion_tokens=0,
            latency_ms=0.0,
            attempts=0,
            cached=False,
            truncation="",
            run_id=run_id,
        )


LABEL_COLUMNS = list(LabelRow.model_fields)
LABEL_KEY = ["chat_id", "round", "task", "variable", "repeat"]
"""One label per key; when a journal holds two (a resumed retry), the newest wins."""
