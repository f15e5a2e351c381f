"""Regressors the LLM measured (predict-then-debias, Kluger et al. 2025).

A formula may name a variable of the run on its right-hand side (``empathy ~ C(escalation) +
initial_sentiment``). Over all units the model is then fitted with the LLM's values of that regressor; on the
coded units the human-only fit uses the human values, and the bracket of the prediction-powered estimate
refits the LLM-measured model on the coded units, so the correction covers the regressors' errors as well as
the outcome's (even errors that depend on the treatment). The coded sample must therefore hold human values of
every variable in the formula on the same units: a chat-level sample (``annotate sample --unit chat``) does.
"""

from __future__ import annotations

import pandas as pd

from annotate.errors import AnnotateError

KEY = ["chat_id", "round"]


def measured_regressors(needed: list[str], chat_columns: set[str], labelled: set[str]) -> list[str]:
    """Names in the formula that are the run's variables rather than columns of the chats' table."""
    return [name for name in needed if name in labelled and name not in chat_columns]


def with_llm_values(
    units: pd.DataFrame, ok: pd.DataFrame, measured: list[str], column: str, formula: str
) -> pd.DataFrame:
    """The units with one column per LLM-measured regressor: its LLM label (mean over repeats), matched by chat
    when the regressor is chat-level and by (chat, round) when both it and the outcome are per round."""
    for name in measured:
        rows = ok[ok["variable"] == name]
        per_round = bool(rows["round"].notna().any())
        if per_round and units["round"].isna().any():
            raise AnnotateError(
                f"formula '{formula}': {name} is labelled per round but the outcome per chat; use a chat-level "
                "regressor, or aggregate it into a covariates column"
            )
        key = KEY if per_round else ["chat_id"]
        values = rows.groupby(key, dropna=False)[column].mean().rename(name).reset_index()
        units = units.merge(values, on=key, how="left")
    return units


def human_values(coded: pd.DataFrame, gold: pd.DataFrame, measured: list[str], formula: str) -> pd.DataFrame:
    """The coded units with each LLM-measured regressor replaced by the human label of it on the same unit (by
    chat for chat-level variables); one line naming the variables and chats where the coding has none."""
    out = coded.drop(columns=measured)
    gaps = []
    for name in measured:
        truth = gold[gold["variable"] == name]
        chat_level = bool(truth["round"].isna().all())
        key = ["chat_id"] if chat_level else KEY
        values = truth[[*key, "value"]].rename(columns={"value": name}).drop_duplicates(key)
        out = out.merge(values, on=key, how="left")
        lacking = sorted(set(out.loc[out[name].isna(), "chat_id"]))
        if lacking:
            gaps.append(f"{name} ({len(lacking)}: {', '.join(lacking[:4])}{' ...' if len(lacking) > 4 else ''})")
    if gaps:
        raise AnnotateError(
            f"formula '{formula}': the coded sample lacks human values of LLM-measured regressors on coded chats: "
            f"{'; '.join(gaps)}. Code every variable of the formula on the same chats (annotate sample --unit chat)"
        )
    return out
