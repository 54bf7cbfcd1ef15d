"""Detection rates as in Table I (percent) and PSNR."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cfzoo.errors import CfzooError
from cfzoo.results import BinaryMetrics, RankingMetrics, Rates, ReliabilityBin, TprChange


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


def rates_by_device(labels: np.ndarray, predictions: np.ndarray, devices: np.ndarray) -> dict[str, Rates]:
    """:func:`detection_rates` on the samples of each device (``devices`` names each sample's camera), by name."""
    labels, predictions, devices = np.asarray(labels), np.asarray(predictions), np.asarray(devices)
    return {
        device: Rates(**detection_rates(labels[devices == device], predictions[devices == device]).as_dict())
        for device in sorted(set(devices.tolist()))
    }


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


# --- binary detection: operating-point metrics, calibration, intervals -------------------------------

#: Confidence of every interval cfzoo prints.
CONFIDENCE = 0.95
_Z = 1.959963984540054  # the two-sided 95% quantile of the standard normal
#: Bins of the expected calibration error: equal-width on the probability of "manipulated".
ECE_BINS = 10
#: Resamples of the bootstrap intervals (AUC, EER), stratified by class, drawn with the caller's seed.
BOOTSTRAP_RESAMPLES = 500


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion, in percent; (nan, nan) with no trials. Unlike the normal
    approximation it stays inside 0..100 and is honest at 0 and at 100 (0 of 30 gives [0, 11.35])."""
    if total == 0:
        return float("nan"), float("nan")
    share = successes / total
    centre = (share + _Z**2 / (2 * total)) / (1 + _Z**2 / total)
    half = _Z * math.sqrt(share * (1 - share) / total + _Z**2 / (4 * total**2)) / (1 + _Z**2 / total)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def _classes(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    return scores[~labels], scores[labels]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve: the chance that a manipulated sample scores above a pristine one, ties
    counting half (the Mann-Whitney statistic); nan when a class is absent."""
    pristine, manipulated = _classes(labels, scores)
    if not len(pristine) or not len(manipulated):
        return float("nan")
    ordered = np.sort(pristine)
    below = np.searchsorted(ordered, manipulated, side="left")
    not_above = np.searchsorted(ordered, manipulated, side="right")
    return float((below + not_above).sum() / (2.0 * len(pristine) * len(manipulated)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Precision averaged over the recall steps of a ranking by score, each distinct score one threshold (as
    scikit-learn's average_precision_score); nan without manipulated samples."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not labels.any():
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_score]
    called = last_of_score + 1
    recall = true_positives / labels.sum()
    precision = true_positives / called
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) as fractions at every distinct score taken as the threshold (called: score >= it), from (0, 0)
    to (1, 1)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_score]
    false_positives = last_of_score + 1 - true_positives
    tpr = np.r_[0.0, true_positives / max(labels.sum(), 1)]
    fpr = np.r_[0.0, false_positives / max((~labels).sum(), 1)]
    return fpr, tpr


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate, in percent, where the false positive rate equals the false negative rate, interpolated
    linearly between the two ROC points that straddle it; nan when a class is absent."""
    pristine, manipulated = _classes(labels, scores)
    if not len(pristine) or not len(manipulated):
        return float("nan")
    fpr, tpr = roc_points(labels, scores)
    gap = fpr - (1.0 - tpr)  # rises from -1 to +1 along the curve
    after = int(np.argmax(gap >= 0))
    if after == 0 or gap[after] == 0:
        return 100.0 * float(fpr[after])
    before = after - 1
    weight = -gap[before] / (gap[after] - gap[before])
    return 100.0 * float(fpr[before] + weight * (fpr[after] - fpr[before]))


def pristine_threshold(pristine_scores: np.ndarray, fpr: float) -> float:
    """The threshold taken on pristine samples for a target false positive rate (a fraction): the smallest score
    such that at most that share of the pristine samples scores above it."""
    ordered = np.sort(np.asarray(pristine_scores, dtype=np.float64).ravel())
    if not len(ordered):
        return float("nan")
    allowed = int(math.floor(fpr * len(ordered)))
    return float(ordered[len(ordered) - allowed - 1])


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """TPR in percent at the threshold taken on the pristine samples for false positive rate ``fpr`` (a fraction;
    see :func:`pristine_threshold`): manipulated samples scoring above it."""
    pristine, manipulated = _classes(labels, scores)
    if not len(pristine) or not len(manipulated):
        return float("nan")
    return _percent((manipulated > pristine_threshold(pristine, fpr)).sum(), len(manipulated))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error in percent: over ``bins`` equal-width bins of the probability of
    "manipulated", the gap between the mean probability and the share manipulated, weighted by the bin's size."""
    labels = np.asarray(labels).astype(bool).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    if not len(labels):
        return float("nan")
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    gap = 0.0
    for number in range(bins):
        inside = index == number
        if inside.any():
            gap += inside.sum() * abs(probabilities[inside].mean() - labels[inside].mean())
    return 100.0 * gap / len(labels)


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin: its range, samples, mean probability and share manipulated (the reliability diagram)."""
    labels = np.asarray(labels).astype(bool).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    rows = []
    for number in range(bins):
        inside = index == number
        rows.append(
            {
                "low": number / bins,
                "high": (number + 1) / bins,
                "samples": int(inside.sum()),
                "mean_probability": float(probabilities[inside].mean()) if inside.any() else None,
                "manipulated_share": float(labels[inside].mean()) if inside.any() else None,
            }
        )
    return rows


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared difference between the probability of "manipulated" and the label (0..1; lower is better)."""
    labels = np.asarray(labels).astype(bool).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    return float(np.mean((probabilities - labels) ** 2)) if len(labels) else float("nan")


def bootstrap_interval(
    statistic, labels: np.ndarray, scores: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of ``statistic(labels, scores)``, resampling each class with
    replacement (so every resample keeps the class counts), drawn with ``seed``."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    pristine, manipulated = np.flatnonzero(~labels), np.flatnonzero(labels)
    if not len(pristine) or not len(manipulated):
        return float("nan"), float("nan")
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        chosen = np.r_[generator.choice(pristine, len(pristine)), generator.choice(manipulated, len(manipulated))]
        values.append(statistic(labels[chosen], scores[chosen]))
    low, high = np.percentile(values, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def _rounded(value: float, digits: int = 4) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _interval(bounds: tuple[float, float], digits: int = 4) -> list[float | None]:
    return [_rounded(bound, digits) for bound in bounds]


def ranking_metrics(labels: np.ndarray, scores: np.ndarray, seed: int) -> RankingMetrics:
    """The threshold-free and low-FPR metrics of :class:`~cfzoo.results.RankingMetrics` for ``scores`` (higher:
    more manipulated) on samples of ``labels`` (1 = manipulated); the bootstrap is drawn with ``seed``."""
    return RankingMetrics(
        auc=_rounded(roc_auc(labels, scores), 6),
        auc_interval=_interval(bootstrap_interval(roc_auc, labels, scores, seed), 6),
        average_precision=_rounded(average_precision(labels, scores), 6),
        eer=_rounded(equal_error_rate(labels, scores)),
        eer_interval=_interval(bootstrap_interval(equal_error_rate, labels, scores, seed + 1)),
        tpr_at_fpr_1=_rounded(tpr_at_fpr(labels, scores, 0.01)),
        tpr_at_fpr_5=_rounded(tpr_at_fpr(labels, scores, 0.05)),
    )


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, decided: np.ndarray, seed: int) -> BinaryMetrics:
    """Every metric of :class:`~cfzoo.results.BinaryMetrics` for one detector: its ``probabilities`` of
    "manipulated" and its decisions (``decided``, at the model's threshold) on samples of ``labels`` (1 =
    manipulated); the bootstrap is drawn with ``seed``."""
    labels = np.asarray(labels).astype(bool).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    decided = np.asarray(decided).astype(bool).ravel()
    pristine, manipulated = int((~labels).sum()), int(labels.sum())
    rates = detection_rates(labels, decided)
    return BinaryMetrics(
        **ranking_metrics(labels, probabilities, seed).model_dump(),
        balanced_accuracy=_rounded((rates.tpr + 100.0 - rates.fpr) / 2.0),
        fpr_interval=_interval(wilson_interval(int((decided & ~labels).sum()), pristine)),
        tpr_interval=_interval(wilson_interval(int((decided & labels).sum()), manipulated)),
        acc_interval=_interval(wilson_interval(int((decided == labels).sum()), len(labels))),
        ece=_rounded(expected_calibration_error(labels, probabilities)),
        ece_bins=ECE_BINS,
        brier=_rounded(brier_score(labels, probabilities), 6),
        reliability=[ReliabilityBin(**found) for found in reliability_bins(labels, probabilities)],
    )


def tpr_change(
    model: str,
    before: list[np.ndarray],
    after: list[np.ndarray],
    paper: float | None,
    scores: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]] | None = None,
    seed: int = 0,
) -> TprChange:
    """One detector's TPR (percent, with 95% Wilson intervals) from its decisions on manipulated patches before and
    after, each a list of per-batch boolean arrays; with ``scores`` (its probabilities on pristine patches, and on
    the manipulated ones before and after, per batch) also the ranking of each against the pristine ones."""

    def rate(decisions: list[np.ndarray]) -> tuple[float, list[float | None]]:
        called = np.concatenate(decisions) if decisions else np.zeros(0, dtype=bool)
        share = detection_rates(np.ones(len(called), dtype=bool), called).tpr
        return share, _interval(wilson_interval(int(called.sum()), len(called)))

    (before_share, before_bounds), (after_share, after_bounds) = rate(before), rate(after)
    rankings = {}
    if scores is not None:
        pristine = np.asarray(scores[0], dtype=np.float64)
        for name, manipulated in zip(("ranking_before", "ranking_after"), scores[1:]):
            manipulated = np.concatenate(manipulated)
            labels = np.r_[np.ones(len(manipulated)), np.zeros(len(pristine))]
            rankings[name] = ranking_metrics(labels, np.r_[manipulated, pristine], seed)
    return TprChange(
        model=model,
        before=before_share,
        before_interval=before_bounds,
        after=after_share,
        after_interval=after_bounds,
        paper=paper,
        **rankings,
    )
