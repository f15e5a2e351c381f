"""Write agreement results: ``agreement.json`` (every figure), ``agreement.csv`` (the table a paper
prints) and ``report.html`` (one self-contained page: tables, figures, disagreement browser)."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from annotate import __version__, plots


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    left: int = 1
    """How many leading columns are text (left-aligned)."""


@dataclass
class Figure:
    caption: str
    png: str
    """Base64 PNG."""


@dataclass
class FigureSection:
    title: str
    figures: list[Figure]
    note: str = ""


@dataclass
class Browser:
    title: str
    note: str
    columns: list[str]
    rows: list[dict[str, Any]]
    """Each: ``variable``, ``group`` and ``cells``."""
    context_column: int = -1

    @property
    def variables(self) -> list[str]:
        return sorted({r["variable"] for r in self.rows})

    @property
    def groups(self) -> list[str]:
        return sorted({r["group"] for r in self.rows})


@dataclass
class Page:
    title: str
    meta: list[tuple[str, str]]
    tables: list[Table] = field(default_factory=list)
    figure_sections: list[FigureSection] = field(default_factory=list)
    browser: Browser | None = None
    version: str = __version__


def render_html(page: Page) -> str:
    env = Environment(loader=PackageLoader("annotate", "templates"), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("report.html.j2").render(page=page)


def figure(caption: str, png: bytes) -> Figure:
    return Figure(caption, base64.b64encode(png).decode("ascii"))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(interval: Any) -> str:
    if not interval or interval[0] is None or interval[1] is None:
        return ""
    return f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def write_outputs(out_dir: Path, data: dict[str, Any], table: pd.DataFrame, page: Page) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "agreement.json", out_dir / "agreement.csv", out_dir / "report.html"]
    paths[0].write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    table.to_csv(paths[1], index=False)
    paths[2].write_text(render_html(page), encoding="utf-8")
    return paths


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ------------------------------------------------------------------------------------------- validate

PAPER_COLUMNS = [
    "percent_agreement",
    "cohen_kappa",
    "kappa_linear",
    "kappa_quadratic",
    "krippendorff_alpha",
    "gwet_ac1",
]


def validation_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per variable: the table a paper prints, with interval bounds as their own columns."""
    rows = []
    for v in report["variables"]:
        row: dict[str, Any] = {
            "variable": v["variable"],
            "task": v["task"],
            "scale": v["scale"],
            "n": v["n"],
            "chats": v["chats"],
        }
        for stat in PAPER_COLUMNS:
            row[stat] = v[stat]
            low, high = v["ci95"].get(stat, [None, None])
            if stat in v["ci95"]:
                row[f"{stat}_ci_low"], row[f"{stat}_ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def validation_page(report: dict[str, Any], trajectory_png: bytes | None, group_by: str | None) -> Page:
    run, gold = report["run"], report["gold"]
    model = run.get("model") or {}
    prompts = ", ".join(f"{t} {p['version']} ({p['hash']})" for t, p in (run.get("prompts") or {}).items())
    page = Page(
        title=f"Agreement with human labels: run {run.get('run_id')}",
        meta=[
            ("run", f"{run['dir']} (backend {run.get('backend')}, repeat {report['repeat']})"),
            ("model", f"{model.get('name')} ({model.get('engine', '')})"),
            ("prompts", prompts),
            (
                "gold",
                f"{gold['path']}: {gold['items']} items, annotators {', '.join(gold['annotators'])}"
                + (f"; reference is the consensus ({gold['consensus']})" if gold.get("consensus") else ""),
            ),
            ("intervals", f"95% percentile bootstrap, {report['bootstrap']['resamples']} resamples of whole chats"),
        ],
    )
    _summary_table(page, report)
    _prevalence_table(page, report)
    _ceiling_table(page, report)
    _unmatched_table(page, report)
    _validation_figures(page, report, trajectory_png, group_by)
    _disagreement_browser(page, report)
    return page


def _summary_table(page: Page, report: dict[str, Any]) -> None:
    """The headline table: every statistic per variable."""
    page.tables.append(
        Table(
            "Agreement by variable",
            [
                "variable",
                "scale",
                "n",
                "chats",
                "% agree",
                "Cohen κ",
                "κ 95% CI",
                "κ linear",
                "κ quadratic",
                "κq 95% CI",
                "Krippendorff α",
                "α 95% CI",
                "Gwet AC1",
                "AC1 95% CI",
            ],
            [
                [
                    v["variable"],
                    v["scale"],
                    v["n"],
                    v["chats"],
                    fmt(v["percent_agreement"]),
                    fmt(v["cohen_kappa"]),
                    fmt_ci(v["ci95"].get("cohen_kappa")),
                    fmt(v["kappa_linear"]),
                    fmt(v["kappa_quadratic"]),
                    fmt_ci(v["ci95"].get("kappa_quadratic")),
                    fmt(v["krippendorff_alpha"]),
                    fmt_ci(v["ci95"].get("krippendorff_alpha")),
                    fmt(v["gwet_ac1"]),
                    fmt_ci(v["ci95"].get("gwet_ac1")),
                ]
                for v in report["variables"]
            ],
            note="κ is undefined (–) when one coder uses a single label; AC1 stays defined and is the figure to read "
            "when one label dominates. Weighted κ is given for ordinal scales only.",
            left=2,
        )
    )


def _prevalence_table(page: Page, report: dict[str, Any]) -> None:
    """How often each label occurs in gold and LLM output, with per-class precision and recall."""
    page.tables.append(
        Table(
            "Label prevalence (share of items), human vs LLM",
            ["variable", "label", "human", "LLM", "precision", "recall", "support"],
            [
                [
                    v["variable"],
                    f"{k} {v['category_labels'].get(str(k), '')}".strip(),
                    fmt(v["prevalence_gold"][k], 2),
                    fmt(v["prevalence_llm"][k], 2),
                    fmt(v["per_class"].get(k, {}).get("precision"), 2),
                    fmt(v["per_class"].get(k, {}).get("recall"), 2),
                    v["per_class"].get(k, {}).get("support", 0),
                ]
                for v in report["variables"]
                for k in v["categories"]
            ],
            note="Precision and recall of the LLM's labels, taking the human label as the reference.",
            left=2,
        )
    )


def _ceiling_table(page: Page, report: dict[str, Any]) -> None:
    """With several annotators: the LLM against each, and human against human."""
    ceiling = [
        [v["variable"], "LLM vs " + name, fmt(s["cohen_kappa"]), fmt(s["gwet_ac1"]), fmt(s["percent_agreement"])]
        for v in report["variables"]
        for name, s in v.get("by_annotator", {}).get("llm_vs", {}).items()
    ] + [
        [v["variable"], pair, fmt(s["cohen_kappa"]), fmt(s["gwet_ac1"]), fmt(s["percent_agreement"])]
        for v in report["variables"]
        for pair, s in v.get("by_annotator", {}).get("human_pairs", {}).items()
    ]
    if ceiling:
        page.tables.append(
            Table(
                "Against each annotator, and human against human (the ceiling)",
                ["variable", "pair", "Cohen κ", "Gwet AC1", "% agree"],
                ceiling,
                left=2,
            )
        )


def _unmatched_table(page: Page, report: dict[str, Any]) -> None:
    """Items left out of every statistic, and why."""
    unmatched = report["unmatched"]
    page.tables.append(
        Table(
            "What did not match",
            ["what", "count", "examples"],
            [
                [
                    "gold items the run never labelled",
                    len(unmatched["gold_not_labelled"]),
                    _examples(unmatched["gold_not_labelled"]),
                ],
                [
                    "gold items whose label is a failure row",
                    len(unmatched["failed_labels"]),
                    _examples(unmatched["failed_labels"]),
                ],
                ["LLM labels with no gold label", unmatched["labels_without_gold"], ""],
            ],
            note="Nothing is dropped silently: these items are left out of every statistic above.",
            left=1,
        )
    )


def _validation_figures(page: Page, report: dict[str, Any], trajectory_png: bytes | None, group_by: str | None) -> None:
    """Interval plot, confusion heatmaps and the sentiment trajectories."""
    if report["variables"]:
        page.figure_sections.append(
            FigureSection(
                "Agreement with 95% intervals",
                [
                    figure(
                        "Cohen κ, quadratic κ (ordinal) and Gwet AC1 per variable",
                        plots.agreement_intervals(
                            [{**v, "name": v["variable"]} for v in report["variables"]],
                            ["cohen_kappa", "kappa_quadratic", "gwet_ac1"],
                        ),
                    )
                ],
            )
        )
        page.figure_sections.append(
            FigureSection(
                "Confusion matrices (rows: human, columns: LLM)",
                [
                    figure(
                        v["variable"], plots.confusion_heatmap(v["confusion"]["matrix"], v["categories"], v["variable"])
                    )
                    for v in report["variables"]
                ],
            )
        )
    if trajectory_png is not None:
        page.figure_sections.append(
            FigureSection(
                "Per-round negative sentiment (LLM labels)",
                [figure("LOESS with 95% band from a chat bootstrap", trajectory_png)],
                note=f"Each chat's rounds are spread over 0-100%; curves per {group_by or 'run'}.",
            )
        )


def _disagreement_browser(page: Page, report: dict[str, Any]) -> None:
    """Every disagreement with what the model saw, filterable."""
    page.browser = Browser(
        "Disagreements",
        "Each row is an item where the LLM and the human differ, with what the model saw (context shortened to the "
        "last three turns). Group: the human label → the LLM label. Filter by variable or group to find systematic "
        "errors, e.g. missing context, implicit sentiment or incomplete logs.",
        ["variable", "chat", "round", "human → LLM", "context", "target"],
        [
            {
                "variable": d["variable"],
                "group": f"{d['gold']} → {d['llm']}",
                "cells": [
                    d["variable"],
                    d["chat_id"],
                    fmt(d["round"]),
                    f"{d['gold']} → {d['llm']}",
                    d.get("context", ""),
                    d.get("target", "") + (f" [truncated: {d['truncation']}]" if d["truncation"] else ""),
                ],
            }
            for d in sorted(report["disagreements"], key=lambda d: (d["variable"], d["gold"], d["llm"], d["chat_id"]))
        ],
        context_column=4,
    )


def _examples(items: list[dict[str, Any]], limit: int = 6) -> str:
    shown = ", ".join(
        f"{i['chat_id']}{'/r' + str(i['round']) if i['round'] is not None else ''} {i['variable']}"
        for i in items[:limit]
    )
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------- agree


def agree_table(result: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for v in result["variables"]:
        base = {
            "variable": v["variable"],
            "task": v["task"],
            "scale": v["scale"],
            "items_left_out": v["items_left_out"],
        }
        if result["mode"] == "repeats":
            rows.append(
                {
                    **base,
                    "comparison": "repeats",
                    "n": v["units"],
                    "coders": v["coders"],
                    **{
                        k: v[k]
                        for k in ("mean_pairwise_kappa", "fleiss_kappa", "krippendorff_alpha", "identical_share")
                    },
                }
            )
            continue
        for pair, s in v["pairs"].items():
            row = {**base, "comparison": pair, "n": int(s["n"]), "coders": 2}
            for stat in PAPER_COLUMNS:
                row[stat] = s[stat]
                if stat in s["ci95"]:
                    row[f"{stat}_ci_low"], row[f"{stat}_ci_high"] = s["ci95"][stat]
            rows.append(row)
        if "all_runs" in v:
            a = v["all_runs"]
            rows.append(
                {
                    **base,
                    "comparison": "all runs",
                    "n": a["units"],
                    "coders": a["coders"],
                    **{
                        k: a[k]
                        for k in ("mean_pairwise_kappa", "fleiss_kappa", "krippendorff_alpha", "identical_share")
                    },
                }
            )
    return pd.DataFrame(rows)


def agree_page(result: dict[str, Any]) -> Page:
    runs = result["runs"]
    meta = [(f"run {i + 1}", f"{r['dir']} ({r['backend']}, {r['model']}, {r['engine']})") for i, r in enumerate(runs)]
    if result["mode"] == "repeats":
        page = Page(f"Agreement across {len(result['coders'])} repeats of run {runs[0]['run_id']}", meta)
        page.tables.append(
            Table(
                "Replication across repeats",
                ["variable", "units", "left out", "mean pairwise κ", "Fleiss κ", "Krippendorff α", "identical in all"],
                [
                    [
                        v["variable"],
                        v["units"],
                        v["items_left_out"],
                        fmt(v["mean_pairwise_kappa"]),
                        fmt(v["fleiss_kappa"]),
                        fmt(v["krippendorff_alpha"]),
                        fmt(v["identical_share"]),
                    ]
                    for v in result["variables"]
                ],
                note="Units lacking an ok label in any repeat are left out (counted in 'left out').",
            )
        )
        for v in result["variables"]:
            page.tables.append(
                Table(
                    f"{v['variable']}: pairwise κ between repeats",
                    ["", *result["coders"]],
                    [[c, *(fmt(x) for x in row)] for c, row in zip(result["coders"], v["pairwise_kappa"], strict=True)],
                )
            )
        return page
    page = Page(
        "Agreement across runs: " + " · ".join(result["coders"]),
        [
            *meta,
            ("intervals", f"95% percentile bootstrap, {result['bootstrap']['resamples']} resamples of whole chats"),
        ],
    )
    page.tables.append(
        Table(
            "What differs between the runs",
            ["pair", "differences"],
            [[pair, "; ".join(diff)] for pair, diff in result["differences"].items()],
        )
    )
    page.tables.append(
        Table(
            "Agreement by variable and pair of runs",
            [
                "variable",
                "pair",
                "n",
                "left out",
                "% agree",
                "Cohen κ",
                "κ 95% CI",
                "κ quadratic",
                "Krippendorff α",
                "Gwet AC1",
                "AC1 95% CI",
            ],
            [
                [
                    v["variable"],
                    pair,
                    int(s["n"]),
                    v["items_left_out"],
                    fmt(s["percent_agreement"]),
                    fmt(s["cohen_kappa"]),
                    fmt_ci(s["ci95"].get("cohen_kappa")),
                    fmt(s["kappa_quadratic"]),
                    fmt(s["krippendorff_alpha"]),
                    fmt(s["gwet_ac1"]),
                    fmt_ci(s["ci95"].get("gwet_ac1")),
                ]
                for v in result["variables"]
                for pair, s in v["pairs"].items()
            ],
            left=2,
        )
    )
    if any("all_runs" in v for v in result["variables"]):
        page.tables.append(
            Table(
                "All runs together",
                ["variable", "units", "mean pairwise κ", "Fleiss κ", "Krippendorff α", "identical in all"],
                [
                    [
                        v["variable"],
                        v["all_runs"]["units"],
                        fmt(v["all_runs"]["mean_pairwise_kappa"]),
                        fmt(v["all_runs"]["fleiss_kappa"]),
                        fmt(v["all_runs"]["krippendorff_alpha"]),
                        fmt(v["all_runs"]["identical_share"]),
                    ]
                    for v in result["variables"]
                    if "all_runs" in v
                ],
            )
        )
    rows = [{**s, "name": f"{v['variable']} · {pair}"} for v in result["variables"] for pair, s in v["pairs"].items()]
    if rows:
        page.figure_sections.append(
            FigureSection(
                "Agreement with 95% intervals",
                [
                    figure(
                        "Cohen κ and Gwet AC1 per variable and pair",
                        plots.agreement_intervals(rows, ["cohen_kappa", "gwet_ac1"]),
                    )
                ],
            )
        )
    return page


# ----------------------------------------------------------------------------------------------- diff


def diff_table(result: dict[str, Any]) -> pd.DataFrame:
    va, vb = list(result["versions"])
    rows = []
    for v in result.get("variables", []):
        row: dict[str, Any] = {
            "task": result["task"],
            "variable": v["variable"],
            "version_a": va,
            "version_b": vb,
            "n": v["n"],
            "flipped": len(v["flipped"]),
            "kappa_between_versions": v["between_versions"]["cohen_kappa"],
            "percent_same": v["between_versions"]["percent_agreement"],
        }
        g = v.get("gold")
        if g and g.get("n"):
            for stat in ("cohen_kappa", "gwet_ac1", "percent_agreement"):
                row[f"gold_{stat}_{va}"] = g[va][stat]
                row[f"gold_{stat}_{vb}"] = g[vb][stat]
                row[f"gold_{stat}_change"] = g["change"][stat]
                low, high = g["change_ci95"].get(stat, [None, None])
                row[f"gold_{stat}_change_ci_low"], row[f"gold_{stat}_change_ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def diff_page(result: dict[str, Any]) -> Page:
    va, vb = list(result["versions"])
    info = result["versions"]
    page = Page(
        f"Prompt diff: {result['task']} {va} → {vb}",
        [
            (v, f"hash {i['hash']}, parent {i['parent'] or '-'}, rubric {i['rubric']}: {i['changelog'].strip()}")
            for v, i in info.items()
        ]
        + [
            (
                f"run {v}",
                f"{r['dir']} ({r['model_calls']} model calls, {r['cache_hits']} from cache, "
                f"{r.get('evaluated_prompt_tokens', '?')} of {r.get('prompt_tokens', '?')} prompt tokens evaluated, "
                f"{r.get('seconds', '?')} s)",
            )
            for v, r in result.get("runs", {}).items()
        ],
    )
    page.tables.append(
        Table("Text diff (template, metadata and examples, rubric)", ["diff"], [[_pre(result["text_diff"])]], left=1)
    )
    for v in result.get("variables", []):
        cats = v["categories"]
        page.tables.append(
            Table(
                f"{v['variable']}: label transitions (rows {va}, columns {vb})",
                [f"{va} \\ {vb}", *map(str, cats)],
                [[str(k), *row] for k, row in zip(cats, v["transitions"]["matrix"], strict=True)],
                note=f"{v['n']} units labelled ok by both versions ({v['not_compared']} not compared); "
                f"{len(v['flipped'])} flipped; κ between versions {fmt(v['between_versions']['cohen_kappa'])}, "
                f"same label {fmt(v['between_versions']['percent_agreement'])}.",
            )
        )
        g = v.get("gold")
        if g and g.get("n"):
            page.tables.append(
                Table(
                    f"{v['variable']}: agreement with gold ({g['n']} items)",
                    ["statistic", va, vb, "change", "change 95% CI (paired chat bootstrap)"],
                    [
                        [
                            stat,
                            fmt(g[va][stat]),
                            fmt(g[vb][stat]),
                            fmt(g["change"][stat]),
                            fmt_ci(g["change_ci95"].get(stat)),
                        ]
                        for stat in ("cohen_kappa", "gwet_ac1", "percent_agreement")
                    ],
                )
            )
    flips = [
        {
            "variable": v["variable"],
            "group": f"{f[va]} → {f[vb]}",
            "cells": [
                v["variable"],
                f["chat_id"],
                fmt(f["round"]),
                f"{f[va]} → {f[vb]}",
                f[f"raw_{va}"],
                f[f"raw_{vb}"],
                f.get("target", ""),
            ],
        }
        for v in result.get("variables", [])
        for f in v["flipped"]
    ]
    if "variables" in result:
        page.browser = Browser(
            "Flipped units",
            f"Units whose label changed from {va} to {vb}, with both raw outputs.",
            ["variable", "chat", "round", f"{va} → {vb}", f"raw {va}", f"raw {vb}", "what the model rated"],
            flips,
        )
    return page


class _pre(str):
    """Text shown in a monospace block (the template escapes it)."""

    __slots__ = ()

    def __html__(self) -> str:
        import html

        return f"<pre style='text-align:left;white-space:pre-wrap;margin:0'>{html.escape(str(self))}</pre>"
