"""Throughput of the engine configuration against a naive loop, measured in one run (ratios, not seconds).

The same chats (the first N examples, all six tasks) are labelled through the real pipeline in four ways:

* naive             — one request per engine call, no prompt-prefix reuse, no answer cache, and
                      round_sentiment asked once per round (v1): the loop one writes first;
* engine, per round — the engine configuration (batches, prefix reuse, requests ordered by task)
                      with the naive loop's prompts: what the engine alone gains;
* engine            — the default configuration: also round_sentiment's newest version, which asks
                      once per chat for every round's label;
* cached            — the default configuration again: every answer from the completion cache.

Each timed mode gets a fresh engine, started and warmed up before it is timed (start-up is printed apart),
so that no mode finds prompt prefixes that an earlier mode left in the engine's cache. Prints wall time,
labels/s, prompt tokens per label, peak memory, the speed-up ratios, and how far the labels agree:
naive vs engine (same prompts, so near 1), and round_sentiment per round vs per chat.

Backends: llamacpp and vllm in-process; openai against a llama.cpp HTTP server that this script starts
on 127.0.0.1 (naive: one request at a time with the server's prompt cache off; engine: 4 in flight).
Run: .venv/bin/python bench/throughput.py [--backend llamacpp|vllm|openai] [--chats 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from annotate.agreement import cohen_kappa, percent_agreement
from annotate.backends import Backend, BackendOptions, Request, Sampling, create_backend
from annotate.pipeline import RunConfig, RunSummary, run
from annotate.prompts import PromptLibrary

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = "v1"
"""round_sentiment's one-request-per-round version: what the naive loop asks."""


@dataclass(frozen=True)
class Mode:
    name: str
    naive: bool
    round_version: str
    use_cache: bool


def started_engine(name: str, options: BackendOptions) -> tuple[Backend, float]:
    """Create the engine and answer one tiny request, so start-up is measured apart from throughput."""
    started = time.perf_counter()
    engine = create_backend(name, options)
    schema = {"type": "object", "properties": {"ok": {"type": "integer", "enum": [1]}}, "required": ["ok"]}
    list(engine.complete([Request("warm-up", [{"role": "user", "content": "Say ok."}], schema, 8, Sampling())]))
    return engine, time.perf_counter() - started


def peak_mib() -> float:
    """Peak resident memory of this process and of finished children (vLLM's engine runs in one)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


@contextmanager
def local_server(slots: int) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible HTTP server on 127.0.0.1, serving the embedded model."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.local_server", str(slots)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def engine_options(backend: str, naive: bool, base_url: str | None) -> BackendOptions:
    if backend != "openai":
        return BackendOptions(prefix_cache=not naive, max_model_len=4096)
    extra = {"extra_body": {"cache_prompt": False}} if naive else {}
    return BackendOptions(model="embedded", base_url=base_url, concurrency=1 if naive else 4, extra=extra)


def labelled(summary: RunSummary) -> int:
    return sum(sum(c.values()) for c in summary.counts.values())


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, float, float]:
    """Labels ok in both runs: how many, the share identical, Cohen's kappa."""
    both = a.merge(b, on=["chat_id", "round", "variable"], suffixes=("_a", "_b"))
    both = both[(both["status_a"] == "ok") & (both["status_b"] == "ok")]
    x, y = both["value_a"].tolist(), both["value_b"].tolist()
    return len(both), percent_agreement(x, y), cohen_kappa(x, y, sorted(set(x) | set(y)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", default="llamacpp", choices=["llamacpp", "vllm", "openai"])
    parser.add_argument("--chats", type=int, default=10)
    args = parser.parse_args()
    models = os.environ.get("ANNOTATE_MODELS_DIR") or str(
        Path(os.environ.get("ANNOTATE_CACHE_DIR", Path.home() / ".cache" / "annotate")) / "models"
    )
    os.environ["ANNOTATE_MODELS_DIR"] = models  # the model is assembled once and shared by every run
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics")
    default_round = library.versions("round_sentiment")[-1]
    modes = [
        Mode("naive", naive=True, round_version=PER_ROUND, use_cache=False),
        Mode("engine, per round", naive=False, round_version=PER_ROUND, use_cache=False),
        Mode("engine", naive=False, round_version=default_round, use_cache=True),
        Mode("cached", naive=False, round_version=default_round, use_cache=True),
    ]
    if default_round == PER_ROUND:
        modes.pop(1)
    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    print(
        f"backend {args.backend}, first {args.chats} example chats, all six tasks "
        f"(round_sentiment: naive {PER_ROUND}, default {default_round}); work dir {work}",
        flush=True,
    )
    results: dict[str, tuple[RunSummary, float]] = {}
    startup = {}
    memory_naive = 0.0
    with ExitStack() as stack:
        engine: Backend | None = None
        for mode in modes:
            if mode.name != "cached":  # a fresh engine: no mode finds prefixes an earlier one cached
                if engine is not None:
                    engine.close()
                stack.close()  # the previous mode's server, if any
                base_url = stack.enter_context(local_server(slots=2)) if args.backend == "openai" else None
                options = engine_options(args.backend, mode.naive, base_url)
                engine, startup[mode.name] = started_engine(args.backend, options)
            config = RunConfig(
                inputs=[ROOT / "examples" / "transcripts.jsonl"],
                out=work / mode.name.replace(", ", "-").replace(" ", "-"),
                library=library,
                backend=args.backend,
                prompt_versions={"round_sentiment": mode.round_version},
                limit=args.chats,
                options=options,
                batch_size=1 if mode.naive else 512,
                use_cache=mode.use_cache,
            )
            os.environ["ANNOTATE_CACHE_DIR"] = str(work / "cache")
            started = time.perf_counter()
            summary = run(config, backend=engine)
            results[mode.name] = (summary, time.perf_counter() - started)
            print(f"  {mode.name}: {results[mode.name][1]:.1f} s", flush=True)
            if mode.naive:
                memory_naive = peak_mib()
        if engine is not None:
            engine.close()
    print("engine start-up, not timed below: " + ", ".join(f"{s:.1f} s ({m})" for m, s in startup.items()))

    rows = []
    for name, (summary, seconds) in results.items():
        labels = labelled(summary)
        evaluated = summary.prompt_tokens - summary.cached_prompt_tokens
        rows.append(
            {
                "mode": name,
                "seconds": round(seconds, 1),
                "labels/s": round(labels / seconds, 3) if summary.model_calls else 0,
                "model calls": summary.model_calls,
                "cache hits": summary.cache_hits,
                "labels": labels,
                "prompt tokens/label": round(summary.prompt_tokens / labels, 1),
                "evaluated/label": round(evaluated / labels, 1),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"peak memory: {memory_naive:.0f} MiB after naive, {peak_mib():.0f} MiB overall")
    seconds = {name: s for name, (_, s) in results.items()}
    if "engine, per round" in seconds:
        print(f"engine vs naive, same prompts: {seconds['naive'] / seconds['engine, per round']:.2f}x faster")
    print(f"engine (default configuration) vs naive: {seconds['naive'] / seconds['engine']:.2f}x faster")
    print(
        f"cached re-run vs engine: {seconds['engine'] / seconds['cached']:.1f}x faster, "
        f"{results['cached'][0].model_calls} model calls"
    )

    tables = {name: pd.read_parquet(summary.out / "labels.parquet") for name, (summary, _) in results.items()}
    same_prompts = "engine, per round" if "engine, per round" in tables else "engine"
    n, same, kappa = compare(tables["naive"], tables[same_prompts])
    print(f"naive vs {same_prompts} labels: {n} compared, {same:.3f} identical, Cohen kappa {kappa:.3f}")
    if same_prompts != "engine":
        rounds = {k: t[t["task"] == "round_sentiment"] for k, t in tables.items()}
        n, same, kappa = compare(rounds["engine, per round"], rounds["engine"])
        print(
            f"round_sentiment per round ({PER_ROUND}) vs per chat ({default_round}): "
            f"{n} compared, {same:.3f} identical, Cohen kappa {kappa:.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
