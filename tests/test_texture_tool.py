"""tools/false_alarms_by_texture.py: false alarms per test device and texture quintile."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from cfzoo.data import CameraDataset, PatchSetSpec, build_patch_set, split_devices
from cfzoo.manipulations import apply_manipulation

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "false_alarms_by_texture.py"


def test_texture_is_zero_on_a_flat_patch_and_falls_under_a_median_filter(load_tool):
    tool = load_tool("false_alarms_by_texture")
    rng = np.random.default_rng(0)
    noisy = np.clip(128 + rng.normal(0, 3, (1, 128, 128, 3)), 0, 255).astype(np.uint8)
    flat = np.full((1, 128, 128, 3), 90, np.uint8)
    filtered = apply_manipulation("median7", noisy[0])[None]
    levels = tool.texture(np.concatenate([flat, noisy, filtered]))
    assert levels[0] == 0 and levels[1] > 1 and levels[2] < levels[1] / 2


def test_the_tool_splits_the_pristine_test_patches_into_devices_and_quintiles(sample_root, tmp_path):
    done = subprocess.run(
        [sys.executable, str(TOOL), str(sample_root), "embedded=bayar2016-median7", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.strip("|").split(" | ") for line in done.stdout.splitlines() if line.startswith("| (patches)")]
    counts = {cells[1].strip(): [int(cell) for cell in cells[2:]] for cells in lines}
    dataset = CameraDataset.from_directory(sample_root)
    split = split_devices(dataset.device_names, 0)
    patch_set = build_patch_set(dataset, PatchSetSpec(task="median7", split="test", seed=0), split, tmp_path)
    pristine = patch_set.devices_of(np.flatnonzero(patch_set.labels == 0))
    assert sorted(counts) == sorted(split.test)
    for device, row in counts.items():
        assert sum(row[:-1]) == row[-1] == int((pristine == device).sum())
    per_quintile = np.sum([row[:-1] for row in counts.values()], axis=0)
    assert per_quintile.sum() == len(pristine) and per_quintile.max() - per_quintile.min() <= 2
    for cells in (line.strip("|").split(" | ") for line in done.stdout.splitlines() if line.startswith("| embedded")):
        rates = [0.0 if cell.strip() == "-" else float(cell) for cell in cells[2:]]
        row = counts[cells[1].strip()]
        # the quintiles' false alarms add up to the device's
        assert abs(sum(rate * count for rate, count in zip(rates[:-1], row[:-1])) / row[-1] - rates[-1]) < 0.2
