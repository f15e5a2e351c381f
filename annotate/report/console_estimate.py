"""What ``annotate estimate`` prints: the three estimators per term, the combination and each labeller's own."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.markup import escape

from annotate.analysis.estimation.estimate_results import EstimateResult
from annotate.report.console import err, say


def print_estimate(result: EstimateResult) -> None:
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for model in result.models:
        measured = (
            f"; LLM-measured regressors: {', '.join(model.measured_regressors)}" if model.measured_regressors else ""
        )
        say(
            f"{model.formula} ({model.family}): {model.units} units, {model.human_labels} human labels from "
            f"{model.coded_chats} chats, {model.design}{measured}"
        )
        rows = [
            {
                "term": t.term,
                **{name: _interval(e) for name, e in _estimators(t)},
                "λ": _share(t.lam),
                "worth /100 coded": (t.worth.shown() if t.worth else "–"),
            }
            for t in model.terms
        ]
        say(pd.DataFrame(rows).to_string(index=False))
        if model.combination:
            _print_combination(model)
        for t in model.terms:
            for name, e in _estimators(t):
                if e.not_estimable:
                    say(f"  {t.term}, {name}: not estimable: {e.not_estimable}")
            if t.robustness:
                say(f"  {t.term}: hangs on the labeller: {t.robustness}")
        _print_worth_notes(model.terms)
        if result.target_width:
            for t in model.terms:
                with_llm, without = _count(t.ppi_human_labels_for_target), _count(t.human_labels_for_target)
                say(
                    f"  {t.term}: a {result.target_width:g}-wide interval needs {with_llm} human labels with "
                    f"the LLM labels, {without} without"
                )
        say("")


def _print_worth_notes(terms: list[Any]) -> None:
    """Each worth note once, naming its terms unless it holds for every estimable one; a term that is not
    estimable has its reason printed already and no worth note."""
    notes: dict[str, list[str]] = {}
    estimable = [t for t in terms if t.ppi.estimate is not None]
    for t in estimable:
        for w in (t.worth, t.combined_worth):
            if w is not None and w.note and t.term not in notes.get(w.note, []):
                notes.setdefault(w.note, []).append(t.term)
    for note, names in notes.items():
        whose = "" if len(names) == len(estimable) else f" of {', '.join(names)}"
        say(f"  worth{whose}: {note}")


def _print_combination(model: Any) -> None:
    """The combined estimate beside each labeller's own prediction-powered one."""
    say(f"  combined: {model.combination}")
    rows = []
    for t in model.terms:
        row = {"term": t.term, "combined": _interval(t.combined), "λ": _share(t.combined_lam)}
        row["worth /100 coded"] = t.combined_worth.shown() if t.combined_worth else "–"
        rows.append(row | {f"PPI {name}": _interval(e) for name, e in t.by_labeller.items()})
    say(pd.DataFrame(rows).to_string(index=False))


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _interval(e: Any) -> str:
    return "not estimable" if e.estimate is None else f"{e.estimate:.2f} [{e.low:.2f}, {e.high:.2f}]"


def _estimators(term: Any) -> list[tuple[str, Any]]:
    return [("LLM only", term.llm_only), ("human only", term.human_only), ("prediction-powered", term.ppi)]


def _count(value: float | None) -> str:
    if value is None:
        return "–"
    return "more than any sample (the LLM part alone is wider)" if value == float("inf") else str(int(value))
