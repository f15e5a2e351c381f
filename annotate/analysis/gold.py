"""What the human codes say: one reference label per item (the consensus of several annotators), checked against
the variables' scales. The coded file itself is read by ``annotate.runs.coded``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from annotate.errors import InputError

if TYPE_CHECKING:
    from annotate.runs.coded import Gold


def consensus(gold: pd.DataFrame) -> pd.DataFrame:
    """One label per item: the majority; a tie goes to the lower median of all annotators' labels."""

    def pick(values: pd.Series) -> int:
        counts = values.value_counts()
        top = counts[counts == counts.max()].index
        if len(top) == 1:
            return int(top[0])
        return int(np.floor(np.median(values.to_numpy())))

    keys = ["chat_id", "round", "variable"]
    grouped = gold.groupby(keys, dropna=False, sort=False)["value"]
    return grouped.agg(pick).reset_index()


def checked_truth(gold: Gold, scales: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """The reference label per item (the only annotator's, or the consensus of several), on the scales given."""
    check_scales(gold, scales)
    return truth_of(gold.table)


def truth_of(gold: pd.DataFrame) -> pd.DataFrame:
    """One reference label per item (chat_id, round, variable, value): the only annotator's, or the consensus."""
    return consensus(gold) if gold["annotator"].nunique() > 1 else gold[["chat_id", "round", "variable", "value"]]


def check_scales(gold: Gold, scales: Mapping[str, Sequence[int]]) -> None:
    """Refuse a gold value outside its variable's scale (it would be silently uncountable), naming its line."""
    table = gold.table
    for variable, categories in scales.items():
        rows = table[(table["variable"] == variable) & ~table["value"].isin(list(categories))]
        if len(rows):
            first = rows.iloc[0]
            allowed = ", ".join(map(str, categories))
            message = f"{first['value']} is not a value of {variable} (allowed: {allowed})"
            raise InputError(str(gold.path), int(first["line"]), "value", message)
