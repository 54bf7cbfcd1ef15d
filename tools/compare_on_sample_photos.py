"""Two checkpoint folders of one family side by side on cameras no model saw: scikit-image's bundled photos.

Every patch of the four pseudo-devices (train and test sets of the seed-0 split, 5,376 per task), scored by
each folder's torch checkpoint; prints per task FPR and ACC at the family's fixed threshold, and the AUC, so
a calibration gap (good AUC, poor accuracy at the threshold) shows apart from a separation gap.

Examples (each folder needs the weights, e.g. one that `tools/gpu_train.py unpack` wrote):
python tools/compare_on_sample_photos.py checkpoints/cameras-seed0 /tmp/unpacked/bayar2016-long
python tools/compare_on_sample_photos.py checkpoints/cameras-seed0 checkpoints/robust-scratch-seed0 \
    --variants standard robust --tasks median7 blur1.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from cfzoo.data import CameraDataset, PatchSetSpec, build_patch_set, split_devices  # noqa: E402
from cfzoo.metrics import detection_rates, roc_auc  # noqa: E402
from cfzoo.reports import TABLE1_ORDER  # noqa: E402
from cfzoo.sample_data import sample_dataset_dir  # noqa: E402
from cfzoo.zoo.registry import STANDARD_VARIANT, model_id  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs=2)
    parser.add_argument("--family", default="bayar2016")
    parser.add_argument("--tasks", nargs="+", default=list(TABLE1_ORDER))
    parser.add_argument(
        "--variants", nargs=2, default=[STANDARD_VARIANT] * 2, help="the variant read from each folder, in order"
    )
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args()

    import torch

    from cfzoo.families import get_family, load_checkpoint

    family = get_family(args.family)

    torch.set_num_threads(1)
    dataset = CameraDataset.from_directory(sample_dataset_dir())
    split = split_devices(dataset.device_names, 0)
    columns = (f"{folder.name}:{variant}:FPR/ACC/AUC" for folder, variant in zip(args.folders, args.variants))
    print("task patches " + " ".join(columns))
    for task in args.tasks:
        sets = [
            build_patch_set(dataset, PatchSetSpec(task=task, split=name, seed=0), split, args.cache_dir)
            for name in ("train", "test")
        ]
        cells = []
        for folder, variant in zip(args.folders, args.variants):
            _, detector = load_checkpoint(folder, model_id(args.family, task, variant))
            scores = np.concatenate(
                [family.score_patches(detector, ps, np.arange(len(ps)), lambda *_: None) for ps in sets]
            )
            labels = np.concatenate([np.asarray(ps.labels) for ps in sets])
            rates = detection_rates(labels, scores > family.threshold)
            cells.append(f"{rates.fpr:.1f}/{rates.acc:.1f}/{roc_auc(labels, scores):.3f}")
        print(task, len(labels), *cells, flush=True)


if __name__ == "__main__":
    main()
