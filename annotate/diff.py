"""``annotate diff TASK A B``: what changed between two prompt versions, and what it did to the labels.

The text diff covers template, metadata with few-shot examples, and rubric. With transcripts, both
versions label the same units (reusing the cache), and the result shows the label transition
matrix, agreement between the versions, every flipped unit with both outputs, and, with gold
labels, the change in agreement with a paired chat bootstrap interval.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from annotate import agreement as ag
from annotate.backends import Backend
from annotate.gold import consensus, read_gold
from annotate.pipeline import Progress, RunConfig, run
from annotate.prompts import PromptLibrary, PromptVersion
from annotate.store import load_run
from annotate.validation import unit_excerpts

KEY = ["chat_id", "round", "variable"]


def text_diff(a: PromptVersion, b: PromptVersion) -> str:
    parts = []
    for what, left, right, left_name, right_name in [
        ("template", a.template_source, b.template_source, a.template_path, b.template_path),
        ("metadata and examples", a.meta_source, b.meta_source, a.meta_path, b.meta_path),
        ("rubric", a.rubric_path.read_text(), b.rubric_path.read_text(), a.rubric_path, b.rubric_path),
    ]:
        lines = list(
            difflib.unified_diff(
                left.splitlines(keepends=True),
                right.splitlines(keepends=True),
                fromfile=str(left_name),
                tofile=str(right_name),
            )
        )
        parts.append(f"### {what}: " + ("no change\n" if not lines else f"{len(lines)} diff lines\n" + "".join(lines)))
    return "\n".join(parts)


def compare_versions(
    library: PromptLibrary,
    task: str,
    version_a: str,
    version_b: str,
    base: RunConfig | None,
    gold_path: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """``backend`` is an engine already started (tests pass a scripted one); by default ``base`` names it."""
    a, b = library.get(task, version_a), library.get(task, version_b)
    result: dict[str, Any] = {
        "task": task,
        "versions": {
            v.version: {
                "hash": v.content_hash,
                "parent": v.meta.parent,
                "changelog": v.meta.changelog,
                "rubric": v.rubric_path.name,
            }
            for v in (a, b)
        },
        "text_diff": text_diff(a, b),
    }
    if base is None:
        return result
    runs: dict[str, dict[str, Any]] = {}
    for version in (version_a, version_b):
        config = replace(base, tasks=[task], prompt_versions={task: version}, out=base.out / "runs" / version)
        summary = run(config, backend=backend, progress=progress)
        runs[version] = {
            "dir": str(config.out),
            "model_calls": summary.model_calls,
            "cache_hits": summary.cache_hits,
            "prompt_tokens": summary.prompt_tokens,
            "evaluated_prompt_tokens": summary.prompt_tokens - summary.cached_prompt_tokens,
            "completion_tokens": summary.completion_tokens,
            "seconds": round(summary.seconds, 1),
        }
    result["runs"] = runs
    first, manifest = load_run(Path(runs[version_a]["dir"]))
    second, _ = load_run(Path(runs[version_b]["dir"]))
    seen = unit_excerpts(manifest, None, library)
    both = first.merge(second, on=KEY, suffixes=("_a", "_b"))
    both = both[(both["repeat_a"] == 0) & (both["repeat_b"] == 0)]
    ok = both[(both["status_a"] == "ok") & (both["status_b"] == "ok")].copy()
    gold = _gold(gold_path) if gold_path else None
    result["variables"] = []
    for variable, rows in ok.groupby("variable", sort=True):
        var = a.rubric.variables.get(str(variable)) or b.rubric.variables[str(variable)]
        categories = sorted(set(var.values) | set(b.rubric.variables.get(str(variable), var).values))
        la, lb = rows["value_a"].astype(int).tolist(), rows["value_b"].astype(int).tolist()
        entry: dict[str, Any] = {
            "variable": variable,
            "scale": var.scale,
            "categories": categories,
            "n": len(rows),
            "not_compared": int((both["variable"] == variable).sum() - len(rows)),
            "between_versions": _clean(ag.pair_statistics(la, lb, categories, var.scale)),
            "transitions": {"rows": version_a, "columns": version_b, "matrix": ag.confusion(la, lb, categories)},
            "flipped": [
                {
                    "chat_id": r.chat_id,
                    "round": None if pd.isna(r.round) else int(r.round),
                    version_a: int(r.value_a),
                    version_b: int(r.value_b),
                    f"raw_{version_a}": r.raw_output_a,
                    f"raw_{version_b}": r.raw_output_b,
                    "target": seen.get((task, r.chat_id, None if pd.isna(r.round) else int(r.round)), {}).get(
                        "target", ""
                    ),
                }
                for r in rows[rows["value_a"] != rows["value_b"]].itertuples()
            ],
        }
        if gold is not None:
            entry["gold"] = _against_gold(
                rows, gold, str(variable), categories, var.scale, version_a, version_b, n_boot, seed
            )
        result["variables"].append(entry)
    return result


def _against_gold(
    rows: pd.DataFrame,
    gold: pd.DataFrame,
    variable: str,
    categories: list[int],
    scale: str,
    va: str,
    vb: str,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    scored = rows.merge(gold[gold["variable"] == variable], on=KEY)
    if scored.empty:
        return {"n": 0}
    ref = scored["value"].astype(int).tolist()
    la, lb = scored["value_a"].astype(int).tolist(), scored["value_b"].astype(int).tolist()
    sa = ag.pair_statistics(ref, la, categories, scale)
    sb = ag.pair_statistics(ref, lb, categories, scale)
    delta_ci = ag.paired_delta_bootstrap(ref, la, lb, scored["chat_id"].tolist(), categories, n_boot, seed)
    return {
        "n": len(scored),
        va: _clean(sa),
        vb: _clean(sb),
        "change": {k: _num(sb[k] - sa[k]) for k in ("percent_agreement", "cohen_kappa", "gwet_ac1")},
        "change_ci95": {k: [_num(lo), _num(hi)] for k, (lo, hi) in delta_ci.items()},
    }


def _gold(path: Path) -> pd.DataFrame:
    gold = read_gold(path)
    return consensus(gold) if gold["annotator"].nunique() > 1 else gold[[*KEY, "value"]]


def _num(value: float) -> float | None:
    return None if value is None or value != value else float(value)


def _clean(stats: dict[str, float]) -> dict[str, float | None]:
    return {k: _num(v) for k, v in stats.items()}
