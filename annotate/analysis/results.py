"""Typed results of validate, agree and diff: what agreement.json holds and what the reports read.

Undefined statistics are NaN in memory and null in every file: :meth:`Result.write` is the one writer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from annotate.runs.manifest import RunManifest

Interval = tuple[float, float]
"""A 95% interval; both bounds NaN when the statistic was undefined in most resamples."""

PAPER_STATISTICS = [
    "percent_agreement",
    "cohen_kappa",
    "kappa_linear",
    "kappa_quadratic",
    "krippendorff_alpha",
    "gwet_ac1",
]
"""The columns a paper's agreement table prints, in order."""


class Result(BaseModel):
    """Base of every result: NaN is written as null (report/ writes it as JSON beside a CSV table)."""

    model_config = ConfigDict(ser_json_inf_nan="null", extra="forbid")

    def as_json(self) -> dict[str, Any]:
        """The result as agreement.json holds it (NaN as None)."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


class PairStatistics(Result):
    """Agreement of two coders on the same items."""

    n: int
    percent_agreement: float
    cohen_kappa: float
    kappa_linear: float = float("nan")
    """Ordinal scales only."""
    kappa_quadratic: float = float("nan")
    """Ordinal scales only."""
    krippendorff_alpha: float
    gwet_ac1: float

    @classmethod
    def of(cls, stats: dict[str, float]) -> PairStatistics:
        return cls.model_validate(stats)


class ClassScore(Result):
    precision: float
    recall: float
    support: int


class MultiCoderStatistics(Result):
    """Agreement of several coders (repeats, or three or more runs) on the items all of them labelled."""

    units: int
    coders: int
    pairwise_kappa: list[list[float]]
    mean_pairwise_kappa: float
    fleiss_kappa: float
    krippendorff_alpha: float
    identical_share: float
    """Share of units labelled identically by every coder."""


# ------------------------------------------------------------------------------------------ validate


class AnnotatorComparison(Result):
    llm_vs: dict[str, PairStatistics] = Field(default_factory=dict)
    """The LLM against each annotator."""
    human_pairs: dict[str, PairStatistics] = Field(default_factory=dict)
    """Annotator against annotator on the same items: the ceiling the LLM is judged by."""
    human_mean_kappa: float | None = None


class ReliabilityBin(Result):
    low: float
    high: float
    n: int
    confidence: float
    """Mean confidence of the labels in the bin."""
    accuracy: float
    """Share of them that equal the gold label."""


class CoveragePoint(Result):
    deferred: float
    """Share of the least confident labels handed to humans."""
    kept: int
    accuracy: float
    cohen_kappa: float
    """Agreement with gold of the labels kept."""


class Calibration(Result):
    """How well the model's confidence in its chosen label matches how often that label is right."""

    n: int
    mean_confidence: float
    accuracy: float
    ece: float
    """Expected calibration error: the bins' |confidence - accuracy|, weighted by their share of labels."""
    ece_if_calibrated: float | None = None
    """The mean ECE a perfectly calibrated labeller shows with these confidences at this n: small samples
    alone put the ECE this far from 0."""
    ece_ci95: tuple[float, float] | None = None
    auroc: float
    """How well confidence separates right from wrong labels (0.5: not at all); NaN with fewer than 5 of either."""
    auroc_ci95: tuple[float, float] | None = None
    brier: float
    """Mean squared difference between confidence and being right."""
    reliability: list[ReliabilityBin]
    risk_coverage: list[CoveragePoint]
    notes: list[str] = Field(default_factory=list)
    """What limits these figures (few items, too few right or wrong labels)."""


class Worth(Result):
    """What a labeller is worth for one coefficient, in human labels per 100 coded."""

    value: float | None
    """Effective human labels per 100 coded: 100 x human-only variance / variance of the prediction-powered
    estimate with shares chosen out of sample (100: no gain); null when not estimable."""
    low: float | None
    high: float | None
    """95% chat-bootstrap interval, the choice of shares repeated in every resample (docs/methods.md)."""
    status: Literal["shown", "none", "not_estimable"] = "shown"
    """``none``: the estimate gives the LLM labels no share (the value is exactly 100)."""
    note: str | None = None
    """Why the value is what it is, when that needs saying."""

    @property
    def saves(self) -> bool:
        """The labels save human work, and the interval says so too (its low end above 100)."""
        return self.status == "shown" and self.low is not None and self.low > 100

    def shown(self) -> str:
        """As tables show it: "none", "–" (not estimable) or "167 [119, 194]"."""
        if self.status == "not_estimable" or self.value is None:
            return "–"
        if self.status == "none":
            return "none"
        low = "–" if self.low is None else f"{self.low:.0f}"
        high = "–" if self.high is None else f"{self.high:.0f}"
        return f"{self.value:.0f} [{low}, {high}]"


class VariableValidation(PairStatistics):
    """One variable: the LLM's labels against gold."""

    variable: str
    task: str
    scale: str
    categories: list[int]
    category_labels: dict[str, str]
    chats: int
    ci95: dict[str, Interval]
    """95% chat-bootstrap intervals by statistic name."""
    prevalence_gold: dict[int, float]
    prevalence_llm: dict[int, float]
    confusion: list[list[int]]
    """Rows: gold label; columns: LLM label; in ``categories`` order."""
    per_class: dict[int, ClassScore]
    by_annotator: AnnotatorComparison | None = None
    calibration: Calibration | None = None
    """When the labels carry probabilities."""
    expected_label: PairStatistics | None = None
    """The probability-weighted label (rounded to the nearest value) against gold: ordinal and binary scales."""
    by_dispute: dict[str, PairStatistics] | None = None
    """For a consensus run: agreement on the units its sources ``disputed`` and on the ``undisputed`` ones."""
    notes: list[str] = Field(default_factory=list)
    """Degenerate cases, said plainly (a coder that used one label; calibration on too few items)."""
    worth: Worth | None = None
    """What the run's labels are worth for estimating this variable's mean, in human labels per 100 coded: the gold
    taken as a sample coded from a much larger set of units the LLM labelled like these (the prediction-powered
    estimate's variance against the gold alone, with the share and evidence test of annotate estimate)."""


class Item(Result):
    chat_id: str
    round: int | None
    variable: str


class FailedItem(Item):
    status: str
    """The failure row's status (parse_error, schema_error, length, backend_error)."""


class Disagreement(Result):
    variable: str
    task: str
    chat_id: str
    round: int | None
    gold: int
    llm: int
    direction: Literal["over", "under"]
    truncation: str
    context: str = ""
    target: str = ""


class Unmatched(Result):
    gold_not_labelled: list[Item]
    failed_labels: list[FailedItem]
    labels_without_gold: int


class RunDescription(Result):
    """Which run a result describes, from its manifest."""

    dir: str
    run_id: str | None
    backend: str | None
    model: dict[str, Any] = Field(default_factory=dict)
    sampling: dict[str, Any] | None = None
    prompts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    incomplete: str | None = None
    """Set when the run did not finish: what is reported covers the units labelled so far."""

    @classmethod
    def of(cls, run_dir: Path, manifest: RunManifest) -> RunDescription:
        return cls(
            dir=str(run_dir),
            run_id=manifest.run_id,
            backend=manifest.backend,
            model=manifest.model,
            sampling=manifest.sampling,
            prompts={task: entry.model_dump() for task, entry in manifest.prompts.items()},
        )

    def short(self) -> str:
        return f"{self.dir} ({self.backend}, {self.model.get('name')}, {self.model.get('engine')})"


class GoldDescription(Result):
    path: str
    annotators: list[str]
    items: int
    consensus: str | None


class Bootstrap(Result):
    resamples: int
    unit: str = "chat"
    seed: int


class ValidationResult(Result):
    run: RunDescription
    gold: GoldDescription
    repeat: int
    bootstrap: Bootstrap
    variables: list[VariableValidation]
    unmatched: Unmatched
    disagreements: list[Disagreement]


# --------------------------------------------------------------------------------------------- agree


class PairAgreement(PairStatistics):
    ci95: dict[str, Interval]
    confusion: list[list[int]]
    note: str | None = None
    """Set when kappa is not defined: which coder used a single label."""


class VariableAgreement(Result):
    """One variable across repeats (``repeats`` set) or across runs (``pairs`` set)."""

    variable: str
    task: str
    scale: str
    categories: list[int]
    items_left_out: int
    """Items without an ok label from every coder: left out of every statistic."""
    repeats: MultiCoderStatistics | None = None
    pairs: dict[str, PairAgreement] = Field(default_factory=dict)
    all_runs: MultiCoderStatistics | None = None
    """Three or more runs: all of them together."""


class AgreementResult(Result):
    mode: Literal["repeats", "runs"]
    runs: list[RunDescription]
    coders: list[str]
    repeat: int | None = None
    bootstrap: Bootstrap | None = None
    differences: dict[str, list[str]] = Field(default_factory=dict)
    """For each pair of runs: the configuration that differs, named from the manifests."""
    variables: list[VariableAgreement]
    label: str = "chosen"
    """``chosen`` labels, or ``expected``: the value nearest the probability-weighted mean."""


# ---------------------------------------------------------------------------------------------- diff


class SideDescription(Result):
    hash: str
    parent: str | None
    changelog: str
    rubric: str


class SideRun(Result):
    dir: str
    model_calls: int
    cache_hits: int
    prompt_tokens: int
    evaluated_prompt_tokens: int
    completion_tokens: int
    seconds: float


class Flip(Result):
    chat_id: str
    round: int | None
    values: dict[str, int]
    """Side name -> label."""
    raw: dict[str, str]
    """Side name -> the model's raw output."""
    target: str
    """What the model rated."""


class GoldChange(Result):
    n: int
    by_side: dict[str, PairStatistics] = Field(default_factory=dict)
    change: dict[str, float] = Field(default_factory=dict)
    """Second side minus first, by statistic."""
    change_ci95: dict[str, Interval] = Field(default_factory=dict)
    """Paired chat bootstrap: both sides scored on the same resampled chats."""


class VariableDiff(Result):
    variable: str
    scale: str
    categories: list[int]
    n: int
    not_compared: int
    between_versions: PairStatistics
    transitions: list[list[int]]
    """Rows: first side's label; columns: second side's."""
    flipped: list[Flip]
    gold: GoldChange | None = None


class DiffResult(Result):
    task: str
    sides: list[str]
    """The two sides' names: versions (``v1``, ``v2``) or task sets."""
    versions: dict[str, SideDescription]
    text_diff: str
    gold_path: str | None = None
    gold_sha256: str | None = None
    """The gold's content hash: this gold chose a prompt, so ``estimate`` warns when it meets it again."""
    runs: dict[str, SideRun] = Field(default_factory=dict)
    variables: list[VariableDiff] = Field(default_factory=list)
