"""The embedded models side by side on the shipped examples: agreement with the shipped gold, speed, memory.

Each model labels the 30 shipped chats with the default prompts through `annotate run` (llama.cpp, no
answer cache, a fresh process each, so peak memory is that model's), then `annotate validate` compares
the labels with examples/gold.csv. The run directories stay in runs/models/<model> for `annotate
consensus` and `annotate agree`.
Run: .venv/bin/python bench/models.py [--chats 30] [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATISTICS = ("cohen_kappa", "kappa_quadratic", "gwet_ac1")


def timed(command: list[str]) -> tuple[float, float]:
    """Run a command; return its wall seconds and peak resident memory (MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=30)
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    args = parser.parse_args()
    annotate = [sys.executable, "-m", "annotate.cli"]
    results = {}
    for model in args.models.split(","):
        out = ROOT / "runs" / "models" / model
        shutil.rmtree(out, ignore_errors=True)
        run = [*annotate, "run", "examples/transcripts.jsonl", "--out", str(out), "--model", f"embedded:{model}"]
        seconds, peak = timed([*run, "--limit", str(args.chats), "--no-cache"])
        report = ROOT / "reports" / "models" / model
        subprocess.run(
            [*annotate, "validate", str(out), "--gold", "examples/gold.csv", "--out", str(report)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        manifest = json.loads((out / "manifest.json").read_text())
        labels = sum(sum(c.values()) for c in manifest["summary"]["counts"].values())
        ok = sum(c.get("ok", 0) for c in manifest["summary"]["counts"].values())
        variables = json.loads((report / "agreement.json").read_text())["variables"]
        results[model] = (seconds, peak, labels, ok, {v["variable"]: v for v in variables})
        print(
            f"{model}: {labels} labels ({ok} ok) in {seconds:.0f} s = {labels / seconds:.2f} labels/s, "
            f"peak memory {peak:.0f} MiB",
            flush=True,
        )
    names = list(results)
    print("\nagreement with examples/gold.csv: Cohen κ / quadratic κ / Gwet AC1")
    print(f"{'variable':<20} " + " ".join(f"{name:>22}" for name in names))
    for variable in sorted(results[names[0]][4]):
        cells = []
        for name in names:
            v = results[name][4].get(variable, {})
            cells.append(" / ".join("  - " if v.get(s) is None else f"{v[s]:.2f}" for s in STATISTICS))
        print(f"{variable:<20} " + " ".join(f"{cell:>22}" for cell in cells))
    base = results[names[0]]
    for name in names[1:]:
        r = results[name]
        print(f"{name} / {names[0]}: time {r[0] / base[0]:.2f}x, peak memory {r[1] / base[1]:.2f}x")


if __name__ == "__main__":
    main()
