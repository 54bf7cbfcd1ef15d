"""Detection rates as in Table I (percent) and PSNR."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cfzoo.errors import CfzooError


@dataclass(frozen=True)
class DetectionRates:
    """Percentages over pristine (label 0) and manipulated (label 1) samples; NaN where a class is absent."""

    fpr: float  # pristine called manipulated
    tpr: float  # manipulated called manipulated
    acc: float  # all samples called correctly
    pristine: int
    manipulated: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "fpr": self.fpr,
            "tpr": self.tpr,
            "acc": self.acc,
            "pristine": self.pristine,
            "manipulated": self.manipulated,
        }


def detection_rates(labels: np.ndarray, predictions: np.ndarray) -> DetectionRates:
    """FPR, TPR and ACC in percent from true labels and predicted labels (1 = manipulated)."""
    labels = np.asarray(labels).astype(bool).ravel()
    predictions = np.asarray(predictions).astype(bool).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    pristine = int((~labels).sum())
    manipulated = int(labels.sum())
    fpr = _percent((predictions & ~labels).sum(), pristine)
    tpr = _percent((predictions & labels).sum(), manipulated)
    acc = _percent((predictions == labels).sum(), labels.size)
    return DetectionRates(fpr=fpr, tpr=tpr, acc=acc, pristine=pristine, manipulated=manipulated)


def psnr(reference: np.ndarray, distorted: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of ``distorted`` against ``reference`` over all their samples; inf when identical.

    An MSE of exactly 1 (every sample off by one, as FGSM with eps = 1 without clipping) gives 48.13 dB.
    """
    reference = np.asarray(reference, dtype=np.float64)
    distorted = np.asarray(distorted, dtype=np.float64)
    if reference.shape != distorted.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {distorted.shape}")
    return psnr_from_mse(float(np.mean((reference - distorted) ** 2)), peak)


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB from a mean squared error; inf for an MSE of 0 (nothing changed)."""
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


def _percent(count: int | np.integer, total: int) -> float:
    return float("nan") if total == 0 else 100.0 * float(count) / total


def finite_or_none(value: float, digits: int = 4) -> float | None:
    """``value`` rounded, or None for an infinite PSNR (nothing changed), so JSON stays standard."""
    return round(value, digits) if math.isfinite(value) else None


def pair_quality(pristine: np.ndarray, other: np.ndarray) -> dict:
    """{"psnr_db", "ssim"} of ``other`` against ``pristine``, uint8 [N,H,W,3] (or one H x W x 3 image):
    PSNR over all samples (None when identical), SSIM (scikit-image, 7x7 windows, data range 255, colour
    channels averaged) averaged over the images."""
    squared_error, ssim_sum, count = quality_sums(pristine, other)
    return {
        "psnr_db": finite_or_none(psnr_from_mse(squared_error / np.size(pristine))),
        "ssim": round(ssim_sum / count, 6),
    }


def quality_sums(pristine: np.ndarray, other: np.ndarray) -> tuple[float, float, int]:
    """(sum of squared errors, sum of SSIM, images) of ``other`` against ``pristine``, to add up over batches."""
    from skimage.metrics import structural_similarity

    pristine, other = np.asarray(pristine), np.asarray(other)
    if pristine.shape != other.shape:
        raise CfzooError(f"cannot compare images of shapes {list(pristine.shape)} and {list(other.shape)}")
    if pristine.ndim == 3:
        pristine, other = pristine[None], other[None]
    squared_error = float(np.sum((pristine.astype(np.int32) - other) ** 2))
    ssim = sum(structural_similarity(a, b, channel_axis=2, data_range=255) for a, b in zip(pristine, other))
    return squared_error, float(ssim), len(pristine)


def cross_entropy(logits: np.ndarray, label: int) -> np.ndarray:
    """-log softmax(logits)[:, label] per row, computed stably in float64."""
    logits = logits.astype(np.float64)
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - logits[:, label]
