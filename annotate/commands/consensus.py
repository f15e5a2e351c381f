"""``annotate consensus``: several labellers combined into one run directory."""

from __future__ import annotations

from pathlib import Path

from annotate.analysis.consensus import Consensus, build_consensus
from annotate.commands import Written, unfinished
from annotate.runs.reader import read_runs
from annotate.runs.resume import check_derived_out
from annotate.runs.store import write_run


def consensus_command(run_dirs: list[Path], out: Path, method: str = "majority") -> Written[Consensus]:
    """A run directory that validate, agree, sample, trajectories and estimate read like any other."""
    check_derived_out(out, run_dirs, "consensus")
    runs = read_runs(run_dirs)
    consensus = build_consensus(runs, method)
    paths = write_run(out, consensus.rows, consensus.manifest)
    return Written(consensus, paths, consensus.table(), unfinished(*runs))
