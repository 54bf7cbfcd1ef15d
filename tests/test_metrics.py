import math

import numpy as np
import pytest

from cfzoo.metrics import detection_rates, psnr, psnr_from_mse


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
