"""One function per command after ``run``: load each run once, call the pure analysis, write through report/.

``annotate run`` is the labelling pipeline itself (labelling/pipeline.py). Everything here returns a
:class:`Written`: the typed result the terminal prints, and the files written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import pandas as pd

from annotate.runs.reader import Run, incomplete_note

ResultT = TypeVar("ResultT")


def unfinished(*runs: Run) -> list[str]:
    """A line for each run read that did not finish: the commands say it before any result."""
    return [note for run in runs if (note := incomplete_note(run))]


@dataclass(frozen=True)
class Written(Generic[ResultT]):
    result: ResultT
    paths: list[Path]
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The rows of the command's CSV, when it has one."""
    warnings: list[str] = field(default_factory=list)
    """What the terminal says before the result (a run that did not finish)."""
