"""``annotate diff``: what changed between two prompts, and what it did to the labels.

Two forms: two versions of one task (``diff empathy v1 v2``), or two sets of tasks that rate the same
variables (``diff empathy,information_seeking,solution_provision,proactivity agent_behaviour``: one
request per construct against one for all four). The text diff covers template, metadata with
few-shot examples, and rubric (for task sets: the system messages). With transcripts, both sides
label the same units (reusing the cache), and the result shows the label transition matrix,
agreement between the sides, every flipped unit with both outputs, and, with gold labels, the change
in agreement with a paired chat bootstrap interval.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from annotate import agreement as ag
from annotate.backends import Backend
from annotate.errors import PromptError
from annotate.gold import consensus, read_gold
from annotate.pipeline import Progress, RunConfig, run
from annotate.prompts import PromptLibrary, PromptVersion
from annotate.schema import Variable
from annotate.store import load_run
from annotate.validation import unit_excerpts

KEY = ["chat_id", "round", "variable"]


@dataclass(frozen=True)
class Side:
    """One side of a diff: the prompts that label it, and the name its runs and columns carry."""

    name: str
    prompts: tuple[PromptVersion, ...]

    def variable(self, name: str) -> Variable | None:
        return next((pv.rubric.variables[name] for pv in self.prompts if name in pv.rubric.variables), None)

    def describe(self) -> dict[str, Any]:
        if len(self.prompts) == 1:
            (pv,) = self.prompts
            return {
                "hash": pv.content_hash,
                "parent": pv.meta.parent,
                "changelog": pv.meta.changelog,
                "rubric": pv.rubric_path.name,
            }
        return {
            "hash": ", ".join(pv.content_hash for pv in self.prompts),
            "parent": None,
            "changelog": "tasks " + ", ".join(f"{pv.task} {pv.version}" for pv in self.prompts),
            "rubric": ", ".join(pv.rubric_path.name for pv in self.prompts),
        }


def task_set(library: PromptLibrary, spec: str) -> Side:
    """A side from ``task[=version],...`` (newest version where none is named)."""
    prompts = []
    for item in (part.strip() for part in spec.split(",")):
        task, _, version = item.partition("=")
        prompts.append(library.get(task, version or None))
    return Side(spec.replace(",", "+").replace("=", "-"), tuple(prompts))


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


def system_diff(a: Side, b: Side) -> str:
    """Two task sets: the unified diff of their system messages (instructions and rubrics)."""

    def text(side: Side) -> list[str]:
        return [line for pv in side.prompts for line in (pv.static_messages[0]["content"] + "\n").splitlines(True)]

    lines = list(difflib.unified_diff(text(a), text(b), fromfile=a.name, tofile=b.name))
    return "### system messages: " + ("no change\n" if not lines else f"{len(lines)} diff lines\n" + "".join(lines))


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
    """Two versions of one task. ``backend`` is an engine already started (tests pass a scripted one)."""
    a, b = library.get(task, version_a), library.get(task, version_b)
    sides = Side(version_a, (a,)), Side(version_b, (b,))
    return compare(library, *sides, base, gold_path, n_boot, seed, progress, backend, title=task)


def compare(
    library: PromptLibrary,
    a: Side,
    b: Side,
    base: RunConfig | None,
    gold_path: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
    backend: Backend | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Two sides that rate the same variables; by default ``base`` names the engine."""
    shared = [v for pv in a.prompts for v in pv.rubric.variables if b.variable(v) is not None]
    if not shared:
        raise PromptError(f"'{a.name}' and '{b.name}' rate no variable in common: nothing to compare")
    if a.name == b.name:
        raise PromptError(f"both sides are '{a.name}': name two versions or two task sets")
    single = len(a.prompts) == len(b.prompts) == 1
    result: dict[str, Any] = {
        "task": title or "task sets",
        "versions": {side.name: side.describe() for side in (a, b)},
        "text_diff": text_diff(a.prompts[0], b.prompts[0]) if single else system_diff(a, b),
    }
    if base is None:
        return result
    runs: dict[str, dict[str, Any]] = {}
    for side in (a, b):
        config = replace(
            base,
            tasks=[pv.task for pv in side.prompts],
            prompt_versions={pv.task: pv.version for pv in side.prompts},
            out=base.out / "runs" / side.name,
        )
        summary = run(config, backend=backend, progress=progress)
        runs[side.name] = {
            "dir": str(config.out),
            "model_calls": summary.model_calls,
            "cache_hits": summary.cache_hits,
            "prompt_tokens": summary.prompt_tokens,
            "evaluated_prompt_tokens": summary.prompt_tokens - summary.cached_prompt_tokens,
            "completion_tokens": summary.completion_tokens,
            "seconds": round(summary.seconds, 1),
        }
    result["runs"] = runs
    first, manifest = load_run(Path(runs[a.name]["dir"]))
    second, _ = load_run(Path(runs[b.name]["dir"]))
    seen = unit_excerpts(manifest, None, library)
    both = first.merge(second, on=KEY, suffixes=("_a", "_b"))
    both = both[(both["repeat_a"] == 0) & (both["repeat_b"] == 0)]
    ok = both[(both["status_a"] == "ok") & (both["status_b"] == "ok")].copy()
    gold = _gold(gold_path) if gold_path else None
    result["variables"] = []
    for variable, rows in ok.groupby("variable", sort=True):
        var_a, var_b = a.variable(str(variable)), b.variable(str(variable))
        assert var_a is not None and var_b is not None  # the merge keeps shared variables only
        categories = sorted(set(var_a.values) | set(var_b.values))
        la, lb = rows["value_a"].astype(int).tolist(), rows["value_b"].astype(int).tolist()
        entry: dict[str, Any] = {
            "variable": variable,
            "scale": var_a.scale,
            "categories": categories,
            "n": len(rows),
            "not_compared": int((both["variable"] == variable).sum() - len(rows)),
            "between_versions": _clean(ag.pair_statistics(la, lb, categories, var_a.scale)),
            "transitions": {"rows": a.name, "columns": b.name, "matrix": ag.confusion(la, lb, categories)},
            "flipped": [
                {
                    "chat_id": r.chat_id,
                    "round": None if pd.isna(r.round) else int(r.round),
                    a.name: int(r.value_a),
                    b.name: int(r.value_b),
                    f"raw_{a.name}": r.raw_output_a,
                    f"raw_{b.name}": r.raw_output_b,
                    "target": seen.get((r.task_a, r.chat_id, None if pd.isna(r.round) else int(r.round)), {}).get(
                        "target", ""
                    ),
                }
                for r in rows[rows["value_a"] != rows["value_b"]].itertuples()
            ],
        }
        if gold is not None:
            entry["gold"] = _against_gold(
                rows, gold, str(variable), categories, var_a.scale, a.name, b.name, n_boot, seed
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
