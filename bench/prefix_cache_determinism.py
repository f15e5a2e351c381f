"""Does the engine's prompt-prefix cache change greedy (temperature 0) answers?

Labels the same units in three orders (forward, reversed, each unit twice in a row) with the
prefix cache on and off, and prints how many units got the same answer in all three orders, and the
time each mode took. Run: .venv/bin/python bench/prefix_cache_determinism.py [--chats 5] [--task round_sentiment]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from annotate.config import BackendOptions, Sampling
from annotate.engines import Request, create_backend
from annotate.ingest.readers import read_transcripts
from annotate.prompts.library import PromptLibrary
from annotate.prompts.units import units_for

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=5)
    parser.add_argument("--task", default="round_sentiment")
    parser.add_argument("--backend", default="llamacpp")
    args = parser.parse_args()
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    pv = library.get(args.task)
    chats = read_transcripts([ROOT / "examples" / "transcripts.jsonl"]).chats[: args.chats]
    units = [u for c in chats for u in units_for(c, pv.task, pv.rubric.unit, 12_000)]
    requests = [
        Request(str(i), pv.render(u), pv.rubric.json_schema, pv.meta.max_tokens, Sampling())
        for i, u in enumerate(units)
    ]
    orders = {
        "forward": list(range(len(units))),
        "reversed": list(reversed(range(len(units)))),
        "each twice": [i for i in range(len(units)) for _ in (0, 1)],
    }
    print(f"{args.backend}, task {pv.task} {pv.version}, {len(units)} units from {len(chats)} chats")
    seconds = {}
    for prefix_cache in (True, False):
        backend = create_backend(args.backend, BackendOptions(prefix_cache=prefix_cache))
        answers: dict[str, list[str]] = {}
        started = time.perf_counter()
        for name, order in orders.items():
            got = {i: c.text for i, c in zip(order, backend.complete([requests[i] for i in order]), strict=True)}
            answers[name] = [got[i] for i in range(len(units))]
        seconds[prefix_cache] = time.perf_counter() - started
        backend.close()
        same = sum(len(set(col)) == 1 for col in zip(*answers.values(), strict=True))
        print(
            f"prefix cache {'on ' if prefix_cache else 'off'}: {same} of {len(units)} units answered the same in "
            f"all 3 orders; {seconds[prefix_cache]:.1f} s for {sum(map(len, orders.values()))} requests"
        )
    print(f"prefix cache off / on time ratio: {seconds[False] / seconds[True]:.2f}")


if __name__ == "__main__":
    main()
