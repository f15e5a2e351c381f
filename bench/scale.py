"""Memory and labelling overhead as the corpus grows: generated chats, the scripted engine, one run per size.

The scripted (fake) engine answers instantly, so what is measured is annotate's own work per chat: reading,
units, prompts, cache, journal, label tables. Each size runs in a fresh process (peak memory is per process):
a full run, then a resume of the finished run (which must find nothing to do). Prints peak resident memory,
chats per second, and the ratios between the largest and the smallest size.

Run: .venv/bin/python bench/scale.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPENERS = ["Hi, my order {n} has not arrived.", "The {item} I bought is broken.", "I want a refund for {item}."]
ITEMS = ["lamp", "kettle", "jacket", "phone case", "desk", "blender"]


def write_chats(path: Path, count: int, seed: int = 0) -> None:
    """``count`` short e-commerce chats, a third of them handed over to a human agent."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(count):
            item, n = rng.choice(ITEMS), rng.randint(10000, 99999)
            messages = [
                {"role": "customer", "text": rng.choice(OPENERS).format(n=n, item=item)},
                {"role": "ai", "text": f"I'm sorry to hear that. Let me check order {n}."},
                {"role": "customer", "text": "It's been two weeks. This is frustrating."},
            ]
            if i % 3 == 0:
                messages += [
                    {"role": "ai", "text": "I'll connect you with a colleague."},
                    {"role": "agent", "text": f"Hello, I see the {item} is delayed at the depot. I'll send a new one."},
                    {"role": "customer", "text": "Thank you."},
                ]
            f.write(json.dumps({"chat_id": f"s{i:07d}", "messages": messages}) + "\n")


def measure(inputs: Path, out: Path, cache: Path) -> dict[str, float]:
    """One ``annotate run`` in this process (called in a child), timed, with its peak memory."""
    from annotate.config import BackendOptions, PromptPaths, RunConfig
    from annotate.labelling.pipeline import run

    os.environ["ANNOTATE_CACHE_DIR"] = str(cache)
    started = time.perf_counter()
    options = BackendOptions(record_requests=False)
    summary = run(RunConfig(inputs=[inputs], out=out, prompts=PromptPaths.resolve(), backend="fake", options=options))
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak_mib, "model_calls": summary.model_calls, "chats": summary.chats}


def child(args: argparse.Namespace) -> None:
    print(json.dumps(measure(Path(args.inputs), Path(args.out), Path(args.cache))))


def run_child(inputs: Path, out: Path, cache: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--inputs", str(inputs), "--out", str(out), "--cache", str(cache)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the run at {out} failed:\n{done.stderr.strip()}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / str(size)
            folder.mkdir()
            inputs = folder / "chats.jsonl"
            write_chats(inputs, size)
            first = run_child(inputs, folder / "run", folder / "cache")
            again = run_child(inputs, folder / "run", folder / "cache")
            rows.append((size, inputs.stat().st_size / 2**20, first, again))
            print(
                f"{size:>8} chats ({rows[-1][1]:.0f} MB): run {first['seconds']:.1f} s, "
                f"{size / first['seconds']:.0f} chats/s, peak {first['peak_mib']:.0f} MiB; "
                f"resume of the finished run {again['seconds']:.1f} s, peak {again['peak_mib']:.0f} MiB, "
                f"{again['model_calls']:.0f} model calls",
                flush=True,
            )
    (small, _, a, ra), (large, _, b, rb) = rows[0], rows[-1]
    per_chat = (b["seconds"] / large) / (a["seconds"] / small)
    print(f"\n{large} vs {small} chats ({large / small:.0f}x the chats):")
    print(f"  peak memory, run:    {b['peak_mib'] / a['peak_mib']:.2f}x")
    print(f"  peak memory, resume: {rb['peak_mib'] / ra['peak_mib']:.2f}x")
    print(f"  seconds per chat:    {per_chat:.2f}x")


if __name__ == "__main__":
    main()
