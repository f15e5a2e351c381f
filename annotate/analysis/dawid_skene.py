"""Dawid and Skene (1979): each labeller's confusion matrix and the true classes, estimated together by EM.

A tested implementation of our own: crowd-kit, the maintained library that has it, requires
transformers and nltk, which this package does not otherwise need.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

SMOOTHING = 0.01
"""Added to every confusion count, so a labeller never seen to give a value is not certain never to."""


def dawid_skene(
    item: NDArray[np.int_], worker: NDArray[np.int_], label: NDArray[np.int_], iterations: int = 100, tol: float = 1e-7
) -> tuple[NDArray[np.int_], NDArray[np.float64]]:
    """Per item (0..max(item)): the most probable class and its posterior probability.

    Starts from the vote shares; ties in the final posterior go to the lower class.
    """
    classes = np.unique(label)
    k = np.searchsorted(classes, label)
    n_items, n_workers, n_classes = int(item.max()) + 1, int(worker.max()) + 1, len(classes)
    votes = np.zeros((n_items, n_classes))
    np.add.at(votes, (item, k), 1.0)
    posterior = votes / votes.sum(axis=1, keepdims=True)
    for _ in range(iterations):
        prior = posterior.mean(axis=0)
        confusion = np.full((n_workers, n_classes, n_classes), SMOOTHING)
        for true in range(n_classes):  # confusion[worker, true, given] += P(item is of class `true`)
            np.add.at(confusion[:, true, :], (worker, k), posterior[item, true])
        confusion /= confusion.sum(axis=2, keepdims=True)
        log_post = np.tile(np.log(prior), (n_items, 1))
        np.add.at(log_post, item, np.log(confusion[worker, :, k]))
        log_post -= log_post.max(axis=1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(axis=1, keepdims=True)
        change = np.abs(updated - posterior).max()
        posterior = updated
        if change < tol:
            break
    best = np.argmax(posterior, axis=1)  # argmax takes the first, i.e. the lower class, on a tie
    return classes[best], posterior[np.arange(n_items), best]
