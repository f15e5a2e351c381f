"""The classifier of the learned labeller, cross-fitted by chat.

Coded chats are dealt into K folds. Fold k's model is trained on the other folds' coded units; it labels the
coded units of fold k, so a coded unit's label never comes from a model that saw its chat (or its label). Every
uncoded unit gets the mean of the K fold models' probabilities. This is what keeps the prediction-powered
estimate valid with a learned labeller (cross-prediction-powered inference: Zrnic & Candès, PNAS 2024).

The classifier is a multinomial logistic regression; its penalty is chosen inside each training set by
cross-validation over its own chats (nested), on the log loss, so the choice sees no held-out chat either.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import sparse

PENALTIES = (0.05, 0.2, 1.0, 5.0, 25.0)
"""Inverse penalties C tried, beside C = 0: no features at all, the training set's category frequencies. Features
that carry nothing lose to it, so a useless learner gives one label to every unit (κ 0) rather than noise."""
INNER_FOLDS = 3
LEARNER = (
    f"multinomial logistic regression, C 0 (the coded frequencies) or {PENALTIES[0]:g}-{PENALTIES[-1]:g} "
    f"by {INNER_FOLDS}-fold nested CV on chats (log loss)"
)
SMOOTHING = 0.5
"""Added to each category's count in the frequencies (the C = 0 model)."""

Array = NDArray[np.float64]


@dataclass(frozen=True)
class CrossFit:
    probabilities: Array
    """Units x categories: out-of-fold for coded units, the mean over fold models for the others."""
    folds: int
    penalties: list[float]
    """The C each fold model chose (0: the coded frequencies, no features)."""


def chat_folds(
    chats: NDArray[np.str_], folds: int, seed: int, balance: NDArray[np.int64] | None = None
) -> NDArray[np.int64]:
    """Each row's fold: the distinct chats shuffled with ``seed`` and dealt round-robin, so folds differ by at most
    one chat and a chat's rows share a fold. With ``balance`` (a label per row), chats are dealt in the order of
    their mean label, so every fold holds about the same mix of labels (stratified)."""
    unique = np.unique(chats)
    order = np.random.default_rng(seed).permutation(len(unique))
    if balance is not None:
        means = pd.Series(balance).groupby(chats).mean().reindex(unique).to_numpy()
        order = order[np.argsort(means[order], kind="stable")]
    fold_of = {unique[i]: position % folds for position, i in enumerate(order)}
    return np.array([fold_of[c] for c in chats], dtype=np.int64)


def cross_fit(
    x: sparse.csr_matrix,
    coded: NDArray[np.int64],
    y: NDArray[np.int64],
    chats: NDArray[np.str_],
    categories: list[int],
    folds: int,
    seed: int,
    stratified: bool = False,
) -> CrossFit:
    """``coded``: positions (rows of ``x``) of the coded units, ``y`` their human labels, ``chats`` their chats.

    Folds are random (the default, and what the learned labels use): then the model that labels a coded unit is
    independent of that unit's label, which the prediction-powered estimate needs. ``stratified`` balances the
    labels across folds instead; the learning curve uses it, because with random folds a weak learner's out-of-fold
    labels lean against each fold's own mix of labels and cross-validated κ runs low (by about 0.1 at 20 chats)."""
    k = min(folds, len(np.unique(chats)))
    fold = chat_folds(chats, k, seed, y if stratified else None)
    probabilities = np.zeros((x.shape[0], len(categories)))
    uncoded = np.setdiff1d(np.arange(x.shape[0]), coded)
    penalties = []
    for f in range(k):
        train = fold != f
        model = fit(x[coded[train]], y[train], chats[train], categories, seed)
        penalties.append(model.penalty)
        probabilities[coded[~train]] = model.predict(x[coded[~train]])
        if len(uncoded):
            probabilities[uncoded] += model.predict(x[uncoded]) / k
    return CrossFit(probabilities, k, penalties)


@dataclass(frozen=True)
class Fitted:
    categories: list[int]
    penalty: float
    constant: Array | None = None
    """The prediction when the training set had one class."""
    model: object | None = None

    def predict(self, x: sparse.csr_matrix) -> Array:
        if self.constant is not None:
            return np.tile(self.constant, (x.shape[0], 1))
        return _full(self.model, x, self.categories)


def fit(
    x: sparse.csr_matrix, y: NDArray[np.int64], chats: NDArray[np.str_], categories: list[int], seed: int
) -> Fitted:
    """The model for one training set, its penalty chosen by cross-validation over the set's own chats."""
    penalty = choose_penalty(x, y, chats, categories, seed) if len(np.unique(y)) > 1 else 0.0
    if penalty == 0:
        return Fitted(categories, 0.0, constant=frequencies(y, categories))
    return Fitted(categories, penalty, model=_logistic(x, y, penalty))


def frequencies(y: NDArray[np.int64], categories: list[int]) -> Array:
    """The categories' shares in ``y``, each count plus ``SMOOTHING`` (no category is impossible)."""
    counts = np.array([np.sum(y == c) for c in categories], dtype=float) + SMOOTHING
    return counts / counts.sum()


def choose_penalty(
    x: sparse.csr_matrix, y: NDArray[np.int64], chats: NDArray[np.str_], categories: list[int], seed: int
) -> float:
    """The C (0: the frequencies alone) with the lowest out-of-fold log loss over ``INNER_FOLDS`` folds of the
    training chats; ties go to the stronger penalty."""
    k = min(INNER_FOLDS, len(np.unique(chats)))
    if k < 2:
        return 0.0
    fold = chat_folds(chats, k, seed + 1)
    candidates = (0.0, *PENALTIES)
    losses = np.zeros(len(candidates))
    for f in range(k):
        train, test = fold != f, fold == f
        prior = np.tile(frequencies(y[train], categories), (int(test.sum()), 1))
        if len(np.unique(y[train])) < 2:
            losses += _log_loss(prior, y[test], categories)
            continue
        losses[0] += _log_loss(prior, y[test], categories)
        for i, model in enumerate(_path(x[train], y[train]), start=1):
            losses[i] += _log_loss(_full(model, x[test], categories), y[test], categories)
    return float(candidates[int(np.argmin(losses))])


def _path(x: sparse.csr_matrix, y: NDArray[np.int64]) -> Iterator[object]:
    """The model at each penalty, weakest first, each fit starting from the last (warm start: the same optima,
    fewer iterations)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=PENALTIES[0], max_iter=500, tol=1e-4, warm_start=True)
    for penalty in PENALTIES:
        model.set_params(C=penalty)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y)
        yield model


def _logistic(x: sparse.csr_matrix, y: NDArray[np.int64], penalty: float) -> object:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=penalty, max_iter=500, tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a convergence warning at max_iter: the fit is still usable
        model.fit(x, y)
    return model


def _full(model: object, x: sparse.csr_matrix, categories: list[int]) -> Array:
    """Probabilities over every category of the scale (0 for a category the training set lacked)."""
    known = list(model.classes_)  # type: ignore[attr-defined]
    predicted = model.predict_proba(x)  # type: ignore[attr-defined]
    out = np.zeros((x.shape[0], len(categories)))
    for j, value in enumerate(known):
        out[:, categories.index(int(value))] = predicted[:, j]
    return out


def _log_loss(predicted: Array, y: NDArray[np.int64], categories: list[int]) -> float:
    rows = np.arange(len(y))
    columns = np.array([categories.index(int(v)) for v in y])
    return float(-np.log(np.clip(predicted[rows, columns], 1e-6, 1.0)).sum())
