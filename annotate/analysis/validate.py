"""``annotate validate``: a run's labels against human gold labels.

Labels and gold are joined on (chat_id, round, variable). Whatever does not match is reported,
not dropped: gold items the run never labelled, and items whose label is a failure row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from annotate.analysis import statistics as st
from annotate.analysis.calibration import calibration, probability_weighted
from annotate.analysis.estimation import EstimateInputs, EstimateOptions, forecast_worth
from annotate.analysis.excerpts import Excerpts, VariableInfo, unit_excerpts, variable_info
from annotate.analysis.gold import check_scales, truth_of
from annotate.analysis.results import (
    AnnotatorComparison,
    Bootstrap,
    Disagreement,
    FailedItem,
    GoldDescription,
    Item,
    PairStatistics,
    RunDescription,
    Unmatched,
    ValidationResult,
    VariableValidation,
    Worth,
)
from annotate.errors import AnnotateError
from annotate.prompts.library import PromptLibrary

if TYPE_CHECKING:
    from annotate.ingest.model import Chat
    from annotate.runs.coded import Gold
    from annotate.runs.reader import Run

KEY = ["chat_id", "round", "variable"]


def validate(
    run: Run,
    coded: Gold,
    chats: list[Chat],
    library: PromptLibrary | None = None,
    repeat: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
) -> ValidationResult:
    """``chats``: the run's chats (the disagreements quote them; none: no excerpts)."""
    labels, manifest = run.labels, run.manifest
    labels = labels[(labels["status"] != "skipped") & (labels["repeat"] == repeat)].copy()
    gold = coded.table
    info = variable_info(labels, manifest, library)
    check_scales(coded, {name: v.categories for name, v in info.items()})
    annotators = sorted(gold["annotator"].unique())
    truth = truth_of(gold)

    joined = truth.merge(labels, on=KEY, how="left", suffixes=("_gold", ""), indicator=True)
    never = joined[joined["_merge"] == "left_only"]
    failed = joined[(joined["_merge"] == "both") & (joined["status"] != "ok")]
    ok = joined[(joined["_merge"] == "both") & (joined["status"] == "ok")].copy()
    ok["value"] = ok["value"].astype(int)
    extra = labels[labels["status"] == "ok"].merge(truth[KEY], on=KEY, how="left", indicator=True)

    variables = []
    for variable, rows in ok.groupby("variable", sort=True):
        meta = info.get(str(variable)) or VariableInfo(
            str(rows["task"].iloc[0]), "nominal", sorted(set(rows["value"]) | set(rows["value_gold"])), {}
        )
        found = _variable(str(variable), rows, meta, gold, annotators, n_boot, seed)
        worth = mean_worth(EstimateInputs(run, chats, coded), found, library)
        variables.append(found.model_copy(update={"worth": worth}))
    return ValidationResult(
        run=RunDescription.of(run.path, manifest),
        gold=GoldDescription(
            path=str(coded.path),
            annotators=annotators,
            items=len(truth),
            consensus="majority; ties go to the lower median" if len(annotators) > 1 else None,
        ),
        repeat=repeat,
        bootstrap=Bootstrap(resamples=n_boot, seed=seed),
        variables=variables,
        unmatched=Unmatched(
            gold_not_labelled=_items(never),
            failed_labels=[
                FailedItem(**i.model_dump(), status=s) for i, s in zip(_items(failed), failed["status"], strict=True)
            ],
            labels_without_gold=int((extra["_merge"] == "left_only").sum()),
        ),
        disagreements=_disagreements(ok, unit_excerpts(manifest, chats, library)),
    )


def mean_worth(inputs: EstimateInputs, variable: VariableValidation, library: PromptLibrary | None) -> Worth:
    """The labels' worth for the variable's mean, as ``annotate estimate`` would weigh them (the gold as the coded
    sample, its inclusion probabilities if any); the reason when no estimate can be made."""
    try:
        return forecast_worth(inputs, EstimateOptions(variables=(variable.variable,)), library)
    except AnnotateError as e:
        return Worth(value=None, low=None, high=None, status="not_estimable", note=f"no estimate: {e}")


def _variable(
    variable: str,
    rows: pd.DataFrame,
    meta: VariableInfo,
    gold: pd.DataFrame,
    annotators: list[str],
    n_boot: int,
    seed: int,
) -> VariableValidation:
    human = rows["value_gold"].astype(int).tolist()
    llm = rows["value"].tolist()
    cats = meta.categories
    counts = st.confusion_counts(human, llm, cats)
    scores = _distribution_scores(rows, human, llm, meta)
    notes = [st.degenerate_note(human, llm, ("the gold", "the LLM"))]
    if scores.get("calibration") is not None:
        notes += scores["calibration"].notes
    return VariableValidation.model_validate(
        st.pair_statistics(human, llm, cats, meta.scale)
        | {
            "variable": variable,
            "task": meta.task,
            "scale": meta.scale,
            "categories": cats,
            "category_labels": {str(k): v for k, v in meta.labels.items()},
            "chats": int(rows["chat_id"].nunique()),
            "ci95": st.pair_bootstrap(human, llm, rows["chat_id"].tolist(), cats, meta.scale, n_boot, seed),
            "prevalence_gold": st.prevalence(human, cats),
            "prevalence_llm": st.prevalence(llm, cats),
            "confusion": counts.tolist(),
            "per_class": st.per_class_from_counts(counts, cats),
            "by_annotator": _by_annotator(variable, rows, gold, annotators, meta) if len(annotators) > 1 else None,
            "notes": [note for note in notes if note],
        }
        | scores
        | _dispute_scores(rows, meta)
    )


def _dispute_scores(rows: pd.DataFrame, meta: VariableInfo) -> dict[str, Any]:
    """A consensus run's agreement with gold, apart on the units its sources disputed and on the rest."""
    if "disputed" not in rows.columns:
        return {}
    flags = rows["disputed"].fillna(False).astype(bool)
    split = {}
    for name, part in (("disputed", rows[flags]), ("undisputed", rows[~flags])):
        if len(part):
            human, llm = part["value_gold"].astype(int).tolist(), part["value"].astype(int).tolist()
            split[name] = PairStatistics.of(st.pair_statistics(human, llm, meta.categories, meta.scale))
    return {"by_dispute": split}


def _distribution_scores(rows: pd.DataFrame, human: list[int], llm: list[int], meta: VariableInfo) -> dict[str, Any]:
    """Calibration of the confidence, and the probability-weighted label's agreement, when labels have probabilities."""
    if not len(rows) or rows["confidence"].isna().any():
        return {}
    scores: dict[str, Any] = {
        "calibration": calibration(rows["confidence"].tolist(), human, llm, meta.categories, meta.scale)
    }
    if meta.scale != "nominal":
        weighted = probability_weighted(rows["expected"], meta.categories).tolist()
        scores["expected_label"] = PairStatistics.of(st.pair_statistics(human, weighted, meta.categories, meta.scale))
    return scores


def _by_annotator(
    variable: str, rows: pd.DataFrame, gold: pd.DataFrame, annotators: list[str], meta: VariableInfo
) -> AnnotatorComparison:
    """The LLM against each annotator, and human against human: the ceiling the LLM is judged by."""
    mine = gold[gold["variable"] == variable]
    wide = mine.pivot_table(
        index=["chat_id", "round"], columns="annotator", values="value", dropna=False, aggfunc="first"
    )
    llm = rows.set_index(["chat_id", "round"])["value"]
    wide = wide[wide.index.isin(llm.index)]  # the ceiling is measured on the same items as the LLM
    result = AnnotatorComparison()

    def pair(first: pd.Series, second: pd.Series) -> PairStatistics:
        both = pd.concat([first, second], axis=1, join="inner").dropna()
        a, b = both.iloc[:, 0].astype(int).tolist(), both.iloc[:, 1].astype(int).tolist()
        return PairStatistics.of(st.pair_statistics(a, b, meta.categories, meta.scale))

    for name in annotators:
        if name in wide:
            result.llm_vs[name] = pair(wide[name], llm)
    for i, first in enumerate(annotators):
        for second in annotators[i + 1 :]:
            if first in wide and second in wide:
                result.human_pairs[f"{first} vs {second}"] = pair(wide[first], wide[second])
    kappas = [p.cohen_kappa for p in result.human_pairs.values() if not np.isnan(p.cohen_kappa)]
    result.human_mean_kappa = float(np.mean(kappas)) if kappas else None
    return result


def _disagreements(ok: pd.DataFrame, excerpts: Excerpts) -> list[Disagreement]:
    found = []
    for r in ok[ok["value"] != ok["value_gold"]].itertuples():
        round_number = None if pd.isna(r.round) else int(r.round)
        found.append(
            Disagreement(
                variable=str(r.variable),
                task=str(r.task),
                chat_id=str(r.chat_id),
                round=round_number,
                gold=int(r.value_gold),
                llm=int(r.value),
                direction="over" if r.value > r.value_gold else "under",
                truncation=str(r.truncation or ""),
                **excerpts.get((str(r.task), str(r.chat_id), round_number), {}),
            )
        )
    return found


def _items(frame: pd.DataFrame) -> list[Item]:
    return [
        Item(chat_id=str(r.chat_id), round=None if pd.isna(r.round) else int(r.round), variable=str(r.variable))
        for r in frame.itertuples()
    ]
