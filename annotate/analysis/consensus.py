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
from annotate.runs.outputs import csv_text, write_all_atomic
from annotate.runs.reader import check_distinct_runs, check_same_transcripts, read_run
from annotate.runs.rows import LABEL_COLUMNS
from annotate.vocabulary import ConsensusMethod, values

METHODS = values(ConsensusMethod)
TIE_RULE = (
    "a tie goes to the tied value with the larger mean probability when the sources have probabilities, "
    "otherwise to the tied value nearest the median of all votes, then to the lower value"
)
CONSENSUS_COLUMNS = ["sources", "share", "disputed", "majority", "dawid_skene", "dawid_skene_probability", "votes"]
"""Columns a consensus run's labels have besides the label columns."""


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


def load_sources(run_dirs: list[Path]) -> list[Source]:
    """One source per run and repeat; names are the run folders' names (with ``#repeat`` when a run has several)."""
    sources, runs = [], []
    for run_dir in run_dirs:
        run = read_run(run_dir)
        labels, manifest = run.labels, run.manifest
        runs.append((run_dir, manifest))
        labels = labels[labels["status"] != "skipped"]
        repeats = sorted(int(r) for r in labels["repeat"].dropna().unique())
        for repeat in repeats:
            name = run_dir.name + (f"#{repeat}" if len(repeats) > 1 else "")
            sources.append(Source(name, run_dir, repeat, labels[labels["repeat"] == repeat], manifest))
    check_distinct_runs(runs)
    check_same_transcripts(runs)
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
    rows: pd.DataFrame
    manifest: RunManifest
    paths: list[Path]


def build_consensus(run_dirs: list[Path], out: Path, method: str = "majority") -> Consensus:
    """Combine the runs into a consensus run directory at ``out``; see the module docstring for the rules."""
    if method not in METHODS:
        raise RunStoreError(f"unknown consensus method '{method}' (known: {', '.join(METHODS)})")
    if (out / "journal.jsonl").exists():
        raise RunStoreError(f"{out} holds a labelling run; write the consensus to a new --out directory")
    if any(out.resolve() == run_dir.resolve() for run_dir in run_dirs):
        raise RunStoreError(f"{out} is one of the consensus's own sources; write it to a new --out directory")
    sources = load_sources(run_dirs)
    if method == "dawid-skene" and len(sources) < 3:
        raise RunStoreError(f"Dawid-Skene needs three or more sources; these runs give {len(sources)}")
    run_id = "consensus-" + pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    votes = votes_table(sources)
    parts = [consensus_rows(votes, sources, method, run_id), _unlabelled(sources, votes, run_id)]
    rows = pd.concat([part for part in parts if len(part)], ignore_index=True)
    manifest = _manifest(sources, rows, method, run_id)
    return Consensus(rows, manifest, write_consensus(out, rows, manifest))


def _unlabelled(sources: list[Source], votes: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Units every source failed on: kept as failure rows, so nothing disappears."""
    keys = ["chat_id", "round", "variable"]
    failed = pd.concat([s.labels[s.labels["status"] != "ok"].assign(source=s.name) for s in sources])
    failed = failed.merge(votes[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    failed = failed[failed["_merge"] == "left_only"]
    rows = []
    for _, unit in failed.groupby(keys, dropna=False, sort=True):
        first = unit.iloc[0]
        statuses = ", ".join(f"{src}: {st}" for src, st in zip(unit["source"], unit["status"], strict=True))
        row = {c: first[c] for c in LABEL_COLUMNS if c in first}
        row |= {"value": None, "probs": None, "confidence": None, "expected": None, "run_id": run_id}
        row |= {"error": f"no source gave an ok label ({statuses})", "backend": "consensus", "repeat": 0}
        rows.append(row | {"sources": 0, "share": None, "disputed": False, "votes": "{}"})
    return pd.DataFrame(rows, columns=[*LABEL_COLUMNS, *CONSENSUS_COLUMNS])


def _manifest(sources: list[Source], rows: pd.DataFrame, method: str, run_id: str) -> RunManifest:
    prompts: dict[str, PromptEntry] = {}
    inputs: list[InputFile] = []
    for s in sources:
        prompts = {**s.manifest.prompts, **prompts}  # the first source's version wins per task
        inputs += [i for i in s.manifest.inputs if i not in inputs]
    counts: dict[str, dict[str, int]] = {}
    for (task, status), n in rows.groupby(["task", "status"]).size().items():
        counts.setdefault(str(task), {})[str(status)] = int(n)
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


def coverage(sources: list[Source], rows: pd.DataFrame) -> dict[str, Any]:
    """Per variable: units, how many every source labelled (ok), how many only some, and each source's count."""
    n = len(sources)
    found: dict[str, Any] = {}
    for variable, unit_rows in rows.groupby("variable", sort=True):
        counted = pd.to_numeric(unit_rows["sources"]).fillna(0).astype(int)
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


def consensus_rows(votes: pd.DataFrame, sources: list[Source], method: str, run_id: str) -> pd.DataFrame:
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
            _row(unit, variable, value, distribution, run_id, names, method)
            | {
                "sources": len(values),
                "share": share,
                "disputed": len(set(values)) > 1,
                "majority": majority,
                "dawid_skene": ds[0] if ds else None,
                "dawid_skene_probability": ds[1] if ds else None,
                "votes": json.dumps(dict(zip(unit["source"], values, strict=True))),
            }
        )
    return pd.DataFrame(rows, columns=[*LABEL_COLUMNS, *CONSENSUS_COLUMNS])


def _row(
    unit: pd.DataFrame,
    variable: str,
    value: int,
    distribution: dict[int, float] | None,
    run_id: str,
    names: list[str],
    method: str,
) -> dict[str, Any]:
    first = unit.iloc[0]
    expected = sum(v * p for v, p in distribution.items()) if distribution else None
    return {
        "chat_id": first["chat_id"],
        "round": first["round"],
        "task": first["task"],
        "variable": variable,
        "value": value,
        "probs": json.dumps({str(v): round(p, 6) for v, p in distribution.items()}) if distribution else None,
        "confidence": round(distribution.get(value, 0.0), 6) if distribution else None,
        "expected": round(expected, 6) if expected is not None else None,
        "status": "ok",
        "error": "",
        "repeat": 0,
        "prompt_version": "|".join(sorted(set(unit["prompt_version"]))),
        "prompt_hash": "|".join(sorted(set(unit["prompt_hash"]))),
        "model": f"consensus of {len(names)} sources",
        "backend": "consensus",
        "sampling": json.dumps({"method": method, "sources": names}),
        "raw_output": "",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_ms": 0.0,
        "attempts": 0,
        "cached": False,
        "truncation": "; ".join(sorted({t for t in unit["truncation"] if t})),
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


def write_consensus(out: Path, rows: pd.DataFrame, manifest: RunManifest) -> list[Path]:
    """A run directory that validate, agree, sample, trajectories and estimate read like any other."""
    out.mkdir(parents=True, exist_ok=True)
    frame = rows.copy()
    for column in ("round", "value", "repeat", "majority", "dawid_skene"):
        frame[column] = frame[column].astype("Int64")
    write_all_atomic(
        {
            out / "labels.parquet": frame.to_parquet(index=False),
            out / "labels.csv": csv_text(frame),
            out / "manifest.json": manifest.as_json(),
        }
    )
    return [out / "labels.parquet", out / "labels.csv", out / "manifest.json"]
