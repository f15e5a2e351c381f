"""Throughput of the engine configuration against a naive loop, measured in one run (ratios, not seconds).

The same chats (the first N examples, all seven variables) are labelled through the real pipeline in four ways:

* naive                — one request per engine call, no prompt-prefix reuse, no answer cache, one task
                         per construct (empathy, information seeking, solution provision, proactivity,
                         initial state) and round_sentiment asked once per round (v1): the loop one
                         writes first;
* engine, same prompts — the engine configuration (batches, prefix reuse, requests ordered by task)
                         with the naive loop's prompts: what the engine alone gains;
* engine               — the default configuration: also the default tasks and versions, which ask once
                         per chat for the four post-handoff constructs (agent_behaviour) and for every
                         round's sentiment (round_sentiment v2);
* cached               — the default configuration again: every answer from the completion cache.

Each timed mode gets a fresh engine, started and warmed up before it is timed (start-up is printed apart),
so that no mode finds prompt prefixes that an earlier mode left in the engine's cache. Prints wall time,
labels/s, prompt tokens per label, peak memory, the speed-up ratios, and how far the labels agree:
naive vs engine (same prompts, so near 1), and per variable the naive prompts vs the default ones.

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

from annotate.analysis.statistics import cohen_kappa, percent_agreement
from annotate.config import BackendOptions, RunConfig, RunSummary, Sampling
from annotate.engines import Backend, Request, create_backend
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary

ROOT = Path(__file__).resolve().parent.parent
NAIVE_TASKS = [
    "empathy",
    "information_seeking",
    "solution_provision",
    "proactivity",
    "initial_state",
    "round_sentiment",
]
NAIVE_VERSIONS = {"round_sentiment": "v1"}
"""One task per construct, and round_sentiment's one-request-per-round version: what the naive loop asks."""
SAME_PROMPTS = "engine, same prompts"


@dataclass(frozen=True)
class Mode:
    name: str
    naive: bool
    naive_prompts: bool
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
    extra_body = {"cache_prompt": False} if naive else {}
    return BackendOptions(model="embedded", base_url=base_url, concurrency=1 if naive else 4, extra_body=extra_body)


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
    modes = [
        Mode("naive", naive=True, naive_prompts=True, use_cache=False),
        Mode(SAME_PROMPTS, naive=False, naive_prompts=True, use_cache=False),
        Mode("engine", naive=False, naive_prompts=False, use_cache=True),
        Mode("cached", naive=False, naive_prompts=False, use_cache=True),
    ]
    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    naive_prompts = ", ".join(f"{t} {NAIVE_VERSIONS.get(t, library.versions(t, 'en')[-1])}" for t in NAIVE_TASKS)
    default_prompts = ", ".join(f"{t} {library.versions(t, 'en')[-1]}" for t in library.default_tasks())
    print(
        f"backend {args.backend}, first {args.chats} example chats; work dir {work}\n"
        f"naive prompts: {naive_prompts}\ndefault prompts: {default_prompts}",
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
                prompts=library.paths,
                backend=args.backend,
                tasks=NAIVE_TASKS if mode.naive_prompts else None,
                prompt_versions=NAIVE_VERSIONS if mode.naive_prompts else {},
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
    timed = {name: s for name, (_, s) in results.items()}
    print(f"engine vs naive, same prompts: {timed['naive'] / timed[SAME_PROMPTS]:.2f}x faster")
    print(f"engine (default configuration) vs naive: {timed['naive'] / timed['engine']:.2f}x faster")
    print(
        f"cached re-run vs engine: {timed['engine'] / timed['cached']:.1f}x faster, "
        f"{results['cached'][0].model_calls} model calls"
    )

    tables = {name: pd.read_parquet(summary.out / "labels.parquet") for name, (summary, _) in results.items()}
    n, same, kappa = compare(tables["naive"], tables[SAME_PROMPTS])
    print(f"naive vs {SAME_PROMPTS} labels: {n} compared, {same:.3f} identical, Cohen kappa {kappa:.3f}")
    print("naive prompts vs default prompts, both on the engine:")
    print(prompt_effect(tables[SAME_PROMPTS], tables["engine"]).to_string(index=False))


def prompt_effect(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Per variable: which prompt labelled it in each run, and how far the two runs' labels agree."""
    rows = []
    for variable in sorted(set(before["variable"]) & set(after["variable"])):
        a, b = before[before["variable"] == variable], after[after["variable"] == variable]
        n, same, kappa = compare(a, b)
        rows.append(
            {
                "variable": variable,
                "naive prompts": f"{a['task'].iloc[0]} {a['prompt_version'].iloc[0]}",
                "default prompts": f"{b['task'].iloc[0]} {b['prompt_version'].iloc[0]}",
                "n": n,
                "identical": round(same, 3),
                "kappa": "-" if kappa != kappa else round(kappa, 3),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
