"""Features of a unit for the learned labeller, by name. Every feature set is built from the units' texts (or the
run's LLM labels) only, never from human labels, so building them over all units at once leaks nothing.

- ``words``: TF-IDF of word 1-2-grams of the target turns and word unigrams of the context before them;
- ``chars``: TF-IDF of character 2-4-grams of the target (within words; Chinese text is one long "word", so these
  are its character n-grams);
- ``surface``: questions asked, length, turns, exclamations, digits (standardised);
- ``llm``: the run's own probabilities over the scale (or its chosen label), and a column for units it failed;
- ``embeddings``: a sentence-embedding model's vector of the target (see embeddings.py; needs ``make install-learn``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from annotate.errors import AnnotateError
from annotate.learning.units import VariableUnits

FEATURE_SETS = ("words", "chars", "surface", "llm", "embeddings")
DEFAULT_FEATURES = ("words", "chars", "surface")
"""What ``annotate learn`` uses without ``--features``: cheap, and works in any language."""

Matrix = Any
"""A scipy sparse matrix (CSR)."""

QUESTION = re.compile(r"[?？]")
EXCLAMATION = re.compile(r"[!！]")
DIGIT = re.compile(r"\d")


def check_features(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in FEATURE_SETS]
    if unknown:
        raise AnnotateError(f"--features {','.join(unknown)}: unknown (known: {', '.join(FEATURE_SETS)})")
    if not names:
        raise AnnotateError(f"--features: name at least one of {', '.join(FEATURE_SETS)}")
    return list(dict.fromkeys(names))


def build_features(
    units: VariableUnits, names: list[str], embed: Callable[[list[str]], np.ndarray] | None = None
) -> Matrix:
    """One row per unit of ``units.table``, the named feature sets side by side."""
    table = units.table
    blocks = []
    for name in names:
        if name == "words":
            blocks += [_tfidf(table["target"], "word", (1, 2)), _tfidf(table["context"], "word", (1, 1))]
        elif name == "chars":
            blocks.append(_tfidf(table["target"], "char_wb", (2, 4)))
        elif name == "surface":
            blocks.append(sparse.csr_matrix(_standardised(surface(table))))
        elif name == "llm":
            blocks.append(sparse.csr_matrix(llm_features(table, units.categories)))
        elif name == "embeddings":
            if embed is None:
                raise AnnotateError("--features embeddings needs the embedding model (make install-learn)")
            blocks.append(sparse.csr_matrix(embed(table["target"].tolist())))
    return sparse.hstack(blocks, format="csr")


def _tfidf(texts: pd.Series, analyzer: str, ngrams: tuple[int, int]) -> Matrix:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        analyzer=analyzer, ngram_range=ngrams, min_df=2, sublinear_tf=True, lowercase=True, max_features=50_000
    )
    try:
        return vectorizer.fit_transform(texts.fillna("").tolist()).tocsr()
    except ValueError:  # no term occurs in two units (a tiny or empty run): the block carries nothing
        return sparse.csr_matrix((len(texts), 0))


def surface(table: pd.DataFrame) -> np.ndarray:
    """Per unit: questions in the target, whether it asks one, its length (log), its turns, exclamations,
    whether it holds a number, and the context's length (log)."""
    target, context = table["target"].fillna(""), table["context"].fillna("")
    questions = target.map(lambda t: len(QUESTION.findall(t))).to_numpy(dtype=float)
    return np.column_stack(
        [
            np.log1p(questions),
            (questions > 0).astype(float),
            np.log1p(target.str.len().to_numpy(dtype=float)),
            np.log1p(table["target_turns"].to_numpy(dtype=float)),
            np.log1p(target.map(lambda t: len(EXCLAMATION.findall(t))).to_numpy(dtype=float)),
            target.map(lambda t: bool(DIGIT.search(t))).to_numpy(dtype=float),
            np.log1p(context.str.len().to_numpy(dtype=float)),
        ]
    )


def _standardised(x: np.ndarray) -> np.ndarray:
    spread = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def llm_features(table: pd.DataFrame, categories: list[int]) -> np.ndarray:
    """The run's distribution over the scale per unit, and 1 where it gave no ok label (zeros there)."""
    out = np.zeros((len(table), len(categories) + 1))
    position = {v: i for i, v in enumerate(categories)}
    for row, probs in enumerate(table["llm_probs"]):
        if not probs:
            out[row, -1] = 1.0
            continue
        for value, p in probs.items():
            if value in position:
                out[row, position[value]] = p
    return out
