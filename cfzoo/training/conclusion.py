"""Fitting a conclusion model (scikit-learn): a multinomial logistic regression over the standardised evidence of
every zoo detector, and the nearest-neighbour distances that tell evidence it has never seen.

- The regularisation is chosen by cross-validation that leaves one camera device out at a time, scored by log
  loss (so by calibration as well as accuracy); nothing of the test devices is used.
- "Unlike the training evidence": an image's mean distance to its ``NEIGHBOURS`` nearest training rows (in
  standardised evidence) above ``distance_threshold``. The threshold is the ``DISTANCE_QUANTILE`` quantile of that
  distance for training rows measured against the rows of the *other* devices, that is, what a camera the model
  has never seen typically gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from cfzoo.errors import CfzooError

#: Inverse regularisation strengths tried by the leave-one-device-out cross-validation.
REGULARISATION_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
NEIGHBOURS = 5
DISTANCE_QUANTILE = 0.99
#: Below this probability for its most likely class, a conclusion says "uncertain" (fixed, not fitted).
UNCERTAIN_BELOW = 0.6


@dataclass(frozen=True)
class FittedConclusion:
    classifier: Pipeline  # StandardScaler -> LogisticRegression
    neighbours: Pipeline  # the same StandardScaler -> NearestNeighbors over the training rows
    distance_threshold: float
    regularisation: float
    cross_validation: dict[str, float]  # C -> mean held-out-device log loss

    def record(self) -> dict:
        return {
            "classifier": "StandardScaler -> LogisticRegression (multinomial, lbfgs)",
            "regularisation_C": self.regularisation,
            "cross_validation": "leave one train device out, log loss",
            "cross_validation_log_loss": self.cross_validation,
            "neighbours": NEIGHBOURS,
            "distance_quantile": DISTANCE_QUANTILE,
        }


def _classifier(regularisation: float) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=5000))


def fit_conclusion(features: np.ndarray, labels: np.ndarray, devices: np.ndarray, class_count: int) -> FittedConclusion:
    """The conclusion over ``features`` [n, F] with ``labels`` in 0..class_count-1 from camera ``devices`` (the
    groups of the cross-validation; at least two). Deterministic: lbfgs and exact neighbours draw nothing."""
    features = np.asarray(features, dtype=np.float64)
    groups = np.unique(devices)
    if len(groups) < 2:
        raise CfzooError("fitting a conclusion needs evidence from at least two camera devices")
    if sorted(np.unique(labels)) != list(range(class_count)):
        raise CfzooError("every class needs evidence rows to fit a conclusion")
    losses = {}
    for regularisation in REGULARISATION_GRID:
        held_out = []
        for train, test in LeaveOneGroupOut().split(features, labels, devices):
            model = _classifier(regularisation).fit(features[train], labels[train])
            probabilities = np.zeros((len(test), class_count))
            probabilities[:, model.classes_] = model.predict_proba(features[test])
            held_out.append(log_loss(labels[test], probabilities, labels=list(range(class_count))) * len(test))
        losses[f"{regularisation:g}"] = float(sum(held_out) / len(labels))
    best = REGULARISATION_GRID[int(np.argmin(list(losses.values())))]
    classifier = _classifier(best).fit(features, labels)
    scaler = classifier.steps[0][1]
    scaled = scaler.transform(features)
    search = NearestNeighbors(n_neighbors=NEIGHBOURS).fit(scaled)
    # skl2onnx converts a search by count only when it has no radius (scikit-learn's default radius, 1.0, is only
    # used by radius queries, which the conclusion never makes)
    search.radius = None
    neighbours = make_pipeline(scaler, search)
    return FittedConclusion(classifier, neighbours, _unseen_device_distance(scaled, devices), best, losses)


def _unseen_device_distance(scaled: np.ndarray, devices: np.ndarray) -> float:
    """The :data:`DISTANCE_QUANTILE` quantile of each row's mean distance to its nearest rows of other devices."""
    distances = []
    for device in np.unique(devices):
        own = devices == device
        search = NearestNeighbors(n_neighbors=NEIGHBOURS).fit(scaled[~own])
        distances.append(search.kneighbors(scaled[own])[0].mean(axis=1))
    return float(np.quantile(np.concatenate(distances), DISTANCE_QUANTILE))
