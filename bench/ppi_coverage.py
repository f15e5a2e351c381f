"""Do the intervals of `annotate estimate` cover the truth? A simulation with a known effect.

Each simulated study has chats with a binary treatment (say, the handoff was triggered by the
algorithm) and a true integer outcome (mostly 1-3) whose mean differs with it by a known amount. An LLM labels every
unit with errors that depend on the treatment (it over-rates treated chats), so the LLM-only
estimate is biased. Humans code a sample; the three estimators of `annotate estimate` then estimate
the treatment coefficient of ``y ~ treated``. Over many studies, a 95% interval should contain the
true effect about 95% of the time.

Scenarios:
- informative: the LLM is right 75% of the time, biased on treated chats; random human sample.
- uninformative: the LLM answers at random; random human sample (PPI must fall back to the humans).
- confidence design: as informative, the human sample drawn with unequal inclusion probabilities
  (``sample --design confidence``); estimates are weighted by them.
- rounds in chats: 4 rated rounds per chat sharing a chat effect; intervals clustered by chat.

Run: python bench/ppi_coverage.py [--studies 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np

from annotate.analysis import ppi
from annotate.analysis.sample import inclusion_probabilities, systematic_pps

TRUE_EFFECT = 0.4
"""Difference in the mean true outcome between treated and untreated units."""


@dataclass(frozen=True)
class Scenario:
    name: str
    chats: int = 1000
    coded: int = 150
    rounds: int = 1
    accuracy: float = 0.75
    """Chance the LLM gives the true value (before its treatment bias); 0 means it answers at random."""
    design: str = "random"


SCENARIOS = [
    Scenario("informative"),
    Scenario("uninformative", accuracy=0.0),
    Scenario("confidence design", design="confidence"),
    Scenario("rounds in chats", chats=300, coded=240, rounds=4),
]


def study(scenario: Scenario, rng: np.random.Generator) -> ppi.Sample:
    """One simulated data set: all units with LLM labels, a human-coded sample with its inclusion probabilities."""
    chat = np.repeat(np.arange(scenario.chats), scenario.rounds)
    treated = np.repeat(rng.integers(0, 2, scenario.chats), scenario.rounds).astype(float)
    chat_effect = np.repeat(rng.normal(0, 0.5, scenario.chats), scenario.rounds) if scenario.rounds > 1 else 0.0
    latent = 2.0 + TRUE_EFFECT * treated + chat_effect + rng.normal(0, 0.7, len(chat))
    y = np.floor(latent + rng.uniform(size=len(chat)))  # E[floor(a + U)] = a: the effect stays TRUE_EFFECT
    right = rng.uniform(size=len(chat)) < scenario.accuracy
    guess = rng.integers(1, 4, len(chat)).astype(float)
    over_rated = (treated == 1) & (rng.uniform(size=len(chat)) < 0.35)
    yhat = np.where(right, y, guess) + over_rated
    confidence = np.where(right, rng.uniform(0.6, 0.95, len(chat)), rng.uniform(0.3, 0.7, len(chat)))
    if scenario.design == "confidence":
        probability = inclusion_probabilities(0.1 + (1 - confidence), scenario.coded)
        coded = systematic_pps(probability, rng)
        inclusion = probability[coded]
    else:
        coded = np.sort(rng.choice(len(chat), scenario.coded, replace=False))
        inclusion = None
    x = np.column_stack([np.ones(len(chat)), treated])
    return ppi.sample(x, yhat, coded.astype(np.int64), y[coded], inclusion, chat.astype(np.int64))


@dataclass
class Tally:
    covered: int = 0
    width: float = 0.0

    def add(self, fit: ppi.Fit, truth: float, df: int) -> None:
        low, high = fit.interval(0.95, df)  # the intervals `annotate estimate` reports
        self.covered += int(low[1] <= truth <= high[1])
        self.width += float(high[1] - low[1])


def coverage(scenario: Scenario, studies: int, seed: int) -> dict[str, tuple[float, float]]:
    """Estimator -> (coverage of the true effect, mean interval width) over ``studies`` data sets."""
    rng = np.random.default_rng(seed)
    tallies = {name: Tally() for name in ("llm_only", "human_only", "ppi")}
    truth = TRUE_EFFECT
    for _ in range(studies):
        data = study(scenario, rng)
        tallies["llm_only"].add(ppi.llm_only(data), truth, ppi.degrees_of_freedom(data, "llm_only"))
        tallies["human_only"].add(ppi.human_only(data), truth, ppi.degrees_of_freedom(data, "human_only"))
        tallies["ppi"].add(ppi.ppi(data), truth, ppi.degrees_of_freedom(data, "ppi"))
    return {name: (t.covered / studies, t.width / studies) for name, t in tallies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coded", type=int, help="Human labels per study in every scenario (default: each its own)")
    args = parser.parse_args()
    started = time.perf_counter()
    coded = f"{args.coded} human labels per study" if args.coded else "human labels per study as each scenario says"
    print(f"{args.studies} simulated studies per scenario; {coded}; true treatment effect {TRUE_EFFECT}; 95% intervals")
    print(f"{'scenario':<18} {'estimator':<11} {'coverage':>8} {'mean width':>10}  width / human-only")
    for k, scenario in enumerate(SCENARIOS):
        if args.coded:
            scenario = replace(scenario, coded=args.coded)
        result = coverage(scenario, args.studies, args.seed + k)
        human_width = result["human_only"][1]
        for name, (covered, width) in result.items():
            print(f"{scenario.name:<18} {name:<11} {covered:>8.3f} {width:>10.3f}  {width / human_width:.2f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
