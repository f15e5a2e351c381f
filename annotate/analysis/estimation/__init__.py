"""The estimator's wing: effects from LLM labels plus a human sample, and what a labeller is worth.

Everything outside this folder uses only what is named here (an import-linter contract in pyproject.toml):
``estimate`` (every requested model, three ways) with its options, ``forecast_worth`` (the worth validate
shows) and ``mean_worth`` (the worth learn shows, from arrays); reports read the typed results from
``estimate_results``.

Inside: ``options`` (what to estimate), ``estimator`` (each model three ways, with its worth),
``estimate_data`` (the units, gold and covariates of a model), ``formulas`` (formulas checked before they
run), ``glm`` (weighted fits with influence), ``ppi`` (one decomposition per model; the three estimators),
``shares`` (the LLM labels' share, chosen out of sample), ``worth`` (a labeller's worth in human labels),
``combine`` and ``labellers`` (several labellers), ``measured`` (LLM-measured regressors).
"""

from __future__ import annotations

from annotate.analysis.estimation.estimate_results import EstimateResult, Estimator, ModelEstimate, TermEstimate
from annotate.analysis.estimation.estimator import estimate, estimate_table, forecast_worth, mean_worth
from annotate.analysis.estimation.options import EstimateInputs, EstimateOptions

__all__ = [
    "EstimateInputs",
    "EstimateOptions",
    "EstimateResult",
    "Estimator",
    "ModelEstimate",
    "TermEstimate",
    "estimate",
    "estimate_table",
    "forecast_worth",
    "mean_worth",
]
