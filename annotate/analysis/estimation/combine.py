"""Cross-fitted predictions of the human label from every labeller's label probabilities.

Several labellers (models, prompt versions, repeats), or one labeller whose probabilities are miscalibrated,
carry more signal together than any one chosen label does. A ridge regression of the human label on their
readings and the model's terms learns how to read them. The prediction of a unit never depends on its own
chat's human labels:

- which reading to use (each labeller's expected label alone, each one's whole probability vector, all
  expected labels, all probability vectors) and the ridge penalty are chosen by leave-one-out error on the
  coded chats outside the unit's fold (every chat, coded or not, is put in one of K folds at random);
- the chosen reading is then fitted on every coded chat but the unit's own (leave-one-chat-out, in closed
  form), so an uncoded unit uses the fit on all coded chats.

Under independent (Poisson) sampling this makes the prediction-powered bracket exactly mean zero: unit j
contributes (1 - pi_j) g(S') when uncoded and pi_j (1 - 1/pi_j) g(S') when coded, where g(S') is the same fit
on the other units' sample either way. That is the design-based correction of DSL (Egami et al. 2023), the
recalibration of RePPI and "calibeating", with the fold noise of K-fold fitting cut to one chat's worth.
A reading with one column is used as it is: its scale and level are the share's business (for OLS the
estimate is unchanged by an affine map of the prediction, up to the share), so fitting it would add noise
only. Of a fit on several columns only the labellers' part predicts; a part linear in the model's terms
would cancel in the bracket anyway.

The prediction then goes through the same prediction-powered estimate and evidence test as a single
labeller's label: a combination that learnt nothing earns nothing. bench/labellers.py measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate.analysis.estimation import ppi
from annotate.analysis.estimation.glm import Array

FOLDS = 10
PENALTIES = (0.1, 1.0, 10.0, 100.0)
"""Ridge penalties tried on the standardised features (the intercept is free)."""


@dataclass(frozen=True)
class LabellerFeatures:
    """One labeller's reading of every unit."""

    probabilities: Array
    """Units x (values but the first): its probability of each value (share of repeats without probabilities),
    and a last column marking units it did not label."""
    expected: Array
    """Per unit: its probability-weighted label (its mean label where it gave none)."""


def cross_fitted(
    labellers: list[LabellerFeatures],
    data: ppi.Sample,
    bounds: tuple[float, float],
    folds: int = FOLDS,
    seed: int = 0,
) -> Array:
    """Per unit, the human label predicted from the labellers by a fit that never saw its own chat's labels."""
    candidates = _candidates(labellers)
    chats = np.unique(data.clusters_all)
    fold_of_chat = np.random.default_rng(seed).permutation(len(chats)) % max(2, folds)
    fold = fold_of_chat[np.searchsorted(chats, data.clusters_all)]
    coded_fold = fold[data.labelled]
    prediction = np.empty(data.big_n)
    models: dict[tuple[int, float], _Model] = {}
    for k in np.unique(fold):
        train = data.labelled[coded_fold != k]
        choice = _chosen(candidates, data.x_all[train], train, data.y[coded_fold != k])
        if candidates[choice[0]].shape[1] == 1:  # one reading: its scale and level are the share's business
            prediction[fold == k] = candidates[choice[0]][fold == k, 0]
            continue
        if choice not in models:
            design = np.column_stack([candidates[choice[0]], data.x_all])
            models[choice] = _Model.fit(
                design, data.labelled, data.y, data.clusters, choice[1], candidates[choice[0]].shape[1]
            )
        prediction[fold == k] = models[choice].predict(np.flatnonzero(fold == k), data.labelled)
    return np.clip(prediction, *bounds)


def _chosen(candidates: list[Array], terms: Array, train: np.ndarray, target: Array) -> tuple[int, float]:
    """The reading and penalty with the smallest leave-one-out error on the selection chats."""
    choices = [(i, a) for i in range(len(candidates)) for a in PENALTIES]
    errors = [float(_loo_errors(np.column_stack([candidates[i][train], terms]), target, a).mean()) for i, a in choices]
    return choices[int(np.argmin(errors))]


@dataclass(frozen=True)
class _Model:
    """A ridge fit on every coded unit, able to leave any one chat out (closed form)."""

    design: Array
    """All units: [1, standardised columns]."""
    inverse: Array
    beta: Array
    residual: Array
    """Per coded unit."""
    clusters: np.ndarray
    readers: Array
    """Mask of the coefficients that predict: the intercept and the labellers' features, not the terms."""

    @classmethod
    def fit(
        cls, x: Array, labelled: np.ndarray, y: Array, clusters: np.ndarray, penalty: float, features: int
    ) -> _Model:
        keep, centre, scale = _standardised(x[labelled])
        design = np.column_stack([np.ones(len(x)), (x[:, keep] - centre) / scale])
        coded = design[labelled]
        ridge = np.diag([0.0, *[penalty] * int(keep.sum())])
        inverse = np.linalg.pinv(coded.T @ coded + ridge)
        beta = inverse @ coded.T @ y
        readers = np.array([True, *(np.flatnonzero(keep) < features)])
        return cls(design, inverse, beta, y - coded @ beta, clusters, readers)

    def predict(self, units: np.ndarray, labelled: np.ndarray) -> Array:
        """Uncoded units from the fit on every coded chat; a coded unit from the fit without its own chat."""
        out = self.design[units][:, self.readers] @ self.beta[self.readers]
        position = {unit: i for i, unit in enumerate(labelled)}
        coded = [u for u in units if u in position]
        for chat in np.unique(self.clusters[[position[u] for u in coded]]) if coded else []:
            rows = np.flatnonzero(self.clusters == chat)
            z = self.design[labelled[rows]]
            hat = z @ self.inverse @ z.T
            shift = self.inverse @ z.T @ np.linalg.pinv(np.eye(len(rows)) - hat) @ self.residual[rows]
            beta = self.beta - shift
            mine = np.isin(units, labelled[rows])
            out[mine] = self.design[units[mine]][:, self.readers] @ beta[self.readers]
        return out


def _candidates(labellers: list[LabellerFeatures]) -> list[Array]:
    expected = [lab.expected[:, None] for lab in labellers]
    full = [lab.probabilities for lab in labellers]
    several = [np.column_stack(expected), np.column_stack(full)] if len(labellers) > 1 else []
    return [*expected, *full, *several]


def _standardised(x: Array) -> tuple[Array, Array, Array]:
    spread = x.std(axis=0)
    keep = spread > 1e-12
    return keep, x[:, keep].mean(axis=0), spread[keep]


def _loo_errors(x: Array, y: Array, penalty: float) -> Array:
    """Leave-one-out squared errors of the ridge fit (closed form from the hat matrix)."""
    if len(y) < 3:
        return np.full(max(len(y), 2), np.inf)
    keep, centre, scale = _standardised(x)
    z = (x[:, keep] - centre) / scale
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    shrink = s**2 / (s**2 + penalty)
    residual = y - y.mean() - u @ (shrink * (u.T @ (y - y.mean())))
    leverage = (u**2) @ shrink + 1 / len(y)
    return np.asarray((residual / np.maximum(1 - leverage, 1e-6)) ** 2)
