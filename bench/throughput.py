"""Throughput of the engine configuration against a naive loop, measured in one run (ratios, not seconds).

Three runs of the same units (the first N example chats, all six tasks) through the real pipeline:

* naive   — one request per engine call, no prompt-prefix reuse, no answer cache;
* engine  — the default configuration: batches, prefix reuse, requests ordered by task;
* cached  — the engine configuration again: every answer from the completion cache.

Each engine is started and warmed up before its run is timed (start-up is printed apart).
Prints wall time, units/s, prompt tokens per label, peak memory, the speed-up ratios, and the
agreement between naive and engine labels (same model and prompts, so it should be near 1).
Run: .venv/bin/python bench/throughput.py [--backend llamacpp|vllm] [--chats 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from annotate.agreement import cohen_kappa, percent_agreement
from annotate.backends import Backend, BackendOptions, Request, Sampling, create_backend
from annotate.pipeline import RunConfig, RunSummary, run
from annotate.prompts import PromptLibrary

ROOT = Path(__file__).resolve().parent.parent


def started_engine(name: str, options: BackendOptions) -> tuple[Backend, float]:
    """Create the engine and answer one tiny request, so start-up is measured apart from throughput."""
    started = time.perf_counter()
    engine = create_backend(name, options)
    schema = {"type": "object", "properties": {"ok": {"type": "integer", "enum": [1]}}, "required": ["ok"]}
    list(engine.complete([Request("warm-up", [{"role": "user", "content": "Say ok."}], schema, 8, Sampling())]))
    return engine, time.perf_counter() - started


def timed(config: RunConfig, cache_dir: Path, engine: Backend) -> tuple[RunSummary, float]:
    os.environ["ANNOTATE_CACHE_DIR"] = str(cache_dir)
    started = time.perf_counter()
    summary = run(config, backend=engine)
    return summary, time.perf_counter() - started


def peak_mib() -> float:
    """Peak resident memory of this process and of finished children (vLLM's engine runs in one)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="llamacpp", choices=["llamacpp", "vllm"])
    parser.add_argument("--chats", type=int, default=10)
    args = parser.parse_args()
    models = os.environ.get("ANNOTATE_MODELS_DIR") or str(
        Path(os.environ.get("ANNOTATE_CACHE_DIR", Path.home() / ".cache" / "annotate")) / "models"
    )
    os.environ["ANNOTATE_MODELS_DIR"] = models  # the model is assembled once and shared by every run
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    inputs = [ROOT / "examples" / "transcripts.jsonl"]

    def config(name: str, naive: bool) -> RunConfig:
        options = BackendOptions(prefix_cache=not naive, max_model_len=4096)
        return RunConfig(
            inputs=inputs,
            out=work / name,
            library=library,
            backend=args.backend,
            limit=args.chats,
            options=options,
            batch_size=1 if naive else 512,
            use_cache=not naive,
        )

    print(f"backend {args.backend}, first {args.chats} example chats, all six tasks; work dir {work}", flush=True)
    results = {}
    naive_engine, naive_start = started_engine(args.backend, config("naive", naive=True).options)
    results["naive"] = timed(config("naive", naive=True), work / "cache-naive", naive_engine)
    naive_engine.close()
    del naive_engine
    memory_naive = peak_mib()
    engine, engine_start = started_engine(args.backend, config("engine", naive=False).options)
    results["engine"] = timed(config("engine", naive=False), work / "cache-engine", engine)
    results["cached"] = timed(config("cached", naive=False), work / "cache-engine", engine)
    engine.close()
    print(f"engine start-up, not timed below: {naive_start:.1f} s (naive), {engine_start:.1f} s (engine)")

    rows = []
    for name, (summary, seconds) in results.items():
        labels = sum(sum(c.values()) for c in summary.counts.values())
        rows.append(
            {
                "mode": name,
                "seconds": round(seconds, 1),
                "units/s": round(summary.model_calls and (summary.model_calls / seconds), 3),
                "model calls": summary.model_calls,
                "cache hits": summary.cache_hits,
                "prompt tokens/label": round(summary.prompt_tokens / labels, 1) if labels else 0,
                "evaluated/label": round((summary.prompt_tokens - summary.cached_prompt_tokens) / labels, 1)
                if labels
                else 0,
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    naive_s, engine_s, cached_s = (results[m][1] for m in ("naive", "engine", "cached"))
    print(f"peak memory: {memory_naive:.0f} MiB after naive, {peak_mib():.0f} MiB overall")
    print(f"engine vs naive: {naive_s / engine_s:.2f}x faster")
    print(f"cached re-run vs engine: {engine_s / cached_s:.1f}x faster, {results['cached'][0].model_calls} model calls")
    a = pd.read_parquet(work / "naive" / "labels.parquet")
    b = pd.read_parquet(work / "engine" / "labels.parquet")
    both = a.merge(b, on=["chat_id", "round", "variable"], suffixes=("_naive", "_engine"))
    both = both[(both["status_naive"] == "ok") & (both["status_engine"] == "ok")]
    same = percent_agreement(both["value_naive"].tolist(), both["value_engine"].tolist())
    kappa = cohen_kappa(
        both["value_naive"].tolist(),
        both["value_engine"].tolist(),
        sorted(set(both["value_naive"]) | set(both["value_engine"])),
    )
    print(f"naive vs engine labels: {len(both)} compared, {same:.3f} identical, Cohen kappa {kappa:.3f}")


if __name__ == "__main__":
    sys.exit(main())
