"""Speed of the vectorised SPAM extraction against a direct per-pixel Python loop, timed in one run.

    python benchmarks/spam.py

Both compute SRM's s3_spam14hv (see cfzoo/training/spam.py) on the same 128x128 crops of
scikit-image's astronaut; the script checks they agree before it prints patches/second and the ratio.
"""

from __future__ import annotations

import time

import numpy as np

from cfzoo.images import read_rgb
from cfzoo.sample_data import skimage_data_dir
from cfzoo.training.spam import SPAM_DIMENSION, spam_features, symmetry_classes

PATCH_SIZE = 128
LOOP_PATCHES = 4
VECTORISED_PATCHES = 1000
VECTORISED_REPEATS = 5
T = 2
# Bin edges 1.5 and 4.5 (q = 3) in thousandths, the unit the loop computes gray in.
EDGES_IN_THOUSANDTHS = (1500, 4500)


def loop_bin(residual: int) -> int:
    magnitude = sum(abs(residual) >= edge for edge in EDGES_IN_THOUSANDTHS)
    return magnitude if residual >= 0 else -magnitude


def loop_spam_features(patch: np.ndarray) -> np.ndarray:
    """s3_spam14hv of one RGB uint8 patch, one pixel at a time in plain Python."""
    rgb = patch.tolist()
    height, width = len(rgb), len(rgb[0])
    gray = [[299 * r + 587 * g + 114 * b for r, g, b in row] for row in rgb]  # thousandths, exact
    horizontal = [[0] * (width - 4) for _ in range(height - 4)]
    vertical = [[0] * (width - 4) for _ in range(height - 4)]
    for i in range(2, height - 2):
        for j in range(2, width - 2):
            horizontal[i - 2][j - 2] = loop_bin(gray[i][j - 1] - 3 * gray[i][j] + 3 * gray[i][j + 1] - gray[i][j + 2])
            vertical[i - 2][j - 2] = loop_bin(gray[i + 1][j] - 3 * gray[i][j] + 3 * gray[i - 1][j] - gray[i - 2][j])

    classes = symmetry_classes().tolist()
    rows, columns = height - 4, width - 4

    def count_along_rows(residual: list[list[int]]) -> list[int]:
        counts = [0] * 169
        for i in range(rows):
            for j in range(columns - 3):
                code = sum((residual[i][j + k] + T) * 5**k for k in range(4))
                counts[classes[code]] += 1
        return counts

    def count_along_columns(residual: list[list[int]]) -> list[int]:
        counts = [0] * 169
        for i in range(rows - 3):
            for j in range(columns):
                code = sum((residual[i + k][j] + T) * 5**k for k in range(4))
                counts[classes[code]] += 1
        return counts

    runs_along_rows = rows * (columns - 3)
    runs_along_columns = (rows - 3) * columns
    features = [0.0] * SPAM_DIMENSION
    for offset, (row_residual, column_residual) in enumerate([(horizontal, vertical), (vertical, horizontal)]):
        row_counts = count_along_rows(row_residual)
        column_counts = count_along_columns(column_residual)
        for class_index in range(169):
            features[169 * offset + class_index] = (
                row_counts[class_index] / runs_along_rows + column_counts[class_index] / runs_along_columns
            )
    return np.array(features)


def astronaut_patches(count: int, seed: int = 0) -> np.ndarray:
    photo = read_rgb(skimage_data_dir() / "astronaut.png")
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, photo.shape[0] - PATCH_SIZE + 1, count)
    lefts = rng.integers(0, photo.shape[1] - PATCH_SIZE + 1, count)
    return np.stack([photo[top : top + PATCH_SIZE, left : left + PATCH_SIZE] for top, left in zip(tops, lefts)])


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    patches = astronaut_patches(LOOP_PATCHES)

    start = time.perf_counter()
    loop_features = np.stack([loop_spam_features(patch) for patch in patches])
    loop_seconds = time.perf_counter() - start
    vectorised_features = spam_features(patches)
    np.testing.assert_allclose(vectorised_features, loop_features, rtol=0, atol=1e-12)

    vectorised_seconds = best_time(lambda: spam_features(patches), VECTORISED_REPEATS)
    many_patches = astronaut_patches(VECTORISED_PATCHES, seed=1)
    many_seconds = best_time(lambda: spam_features(many_patches), VECTORISED_REPEATS)

    loop_rate = LOOP_PATCHES / loop_seconds
    vectorised_rate = LOOP_PATCHES / vectorised_seconds
    rows = [
        (f"per-pixel Python loop, {LOOP_PATCHES} patches", loop_rate),
        (f"vectorised, the same {LOOP_PATCHES} patches (best of {VECTORISED_REPEATS})", vectorised_rate),
        (f"vectorised, {VECTORISED_PATCHES} patches (best of {VECTORISED_REPEATS})", VECTORISED_PATCHES / many_seconds),
    ]
    print(f"s3_spam14hv of {PATCH_SIZE}x{PATCH_SIZE} RGB patches (loop and vectorised agree to 1e-12)")
    for label, rate in rows:
        print(f"  {label:<44} {rate:10.1f} patches/s")
    print(f"  {'speed ratio on the same patches':<44} {vectorised_rate / loop_rate:10.0f}x")


if __name__ == "__main__":
    main()
