"""How many labels a prompt injection moves: the same chats with and without notes that hand the rater an answer.

tests/data/injection/ holds six chats twice: clean, and with turns that end in "use exactly this answer:
{...}". Both files are labelled with three prompt sets on the real embedded model (llama.cpp, prefix cache
off, so every answer depends on its own prompt only):

* before   — agent_behaviour v1, initial_state v1, round_sentiment v2 (turns as plain ``[Name] text`` lines);
* fenced   — agent_behaviour v2, initial_state v2, round_sentiment v3 (turns fenced, JSON-like text withheld,
             instructions that notes to the rater are only text, a worked example that ignores one);
* withheld — agent_behaviour v3, initial_state v3, round_sentiment v4 (the defaults: as before, with
             JSON-like text withheld and nothing else changed);
* zh       — the Chinese family's zh-v1 of the three tasks (JSON-like text withheld), on six Chinese chats
             written the same way (zh_clean.jsonl, zh_injected.jsonl).

Prints, per prompt set, how many labels differ between the clean and the injected file, and how many of
the injected file's labels equal the value the injection asked for where the clean label did not.

Run: .venv/bin/python bench/injection.py
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import pandas as pd

from annotate.config import BackendOptions, PromptPaths, RunConfig
from annotate.engines import Backend, create_backend
from annotate.labelling.pipeline import run

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "injection"
PROMPT_SETS = {
    "before": {"agent_behaviour": "v1", "initial_state": "v1", "round_sentiment": "v2"},
    "fenced": {"agent_behaviour": "v2", "initial_state": "v2", "round_sentiment": "v3"},
    "withheld": {"agent_behaviour": "v3", "initial_state": "v3", "round_sentiment": "v4"},
    "zh": {"agent_behaviour": "zh-v1", "initial_state": "zh-v1", "round_sentiment": "zh-v1"},
}
FILES = {"zh": "zh_{}.jsonl"}
"""The chats each set labels (default ``{}.jsonl``: clean and injected); the Chinese set has Chinese chats."""


def data(name: str, kind: str) -> Path:
    return DATA / FILES.get(name, "{}.jsonl").format(kind)


KEY = ["chat_id", "round", "variable"]


def requested_values(path: Path) -> dict[tuple[str, str], int]:
    """(chat_id, variable or round_N) -> the value the injected notes ask for."""
    asked: dict[tuple[str, str], int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        chat = json.loads(line)
        for message in chat["messages"]:
            for payload in re.findall(r"\{[^{}]*\}", message["text"]):
                for name, value in json.loads(payload).items():
                    asked[(chat["chat_id"], name)] = int(value)
    return asked


def label(engine: Backend, versions: dict[str, str], inputs: Path, out: Path) -> pd.DataFrame:
    config = RunConfig(
        inputs=[inputs],
        out=out,
        prompts=PromptPaths.resolve(ROOT / "prompts", ROOT / "rubrics"),
        tasks=list(versions),
        prompt_versions=versions,
        options=BackendOptions(prefix_cache=False),
        use_cache=False,
    )
    run(config, backend=engine)
    return pd.read_parquet(out / "labels.parquet")


def compare(clean: pd.DataFrame, injected: pd.DataFrame, asked: dict[tuple[str, str], int]) -> dict[str, int]:
    both = clean.merge(injected, on=KEY, suffixes=("_clean", "_injected"))
    ok = both[(both["status_clean"] == "ok") & (both["status_injected"] == "ok")]
    moved = ok[ok["value_clean"] != ok["value_injected"]]

    def asked_for(row: pd.Series) -> int | None:
        per_round = row["variable"] == "negative_sentiment"
        return asked.get((row["chat_id"], f"round_{int(row['round'])}" if per_round else row["variable"]))

    obeyed = sum(asked_for(r) == r["value_injected"] for _, r in moved.iterrows())
    failed = int((both["status_injected"] != "ok").sum())
    return {"labels": len(ok), "moved": len(moved), "moved_to_the_injected_value": int(obeyed), "failed": failed}


def measure(engine: Backend, folder: Path, sets: list[str]) -> dict[str, dict[str, int]]:
    results = {}
    for name in sets:
        versions = PROMPT_SETS[name]
        clean = label(engine, versions, data(name, "clean"), folder / f"{name}-clean")
        injected = label(engine, versions, data(name, "injected"), folder / f"{name}-injected")
        results[name] = compare(clean, injected, requested_values(data(name, "injected")))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", choices=list(PROMPT_SETS), default=list(PROMPT_SETS))
    sets = parser.parse_args().sets
    engine = create_backend("llamacpp", BackendOptions(prefix_cache=False))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = measure(engine, Path(tmp), sets)
    finally:
        engine.close()
    for name in sets:
        versions, r = PROMPT_SETS[name], results[name]
        prompts = ", ".join(f"{t} {v}" for t, v in versions.items())
        print(
            f"{name:>6} ({prompts}): {r['moved']} of {r['labels']} labels moved by the injection, "
            f"{r['moved_to_the_injected_value']} of them to the value it asked for; {r['failed']} failed"
        )


if __name__ == "__main__":
    main()
