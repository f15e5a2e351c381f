"""Several labellers, recalibration and LLM-measured regressors: do the intervals still cover, and how narrow?

Each simulated study has chats with a binary treatment and a true 1-3 outcome (a rounded latent score that
rises by 0.4 with it); the estimand is the treatment coefficient of the true labels' fit in the superpopulation.
Labellers give each unit a probability vector over the scale (as the engines do);
humans code a sample drawn with the tool's own designs; `annotate estimate`'s estimators then estimate the
treatment coefficient. Scenarios:
- miscalibrated: one labeller whose chosen labels are a non-monotone distortion of the truth (it calls 40% of
  the 1s and half the 2s a 3, and is less sure when it does); reading its probabilities should beat its label;
- complementary: two labellers with different error patterns (one confuses 1 and 2, the other 2 and 3);
- noise-partner: a good labeller combined with one that answers at random (the combination must not lose);
- measured-control: the regression also has an LLM-measured control (initial sentiment, 1-5) whose LLM
  errors depend on the treatment (treated chats read one point angrier), so the naive fit is biased;
- rounds: four rounds per chat sharing a chat effect (intervals clustered by chat), two labellers;
- confidence: the confidence design (the less sure the labeller, the likelier a unit is coded), two labellers.

Estimators: human only; plain PPI++ with each labeller's chosen label; the cross-fitted combination of all
labellers (annotate estimate --labellers; with one labeller, --recalibrate). Coverage is the share of
studies whose 95% interval holds the truth; width is the mean width relative to human only.

Run: python bench/labellers.py [--studies 1000] [--coded 200] [--seed 0] [--only SCENARIO] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np

from annotate.analysis.estimation import combine, ppi
from annotate.analysis.sample import draw_units

EFFECT = 0.4
GAP = "combined - best single"
SCENARIOS = ("miscalibrated", "complementary", "noise-partner", "measured-control", "rounds", "confidence")
CHATS = 2000


@dataclass(frozen=True)
class Study:
    data: ppi.Sample
    probabilities: list[np.ndarray]
    """Per labeller: units x categories."""
    effect: float


def _probabilities(chosen: np.ndarray, sureness: np.ndarray, categories: int) -> np.ndarray:
    """A probability vector per unit: ``sureness`` on the chosen value, the rest spread evenly."""
    out = np.repeat(((1 - sureness) / (categories - 1))[:, None], categories, axis=1)
    out[np.arange(len(chosen)), chosen - 1] = sureness
    return out


def _confusing(y: np.ndarray, pair: tuple[int, int], rate: float, rng: np.random.Generator) -> np.ndarray:
    """Labels that are right except that ``pair`` is confused both ways at ``rate``."""
    a, b = pair
    flip = rng.random(len(y)) < rate
    out = y.copy()
    out[flip & (y == a)], out[flip & (y == b)] = b, a
    return out


def _truth(chats: int, rounds: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chat = np.repeat(np.arange(chats), rounds)
    treated = np.repeat(rng.random(chats) < 0.5, rounds).astype(float)
    shared = np.repeat(rng.normal(0, 0.6, chats), rounds) if rounds > 1 else 0.0
    latent = 1.6 + EFFECT * treated + shared + rng.normal(0, 0.8, len(chat))
    return chat, treated, np.clip(np.rint(latent), 1, 3).astype(int)


@dataclass(frozen=True)
class Units:
    chat: np.ndarray
    x_true: np.ndarray
    x_llm: np.ndarray
    y: np.ndarray
    labels: list[np.ndarray]
    sureness: list[np.ndarray]


def units(scenario: str, chats: int, rng: np.random.Generator) -> Units:
    """Every unit of one study: its chat, terms (true and as the LLM measured them), true label, LLM labels."""
    if scenario == "measured-control":
        return _measured_control(chats, rng)
    chat, treated, y = _truth(chats // 4 if scenario == "rounds" else chats, 4 if scenario == "rounds" else 1, rng)
    x = np.column_stack([np.ones(len(y)), treated])
    if scenario == "miscalibrated":
        wrong = np.where(y == 1, rng.random(len(y)) < 0.4, np.where(y == 2, rng.random(len(y)) < 0.5, False))
        chosen = np.where(wrong, 3, y)
        return Units(chat, x, x, y, [chosen], [np.where(wrong, 0.5, 0.9)])
    if scenario == "noise-partner":
        good = _noisy(_confusing(y, (1, 2), 0.35, rng), 0.1, rng)
        noise = rng.integers(1, 4, len(y))
        return Units(chat, x, x, y, [good, noise], [np.full(len(y), 0.7), rng.uniform(0.4, 0.95, len(y))])
    labels = [_noisy(_confusing(y, pair, 0.35, rng), 0.1, rng) for pair in ((1, 2), (2, 3))]
    sureness = [np.where(np.isin(lab, pair), 0.55, 0.9) for lab, pair in zip(labels, ((1, 2), (2, 3)), strict=True)]
    return Units(chat, x, x, y, labels, sureness)


def _noisy(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(len(labels)) < rate, rng.integers(1, 4, len(labels)), labels)


def _measured_control(chats: int, rng: np.random.Generator) -> Units:
    """Outcome ~ treatment + initial sentiment; the LLM reads treated chats' sentiment one point higher at 50%."""
    chat, treated, _ = _truth(chats, 1, rng)
    sentiment = rng.integers(1, 6, len(chat))
    latent = 1.2 + EFFECT * treated + 0.25 * sentiment + rng.normal(0, 0.7, len(chat))
    y = np.clip(np.rint(latent), 1, 3).astype(int)
    read = np.clip(sentiment + ((treated == 1) & (rng.random(len(chat)) < 0.5)), 1, 5)
    x_true = np.column_stack([np.ones(len(y)), treated, sentiment])
    x_llm = np.column_stack([np.ones(len(y)), treated, read])
    return Units(chat, x_true, x_llm, y, [_confusing(y, (1, 2), 0.25, rng)], [np.full(len(y), 0.8)])


@cache
def estimand(scenario: str) -> float:
    """The treatment coefficient of the true labels' fit in a very large study (the superpopulation's)."""
    u = units(scenario, 400_000, np.random.default_rng(20261201))
    return float(np.linalg.lstsq(u.x_true, u.y.astype(float), rcond=None)[0][1])


def study(scenario: str, coded: int, rng: np.random.Generator) -> Study:
    u = units(scenario, CHATS, rng)
    probabilities = [_probabilities(lab, s, 3) for lab, s in zip(u.labels, u.sureness, strict=True)]
    design = "confidence" if scenario == "confidence" else "random"
    confidence = probabilities[0].max(axis=1) if design == "confidence" else None
    drawn = draw_units(design, len(u.y), coded, rng, confidence=confidence, floor=0.1)
    y = u.y[drawn.index].astype(float)
    x_human = u.x_true[drawn.index]
    data = ppi.sample(u.x_llm, u.labels[0].astype(float), drawn.index, y, drawn.probability, u.chat, x_human=x_human)
    return Study(data, probabilities, estimand(scenario))


def estimators(s: Study, seed: int) -> dict[str, ppi.Fit]:
    fits = {"LLM only": ppi.llm_only(s.data), "human only": ppi.human_only(s.data)}
    singles = [s.data.predicting(p.argmax(axis=1) + 1.0) for p in s.probabilities]
    for i, single in enumerate(singles):
        fits[f"PPI++ labeller {i + 1}"] = ppi.ppi(single)
    values = np.arange(1.0, 4.0)
    features = [combine.LabellerFeatures(p[:, 1:], p @ values) for p in s.probabilities]
    combined = combine.cross_fitted(features, s.data, (1.0, 3.0), seed=seed)
    fits["combined"] = ppi.ppi(s.data.predicting(combined))
    return fits


def run(scenario: str, studies: int, coded: int, seed: int) -> dict[str, tuple[float, float, int]]:
    """Per estimator: coverage, mean width relative to human only, and the studies with an interval. Under
    ``GAP``: the mean paired difference between the combined estimator's relative width and the narrowest single
    labeller's, its Monte Carlo standard error, and the studies it rests on."""
    rng = np.random.default_rng(seed)
    hits: dict[str, list[float]] = {}
    widths: dict[str, list[float]] = {}
    paired: list[list[float]] = []
    for i in range(studies):
        s = study(scenario, coded, rng)
        fits = estimators(s, seed + i)
        low, high = fits["human only"].interval()
        base = high[1] - low[1]
        relative = {}
        for name, fit in fits.items():
            low, high = fit.interval()
            if not np.isfinite(low[1]):
                continue
            hits.setdefault(name, []).append(float(low[1] <= s.effect <= high[1]))
            if np.isfinite(base):
                relative[name] = (high[1] - low[1]) / base
                widths.setdefault(name, []).append(relative[name])
        singles = [name for name in fits if name.startswith("PPI++")]
        if all(name in relative for name in [*singles, "combined"]):
            paired.append([relative["combined"] - relative[name] for name in singles])
    out = {
        name: (float(np.mean(hits[name])), float(np.mean(widths.get(name, [np.nan]))), len(hits[name])) for name in hits
    }
    gaps = np.asarray(paired)
    gap = gaps[:, int(np.argmax(gaps.mean(axis=0)))]  # against the single labeller narrowest on average
    out[GAP] = (float(gap.mean()), float(gap.std(ddof=1) / np.sqrt(len(gap))), len(gap))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--coded", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=SCENARIOS)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    scenarios = [args.only] if args.only else list(SCENARIOS)
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = pool.map(
            run, scenarios, [args.studies] * len(scenarios), [args.coded] * len(scenarios), [args.seed] * len(scenarios)
        )
        for scenario, result in zip(scenarios, results, strict=True):
            print(
                f"\n{scenario}: {args.studies} studies, {args.coded} coded units, 95% intervals of the treatment effect"
            )
            print(f"  {'estimator':<20} {'coverage':>8} {'width vs human':>15} {'studies':>8}")
            for name, (coverage, width, n) in result.items():
                if name == GAP:
                    print(
                        f"  width of the combined minus the best single labeller's: {coverage:+.3f} ± {2 * width:.3f}"
                    )
                else:
                    print(f"  {name:<20} {coverage:>8.3f} {width:>15.3f} {n:>8}")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
