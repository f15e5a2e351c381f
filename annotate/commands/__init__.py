"""One function per command after ``run``: load each run once, call the pure analysis, write through report/.

``annotate run`` is the labelling pipeline itself (labelling/pipeline.py). Everything here returns a
:class:`Written`: the typed result the terminal prints, and the files written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import pandas as pd

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Written(Generic[ResultT]):
    result: ResultT
    paths: list[Path]
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The rows of the command's CSV, when it has one."""
