"""Cross-fitted predictions of the human label from every labeller's label probabilities.

Several labellers (models, prompt versions, repeats), or one labeller whose probabilities are miscalibrated,
carry more signal together than any one chosen label does. A ridge regression of the human label on all of
their probability vectors (one-hot chosen labels where a labeller gave none) and the model's terms learns how
to read them; cross-fitting keeps the prediction honest: all chats (coded or not) are split into K folds, and
each fold is predicted by a regression fitted on the coded chats of the other folds only. A unit's prediction
therefore never depends on its own chat's human labels, so it is a fixed function as far as that chat's
sampling is concerned, and the prediction-powered bracket keeps mean zero (the design-based correction of
DSL, Egami et al. 2023; the recalibration of RePPI; "calibeating"). The prediction then goes through the same
prediction-powered estimate and the same evidence test as a single labeller's label: a combination that
learnt nothing earns nothing.
"""

from __future__ import annotations

import numpy as np

from annotate.analysis import ppi
from annotate.analysis.glm import Array

FOLDS = 5
RIDGE = 1.0
"""Penalty on the standardised features (the intercept is free): steadies the fit on few coded chats."""


def cross_fitted(
    features: Array, data: ppi.Sample, bounds: tuple[float, float], folds: int = FOLDS, seed: int = 0
) -> Array:
    """Per unit, the human label predicted from ``features`` and the model's terms by a fit on other folds' chats."""
    design = np.column_stack([features, data.x_all])
    chats = np.unique(data.clusters_all)
    fold_of_chat = np.random.default_rng(seed).permutation(len(chats)) % max(2, folds)
    fold = fold_of_chat[np.searchsorted(chats, data.clusters_all)]
    coded_fold = fold[data.labelled]
    prediction = np.empty(data.big_n)
    for k in np.unique(fold):
        train = coded_fold != k
        prediction[fold == k] = _ridge(design[data.labelled][train], data.y[train], design[fold == k])
    return np.clip(prediction, *bounds)


def _ridge(x: Array, y: Array, new: Array) -> Array:
    """Ridge regression on standardised columns with a free intercept; columns constant in training are dropped."""
    if len(y) == 0:
        return np.full(len(new), np.nan)
    spread = x.std(axis=0)
    keep = spread > 1e-12
    if not keep.any():
        return np.full(len(new), y.mean())
    centre, scale = x[:, keep].mean(axis=0), spread[keep]
    z = (x[:, keep] - centre) / scale
    beta = np.linalg.solve(z.T @ z + RIDGE * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return y.mean() + ((new[:, keep] - centre) / scale) @ beta
