"""SRM's s3_spam14hv in numpy (cfzoo.training.spam), checked against a brute-force reference and sealwatch."""

import itertools
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from cfzoo.images import LUMA_WEIGHTS
from cfzoo.training import spam

T = 2
RUN_LENGTH = 4


# --- brute-force reference: plain loops over pixels, exact rational arithmetic -------------------


def reference_gray(patch: np.ndarray) -> list[list[Fraction]]:
    """Exact gray of one patch: 0.299 R + 0.587 G + 0.114 B as a rational, or the float gray value itself."""
    if patch.ndim == 3:
        return [[Fraction(299 * int(r) + 587 * int(g) + 114 * int(b), 1000) for r, g, b in row] for row in patch]
    return [[Fraction(float(value)) for value in row] for row in patch]


def reference_bin(residual: Fraction, q: float) -> int:
    """clip(round(residual / q), -T, T), halves rounded away from zero (MATLAB's round)."""
    scaled = residual / Fraction(q)
    magnitude = math.floor(abs(scaled) + Fraction(1, 2))
    return int(math.copysign(min(magnitude, T), scaled))


def reference_quantised_residuals(patch: np.ndarray, q: float) -> tuple[list[list[int]], list[list[int]]]:
    """SRM's R (rightward) and U (upward) third-order residuals on the interior [2:H-2, 2:W-2], quantised."""
    x = reference_gray(patch)
    height, width = len(x), len(x[0])
    horizontal, vertical = [], []
    for i in range(2, height - 2):
        horizontal_row, vertical_row = [], []
        for j in range(2, width - 2):
            right = -x[i][j + 2] + 3 * x[i][j + 1] - 3 * x[i][j] + x[i][j - 1]
            up = -x[i - 2][j] + 3 * x[i - 1][j] - 3 * x[i][j] + x[i + 1][j]
            horizontal_row.append(reference_bin(right, q))
            vertical_row.append(reference_bin(up, q))
        horizontal.append(horizontal_row)
        vertical.append(vertical_row)
    return horizontal, vertical


def orbit(run: tuple[int, ...]) -> set[tuple[int, ...]]:
    negated = tuple(-value for value in run)
    return {run, negated, run[::-1], negated[::-1]}


def reference_class_of_run() -> dict[tuple[int, ...], int]:
    """SRM's symm4 numbering: all-zero run first, then orbits in order of first lexicographic appearance."""
    class_of_run = {(0, 0, 0, 0): 0}
    for run in itertools.product(range(-T, T + 1), repeat=RUN_LENGTH):
        if run not in class_of_run:
            next_class = max(class_of_run.values()) + 1
            for member in orbit(run):
                class_of_run[member] = next_class
    return class_of_run


def runs_along_rows(grid: list[list[int]]) -> list[tuple[int, ...]]:
    return [tuple(row[j : j + RUN_LENGTH]) for row in grid for j in range(len(row) - RUN_LENGTH + 1)]


def runs_along_columns(grid: list[list[int]]) -> list[tuple[int, ...]]:
    columns = [list(column) for column in zip(*grid)]
    return runs_along_rows(columns)


def reference_spam(patch: np.ndarray, q: float = 3.0) -> np.ndarray:
    """spam14h = hist(R along rows) + hist(U along columns), spam14v = the orthogonal pairs; each hist sums to 1."""
    horizontal, vertical = reference_quantised_residuals(patch, q)
    class_of_run = reference_class_of_run()

    def class_histogram(runs: list[tuple[int, ...]]) -> np.ndarray:
        histogram = np.zeros(169)
        for run in runs:
            histogram[class_of_run[run]] += 1
        return histogram / len(runs)

    spam14h = class_histogram(runs_along_rows(horizontal)) + class_histogram(runs_along_columns(vertical))
    spam14v = class_histogram(runs_along_rows(vertical)) + class_histogram(runs_along_columns(horizontal))
    return np.concatenate([spam14h, spam14v])


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_patches(photo) -> np.ndarray:
    """Four 24x24 RGB crops of scikit-image's astronaut: face, suit, flag, background."""
    corners = [(100, 200), (300, 150), (380, 30), (20, 20)]
    return np.stack([photo[top : top + 24, left : left + 24] for top, left in corners])


# --- agreement with the brute-force reference ---------------------------------------------------


def test_real_patches_match_reference(real_patches):
    features = spam.spam_features(real_patches)
    for patch, patch_features in zip(real_patches, features):
        np.testing.assert_allclose(patch_features, reference_spam(patch), rtol=0, atol=1e-12)


def test_quantised_residuals_match_reference(real_patches):
    horizontal, vertical = spam.quantised_residuals(real_patches)
    assert horizontal.dtype == vertical.dtype == np.int8
    assert horizontal.shape == vertical.shape == (4, 20, 20)
    for index, patch in enumerate(real_patches):
        reference_horizontal, reference_vertical = reference_quantised_residuals(patch, 3.0)
        np.testing.assert_array_equal(horizontal[index], reference_horizontal)
        np.testing.assert_array_equal(vertical[index], reference_vertical)


def test_non_square_rgb_patch_matches_reference(photo):
    patch = photo[250:270, 240:271]
    np.testing.assert_allclose(spam.spam_features(patch[None])[0], reference_spam(patch), rtol=0, atol=1e-12)


def test_random_float_gray_matches_reference(rng):
    patches = rng.uniform(0, 255, (3, 16, 19))
    for q in (3.0, 1.7):
        features = spam.spam_features(patches, q=q)
        for patch, patch_features in zip(patches, features):
            np.testing.assert_allclose(patch_features, reference_spam(patch, q), rtol=0, atol=1e-12)


def test_ties_of_integer_gray_round_away_from_zero_like_reference(rng):
    # With q = 2 the bin edges 1 and 3 are integers, so integer residuals land on them often.
    patches = rng.integers(0, 6, (2, 14, 14)).astype(np.float64)
    for patch, patch_features in zip(patches, spam.spam_features(patches, q=2.0)):
        np.testing.assert_allclose(patch_features, reference_spam(patch, 2.0), rtol=0, atol=1e-12)


def test_rgb_residual_on_a_bin_edge_is_settled_exactly():
    # RGB (12, 0, 8) has luma exactly 4.5 = 1.5 q: on black, the four residuals reaching it are +-4.5 and
    # +-13.5, all bin +-2 (the ties rounded away from zero).
    patch = np.zeros((1, 9, 9, 3), dtype=np.uint8)
    patch[0, 4, 4] = (12, 0, 8)
    horizontal, vertical = spam.quantised_residuals(patch)
    np.testing.assert_array_equal(horizontal[0, 2, 0:4], [-2, 2, -2, 2])
    np.testing.assert_array_equal(vertical[0, 1:5, 2], [2, -2, 2, -2])
    assert np.count_nonzero(horizontal) == np.count_nonzero(vertical) == 4
    np.testing.assert_allclose(spam.spam_features(patch)[0], reference_spam(patch[0]), rtol=0, atol=1e-12)


def test_luma_weights_are_exact_in_thousandths():
    # spam computes gray as (299 R + 587 G + 114 B) / 1000; that must be cfzoo's luma.
    assert tuple(round(weight * 1000) for weight in LUMA_WEIGHTS) == (299, 587, 114)
    assert np.allclose(np.array([299, 587, 114]) / 1000, LUMA_WEIGHTS, rtol=0, atol=1e-15)


def test_gray_is_the_unrounded_luma(real_patches):
    expected = real_patches.astype(np.float64) @ np.array(LUMA_WEIGHTS)
    gray = spam.gray(real_patches)
    assert gray.dtype == np.float64 and gray.shape == (4, 24, 24)
    np.testing.assert_allclose(gray, expected, rtol=1e-15, atol=1e-12)
    assert not np.array_equal(gray, np.round(gray))


# --- symmetry classes -------------------------------------------------------------------------


def run_of_code(code: int) -> tuple[int, ...]:
    return tuple((code // 5**position) % 5 - T for position in range(RUN_LENGTH))


def code_of_run(run: tuple[int, ...]) -> int:
    return sum((value + T) * 5**position for position, value in enumerate(run))


def test_symmetry_classes_are_the_169_orbits_under_negation_and_reversal():
    classes = spam.symmetry_classes()
    assert classes.shape == (625,) and not classes.flags.writeable
    assert sorted(set(classes.tolist())) == list(range(169))
    assert classes[code_of_run((0, 0, 0, 0))] == 0
    for code in range(625):
        run = run_of_code(code)
        # closed under the symmetries ...
        assert {classes[code_of_run(member)] for member in orbit(run)} == {classes[code]}
        # ... and nothing else: a class is exactly one orbit
        assert {run_of_code(other) for other in np.flatnonzero(classes == classes[code])} == orbit(run)


def test_symmetry_class_numbering_is_srm_order():
    classes = spam.symmetry_classes()
    for run, class_index in reference_class_of_run().items():
        assert classes[code_of_run(run)] == class_index


# --- feature properties -----------------------------------------------------------------------


def test_features_shape_range_and_normalisation(photo):
    patches = np.stack([photo[top : top + 64, left : left + 48] for top, left in [(0, 0), (200, 300), (400, 100)]])
    features = spam.spam_features(patches)
    assert features.shape == (3, spam.SPAM_DIMENSION) == (3, 338) and features.dtype == np.float64
    assert np.isfinite(features).all() and (features >= 0).all()
    # spam14h and spam14v each add two histograms normalised to sum 1
    np.testing.assert_allclose(features[:, :169].sum(axis=1), 2.0, rtol=1e-13)
    np.testing.assert_allclose(features[:, 169:].sum(axis=1), 2.0, rtol=1e-13)


def test_batch_equals_patch_by_patch(rng):
    patches = rng.integers(0, 256, (21, 12, 13, 3), dtype=np.uint8)  # more than one internal chunk
    batch = spam.spam_features(patches)
    for patch, patch_features in zip(patches, batch):
        np.testing.assert_array_equal(spam.spam_features(patch[None])[0], patch_features)


def test_uint8_and_integer_float_rgb_give_identical_features(real_patches):
    np.testing.assert_array_equal(spam.spam_features(real_patches), spam.spam_features(real_patches.astype(np.float32)))


def test_empty_batch():
    assert spam.spam_features(np.zeros((0, 16, 16, 3), dtype=np.uint8)).shape == (0, 338)


def test_adding_a_constant_changes_nothing(real_patches, rng):
    # The taps sum to zero; with integer values every step is exact, so the features are identical.
    brighter = real_patches.astype(np.float64) + 37.0
    np.testing.assert_array_equal(spam.spam_features(brighter), spam.spam_features(real_patches))
    gray = rng.integers(0, 200, (2, 16, 16)).astype(np.float64)
    np.testing.assert_array_equal(spam.spam_features(gray + 55.0), spam.spam_features(gray))


def test_negative_image_gives_identical_features(real_patches):
    # 255 - x negates every residual; sign symmetry maps each run to its own class.
    np.testing.assert_array_equal(spam.spam_features(255 - real_patches), spam.spam_features(real_patches))


def test_horizontal_mirror_is_invariant_up_to_one_border_column(real_patches):
    # Not exactly invariant, by SRM's definition: the rightward residual R of the mirrored image is
    # -R of the original one column further left, so the interior [2, W-3] sees original R columns
    # [1, W-4]. The upward residual U just mirrors. Reversal + sign symmetry make the rest equal.
    mirrored = real_patches[:, :, ::-1]
    horizontal, vertical = spam.quantised_residuals(real_patches)
    mirrored_horizontal, mirrored_vertical = spam.quantised_residuals(mirrored)
    np.testing.assert_array_equal(mirrored_vertical, vertical[:, :, ::-1])
    np.testing.assert_array_equal(mirrored_horizontal[:, :, :-1], -horizontal[:, :, :-1][:, :, ::-1])
    # So the features differ only through the runs touching one residual column: along rows one run per
    # row swapped at each end, along columns one column of W - 4.
    width = real_patches.shape[2]
    bound = 2 * 2 / (width - 7) + 2 * 1 / (width - 4)
    difference = np.abs(spam.spam_features(mirrored) - spam.spam_features(real_patches)).sum(axis=1)
    assert (difference <= bound + 1e-12).all()
    assert (difference > 0).any()  # the border effect is real on these crops


def test_module_imports_without_torch():
    code = "import sys, cfzoo.training.spam; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patches", "message"),
    [
        (np.zeros((16, 16, 3), dtype=np.uint8), "gray patches"),  # one image, no batch axis
        (np.zeros((2, 16, 16, 4), dtype=np.uint8), "RGB \\[N, H, W, 3\\] or gray"),
        (np.zeros((16, 16)), "RGB \\[N, H, W, 3\\] or gray"),
        (np.zeros((2, 16, 16, 3), dtype=np.int16), "uint8 or float"),
        (np.zeros((2, 16, 16), dtype=np.uint8), "must be float"),
        (np.zeros((2, 7, 16)), "at least 8x8"),
        (np.zeros((2, 16, 7, 3), dtype=np.uint8), "at least 8x8"),
        (np.full((1, 8, 8), np.nan), "NaN or infinite"),
    ],
)
def test_bad_patches_raise_value_error(patches, message):
    with pytest.raises(ValueError, match=message):
        spam.spam_features(patches)


def test_smallest_patch_has_one_run_per_direction():
    features = spam.spam_features(np.arange(64, dtype=np.float64).reshape(1, 8, 8) ** 2)
    np.testing.assert_allclose(features[0, :169].sum(), 2.0)


@pytest.mark.parametrize("q", [0.0, -3.0, float("nan")])
def test_bad_quantisation_step_raises(q):
    with pytest.raises(ValueError, match="quantisation step"):
        spam.spam_features(np.zeros((1, 8, 8)), q=q)


# --- sealwatch (dev only) ---------------------------------------------------------------------


@pytest.mark.parametrize("q_multiplier", [1, 1.5, 2])
def test_matches_sealwatch_on_integer_gray(photo, q_multiplier):
    srm = pytest.importorskip("sealwatch.srm")
    # sealwatch truncates its input to integers, so both get the same integer-valued gray patch.
    gray_patch = np.round(spam.gray(photo[None, 180:308, 200:328]))[0]
    name = f"s3_spam14hv_q{str(q_multiplier).replace('.', '')}"
    expected = srm.extract(gray_patch, qs=[[], [], [q_multiplier], [], []])[name]
    assert expected.shape == (338,)
    actual = spam.spam_features(gray_patch[None], q=3.0 * q_multiplier)[0]
    # sealwatch stores the histograms in float32 before symmetrising
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_matches_sealwatch_on_non_square_gray(rng):
    srm = pytest.importorskip("sealwatch.srm")
    gray_patch = rng.integers(0, 256, (37, 45)).astype(np.float64)
    expected = srm.extract(gray_patch, qs=[[], [], [1], [], []])["s3_spam14hv_q1"]
    np.testing.assert_allclose(spam.spam_features(gray_patch[None])[0], expected, rtol=0, atol=1e-6)


def test_symmetry_classes_match_sealwatch_symm4():
    symm = pytest.importorskip("sealwatch.srm.symm")
    classes = spam.symmetry_classes()
    for code in range(625):
        one_hot = np.zeros((5, 5, 5, 5))
        one_hot[tuple(value + T for value in run_of_code(code))] = 1.0  # axis k = position k
        assert np.flatnonzero(symm.symm4(one_hot, T=2)).tolist() == [classes[code]]
