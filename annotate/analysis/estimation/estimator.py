"""``annotate estimate``: regression coefficients (or group means) from LLM labels plus a human sample.

Three estimators side by side, each with a 95% interval: the LLM labels alone (biased when the
labeller errs, and its interval ignores that), the human labels alone (weighted by inverse inclusion
probabilities), and the prediction-powered estimate that combines both (see ppi.py). Units are the
run's label units; when a chat has several (per-round variables), intervals are clustered by chat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from annotate.analysis.estimation import combine, ppi
from annotate.analysis.estimation.estimate_data import EstimateData, estimate_data
from annotate.analysis.estimation.estimate_results import EstimateResult, Estimator, ModelEstimate, TermEstimate
from annotate.analysis.estimation.options import EstimateInputs, EstimateOptions
from annotate.analysis.estimation.worth import worth as labeller_worth
from annotate.analysis.results import Worth
from annotate.prompts.library import PromptLibrary

LEVEL = ppi.LEVEL
FEW_CHATS_FOR_INTERVALS = 40
"""Below this many coded chats `estimate` warns that its intervals are wide and rest on few chats."""


def estimate(inputs: EstimateInputs, options: EstimateOptions, library: PromptLibrary | None = None) -> EstimateResult:
    """Every requested model, estimated three ways."""
    data = estimate_data(inputs, options, library)
    warnings = list(data.warnings)
    gold_hash = inputs.gold.sha256
    used_by = dict(options.development_gold).get(gold_hash)
    if used_by:
        warnings.append(
            f"{inputs.gold.path} is the gold a prompt diff used to choose a prompt ({used_by}): estimates on the "
            "same gold are optimistic; code a fresh sample"
        )
    models = [_model(model, options) for model in data.models]
    few = sorted({m.outcome for m in models if m.coded_chats < FEW_CHATS_FOR_INTERVALS})
    if few:
        warnings.append(
            f"{', '.join(few)}: fewer than {FEW_CHATS_FOR_INTERVALS} coded chats; the intervals are wide and rest "
            "on few independent pieces of evidence (docs/methods.md shows their coverage at 20)"
        )
    return EstimateResult(
        run_dir=str(inputs.run.path),
        gold=str(inputs.gold.path),
        gold_sha256=gold_hash,
        family=options.family,
        label=options.label,
        level=LEVEL,
        target_width=options.target_width,
        warnings=warnings,
        models=models,
    )


def forecast_worth(inputs: EstimateInputs, options: EstimateOptions, library: PromptLibrary | None = None) -> Worth:
    """The worth of the run's labels for the first model's first coefficient (a variable's mean, for validate), as
    a forecast: the gold taken as the coded sample of a study with endlessly many more LLM-labelled units."""
    model = estimate_data(inputs, options, library).models[0]
    parts = ppi.decompose(model.sample, model.family)
    return labeller_worth(parts, ppi.fits(parts, options.seed)["human_only"], options.seed, unbounded=True)[0]


def mean_worth(
    predicted: NDArray[np.float64],
    coded: NDArray[np.int64],
    human: NDArray[np.float64],
    inclusion: NDArray[np.float64],
    chats: NDArray[np.int64],
    seed: int = 0,
) -> Worth:
    """The worth of labels of every unit (``predicted``) for the mean over the units, ``coded`` (positions) being
    coded with ``human`` at ``inclusion`` probability: what ``annotate estimate`` reports for ``y ~ 1`` on the
    same study (``learn`` calls it, so the two commands give one figure)."""
    sample = ppi.sample(np.ones((len(predicted), 1)), predicted, coded, human, inclusion, chats)
    parts = ppi.decompose(sample, "ols")
    return labeller_worth(parts, ppi.fits(parts, seed)["human_only"], seed)[0]


def _model(model: EstimateData, options: EstimateOptions) -> ModelEstimate:
    sample = model.sample
    parts = ppi.decompose(sample, model.family)
    fits = ppi.fits(parts, options.seed)
    per_100 = labeller_worth(parts, fits["human_only"], options.seed)
    combined = _combined(model, options)
    own = {
        name: ppi.ppi(sample.predicting(values), model.family, seed=options.seed) for name, values in model.own.items()
    }
    needed = {
        name: ppi.labels_for_width(fits[name], sample.n, model.target_width, LEVEL) if model.target_width else None
        for name in ("human_only", "ppi")
    }
    terms = []
    for i, term in enumerate(model.terms):
        estimators = {name: _estimator(fit, i) for name, fit in fits.items()}
        by_labeller = {name: _estimator(fit, i) for name, fit in own.items()}
        terms.append(
            TermEstimate(
                term=term,
                **estimators,
                lam=_number(fits["ppi"].lam[i]),
                effective_human_labels=_effective(per_100[i], sample.n),
                effective_note=per_100[i].note,
                human_labels_for_target=_needed(needed["human_only"], i),
                ppi_human_labels_for_target=_needed(needed["ppi"], i),
                worth=per_100[i],
                combined=_estimator(combined[0], i) if combined else None,
                combined_lam=_number(combined[0].lam[i]) if combined else None,
                combined_worth=combined[1][i] if combined else None,
                by_labeller=by_labeller,
                robustness=robustness(by_labeller),
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
        measured_regressors=model.measured,
        labellers=model.labellers,
        combination=_combination(model, options),
        outcome_scale=[int(c) for c in model.categories],
        reference_levels=model.reference_levels,
    )


def _combined(model: EstimateData, options: EstimateOptions) -> tuple[ppi.Fit, list[Worth]] | None:
    """The prediction-powered fit with the cross-fitted combination standing in for the run's label."""
    if model.features is None:
        return None
    predicted = combine.cross_fitted(model.features, model.sample, model.bounds, options.folds, options.seed)
    parts = ppi.decompose(model.sample.predicting(predicted), model.family)
    fits = ppi.fits(parts, options.seed)
    return fits["ppi"], labeller_worth(parts, fits["human_only"], options.seed)


def _combination(model: EstimateData, options: EstimateOptions) -> str | None:
    if model.features is None:
        return None
    who = " + ".join(model.labellers) if len(model.labellers) > 1 else f"{model.labellers[0]} (recalibrated)"
    return (
        f"{who}: the human label predicted from the labels' probabilities by a ridge fit that never sees the chat's "
        f"own human labels (reading chosen in {options.folds} folds of chats, seed {options.seed}; docs/methods.md)"
    )


def robustness(by_labeller: dict[str, Estimator]) -> str | None:
    """A line when the labellers' own estimates disagree in sign or in whether the interval excludes zero."""
    shown = {
        name: (e.estimate, e.low, e.high)
        for name, e in by_labeller.items()
        if e.estimate is not None and e.low is not None and e.high is not None
    }
    if len(shown) < 2:
        return None
    signs = {name: np.sign(value) for name, (value, _, _) in shown.items()}
    significant = {name: low > 0 or high < 0 for name, (_, low, high) in shown.items()}
    problems = []
    if len(set(signs.values())) > 1:
        problems.append("sign differs (" + ", ".join(f"{n} {v:+.2f}" for n, (v, _, _) in shown.items()) + ")")
    if len(set(significant.values())) > 1:
        yes = [n for n, s in significant.items() if s]
        no = [n for n, s in significant.items() if not s]
        problems.append(f"interval excludes 0 with {', '.join(yes)} but not with {', '.join(no)}")
    return "; ".join(problems) or None


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _estimator(fit: ppi.Fit, i: int) -> Estimator:
    if fit.problems[i]:
        return Estimator(estimate=None, se=None, low=None, high=None, not_estimable=fit.problems[i])
    low, high = fit.interval(LEVEL)
    return Estimator(estimate=float(fit.coef[i]), se=float(fit.se[i]), low=float(low[i]), high=float(high[i]))


def _effective(worth: Worth, n: int) -> float | None:
    """Human labels the PPI estimate is worth: the worth per 100 coded, scaled to the n coded."""
    return None if worth.value is None else worth.value * n / 100


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
            if term.combined is not None:
                row.update(combined=term.combined.estimate, combined_low=term.combined.low)
                row.update(combined_high=term.combined.high, combined_lam=_rounded(term.combined_lam, 3))
            for name, own in term.by_labeller.items():
                row.update({f"ppi_{name}": own.estimate, f"ppi_{name}_low": own.low, f"ppi_{name}_high": own.high})
            row.update(
                units=model.units,
                human_labels=model.human_labels,
                coded_chats=model.coded_chats,
                effective_human_labels=_rounded(term.effective_human_labels, 1),
                lam=_rounded(term.lam, 3),
                worth_per_100=_rounded(term.worth.value if term.worth else None, 1),
                robustness=term.robustness or "",
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
