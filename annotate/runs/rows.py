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

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    chat_id: str
    """The chat, as the input names it."""
    round: int | None
    """The round a per-round label describes; None for chat-level variables."""
    task: str
    """The task (prompt) that produced the label; empty for a skipped input record."""
    variable: str
    """The variable labelled (empty for a skipped input record)."""
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
    """``ok``, or the typed failure that stands in for the label; ``backend_error`` rows are tried again on resume."""
    error: str
    """Why the row is not ``ok``: the parse or schema problem, the engine error, or the skip reason."""
    repeat: int
    """Which of ``--repeats`` labellings of the unit (0 first)."""
    prompt_version: str
    """The task's prompt version (v1, v2, ...)."""
    prompt_hash: str
    """The content hash of that prompt version (template, examples, rubric)."""
    model: str
    """The model that answered (name, or the embedded model's id)."""
    backend: str
    """The engine: llamacpp, vllm, openai, fake (tests) or consensus."""
    sampling: str
    """JSON of the sampling parameters and the token budget of the final attempt."""
    raw_output: str
    """The model's text exactly as it came back."""
    prompt_tokens: int
    """Tokens of the prompt the engine evaluated."""
    completion_tokens: int
    """Tokens of the answer."""
    latency_ms: float
    """Time of the engine call (on vLLM: the batch's, shared by its requests)."""
    attempts: int
    """Tries it took (a retry changes something: a larger token budget, or the parse error quoted)."""
    cached: bool
    """True when the answer came from the completion cache."""
    truncation: str
    """What the truncation policy cut from the unit's transcript; empty when nothing."""
    run_id: str
    """The run that produced the label (its manifest's run_id)."""

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


class ConsensusRow(LabelRow):
    """A consensus label: a label row (``backend`` consensus) plus how the sources voted on the unit."""

    sources: int
    """How many sources gave the unit an ok label (0: every source failed, and the row is a failure)."""
    share: float | None
    """The share of those sources that gave the consensus value."""
    disputed: bool
    """The sources did not all give the same value."""
    majority: int | None = None
    """The majority value (with the tie rule in the manifest)."""
    dawid_skene: int | None = None
    """The Dawid-Skene value (three or more sources)."""
    dawid_skene_probability: float | None = None
    """Its posterior probability."""
    votes: str
    """JSON, source name -> the value it gave."""


CONSENSUS_COLUMNS = [name for name in ConsensusRow.model_fields if name not in LabelRow.model_fields]
"""Columns a consensus run's labels have besides the label columns."""
