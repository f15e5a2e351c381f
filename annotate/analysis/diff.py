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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from annotate.analysis import statistics as st
from annotate.analysis.excerpts import Excerpts, unit_excerpts
from annotate.analysis.gold import checked_truth
from annotate.analysis.results import (
    DiffResult,
    Flip,
    GoldChange,
    PairStatistics,
    SideDescription,
    VariableDiff,
)
from annotate.errors import PromptError
from annotate.prompts.library import PromptLibrary
from annotate.prompts.rubrics import Variable
from annotate.prompts.template import PromptVersion
from annotate.runs.reader import Run

if TYPE_CHECKING:
    from annotate.ingest.model import Chat
    from annotate.runs.coded import Gold

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
        ("rubric", a.rubric_source, b.rubric_source, a.rubric_path, b.rubric_path),
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


def describe(a: Side, b: Side, gold_path: Path | None = None, title: str | None = None) -> DiffResult:
    """What two sides rating the same variables differ in, before any label: hashes, changelogs, the text diff."""
    shared = shared_variables(a, b)
    if not shared:
        raise PromptError(f"'{a.name}' and '{b.name}' rate no variable in common: nothing to compare")
    if a.name == b.name:
        raise PromptError(f"both sides are '{a.name}': name two versions or two task sets")
    single = len(a.prompts) == len(b.prompts) == 1
    return DiffResult(
        task=title or "task sets",
        sides=[a.name, b.name],
        versions={side.name: side.describe() for side in (a, b)},
        text_diff=text_diff(a.prompts[0], b.prompts[0]) if single else system_diff(a, b),
        gold_path=str(gold_path) if gold_path else None,
    )


def shared_variables(a: Side, b: Side) -> list[str]:
    return [v for pv in a.prompts for v in pv.rubric.variables if b.variable(v) is not None]


def diff_truth(a: Side, b: Side, gold: Gold) -> pd.DataFrame:
    """The gold's reference labels, checked against both sides' scales (bad gold stops a diff before labelling)."""
    return checked_truth(gold, {v: _categories(a, b, v) for v in shared_variables(a, b)})


def compare_runs(
    result: DiffResult,
    a: Side,
    b: Side,
    first: Run,
    second: Run,
    library: PromptLibrary,
    truth: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    chats: list[Chat] | None = None,
) -> DiffResult:
    """The two sides' labels of the same units: transitions, agreement, flips, and (with gold) the change in it.
    ``chats``: the runs' chats, quoted where the sides disagree."""
    both = first.labels.merge(second.labels, on=KEY, suffixes=("_a", "_b"))
    both = both[(both["repeat_a"] == 0) & (both["repeat_b"] == 0)]
    ok = both[(both["status_a"] == "ok") & (both["status_b"] == "ok")].copy()
    seen = unit_excerpts(first.manifest, chats or [], library)
    for variable, rows in ok.groupby("variable", sort=True):
        not_compared = int((both["variable"] == variable).sum() - len(rows))
        result.variables.append(_variable(str(variable), rows, a, b, not_compared, seen, truth, n_boot, seed))
    return result


def _categories(a: Side, b: Side, variable: str) -> list[int]:
    var_a, var_b = a.variable(variable), b.variable(variable)
    return sorted(set(var_a.values if var_a else {}) | set(var_b.values if var_b else {}))


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
