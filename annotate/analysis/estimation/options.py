"""What ``annotate estimate`` reads (its inputs, read by the command) and is asked to estimate (its options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from annotate.analysis.estimation.glm import Family

if TYPE_CHECKING:
    from annotate.ingest.model import Chat
    from annotate.runs.coded import Covariates, Gold
    from annotate.runs.reader import Run


@dataclass(frozen=True)
class EstimateInputs:
    """Everything an estimate reads, already read: the wing opens no file."""

    run: Run
    chats: list[Chat]
    """The run's chats (their meta fields are covariates)."""
    gold: Gold
    covariates: Covariates | None = None
    labellers: tuple[Run, ...] = ()
    """Other runs over the same chats: combined with the run's labels (cross-fitted), each also on its own."""


@dataclass(frozen=True)
class EstimateOptions:
    formulas: tuple[str, ...] = ()
    """``outcome ~ terms`` (formulaic syntax), one model each; without any, each variable's mean (by ``by``)."""
    by: str | None = None
    variables: tuple[str, ...] = ()
    family: Family = "ols"
    label: str = "chosen"
    """Which LLM label: ``chosen`` (the answer) or ``expected`` (the probability-weighted value)."""
    target_width: float | None = None
    drop_missing: bool = False
    recalibrate: bool = False
    """Combine (cross-fitted) the run's own label probabilities, as for several labellers."""
    folds: int = 10
    """Cross-fitting folds of the combination (chats split at random with ``seed``)."""
    seed: int = 0
    development_gold: tuple[tuple[str, str], ...] = ()
    """(sha256, what used it) of gold files that chose a prompt (read from prompt diffs' outputs by the command)."""
