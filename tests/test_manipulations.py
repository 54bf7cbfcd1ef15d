"""Each manipulation against an independent computation written here from its stated parameters."""

import io
import math

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from cfzoo.errors import CfzooError
from cfzoo.manipulations import (
    MANIPULATIONS,
    TASK_IDS,
    apply_manipulation,
    gaussian_kernel,
    get_manipulation,
    jpeg_encode,
    parameter_table,
)

# ITU-T T.81 Annex K, tables K.1 and K.2, natural (row-major) order.
LUMINANCE = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ]
)
CHROMINANCE = np.array(
    [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38
)


def ijg_table(base, quality):
    """libjpeg's jpeg_quality_scaling and jpeg_add_quant_table, with baseline clamping to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


@pytest.fixture(scope="module")
def small(photo):
    """A real, non-square crop with odd dimensions."""
    return np.ascontiguousarray(photo[100:161, 180:253])


# --- JPEG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task, quality", [("jpeg70", 70), ("jpeg90", 90)])
def test_jpeg_uses_the_ijg_tables_for_quality_q_and_420_subsampling(photo, task, quality):
    assert get_manipulation(task).parameters["quality"] == quality
    encoded = Image.open(io.BytesIO(jpeg_encode(photo, quality)))
    tables = encoded.quantization
    np.testing.assert_array_equal(np.array(tables[0]), ijg_table(LUMINANCE, quality))
    np.testing.assert_array_equal(np.array(tables[1]), ijg_table(CHROMINANCE, quality))
    assert JpegImagePlugin.get_sampling(encoded) == 2  # 4:2:0
    assert "progressive" not in encoded.info


@pytest.mark.parametrize("task, quality", [("jpeg70", 70), ("jpeg90", 90)])
def test_jpeg_task_returns_the_decoded_file(photo, task, quality):
    decoded = np.asarray(Image.open(io.BytesIO(jpeg_encode(photo, quality))).convert("RGB"))
    out = apply_manipulation(task, photo)
    np.testing.assert_array_equal(out, decoded)
    assert 0 < np.abs(out.astype(int) - photo).mean() < (6 if quality == 70 else 3)


# --- median -----------------------------------------------------------------------------------


@pytest.mark.parametrize("task, size", [("median3", 3), ("median7", 7)])
def test_median_equals_a_brute_force_median_with_edge_replication(small, task, size):
    radius = size // 2
    padded = np.pad(small, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    height, width, channels = small.shape
    expected = np.empty_like(small)
    for row in range(height):
        for col in range(width):
            for channel in range(channels):
                expected[row, col, channel] = np.median(padded[row : row + size, col : col + size, channel])
    np.testing.assert_array_equal(apply_manipulation(task, small), expected)


# --- blur -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task, sigma, taps", [("blur1.1", 1.1, 11), ("blur0.5", 0.5, 5)])
def test_blur_kernel_is_the_stated_truncated_gaussian(task, sigma, taps):
    parameters = get_manipulation(task).parameters
    assert parameters["sigma"] == sigma and parameters["kernel_size"] == taps
    kernel = gaussian_kernel(sigma)
    radius = taps // 2
    expected = np.array([math.exp(-(x * x) / (2 * sigma * sigma)) for x in range(-radius, radius + 1)])
    np.testing.assert_allclose(kernel, expected / expected.sum(), rtol=1e-12)


@pytest.mark.parametrize("task, sigma", [("blur1.1", 1.1), ("blur0.5", 0.5)])
def test_blur_equals_a_direct_2d_convolution(small, task, sigma):
    radius = math.ceil(4 * sigma)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    padded = np.pad(small.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    height, width, _ = small.shape
    direct = np.zeros(small.shape)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            direct += weights[dy, dx] * padded[dy : dy + height, dx : dx + width]
    expected = np.clip(np.rint(direct), 0, 255)
    difference = np.abs(apply_manipulation(task, small).astype(float) - expected)
    # float32 separable vs float64 direct: only values within a rounding hair of .5 may differ, by 1.
    assert difference.max() <= 1
    assert (difference == 0).mean() > 0.995


# --- resize -----------------------------------------------------------------------------------


def keys_cubic(x, a=-0.5):
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def resample_axis(values, out_size, axis):
    """Bicubic resampling along one axis, pixel centres at i + 0.5, weights renormalised at the borders."""
    in_size = values.shape[axis]
    scale = out_size / in_size
    support = 2.0 * max(1.0, 1.0 / scale)
    rows = []
    for out_index in range(out_size):
        centre = (out_index + 0.5) / scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), in_size)
        taps = np.arange(first, last)
        weights = keys_cubic((taps - centre + 0.5) / max(1.0, 1.0 / scale))
        weights /= weights.sum()
        rows.append(np.tensordot(weights, np.take(values, taps, axis=axis), axes=([0], [axis])))
    stacked = np.stack(rows, axis=0)
    return np.clip(np.rint(np.moveaxis(stacked, 0, axis)), 0, 255)


@pytest.mark.parametrize("task, scale", [("resize1.5", 1.5), ("resize1.01", 1.01)])
def test_resize_gives_the_stated_size_and_bicubic_values(small, task, scale):
    height, width, _ = small.shape
    out = apply_manipulation(task, small)
    assert out.shape == (round(height * scale), round(width * scale), 3)
    assert get_manipulation(task).output_size(height, width) == out.shape[:2]
    expected = resample_axis(resample_axis(small.astype(np.float64), out.shape[1], axis=1), out.shape[0], axis=0)
    difference = np.abs(out.astype(float) - expected)
    assert difference.max() <= 1  # Pillow works in fixed point
    assert (difference == 0).mean() > 0.97


def test_resize_of_a_large_photo(photo):
    assert apply_manipulation("resize1.01", photo).shape == (517, 517, 3)
    assert apply_manipulation("resize1.5", photo).shape == (768, 768, 3)


# --- every task -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASK_IDS)
def test_every_task_is_a_pure_deterministic_uint8_function(small, task):
    before = small.copy()
    first = apply_manipulation(task, small)
    second = apply_manipulation(task, small)
    np.testing.assert_array_equal(small, before)
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert not np.array_equal(first[:61, :73], small)  # it changed something


def test_task_ids_and_parameter_table():
    assert TASK_IDS == ("blur1.1", "blur0.5", "jpeg70", "jpeg90", "median7", "median3", "resize1.5", "resize1.01")
    table = parameter_table()
    assert [row["task"] for row in table] == list(TASK_IDS)
    assert {row["difficulty"] for row in table} == {"easy", "challenging"}
    assert table[0]["kernel_size"] == 11 and table[2]["chroma_subsampling"] == "4:2:0"
    assert table[6]["interpolation"].startswith("bicubic")
    assert all(m.parameters for m in MANIPULATIONS.values())


def test_unknown_task_and_wrong_input_are_clear_errors(small):
    with pytest.raises(CfzooError, match="unknown task 'blur2'; choose one of: blur1.1"):
        get_manipulation("blur2")
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        apply_manipulation("median3", small.astype(np.float32))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        apply_manipulation("median3", small[:, :, 0])
