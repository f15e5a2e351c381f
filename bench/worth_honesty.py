"""Is the worth `annotate estimate` reports honest, and do its intervals cover when it chose to use the LLM?

Each simulated study has chats (one or three rounds, rounds of a chat sharing a chat effect), a binary treatment
and a continuous human label whose mean and treatment contrast are known exactly. The LLM label of a unit is
biased (it over-rates treated chats) and its error tracks the human label's with correlation ρ. Humans code a
simple random sample of chats; the package's own estimator (annotate.analysis.estimation.ppi) and worth
(annotate.analysis.estimation.worth) are run on every study.

Printed per cell (ρ × coded chats × estimand):
- λ>0: the share of studies in which the estimate uses the LLM labels;
- true worth: 100 × Monte Carlo variance of the human-only estimate ÷ that of the estimate returned;
- reported worth: the mean of the point worth the tool shows, among the studies where it shows one (and where
  λ>0), and that mean ÷ the true worth (must be at most 1.10);
- worth interval coverage: how often the shown interval contains the true worth when λ>0 (a worth is shown only
  there);
- coverage of the returned estimate's 95% interval: all studies, human-only, and among studies with λ>0
  (conditional coverage must be at least 0.925; unconditional at most 0.005 below human-only), and the paired
  difference PPI − human with its Monte Carlo error. The truth and the coverages use ten times the studies
  that measure a worth (``TRUTH_STUDIES``): fits alone are cheap, the worth's bootstrap is not.

With ``--forecast``: validate's worth, measured as validate measures it (on the coded chats alone, every unit
coded, as a forecast for a study with endlessly many more LLM-labelled chats), against the truth in studies of
4,000 chats (the mean only).

Run: python bench/worth_honesty.py [--studies 1000] [--seed 0] [--quick] [--jobs 2] [--forecast]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotate.analysis.estimation import ppi
from annotate.analysis.estimation.worth import worth

EFFECT = 0.4
CHATS = 400
ROUNDS = 3
RHOS = (0.05, 0.15, 0.3, 0.5)
CODED = (15, 20, 40, 60, 100)
ESTIMANDS = ("mean", "contrast")
FORECAST_CHATS = 4000
TRUTH_STUDIES = 9
"""The truth (Monte Carlo variances) comes from this many times as many extra studies as those that measure a
worth: a variance ratio over 300 studies alone moves by a fifth from seed to seed."""


@dataclass(frozen=True)
class Cell:
    rho: float
    coded: int
    estimand: str
    rounds: int = ROUNDS
    forecast: bool = False
    """validate's forecast: the worth is measured on the coded chats alone (as on a gold set), the truth in a study
    of ``FORECAST_CHATS`` chats (as good as endless, which the forecast assumes)."""

    @property
    def chats(self) -> int:
        return FORECAST_CHATS if self.forecast else CHATS

    def __str__(self) -> str:
        return f"rho{self.rho}-{self.coded}chats-{self.estimand}"


def study(cell: Cell, rng: np.random.Generator, measure_worth: bool = True) -> dict[str, float]:
    """One study: the returned estimate, its interval, the share used and (``measure_worth``) the worth shown."""
    chat = np.repeat(np.arange(cell.chats), cell.rounds)
    treated = np.repeat(rng.integers(0, 2, cell.chats), cell.rounds).astype(float)
    shared = np.repeat(rng.normal(size=cell.chats), cell.rounds) * 0.5
    error = (shared + rng.normal(size=len(chat))) / math.sqrt(1.25)
    y = 1 + EFFECT * treated + error
    yhat = 1.2 + 0.6 * treated + cell.rho * error + math.sqrt(1 - cell.rho**2) * rng.normal(size=len(chat))
    coded = np.flatnonzero(np.isin(chat, rng.choice(cell.chats, cell.coded, replace=False)))
    if cell.estimand == "mean":
        x, j, target = np.ones((len(y), 1)), 0, 1 + EFFECT / 2
    else:
        x, j, target = np.column_stack([np.ones(len(y)), treated]), 1, EFFECT
    data = ppi.sample(x, yhat, coded, y[coded], None, chat.astype(np.int64))
    parts, seed = ppi.decompose(data), int(rng.integers(1 << 31))
    fits = ppi.fits(parts, seed)
    human, combined = fits["human_only"], fits["ppi"]
    out: dict[str, float] = {"lam": float(combined.lam[j]), "target": target}
    for name, fit in (("human", human), ("ppi", combined)):
        low, high = fit.interval()
        out[f"{name}_estimate"] = float(fit.coef[j])
        out[f"{name}_covered"] = float(low[j] <= target <= high[j])
    if not measure_worth:
        return out
    if cell.forecast:  # validate: the gold alone, every unit coded, the LLM's own variance taken as vanishing
        gold = ppi.sample(x[coded], yhat[coded], np.arange(len(coded)), y[coded], None, chat[coded].astype(np.int64))
        gold_parts = ppi.decompose(gold)
        shown = worth(gold_parts, ppi.fits(gold_parts, seed)["human_only"], seed, unbounded=True)[j]
    else:
        shown = worth(parts, human, seed)[j]
    visible = shown.status == "shown"
    out["worth"] = float(shown.value) if visible and shown.value is not None else math.nan
    out["worth_low"] = float(shown.low) if visible and shown.low is not None else math.nan
    out["worth_high"] = float(shown.high) if visible and shown.high is not None else math.nan
    return out


def run_cell(cell: Cell, studies: int, seed: int) -> dict[str, float]:
    """The cell's figures over ``studies`` studies; the truth from ``TRUTH_STUDIES`` x as many more (no worth is
    measured in those: fits alone are cheap), so that a noisy truth does not decide what the worth is judged by."""
    rng = np.random.default_rng([seed, RHOS.index(cell.rho), cell.coded, ESTIMANDS.index(cell.estimand)])
    table = pd.DataFrame([study(cell, rng) for _ in range(studies)])
    more = pd.DataFrame([study(cell, rng, measure_worth=False) for _ in range(TRUTH_STUDIES * studies)])
    truth = pd.concat([table[more.columns], more])
    used = table["lam"] > 0
    lost = truth["ppi_covered"] - truth["human_covered"]  # paired: the same studies
    true = 100 * truth["human_estimate"].var() / truth["ppi_estimate"].var()
    chosen = truth["lam"] > 0
    error = {
        name: (truth.loc[chosen, f"{name}_estimate"] - truth.loc[chosen, "target"]) ** 2 for name in ("human", "ppi")
    }
    true_used = 100 * error["human"].mean() / error["ppi"].mean() if chosen.sum() > 1 else math.nan
    shown = table["worth"].notna()
    covers = (table["worth_low"] <= true_used) & (true_used <= table["worth_high"])  # shown only where λ>0
    return {
        "used": used.mean(),
        "true_worth": true,
        "true_worth_used": true_used,
        "shown": shown.mean(),
        "reported": table.loc[shown, "worth"].mean() if shown.any() else math.nan,
        "reported_when_used": table.loc[shown & used, "worth"].mean() if (shown & used).any() else math.nan,
        "worth_interval_covers": covers[shown].mean() if shown.any() else math.nan,
        "coverage_human": truth["human_covered"].mean(),
        "coverage_ppi": truth["ppi_covered"].mean(),
        "coverage_when_used": truth.loc[chosen, "ppi_covered"].mean() if chosen.any() else math.nan,
        "used_in_truth": chosen.mean(),
        "coverage_gap": lost.mean(),
        "coverage_gap_mcse": lost.std() / math.sqrt(len(lost)),
    }


def grid(quick: bool, forecast: bool = False) -> list[Cell]:
    if forecast:  # validate forecasts the mean only
        return [Cell(r, c, "mean", forecast=True) for r, c in itertools.product(RHOS, (40, 60, 100))]
    coded = (15, 60) if quick else CODED
    return [Cell(r, c, e) for r, c, e in itertools.product(RHOS, coded, ESTIMANDS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--forecast", action="store_true", help="validate's forecast worth, from the gold alone")
    args = parser.parse_args()
    cells = grid(args.quick, args.forecast)
    start = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_cell, cells, [args.studies] * len(cells), [args.seed] * len(cells)))
    took = time.time() - start
    print(
        f"{args.studies} studies a cell with a worth ({(1 + TRUTH_STUDIES) * args.studies} for the truth and the "
        f"coverage), {cells[0].chats} chats of {ROUNDS} rounds, seed {args.seed}, {took:.0f} s"
        + (" (forecast: the worth from the coded chats alone)" if args.forecast else "")
        + "\n"
    )
    print(
        "| ρ | coded chats | estimand | λ>0 | true worth (when λ>0) | shown | mean shown (÷ true) "
        "| mean shown when λ>0 (÷ true when λ>0) | worth interval covers | coverage human / PPI / PPI when λ>0 "
        "| PPI − human (± MC) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for cell, r in zip(cells, results, strict=True):
        ratio, ratio_used = r["reported"] / r["true_worth"], r["reported_when_used"] / r["true_worth_used"]
        print(
            f"| {cell.rho} | {cell.coded} | {cell.estimand} | {r['used']:.2f} | {r['true_worth']:.0f} "
            f"({r['true_worth_used']:.0f}) | {r['shown']:.2f} | {r['reported']:.0f} ({ratio:.2f}) | "
            f"{r['reported_when_used']:.0f} ({ratio_used:.2f}) | "
            f"{r['worth_interval_covers']:.2f} | {r['coverage_human']:.3f} / {r['coverage_ppi']:.3f} / "
            f"{r['coverage_when_used']:.3f} | {r['coverage_gap']:+.4f} ± {r['coverage_gap_mcse']:.4f} |"
        )


if __name__ == "__main__":
    main()
