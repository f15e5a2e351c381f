"""The data an estimate needs: one row per label unit with its LLM label, covariates and, when coded, the
human label with its inclusion probability. Every problem with the inputs is one line naming the file."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from annotate.analysis.estimation import ppi
from annotate.analysis.estimation.combine import LabellerFeatures
from annotate.analysis.estimation.formulas import RESERVED, design_matrix, required_columns, why_collinear
from annotate.analysis.estimation.labellers import Labeller, features, labellers_of, own_labels
from annotate.analysis.estimation.measured import human_values, measured_regressors, with_llm_values
from annotate.analysis.estimation.options import EstimateInputs, EstimateOptions
from annotate.analysis.excerpts import VariableInfo, variable_info
from annotate.analysis.gold import check_scales, truth_of
from annotate.errors import AnnotateError, InputError
from annotate.prompts.library import PromptLibrary

if TYPE_CHECKING:
    from annotate.runs.coded import Gold

MIN_PER_TERM = 3
"""Coded chats needed per model term (and never fewer than MIN_CODED_CHATS)."""
MIN_CODED_CHATS = 10
DESIGN_TOLERANCE = 0.1
"""How far (as a share of the units) the coded items' sum of 1/pi may stray beyond 4 standard errors."""


@dataclass(frozen=True)
class EstimateData:
    outcome: str
    formula: str
    family: ppi.Family
    terms: list[str]
    sample: ppi.Sample
    clustered: bool
    design: str
    target_width: float | None
    measured: list[str] = field(default_factory=list)
    """Regressors whose values over all units are LLM labels (human labels on the coded units)."""
    features: list[LabellerFeatures] | None = None
    """Every labeller's reading of every unit: the input of the cross-fitted combination (None: none asked)."""
    bounds: tuple[float, float] = (0.0, 1.0)
    """The outcome's smallest and largest value (predictions are kept inside)."""
    categories: list[int] = field(default_factory=list)
    own: dict[str, np.ndarray] = field(default_factory=dict)
    labellers: list[str] = field(default_factory=list)
    """The runs behind ``features`` and ``own``, the primary run first."""
    reference_levels: dict[str, str] = field(default_factory=dict)
    """Per categorical regressor: the level its coefficients are differences from."""
    """Per labeller (several labellers only): its own label of every unit, for its own prediction-powered estimate."""


@dataclass
class Assembled:
    models: list[EstimateData] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def estimate_data(inputs: EstimateInputs, options: EstimateOptions, library: PromptLibrary | None) -> Assembled:
    run = inputs.run
    run_dir, labels, manifest = run.path, run.labels, run.manifest
    info = variable_info(labels, manifest, library)
    ok = labels[labels["status"] == "ok"]
    assembled = Assembled()
    formulas = _formulas(options, info, set(ok["variable"]))
    chats = _chat_table(inputs, assembled.warnings)
    gold = _gold(inputs.gold, info, assembled.warnings)
    several = bool(inputs.labellers)
    labellers = labellers_of(run, inputs.labellers) if several or options.recalibrate else []
    column = "value" if options.label == "chosen" else "expected"
    for outcome, rhs in formulas:
        units = _units(ok, outcome, options.label, run_dir)
        measured = measured_regressors(
            required_columns(rhs), {"round", *chats.columns}, set(ok["variable"]) - {outcome}
        )
        units = with_llm_values(units, ok, measured, column, f"{outcome} ~ {rhs}")
        units = _with_covariates(units, chats, rhs, inputs, options, assembled.warnings, measured)
        model = _model(outcome, rhs, units, gold, info[outcome], options, assembled.warnings, measured)
        assembled.models.append(_with_labellers(model, units, labellers, several, options, assembled.warnings))
    return assembled


def _with_labellers(
    model: EstimateData,
    units: pd.DataFrame,
    labellers: list[Labeller],
    several: bool,
    options: EstimateOptions,
    warnings: list[str],
) -> EstimateData:
    """The labellers' features for the combination, and each labeller's own labels (several labellers)."""
    if not labellers:
        return model
    categories = [int(c) for c in model.categories]
    used = labellers if several else labellers[:1]
    stacked = [features(labeller, units, model.outcome, categories) for labeller in used]
    own = {}
    if several:
        column = "value" if options.label == "chosen" else "expected"
        for labeller in labellers:
            own[labeller.name], missing = own_labels(labeller, units, model.outcome, column)
            if missing:
                warnings.append(
                    f"{model.outcome}: {labeller.name} has no ok label for {missing} of {len(units)} units (its "
                    "own estimate gives them its mean label; the combination marks them)"
                )
    return replace(model, features=stacked, own=own, labellers=[labeller.name for labeller in used])


def _formulas(options: EstimateOptions, info: dict[str, VariableInfo], labelled: set[str]) -> list[tuple[str, str]]:
    """(outcome, right-hand side) pairs: the formulas', or each variable's mean (by group)."""
    if options.formulas:
        return [_parse_formula(formula, labelled) for formula in options.formulas]
    variables = list(options.variables) or sorted(labelled)
    for variable in variables:
        if variable not in labelled:
            raise AnnotateError(f"--variable {variable}: the run has no ok labels of it")
    rhs = f"0 + C({options.by})" if options.by else "1"
    return [(variable, rhs) for variable in variables]


def _parse_formula(formula: str, labelled: set[str]) -> tuple[str, str]:
    lhs, tilde, rhs = formula.partition("~")
    outcome = lhs.strip()
    if not tilde or not rhs.strip():
        raise AnnotateError(f"formula '{formula}': write it as 'variable ~ terms'")
    if outcome not in labelled:
        known = ", ".join(sorted(labelled)) or "none"
        raise AnnotateError(f"formula '{formula}': '{outcome}' is not a variable of the run ({known})")
    return outcome, rhs.strip()


def _units(ok: pd.DataFrame, outcome: str, label: str, run_dir: Path) -> pd.DataFrame:
    """One row per (chat, round): the LLM label, averaged over repeats."""
    rows = ok[ok["variable"] == outcome]
    column = "value" if label == "chosen" else "expected"
    if column == "expected" and rows["expected"].isna().any():
        raise AnnotateError(
            f"{run_dir}: {int(rows['expected'].isna().sum())} {outcome} labels have no probabilities "
            "(the engine gave none): use --label chosen"
        )
    units = rows.groupby(["chat_id", "round"], dropna=False, sort=True)[column].mean().rename("yhat").reset_index()
    units["yhat"] = units["yhat"].astype(float)
    return units


def _chat_table(inputs: EstimateInputs, warnings: list[str]) -> pd.DataFrame:
    """Per chat: its meta fields, overridden by the covariates table where both have a column."""
    table = pd.DataFrame([{"chat_id": c.chat_id, **dict(c.meta)} for c in inputs.chats])
    if table.empty:
        table = pd.DataFrame({"chat_id": pd.Series(dtype=str)})
    if inputs.covariates is None:
        return table
    covariates, path = inputs.covariates.table, inputs.covariates.path
    for column in covariates.columns:
        if column in RESERVED and column != "chat_id":
            raise InputError(str(path), None, column, "a column the estimate uses itself; rename it")
    shared = [c for c in covariates.columns if c in table.columns and c != "chat_id"]
    if shared:
        warnings.append(f"{path}: {', '.join(shared)} also in the chats' meta; the table's values used")
    return table.drop(columns=shared).merge(covariates, on="chat_id", how="outer")


def _with_covariates(
    units: pd.DataFrame,
    chats: pd.DataFrame,
    rhs: str,
    inputs: EstimateInputs,
    options: EstimateOptions,
    warnings: list[str],
    measured: list[str],
) -> pd.DataFrame:
    needed = required_columns(rhs)
    available = {"round", *measured, *chats.columns} - {"chat_id"}
    unknown = [name for name in needed if name not in available]
    if unknown:
        covariates = inputs.covariates
        where = f"{covariates.path} or the chats' meta" if covariates else "the chats' meta (no --covariates)"
        known = ", ".join(sorted(available)) or "none"
        raise AnnotateError(f"formula names '{unknown[0]}', which is not a column of {where}; known: {known}")
    from_chats = [n for n in needed if n != "round" and n not in measured]
    merged = units.merge(chats[["chat_id", *from_chats]], on="chat_id", how="left")
    missing = merged[merged[needed].isna().any(axis=1)]["chat_id"].unique() if needed else []
    if len(missing):
        shown = ", ".join(sorted(map(str, missing))[:5]) + (" ..." if len(missing) > 5 else "")
        what = f"{len(missing)} of {merged['chat_id'].nunique()} chats have no {' / '.join(needed)} ({shown})"
        if not options.drop_missing:
            raise AnnotateError(f"{what}: add them, or pass --drop-missing to leave those chats out")
        warnings.append(f"{what}: dropped")
        merged = merged[~merged["chat_id"].isin(missing)]
    return merged.reset_index(drop=True)


def check_one_sample(coded: Gold) -> None:
    """Items of two draws (a second batch sampled after a learner saw the first) cannot be weighted as one sample:
    the second draw's probabilities depend on the first's codes. Refused until a two-phase estimator is proven."""
    gold = coded.table
    samples = sorted(set(gold["sample"]) - {""})
    if len(samples) > 1:
        first = gold[gold["sample"] == samples[1]].iloc[0]
        raise InputError(
            str(coded.path),
            int(first["line"]),
            "sample",
            f"the file mixes {len(samples)} draws ({', '.join(samples[:3])}): estimate one draw at a time (a batch "
            "drawn from a learned run goes with that learned run); combining batches is not supported",
        )


def _gold(coded: Gold, info: dict[str, VariableInfo], warnings: list[str]) -> pd.DataFrame:
    """The reference label per item with its inclusion probability (NaN when the file has none)."""
    gold, path = coded.table, coded.path
    check_scales(coded, {name: v.categories for name, v in info.items()})
    check_one_sample(coded)
    key = ["chat_id", "round", "variable"]
    truth = truth_of(gold)
    conflict = gold.groupby(key, dropna=False, sort=False)["inclusion_probability"].transform("nunique") > 1
    if conflict.any():
        row = gold[conflict].iloc[1]
        raise InputError(
            str(path),
            int(row["line"]),
            "inclusion_probability",
            f"annotators give item ({row['chat_id']}, {row['variable']}) different inclusion probabilities",
        )
    probability = gold.groupby(key, dropna=False, sort=False)["inclusion_probability"].first().reset_index()
    if gold["inclusion_probability"].isna().all():
        warnings.append(
            f"{path} has no inclusion_probability column: its items are treated as a simple random sample of the units"
        )
    return truth.merge(probability, on=key, how="left")


def _model(
    outcome: str,
    rhs: str,
    units: pd.DataFrame,
    gold: pd.DataFrame,
    info: VariableInfo,
    options: EstimateOptions,
    warnings: list[str],
    measured: list[str],
) -> EstimateData:
    coded = gold[gold["variable"] == outcome].drop(columns="variable")
    joined = units.merge(coded, on=["chat_id", "round"], how="left")
    labelled = np.flatnonzero(joined["value"].notna().to_numpy())
    stray = len(coded) - len(labelled)
    if stray:
        warnings.append(f"{outcome}: {stray} gold items are not among the run's ok units used here and are left out")
    x_all, x_human, terms = _terms(rhs, joined, labelled, gold, measured, f"{outcome} ~ {rhs}")
    clusters = pd.factorize(joined["chat_id"])[0].astype(np.int64)
    _check_sizes(outcome, rhs, x_all, labelled, clusters, x_human, list(terms))
    if options.family == "logit" and not set(info.categories) <= {0, 1}:
        raise AnnotateError(f"--family logit needs a 0/1 outcome; {outcome} takes {info.categories}")
    inclusion = joined["inclusion_probability"].to_numpy(dtype=float)[labelled]
    has_design = not np.isnan(inclusion).any()
    if has_design:
        check_design(f"{outcome} ~ {rhs}", inclusion, len(joined), warnings)
    data = ppi.sample(
        x_all,
        joined["yhat"].to_numpy(dtype=float),
        labelled.astype(np.int64),
        joined["value"].to_numpy(dtype=float)[labelled],
        inclusion if has_design else None,
        clusters,
        x_human,
    )
    _check_weights(f"{outcome} ~ {rhs}", data, warnings)
    return EstimateData(
        outcome=outcome,
        formula=f"{outcome} ~ {rhs}",
        family=options.family,
        terms=terms,
        sample=data,
        clustered=bool(joined["chat_id"].duplicated().any()),
        design="inclusion probabilities from the gold" if has_design else "simple random sample (assumed)",
        target_width=options.target_width,
        measured=measured,
        bounds=(float(min(info.categories)), float(max(info.categories))),
        categories=list(info.categories),
        reference_levels=reference_levels(terms, joined),
    )


def reference_levels(terms: list[str], table: pd.DataFrame) -> dict[str, str]:
    """For each ``C(x)`` in the terms, the level of ``x`` that has no coefficient of its own (treatment coding)."""
    found = {}
    for name in sorted({t.split("[")[0][2:-1] for t in terms if t.startswith("C(") and "[T." in t}):
        if name in table.columns:
            shown = {t.split("[T.", 1)[1].rstrip("]") for t in terms if t.startswith(f"C({name})[T.")}
            rest = sorted(str(v) for v in table[name].dropna().unique() if str(v) not in shown)
            if len(rest) == 1:
                found[name] = rest[0]
    return found


def _terms(
    rhs: str, joined: pd.DataFrame, labelled: np.ndarray, gold: pd.DataFrame, measured: list[str], formula: str
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The model's terms over all units (LLM values of measured regressors) and, when some regressor is
    LLM-measured, over the coded units with human values: one matrix, so both have the same columns."""
    if not measured:
        x_all, terms = design_matrix(rhs, joined)
        return x_all, None, terms
    human = human_values(joined.iloc[labelled], gold, measured, formula)
    both, terms = design_matrix(rhs, pd.concat([joined, human[joined.columns]], ignore_index=True))
    return both[: len(joined)], both[len(joined) :], terms


def check_design(model: str, inclusion: np.ndarray, units: int, warnings: list[str]) -> None:
    """The coded items' 1/pi must add up to about the number of units they were drawn from (Horvitz-Thompson).

    Far off, the probabilities do not describe a sample of these units (a design that gave some units no
    chance, a coding file from another run), and every weighted estimate would be wrong: stop. A little
    short, the coders skipped items: say so, since the estimate then assumes they were skipped at random."""
    total = float(np.sum(1 / inclusion))
    spread = 4 * float(np.sqrt(np.sum((1 - inclusion) / inclusion**2)))
    gap = abs(total - units)
    if gap > spread + DESIGN_TOLERANCE * units:
        raise AnnotateError(
            f"{model}: the {len(inclusion)} coded items' inclusion probabilities add up to {total:.0f} units "
            f"(sum of 1/pi) but the run has {units}: they were not drawn from these units with these probabilities "
            "(some units had no chance, or the coding file is another run's); draw it again with annotate sample"
        )
    if gap > spread + 0.01 * units:
        warnings.append(
            f"{model}: the coded items' 1/pi add up to {total:.0f} of {units} units: items left uncoded are "
            "assumed missing at random"
        )


KISH_WARNING = 0.5
"""Warn when Kish's effective sample size is below this share of the coded items."""


def _check_weights(model: str, data: ppi.Sample, warnings: list[str]) -> None:
    kish = data.kish_units
    if kish < KISH_WARNING * data.n:
        top = float(data.weights.max() / data.weights.sum())
        warnings.append(
            f"{model}: unequal inclusion probabilities leave an effective sample of {kish:.1f} of {data.n} coded items "
            f"(Kish; the largest weight is {top:.0%} of the total); intervals use the effective number of coded chats"
        )


def _check_sizes(
    outcome: str,
    rhs: str,
    x_all: np.ndarray,
    labelled: np.ndarray,
    clusters: np.ndarray,
    x_human: np.ndarray | None,
    names: list[str],
) -> None:
    terms = x_all.shape[1]
    needed = max(MIN_CODED_CHATS, MIN_PER_TERM * terms)
    chats = len(np.unique(clusters[labelled]))
    if chats < needed:
        raise AnnotateError(
            f"{outcome} ~ {rhs}: {len(labelled)} human labels match the run's units, from {chats} chats; the model "
            f"has {terms} term{'s' if terms != 1 else ''} and needs at least {needed} coded chats"
        )
    if np.linalg.matrix_rank(x_all) < terms:
        raise AnnotateError(f"{outcome} ~ {rhs}: {why_collinear(x_all, names)}")
    if np.linalg.matrix_rank(x_all[labelled] if x_human is None else x_human) < terms:
        raise AnnotateError(
            f"{outcome} ~ {rhs}: the human labels leave a term without data (code units in every group)"
        )
