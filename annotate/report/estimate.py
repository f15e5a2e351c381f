"""``annotate estimate`` outputs: estimate.json, estimate.csv and a page with a coefficient plot per model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from annotate.analysis.estimation.estimate_results import EstimateResult, Estimator, ModelEstimate
from annotate.analysis.results import Worth
from annotate.report import plots
from annotate.report.html import FigureSection, Page, Table, figure, fmt, write_report
from annotate.report.paper import write_paper_tables

NOTE = (
    "LLM only: every unit's LLM label taken as true; its interval ignores the labeller's errors. Human only: the "
    "coded sample alone, weighted by inverse inclusion probabilities. Prediction-powered: the human-only estimate "
    "plus λ times (the LLM labels' fit over all units minus their fit over the coded units), a correction with mean "
    "zero whatever the labeller; λ is tuned per term (0 = ignored: PPI is then the human-only estimate). "
    "Effective human labels: how many human "
    "labels alone would give the PPI interval's width (shown from 40 coded chats)."
)


def write_estimate(out: Path, result: EstimateResult, table: pd.DataFrame) -> list[Path]:
    """estimate.json, estimate.csv, report.html and the paper tables (estimate_table.md, .tex)."""
    paths = write_report(out, result, table, estimate_page(result), name="estimate")
    return [*paths, *write_paper_tables(result, out)]


def interval(est: Estimator) -> str:
    if est.estimate is None:
        return "not estimable*"
    return f"{fmt(est.estimate)} [{fmt(est.low)}, {fmt(est.high)}]"


def model_rows(model: ModelEstimate) -> list[list[str]]:
    rows = []
    for t in model.terms:
        estimates = [interval(e) for e in (t.llm_only, t.human_only, t.ppi)]
        rows.append([t.term, *estimates, fmt(t.lam, 2), fmt(t.effective_human_labels, 1), worth_text(t.worth)])
    return rows


def worth_text(worth: Worth | None) -> str:
    return worth.shown() if worth else "–"


def combination_table(model: ModelEstimate) -> Table:
    """The combined estimate beside each labeller's own prediction-powered one, and where they disagree."""
    names = list(model.terms[0].by_labeller) if model.terms else []
    columns = [
        "term",
        "combined",
        "λ",
        "worth /100 coded",
        *(f"PPI, {name}" for name in names),
        "hangs on the labeller",
    ]
    rows = [
        [
            t.term,
            interval(t.combined) if t.combined else "–",
            fmt(t.combined_lam, 2),
            worth_text(t.combined_worth),
            *(interval(t.by_labeller[name]) for name in names),
            t.robustness or "",
        ]
        for t in model.terms
    ]
    return Table(f"{model.formula}: combined labellers", columns, rows, note=model.combination or "", left=1)


def model_note(model: ModelEstimate) -> str:
    """The general note, then why each 'not estimable', each empty effective n and each worth is so."""
    reasons = [
        f"* {t.term}, {label}: {getattr(t, name).not_estimable}."
        for t in model.terms
        for name, label in (("llm_only", "LLM only"), ("human_only", "human only"), ("ppi", "prediction-powered"))
        if getattr(t, name).not_estimable
    ]
    empty = sorted({t.effective_note for t in model.terms if t.effective_note})
    estimable = [t for t in model.terms if t.ppi.estimate is not None]  # the others give their reason above
    worths = sorted({w.note for t in estimable for w in (t.worth, t.combined_worth) if w and w.note} - set(empty))
    return " ".join(
        [NOTE, *reasons, *(f"Effective human labels: {note}." for note in empty), *(f"Worth: {n}." for n in worths)]
    )


def axis_label(model: ModelEstimate) -> str:
    """What a coefficient is measured in, and what the categorical terms are differences from."""
    scale = f" (scale {min(model.outcome_scale)}–{max(model.outcome_scale)})" if model.outcome_scale else ""
    unit = f"log-odds of {model.outcome} = 1" if model.family == "logit" else f"points of {model.outcome}{scale}"
    reference = "; ".join(f"{k} = {v}" for k, v in model.reference_levels.items())
    slopes = any(t.term != "Intercept" and not t.term.startswith("C(") for t in model.terms)
    return (
        unit
        + (f"; levels are differences from {reference}" if reference else "")
        + ("; other terms are slopes (change per unit of the regressor)" if slopes else "")
    )


def estimate_verdict(result: EstimateResult) -> str:
    """Where the LLM's share is backed by its worth, and how many effects (not intercepts or group means) the data
    support: each count only of what it can stand on."""
    terms = [t for m in result.models for t in m.terms]
    effects = [t for m in result.models if not _means_only(m.formula) for t in m.terms if t.term != "Intercept"]
    used = [t for t in terms if (t.lam or 0) > 0 or (t.combined_lam or 0) > 0]
    saves = [t for t in terms if any(w is not None and w.saves for w in (t.worth, t.combined_worth))]
    missing = [t for t in terms if t.human_only.estimate is None]
    clear = [
        t for t in effects if t.ppi.low is not None and t.ppi.high is not None and (t.ppi.low > 0 or t.ppi.high < 0)
    ]
    if not used:
        saved = "the LLM labels carry no share: every prediction-powered estimate is the human-only one"
    else:
        saved = f"the LLM labels carry a share in {len(used)} of {len(terms)} coefficients"
        saved += (
            f" and save human work (worth interval above 100) in {len(saves)}"
            if saves
            else ", a saving of human work backed by its interval in none"
        )
    refused = f"; {len(missing)} not estimable" if missing else ""
    effect_count = f"{len(clear)} of {len(effects)} effects have prediction-powered intervals that exclude 0"
    return f"{len(terms)} coefficients: {saved}; {effect_count if effects else 'no effects (means only)'}{refused}."


def _means_only(formula: str) -> bool:
    """A model of the variable's mean (``y ~ 1``) or group means (``y ~ 0 + C(g)``): no term is an effect."""
    rhs = formula.split("~", 1)[-1].strip()
    return rhs == "1" or (rhs.startswith("0 + C(") and rhs.count("+") == 1)


def estimate_page(result: EstimateResult) -> Page:
    meta = [
        ("run", result.run_dir),
        ("gold", f"{result.gold} (sha256 {result.gold_sha256[:12]})"),
        ("LLM label used", result.label),
        (
            "intervals",
            f"{result.level:.0%}, Student's t with the effective number of coded chats minus terms as degrees of "
            "freedom; chat-clustered, leave-one-chat-out (jackknife) variances; docs/methods.md",
        ),
    ]
    page = Page("Estimates from LLM labels and a human sample", meta, verdict=estimate_verdict(result))
    page.caveats = [_caveat(warning) for warning in result.warnings]
    columns = [
        "term",
        "LLM only",
        "human only",
        "prediction-powered",
        "λ",
        "effective human labels",
        "worth /100 coded",
    ]
    figures = []
    for model in result.models:
        title = (
            f"{model.formula} ({model.family}): {model.units} units, {model.human_labels} human labels from "
            f"{model.coded_chats} chats, {model.design}"
        )
        if model.measured_regressors:
            title += f"; LLM-measured regressors: {', '.join(model.measured_regressors)}"
        page.tables.append(Table(title, columns, model_rows(model), note=model_note(model), left=1))
        if model.combination:
            page.tables.append(combination_table(model))
        figures.append(figure(model.formula, plots.coefficients(model.terms, model.formula, axis_label(model))))
    page.figure_sections.append(FigureSection("Coefficients, each estimator, with 95% intervals", figures))
    return page


def _caveat(warning: str) -> tuple[str, str]:
    """'empathy: fewer than 40 coded chats; ...' -> ('empathy', 'fewer than ...'): what a warning is about, when it
    opens with one word before a colon (a variable, a term, a file), else the estimate as a whole."""
    about, colon, rest = warning.partition(": ")
    return (about, rest) if colon and " " not in about else ("estimate", warning)
