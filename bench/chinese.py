"""English against Chinese prompts on the shipped Chinese chats, with the embedded models.

Each model labels examples/zh/transcripts.jsonl twice through the labelling pipeline (llama.cpp, the answer
cache on, so a second run of this script costs nothing): with the English prompt family (the defaults) and
with the Chinese one (``--prompt-family zh``). Then, per model and variable, it prints:

* Cohen's κ (and quadratic κ for ordinal scales) of each family with examples/zh/gold.csv;
* the change in κ with the gold from English to Chinese prompts, with a paired 95% chat-bootstrap interval
  (the same chats resampled for both);
* κ between the two families' labels of the same items;
* the label distribution of the gold and of each family, and how often each used the scale's middle
  categories (neither the lowest nor the highest value; binary scales have none);
* per family, the real prompt tokens the engine reported against the estimate the context fit uses
  (annotate/prompts/units.py ``estimated_tokens``): the estimate must never be below the real count.

Run: .venv/bin/python bench/chinese.py [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b] [--out DIR]
     [--tasks empathy,information_seeking,solution_provision,proactivity]  (the single-construct versions)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from annotate.analysis import statistics as st
from annotate.analysis.gold import truth_of
from annotate.config import BackendOptions, PromptPaths, RunConfig
from annotate.ingest.readers import read_transcripts
from annotate.labelling.jobs import MESSAGE_OVERHEAD_TOKENS
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary
from annotate.prompts.units import estimated_tokens, units_for
from annotate.runs.coded import read_gold

ROOT = Path(__file__).resolve().parent.parent
CHATS = ROOT / "examples" / "zh" / "transcripts.jsonl"
GOLD = ROOT / "examples" / "zh" / "gold.csv"
KEY = ["chat_id", "round", "variable"]
FAMILIES = ("en", "zh")


def label(model: str, family: str, out: Path, tasks: list[str] | None) -> pd.DataFrame:
    config = RunConfig(
        inputs=[CHATS],
        out=out / (f"{model}-{family}" + ("-" + "+".join(tasks) if tasks else "")),
        tasks=tasks,
        prompts=PromptPaths(ROOT / "prompts", ROOT / "rubrics"),
        prompt_family=family,
        backend="llamacpp",
        options=BackendOptions(model=f"embedded:{model}"),
    )
    summary = run(config)
    print(f"{model} {family}: {summary.model_calls} model calls, {summary.cache_hits} from the cache")
    return pd.read_parquet(config.out / "labels.parquet")


def kappas(a: pd.Series, b: pd.Series, categories: list[int], scale: str) -> str:
    pairs = pd.concat([a, b], axis=1).dropna().astype(int)
    first, second = pairs.iloc[:, 0].tolist(), pairs.iloc[:, 1].tolist()
    found = st.pair_statistics(first, second, categories, scale)
    text = f"{found['cohen_kappa']:.2f}" if found["cohen_kappa"] == found["cohen_kappa"] else "–"
    if scale == "ordinal":
        quadratic = found.get("kappa_quadratic", float("nan"))
        text += f" / {quadratic:.2f}" if quadratic == quadratic else " / –"
    return text


def change(rows: pd.DataFrame, categories: list[int]) -> str:
    """κ with the gold, zh prompts minus en prompts, with its paired 95% chat-bootstrap interval."""
    both = rows.dropna().astype(int)
    chats = [str(key[0]) for key in both.index]
    gold, en, zh = both["gold"].tolist(), both["en"].tolist(), both["zh"].tolist()
    delta = st.cohen_kappa(gold, zh, categories) - st.cohen_kappa(gold, en, categories)
    if delta != delta:
        return "– (a family used one label)"
    low, high = st.paired_delta_bootstrap(gold, en, zh, chats, categories, 1000, 0)["cohen_kappa"]
    return f"{delta:+.2f} [{low:+.2f}, {high:+.2f}]"


def distribution(values: pd.Series, categories: list[int]) -> str:
    counts = values.dropna().astype(int).value_counts()
    return " ".join(f"{c}:{int(counts.get(c, 0))}" for c in categories)


def middle_share(values: pd.Series, categories: list[int]) -> str:
    if len(categories) < 3:
        return "–"
    used = values.dropna().astype(int)
    return f"{used.isin(categories[1:-1]).mean():.0%}"


def token_check(library: PromptLibrary, family: str, labels: pd.DataFrame) -> tuple[int, float, float]:
    """(requests, real tokens / estimate at the worst request, real tokens / estimate over all)."""
    chats = {c.chat_id: c for c in read_transcripts([CHATS]).chats}
    real_total = estimate_total = 0.0
    worst, requests = 0.0, 0
    for task in sorted(set(labels["task"])):
        pv = library.get(task, None, family)
        rows = labels[(labels["task"] == task) & (labels["status"] == "ok") & (labels["attempts"] == 1)]
        for chat_id, chat in chats.items():
            for unit in units_for(chat, task, pv.rubric.unit, 12000):
                mine = rows[rows["chat_id"] == chat_id]  # one request per chat and task for chats this short
                if mine.empty:
                    continue
                real = float(mine["prompt_tokens"].iloc[0])
                estimate = sum(estimated_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in pv.render(unit))
                worst, requests = max(worst, real / estimate), requests + 1
                real_total, estimate_total = real_total + real, estimate_total + estimate
    return requests, worst, real_total / estimate_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--out", type=Path, default=Path("/tmp/annotate-bench-chinese"))
    parser.add_argument(
        "--tasks",
        default=None,
        help="Comma-separated tasks (default: the default tasks, which rate all seven variables)",
    )
    args = parser.parse_args()
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    truth = truth_of(read_gold(GOLD).table).set_index(KEY)["value"]
    scales = {name: (v.scale, sorted(v.values)) for name, v in library.get("agent_behaviour").rubric.variables.items()}
    for task in ("initial_state", "round_sentiment"):
        scales |= {name: (v.scale, sorted(v.values)) for name, v in library.get(task).rubric.variables.items()}
    for model in args.models.split(","):
        tasks = args.tasks.split(",") if args.tasks else None
        runs = {family: label(model, family, args.out, tasks) for family in FAMILIES}
        table = pd.DataFrame({"gold": truth})
        for family, labels in runs.items():
            ok = labels[(labels["status"] == "ok") & (labels["repeat"] == 0)].copy()
            ok["round"] = ok["round"].astype("Int64")
            table[family] = ok.set_index(KEY)["value"].reindex(table.index)
        rated = set().union(*(set(labels["variable"]) for labels in runs.values()))
        table = table[table.index.get_level_values("variable").isin(rated)]
        print(f"\n### {model}: {len(table)} gold items of {table.index.get_level_values(0).nunique()} chats\n")
        print(
            "| variable | κ en prompts / gold | κ zh prompts / gold | Δκ zh − en [95%] | κ en / zh | gold | en prompts "
            "| zh prompts | middle: gold, en, zh |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for variable, rows in table.groupby(level="variable"):
            scale, categories = scales[str(variable)]
            cells = [kappas(rows["gold"], rows[f], categories, scale) for f in FAMILIES]
            cells.append(change(rows, categories))
            cells.append(kappas(rows["en"], rows["zh"], categories, scale))
            cells += [distribution(rows[c], categories) for c in ("gold", *FAMILIES)]
            cells.append(", ".join(middle_share(rows[c], categories) for c in ("gold", *FAMILIES)))
            print(f"| {variable} | " + " | ".join(cells) + " |")
        missing = {f: int(table[f].isna().sum()) for f in FAMILIES}
        print(f"\nitems without an ok label: {json.dumps(missing)} (κ is over items both have; quadratic κ after '/')")
        for family, labels in runs.items():
            requests, worst, overall = token_check(library, family, labels)
            print(
                f"{family} prompts: {requests} requests; real prompt tokens / estimate: {overall:.2f} overall, "
                f"{worst:.2f} at the worst request (must stay at or below 1)"
            )


if __name__ == "__main__":
    main()
