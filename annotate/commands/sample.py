"""``annotate sample``: the coding file for human coders, its instructions and its sampling plan."""

from __future__ import annotations

import json
from pathlib import Path

from annotate.analysis.sample import CodingFiles, SampleOptions, draw_sample, rubric_text
from annotate.commands import Written
from annotate.prompts.library import PromptLibrary
from annotate.runs.outputs import write_atomic, write_csv
from annotate.runs.reader import read_run


def sample_command(run_dir: Path, out: Path, library: PromptLibrary, options: SampleOptions) -> Written[CodingFiles]:
    """Draw the sample and write the coding file, its coding instructions and the sampling plan beside it."""
    run = read_run(run_dir)
    coding, info = draw_sample(run, library, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(coding, out)
    files = CodingFiles(out, out.with_suffix(".rubric.md"), out.with_suffix(".sample.json"), info)
    write_atomic(files.instructions, rubric_text(library, run.manifest.prompts, set(coding["variable"])))
    write_atomic(files.plan, json.dumps(info, indent=2) + "\n")
    return Written(files, [files.coding, files.instructions, files.plan], coding)
