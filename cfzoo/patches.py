"""Cutting 128x128 patches: a regular grid with a stride, and the paper's 192 sampled patches per image.

Positions are (row, column) of a patch's top-left pixel. Sampled positions lie on a lattice of
multiples of :data:`SAMPLING_STEP` (8) so that every patch meets the 8x8 JPEG block grid of the whole
image at the same phase, as grid patches at detection time do (their strides are multiples of 8 too).

Grids (:func:`patch_grid`): patch corners start at 0 and advance by ``stride`` (default 128, a
non-overlapping grid) along rows and columns. Where the last patch stops short of the right or bottom
edge, one more column or row of patches is added as close to that edge as the 8-pixel lattice allows
(it overlaps its neighbour), so at most 7 pixels at the right and bottom are seen by no patch. Every
corner stays on the lattice of multiples of 8 (strides too are multiples of 8) because the detectors
were trained on patches cut there, in phase with the 8x8 JPEG blocks, and some are phase-sensitive:
on a JPEG Q=70 Pixel 5 photo, Bayar2016-jpeg70 flags 100% of the patches at even offsets from the
block grid and 0% at odd ones.
"""

from __future__ import annotations

import numpy as np

from cfzoo.errors import CfzooError

PATCH_SIZE = 128
PATCHES_PER_IMAGE = 192
SAMPLING_STEP = 8
DEFAULT_STRIDE = PATCH_SIZE


class ImageTooSmallError(CfzooError):
    """The image cannot hold one patch."""


def check_fits(height: int, width: int, patch_size: int = PATCH_SIZE, source: object = None) -> None:
    """ImageTooSmallError (naming ``source``, a file, when given) for an image that cannot hold one patch."""
    if height < patch_size or width < patch_size:
        raise ImageTooSmallError(
            ("" if source is None else f"{source}: ")
            + f"image is {width}x{height} pixels, smaller than one {patch_size}x{patch_size} patch; "
            f"use an image at least {patch_size} pixels on each side"
        )


def grid_positions(height: int, width: int, patch_size: int = PATCH_SIZE, stride: int = PATCH_SIZE) -> np.ndarray:
    """Top-left corners of a regular grid, raster order, as an int64 array [K, 2].

    Rows and columns start at 0 and advance by ``stride`` while a whole patch fits; the strip of
    fewer than ``stride`` pixels left at the bottom and right is not covered.
    """
    if stride < 1:
        raise CfzooError(f"stride must be at least 1, got {stride}")
    check_fits(height, width, patch_size)
    rows = np.arange(0, height - patch_size + 1, stride)
    cols = np.arange(0, width - patch_size + 1, stride)
    grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([grid_rows.ravel(), grid_cols.ravel()], axis=1).astype(np.int64)


def sample_positions(
    height: int,
    width: int,
    seed: int | np.random.SeedSequence | list[int],
    count: int = PATCHES_PER_IMAGE,
    patch_size: int = PATCH_SIZE,
    step: int = SAMPLING_STEP,
) -> np.ndarray:
    """``count`` distinct, partially overlapping patch positions drawn uniformly from the step lattice.

    The same seed gives the same positions. An image whose lattice has fewer than ``count``
    positions yields all of them. Returned in raster order, int64 [K, 2].
    """
    if count < 1:
        raise CfzooError(f"count must be at least 1, got {count}")
    lattice = grid_positions(height, width, patch_size, stride=step)
    if len(lattice) <= count:
        return lattice
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(lattice), size=count, replace=False))
    return lattice[chosen]


def cut_patches(image: np.ndarray, positions: np.ndarray, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """Copy the patches at ``positions`` out of an H x W x C image: [K, patch, patch, C], same dtype."""
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    height, width = image.shape[:2]
    if len(positions) and (
        positions.min() < 0 or positions[:, 0].max() + patch_size > height or positions[:, 1].max() + patch_size > width
    ):
        raise CfzooError(f"a patch position falls outside the {width}x{height} image")
    out = np.empty((len(positions), patch_size, patch_size, *image.shape[2:]), dtype=image.dtype)
    for index, (row, col) in enumerate(positions):
        out[index] = image[row : row + patch_size, col : col + patch_size]
    return out


def patch_grid(height: int, width: int, stride: int = DEFAULT_STRIDE, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """Top-left corners [K, 2] (row, column) of patches that cover the image, in raster order.

    Corners advance by ``stride`` from 0; where the grid falls short of the bottom/right edge, a last
    row/column is added at the lattice position nearest the edge (see the module's notes). Raises
    ImageTooSmallError below one patch.
    """
    check_stride(stride, patch_size)
    check_fits(height, width, patch_size)
    rows, columns = (_covering_starts(length, stride, patch_size) for length in (height, width))
    grid_rows, grid_columns = np.meshgrid(rows, columns, indexing="ij")
    return np.stack([grid_rows.ravel(), grid_columns.ravel()], axis=1)


def check_stride(stride: int, patch_size: int = PATCH_SIZE) -> None:
    if not (1 <= stride <= patch_size and stride % SAMPLING_STEP == 0):
        raise CfzooError(
            f"stride must be a multiple of {SAMPLING_STEP} (the JPEG block lattice the detectors were trained on) "
            f"from {SAMPLING_STEP} to {patch_size} pixels, got {stride}"
        )


def _covering_starts(length: int, stride: int, patch_size: int) -> np.ndarray:
    starts = np.arange(0, length - patch_size + 1, stride, dtype=np.int64)
    edge = (length - patch_size) // SAMPLING_STEP * SAMPLING_STEP
    if starts[-1] < edge:
        starts = np.append(starts, edge)
    return starts
