"""The calibration part of the validation page: a table, reliability diagrams, risk-coverage curves."""

from __future__ import annotations

from annotate.analysis.results import VariableValidation
from annotate.report import plots
from annotate.report.html import FigureSection, Table, figure, fmt, fmt_ci

NOTE = (
    "Confidence is the probability the model gave its chosen value. ECE: mean gap between confidence and "
    "accuracy over 10 confidence bins; with few labels even a calibrated labeller is far from 0, so the column "
    "'ECE if calibrated' gives the mean ECE such a labeller shows with these confidences at this n, and the "
    "interval is a 95% bootstrap one. AUROC: how well confidence separates right from "
    "wrong labels (0.5 = not at all; not given with fewer than 5 right or 5 wrong labels). "
    "κ weighted label: Cohen κ of the value nearest the probability-weighted "
    "mean, against the κ of the chosen value. κ with x% to humans: κ of the labels kept when the x% least "
    "confident go to human coders."
)


def calibration_table(variables: list[VariableValidation]) -> Table | None:
    scored = [v for v in variables if v.calibration is not None]
    if not scored:
        return None
    shown = (0.1, 0.3, 0.5)  # the risk-coverage figure has every share
    columns = ["variable", "n", "mean confidence", "accuracy", "ECE [95% CI]", "ECE if calibrated", "AUROC [95% CI]"]
    columns += ["Brier", "κ chosen", "κ weighted label"] + [f"κ, {share:.0%} to humans" for share in shown]
    rows = []
    for v in scored:
        c = v.calibration
        assert c is not None
        weighted = v.expected_label.cohen_kappa if v.expected_label else None
        ece, auroc = f"{fmt(c.ece, 2)} {fmt_ci(c.ece_ci95)}", f"{fmt(c.auroc, 2)} {fmt_ci(c.auroc_ci95)}"
        row = [v.variable, c.n, fmt(c.mean_confidence, 2), fmt(c.accuracy, 2), ece, fmt(c.ece_if_calibrated, 2)]
        row += [auroc, fmt(c.brier, 2), fmt(v.cohen_kappa, 2), fmt(weighted, 2)]
        row += [fmt(p.cohen_kappa, 2) for p in c.risk_coverage if round(p.deferred, 2) in shown]
        rows.append(row)
    return Table("Calibration of the model's confidence", columns, rows, note=NOTE, left=1)


def calibration_figures(variables: list[VariableValidation]) -> list[FigureSection]:
    scored = [(v.variable, v.calibration) for v in variables if v.calibration is not None]
    if not scored:
        return []
    return [
        FigureSection(
            "Calibration",
            [
                figure("Reliability: accuracy against confidence, per bin", plots.reliability(scored)),
                figure("Risk-coverage: κ of the labels kept", plots.risk_coverage(scored)),
            ],
            note="The diagonal is perfect calibration; dot size is the number of labels in the bin.",
        )
    ]
