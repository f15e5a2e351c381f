"""What ``annotate estimate`` is asked to estimate: the options every step of the wing reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotate.analysis.estimation.glm import Family


@dataclass(frozen=True)
class EstimateOptions:
    gold: Path
    covariates: Path | None = None
    formulas: tuple[str, ...] = ()
    """``outcome ~ terms`` (formulaic syntax), one model each; without any, each variable's mean (by ``by``)."""
    by: str | None = None
    variables: tuple[str, ...] = ()
    family: Family = "ols"
    label: str = "chosen"
    """Which LLM label: ``chosen`` (the answer) or ``expected`` (the probability-weighted value)."""
    target_width: float | None = None
    drop_missing: bool = False
    transcripts: tuple[Path, ...] = ()
    labellers: tuple[Path, ...] = ()
    """Other runs over the same chats: combined with the run's labels (cross-fitted), each also on its own."""
    recalibrate: bool = False
    """Combine (cross-fitted) the run's own label probabilities, as for several labellers."""
    folds: int = 10
    """Cross-fitting folds of the combination (chats split at random with ``seed``)."""
    seed: int = 0
    development_gold: tuple[tuple[str, str], ...] = ()
    """(sha256, what used it) of gold files that chose a prompt (read from prompt diffs' outputs by the command)."""
