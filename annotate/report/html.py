"""One self-contained HTML page per command: tables, figures (inline PNG) and a filterable browser.

Everything on the page is escaped by the template (autoescape); nothing is fetched from a network.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from annotate import __version__
from annotate.analysis.results import Result
from annotate.runs.outputs import write_atomic, write_csv


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
class BrowserRow:
    variable: str
    group: str
    cells: list[str]


@dataclass
class Browser:
    title: str
    note: str
    columns: list[str]
    rows: list[BrowserRow]
    context_column: int = -1

    @property
    def variables(self) -> list[str]:
        return sorted({r.variable for r in self.rows})

    @property
    def groups(self) -> list[str]:
        return sorted({r.group for r in self.rows})


@dataclass
class Page:
    title: str
    meta: list[tuple[str, str]]
    verdict: str = ""
    """One line, first on the page: what a reader should take away."""
    caveats: list[tuple[str, str]] = field(default_factory=list)
    """(what it concerns, the caveat): every caveat of the page, in one place under the verdict."""
    tables: list[Table] = field(default_factory=list)
    figure_sections: list[FigureSection] = field(default_factory=list)
    browser: Browser | None = None
    version: str = __version__


def value_range(values: Sequence[float | None], digits: int = 2) -> str:
    """'0.09 to 0.30' over the defined values ('undefined' when none is)."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    if not defined:
        return "undefined"
    low, high = min(defined), max(defined)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f} to {high:.{digits}f}"


def render_html(page: Page) -> str:
    env = Environment(
        loader=PackageLoader("annotate.report", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    return env.get_template("report.html.j2").render(page=page)


def write_report(folder: Path, result: Result, table: pd.DataFrame, page: Page, name: str = "agreement") -> list[Path]:
    """``<name>.json``, ``<name>.csv`` and ``report.html`` in ``folder``."""
    paths = write_result(folder, result, table, name)
    page_path = folder / "report.html"
    write_atomic(page_path, render_html(page))
    return [*paths, page_path]


def write_result(folder: Path, result: Result, table: pd.DataFrame, name: str) -> list[Path]:
    """``<name>.json`` (every figure) and ``<name>.csv`` (``table``: one row per variable, pair or term)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.json", folder / f"{name}.csv"]
    write_atomic(paths[0], result.model_dump_json(indent=2) + "\n")
    write_csv(table, paths[1])
    return paths


def figure(caption: str, png: bytes) -> Figure:
    return Figure(caption, base64.b64encode(png).decode("ascii"))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return unsigned_zero(f"{value:.{digits}f}")
    return str(value)


def unsigned_zero(text: str) -> str:
    """'-0.00' is 0.00: a sign on a number that rounds to zero is noise."""
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt_ci(interval: Any) -> str:
    if not interval or any(x is None or math.isnan(x) for x in interval):
        return ""
    return f"[{unsigned_zero(f'{interval[0]:.2f}')}, {unsigned_zero(f'{interval[1]:.2f}')}]"


class Pre(str):
    """Text shown in a monospace block (escaped here, so markup in it stays text)."""

    __slots__ = ()

    def __html__(self) -> str:
        return f"<pre style='text-align:left;white-space:pre-wrap;margin:0'>{html.escape(str(self))}</pre>"
