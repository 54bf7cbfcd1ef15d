"""What training any detector shares: the plan, the device split, the training-data digest, cached SPAM
features, the loss summary and the machine. The run itself, which depends on the family, is
:func:`cfzoo.families.train_detector`.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfzoo.callbacks import StatusCallback
from cfzoo.data import (
    CameraDataset,
    DeviceSplit,
    PatchSet,
    held_out_split,
    split_devices,
)
from cfzoo.files import write_atomically
from cfzoo.zoo.registry import STANDARD_VARIANT, model_id

SVM_REGULARISATION = 1.0


@dataclass(frozen=True)
class TrainingPlan:
    """Everything that decides a trained detector besides the photos."""

    family: str
    task: str
    seed: int = 0
    steps: int | None = None  # None: the family's default (:attr:`cfzoo.families.NetworkFamily.schedule`)
    batch_size: int | None = None
    learning_rate: float | None = None
    dihedral_augmentation: bool | None = None  # None: the family's default
    pristine_noise: float | None = None  # None: the family's default
    zoomed_train_photos: bool | None = (
        None  # resize tasks: keep camera-upsampled train photos; None: the family's default
    )
    max_train_patches: int | None = None  # a seeded, class-balanced subset of the train patch set
    max_test_patches: int | None = None
    test_devices: tuple[str, ...] | None = None
    #: False: train only, on a machine that may hold only the train devices' photos; ``test_devices`` must then
    #: name the held-out devices, and ``cfzoo evaluate --save-metrics`` adds the test metrics later.
    evaluate: bool = True
    #: ``standard``; ``wild``: trained on photos laundered as a platform would (:data:`WILD_LAUNDERING`) and
    #: tested on the test devices both as they are and laundered alike; ``robust``: the standard model fine-tuned
    #: (or, :attr:`from_scratch`, a new network trained) adversarially (:mod:`cfzoo.training.adversarial`).
    variant: str = STANDARD_VARIANT
    #: The checkpoint folder holding the standard ``<family>-<task>`` a network variant fine-tunes: a robust one
    #: unless :attr:`from_scratch` (default: the folder it is written to), a wild one when given (else it trains as
    #: the standard one).
    start_from: str | None = None
    #: A robust variant trained adversarially from the network's initialisation, on the family's full schedule,
    #: instead of fine-tuned from the standard model: the features a fine-tuned model keeps were learnt without an
    #: attacker, and may be ones no fine-tuning makes robust (docs/robustness.md).
    from_scratch: bool = False
    #: A robust variant trained with TRADES's objective at this beta (the weight of the adversarial term against
    #: the clean one) instead of Madry's (:class:`cfzoo.training.adversarial.AdversarialTraining`).
    trades_beta: float | None = None
    #: The eps (gray levels) a robust variant's attack in training draws from per patch; None: the default,
    #: :attr:`cfzoo.training.adversarial.AdversarialTraining.eps`.
    adversary_eps: tuple[int, ...] | None = None
    #: Networks: the decay of the moving average of the weights that becomes the trained model
    #: (:attr:`cfzoo.training.loop.NetworkSchedule.weight_average`); 0: the last iterate.
    weight_average: float = 0.0
    #: Bayar2016: multiply its layers' widths by this (a network trained from its initialisation); 1: as shipped.
    network_width: int = 1

    @property
    def model_id(self) -> str:
        return model_id(self.family, self.task, self.variant)


#: The laundering (:data:`cfzoo.manipulations.LAUNDERINGS`) a wild variant's train set and second test set go through.
WILD_LAUNDERING = "wild"
#: The variants ``cfzoo train`` makes.
TRAINED_VARIANTS = (STANDARD_VARIANT, "wild", "robust")


def plan_split(plan: TrainingPlan, dataset: CameraDataset) -> DeviceSplit:
    """The device split a plan trains and tests on."""
    if plan.evaluate:
        return split_devices(dataset.device_names, plan.seed, plan.test_devices)
    return held_out_split(dataset.device_names, plan.test_devices or (), plan.seed)


def training_data_digest(patch_set: PatchSet) -> str:
    """sha256 over the sorted content digests of the photos a detector was trained on."""
    return hashlib.sha256("".join(sorted(image.sha256 for image in patch_set.images)).encode()).hexdigest()


def spam_features_of(patch_set: PatchSet, rows: np.ndarray, status: StatusCallback) -> np.ndarray:
    """SPAM features of the chosen patches, computed once per patch set and cached beside it."""
    from cfzoo.training.spam import SPAM_DIMENSION, SPAM_Q, spam_features

    cache = patch_set.directory / f"spam_q{SPAM_Q:g}.npy"
    if cache.exists():
        return np.load(cache, mmap_mode="r")[rows]
    total = len(patch_set)
    features = np.empty((total, SPAM_DIMENSION), dtype=np.float64)
    chunk = 1024
    for start in range(0, total, chunk):
        features[start : start + chunk] = spam_features(patch_set.patches[start : start + chunk])
        status("spam features", min(start + chunk, total), total)
    write_atomically(cache, lambda path: _save_array(features, path))
    return features[rows]


class RowView:
    """Index a memory-mapped patch array through a row subset without copying it."""

    def __init__(self, patches: np.ndarray, rows: np.ndarray):
        self.patches, self.rows = patches, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.patches[self.rows[index]]  # rows ascend, so sorted indices read the memory map in order


# --- helpers ----------------------------------------------------------------------------------


def loss_summary(losses: list[float], points: int = 50) -> dict:
    if not losses:
        return {}
    chunks = np.array_split(np.asarray(losses), min(points, len(losses)))
    return {"first": losses[0], "last": losses[-1], "curve": [round(float(chunk.mean()), 5) for chunk in chunks]}


def _save_array(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as stream:  # np.save(path) would append ".npy" to the temporary name
        np.save(stream, array)


def training_machine() -> dict:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {"device": device, "torch": torch.__version__, "python": platform.python_version()}
