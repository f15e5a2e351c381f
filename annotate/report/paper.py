"""A paper-ready table of ``annotate estimate``: coefficients with standard errors and 95% intervals, one column
per estimator, the LLM labels' share (λ) and worth, the sample below, as Markdown and as LaTeX (it needs
``\\usepackage{booktabs}``, as its first line says). Terms carry readable names: ``escalation: customer_upset
(vs ai_unable)``, not the formula's ``C(escalation)[T.customer_upset]``."""

from __future__ import annotations

import re
from pathlib import Path

from annotate.analysis.estimation.estimate_results import EstimateResult, Estimator, ModelEstimate, TermEstimate
from annotate.runs.outputs import write_atomic

COLUMNS = (("human_only", "Human only"), ("ppi", "Prediction-powered"), ("combined", "Labellers combined"))


def write_paper_tables(result: EstimateResult, folder: Path) -> list[Path]:
    """``estimate_table.md`` and ``estimate_table.tex`` beside estimate.json."""
    paths = [folder / "estimate_table.md", folder / "estimate_table.tex"]
    write_atomic(paths[0], "\n\n".join(markdown(m) for m in result.models) + "\n")
    write_atomic(paths[1], "\n\n".join(latex(m) for m in result.models) + "\n")
    return paths


CATEGORY = re.compile(r"C\((?P<name>[^)]+)\)\[(?:T\.)?(?P<level>.*)\]", re.DOTALL)


def term_name(term: str, reference: dict[str, str]) -> str:
    """A coefficient's name as a reader of the paper says it: a level against its reference, a slope, or the
    intercept."""
    found = CATEGORY.fullmatch(term)
    if found is None:
        return term
    name, level = found["name"], found["level"]
    base = reference.get(name)
    return f"{name}: {level} (vs {base})" if base else f"{name}: {level}"


def _shares(t: TermEstimate) -> str:
    lam = "–" if t.lam is None else f"{t.lam:.2f}"
    return f"{lam}; {t.worth.shown() if t.worth else '–'}"


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
        + f"n = {model.human_labels} human labels from {model.coded_chats} coded chats of N = {model.units} units "
        f"({model.design}). Standard errors in parentheses, 95% intervals in brackets (Student's t); "
        "n.e.: not estimable. Prediction-powered: the human-only estimate corrected by the LLM labels of all N "
        "units (annotate estimate; λ, the labels' share, chosen on other coded chats than those it is applied to; "
        'worth: human labels per 100 coded the labels are worth, with its 95% interval, "none" when λ = 0).',
    ]


MARKDOWN = {"\\": "\\\\", "|": "\\|", "*": "\\*", "`": "\\`", "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _md(text: str) -> str:
    """A name from the data, safe in a Markdown table cell: no column breaks, no line breaks, no HTML (an underscore
    inside a word is not emphasis in CommonMark, so `ai_unable` stays as it is)."""
    return "".join(MARKDOWN.get(c, " " if c in "\r\n" else c) for c in text)


def markdown(model: ModelEstimate) -> str:
    columns = _columns(model)
    header = ["term", *(n for _, n in columns), "λ; worth /100 coded"]
    lines = [f"**{_md(model.formula)}**", "", "| " + " | ".join(header) + " |"]
    lines.append("|---|" + "---|" * (len(header) - 1))
    for t in model.terms:
        cells = [_cell(getattr(t, key)) for key, _ in columns]
        name = _md(term_name(t.term, model.reference_levels))
        lines.append(f"| {name} | " + " | ".join([*(f"{a} {b}".strip() for a, b in cells), _shares(t)]) + " |")
    return "\n".join([*lines, "", *(_md(line) for line in _footer(model))])


TEX = {"\\": "\\textbackslash{}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"} | {
    c: "\\" + c for c in "_&%$#{}"
}


def _tex(text: str) -> str:
    return "".join(TEX.get(c, c) for c in text)


def latex(model: ModelEstimate) -> str:
    columns = _columns(model)
    lines = [
        "% needs \\usepackage{booktabs} (\\toprule, \\midrule, \\bottomrule)",
        "\\begin{table}[ht]\\centering",
        f"\\caption{{{_tex(model.formula)}}}",
        "\\begin{tabular}{l" + "c" * len(columns) + "c}",
        "\\toprule",
        " & ".join(["Term", *(n for _, n in columns), "$\\lambda$; worth /100 coded"]) + " \\\\",
        "\\midrule",
    ]
    for t in model.terms:
        cells = [_cell(getattr(t, key)) for key, _ in columns]
        name = _tex(term_name(t.term, model.reference_levels))
        lines.append(" & ".join([name, *(a for a, _ in cells), _tex(_shares(t))]) + " \\\\")
        lines.append(" & ".join(["", *(b for _, b in cells), ""]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\par\\footnotesize {_tex(_footer(model)[0])}", "\\end{table}"]
    return "\n".join(lines)
