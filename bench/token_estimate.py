"""How far the context fit's token estimate sits above the real count, on a finished run.

For every unit of a run (repeat 0), the prompt is rendered again as the run sent it and the estimate the context
fit uses (annotate/prompts/context.py ``prompt_tokens`` without an engine counter) is set against the prompt
tokens the engine reported for that unit. Prints the ratio's minimum, median and maximum: the minimum must stay
above 1 (the estimate is built never to fall below the real count).

Run: .venv/bin/python bench/token_estimate.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from annotate.prompts.context import prompt_tokens
from annotate.prompts.library import PromptLibrary
from annotate.prompts.units import units_for
from annotate.runs.reader import read_run

ROOT = Path(__file__).resolve().parent.parent


def ratios(run_dir: Path, library: PromptLibrary) -> pd.Series:
    run = read_run(run_dir)
    labels = run.labels[run.labels["repeat"] == 0].drop_duplicates(["chat_id", "round", "task"])
    reported = {
        (r.task, r.chat_id, None if pd.isna(r.round) else int(r.round)): r.prompt_tokens for r in labels.itertuples()
    }
    found = []
    for task, entry in run.manifest.prompts.items():
        pv = library.get(task, entry.version)
        for chat in run.chats():
            for unit in units_for(chat, task, pv.rubric.unit, run.manifest.options.max_chars):
                real = reported.get((task, unit.chat_id, unit.round))
                if real:
                    found.append(prompt_tokens(pv.render(unit)) / real)
    return pd.Series(found, dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    library = PromptLibrary(ROOT / "prompts", ROOT / "rubrics", read_only=True)
    for run_dir in args.runs:
        r = ratios(run_dir, library)
        print(f"{run_dir}: {len(r)} units, estimate / real min {r.min():.2f} median {r.median():.2f} max {r.max():.2f}")


if __name__ == "__main__":
    main()
