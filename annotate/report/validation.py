"""``annotate validate`` outputs: the agreement table, the page, and the sentiment trajectories."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from annotate.analysis.results import PAPER_STATISTICS, Item, ValidationResult, VariableValidation
from annotate.analysis.trajectories import SentimentCurves
from annotate.report import plots
from annotate.report.calibration import calibration_figures, calibration_table
from annotate.report.html import (
    Browser,
    BrowserRow,
    FigureSection,
    Page,
    Table,
    figure,
    fmt,
    fmt_ci,
    value_range,
    write_report,
)
from annotate.runs.outputs import write_atomic


def write_validation(
    out: Path, result: ValidationResult, sentiment: SentimentCurves | None, seed: int = 0
) -> list[Path]:
    """agreement.json, agreement.csv, report.html and, when the run has per-round sentiment, trajectories.png."""
    group_by = sentiment.group_by if sentiment else None
    drawn = sentiment is not None and bool(sentiment.curves)
    png = plots.trajectories(sentiment.curves, group_by, seed, sentiment.undrawn) if sentiment and drawn else None
    paths = write_report(out, result, validation_table(result), validation_page(result, png, group_by))
    if png is not None:
        write_atomic(out / "trajectories.png", png)
        paths.append(out / "trajectories.png")
    return paths


def validation_table(result: ValidationResult) -> pd.DataFrame:
    """One row per variable: the table a paper prints, with interval bounds as their own columns."""
    rows = []
    for v in result.variables:
        row: dict[str, object] = {"variable": v.variable, "task": v.task, "scale": v.scale, "n": v.n, "chats": v.chats}
        for stat in PAPER_STATISTICS:
            row[stat] = getattr(v, stat)
            if stat in v.ci95:
                row[f"{stat}_ci_low"], row[f"{stat}_ci_high"] = v.ci95[stat]
        if v.calibration is not None:
            c = v.calibration
            row |= {"mean_confidence": c.mean_confidence, "accuracy": c.accuracy, "ece": c.ece, "auroc": c.auroc}
            row |= {f"kappa_{p.deferred:.0%}_to_humans": p.cohen_kappa for p in c.risk_coverage[1:]}
        if v.expected_label is not None:
            row["cohen_kappa_weighted_label"] = v.expected_label.cohen_kappa
        if v.worth is not None:
            row |= {"worth_per_100": v.worth.value, "worth_low": v.worth.low, "worth_high": v.worth.high}
        rows.append(row)
    return pd.DataFrame(rows)


def validation_page(result: ValidationResult, trajectory_png: bytes | None, group_by: str | None) -> Page:
    run, gold = result.run, result.gold
    prompts = ", ".join(f"{t} {p['version']} ({p['hash']})" for t, p in run.prompts.items())
    consensus = f"; reference is the consensus ({gold.consensus})" if gold.consensus else ""
    page = Page(
        title=f"Agreement with human labels: run {run.run_id}",
        meta=[
            ("run", f"{run.dir} (backend {run.backend}, repeat {result.repeat})"),
            ("model", f"{run.model.get('name')} ({run.model.get('engine', '')})"),
            ("prompts", prompts),
            ("gold", f"{gold.path}: {gold.items} items, annotators {', '.join(gold.annotators)}{consensus}"),
            ("intervals", f"95% percentile bootstrap, {result.bootstrap.resamples} resamples of whole chats"),
        ],
        verdict=validation_verdict(result),
        caveats=[("run", f"Partial run: {run.incomplete}")] if run.incomplete else [],
    )
    page.tables += [
        _summary_table(result.variables),
        _worth_table(result.variables),
        _prevalence_table(result.variables),
    ]
    ceiling = _ceiling_table(result.variables)
    if ceiling is not None:
        page.tables.append(ceiling)
    disputes = _dispute_table(result.variables)
    if disputes is not None:
        page.tables.append(disputes)
    calibrated = calibration_table(result.variables)
    if calibrated is not None:
        page.tables.append(calibrated)
    page.caveats += [(v.variable, note) for v in result.variables for note in v.notes]
    page.tables.append(_unmatched_table(result))
    page.figure_sections += _figures(result.variables, trajectory_png, group_by)
    page.figure_sections += calibration_figures(result.variables)
    page.browser = _disagreement_browser(result)
    return page


AGREEMENT_BAR = 0.80
"""Cohen's κ from which labels are called strong: the bar published uses of this method report clearing."""
POOR_AGREEMENT = 0.60


def validation_verdict(result: ValidationResult) -> str:
    """The agreement against a stated bar (and the coders' own ceiling) first; then savings its interval backs."""
    variables = result.variables
    defined = [v for v in variables if v.cohen_kappa is not None and math.isfinite(v.cohen_kappa)]
    if not defined:
        return f"Cohen's κ with the gold is undefined on all {len(variables)} variables (one label only)."
    strong = [v.variable for v in defined if v.cohen_kappa >= AGREEMENT_BAR]
    poor = [v.variable for v in defined if v.cohen_kappa < POOR_AGREEMENT]
    undefined = len(variables) - len(defined)
    parts = [
        f"Cohen's κ with the gold: {value_range([v.cohen_kappa for v in defined])} over {len(defined)} variables"
        + (f" ({undefined} more undefined)" if undefined else "")
        + f"; {len(strong)} reach the bar of {AGREEMENT_BAR:.2f}"
        + (f", agreement is poor (κ < {POOR_AGREEMENT:.2f}) on {', '.join(poor)}" if poor else "")
        + "."
    ]
    ceilings = [v.by_annotator.human_mean_kappa for v in defined if v.by_annotator and v.by_annotator.human_mean_kappa]
    if ceilings:
        parts.append(f"The coders agree with each other at κ {value_range(ceilings)}.")
    parts.append(_saving_sentence(variables))
    return " ".join(parts)


def _saving_sentence(variables: list[VariableValidation]) -> str:
    """Only what the worth can stand on: a saving its own interval supports, and how many it could not measure."""
    worths = [v.worth for v in variables if v.worth is not None]
    if not worths:
        return ""
    saving = [v.variable for v in variables if v.worth and v.worth.saves]
    unmeasured = sum(w.status == "not_estimable" for w in worths)
    none = sum(w.status == "none" for w in worths)
    said = (
        f"The labels would save human work (worth interval above 100 per 100 coded) on {', '.join(saving)}"
        if saving
        else "No variable shows a saving of human work that its interval backs"
    )
    counts = [f"{none} get no share" if none else "", f"{unmeasured} could not be measured" if unmeasured else ""]
    detail = "; ".join(c for c in counts if c)
    return f"{said}{f' ({detail})' if detail else ''}."


def _summary_table(variables: list[VariableValidation]) -> Table:
    """The headline table: every statistic per variable."""
    columns = ["variable", "scale", "n", "chats", "% agree", "Cohen κ", "κ 95% CI", "κ linear", "κ quadratic"]
    columns += ["κq 95% CI", "Krippendorff α", "α 95% CI", "Gwet AC1", "AC1 95% CI"]
    rows = [
        [
            v.variable,
            v.scale,
            v.n,
            v.chats,
            fmt(v.percent_agreement),
            fmt(v.cohen_kappa),
            fmt_ci(v.ci95.get("cohen_kappa")),
            fmt(v.kappa_linear),
            fmt(v.kappa_quadratic),
            fmt_ci(v.ci95.get("kappa_quadratic")),
            fmt(v.krippendorff_alpha),
            fmt_ci(v.ci95.get("krippendorff_alpha")),
            fmt(v.gwet_ac1),
            fmt_ci(v.ci95.get("gwet_ac1")),
        ]
        for v in variables
    ]
    note = (
        "κ is undefined (–) when one coder uses a single label; AC1 stays defined and is the figure to read "
        "when one label dominates. Weighted κ is given for ordinal scales only."
    )
    return Table("Agreement by variable", columns, rows, note=note, left=2)


def _worth_table(variables: list[VariableValidation]) -> Table:
    """What the labels are worth for each variable's mean, in human labels per 100 coded."""
    rows = []
    for v in variables:
        w = v.worth
        if w is None:
            continue
        interval = "" if w.low is None else f"[{w.low:.0f}, {w.high:.0f}]"
        shown = w.shown().split(" [")[0]
        rows.append([v.variable, shown, interval, w.note or ""])
    note = (
        "A forecast: human labels the LLM labels would be worth, per 100 coded, in a study whose coded sample is "
        "this gold and whose LLM-labelled units are endlessly many more like them (annotate estimate's "
        "prediction-powered mean; each half of the gold's chats uses the share chosen on the other half). 100, or "
        "none: the LLM saves no human work. The interval is a chat bootstrap that repeats the choice in every "
        "resample; a saving is claimed only where its low end is above 100. Dorner et al. (2024): when the "
        "labeller is no better than the human measure, at most 200."
    )
    return Table(
        "What the LLM labels are worth", ["variable", "per 100 coded", "95% interval", "note"], rows, note=note, left=1
    )


def _prevalence_table(variables: list[VariableValidation]) -> Table:
    """How often each label occurs in gold and LLM output, with per-class precision and recall."""
    rows = []
    for v in variables:
        for k in v.categories:
            score = v.per_class.get(k)
            rows.append(
                [
                    v.variable,
                    f"{k} {v.category_labels.get(str(k), '')}".strip(),
                    fmt(v.prevalence_gold[k], 2),
                    fmt(v.prevalence_llm[k], 2),
                    fmt(score.precision if score else None, 2),
                    fmt(score.recall if score else None, 2),
                    score.support if score else 0,
                ]
            )
    return Table(
        "Label prevalence (share of items), human vs LLM",
        ["variable", "label", "human", "LLM", "precision", "recall", "support"],
        rows,
        note="Precision and recall of the LLM's labels, taking the human label as the reference.",
        left=2,
    )


def _ceiling_table(variables: list[VariableValidation]) -> Table | None:
    """With several annotators: the LLM against each, and human against human."""
    rows = []
    for v in variables:
        if v.by_annotator is None:
            continue
        pairs = [("LLM vs " + n, s) for n, s in v.by_annotator.llm_vs.items()] + list(
            v.by_annotator.human_pairs.items()
        )
        rows += [[v.variable, p, fmt(s.cohen_kappa), fmt(s.gwet_ac1), fmt(s.percent_agreement)] for p, s in pairs]
    if not rows:
        return None
    columns = ["variable", "pair", "Cohen κ", "Gwet AC1", "% agree"]
    return Table("Against each annotator, and human against human (the ceiling)", columns, rows, left=2)


def _dispute_table(variables: list[VariableValidation]) -> Table | None:
    """A consensus run: agreement where its sources disagreed, and where they all agreed."""
    rows = [
        [v.variable, name, s.n, fmt(s.percent_agreement), fmt(s.cohen_kappa), fmt(s.gwet_ac1)]
        for v in variables
        for name, s in (v.by_dispute or {}).items()
    ]
    if not rows:
        return None
    note = "Units are disputed when the consensus's sources did not all give the same value."
    columns = ["variable", "units", "n", "% agree", "Cohen κ", "Gwet AC1"]
    return Table("Agreement on disputed and undisputed units", columns, rows, note=note, left=2)


def _unmatched_table(result: ValidationResult) -> Table:
    """Items left out of every statistic, and why."""
    unmatched = result.unmatched
    rows: list[list[object]] = [
        ["gold items the run never labelled", len(unmatched.gold_not_labelled), _examples(unmatched.gold_not_labelled)],
        ["gold items whose label is a failure row", len(unmatched.failed_labels), _examples(unmatched.failed_labels)],
        ["LLM labels with no gold label", unmatched.labels_without_gold, ""],
    ]
    note = "Nothing is dropped silently: these items are left out of every statistic above."
    return Table("What did not match", ["what", "count", "examples"], rows, note=note)


def _figures(
    variables: list[VariableValidation], trajectory_png: bytes | None, group_by: str | None
) -> list[FigureSection]:
    """Interval plot, confusion heatmaps and the sentiment trajectories."""
    sections = []
    if variables:
        intervals = plots.agreement_intervals(
            [(v.variable, v) for v in variables], ["cohen_kappa", "kappa_quadratic", "gwet_ac1"]
        )
        caption = "Cohen κ, quadratic κ (ordinal) and Gwet AC1 per variable"
        sections.append(FigureSection("Agreement with 95% intervals", [figure(caption, intervals)]))
        heatmaps = [
            figure(v.variable, plots.confusion_heatmap(v.confusion, v.categories, v.variable, names=v.category_labels))
            for v in variables
        ]
        sections.append(FigureSection("Confusion matrices (rows: human, columns: LLM)", heatmaps))
    if trajectory_png is not None:
        sections.append(
            FigureSection(
                "Per-round negative sentiment (LLM labels)",
                [figure("LOESS with 95% band from a chat bootstrap", trajectory_png)],
                note=f"Each chat's rounds are spread over 0-100%; curves per {group_by or 'run'}.",
            )
        )
    return sections


def _disagreement_browser(result: ValidationResult) -> Browser:
    """Every disagreement with what the model saw, filterable."""
    ordered = sorted(result.disagreements, key=lambda d: (d.variable, d.gold, d.llm, d.chat_id))
    rows = [
        BrowserRow(
            d.variable,
            f"{d.gold} → {d.llm}",
            [
                d.variable,
                d.chat_id,
                fmt(d.round),
                f"{d.gold} → {d.llm}",
                d.context,
                d.target + (f" [truncated: {d.truncation}]" if d.truncation else ""),
            ],
        )
        for d in ordered
    ]
    note = (
        "Each row is an item where the LLM and the human differ, with what the model saw (context shortened to the "
        "last three turns). Group: the human label → the LLM label. Filter by variable or group to find systematic "
        "errors, e.g. missing context, implicit sentiment or incomplete logs."
    )
    columns = ["variable", "chat", "round", "human → LLM", "context", "target"]
    return Browser("Disagreements", note, columns, rows, context_column=4)


def _examples(items: Sequence[Item], limit: int = 6) -> str:
    shown = ", ".join(
        f"{i.chat_id}{'/r' + str(i.round) if i.round is not None else ''} {i.variable}" for i in items[:limit]
    )
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
