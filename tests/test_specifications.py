"""What cfzoo takes from outside, checked against the outside: the paper's printed tables, AutoAttack's APGD update,
SSIM on 8-bit images, the JPEG block lattice, the rounding of restored images, and the documented verdict band.

Each test states the definition as its source gives it, so a one-line change of a constant or a formula in cfzoo
(a figure of Table II, APGD's momentum, SSIM's data range, ...) fails here rather than passing silently.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from cfzoo.manipulations import apply_manipulation
from cfzoo.metrics import quality_sums
from cfzoo.ops.attacks.common import AttackTarget
from cfzoo.ops.attacks.pgd import apgd
from cfzoo.ops.detect import verdict_of
from cfzoo.ops.restore import load_restorer, restore_patches
from cfzoo.paper import paper_tables
from cfzoo.patches import patch_grid, sample_positions
from cfzoo.zoo.catalog import open_companion, open_detector

MODELS = ("cozzolino2017-median3",)
DOCS = Path(__file__).resolve().parents[1] / "docs"

# Tables I-V as the paper prints them (EUSIPCO 2018, Gragnaniello et al.; rows in the paper's order, columns SPAM,
# Bayar2016, Cozz.2017, Xception; Table I: FPR, TPR, ACC for each), transcribed from its text, not from cfzoo.
PAPER_TABLE_I = """
blur1.1    0.06 100.00 99.97  0.02 99.98 99.98  0.07 100.00 99.96  2.26 99.87 98.81
jpeg70     0.02 100.00 99.99  0.83 99.69 99.43  0.00 99.98 99.99   0.63 98.54 98.95
median7    0.54 99.90 99.68   0.56 99.93 99.69  1.26 100.00 99.37  0.85 99.96 99.56
resize1.5  0.26 100.00 99.87  0.50 99.94 99.72  0.00 99.96 99.98   6.56 99.11 96.28
blur0.5    24.02 99.12 87.55  8.74 97.93 94.59  7.69 99.06 95.69   13.76 88.06 87.15
jpeg90     6.46 88.26 90.90   0.72 90.17 79.72  5.83 94.81 94.49   2.93 90.37 93.72
median3    0.06 99.80 99.87   0.31 99.91 99.80  0.43 99.91 99.74   7.46 99.54 96.04
resize1.01 9.07 99.29 95.11   2.72 99.59 98.44  3.00 99.67 98.33   8.26 98.22 94.98
"""
PAPER_TRANSFER = {
    "table2_fgsm_eps1_target_bayar2016": """
blur1.1 0.19 0.00 0.00 3.51
jpeg70 0.06 0.00 0.08 10.22
median7 99.16 0.00 99.96 26.56
resize1.5 0.02 0.00 0.00 3.28
blur0.5 1.43 0.00 7.67 12.17
jpeg90 0.26 0.02 0.13 18.01
median3 86.65 0.00 45.43 10.49
resize1.01 0.95 0.00 5.92 10.18
""",
    "table3_fgsm_eps1_target_cozzolino2017": """
blur1.1 32.63 32.68 32.19 32.75
jpeg70 0.20 13.51 0.00 17.16
median7 98.78 93.34 88.20 96.71
resize1.5 18.76 18.92 18.91 18.58
blur0.5 1.05 1.66 15.67 4.90
jpeg90 0.02 27.94 0.00 16.42
median3 92.29 99.95 6.43 35.22
resize1.01 0.71 4.49 13.89 9.02
""",
    "table4_fgsm_eps1_target_xception": """
blur1.1 8.33 12.50 0.63 0.00
jpeg70 3.00 38.85 0.81 0.41
median7 99.30 24.74 100.00 0.00
resize1.5 11.56 13.22 1.06 0.00
blur0.5 26.31 30.41 17.20 0.00
jpeg90 2.24 33.46 0.33 17.98
median3 99.83 43.93 100.00 7.50
resize1.01 14.24 27.91 8.70 0.00
""",
}
PAPER_TABLE_V = """
kim median7 70.44 97.78 89.39 89.19
kim median3 19.30 49.20 15.69 91.70
vgg median7 3.74 49.15 18.48 35.56
vgg median3 1.17 0.74 0.78 23.76
"""
FAMILIES = ("spam", "bayar2016", "cozzolino2017", "xception")


def _rows(text):
    return [line.split() for line in text.strip().splitlines()]


def test_cfzoos_copy_of_the_paper_is_the_papers_printed_tables():
    tables = paper_tables()
    detection = tables["table1_detection"]["by_task"]
    for task, *figures in _rows(PAPER_TABLE_I):
        for family, (fpr, tpr, acc) in zip(FAMILIES, np.reshape([float(value) for value in figures], (4, 3))):
            assert detection[task][family] == {"fpr": fpr, "tpr": tpr, "acc": acc}, (task, family)
    for name, text in PAPER_TRANSFER.items():
        by_task = tables[name]["by_task"]
        assert {task: dict(zip(FAMILIES, map(float, figures))) for task, *figures in _rows(text)} == by_task, name
    restoration = tables["table5_gan_restoration_median"]["by_discriminator"]
    for discriminator, task, *figures in _rows(PAPER_TABLE_V):
        assert restoration[discriminator][task] == dict(zip(FAMILIES, map(float, figures)))
    assert tables["psnr_fgsm_eps1_db"] == 48.13


class _Unbeatable(AttackTarget):
    """A real detector and companion, recording every float iterate APGD asks the gradient of; its margin never
    reaches 0, so every patch takes every step."""

    def __init__(self, *arguments, **keywords):
        super().__init__(*arguments, **keywords)
        object.__setattr__(self, "iterates", [])
        object.__setattr__(self, "gradients", [])

    def margin(self, patches):
        return np.ones(len(patches))

    def loss_and_gradient(self, images):
        loss, gradient = super().loss_and_gradient(images)
        self.iterates.append(images.copy())
        self.gradients.append(gradient.copy())
        return loss, gradient


def test_apgd_moves_by_autoattacks_momentum_update(models):
    """Croce and Hein (2020), eq. 2 with alpha = 0.75: z = P(x_k + eta sign(grad)), x_{k+1} = P(x_k + 0.75 (z - x_k)
    + 0.25 (x_k - x_{k-1})), the first step x_1 = P(x_0 + eta sign(grad)) with eta = 2 eps."""
    detector = open_detector("cozzolino2017-median3", providers="cpu")
    target = _Unbeatable((detector,), (open_companion(detector, providers="cpu"),))
    patches = np.stack([apply_manipulation("median3", data.astronaut())[:128, :128], data.coffee()[:128, :128]])
    eps = 8
    apgd(target, patches, eps, iterations=20, seed=3)  # its first checkpoint, where the step may halve, is at 4
    low, high = np.maximum(patches.astype(np.float32) - eps, 0), np.minimum(patches.astype(np.float32) + eps, 255)
    x, signs = target.iterates, [np.sign(gradient) for gradient in target.gradients]
    assert len(x) == 20  # every step taken: the start and one gradient per iteration but the last
    np.testing.assert_allclose(x[1], np.clip(x[0] + 2 * eps * signs[0], low, high), atol=1e-4)
    for k in (1, 2, 3):
        z = np.clip(x[k] + 2 * eps * signs[k], low, high)
        expected = np.clip(x[k] + 0.75 * (z - x[k]) + 0.25 * (x[k] - x[k - 1]), low, high)
        np.testing.assert_allclose(x[k + 1], expected, atol=1e-4)


def test_ssim_of_8_bit_images_uses_their_range_of_255():
    """Wang et al.'s SSIM with C2 = (0.03 L)^2, L = 255 for 8-bit images: a flat gray image against itself with a
    +-1 checkerboard has SSIM = C2 / (var + C2) away from the borders, about 0.983 (with L = 1: about 0.001)."""
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 2 - 1)[..., None]
    noisy = (flat.astype(np.int16) + checker).astype(np.uint8)
    _, ssim, count = quality_sums(flat, noisy)
    c2 = (0.03 * 255) ** 2
    assert count == 1 and ssim == pytest.approx(c2 / (1 + c2), abs=0.005)


def test_restored_images_are_rounded_to_the_nearest_integer_not_truncated(models):
    restorer = load_restorer("median3", "vgg", providers="cpu")
    patches = np.stack([apply_manipulation("median3", data.astronaut())[:128, :128]])
    raw = restorer.restore(patches.transpose(0, 3, 1, 2).astype(np.float32)).transpose(0, 2, 3, 1)
    restored = restore_patches(restorer, patches)
    assert np.array_equal(restored, np.clip(np.rint(raw), 0, 255).astype(np.uint8))
    assert (np.clip(np.floor(raw), 0, 255) != restored).mean() > 0.2  # truncation would differ on many pixels


#: The JPEG block: patches are sampled on its lattice, so each patch's blocks are the image's (docs/contract.md).
JPEG_BLOCK = 8


@pytest.mark.parametrize("height, width", [(300, 301), (512, 512), (1001, 777)])
def test_patches_lie_on_the_jpeg_block_lattice(height, width):
    sampled = sample_positions(height, width, seed=0, count=50)
    grid = patch_grid(height, width)
    assert (sampled % JPEG_BLOCK == 0).all() and (grid % JPEG_BLOCK == 0).all()
    # the lattice reaches the last block that fits: the grid's last row and column end within a block of the edge
    assert height - (grid[:, 0].max() + 128) < JPEG_BLOCK and width - (grid[:, 1].max() + 128) < JPEG_BLOCK


def test_the_verdict_band_is_the_documented_one():
    """docs/detect.md and the measurement behind it (docs/verdict-band.json) fix the band at 25-75% of patches."""
    low, high = json.loads((DOCS / "verdict-band.json").read_text())["band"]
    assert (low, high) == (0.25, 0.75) and "fewer than 25%" in (DOCS / "detect.md").read_text()
    below, above = np.nextafter(low, 0), np.nextafter(high, 1)
    assert [verdict_of(share) for share in (below, low, 0.5, high, above)] == [
        "pristine",
        "uncertain",
        "uncertain",
        "uncertain",
        "manipulated",
    ]
