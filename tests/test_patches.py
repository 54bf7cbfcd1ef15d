import numpy as np
import pytest

from cfzoo.errors import CfzooError
from cfzoo.patches import ImageTooSmallError, check_fits, cut_patches, grid_positions, sample_positions


def test_grid_positions_cover_whole_patches_in_raster_order():
    positions = grid_positions(300, 400, patch_size=128, stride=64)
    rows, cols = np.arange(0, 173, 64), np.arange(0, 273, 64)
    assert len(positions) == len(rows) * len(cols) == 3 * 5
    assert positions[0].tolist() == [0, 0] and positions[1].tolist() == [0, 64]
    assert positions[-1].tolist() == [128, 256]
    assert (positions[:, 0] + 128 <= 300).all() and (positions[:, 1] + 128 <= 400).all()


def test_too_small_images_are_refused_with_their_size():
    with pytest.raises(ImageTooSmallError, match="image is 127x300 pixels, smaller than one 128x128 patch"):
        check_fits(300, 127)
    with pytest.raises(ImageTooSmallError):
        grid_positions(100, 1000)
    assert len(grid_positions(128, 128)) == 1
    with pytest.raises(CfzooError, match="stride"):
        grid_positions(256, 256, stride=0)


def test_sampling_gives_192_distinct_partially_overlapping_patches_on_the_8_pixel_lattice():
    height, width = 600, 840
    positions = sample_positions(height, width, seed=7)
    assert positions.shape == (192, 2)
    assert len({tuple(p) for p in positions}) == 192
    assert (positions % 8 == 0).all()
    assert (positions >= 0).all() and (positions[:, 0] + 128 <= height).all() and (positions[:, 1] + 128 <= width).all()
    # partially overlapping: many pairs overlap, none coincide
    dy = np.abs(positions[:, None, 0] - positions[None, :, 0])
    dx = np.abs(positions[:, None, 1] - positions[None, :, 1])
    overlapping = (dy < 128) & (dx < 128) & ~np.eye(192, dtype=bool)
    assert overlapping.any(axis=1).mean() > 0.9


def test_sampling_is_deterministic_per_seed():
    first = sample_positions(1000, 1500, seed=[3, 99, 0])
    np.testing.assert_array_equal(first, sample_positions(1000, 1500, seed=[3, 99, 0]))
    assert not np.array_equal(first, sample_positions(1000, 1500, seed=[4, 99, 0]))
    positions = first[:, 0] * 10_000 + first[:, 1]
    assert (np.diff(positions) > 0).all()  # raster order


def test_a_small_lattice_yields_all_of_its_positions():
    positions = sample_positions(136, 200, seed=0)  # 2 rows x 10 columns of lattice positions
    assert len(positions) == 20
    np.testing.assert_array_equal(positions, grid_positions(136, 200, stride=8))


def test_cut_patches_copies_the_right_pixels(rng):
    image = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    positions = np.array([[0, 0], [172, 132], [8, 16]])
    patches = cut_patches(image, positions)
    assert patches.shape == (3, 128, 128, 3) and patches.dtype == np.uint8
    np.testing.assert_array_equal(patches[1], image[172:300, 132:260])
    np.testing.assert_array_equal(patches[2], image[8:136, 16:144])
    patches[0, 0, 0] = 0
    assert not np.shares_memory(patches, image)
    with pytest.raises(CfzooError, match="outside"):
        cut_patches(image, np.array([[173, 0]]))
