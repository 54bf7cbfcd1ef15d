"""How large each manipulation's trace is against an attacker's eps: the mean absolute change it makes to a patch.

Every manipulated test patch of a size-keeping task (blur, median, JPEG) has its pristine partner at the same place
in the same photo; the trace of that patch is the mean of |manipulated - pristine| over its pixels and channels, in
gray levels. An L-infinity attack at eps 1 may move every value by one gray level, so a manipulation whose trace is
about that size can be hidden by noise the size of the trace itself (docs/robustness.md, the third recipe).
Resize tasks are left out: their manipulated patches have no pristine partner in place.

python tools/trace_size.py ../shared/data/cameras
python tools/trace_size.py ../shared/data/cameras --task median7 --task blur0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from cfzoo.cli.data import open_dataset  # noqa: E402
from cfzoo.data import PatchSet, PatchSetSpec, build_patch_set, split_devices  # noqa: E402
from cfzoo.manipulations import TASK_IDS, get_manipulation  # noqa: E402

PERCENTILES = (10, 25, 50, 75, 90)
#: Trace sizes (gray levels) whose share of patches below them is printed: the attacks' eps.
EPS_COLUMNS = (1, 2)


def paired_trace_sizes(patch_set: PatchSet, chunk: int = 512) -> np.ndarray:
    """Mean |manipulated - pristine| (gray levels) for every manipulated patch, against its partner in place."""
    place = {
        (int(source), int(row), int(col)): index
        for index, (source, (row, col), label) in enumerate(
            zip(patch_set.sources, patch_set.positions, patch_set.labels)
        )
        if label == 0
    }
    manipulated = np.flatnonzero(patch_set.labels == 1)
    partners = np.array([place[(int(patch_set.sources[i]), *map(int, patch_set.positions[i]))] for i in manipulated])
    sizes = np.empty(len(manipulated))
    for start in range(0, len(manipulated), chunk):
        rows = slice(start, start + chunk)
        changed = np.asarray(patch_set.patches[manipulated[rows]], dtype=np.int16)
        original = np.asarray(patch_set.patches[partners[rows]], dtype=np.int16)
        sizes[rows] = np.abs(changed - original).mean(axis=(1, 2, 3))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--task", action="append", help="repeatable; default every size-keeping task")
    parser.add_argument("--seed", type=int, default=0, help="the device split's seed")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args()

    tasks = args.task or [task for task in TASK_IDS if get_manipulation(task).keeps_size]
    for task in tasks:
        if not get_manipulation(task).keeps_size:
            raise SystemExit(f"{task} resamples the photo, so its patches have no pristine partner in place")
    dataset = open_dataset(args.data, args.cache_dir)
    split = split_devices(dataset.device_names, args.seed)
    print("Trace size: mean |manipulated - pristine| per test patch, gray levels\n")
    header = [f"p{p}" for p in PERCENTILES] + [f"under {eps}" for eps in EPS_COLUMNS]
    print("| task | patches | " + " | ".join(header) + " |")
    print("|---|---:|" + "---:|" * len(header))
    for task in tasks:
        patch_set = build_patch_set(
            dataset, PatchSetSpec(task=task, split="test", seed=args.seed), split, args.cache_dir
        )
        sizes = paired_trace_sizes(patch_set)
        cells = [f"{value:.2f}" for value in np.percentile(sizes, PERCENTILES)]
        cells += [f"{100 * (sizes < eps).mean():.1f}%" for eps in EPS_COLUMNS]
        print(f"| {task} | {len(sizes)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
