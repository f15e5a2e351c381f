"""Typed results of ``annotate estimate``: what estimate.json holds and what its reports read."""

from __future__ import annotations

from pydantic import Field

from annotate.analysis.results import Result, Worth


class Estimator(Result):
    estimate: float | None
    se: float | None
    low: float | None
    high: float | None
    """Bounds of the 95% interval (Student's t; degrees of freedom from the effective number of coded chats)."""
    not_estimable: str | None = None
    """Why there is no estimate (constant or separated labels, labels that do not vary behind the term, weights
    on too few chats); the other fields are then null."""


class TermEstimate(Result):
    """One coefficient (or group mean), three ways."""

    term: str
    llm_only: Estimator
    """The LLM labels of all units, as if they were true."""
    human_only: Estimator
    """The human labels alone, weighted by inverse inclusion probabilities."""
    ppi: Estimator
    """Prediction-powered: the human-only estimate, corrected by the LLM labels' own error over all units."""
    lam: float | None
    """The share of the LLM labels in this PPI estimate (0: ignored, so PPI equals human only): per term, the
    coded chats' shares (each half's chosen on the other half) averaged by weight."""
    effective_human_labels: float | None
    """Human labels the PPI estimate is worth: ``worth.value`` scaled to the coded units (null when not
    estimable)."""
    effective_note: str | None = None
    """The worth's note."""
    human_labels_for_target: float | None = None
    """Human labels the human-only interval would need to reach ``target_width`` (inf: unreachable)."""
    ppi_human_labels_for_target: float | None = None
    """The same for the PPI interval, with the LLM labels of all units as now."""
    worth: Worth | None = None
    """What the run's labels are worth for this coefficient, per 100 coded (shares chosen out of sample)."""
    combined: Estimator | None = None
    """Prediction-powered with the cross-fitted combination of the labellers' probabilities (--labellers or
    --recalibrate) in place of the run's label."""
    combined_lam: float | None = None
    combined_worth: Worth | None = None
    by_labeller: dict[str, Estimator] = Field(default_factory=dict)
    """Each labeller's own prediction-powered estimate (several labellers): the multiverse of labellers."""
    robustness: str | None = None
    """Set when the labellers' own estimates differ in sign or in significance: the finding hangs on the labeller."""


class ModelEstimate(Result):
    outcome: str
    formula: str
    family: str
    clustered_by_chat: bool
    units: int
    human_labels: int
    chats: int
    coded_chats: int
    """Chats with at least one coded unit: the independent pieces of evidence behind the intervals."""
    effective_coded_chats: float
    """Kish's effective number of coded chats under the design weights; the t intervals' degrees of freedom
    are this minus the number of terms."""
    design: str
    """How the human sample was drawn (from the gold's inclusion probabilities)."""
    terms: list[TermEstimate]
    measured_regressors: list[str] = Field(default_factory=list)
    """Regressors the LLM measured over all units (human values on the coded units: predict-then-debias)."""
    labellers: list[str] = Field(default_factory=list)
    """The runs whose labels went into the combination and the multiverse, the primary run first."""
    combination: str | None = None
    """How the combined prediction was made (labellers, folds), when one was."""
    outcome_scale: list[int] = Field(default_factory=list)
    """The outcome's values: coefficients are in its points."""
    reference_levels: dict[str, str] = Field(default_factory=dict)
    """Per categorical regressor (``C(x)``): the level the other levels' coefficients are differences from."""


class EstimateResult(Result):
    run_dir: str
    gold: str
    gold_sha256: str
    family: str
    label: str
    """``chosen`` or ``expected``: which LLM label stood in for the human one."""
    level: float
    target_width: float | None
    warnings: list[str]
    models: list[ModelEstimate]
