"""Do estimates with a learned labeller cover the truth, and is what `annotate learn` reports about it honest?

Each simulated study has chats (one or three rounds each, rounds of a chat sharing a chat effect) with a binary
treatment and a 1-3 outcome whose means are known exactly. Every unit has a short text: words drawn from a
common vocabulary and, for the "informative" feature cell, some words typical of the unit's outcome (none for
"useless": the text says nothing about the outcome). Humans code a simple random sample of chats; the tool's own
learner (annotate/learning: TF-IDF features, multinomial logistic regression with nested penalty choice,
cross-fitted by chat) labels every unit; the tool's own estimator (annotate/analysis/estimation/ppi.py) estimates
the mean and the treatment contrast human-only and prediction-powered.

Printed per cell: coverage of the 95% intervals (all studies, and among studies where the LLM share λ > 0), mean
width relative to human-only, the share of studies with λ > 0, how often `learn` showed a worth for the mean (the
estimator's own, per 100 coded), the mean worth it showed beside the true one (100 x the variance ratio over
studies), how often it claimed a saving (the worth's interval above 100), and the mean gap between the cross-validated
κ `learn` reports (its learning curve's last point: label-stratified folds) and κ on the truly held-out (uncoded)
units, labelled as `learn` labels them (the mean of the fold models).

Run: python bench/learn_coverage.py [--studies 500] [--seed 0] [--quick] [--jobs 2] [--coded 200] [--texts informative]
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
from scipy.stats import norm

from annotate.analysis.estimation import mean_worth, ppi
from annotate.analysis.learning_curve import kappa
from annotate.learning.features import build_features
from annotate.learning.learner import cross_fit
from annotate.learning.units import VariableUnits

CATEGORIES = [1, 2, 3]
CUTS = (-0.4, 0.6)
"""The outcome is 1 + (latent > -0.4) + (latent > 0.6), latent = 0.4 treated + 0.5 chat effect + N(0, 1)."""
EFFECT = 0.4
COMMON = [f"w{i}" for i in range(40)]
TYPICAL = {c: [f"c{c}x{i}" for i in range(6)] for c in CATEGORIES}
WORDS = 12
SIGNAL = 0.08
"""Chance that a word of an informative text is one typical of the unit's outcome."""
FEATURES = ("informative", "useless")
CODED = (20, 50, 200)
ROUNDS = (1, 3)
CHATS = 400


@dataclass(frozen=True)
class Cell:
    features: str
    coded: int
    rounds: int

    def __str__(self) -> str:
        return f"{self.features}-{self.coded}chats-{self.rounds}rounds"


def truth(rounds: int) -> tuple[float, float]:
    """The population mean of the outcome and its treatment contrast, exactly (treated with probability 1/2)."""
    sd = math.sqrt(1 + (0.25 if rounds > 1 else 0.0))

    def mean(treated: float) -> float:
        return 1 + sum(float(norm.cdf((EFFECT * treated - c) / sd)) for c in CUTS)

    return (mean(0) + mean(1)) / 2, mean(1) - mean(0)


def population(cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Chat of each unit, treatment, outcome and text."""
    chat = np.repeat(np.arange(CHATS), cell.rounds)
    treated = np.repeat(rng.integers(0, 2, CHATS), cell.rounds).astype(float)
    shared = np.repeat(rng.normal(size=CHATS), cell.rounds) * (0.5 if cell.rounds > 1 else 0.0)
    latent = EFFECT * treated + shared + rng.normal(size=len(chat))
    y = 1 + (latent > CUTS[0]).astype(int) + (latent > CUTS[1]).astype(int)
    signal = SIGNAL if cell.features == "informative" else 0.0
    texts = []
    for value in y:
        words = [
            rng.choice(TYPICAL[int(value)]) if rng.uniform() < signal else rng.choice(COMMON) for _ in range(WORDS)
        ]
        texts.append(" ".join(words))
    return chat, treated, y, texts


def study(cell: Cell, rng: np.random.Generator, study_seed: int) -> dict[str, float]:
    chat, treated, y, texts = population(cell, rng)
    n = len(y)
    table = pd.DataFrame(
        {"chat_id": chat.astype(str), "round": [None] * n, "target": texts, "context": [""] * n, "target_turns": 1}
    )
    units = VariableUnits("outcome", "task", "ordinal", CATEGORIES, table.assign(llm_probs=None, llm_value=None))
    x_text = build_features(units, ["words"])
    coded_chats = rng.choice(CHATS, cell.coded, replace=False)
    coded = np.flatnonzero(np.isin(chat, coded_chats))
    fit = cross_fit(x_text, coded, y[coded], chat[coded].astype(str), CATEGORIES, 5, study_seed)
    expected = fit.probabilities @ np.asarray(CATEGORIES, dtype=float)
    label = np.asarray(CATEGORIES)[fit.probabilities.argmax(axis=1)]
    uncoded = np.setdiff1d(np.arange(n), coded)
    curve = cross_fit(
        x_text[coded], np.arange(len(coded)), y[coded], chat[coded].astype(str), CATEGORIES, 5, study_seed, True
    )
    cv_label = np.asarray(CATEGORIES)[curve.probabilities.argmax(axis=1)]
    out = {
        "cv_kappa": kappa(y[coded], cv_label, np.ones(len(coded)), CATEGORIES),
        "heldout_kappa": kappa(y[uncoded], label[uncoded], np.ones(len(uncoded)), CATEGORIES),
    }
    inclusion = np.full(len(coded), cell.coded / CHATS)
    mean, contrast = truth(cell.rounds)
    for name, x, j, target in (
        ("mean", np.ones((n, 1)), 0, mean),
        ("contrast", np.column_stack([np.ones(n), treated]), 1, contrast),
    ):
        data = ppi.sample(x, expected, coded, y[coded].astype(float), inclusion, chat.astype(np.int64))
        fits = ppi.three(data, seed=study_seed)
        for estimator in ("human_only", "ppi"):
            f = fits[estimator]
            low, high = f.interval()
            out[f"{name}_{estimator}_covered"] = float(low[j] <= target <= high[j])
            out[f"{name}_{estimator}_width"] = float(high[j] - low[j])
            out[f"{name}_{estimator}_estimate"] = float(f.coef[j])
        out[f"{name}_lam"] = float(fits["ppi"].lam[j])
    out.update(_worth(expected, coded, y[coded].astype(float), chat.astype(np.int64), study_seed))
    return out


def _worth(expected: np.ndarray, coded: np.ndarray, human: np.ndarray, chats: np.ndarray, seed: int) -> dict:
    """What `learn` shows for the mean: the estimator's own worth (per 100 coded), the same call `learn` makes."""
    inclusion = np.full(len(coded), len(np.unique(chats[coded])) / len(np.unique(chats)))
    figure = mean_worth(expected, coded, human, inclusion, chats, seed)
    shown = figure.status == "shown"
    return {
        "worth_shown": float(shown),
        "worth": figure.value if shown and figure.value is not None else math.nan,
        "worth_saves": float(figure.saves),
    }


def run_cell(cell: Cell, studies: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng([seed, CODED.index(cell.coded), cell.rounds, FEATURES.index(cell.features)])
    rows = [study(cell, rng, seed + i) for i in range(studies)]
    table = pd.DataFrame(rows)
    summary: dict[str, float] = {"studies": float(studies)}
    for name in ("mean", "contrast"):
        used = table[f"{name}_lam"] > 0
        summary[f"{name}_coverage_human"] = table[f"{name}_human_only_covered"].mean()
        summary[f"{name}_coverage_ppi"] = table[f"{name}_ppi_covered"].mean()
        summary[f"{name}_coverage_ppi_when_used"] = (
            table.loc[used, f"{name}_ppi_covered"].mean() if used.any() else math.nan
        )
        summary[f"{name}_used"] = used.mean()
        summary[f"{name}_width_ratio"] = table[f"{name}_ppi_width"].mean() / table[f"{name}_human_only_width"].mean()
        summary[f"{name}_true_worth"] = (
            100 * table[f"{name}_human_only_estimate"].var() / table[f"{name}_ppi_estimate"].var()
        )
    summary["worth_shown"] = table["worth_shown"].mean()
    summary["worth_mean_shown"] = table["worth"].mean()
    summary["worth_saves"] = table["worth_saves"].mean()
    gap = table["cv_kappa"] - table["heldout_kappa"]
    summary["kappa_gap_mean"] = gap.mean()
    summary["kappa_gap_within_0.1"] = (gap.abs() <= 0.1).mean()
    summary["heldout_kappa"] = table["heldout_kappa"].mean()
    return summary


def grid(quick: bool = False, coded: tuple[int, ...] = (), features: tuple[str, ...] = ()) -> list[Cell]:
    sizes = coded or ((20, 50) if quick else CODED)
    return [Cell(f, c, r) for f, c, r in itertools.product(features or FEATURES, sizes, ROUNDS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--coded", type=int, action="append", help="only these coded chats (repeatable)")
    parser.add_argument("--texts", choices=FEATURES, action="append", help="only these texts (repeatable)")
    args = parser.parse_args()
    cells = grid(args.quick, tuple(args.coded or ()), tuple(args.texts or ()))
    start = time.time()
    print(f"{args.studies} studies a cell, {CHATS} chats a study, seed {args.seed}", flush=True)
    print(
        "| features | coded chats | rounds | estimand | coverage human / PPI / PPI when λ>0 | λ>0 | width PPI/human "
        "| true worth /100 | worth shown | mean worth shown | saving claimed | cv κ − held-out κ (share within ±0.1) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:  # each cell printed as it ends: a long run keeps what it did
        jobs = pool.map(run_cell, cells, [args.studies] * len(cells), [args.seed] * len(cells))
        for cell, r in zip(cells, jobs, strict=True):
            for name in ("mean", "contrast"):
                worth = (  # learn shows the worth for the mean only
                    f"{r['worth_shown']:.2f} | {r['worth_mean_shown']:.0f} | {r['worth_saves']:.2f}"
                    if name == "mean"
                    else "– | – | –"
                )
                print(
                    f"| {cell.features} | {cell.coded} | {cell.rounds} | {name} | {r[f'{name}_coverage_human']:.3f} / "
                    f"{r[f'{name}_coverage_ppi']:.3f} / {r[f'{name}_coverage_ppi_when_used']:.3f} | "
                    f"{r[f'{name}_used']:.2f} | {r[f'{name}_width_ratio']:.3f} | {r[f'{name}_true_worth']:.0f} | "
                    f"{worth} | "
                    f"{r['kappa_gap_mean']:+.3f} ({r['kappa_gap_within_0.1']:.2f}) |",
                    flush=True,
                )
    print(f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
