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
from typing import TYPE_CHECKING

import pandas as pd

from annotate.analysis import statistics as st
from annotate.analysis.gold import read_truth, record_development_gold
from annotate.analysis.results import (
    DiffResult,
    Flip,
    GoldChange,
    PairStatistics,
    SideDescription,
    SideRun,
    VariableDiff,
)
from annotate.config import RunConfig
from annotate.errors import PromptError
from annotate.labelling.excerpts import Excerpts, unit_excerpts
from annotate.labelling.pipeline import Progress, run
from annotate.prompts.library import PromptLibrary
from annotate.prompts.rubrics import Variable
from annotate.prompts.template import PromptVersion
from annotate.runs.reader import read_run

if TYPE_CHECKING:
    from annotate.engines import Backend  # a started engine passes through to the pipeline untouched

KEY = ["chat_id", "round", "variable"]


@dataclass(frozen=True)
class Side:
    """One side of a diff: the prompts that label it, and the name its runs and columns carry."""

    name: str
    prompts: tuple[PromptVersion, ...]

    def variable(self, name: str) -> Variable | None:
        return next((pv.rubric.variables[name] for pv in self.prompts if name in pv.rubric.variables), None)

    def describe(self) -> SideDescription:
        if len(self.prompts) == 1:
            (pv,) = self.prompts
            return SideDescription(
                hash=pv.content_hash, parent=pv.meta.parent, changelog=pv.meta.changelog, rubric=pv.rubric_path.name
            )
        return SideDescription(
            hash=", ".join(pv.content_hash for pv in self.prompts),
            parent=None,
            changelog="tasks " + ", ".join(f"{pv.task} {pv.version}" for pv in self.prompts),
            rubric=", ".join(pv.rubric_path.name for pv in self.prompts),
        )


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


def versions(library: PromptLibrary, task: str, version_a: str, version_b: str) -> tuple[Side, Side]:
    """The two sides of ``annotate diff TASK VERSION_A VERSION_B``."""
    return Side(version_a, (library.get(task, version_a),)), Side(version_b, (library.get(task, version_b),))


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
) -> DiffResult:
    """Two versions of one task. ``backend`` is an engine already started (tests pass a scripted one)."""
    a, b = versions(library, task, version_a, version_b)
    return compare(library, a, b, base, gold_path, n_boot, seed, progress, backend, title=task)


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
) -> DiffResult:
    """Two sides that rate the same variables; with ``base`` (inputs and engine), both label the same units."""
    shared = [v for pv in a.prompts for v in pv.rubric.variables if b.variable(v) is not None]
    if not shared:
        raise PromptError(f"'{a.name}' and '{b.name}' rate no variable in common: nothing to compare")
    if a.name == b.name:
        raise PromptError(f"both sides are '{a.name}': name two versions or two task sets")
    single = len(a.prompts) == len(b.prompts) == 1
    result = DiffResult(
        task=title or "task sets",
        sides=[a.name, b.name],
        versions={side.name: side.describe() for side in (a, b)},
        text_diff=text_diff(a.prompts[0], b.prompts[0]) if single else system_diff(a, b),
        gold_path=str(gold_path) if gold_path else None,
    )
    if base is None:
        return result
    scales = {v: _categories(a, b, v) for v in shared}
    truth = read_truth(gold_path, scales) if gold_path else None  # bad gold stops the diff before any labelling
    if gold_path:
        result.gold_sha256 = record_development_gold(gold_path, f"diff {a.name} vs {b.name} in {base.out}")
    for side in (a, b):
        result.runs[side.name] = _label_side(side, base, progress, backend)
    run = read_run(Path(result.runs[a.name].dir))
    first, manifest = run.labels, run.manifest
    run = read_run(Path(result.runs[b.name].dir))
    second, _ = run.labels, run.manifest
    both = first.merge(second, on=KEY, suffixes=("_a", "_b"))
    both = both[(both["repeat_a"] == 0) & (both["repeat_b"] == 0)]
    ok = both[(both["status_a"] == "ok") & (both["status_b"] == "ok")].copy()
    seen = unit_excerpts(manifest, None, library)
    for variable, rows in ok.groupby("variable", sort=True):
        not_compared = int((both["variable"] == variable).sum() - len(rows))
        result.variables.append(_variable(str(variable), rows, a, b, not_compared, seen, truth, n_boot, seed))
    return result


def _categories(a: Side, b: Side, variable: str) -> list[int]:
    var_a, var_b = a.variable(variable), b.variable(variable)
    return sorted(set(var_a.values if var_a else {}) | set(var_b.values if var_b else {}))


def _label_side(side: Side, base: RunConfig, progress: Progress | None, backend: Backend | None) -> SideRun:
    config = replace(
        base,
        tasks=[pv.task for pv in side.prompts],
        prompt_versions={pv.task: pv.version for pv in side.prompts},
        out=base.out / "runs" / side.name,
    )
    summary = run(config, backend=backend, progress=progress)
    return SideRun(
        dir=str(config.out),
        model_calls=summary.model_calls,
        cache_hits=summary.cache_hits,
        prompt_tokens=summary.prompt_tokens,
        evaluated_prompt_tokens=summary.prompt_tokens - summary.cached_prompt_tokens,
        completion_tokens=summary.completion_tokens,
        seconds=round(summary.seconds, 1),
    )


def _variable(
    variable: str,
    rows: pd.DataFrame,
    a: Side,
    b: Side,
    not_compared: int,
    seen: Excerpts,
    truth: pd.DataFrame | None,
    n_boot: int,
    seed: int,
) -> VariableDiff:
    var_a, var_b = a.variable(variable), b.variable(variable)
    assert var_a is not None and var_b is not None  # the merge keeps shared variables only
    categories = _categories(a, b, variable)
    la, lb = rows["value_a"].astype(int).tolist(), rows["value_b"].astype(int).tolist()
    flipped = []
    for r in rows[rows["value_a"] != rows["value_b"]].itertuples():
        round_number = None if pd.isna(r.round) else int(r.round)
        flipped.append(
            Flip(
                chat_id=str(r.chat_id),
                round=round_number,
                values={a.name: int(r.value_a), b.name: int(r.value_b)},
                raw={a.name: str(r.raw_output_a), b.name: str(r.raw_output_b)},
                target=seen.get((str(r.task_a), str(r.chat_id), round_number), {}).get("target", ""),
            )
        )
    return VariableDiff(
        variable=variable,
        scale=var_a.scale,
        categories=categories,
        n=len(rows),
        not_compared=not_compared,
        between_versions=PairStatistics.of(st.pair_statistics(la, lb, categories, var_a.scale)),
        transitions=st.confusion_counts(la, lb, categories).tolist(),
        flipped=flipped,
        gold=None
        if truth is None
        else _against_gold(rows, truth, variable, categories, var_a.scale, a, b, n_boot, seed),
    )


def _against_gold(
    rows: pd.DataFrame,
    truth: pd.DataFrame,
    variable: str,
    categories: list[int],
    scale: str,
    a: Side,
    b: Side,
    n_boot: int,
    seed: int,
) -> GoldChange:
    scored = rows.merge(truth[truth["variable"] == variable], on=KEY)
    if scored.empty:
        return GoldChange(n=0)
    ref = scored["value"].astype(int).tolist()
    la, lb = scored["value_a"].astype(int).tolist(), scored["value_b"].astype(int).tolist()
    sa = st.pair_statistics(ref, la, categories, scale)
    sb = st.pair_statistics(ref, lb, categories, scale)
    return GoldChange(
        n=len(scored),
        by_side={a.name: PairStatistics.of(sa), b.name: PairStatistics.of(sb)},
        change={k: sb[k] - sa[k] for k in ("percent_agreement", "cohen_kappa", "gwet_ac1")},
        change_ci95=st.paired_delta_bootstrap(ref, la, lb, scored["chat_id"].tolist(), categories, n_boot, seed),
    )
