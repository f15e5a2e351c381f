"""Why is a worth interval too narrow? The spread of the worth across studies against the spread its bootstrap sees.

In one cell of `bench/ppi_coverage.py --worth` (logit, confidence design, one-sided labeller, 100 coded units)
the worth's 95% interval held the truth in only 0.77 of the studies, though its mean was right. An interval
that is right in the mean and too narrow says its bootstrap sees less spread than the figure really has. This
bench measures the three spreads of log(worth) in a cell:

- across studies: the standard deviation of the log of the worth shown, over simulated studies (the truth);
- the tool's bootstrap: the spread its 95% interval implies, log(high / low) / 3.92, averaged;
- a refit bootstrap: the same ratio in chat resamples of the coded units in which the three fits (human labels,
  LLM labels of the coded units and of all units) are fitted again, and the shares chosen again, rather than
  each chat's influence on the fits held at its value in the full sample, as the tool's bootstrap does.

If the refit bootstrap matches the spread across studies where the tool's bootstrap falls short, holding the
fits fixed is what makes the interval too narrow. Only the ratio itself is refitted (no bias correction): its
spread is what the interval must cover.

Run: python bench/worth_spread.py [--cell logit,confidence,one-sided,100] [--studies 400] [--refits 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ppi_coverage import Cell, study

from annotate.analysis.estimation import ppi, shares
from annotate.analysis.estimation.worth import worth

CELLS = ("logit,confidence,one-sided,100", "ols,random,informative,100", "ols,confidence,one-sided,100")
RESAMPLES = 100
"""Refit bootstrap resamples per study (enough for a standard deviation; each refits three GLMs)."""


def ratio(parts: ppi.Parts, seed: int) -> float:
    """The treatment coefficient's worth per 100 coded before the bias correction: cross-fitted shares, as ``worth``."""
    chosen = shares.cross_fitted_shares(parts, seed)[:, 1]
    return 100 * float(np.sum(parts.p[:, 1] ** 2)) * parts.factor_coded / shares.shared_variance(parts, chosen, 1)


def refitted(data: ppi.Sample, family: ppi.Family, rng: np.random.Generator) -> float:
    """The standard deviation of log(ratio) over chat resamples of the coded units, everything refitted in each."""
    coded_chats = np.unique(data.clusters)
    uncoded = np.setdiff1d(np.arange(data.big_n), data.labelled)
    logs = []
    for b in range(RESAMPLES):
        picked = rng.choice(coded_chats, len(coded_chats))
        rows = np.concatenate([np.flatnonzero(data.clusters == chat) for chat in picked])
        copy = np.repeat(np.arange(len(picked)), [np.sum(data.clusters == chat) for chat in picked])
        clusters = np.concatenate([data.clusters_all[uncoded], data.clusters_all.max() + 1 + copy])
        order = np.concatenate([uncoded, data.labelled[rows]])
        resampled = ppi.sample(
            data.x_all[order],
            data.yhat_all[order],
            np.arange(len(uncoded), len(order)),
            data.y[rows],
            1 / data.weights[rows],
            clusters.astype(np.int64),
        )
        value = ratio(ppi.decompose(resampled, family), b)
        if np.isfinite(value) and value > 0:
            logs.append(np.log(value))
    return float(np.std(logs))


def spreads(cell: Cell, studies: int, refits: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    family: ppi.Family = "ols" if cell.family == "ols" else "logit"
    values, implied, refit = [], [], []
    for k in range(studies):
        data = study(cell, rng)
        parts = ppi.decompose(data, family)
        figure = worth(parts, ppi.fits(parts, seed + k)["human_only"], seed + k)[1]
        if figure.status != "shown" or not figure.value or not figure.low or not figure.high:
            continue
        values.append(np.log(figure.value))
        implied.append(np.log(figure.high / figure.low) / 3.92)
        if len(refit) < refits:
            refit.append(refitted(data, family, rng))
    return {
        "shown": len(values),
        "across": float(np.std(values)),
        "bootstrap": float(np.mean(implied)),
        "refit": float(np.sqrt(np.mean(np.square(refit)))) if refit else np.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", help="family,design,labeller,coded (one round per chat)")
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--refits", type=int, default=40, help="studies whose refit bootstrap is run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{args.studies} studies a cell ({args.refits} with a refit bootstrap of {RESAMPLES}); sd of log(worth)")
    print("| family | design | labeller | coded | shown | across studies | tool's bootstrap | refit bootstrap |")
    print("|---|---|---|---|---|---|---|---|")
    for k, text in enumerate(args.cell or CELLS):
        family, design, labeller, coded = text.split(",")
        r = spreads(Cell(design, labeller, int(coded), 1, family), args.studies, args.refits, args.seed + k)
        print(
            f"| {family} | {design} | {labeller} | {coded} | {r['shown']} | {r['across']:.3f} "
            f"| {r['bootstrap']:.3f} | {r['refit']:.3f} |",
            flush=True,
        )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
