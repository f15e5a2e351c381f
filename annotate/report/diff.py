"""``annotate diff`` outputs: one row per variable, the page with transitions and flips, and prompt.diff."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from annotate.analysis.results import DiffResult, VariableDiff
from annotate.report.html import Browser, BrowserRow, Page, Pre, Table, fmt, fmt_ci, value_range, write_report
from annotate.runs.outputs import write_atomic

GOLD_STATISTICS = ("cohen_kappa", "gwet_ac1", "percent_agreement")


def write_diff(out: Path, result: DiffResult) -> list[Path]:
    """diff.json, diff.csv, report.html and prompt.diff."""
    paths = write_report(out, result, diff_table(result), diff_page(result))
    write_atomic(out / "prompt.diff", result.text_diff)
    return [*paths, out / "prompt.diff"]


def diff_table(result: DiffResult) -> pd.DataFrame:
    va, vb = result.sides
    rows = []
    for v in result.variables:
        row: dict[str, object] = {
            "task": result.task,
            "variable": v.variable,
            "version_a": va,
            "version_b": vb,
            "n": v.n,
            "flipped": len(v.flipped),
            "kappa_between_versions": v.between_versions.cohen_kappa,
            "percent_same": v.between_versions.percent_agreement,
        }
        g = v.gold
        if g is not None and g.n:
            for stat in GOLD_STATISTICS:
                row[f"gold_{stat}_{va}"] = getattr(g.by_side[va], stat)
                row[f"gold_{stat}_{vb}"] = getattr(g.by_side[vb], stat)
                row[f"gold_{stat}_change"] = g.change[stat]
                row[f"gold_{stat}_change_ci_low"], row[f"gold_{stat}_change_ci_high"] = g.change_ci95.get(
                    stat, (float("nan"), float("nan"))
                )
        rows.append(row)
    return pd.DataFrame(rows)


def diff_page(result: DiffResult) -> Page:
    va, vb = result.sides
    meta = [
        (v, f"hash {i.hash}, parent {i.parent or '-'}, rubric {i.rubric}: {i.changelog.strip()}")
        for v, i in result.versions.items()
    ]
    meta += [
        (
            f"run {v}",
            f"{r.dir} ({r.model_calls} model calls, {r.cache_hits} from cache, "
            f"{r.evaluated_prompt_tokens} of {r.prompt_tokens} prompt tokens evaluated, {r.seconds} s)",
        )
        for v, r in result.runs.items()
    ]
    flipped = sum(len(v.flipped) for v in result.variables)
    compared = sum(v.n for v in result.variables)
    verdict = (
        f"{flipped} of {compared} labels changed between {va} and {vb}; κ between them "
        f"{value_range([v.between_versions.cohen_kappa for v in result.variables])}."
        if result.variables
        else "The prompts' text differs as below; run with --on to see which labels it changes."
    )
    page = Page(f"Prompt diff: {result.task} {va} → {vb}", meta, verdict=verdict)
    page.tables.append(
        Table("Text diff (template, metadata and examples, rubric)", ["diff"], [[Pre(result.text_diff)]], left=1)
    )
    for v in result.variables:
        page.tables += _variable_tables(v, va, vb)
    if result.runs:
        flips = [
            BrowserRow(
                v.variable,
                f"{f.values[va]} → {f.values[vb]}",
                [
                    v.variable,
                    f.chat_id,
                    fmt(f.round),
                    f"{f.values[va]} → {f.values[vb]}",
                    f.raw[va],
                    f.raw[vb],
                    f.target,
                ],
            )
            for v in result.variables
            for f in v.flipped
        ]
        columns = ["variable", "chat", "round", f"{va} → {vb}", f"raw {va}", f"raw {vb}", "what the model rated"]
        note = f"Units whose label changed from {va} to {vb}, with both raw outputs."
        page.browser = Browser("Flipped units", note, columns, flips)
    return page


def _variable_tables(v: VariableDiff, va: str, vb: str) -> list[Table]:
    between = v.between_versions
    tables = [
        Table(
            f"{v.variable}: label transitions (rows {va}, columns {vb})",
            [f"{va} \\ {vb}", *map(str, v.categories)],
            [[str(k), *row] for k, row in zip(v.categories, v.transitions, strict=True)],
            note=f"{v.n} units labelled ok by both versions ({v.not_compared} not compared); "
            f"{len(v.flipped)} flipped; κ between versions {fmt(between.cohen_kappa)}, "
            f"same label {fmt(between.percent_agreement)}.",
        )
    ]
    g = v.gold
    if g is not None and g.n:
        rows = [
            [
                stat,
                fmt(getattr(g.by_side[va], stat)),
                fmt(getattr(g.by_side[vb], stat)),
                fmt(g.change[stat]),
                fmt_ci(g.change_ci95.get(stat)),
            ]
            for stat in GOLD_STATISTICS
        ]
        columns = ["statistic", va, vb, "change", "change 95% CI (paired chat bootstrap)"]
        tables.append(Table(f"{v.variable}: agreement with gold ({g.n} items)", columns, rows))
    return tables
