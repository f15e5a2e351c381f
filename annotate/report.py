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
    return page


def _examples(items: list[dict[str, Any]], limit: int = 6) -> str:
    shown = ", ".join(
        f"{i['chat_id']}{'/r' + str(i['round']) if i['round'] is not None else ''} {i['variable']}"
        for i in items[:limit]
    )
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
