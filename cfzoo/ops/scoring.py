"""The one batched scorer: every operation that asks a detector about patches asks through here, and every
decision ("manipulated" or not) and every reported rate is made by :func:`flagged` or, in logit units for the
attacks, by :func:`manipulated_margin` (the same rule: probability above the detector's threshold).

Patches are uint8 [N,128,128,3] (or cut from an image at given positions); they reach the detector
``batch_size`` at a time in the model contract's float32 [N,3,128,128] form, so memory beyond the decoded
image is bounded by the batch, not by the number of patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import CfzooError
from cfzoo.patches import cut_patches
from cfzoo.zoo.runtime import Detector, to_model_input

DEFAULT_BATCH_SIZE = 64


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise CfzooError(f"batch size must be at least 1 patch, got {batch_size}")


def flagged(probabilities: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """The decision "manipulated": a probability strictly above the detector's threshold."""
    return np.asarray(probabilities) > threshold


def called_manipulated(
    detector: Detector, patches: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """(probability of "manipulated", the detector's decision) for [N,H,W,3] uint8 patches."""
    check_batch_size(batch_size)
    probability = (
        np.concatenate(
            [
                detector.probability(to_model_input(patches[start : start + batch_size]))
                for start in range(0, len(patches), batch_size)
            ]
        )
        if len(patches)
        else np.zeros(0)
    )
    return probability, flagged(probability, detector.threshold)


def manipulated_margin(detector: Detector, patches: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """logit(manipulated) - logit(pristine) minus the detector's threshold in logit units, per uint8 patch, run
    ``batch_size`` at a time: above 0 exactly where the patch is called manipulated (:func:`flagged`). The attacks
    minimise it (square) or check it (all)."""
    check_batch_size(batch_size)
    if not len(patches):
        return np.zeros(0)
    logits = np.concatenate(
        [
            detector.logits(to_model_input(patches[start : start + batch_size]))
            for start in range(0, len(patches), batch_size)
        ]
    ).astype(np.float64)
    threshold = float(np.clip(detector.threshold, 1e-12, 1 - 1e-12))
    return logits[:, 1] - logits[:, 0] - np.log(threshold / (1 - threshold))


def score_positions(
    pixels: np.ndarray,
    detectors: Sequence[Detector],
    positions: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Manipulation probability [len(detectors), K] of the patches at ``positions``, ``batch_size`` at a time;
    ``on_progress(done, K)`` after each batch."""
    check_batch_size(batch_size)
    probabilities = np.empty((len(detectors), len(positions)), dtype=np.float64)
    for start in range(0, len(positions), batch_size):
        batch = to_model_input(cut_patches(pixels, positions[start : start + batch_size]))
        for row, detector in enumerate(detectors):
            probabilities[row, start : start + len(batch)] = detector.probability(batch)
        if on_progress is not None:
            on_progress(start + len(batch), len(positions))
    return probabilities


def called_before_and_after(
    original: np.ndarray,
    changed: np.ndarray,
    detectors: Sequence[Detector],
    positions: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Each detector's decisions [len(detectors), K] on the patches at ``positions`` of an image before and after
    a change (an attack, a restoration)."""
    return tuple(decisions_at(image, detectors, positions, batch_size) for image in (original, changed))


def decisions_at(
    pixels: np.ndarray, detectors: Sequence[Detector], positions: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Each detector's decisions [len(detectors), K] on the patches of an image at ``positions``."""
    thresholds = np.array([detector.threshold for detector in detectors], dtype=np.float64)[:, None]
    return flagged(score_positions(pixels, detectors, positions, batch_size), thresholds)
