"""``annotate agree``: agreement of the LLM with itself (repeats) and across runs (models, backends, prompts).

Only items with an ``ok`` label from every coder are compared; how many were left out is reported.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotate import agreement as ag
from annotate.errors import RunStoreError
from annotate.prompts import PromptLibrary
from annotate.store import load_run
from annotate.validation import VariableInfo, variable_info

ITEM = ["chat_id", "round", "variable"]


def agree_repeats(run_dir: Path, library: PromptLibrary | None = None) -> dict[str, Any]:
    labels, manifest = load_run(run_dir)
    labels = labels[labels["status"] != "skipped"]
    repeats = sorted(int(r) for r in labels["repeat"].dropna().unique())
    if len(repeats) < 2:
        raise RunStoreError(f"{run_dir} has one repeat: run it with --repeats N (N >= 2), or compare several runs")
    info = variable_info(labels, manifest, library)
    variables = []
    for variable, rows in labels.groupby("variable", sort=True):
        meta = info[str(variable)]
        wide, dropped = _wide(rows, "repeat", repeats)
        stats = ag.multi_coder_statistics(wide.to_numpy(int), meta.categories, meta.scale)
        variables.append(
            {
                "variable": variable,
                "task": meta.task,
                "scale": meta.scale,
                "categories": meta.categories,
                "items_left_out": dropped,
                **stats,
            }
        )
    return {
        "mode": "repeats",
        "runs": [_describe(run_dir, manifest)],
        "coders": [f"repeat {r}" for r in repeats],
        "variables": variables,
    }


def agree_runs(
    run_dirs: list[Path], library: PromptLibrary | None = None, repeat: int = 0, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    if len(run_dirs) < 2:
        raise RunStoreError("give two or more run directories, or one run made with --repeats")
    loaded = [load_run(d) for d in run_dirs]
    names = _coder_names(run_dirs)
    frames = []
    info: dict[str, VariableInfo] = {}
    for name, (labels, manifest) in zip(names, loaded, strict=True):
        rows = labels[(labels["status"] != "skipped") & (labels["repeat"] == repeat)].assign(coder=name)
        frames.append(rows)
        info = {**variable_info(rows, manifest, library), **info}
    everything = pd.concat(frames, ignore_index=True)
    differences = {
        f"{names[i]} vs {names[j]}": _differences(loaded[i][1], loaded[j][1])
        for i, j in combinations(range(len(names)), 2)
    }
    variables = []
    for variable, rows in everything.groupby("variable", sort=True):
        meta = info[str(variable)]
        wide, dropped = _wide(rows, "coder", names)
        pairs = {}
        for first, second in combinations(names, 2):
            a, b = wide[first].astype(int).tolist(), wide[second].astype(int).tolist()
            chats = [c for c, _ in wide.index]
            point = ag.pair_statistics(a, b, meta.categories, meta.scale)
            intervals = ag.pair_bootstrap(a, b, chats, meta.categories, meta.scale, n_boot, seed)
            pairs[f"{first} vs {second}"] = {
                **{k: _num(v) for k, v in point.items()},
                "ci95": {k: [_num(lo), _num(hi)] for k, (lo, hi) in intervals.items()},
                "confusion": ag.confusion(a, b, meta.categories),
            }
        entry: dict[str, Any] = {
            "variable": variable,
            "task": meta.task,
            "scale": meta.scale,
            "categories": meta.categories,
            "items_left_out": dropped,
            "pairs": pairs,
        }
        if len(names) > 2:
            entry["all_runs"] = ag.multi_coder_statistics(wide.to_numpy(int), meta.categories, meta.scale)
        variables.append(entry)
    return {
        "mode": "runs",
        "runs": [_describe(d, m) for d, (_, m) in zip(run_dirs, loaded, strict=True)],
        "coders": names,
        "repeat": repeat,
        "bootstrap": {"resamples": n_boot, "unit": "chat", "seed": seed},
        "differences": differences,
        "variables": variables,
    }


def _wide(rows: pd.DataFrame, coder_column: str, coders: list[Any]) -> tuple[pd.DataFrame, int]:
    """Items x coders of ok labels; items lacking an ok label from any coder are dropped and counted."""
    ok = rows[rows["status"] == "ok"]
    wide = ok.pivot_table(
        index=["chat_id", "round"], columns=coder_column, values="value", aggfunc="first", dropna=False
    )
    wide = wide.reindex(columns=coders)
    total = rows.drop_duplicates(["chat_id", "round"]).shape[0]
    complete = wide.dropna()
    return complete, int(total - len(complete))


def _coder_names(run_dirs: list[Path]) -> list[str]:
    names = [d.name or str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    return names


def _describe(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    model = manifest.get("model", {})
    return {
        "dir": str(run_dir),
        "run_id": manifest.get("run_id"),
        "backend": manifest.get("backend"),
        "model": model.get("name"),
        "engine": model.get("engine"),
        "prompts": {t: p["version"] for t, p in manifest.get("prompts", {}).items()},
        "sampling": manifest.get("sampling"),
    }


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The configuration that differs between two runs, named from their manifests."""
    found = []
    for key in ("backend",):
        if a.get(key) != b.get(key):
            found.append(f"{key}: {a.get(key)} vs {b.get(key)}")
    model_a, model_b = a.get("model", {}), b.get("model", {})
    for key in sorted(set(model_a) | set(model_b)):
        if model_a.get(key) != model_b.get(key) and key not in ("license", "source"):
            found.append(f"model {key}: {model_a.get(key)} vs {model_b.get(key)}")
    if a.get("sampling") != b.get("sampling"):
        found.append(f"sampling: {a.get('sampling')} vs {b.get('sampling')}")
    prompts_a, prompts_b = a.get("prompts", {}), b.get("prompts", {})
    for task in sorted(set(prompts_a) & set(prompts_b)):
        if prompts_a[task]["hash"] != prompts_b[task]["hash"]:
            found.append(f"{task} prompt: {prompts_a[task]['version']} vs {prompts_b[task]['version']}")
    if set(prompts_a) != set(prompts_b):
        only_a = ", ".join(sorted(set(prompts_a) - set(prompts_b))) or "-"
        only_b = ", ".join(sorted(set(prompts_b) - set(prompts_a))) or "-"
        found.append(f"tasks: {only_a} vs {only_b}")
    return found or ["same configuration (a replication)"]


def _num(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)
