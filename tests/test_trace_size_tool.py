"""tools/trace_size.py: how much each manipulation changes a test patch, against its pristine partner in place."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from cfzoo.data import CameraDataset, PatchSetSpec, build_patch_set, split_devices
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "trace_size.py"


def test_a_trace_is_the_change_the_manipulation_made_to_the_photo_at_that_place(sample_root, tmp_path, load_tool):
    dataset = CameraDataset.from_directory(sample_root)
    split = split_devices(dataset.device_names, 0)
    patch_set = build_patch_set(dataset, PatchSetSpec(task="median3", split="test", seed=0), split, tmp_path)
    sizes = load_tool("trace_size").paired_trace_sizes(patch_set, chunk=7)  # several chunks
    manipulated = np.flatnonzero(patch_set.labels == 1)
    assert len(sizes) == len(manipulated) and np.all(sizes >= 0)
    for rank in (0, len(manipulated) // 2, len(manipulated) - 1):  # recomputed from the photo itself
        row = manipulated[rank]
        photo = read_rgb(sample_root / patch_set.images[patch_set.sources[row]].relative_path)
        top, left = patch_set.positions[row]
        place = (slice(top, top + 128), slice(left, left + 128))
        change = apply_manipulation("median3", photo)[place].astype(int) - photo[place].astype(int)
        assert sizes[rank] == np.abs(change).mean()


def test_the_tool_ranks_a_7x7_median_above_a_3x3_one_and_refuses_resizing(sample_root, tmp_path):
    def run(*tasks):
        arguments = [arg for task in tasks for arg in ("--task", task)]
        return subprocess.run(
            [sys.executable, str(TOOL), str(sample_root), *arguments, "--cache-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    done = run("median7", "median3")
    assert done.returncode == 0, done.stderr
    rows = {
        cells[0].strip(): [float(cell.strip().rstrip("%")) for cell in cells[1:]]
        for cells in (line.strip("|").split(" | ") for line in done.stdout.splitlines() if line.startswith("| median"))
    }
    for values in rows.values():
        percentiles = values[1:6]
        assert values[0] > 0 and percentiles == sorted(percentiles)
        assert values[6] <= values[7]  # under 1 gray level is a share of under 2
    assert rows["median7"][3] > rows["median3"][3]  # medians of the trace sizes
    refused = run("resize1.5")
    assert refused.returncode != 0 and "no pristine partner in place" in refused.stderr
