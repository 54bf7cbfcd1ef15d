"""Table I from trained checkpoints: FPR, TPR and ACC of every detector on its test devices' patches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cfzoo.callbacks import StatusCallback
from cfzoo.data import (
    CameraDataset,
    PatchSetSpec,
    balanced_subset,
    build_patch_set,
    split_devices,
)
from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.metrics import detection_rates
from cfzoo.training.run import decision_threshold, load_detector, score_patches


def available_models(
    checkpoint_dir: str | os.PathLike[str], families: Iterable[str], tasks: Iterable[str], need_weights: bool = True
) -> list[tuple[str, str]]:
    """(family, task) pairs that have a training record (and weights, with ``need_weights``), in the given orders."""
    checkpoint_dir = Path(checkpoint_dir)
    suffixes = (".json", ".safetensors") if need_weights else (".json",)
    return [
        (family, task) for task in tasks for family in families
        if all((checkpoint_dir / f"{family}-{task}{suffix}").exists() for suffix in suffixes)
    ]


def recorded_rows(checkpoint_dir: str | os.PathLike[str], models: list[tuple[str, str]]) -> list[dict]:
    """Table I rows as measured at the end of training (no recomputation)."""
    rows = []
    for family, task in models:
        record = json.loads((Path(checkpoint_dir) / f"{family}-{task}.json").read_text())
        if "test" not in record["metrics"]:
            raise CfzooError(
                f"{family}-{task} was trained without evaluation; score it once with: cfzoo evaluate DATA --checkpoints "
                f"{checkpoint_dir} -f {family} -t {task} --save-metrics"
            )
        rows.append(_row(record, record["metrics"]["test"], record["test_patches"]))
    return rows


def evaluate_checkpoints(
    dataset: CameraDataset,
    checkpoint_dir: str | os.PathLike[str],
    models: list[tuple[str, str]],
    cache_dir: str | os.PathLike[str] | None = None,
    max_test_patches: int | None = None,
    on_status: StatusCallback | None = None,
    save_metrics: bool = False,
) -> list[dict]:
    """Score every checkpoint on the test patches of the split it was trained with; with ``save_metrics``, store
    the measured rates in each checkpoint's record (for models trained with ``evaluate=False``)."""
    status = on_status or (lambda stage, done, total: None)
    rows = []
    for family, task in models:
        record, detector = load_detector(checkpoint_dir, f"{family}-{task}")
        if family != "spam":
            from cfzoo.training.loop import training_device

            detector.to(training_device())
        split = split_devices(dataset.device_names, record["seed"], record["split"]["test"])
        test_set = build_patch_set(
            dataset, PatchSetSpec(task=task, split="test", seed=record["seed"]), split, cache_dir,
            on_progress=lambda done, total: status(f"{family}-{task} patches", done, total),
        )
        chosen = balanced_subset(test_set.labels, max_test_patches, record["seed"] + 1)
        scores = score_patches(family, detector, test_set, chosen, lambda stage, done, total: status(f"{family}-{task} {stage}", done, total))
        called = scores > decision_threshold(family)
        rates = detection_rates(test_set.labels[chosen], called)
        devices = np.array([test_set.images[source].device for source in test_set.sources[chosen]])
        by_device = {
            device: detection_rates(test_set.labels[chosen][devices == device], called[devices == device]).as_dict()
            for device in sorted(set(devices))
        }
        rows.append({**_row(record, rates.as_dict(), len(chosen)), "by_device": by_device})
        if save_metrics:
            record["metrics"]["test"] = rates.as_dict()
            record["test_patches"] = len(chosen)
            record["patch_sets"]["test"] = test_set.meta["key"]
            write_atomically(
                Path(checkpoint_dir) / f"{family}-{task}.json", lambda path, record=record: path.write_text(json.dumps(record, indent=2))
            )
    return rows


def _row(record: dict, rates: dict, test_patches: int) -> dict:
    return {
        "family": record["family"],
        "task": record["task"],
        "fpr": rates["fpr"],
        "tpr": rates["tpr"],
        "acc": rates["acc"],
        "test_patches": test_patches,
        "test_devices": record["split"]["test"],
        "train_patches": record["train_patches"],
        "machine": record["machine"]["device"],
    }
