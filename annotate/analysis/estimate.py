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
from annotate.analysis.estimate_results import EstimateResult, Estimator, ModelEstimate, TermEstimate
from annotate.analysis.gold import development_gold
from annotate.labelling.library import PromptLibrary

LEVEL = ppi.LEVEL
FEW_CODED_CHATS = 40


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
    few = sorted({m.outcome for m in models if m.coded_chats < FEW_CODED_CHATS})
    if few:
        warnings.append(
            f"{', '.join(few)}: fewer than {FEW_CODED_CHATS} coded chats; the intervals are wide and rest on few "
            "independent pieces of evidence (docs/methods.md shows their coverage at 20)"
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


MIN_CODED_CHATS_FOR_WORTH = 40
"""Below this many coded chats the ratio of two estimated variances is too noisy to report as labels saved."""


def _model(model: EstimateData) -> ModelEstimate:
    sample = model.sample
    fits = ppi.three(sample, model.family)
    worth, note = _worth(fits, sample)
    needed = {
        name: ppi.labels_for_width(fits[name], sample.n, model.target_width, LEVEL) if model.target_width else None
        for name in ("human_only", "ppi")
    }
    terms = []
    for i, term in enumerate(model.terms):
        estimators = {name: _estimator(fit, i) for name, fit in fits.items()}
        lam = fits["ppi"].lam[i]
        terms.append(
            TermEstimate(
                term=term,
                **estimators,
                lam=None if np.isnan(lam) else float(lam),
                effective_human_labels=None if np.isnan(worth[i]) else float(worth[i]),
                effective_note=note[i],
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
        chats=len(np.unique(sample.clusters_all)),
        coded_chats=sample.coded_chats,
        effective_coded_chats=round(sample.kish_chats, 2),
        design=model.design,
        terms=terms,
    )


def _estimator(fit: ppi.Fit, i: int) -> Estimator:
    if fit.problems[i]:
        return Estimator(estimate=None, se=None, low=None, high=None, not_estimable=fit.problems[i])
    low, high = fit.interval(LEVEL)
    return Estimator(estimate=float(fit.coef[i]), se=float(fit.se[i]), low=float(low[i]), high=float(high[i]))


def _worth(fits: dict[str, ppi.Fit], sample: ppi.Sample) -> tuple[np.ndarray, list[str | None]]:
    """Effective human labels per term, where there are enough coded chats for the ratio to mean something."""
    values = ppi.effective_labels(fits["human_only"], fits["ppi"], sample.n)
    if sample.coded_chats < MIN_CODED_CHATS_FOR_WORTH:
        reason = f"not shown below {MIN_CODED_CHATS_FOR_WORTH} coded chats (the ratio is too noisy)"
        return np.full(len(values), np.nan), [reason] * len(values)
    notes = [None if np.isfinite(v) else "not estimable" for v in values]
    return np.where(np.isfinite(values), values, np.nan), notes


def _needed(values: np.ndarray | None, i: int) -> float | None:
    return None if values is None or np.isnan(values[i]) else float(values[i])


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
                coded_chats=model.coded_chats,
                effective_human_labels=_rounded(term.effective_human_labels, 1),
                lam=_rounded(term.lam, 3),
                not_estimable="; ".join(
                    f"{name}: {getattr(term, name).not_estimable}"
                    for name in ("llm_only", "human_only", "ppi")
                    if getattr(term, name).not_estimable
                ),
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
