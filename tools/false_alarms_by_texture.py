"""Where a detector's false alarms fall: FPR on the pristine test patches per test device and texture quintile.

Texture is the mean absolute difference between a patch's gray levels and their 3x3 median, the fine structure a
median filter removes (flat sky: under 0.5 gray levels; foliage: over 2.5). The quintile edges are taken over all
pristine test patches of the task, so each column holds a fifth of them. Robust detectors that lose clean accuracy
to false alarms show here on which patches they lose it.

Examples (ONNX detectors by id or file; NAME=REF names a column):
python tools/false_alarms_by_texture.py ../shared/data/cameras bayar2016-median7 bayar2016-median7-robust
python tools/false_alarms_by_texture.py ../shared/data/cameras trades6=/tmp/zoo/models/bayar2016-median7-robust.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy.ndimage import median_filter  # noqa: E402

from cfzoo.cli.data import open_dataset  # noqa: E402
from cfzoo.data import PatchSetSpec, build_patch_set, split_devices  # noqa: E402
from cfzoo.ops.scoring import called_manipulated  # noqa: E402
from cfzoo.zoo.catalog import open_detector  # noqa: E402

QUINTILES = 5


def texture(patches: np.ndarray) -> np.ndarray:
    """Mean |gray - median3(gray)| per [N, H, W, 3] uint8 patch, in gray levels."""
    gray = patches.astype(np.float32).mean(axis=3)
    return np.array([np.abs(plane - median_filter(plane, 3)).mean() for plane in gray])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("models", nargs="+", help="ids or .onnx files, optionally NAME=REF")
    parser.add_argument("--task", default="median7")
    parser.add_argument("--seed", type=int, default=0, help="the device split's seed")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args()

    dataset = open_dataset(args.data, args.cache_dir)
    split = split_devices(dataset.device_names, args.seed)
    patch_set = build_patch_set(
        dataset, PatchSetSpec(task=args.task, split="test", seed=args.seed), split, args.cache_dir
    )
    rows = np.flatnonzero(patch_set.labels == 0)
    patches = np.asarray(patch_set.patches[rows])
    devices = patch_set.devices_of(rows)
    levels = texture(patches)
    edges = np.quantile(levels, np.linspace(0, 1, QUINTILES + 1))
    quintile = np.clip(np.searchsorted(edges, levels, side="right") - 1, 0, QUINTILES - 1)

    names = sorted(set(devices.tolist()))
    ranges = [f"{low:.2f}-{high:.2f}" for low, high in zip(edges[:-1], edges[1:])]
    print(f"FPR (percent) of {args.task} on pristine test patches, by test device and texture (gray levels)\n")
    print("| model | device | " + " | ".join(ranges) + " | all |")
    print("|---|---|" + "---:|" * (QUINTILES + 1))
    for name in names:
        counts = [str(int(((devices == name) & (quintile == q)).sum())) for q in range(QUINTILES)]
        print(f"| (patches) | {name} | " + " | ".join(counts) + f" | {int((devices == name).sum())} |")
    for model in args.models:
        label, _, reference = model.rpartition("=")
        _, called = called_manipulated(open_detector(reference, task=args.task), patches)
        for name in names:
            on_device = devices == name
            cells = [
                f"{100 * called[on_device & (quintile == q)].mean():.1f}"
                if (on_device & (quintile == q)).any()
                else "-"
                for q in range(QUINTILES)
            ]
            print(
                f"| {label or reference} | {name} | " + " | ".join(cells) + f" | {100 * called[on_device].mean():.1f} |"
            )


if __name__ == "__main__":
    main()
