import math

import numpy as np
import pytest

from cfzoo.metrics import (
    ECE_BINS,
    average_precision,
    binary_metrics,
    bootstrap_interval,
    brier_score,
    detection_rates,
    equal_error_rate,
    expected_calibration_error,
    pristine_threshold,
    psnr,
    psnr_from_mse,
    reliability_bins,
    roc_auc,
    roc_points,
    tpr_at_fpr,
    wilson_interval,
)


def test_rates_from_a_hand_counted_example():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    predicted = np.array([0, 1, 0, 0, 1, 1, 0, 1, 1, 1])
    rates = detection_rates(labels, predicted)
    assert rates.fpr == pytest.approx(25.0)  # 1 of 4 pristine flagged
    assert rates.tpr == pytest.approx(100 * 5 / 6)  # 5 of 6 manipulated caught
    assert rates.acc == pytest.approx(80.0)  # 8 of 10 right
    assert (rates.pristine, rates.manipulated) == (4, 6)


def test_balanced_accuracy_matches_the_paper_relation():
    # With as many pristine as manipulated samples, ACC = (100 - FPR + TPR) / 2, as in Table I.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 500)
    predicted = rng.random(1000) < np.where(labels == 1, 0.9, 0.2)
    rates = detection_rates(labels, predicted)
    assert rates.acc == pytest.approx((100 - rates.fpr + rates.tpr) / 2)


def test_missing_class_gives_nan_not_a_crash():
    rates = detection_rates(np.ones(5), np.ones(5))
    assert math.isnan(rates.fpr) and rates.tpr == 100.0


def test_psnr_of_unit_mse_is_the_papers_48_13_db():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, size=(64, 64, 3)).astype(np.uint8)
    signs = rng.choice([-1, 1], size=image.shape)
    attacked = (image.astype(int) + signs).astype(np.uint8)
    assert psnr(image, attacked) == pytest.approx(48.13, abs=0.005)


def test_psnr_identical_is_infinite_and_shape_mismatch_raises():
    image = np.zeros((8, 8, 3), np.uint8)
    assert psnr(image, image) == math.inf
    with pytest.raises(ValueError):
        psnr(image, image[:4])


def test_psnr_from_mse_matches_psnr_and_the_definition():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(16, 16, 3)).astype(np.uint8)
    noisy = np.clip(image.astype(int) + rng.integers(-3, 4, size=image.shape), 0, 255).astype(np.uint8)
    mse = np.mean((image.astype(float) - noisy) ** 2)
    assert psnr_from_mse(mse) == psnr(image, noisy) == pytest.approx(10 * math.log10(255**2 / mse))
    assert psnr_from_mse(1.0) == pytest.approx(48.1308, abs=1e-4)
    assert psnr_from_mse(0.25, peak=1.0) == pytest.approx(10 * math.log10(4))
    assert psnr_from_mse(0.0) == math.inf


def test_psnr_uses_its_peak_and_names_both_shapes():
    reference, distorted = np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.5)
    assert psnr(reference, distorted, peak=1.0) == pytest.approx(10 * math.log10(1 / 0.25))
    with pytest.raises(ValueError, match=r"shapes differ: \(4, 4, 3\) and \(2, 4, 3\)"):
        psnr(reference, distorted[:2])


# --- binary detection metrics ------------------------------------------------------------------------


def _scored(seed: int, size: int):
    """Labels and scores with ties (rounded), both classes present."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size)
    labels[:2] = [0, 1]
    return labels, np.round(rng.normal(0.8 * labels, 1.0), 1)


@pytest.mark.parametrize("seed", range(4))
def test_ranking_metrics_match_scikit_learn(seed):
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

    labels, scores = _scored(seed, 37 + 90 * seed)
    probabilities = 1.0 / (1.0 + np.exp(-scores))
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert brier_score(labels, probabilities) == pytest.approx(brier_score_loss(labels, probabilities), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    ours = roc_points(labels, scores)
    np.testing.assert_allclose(ours[0], fpr)
    np.testing.assert_allclose(ours[1], tpr)


def test_equal_error_rate_and_low_fpr_operating_points_from_hand_made_scores():
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0  # separable
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == 50.0  # one of each class on the wrong side
    # 100 pristine scores 0..99: at FPR 1% one may score above the threshold, so it is 98
    labels = [0] * 100 + [1] * 10
    scores = [*range(100), *[98.0] * 5, *[98.5] * 5]
    assert pristine_threshold(np.arange(100), 0.01) == 98 and pristine_threshold(np.arange(100), 0.05) == 94
    assert tpr_at_fpr(labels, scores, 0.01) == 50.0  # 98.5 is above, 98 is not
    assert tpr_at_fpr(labels, scores, 0.05) == 100.0
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3])) and math.isnan(equal_error_rate([0, 0], [0.2, 0.3]))


def test_wilson_intervals_are_honest_at_the_edges():
    low, high = wilson_interval(0, 30)
    assert low == 0.0 and high == pytest.approx(11.35, abs=0.01)  # a worst case of 0 on 30 patches
    low, high = wilson_interval(15, 30)
    assert low == pytest.approx(100 - high) and 30 < low < 50 < high < 70
    assert wilson_interval(30, 30)[1] == pytest.approx(100.0) and all(
        math.isnan(bound) for bound in wilson_interval(0, 0)
    )
    # more trials, a narrower interval around the same share
    assert np.diff(wilson_interval(50, 100)) > np.diff(wilson_interval(500, 1000))


def test_bootstrap_intervals_are_seeded_and_hold_the_estimate():
    labels, scores = _scored(7, 300)
    first = bootstrap_interval(roc_auc, labels, scores, seed=3, resamples=200)
    assert first == bootstrap_interval(roc_auc, labels, scores, seed=3, resamples=200)
    assert first != bootstrap_interval(roc_auc, labels, scores, seed=4, resamples=200)
    assert first[0] < roc_auc(labels, scores) < first[1]


def test_calibration_error_is_zero_when_calibrated_and_counts_overconfidence():
    rng = np.random.default_rng(0)
    probabilities = rng.random(200_000)
    labels = rng.random(200_000) < probabilities  # calibrated by construction
    assert expected_calibration_error(labels, probabilities) < 0.5
    # always 0.95 sure, right half the time: a gap of 45 points
    assert expected_calibration_error([0, 1] * 50, [0.95] * 100) == pytest.approx(45.0)
    bins = reliability_bins([0, 1] * 50, [0.95] * 100)
    assert len(bins) == ECE_BINS and bins[-1]["samples"] == 100 and bins[-1]["manipulated_share"] == 0.5


def test_binary_metrics_gather_every_figure_with_intervals():
    labels, scores = _scored(11, 400)
    probabilities = 1.0 / (1.0 + np.exp(-scores))
    decided = probabilities > 0.5
    metrics = binary_metrics(labels, probabilities, decided, seed=0)
    rates = detection_rates(labels, decided)
    assert metrics.auc == pytest.approx(roc_auc(labels, scores), abs=1e-6)  # the sigmoid keeps the ranking
    assert metrics.auc_interval[0] < metrics.auc < metrics.auc_interval[1]
    assert metrics.tpr_interval[0] <= rates.tpr <= metrics.tpr_interval[1]
    assert metrics.balanced_accuracy == pytest.approx((rates.tpr + 100 - rates.fpr) / 2, abs=1e-4)
    assert metrics.tpr_at_fpr_1 <= metrics.tpr_at_fpr_5 and metrics.ece_bins == ECE_BINS
    assert metrics == binary_metrics(labels, probabilities, decided, seed=0)  # same seed, same numbers
