"""``annotate sample``: the coding file for human coders, its instructions and its sampling plan."""

from __future__ import annotations

import json
from pathlib import Path

from annotate.analysis.sample import CodingFiles, SampleOptions, draw_sample, rubric_text
from annotate.commands import Written, unfinished
from annotate.prompts.library import PromptLibrary
from annotate.runs.outputs import write_atomic, write_csv
from annotate.runs.reader import read_run
from annotate.runs.resume import check_coding_out, move_aside


def sample_command(
    run_dir: Path,
    out: Path,
    library: PromptLibrary,
    options: SampleOptions,
    force: bool = False,
    transcripts: list[Path] | None = None,
) -> Written[CodingFiles]:
    """Draw the sample and write the coding file, its coding instructions and the sampling plan beside it; an
    existing coding file is never replaced silently (see ``check_coding_out``)."""
    check_coding_out(out, force)
    run = read_run(run_dir)
    coding, info = draw_sample(run, run.chats(transcripts), library, options)
    warnings = unfinished(run)
    if warnings:
        info["incomplete"] = warnings[0]  # the plan says the population was a partial run
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        info["replaced"] = str(move_aside(out))
    write_csv(coding, out)
    files = CodingFiles(out, out.with_suffix(".rubric.md"), out.with_suffix(".sample.json"), info)
    write_atomic(files.instructions, rubric_text(library, run.manifest.prompts, set(coding["variable"])))
    write_atomic(files.plan, json.dumps(info, indent=2) + "\n")
    return Written(files, [files.coding, files.instructions, files.plan], coding, warnings)
