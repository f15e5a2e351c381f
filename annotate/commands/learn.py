"""``annotate learn``: a labeller trained on the human codes, cross-fitted by chat, written as a run directory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from annotate.analysis.gold import truth_of
from annotate.analysis.learning_curve import learning_result
from annotate.analysis.learning_results import LearningResult
from annotate.commands import Written, unfinished
from annotate.learning.learn import LearnOptions, learn
from annotate.learning.units import transcripts_as_source
from annotate.prompts.library import PromptLibrary
from annotate.report.learning import write_learning
from annotate.runs.coded import Gold, read_gold
from annotate.runs.reader import read_run
from annotate.runs.resume import check_derived_out
from annotate.runs.store import write_run


def learn_command(
    run_dir: Path, coded_path: Path, out: Path, library: PromptLibrary, options: LearnOptions, n_boot: int = 1000
) -> Written[LearningResult]:
    """The learned run (labels for every unit of every coded variable) and its learning curve beside it.
    ``run_dir`` may also be a transcript file: its chats and the default tasks' units, with no LLM labels."""
    check_derived_out(out, [run_dir])
    run = read_run(run_dir) if run_dir.is_dir() else transcripts_as_source([run_dir], library)
    gold = read_gold(coded_path)
    learned = learn(run, coded_items(gold), coded_path, gold.sha256, library, options)
    result = learning_result(learned, str(out), n_boot, options.seed)
    paths = write_run(out, learned.rows, learned.manifest)
    warnings = unfinished(run) if run_dir.is_dir() else []
    return Written(result, [*paths, *write_learning(out, result)], warnings=warnings)


def coded_items(coded: Gold) -> pd.DataFrame:
    """One human label per item (the consensus of several annotators), with its inclusion probability."""
    gold = coded.table
    truth = truth_of(gold)
    inclusion = gold.groupby(["chat_id", "round", "variable"], dropna=False)["inclusion_probability"].mean()
    return truth.merge(inclusion.reset_index(), on=["chat_id", "round", "variable"], how="left")
