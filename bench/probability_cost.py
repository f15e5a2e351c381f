"""What label probabilities cost: the same chats labelled with and without the engine's top-20 candidates.

Both runs use a fresh in-process engine (started and warmed up apart from the timing), no answer
cache, and the default tasks. Prints wall time per mode, the ratio, and whether the labels are the
same (asking for log probabilities must not change a greedy answer).
Run: .venv/bin/python bench/probability_cost.py [--backend llamacpp|vllm] [--chats 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from annotate.config import BackendOptions, RunConfig
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="llamacpp", choices=["llamacpp", "vllm"])
    parser.add_argument("--chats", type=int, default=10)
    args = parser.parse_args()
    from throughput import started_engine  # the same warm-up as the throughput bench (bench/ is on the path)

    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    seconds, labels = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for top in (0, 20):
            options = BackendOptions(max_model_len=4096, top_logprobs=top)
            engine, startup = started_engine(args.backend, options)
            config = RunConfig(
                inputs=[ROOT / "examples" / "transcripts.jsonl"],
                out=Path(tmp) / f"top{top}",
                prompts=library.paths,
                backend=args.backend,
                options=options,
                limit=args.chats,
                use_cache=False,
            )
            started = time.perf_counter()
            summary = run(replace(config), backend=engine)
            seconds[top] = time.perf_counter() - started
            engine.close()
            labels[top] = pd.read_parquet(config.out / "labels.parquet")
            with_probs = int(labels[top]["probs"].notna().sum())
            print(
                f"top_logprobs {top:>2}: {seconds[top]:.1f} s for {summary.model_calls} model calls "
                f"(start-up {startup:.1f} s apart); {with_probs} of {len(labels[top])} labels with probabilities"
            )
    same = labels[0]["value"].tolist() == labels[20]["value"].tolist()
    print(f"time with probabilities / without: {seconds[20] / seconds[0]:.2f}; labels identical: {same}")


if __name__ == "__main__":
    main()
