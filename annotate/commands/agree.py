"""``annotate agree``: the LLM against itself (repeats) or across runs."""

from __future__ import annotations

from pathlib import Path

from annotate.analysis.agree import agree
from annotate.analysis.results import AgreementResult
from annotate.commands import Written, unfinished
from annotate.prompts.library import PromptLibrary
from annotate.report.agreement import agree_table, write_agreement
from annotate.runs.reader import incomplete_note, read_runs


def agree_command(
    run_dirs: list[Path],
    out: Path,
    library: PromptLibrary,
    repeat: int = 0,
    n_boot: int = 1000,
    seed: int = 0,
    label: str = "chosen",
) -> Written[AgreementResult]:
    """One run: across its repeats; several runs: pairwise and all together."""
    runs = read_runs(run_dirs)
    result = agree(runs, library, repeat, n_boot, seed, label)
    for described, run in zip(result.runs, runs, strict=True):
        described.incomplete = incomplete_note(run)
    table = agree_table(result)
    return Written(result, write_agreement(out, result, table), table, unfinished(*runs))
