"""``annotate agree`` outputs: one row per variable (repeats) or per variable and pair of runs, and the page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from annotate.analysis.results import PAPER_STATISTICS, AgreementResult, MultiCoderStatistics
from annotate.report import plots
from annotate.report.html import FigureSection, Page, Table, figure, fmt, fmt_ci, value_range, write_report

MULTI = ("mean_pairwise_kappa", "fleiss_kappa", "krippendorff_alpha", "identical_share")


def write_agreement(out: Path, result: AgreementResult, table: pd.DataFrame) -> list[Path]:
    """agreement.json, agreement.csv and report.html."""
    return write_report(out, result, table, agree_page(result))


def agree_table(result: AgreementResult) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    for v in result.variables:
        base = {"variable": v.variable, "task": v.task, "scale": v.scale, "items_left_out": v.items_left_out}
        if v.repeats is not None:
            rows.append(_multi_row(base, "repeats", v.repeats))
        for pair, s in v.pairs.items():
            row = {**base, "comparison": pair, "n": s.n, "coders": 2}
            for stat in PAPER_STATISTICS:
                row[stat] = getattr(s, stat)
                if stat in s.ci95:
                    row[f"{stat}_ci_low"], row[f"{stat}_ci_high"] = s.ci95[stat]
            rows.append(row)
        if v.all_runs is not None:
            rows.append(_multi_row(base, "all runs", v.all_runs))
    return pd.DataFrame(rows)


def _multi_row(base: dict[str, object], comparison: str, multi: MultiCoderStatistics) -> dict[str, object]:
    return {**base, "comparison": comparison, "n": multi.units, "coders": multi.coders} | {
        k: getattr(multi, k) for k in MULTI
    }


def agree_page(result: AgreementResult) -> Page:
    meta = [(f"run {i + 1}", r.short()) for i, r in enumerate(result.runs)]
    page = _repeats_page(result, meta) if result.mode == "repeats" else _runs_page(result, meta)
    page.caveats = [(f"run {i + 1}", f"Partial run: {r.incomplete}") for i, r in enumerate(result.runs) if r.incomplete]
    return page


def _runs_page(result: AgreementResult, meta: list[tuple[str, str]]) -> Page:
    assert result.bootstrap is not None
    kappas = [s.cohen_kappa for v in result.variables for s in v.pairs.values()]
    page = Page(
        "Agreement across runs: " + " · ".join(result.coders),
        [*meta, ("intervals", f"95% percentile bootstrap, {result.bootstrap.resamples} resamples of whole chats")],
        verdict=f"Cohen's κ between the runs: {value_range(kappas)} over {len(kappas)} variables and pairs "
        "(the study this tool serves asks for above 0.80 between models).",
    )
    differences = [[pair, "; ".join(diff)] for pair, diff in result.differences.items()]
    page.tables.append(Table("What differs between the runs", ["pair", "differences"], differences))
    columns = ["variable", "pair", "n", "left out", "% agree", "Cohen κ", "κ 95% CI", "κ quadratic"]
    columns += ["Krippendorff α", "Gwet AC1", "AC1 95% CI"]
    rows = [
        [
            v.variable,
            pair,
            s.n,
            v.items_left_out,
            fmt(s.percent_agreement),
            fmt(s.cohen_kappa),
            fmt_ci(s.ci95.get("cohen_kappa")),
            fmt(s.kappa_quadratic),
            fmt(s.krippendorff_alpha),
            fmt(s.gwet_ac1),
            fmt_ci(s.ci95.get("gwet_ac1")),
        ]
        for v in result.variables
        for pair, s in v.pairs.items()
    ]
    page.tables.append(Table("Agreement by variable and pair of runs", columns, rows, left=2))
    together = [(v.variable, v.all_runs) for v in result.variables if v.all_runs is not None]
    if together:
        columns = ["variable", "units", "mean pairwise κ", "Fleiss κ", "Krippendorff α", "identical in all"]
        page.tables.append(
            Table(
                "All runs together",
                columns,
                [[name, m.units, *(fmt(getattr(m, k)) for k in MULTI)] for name, m in together],
            )
        )
    pairs = [(f"{v.variable} · {pair}", s) for v in result.variables for pair, s in v.pairs.items()]
    if pairs:
        png = plots.agreement_intervals(pairs, ["cohen_kappa", "gwet_ac1"])
        page.figure_sections.append(
            FigureSection("Agreement with 95% intervals", [figure("Cohen κ and Gwet AC1 per variable and pair", png)])
        )
    return page


def _repeats_page(result: AgreementResult, meta: list[tuple[str, str]]) -> Page:
    shares = [v.repeats.identical_share for v in result.variables if v.repeats is not None]
    kappas = [v.repeats.mean_pairwise_kappa for v in result.variables if v.repeats is not None]
    verdict = (
        f"Across {len(result.coders)} repeats, {value_range([100 * x for x in shares], 0)}% of units got the same "
        f"label every time; mean pairwise κ {value_range(kappas)} (the study this tool serves asks for above 0.90)."
    )
    page = Page(f"Agreement across {len(result.coders)} repeats of run {result.runs[0].run_id}", meta, verdict=verdict)
    rows = [
        [v.variable, v.repeats.units, v.items_left_out, *(fmt(getattr(v.repeats, k)) for k in MULTI)]
        for v in result.variables
        if v.repeats is not None
    ]
    columns = ["variable", "units", "left out", "mean pairwise κ", "Fleiss κ", "Krippendorff α", "identical in all"]
    note = "Units lacking an ok label in any repeat are left out (counted in 'left out')."
    page.tables.append(Table("Replication across repeats", columns, rows, note=note))
    for v in result.variables:
        if v.repeats is None:
            continue
        matrix = [[c, *(fmt(x) for x in row)] for c, row in zip(result.coders, v.repeats.pairwise_kappa, strict=True)]
        page.tables.append(Table(f"{v.variable}: pairwise κ between repeats", ["", *result.coders], matrix))
    return page
