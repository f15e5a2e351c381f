"""A paper-ready table of ``annotate estimate``: coefficients with standard errors and 95% intervals, one column
per estimator, the sample below, as Markdown and as LaTeX (booktabs)."""

from __future__ import annotations

from pathlib import Path

from annotate.analysis.estimation.estimate_results import EstimateResult, Estimator, ModelEstimate
from annotate.runs.outputs import write_atomic

COLUMNS = (("human_only", "Human only"), ("ppi", "Prediction-powered"), ("combined", "Labellers combined"))


def write_paper_tables(result: EstimateResult, folder: Path) -> list[Path]:
    """``estimate_table.md`` and ``estimate_table.tex`` beside estimate.json."""
    paths = [folder / "estimate_table.md", folder / "estimate_table.tex"]
    write_atomic(paths[0], "\n\n".join(markdown(m) for m in result.models) + "\n")
    write_atomic(paths[1], "\n\n".join(latex(m) for m in result.models) + "\n")
    return paths


def _columns(model: ModelEstimate) -> list[tuple[str, str]]:
    return [(key, name) for key, name in COLUMNS if any(getattr(t, key) is not None for t in model.terms)]


def _cell(est: Estimator | None) -> tuple[str, str]:
    if est is None or est.estimate is None or est.se is None or est.low is None or est.high is None:
        return "n.e.", ""
    return f"{est.estimate:.3f} ({est.se:.3f})", f"[{est.low:.2f}, {est.high:.2f}]"


def _footer(model: ModelEstimate) -> list[str]:
    reference = "; ".join(f"{k} = {v}" for k, v in model.reference_levels.items())
    scale = f"{min(model.outcome_scale)}–{max(model.outcome_scale)}" if model.outcome_scale else ""
    return [
        f"Outcome: {model.outcome} ({model.family}{', scale ' + scale if scale else ''}). "
        + (f"Reference levels: {reference}. " if reference else "")
        + f"{model.units} units, {model.human_labels} human labels from {model.coded_chats} coded chats "
        f"({model.design}). Standard errors in parentheses, 95% intervals in brackets (Student's t); "
        "n.e.: not estimable.",
    ]


MARKDOWN = {"\\": "\\\\", "|": "\\|", "*": "\\*", "`": "\\`", "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _md(text: str) -> str:
    """A name from the data, safe in a Markdown table cell: no column breaks, no line breaks, no HTML (an underscore
    inside a word is not emphasis in CommonMark, so `ai_unable` stays as it is)."""
    return "".join(MARKDOWN.get(c, " " if c in "\r\n" else c) for c in text)


def markdown(model: ModelEstimate) -> str:
    columns = _columns(model)
    lines = [f"**{_md(model.formula)}**", "", "| term | " + " | ".join(n for _, n in columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    for t in model.terms:
        cells = [_cell(getattr(t, key)) for key, _ in columns]
        lines.append(f"| {_md(t.term)} | " + " | ".join(f"{a} {b}".strip() for a, b in cells) + " |")
    return "\n".join([*lines, "", *(_md(line) for line in _footer(model))])


TEX = {"\\": "\\textbackslash{}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"} | {
    c: "\\" + c for c in "_&%$#{}"
}


def _tex(text: str) -> str:
    return "".join(TEX.get(c, c) for c in text)


def latex(model: ModelEstimate) -> str:
    columns = _columns(model)
    lines = [
        "\\begin{table}[ht]\\centering",
        f"\\caption{{{_tex(model.formula)}}}",
        "\\begin{tabular}{l" + "c" * len(columns) + "}",
        "\\toprule",
        " & ".join(["Term", *(n for _, n in columns)]) + " \\\\",
        "\\midrule",
    ]
    for t in model.terms:
        cells = [_cell(getattr(t, key)) for key, _ in columns]
        lines.append(" & ".join([_tex(t.term), *(a for a, _ in cells)]) + " \\\\")
        lines.append(" & ".join(["", *(b for _, b in cells)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\par\\footnotesize {_tex(_footer(model)[0])}", "\\end{table}"]
    return "\n".join(lines)
