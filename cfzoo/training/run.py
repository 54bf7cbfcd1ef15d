"""Train one detector on a camera dataset and evaluate it on the test devices.

Writes ``<family>-<task>.safetensors`` (weights; the SVM as plain arrays) and ``<family>-<task>.json``
(hyper-parameters, split, patch-set keys, training-data digest, loss curve, test metrics) atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cfzoo import __version__
from cfzoo.callbacks import StatusCallback
from cfzoo.data import (
    CameraDataset,
    DeviceSplit,
    PatchSet,
    PatchSetSpec,
    balanced_subset,
    build_patch_set,
    held_out_split,
    split_devices,
)
from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.manipulations import get_manipulation
from cfzoo.metrics import detection_rates
from cfzoo.training import FAMILIES, require_training_extra

SVM_REGULARISATION = 1.0


@dataclass(frozen=True)
class TrainingPlan:
    """Everything that decides a trained detector besides the photos."""

    family: str
    task: str
    seed: int = 0
    steps: int | None = None  # None: the family's default
    batch_size: int | None = None
    learning_rate: float | None = None
    dihedral_augmentation: bool | None = None  # None: the family's default
    pristine_noise: float | None = None  # None: the family's default
    zoomed_train_photos: bool | None = None  # resize tasks: keep camera-upsampled train photos; None: the family's default
    max_train_patches: int | None = None  # a seeded, class-balanced subset of the train patch set
    max_test_patches: int | None = None
    test_devices: tuple[str, ...] | None = None
    #: False: train only, on a machine that may hold only the train devices' photos; ``test_devices`` must then
    #: name the held-out devices, and ``cfzoo evaluate --save-metrics`` adds the test metrics later.
    evaluate: bool = True

    @property
    def model_id(self) -> str:
        return f"{self.family}-{self.task}"


#: Per-family defaults, sized for the 2-core CPU budget (about two hours for the 24 small models).
DEFAULT_SCHEDULES = {
    "bayar2016": {"steps": 1200, "batch_size": 32, "learning_rate": 1e-3, "dihedral_augmentation": True, "pristine_noise": 0.0},
    "cozzolino2017": {"steps": 300, "batch_size": 32, "learning_rate": 3e-4, "dihedral_augmentation": False, "pristine_noise": 0.0},
    "xception": {"steps": 600, "batch_size": 16, "learning_rate": 1e-3, "dihedral_augmentation": True, "pristine_noise": 2.0},
}

#: Families whose resize train sets keep the photos the camera upsampled itself, unless told otherwise.
#: Measured for bayar2016 on resize1.5 (see docs/table1.md); the others reach 100% without.
ZOOMED_TRAIN_PHOTOS_BY_DEFAULT = frozenset({"bayar2016"})


def train_detector(
    plan: TrainingPlan,
    dataset: CameraDataset,
    out_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    on_status: StatusCallback | None = None,
) -> dict:
    """Build the patch sets, train, evaluate on the test devices, save; returns the JSON record."""
    require_training_extra()
    if plan.family not in FAMILIES:
        raise CfzooError(f"unknown family {plan.family!r}; choose one of: {', '.join(FAMILIES)}")
    status = on_status or (lambda stage, done, total: None)
    split = plan_split(plan, dataset)
    patch_sets = {
        name: build_patch_set(
            dataset, patch_set_spec(plan, name), split, cache_dir,
            on_progress=lambda done, total, name=name: status(f"patches {name}", done, total),
        )
        for name in (("train", "test") if plan.evaluate else ("train",))
    }
    train_rows = balanced_subset(patch_sets["train"].labels, plan.max_train_patches, plan.seed)

    started = time.perf_counter()
    detector, hyper, losses = _TRAINERS[plan.family](plan, patch_sets["train"], train_rows, status)
    training_seconds = time.perf_counter() - started

    metrics, test_patches = {}, 0
    if plan.evaluate:
        test_set = patch_sets["test"]
        test_rows = balanced_subset(test_set.labels, plan.max_test_patches, plan.seed + 1)
        scores = score_patches(plan.family, detector, test_set, test_rows, status)
        metrics = {"test": detection_rates(test_set.labels[test_rows], scores > decision_threshold(plan.family)).as_dict()}
        test_patches = len(test_rows)
    record = {
        "id": plan.model_id,
        "family": plan.family,
        "task": plan.task,
        "cfzoo_version": __version__,
        "seed": plan.seed,
        "split": {"train": list(split.train), "test": list(split.test), "seed": split.seed},
        "patch_sets": {name: patch_set.meta["key"] for name, patch_set in patch_sets.items()},
        "training_data_sha256": training_data_digest(patch_sets["train"]),
        "zoomed_train_photos": patch_set_spec(plan, "train").keep_zoomed_photos,
        "train_patches": len(train_rows),
        "test_patches": test_patches,
        "hyperparameters": hyper,
        "threshold": decision_threshold(plan.family),
        "score": "svm decision function" if plan.family == "spam" else "softmax probability of class 1",
        "loss": loss_summary(losses),
        "metrics": metrics,
        "training_seconds": round(training_seconds, 1),
        "machine": training_machine(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / f"{plan.model_id}.safetensors", lambda path: _save_detector(detector, path))
    write_atomically(out_dir / f"{plan.model_id}.json", lambda path: path.write_text(json.dumps(record, indent=2)))
    return record


def plan_split(plan: TrainingPlan, dataset: CameraDataset) -> DeviceSplit:
    """The device split a plan trains and tests on."""
    if plan.evaluate:
        return split_devices(dataset.device_names, plan.seed, plan.test_devices)
    return held_out_split(dataset.device_names, plan.test_devices or (), plan.seed)


def patch_set_spec(plan: TrainingPlan, split_name: str) -> PatchSetSpec:
    """The patch set a plan trains (``"train"``) or is tested (``"test"``) on."""
    # Test sets always leave camera-upsampled photos out of resize tasks; only the train set may keep them.
    zoomed = plan.family in ZOOMED_TRAIN_PHOTOS_BY_DEFAULT if plan.zoomed_train_photos is None else plan.zoomed_train_photos
    keep_zoomed = zoomed and get_manipulation(plan.task).needs_unresampled_photos and split_name == "train"
    return PatchSetSpec(task=plan.task, split=split_name, seed=plan.seed, keep_zoomed_photos=keep_zoomed)


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
        features[start:start + chunk] = spam_features(patch_set.patches[start:start + chunk])
        status("spam features", min(start + chunk, total), total)
    write_atomically(cache, lambda path: _save_array(features, path))
    return features[rows]


# --- families ---------------------------------------------------------------------------------


def decision_threshold(family: str) -> float:
    """Scores above this mean manipulated: the SVM's decision function at 0, networks' probability at 0.5."""
    return 0.0 if family == "spam" else 0.5


def score_patches(family: str, detector, patch_set: PatchSet, rows: np.ndarray, status: StatusCallback) -> np.ndarray:
    """The detector's score for the chosen patches of a patch set (see :func:`decision_threshold`)."""
    if family == "spam":
        return detector.decision_function(spam_features_of(patch_set, rows, status))
    from cfzoo.training.loop import manipulated_probability

    return manipulated_probability(
        detector, _RowView(patch_set.patches, rows), on_batch=lambda done, total: status("test", done, total)
    )


def new_network(family: str, hyperparameters: dict | None = None):
    """An untrained torch detector of a CNN family: the current design, or the one a checkpoint's recorded
    ``hyperparameters`` describe."""
    if family == "bayar2016":
        from cfzoo.training.models import Bayar2016

        if hyperparameters is None:
            return Bayar2016()
        return Bayar2016(residual_clip=hyperparameters.get("residual_clip"))
    if family == "cozzolino2017":
        from cfzoo.training.cozzolino import Cozzolino2017

        return Cozzolino2017()
    if family == "xception":
        from cfzoo.training.models import Xception

        if hyperparameters is None:
            return Xception()
        # records from before the clip was a parameter used 8
        return Xception(input_filter=hyperparameters.get("input_filter"), residual_clip=hyperparameters.get("residual_clip", 8.0))
    raise CfzooError(f"{family!r} is not a network family; choose one of: bayar2016, cozzolino2017, xception")


def load_detector(checkpoint_dir: str | os.PathLike[str], model_id: str) -> tuple[dict, object]:
    """(training record, detector) of a checkpoint written by :func:`train_detector`."""
    checkpoint_dir = Path(checkpoint_dir)
    record_path = checkpoint_dir / f"{model_id}.json"
    weights_path = checkpoint_dir / f"{model_id}.safetensors"
    if not record_path.exists() or not weights_path.exists():
        raise CfzooError(f"no checkpoint {model_id} in {checkpoint_dir}; train it with: cfzoo train DATA -f FAMILY -t TASK --out {checkpoint_dir}")
    record = json.loads(record_path.read_text())
    if record["family"] == "spam":
        from safetensors.numpy import load_file

        from cfzoo.training.svm import LinearSVM

        return record, LinearSVM.from_arrays(load_file(str(weights_path)))
    from safetensors.torch import load_file

    network = new_network(record["family"], record.get("hyperparameters", {}))
    network.load_state_dict(load_file(str(weights_path)))
    return record, network.eval()


def _train_spam(plan, train_set, rows, status):
    from cfzoo.training.svm import fit_linear_svm

    features = spam_features_of(train_set, rows, status)
    status("svm", 0, 1)
    svm = fit_linear_svm(features, train_set.labels[rows], SVM_REGULARISATION, plan.seed)
    status("svm", 1, 1)
    hyper = {"classifier": "LinearSVC (squared hinge, L2) on standardised features", "C": SVM_REGULARISATION}
    return svm, hyper, []


def _train_network(plan, train_set, rows, status):
    import torch

    from cfzoo.training.loop import NetworkSchedule, train_network, training_device

    torch.manual_seed(plan.seed)
    if plan.family == "cozzolino2017":
        from cfzoo.training.cozzolino import Cozzolino2017
        from cfzoo.training.svm import fit_linear_svm

        features = spam_features_of(train_set, rows, status)
        model = Cozzolino2017.from_linear_svm(fit_linear_svm(features, train_set.labels[rows], SVM_REGULARISATION, plan.seed))
        extra_hyper = {"initialisation": "fully connected layer from the linear SVM on hard SPAM", **model.describe()}
    else:
        model = new_network(plan.family)
        extra_hyper = model.describe()
    defaults = DEFAULT_SCHEDULES[plan.family]
    schedule = NetworkSchedule(
        steps=plan.steps or defaults["steps"],
        batch_size=plan.batch_size or defaults["batch_size"],
        learning_rate=plan.learning_rate or defaults["learning_rate"],
        dihedral_augmentation=(
            defaults["dihedral_augmentation"] if plan.dihedral_augmentation is None else plan.dihedral_augmentation
        ),
        pristine_noise=defaults["pristine_noise"] if plan.pristine_noise is None else plan.pristine_noise,
    )
    model.to(training_device())
    losses = train_network(
        model, _RowView(train_set.patches, rows), train_set.labels[rows], schedule, plan.seed,
        on_step=lambda step, total, loss: status("train", step, total),
    )
    hyper = {**asdict(schedule), "optimiser": "AdamW, linear warm-up, cosine decay", **extra_hyper}
    return model, hyper, losses


class _RowView:
    """Index a memory-mapped patch array through a row subset without copying it."""

    def __init__(self, patches: np.ndarray, rows: np.ndarray):
        self.patches, self.rows = patches, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.patches[self.rows[index]]  # rows ascend, so sorted indices read the memory map in order


_TRAINERS = {"spam": _train_spam, "bayar2016": _train_network, "cozzolino2017": _train_network, "xception": _train_network}


# --- helpers ----------------------------------------------------------------------------------


def loss_summary(losses: list[float], points: int = 50) -> dict:
    if not losses:
        return {}
    chunks = np.array_split(np.asarray(losses), min(points, len(losses)))
    return {"first": losses[0], "last": losses[-1], "curve": [round(float(chunk.mean()), 5) for chunk in chunks]}


def _save_detector(detector, path: Path) -> None:
    if hasattr(detector, "arrays"):  # the linear SVM: plain arrays
        from safetensors.numpy import save_file

        save_file(detector.arrays(), str(path))
        return
    from safetensors.torch import save_file

    save_file({name: tensor.detach().cpu().contiguous() for name, tensor in detector.state_dict().items()}, str(path))


def _save_array(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as stream:  # np.save(path) would append ".npy" to the temporary name
        np.save(stream, array)


def training_machine() -> dict:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {"device": device, "torch": torch.__version__, "python": platform.python_version()}
