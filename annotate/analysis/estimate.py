"""``annotate estimate``: regression coefficients (or group means) from LLM labels plus a human sample.

Three estimators side by side, each with a 95% interval: the LLM labels alone (biased when the
labeller errs, and its interval ignores that), the human labels alone (weighted by inverse inclusion
probabilities), and the prediction-powered estimate that combines both (see ppi.py). Units are the
run's label units; when a chat has several (per-round variables), intervals are clustered by chat.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from annotate.analysis import ppi
from annotate.analysis.estimate_data import EstimateData, estimate_data
from annotate.analysis.gold import development_gold
from annotate.analysis.results import EstimateResult, Estimator, ModelEstimate, TermEstimate
from annotate.labelling.library import PromptLibrary

LEVEL = 0.95
FEW_HUMAN_LABELS = 40


@dataclass(frozen=True)
class EstimateOptions:
    gold: Path
    covariates: Path | None = None
    formulas: tuple[str, ...] = ()
    """``outcome ~ terms`` (formulaic syntax), one model each; without any, each variable's mean (by ``by``)."""
    by: str | None = None
    variables: tuple[str, ...] = ()
    family: ppi.Family = "ols"
    label: str = "chosen"
    """Which LLM label: ``chosen`` (the answer) or ``expected`` (the probability-weighted value)."""
    target_width: float | None = None
    drop_missing: bool = False
    transcripts: tuple[Path, ...] = ()


def estimate(run_dir: Path, options: EstimateOptions, library: PromptLibrary | None = None) -> EstimateResult:
    """Every requested model, estimated three ways."""
    data = estimate_data(run_dir, options, library)
    warnings = list(data.warnings)
    gold_hash = hashlib.sha256(options.gold.read_bytes()).hexdigest()
    used_by = development_gold(gold_hash)
    if used_by:
        warnings.append(
            f"{options.gold} is the gold a prompt diff used to choose a prompt ({used_by}): estimates on the "
            "same gold are optimistic; code a fresh sample"
        )
    models = [_model(model) for model in data.models]
    few = sorted({m.outcome for m in models if m.human_labels < FEW_HUMAN_LABELS})
    if few:
        warnings.append(
            f"{', '.join(few)}: fewer than {FEW_HUMAN_LABELS} human labels; even with Student's t the intervals "
            "may cover a little less than 95% (bench/ppi_coverage.py --coded 20; see the README)"
        )
    return EstimateResult(
        run_dir=str(run_dir),
        gold=str(options.gold),
        gold_sha256=gold_hash,
        family=options.family,
        label=options.label,
        level=LEVEL,
        target_width=options.target_width,
        warnings=warnings,
        models=models,
    )


def _model(model: EstimateData) -> ModelEstimate:
    sample = model.sample
    fits = {
        "llm_only": ppi.llm_only(sample, model.family),
        "human_only": ppi.human_only(sample, model.family),
        "ppi": ppi.ppi(sample, model.family),
    }
    effective = ppi.effective_labels(fits["human_only"], fits["ppi"])
    needed = {
        name: ppi.labels_for_width(fits[name], model.target_width, LEVEL) if model.target_width else None
        for name in ("human_only", "ppi")
    }
    terms = []
    for i, term in enumerate(model.terms):
        estimators = {}
        for name, fit in fits.items():
            low, high = fit.interval(LEVEL, ppi.degrees_of_freedom(sample, name))
            estimators[name] = Estimator(
                estimate=float(fit.coef[i]), se=float(fit.se[i]), low=float(low[i]), high=float(high[i])
            )
        terms.append(
            TermEstimate(
                term=term,
                **estimators,
                lam=float(fits["ppi"].lam[i]),
                effective_human_labels=float(effective[i]),
                human_labels_for_target=_needed(needed["human_only"], i),
                ppi_human_labels_for_target=_needed(needed["ppi"], i),
            )
        )
    return ModelEstimate(
        outcome=model.outcome,
        formula=model.formula,
        family=model.family,
        clustered_by_chat=model.clustered,
        units=sample.big_n,
        human_labels=sample.n,
        chats=len(np.unique(sample.clusters_all)) if model.clustered else sample.big_n,
        design=model.design,
        terms=terms,
    )


def _needed(values: np.ndarray | None, i: int) -> float | None:
    return None if values is None else float(values[i])


def estimate_table(result: EstimateResult) -> pd.DataFrame:
    """estimate.csv: one row per (model, term), the three estimators side by side."""
    rows = []
    for model in result.models:
        for term in model.terms:
            row: dict[str, object] = {"outcome": model.outcome, "formula": model.formula, "term": term.term}
            for name in ("llm_only", "human_only", "ppi"):
                est: Estimator = getattr(term, name)
                row.update({f"{name}": est.estimate, f"{name}_low": est.low, f"{name}_high": est.high})
            row.update(
                units=model.units,
                human_labels=model.human_labels,
                effective_human_labels=round(term.effective_human_labels, 1),
                lam=round(term.lam, 3),
            )
            rows.append(row)
    return pd.DataFrame(rows)
