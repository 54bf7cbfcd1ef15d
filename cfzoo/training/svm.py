"""The SPAM+SVM detector's classifier: a linear SVM on standardised SPAM features.

Linear, not RBF: it trains in seconds on tens of thousands of 338-dimensional features, its decision
function is an affine map that initialises Cozzolino2017's fully connected layer (the paper's recipe),
and the gradient of that affine map is exact in the attack companions. Parameters are kept as plain
arrays (saved as safetensors), never as a pickled estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearSVM:
    """decision(f) = ((f - mean) / scale) . coef + intercept; > 0 means manipulated."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef + self.intercept

    def folded(self) -> tuple[np.ndarray, float]:
        """The same decision as one affine map on raw features: (weights, bias)."""
        weights = self.coef / self.scale
        return weights, float(self.intercept - weights @ self.mean)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": np.array([self.intercept]),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LinearSVM:
        return cls(arrays["mean"], arrays["scale"], arrays["coef"], float(arrays["intercept"][0]))


def fit_linear_svm(features: np.ndarray, labels: np.ndarray, regularisation: float, seed: int) -> LinearSVM:
    """scikit-learn's LinearSVC (squared hinge, L2) on features standardised to zero mean, unit variance."""
    from sklearn.svm import LinearSVC

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature carries nothing; keep it finite
    svm = LinearSVC(C=regularisation, dual=False, max_iter=5000, random_state=seed)
    svm.fit((features - mean) / scale, labels)
    return LinearSVM(mean=mean, scale=scale, coef=svm.coef_[0].astype(np.float64), intercept=float(svm.intercept_[0]))
