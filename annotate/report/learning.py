"""``annotate learn`` outputs beside the learned run: learning.json (every figure, ``cv_kappa`` per variable),
learning.csv (one row per variable and point of the curve), learning.html, and what the terminal prints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from annotate.analysis.learning_results import LearningResult, VariableLearning
from annotate.analysis.results import Worth
from annotate.report.console import say
from annotate.report.html import Page, Table, fmt, fmt_ci, render_html, write_result
from annotate.runs.outputs import write_atomic

BAR = 0.6
"""κ below which the page calls agreement poor (Landis and Koch's "substantial" starts at 0.61)."""


def learning_table(result: LearningResult) -> pd.DataFrame:
    rows = []
    for v in result.variables:
        for point in v.curve:
            rows.append(
                {
                    "variable": v.variable,
                    "fraction": point.fraction,
                    "coded_chats": point.chats,
                    "items": point.items,
                    "kappa": point.kappa,
                    "kappa_ci_low": point.kappa_ci[0],
                    "kappa_ci_high": point.kappa_ci[1],
                    "kappa_quadratic": point.kappa_quadratic,
                    "auroc": point.auroc,
                    "zero_shot_kappa": v.zero_shot_kappa if point.fraction == 1.0 else None,
                }
            )
    return pd.DataFrame(rows)


def write_learning(out: Path, result: LearningResult) -> list[Path]:
    """learning.json, learning.csv and learning.html in the learned run directory (beside its labels)."""
    paths = write_result(out, result, learning_table(result), "learning")
    page = out / "learning.html"
    write_atomic(page, render_html(learning_page(result)))
    return [*paths, page]


def verdict(result: LearningResult) -> str:
    """Agreement against a stated bar first; then what the labels could save."""
    parts = []
    for v in result.variables:
        level = "poor" if not v.cv_kappa >= BAR else "usable"
        parts.append(f"{v.variable} κ {fmt(v.cv_kappa, 2)} ({level})")
    return (
        f"Cross-validated κ with the coded labels (bar {BAR}): " + "; ".join(parts) + ". Every figure is out of fold: "
        "no coded unit was labelled by a model that saw its chat."
    )


def learning_page(result: LearningResult) -> Page:
    page = Page(
        "Learned labeller: " + ", ".join(v.variable for v in result.variables),
        [
            ("source run", result.source_run),
            ("coded file", result.coded),
            ("features", ", ".join(result.features)),
            ("cross-fitting", f"{result.folds} folds of coded chats, seed {result.seed}"),
            ("intervals", "95% percentile bootstrap over whole chats"),
        ],
        verdict=verdict(result),
    )
    page.caveats = [(v.variable, note) for v in result.variables for note in v.notes]
    page.tables.append(_summary(result))
    for v in result.variables:
        page.tables.append(_curve(v))
    return page


def _summary(result: LearningResult) -> Table:
    rows = []
    for v in result.variables:
        zero = f"{fmt(v.zero_shot_kappa, 2)} {fmt_ci(v.zero_shot_kappa_ci)}" if v.zero_shot_kappa is not None else "–"
        rows.append(
            [
                v.variable,
                v.units,
                f"{v.coded_items} / {v.coded_chats}",
                f"{fmt(v.cv_kappa, 2)} {fmt_ci(v.curve[-1].kappa_ci) if v.curve else ''}",
                zero,
                f"{fmt(v.worth.rho, 2)} {fmt_ci(v.worth.rho_ci)}",
                v.worth.worth.shown(),
                v.more_coding,
            ]
        )
    columns = ["variable", "units", "coded items / chats", "cv κ", "zero-shot κ", "ρ", "worth /100 coded", "code more?"]
    note = (
        "cv κ: the learned labels of the coded units (out of fold) against the codes. Zero-shot κ: the source run's "
        "LLM labels on the same units. Worth: human labels per 100 coded that the learned labels are worth for a "
        "mean, as estimate --label expected reports it (shares chosen out of sample; not shown on too few "
        "effective coded chats, each figure says why). 'none': the estimate gives the labels no share. Regression "
        "effects may gain less."
    )
    return Table("Learned labels against the codes", columns, rows, note=note)


def _curve(v: VariableLearning) -> Table:
    rows = [
        [
            f"{p.fraction:.0%}",
            p.chats,
            p.items,
            f"{fmt(p.kappa, 2)} {fmt_ci(p.kappa_ci)}",
            f"{fmt(p.kappa_quadratic, 2)} {fmt_ci(p.kappa_quadratic_ci)}" if p.kappa_quadratic is not None else "–",
            f"{fmt(p.auroc, 2)} {fmt_ci(p.auroc_ci)}",
        ]
        for p in v.curve
    ]
    return Table(
        f"Learning curve: {v.variable}",
        ["coded chats seen", "chats", "items", "κ", "κ quadratic", "AUROC / concordance"],
        rows,
        note=f"Penalty C per fold: {', '.join(fmt(c, 2) for c in v.penalties)}.",
        left=1,
    )


def print_learning(result: LearningResult) -> None:
    for v in result.variables:
        zero = (
            f"; zero-shot LLM κ {fmt(v.zero_shot_kappa, 2)} {fmt_ci(v.zero_shot_kappa_ci)} on {v.zero_shot_items} items"
            if v.zero_shot_kappa is not None
            else ""
        )
        say(
            f"{v.variable}: {v.units} units labelled; learned from {v.coded_items} items in "
            f"{v.coded_chats} coded chats{zero}"
        )
        for p in v.curve:
            quadratic = f", quadratic {fmt(p.kappa_quadratic, 2)}" if p.kappa_quadratic is not None else ""
            say(
                f"  {p.fraction:>4.0%} of coded chats ({p.chats:>3}): cv κ {fmt(p.kappa, 2)} {fmt_ci(p.kappa_ci)}"
                f"{quadratic}, AUROC {fmt(p.auroc, 2)}"
            )
        say(f"  ρ {fmt(v.worth.rho, 2)} {fmt_ci(v.worth.rho_ci)}; worth for a mean: {worth_said(v.worth.worth)}")
        say(f"  coding more: {v.more_coding}")
        for note in v.notes:
            say(f"  note: {note}")
    say(f"wrote {result.run_dir} (a run: validate, agree, sample, estimate --labellers read it) and learning.html")


def worth_said(worth: Worth) -> str:
    """The worth in words: the figure per 100 coded and what it means, or why there is none."""
    if worth.status == "shown":
        verdict = "saves human work" if worth.saves else "its interval reaches 100: no saving shown"
        return f"{worth.shown()} human labels per 100 coded ({verdict})"
    if not worth.note:
        return worth.shown()
    return worth.note if worth.note.startswith(worth.shown()) else f"{worth.shown()}: {worth.note}"
