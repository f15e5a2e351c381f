"""Typed results of ``annotate learn``: what learning.json holds and what its page and the terminal read."""

from __future__ import annotations

from pydantic import Field

from annotate.analysis.results import Interval, Result, Worth


class CurveStatistics(Result):
    """Cross-validated agreement of the learned labels with the coded ones, learning from a share of the coded chats."""

    fraction: float
    """The share of the coded chats the learner saw (in K-fold cross-validation over them)."""
    chats: int
    items: int
    kappa: float
    """Cohen's κ of the out-of-fold labels with the coded values (weighted by 1/inclusion probability)."""
    kappa_ci: Interval
    kappa_quadratic: float | None = None
    """Quadratically weighted κ (ordinal scales)."""
    kappa_quadratic_ci: Interval | None = None
    auroc: float
    """Binary scales: AUROC of the probability of 1. Others: the concordance of the expected value with the coded
    value (the chance that of two items with different codes, the higher one gets the higher prediction)."""
    auroc_ci: Interval


class WorthFigure(Result):
    """What the learned labels save: ρ with the codes, and the worth ``annotate estimate LEARNED --gold CODED
    --label expected`` reports for the variable's mean (the same function computes both)."""

    rho: float
    """Correlation of the learned expected value (out of fold) with the coded value: a description, not a worth."""
    rho_ci: Interval
    worth: Worth
    """Human labels per 100 coded for the mean over the units (shares chosen out of sample; nothing shown under
    60 effective coded chats, where the ratio cannot be measured honestly). Regression effects may gain less."""


class VariableLearning(Result):
    variable: str
    scale: str
    units: int
    """Units the learned labeller labelled."""
    coded_chats: int
    coded_items: int
    cv_kappa: float
    """κ of the cross-fitted labels with the coded values over all coded chats (the curve's last point)."""
    curve: list[CurveStatistics]
    zero_shot_kappa: float | None = None
    """The source run's own LLM labels on the same coded units (null when it has none)."""
    zero_shot_kappa_ci: Interval | None = None
    zero_shot_items: int = 0
    worth: WorthFigure
    more_coding: str
    """Whether coding more is likely to pay, from the curve."""
    penalties: list[float]
    notes: list[str] = Field(default_factory=list)


class LearningResult(Result):
    run_dir: str
    """The learned run directory written."""
    source_run: str
    coded: str
    features: list[str]
    folds: int
    seed: int
    variables: list[VariableLearning]
