"""``annotate consensus``: several labellers (runs, and the repeats inside them) combined into one run.

Sources are aligned on (chat_id, round, variable). Per unit: the majority value, the share of sources
that gave it, a ``disputed`` flag (they did not all agree), and, with three or more sources, a
Dawid-Skene estimate, which weighs each source by how reliable it looks on the units they share.
When the sources carry label probabilities, the consensus carries their mean distribution.

Ties in the majority vote: the tied value with the larger mean probability when the sources have
probabilities; otherwise the tied value nearest the median of all the unit's votes; if still tied, the
lower value.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotate.analysis.dawid_skene import dawid_skene
from annotate.errors import RunStoreError
from annotate.runs.manifest import InputFile, PromptEntry, RunManifest, RunOptions
from annotate.runs.reader import Run
from annotate.runs.rows import ConsensusRow
from annotate.vocabulary import ConsensusMethod, values

METHODS = values(ConsensusMethod)
TIE_RULE = (
    "a tie goes to the tied value with the larger mean probability when the sources have probabilities, "
    "otherwise to the tied value nearest the median of all votes, then to the lower value"
)


@dataclass(frozen=True)
class Source:
    name: str
    dir: Path
    repeat: int
    labels: pd.DataFrame
    """The source's label rows of this repeat, failures included (skipped input records left out)."""
    manifest: RunManifest

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": self.name,
            "dir": str(self.dir),
            "repeat": self.repeat,
            "run_id": m.run_id,
            "backend": m.backend,
            "model": m.model,
            "sampling": m.sampling,
            "prompts": {task: entry.model_dump() for task, entry in m.prompts.items()},
        }


def load_sources(runs: list[Run]) -> list[Source]:
    """One source per run and repeat; names are the run folders' names (with ``#repeat`` when a run has several)."""
    sources = []
    for run in runs:
        labels = run.labels[run.labels["status"] != "skipped"]
        repeats = sorted(int(r) for r in labels["repeat"].dropna().unique())
        for repeat in repeats:
            name = run.path.name + (f"#{repeat}" if len(repeats) > 1 else "")
            sources.append(Source(name, run.path, repeat, labels[labels["repeat"] == repeat], run.manifest))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise RunStoreError(
            f"two sources are both named {Counter(names).most_common(1)[0][0]}: give the runs distinct folder names"
        )
    if len(sources) < 2:
        raise RunStoreError("a consensus needs two or more sources: several runs, or one run made with --repeats")
    return sources


def votes_table(sources: list[Source]) -> pd.DataFrame:
    """One row per (unit, source) with the source's value and distribution."""
    keys = ["chat_id", "round", "variable"]
    columns = [*keys, "task", "value", "probs", "prompt_version", "prompt_hash", "truncation"]
    frames = [s.labels[s.labels["status"] == "ok"][columns].assign(source=s.name) for s in sources]
    votes = pd.concat(frames, ignore_index=True)
    votes["value"] = votes["value"].astype(int)
    return votes


@dataclass(frozen=True)
class Consensus:
    rows: list[ConsensusRow]
    manifest: RunManifest

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([row.model_dump() for row in self.rows], columns=list(ConsensusRow.model_fields))


def build_consensus(runs: list[Run], method: str = "majority") -> Consensus:
    """Combine the runs into consensus rows and their manifest; see the module docstring for the rules."""
    if method not in METHODS:
        raise RunStoreError(f"unknown consensus method '{method}' (known: {', '.join(METHODS)})")
    sources = load_sources(runs)
    if method == "dawid-skene" and len(sources) < 3:
        raise RunStoreError(f"Dawid-Skene needs three or more sources; these runs give {len(sources)}")
    run_id = "consensus-" + pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    votes = votes_table(sources)
    rows = consensus_rows(votes, sources, method, run_id) + _unlabelled(sources, votes, run_id)
    return Consensus(rows, _manifest(sources, rows, method, run_id))


def _unlabelled(sources: list[Source], votes: pd.DataFrame, run_id: str) -> list[ConsensusRow]:
    """Units every source failed on: kept as failure rows, so nothing disappears."""
    keys = ["chat_id", "round", "variable"]
    failed = pd.concat([s.labels[s.labels["status"] != "ok"].assign(source=s.name) for s in sources])
    failed = failed.merge(votes[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    failed = failed[failed["_merge"] == "left_only"]
    rows = []
    for _, unit in failed.groupby(keys, dropna=False, sort=True):
        first = unit.iloc[0]
        statuses = ", ".join(f"{src}: {st}" for src, st in zip(unit["source"], unit["status"], strict=True))
        row = _provenance(unit, run_id) | {"status": first["status"], "value": None, "probs": None}
        row |= {"error": f"no source gave an ok label ({statuses})", "sampling": first["sampling"]}
        row |= {"model": first["model"], "raw_output": first["raw_output"]}
        rows.append(ConsensusRow(**row, sources=0, share=None, disputed=False, votes="{}"))
    return rows


def _manifest(sources: list[Source], rows: list[ConsensusRow], method: str, run_id: str) -> RunManifest:
    prompts: dict[str, PromptEntry] = {}
    inputs: list[InputFile] = []
    for s in sources:
        for task, entry in s.manifest.prompts.items():
            if task not in prompts:  # the first source's version is the one excerpts and rubrics are read from
                prompts[task] = entry.model_copy()
            elif (entry.version, entry.hash) != (prompts[task].version, prompts[task].hash):
                others = list(getattr(prompts[task], "other_versions", None) or [])  # the other sources' versions
                if f"{entry.version} {entry.hash}" not in others:
                    prompts[task] = prompts[task].model_copy(
                        update={"other_versions": [*others, f"{entry.version} {entry.hash}"]}
                    )
        inputs += [i for i in s.manifest.inputs if i not in inputs]
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        by_task = counts.setdefault(row.task, {})
        by_task[row.status] = by_task.get(row.status, 0) + 1
    return RunManifest(
        run_id=run_id,
        status="complete",
        kind="consensus",
        method=method,
        tie_rule=TIE_RULE,
        backend="consensus",
        model={"name": f"consensus of {len(sources)} sources", "engine": "consensus"},
        sources=[s.describe() for s in sources],
        prompts=prompts,
        inputs=inputs,
        options=sources[0].manifest.options if sources else RunOptions(),
        coverage=coverage(sources, rows),
        summary={"counts": counts},
    )


def coverage(sources: list[Source], rows: list[ConsensusRow]) -> dict[str, Any]:
    """Per variable: units, how many every source labelled (ok), how many only some, and each source's count."""
    n = len(sources)
    found: dict[str, Any] = {}
    table = pd.DataFrame({"variable": [r.variable for r in rows], "sources": [r.sources for r in rows]})
    for variable, unit_rows in table.groupby("variable", sort=True):
        counted = unit_rows["sources"]
        found[str(variable)] = {
            "units": len(unit_rows),
            "by_every_source": int((counted == n).sum()),
            "by_some_sources": int(((counted > 0) & (counted < n)).sum()),
            "by_no_source": int((counted == 0).sum()),
            "per_source": {
                s.name: int(((s.labels["variable"] == variable) & (s.labels["status"] == "ok")).sum()) for s in sources
            },
        }
    return found


def decide(values: list[int], probs: list[dict[int, float]] | None) -> int:
    """The majority value of one unit, with the documented tie rule."""
    counts = Counter(values)
    top = max(counts.values())
    tied = sorted(v for v, c in counts.items() if c == top)
    if len(tied) == 1:
        return tied[0]
    if probs:
        mean = {v: float(np.mean([p.get(v, 0.0) for p in probs])) for v in tied}
        best = max(mean.values())
        tied = [v for v in tied if mean[v] == best]
    median = float(np.median(values))
    return min(tied, key=lambda v: (abs(v - median), v))


def mean_distribution(probs: list[dict[int, float]]) -> dict[int, float]:
    values = sorted({v for p in probs for v in p})
    return {v: float(np.mean([p.get(v, 0.0) for p in probs])) for v in values}


def consensus_rows(votes: pd.DataFrame, sources: list[Source], method: str, run_id: str) -> list[ConsensusRow]:
    """The consensus label rows, one per unit that any source labelled."""
    names = [s.name for s in sources]
    estimates = _dawid_skene_by_variable(votes) if len(names) >= 3 else {}
    rows = []
    for (chat_id, round_number, variable), unit in votes.groupby(
        ["chat_id", "round", "variable"], dropna=False, sort=True
    ):
        values = unit["value"].tolist()
        parsed = [_parse(p) for p in unit["probs"]]
        probs = [p for p in parsed if p is not None]
        complete = len(probs) == len(parsed) and bool(probs)
        majority = decide(values, probs if complete else None)
        ds = estimates.get((chat_id, round_number, variable))
        value = ds[0] if method == "dawid-skene" and ds else majority
        share = values.count(value) / len(values)
        distribution = mean_distribution(probs) if complete else None
        rows.append(
            ConsensusRow(
                **_provenance(unit, run_id),
                **_label(value, distribution),
                status="ok",
                error="",
                model=f"consensus of {len(names)} sources",
                sampling=json.dumps({"method": method, "sources": names}),
                raw_output="",
                sources=len(values),
                share=share,
                disputed=len(set(values)) > 1,
                majority=majority,
                dawid_skene=ds[0] if ds else None,
                dawid_skene_probability=ds[1] if ds else None,
                votes=json.dumps(dict(zip(unit["source"], values, strict=True))),
            )
        )
    return rows


def _label(value: int, distribution: dict[int, float] | None) -> dict[str, Any]:
    """The value and, when every source had probabilities, their mean distribution."""
    if not distribution:
        return {"value": value, "probs": None, "confidence": None, "expected": None}
    return {
        "value": value,
        "probs": json.dumps({str(v): round(p, 6) for v, p in distribution.items()}),
        "confidence": round(distribution.get(value, 0.0), 6),
        "expected": round(sum(v * p for v, p in distribution.items()), 6),
    }


def _prompt_pairs(unit: pd.DataFrame) -> dict[str, str]:
    """The prompts behind a unit's votes, each version beside its own hash (``v3|zh-v1`` with ``h3|hzh``)."""
    pairs = sorted(set(zip(unit["prompt_version"], unit["prompt_hash"], strict=True)))
    return {"prompt_version": "|".join(v for v, _ in pairs), "prompt_hash": "|".join(h for _, h in pairs)}


def _provenance(unit: pd.DataFrame, run_id: str) -> dict[str, Any]:
    """What every consensus row of a unit carries: the unit, the prompts behind its votes, the consensus run."""
    first = unit.iloc[0]
    return {
        "chat_id": str(first["chat_id"]),
        "round": None if pd.isna(first["round"]) else int(first["round"]),
        "task": str(first["task"]),
        "variable": str(first["variable"]),
        "repeat": 0,
        **_prompt_pairs(unit),
        "backend": "consensus",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_ms": 0.0,
        "attempts": 0,
        "cached": False,
        "truncation": "; ".join(sorted({t for t in unit["truncation"] if isinstance(t, str) and t})),
        "run_id": run_id,
    }


def _parse(probs: Any) -> dict[int, float] | None:
    if not isinstance(probs, str) or not probs:
        return None
    return {int(k): float(v) for k, v in json.loads(probs).items()}


def _dawid_skene_by_variable(votes: pd.DataFrame) -> dict[tuple[Any, Any, str], tuple[int, float]]:
    """(chat_id, round, variable) -> (Dawid-Skene value, its posterior probability), fitted per variable."""
    found = {}
    for variable, rows in votes.groupby("variable", sort=True):
        units = rows[["chat_id", "round"]].drop_duplicates().reset_index(drop=True)
        index = {(c, r): i for i, (c, r) in enumerate(zip(units["chat_id"], units["round"], strict=True))}
        item = np.array([index[(c, r)] for c, r in zip(rows["chat_id"], rows["round"], strict=True)])
        sources = sorted(set(rows["source"]))
        worker = np.array([sources.index(s) for s in rows["source"]])
        values, posterior = dawid_skene(item, worker, rows["value"].to_numpy(dtype=int))
        for (c, r), i in index.items():
            found[(c, r, str(variable))] = (int(values[i]), float(posterior[i]))
    return found
