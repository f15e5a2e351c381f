"""Do the intervals of `annotate estimate` cover the truth? A grid of simulations with a known effect.

Each simulated study has chats with a binary treatment and a true outcome whose dependence on it is
known: a 1-3-ish scale whose mean rises by 0.4 (OLS), or a 0/1 outcome whose log-odds rise by 0.8
(logit; "rare" has a 5% base rate). An LLM labels every unit; humans code a sample drawn with the
tool's own designs (``annotate.analysis.sample.draw_units``); the three estimators of `annotate
estimate` then estimate the treatment coefficient. A 95% interval should contain the truth in about
95% of the studies in which the tool gives one; the rest it calls "not estimable" (counted as refused).

The grid: design (random, stratified by LLM label, confidence, disputed) x labeller x coded units
(20, 40, 100) x rounds per chat (1, or 4 sharing a chat effect: intervals clustered by chat) x family.
Labellers:
- informative: right 75% of the time, over-rates treated chats (so the LLM-only estimate is biased);
- uninformative: answers at random; constant: the same answer for every unit (the fake engine);
- one-sided: where it is unsure it over-rates (false positives), and the confidence design draws
  exactly those units more often;
- miscalibrated: the informative labeller's errors, with confidence highest where it is wrong.

Run: python bench/ppi_coverage.py [--studies 1000] [--seed 0] [--quick] [--only ols] [--jobs 2]
     python bench/ppi_coverage.py --worth [--coded 40 --coded 60 --coded 100]
     python bench/ppi_coverage.py --cell ols,stratified,miscalibrated,100,4 [--cell ...] --studies 10000
"""

from __future__ import annotations

import argparse
import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from annotate.analysis.estimation import ppi
from annotate.analysis.estimation.worth import FEW_CODED_CHATS
from annotate.analysis.estimation.worth import worth as labeller_worth
from annotate.analysis.sample import draw_units

EFFECT = {"ols": 0.4, "logit": 0.8, "rare": 0.8}
"""The true treatment coefficient of each outcome family."""
DESIGNS = ("random", "stratified", "confidence", "disputed")
LABELLERS = ("informative", "uninformative", "constant", "one-sided", "miscalibrated")
CODED = (20, 40, 100)
ROUNDS = (1, 4)
FAMILIES = ("ols", "logit", "rare")
ESTIMATORS = ("llm_only", "human_only", "ppi")
TRUTH_STUDIES = 9
"""--worth: the true variance ratio also draws on this many times as many extra studies (fits only, cheap)."""


@dataclass(frozen=True)
class Cell:
    design: str
    labeller: str
    coded: int
    rounds: int
    family: str

    @property
    def chats(self) -> int:
        return 1000 if self.rounds == 1 else 150


def truth(cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chat of each unit, treatment, true outcome."""
    chat = np.repeat(np.arange(cell.chats), cell.rounds)
    treated = np.repeat(rng.integers(0, 2, cell.chats), cell.rounds).astype(float)
    shared = np.repeat(rng.normal(size=cell.chats), cell.rounds) if cell.rounds > 1 else np.zeros(len(chat))
    if cell.family == "ols":
        latent = 2.0 + EFFECT["ols"] * treated + 0.5 * shared + rng.normal(0, 0.7, len(chat))
        return chat, treated, np.floor(latent + rng.uniform(size=len(chat)))  # E[floor(a + U)] = a
    base = -0.85 if cell.family == "logit" else -2.95  # 30% and 5% of untreated units
    # a Gaussian copula keeps P(y = 1 | treated) exactly logistic while rounds of a chat move together
    from scipy.stats import norm

    u = norm.cdf(np.sqrt(0.5) * shared + np.sqrt(0.5 if cell.rounds > 1 else 1.0) * rng.normal(size=len(chat)))
    return chat, treated, (u < expit(base + EFFECT[cell.family] * treated)).astype(float)


def labeller(cell: Cell, y: np.ndarray, treated: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """LLM label, its confidence, and a second labeller's label (for the disputed design)."""
    size = len(y)
    scale = np.array([0.0, 1.0]) if cell.family != "ols" else np.array([1.0, 2.0, 3.0])
    top = scale[-1]
    guess = rng.choice(scale, size)
    if cell.labeller == "uninformative":
        return guess, rng.uniform(0.3, 1.0, size), rng.choice(scale, size)
    if cell.labeller == "constant":
        return np.full(size, scale[len(scale) // 2]), np.full(size, 0.9), np.full(size, scale[len(scale) // 2])
    if cell.labeller == "one-sided":
        unsure = rng.uniform(size=size) < 0.4
        up = unsure & (rng.uniform(size=size) < 0.7)
        yhat = np.minimum(y + up, top) if cell.family == "ols" else np.maximum(y, up.astype(float))
        confidence = np.where(unsure, rng.uniform(0.3, 0.6, size), rng.uniform(0.8, 1.0, size))
        return yhat, confidence, np.where(rng.uniform(size=size) < 0.8, y, guess)
    right = rng.uniform(size=size) < 0.75
    over = (treated == 1) & (rng.uniform(size=size) < 0.5)
    yhat = np.minimum(np.where(right, y, guess) + over, top)
    sure = rng.uniform(0.7, 1.0, size)
    unsure = rng.uniform(0.3, 0.7, size)
    confidence = np.where(right, sure, unsure) if cell.labeller == "informative" else np.where(right, unsure, sure)
    second = np.where(rng.uniform(size=size) < 0.7, y, rng.choice(scale, size))
    return yhat, confidence, second


def study(cell: Cell, rng: np.random.Generator) -> ppi.Sample:
    chat, treated, y = truth(cell, rng)
    yhat, confidence, second = labeller(cell, y, treated, rng)
    drawn = draw_units(
        cell.design,
        len(y),
        cell.coded,
        rng,
        strata=yhat.astype(str) if cell.design == "stratified" else None,
        confidence=confidence if cell.design == "confidence" else None,
        disputed=(second != yhat) if cell.design == "disputed" else None,
    )
    x = np.column_stack([np.ones(len(y)), treated])
    return ppi.sample(x, yhat, drawn.index.astype(np.int64), y[drawn.index], drawn.probability, chat.astype(np.int64))


@dataclass
class Tally:
    studies: int = 0
    refused: int = 0
    covered: int = 0
    width: float = 0.0
    width_sq: float = 0.0
    lam: float = 0.0
    narrower: int = 0
    """Studies whose interval is narrower than the human-only one (PPI only)."""

    def add(self, fit: ppi.Fit, effect: float, human: ppi.Fit | None = None) -> None:
        self.studies += 1
        if not fit.estimable[1]:
            self.refused += 1
            return
        low, high = fit.interval()
        width = float(high[1] - low[1])
        self.covered += int(low[1] <= effect <= high[1])
        self.width += width
        self.width_sq += width**2
        self.lam += float(fit.lam[1])
        if human is not None and human.estimable[1]:
            self.narrower += int(fit.se[1] < human.se[1] * (1 - 1e-9))

    def summary(self) -> dict[str, float]:
        given = self.studies - self.refused
        mean = self.width / given if given else np.nan
        spread = np.sqrt(max(self.width_sq / given - mean**2, 0) / given) if given else np.nan
        return {
            "coverage": self.covered / given if given else np.nan,
            "width": mean,
            "width_mcse": spread,
            "refused": self.refused / self.studies,
            "lam": self.lam / given if given else np.nan,
            "narrower": self.narrower / given if given else np.nan,
        }


def run_cell(cell: Cell, studies: int, seed: int) -> dict[str, dict[str, float]]:
    """Estimator -> coverage, mean width (and its Monte Carlo error), share refused, mean lambda."""
    rng = np.random.default_rng(seed)
    tallies = {name: Tally() for name in ESTIMATORS}
    family: ppi.Family = "ols" if cell.family == "ols" else "logit"
    gaps, errors = [], []  # per study estimated both ways: PPI covered - human-only covered; squared errors
    for _ in range(studies):
        fits = ppi.three(study(cell, rng), family)
        for name in ESTIMATORS:
            tallies[name].add(fits[name], EFFECT[cell.family], fits["human_only"] if name == "ppi" else None)
        if fits["ppi"].estimable[1] and fits["human_only"].estimable[1]:
            gaps.append(_covers(fits["ppi"], EFFECT[cell.family]) - _covers(fits["human_only"], EFFECT[cell.family]))
            errors.append((fits["ppi"].coef[1] - EFFECT[cell.family], fits["human_only"].coef[1] - EFFECT[cell.family]))
    out = {name: t.summary() for name, t in tallies.items()}
    squared = np.square(np.array(errors).reshape(-1, 2))
    out["paired"] = {
        "gap": float(np.mean(gaps)) if gaps else np.nan,
        "gap_mcse": float(np.std(gaps) / np.sqrt(len(gaps))) if gaps else np.nan,
        "mse_ratio": float(squared[:, 0].mean() / squared[:, 1].mean()) if len(squared) else np.nan,
    }
    return out


def _covers(fit: ppi.Fit, effect: float) -> int:
    low, high = fit.interval()
    return int(low[1] <= effect <= high[1])


def worth(cell: Cell, studies: int, seed: int) -> dict[str, float]:
    """The 'effective human labels' the tool reports for the treatment coefficient against the truth it estimates.

    The truth is n times the ratio of the human-only and returned estimates' variances over all studies, and the
    same from mean squared errors over the studies that could show a figure (the LLM used, enough effective coded
    chats); both also draw on ``TRUTH_STUDIES`` times as many more studies, in which no worth is measured (fits
    alone are cheap). Also: how often the figure's interval covers the truth where shown."""
    rng = np.random.default_rng(seed)
    family: ppi.Family = "ols" if cell.family == "ols" else "logit"
    human, combined, eligible, shown = [], [], [], []
    for k in range(studies * (1 + TRUTH_STUDIES)):
        data = study(cell, rng)
        parts = ppi.decompose(data, family)
        fits = ppi.fits(parts, seed + k)
        if not fits["human_only"].estimable[1]:
            continue
        human.append(fits["human_only"].coef[1] - EFFECT[cell.family])
        combined.append(fits["ppi"].coef[1] - EFFECT[cell.family])
        eligible.append(fits["ppi"].lam[1] > 0 and parts.df_coded + parts.terms >= FEW_CODED_CHATS)
        if k < studies:  # the rest only pin down the truth
            figure = labeller_worth(parts, fits["human_only"], seed + k)[1]
            scale = data.n / 100
            if figure.status == "shown" and figure.value is not None and figure.low and figure.high:
                shown.append((figure.value * scale, figure.low * scale, figure.high * scale))
    errors_h, errors_c, chosen = np.square(human), np.square(combined), np.array(eligible)
    truth_shown = cell.coded * float(np.mean(errors_h[chosen]) / np.mean(errors_c[chosen])) if chosen.any() else np.nan
    rows = np.array(shown).reshape(-1, 3)
    return {
        "shown": len(rows) / studies,
        "reported": float(np.mean(rows[:, 0])) if len(rows) else np.nan,
        "truth": cell.coded * float(np.var(human) / np.var(combined)),
        "truth_shown": truth_shown,
        "covers": float(np.mean((rows[:, 1] <= truth_shown) & (truth_shown <= rows[:, 2]))) if len(rows) else np.nan,
    }


def grid(quick: bool, only: str | None, labellers: tuple[str, ...] = LABELLERS) -> list[Cell]:
    families = [only] if only else list(FAMILIES)
    if quick:
        return [
            Cell(d, lab, 40, r, f)
            for d, lab, r, f in itertools.product(DESIGNS, ("informative", "uninformative"), ROUNDS, families)
        ]
    return [Cell(*values) for values in itertools.product(DESIGNS, labellers, CODED, ROUNDS, families)]


def _job(args: tuple[Cell, int, int]) -> tuple[Cell, dict[str, dict[str, float]]]:
    cell, studies, seed = args
    return cell, run_cell(cell, studies, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="40 coded units, two labellers only")
    parser.add_argument("--only", choices=FAMILIES, help="one outcome family")
    parser.add_argument("--labeller", choices=LABELLERS, action="append", help="only these labellers")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--worth", action="store_true", help="effective human labels: reported against the truth")
    parser.add_argument(
        "--coded", type=int, action="append", help="--worth: coded units per cell (default 40, 60, 100)"
    )
    parser.add_argument(
        "--cell", action="append", help="only this cell, as family,design,labeller,coded,rounds: paired coverage gap"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.worth:
        print(f"{args.studies} studies per cell; effective human labels for the treatment coefficient")
        print(
            "| family | design | labeller | coded | shown | mean reported | truth (n × variance ratio) | ÷ truth "
            "| truth where shown | ÷ truth where shown | interval covers |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for k, (family, design, labeller, coded) in enumerate(
            itertools.product(
                ("ols", "logit"),
                ("random", "confidence"),
                ("informative", "one-sided"),
                tuple(args.coded or (40, 60, 100)),
            )
        ):
            cell = Cell(design, labeller, coded, 1, family)
            r = worth(cell, args.studies, args.seed + k)
            print(
                f"| {family} | {design} | {labeller} | {coded} | {r['shown']:.2f} | {r['reported']:.1f} "
                f"| {r['truth']:.1f} | {r['reported'] / r['truth']:.2f} | {r['truth_shown']:.1f} "
                f"| {r['reported'] / r['truth_shown']:.2f} | {r['covers']:.2f} |",
                flush=True,
            )
        print(f"({time.perf_counter() - started:.0f} s)")
        return
    if args.cell:
        paired(args)
        return
    cells = grid(args.quick, args.only, tuple(args.labeller or LABELLERS))
    print(f"{args.studies} simulated studies per cell, 95% intervals; coverage among the studies the tool estimates")
    print(
        "| family | design | labeller | coded | rounds | LLM-only cov | human cov | PPI cov | PPI / human width "
        "(± MC) | PPI narrower | mean λ | refused |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    jobs = [(cell, args.studies, args.seed + k) for k, cell in enumerate(cells)]
    with ProcessPoolExecutor(args.jobs) as pool:
        for cell, result in pool.map(_job, jobs):
            print(_row(cell, result), flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


def paired(args: argparse.Namespace) -> None:
    """Named cells (new seeds): coverage of PPI and human-only in the same studies, and their paired difference."""
    started = time.perf_counter()
    cells = []
    for text in args.cell:
        family, design, labeller, coded, rounds = text.split(",")
        cells.append(Cell(design, labeller, int(coded), int(rounds), family))
    print(f"{args.studies} simulated studies per cell; coverage of the same studies, and PPI − human-only paired")
    print(
        "| family | design | labeller | coded | rounds | human cov | PPI cov | PPI − human (± MC) "
        "| mean squared error PPI ÷ human |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    jobs = [(cell, args.studies, args.seed + 100_000 + k) for k, cell in enumerate(cells)]
    with ProcessPoolExecutor(args.jobs) as pool:
        for cell, r in pool.map(_job, jobs):
            print(
                f"| {cell.family} | {cell.design} | {cell.labeller} | {cell.coded} | {cell.rounds} "
                f"| {r['human_only']['coverage']:.4f} | {r['ppi']['coverage']:.4f} "
                f"| {r['paired']['gap']:+.4f} ± {r['paired']['gap_mcse']:.4f} | {r['paired']['mse_ratio']:.3f} |",
                flush=True,
            )
    print(f"({time.perf_counter() - started:.0f} s)")


def _row(cell: Cell, result: dict[str, dict[str, float]]) -> str:
    human, combined, llm = result["human_only"], result["ppi"], result["llm_only"]
    ratio = combined["width"] / human["width"]
    error = ratio * np.hypot(combined["width_mcse"] / combined["width"], human["width_mcse"] / human["width"])
    return (
        f"| {cell.family} | {cell.design} | {cell.labeller} | {cell.coded} | {cell.rounds} | "
        f"{llm['coverage']:.3f} | {human['coverage']:.3f} | {combined['coverage']:.3f} | {ratio:.3f} ± {error:.3f} | "
        f"{combined['narrower']:.2f} | {combined['lam']:.2f} | {human['refused']:.2f} |"
    )


if __name__ == "__main__":
    main()
