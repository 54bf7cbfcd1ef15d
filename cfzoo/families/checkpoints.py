"""Checkpoints of any family: train one on a camera dataset and evaluate it on the test devices, load it back,
score saved checkpoints again (Table I).

A checkpoint is ``<family>-<task>.safetensors`` (weights; the SVM as plain arrays) and ``<family>-<task>.json``
(hyper-parameters, split, patch-set keys, training-data digest, loss curve, test metrics), both written atomically.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from cfzoo._version import __version__
from cfzoo.callbacks import StatusCallback
from cfzoo.data import CameraDataset, PatchSetSpec, balanced_subset, build_patch_set, split_devices
from cfzoo.errors import CfzooError
from cfzoo.families.registry import FAMILIES, get_family
from cfzoo.files import write_atomically
from cfzoo.manipulations import LAUNDERINGS, get_manipulation
from cfzoo.metrics import detection_rates, rates_by_device
from cfzoo.results import CheckpointRow, Rates
from cfzoo.training import require_training_extra
from cfzoo.training.run import (
    WILD_LAUNDERING,
    TrainingPlan,
    loss_summary,
    plan_split,
    training_data_digest,
    training_machine,
)
from cfzoo.zoo.registry import STANDARD_VARIANT, model_id


def train_detector(
    plan: TrainingPlan,
    dataset: CameraDataset,
    out_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    on_status: StatusCallback | None = None,
    resume: bool = False,
    snapshot_every: int = 100,
) -> dict:
    """Build the patch sets, train, evaluate on the test devices, save; returns the JSON record.

    Networks save a snapshot (``<id>.snapshot.safetensors`` in ``out_dir``) every ``snapshot_every`` steps; with
    ``resume`` training continues from it. It is removed once the checkpoint is written.
    """
    require_training_extra()
    from cfzoo.training.loop import Snapshots

    family = get_family(plan.family)
    if plan.variant == "robust" and not family.adversarial_training:
        trainable = " or ".join(name for name, other in FAMILIES.items() if other.adversarial_training)
        raise CfzooError(
            f"{plan.family} is not trained by gradient descent, so it has no robust variant; train {trainable} robust"
        )
    if plan.start_from is not None and (plan.variant == "standard" or not family.adversarial_training):
        raise CfzooError(
            "only the networks' wild and robust variants fine-tune a standard model; leave out --start-from"
        )
    if plan.from_scratch and (plan.variant != "robust" or plan.start_from is not None):
        raise CfzooError(
            "only a robust variant trains from scratch instead of fine-tuning (wild does without --start-from); "
            "leave out --from-scratch or --start-from"
        )
    if plan.trades_beta is not None and (plan.variant != "robust" or plan.trades_beta <= 0):
        raise CfzooError(
            "TRADES weighs a robust variant's adversarial term: give --trades-beta a number above 0 with --variant robust"
        )
    if plan.adversary_eps is not None and (
        plan.variant != "robust" or not plan.adversary_eps or min(plan.adversary_eps) < 1
    ):
        raise CfzooError(
            "the attack in training draws eps from whole gray levels: give --adversary-eps 1 or more (repeatable) "
            "with --variant robust"
        )
    if not 0 <= plan.weight_average < 1:
        raise CfzooError(f"--weight-average is a decay in [0, 1), got {plan.weight_average:g}; 0.995 is typical")
    if plan.weight_average and not family.adversarial_training:
        raise CfzooError(f"{plan.family} is not trained by gradient descent, so it has no weights to average")
    if plan.network_width != 1:
        if not family.widens:
            widened = " or ".join(name for name, other in FAMILIES.items() if other.widens)
            raise CfzooError(f"{plan.family} has no --width; only {widened} can be widened")
        if plan.start_from is not None or (plan.variant == "robust" and not plan.from_scratch):
            raise CfzooError(
                "a wider network starts from its initialisation: leave out --start-from, or add --from-scratch"
            )
        if plan.network_width < 1:
            raise CfzooError(f"--width multiplies the layers' widths: give 1 or more, got {plan.network_width}")
    if plan.variant == "robust" and plan.start_from is None and not plan.from_scratch:  # the standard model beside it
        plan = replace(plan, start_from=str(out_dir))
    status = on_status or (lambda stage, done, total: None)
    split = plan_split(plan, dataset)
    patch_sets = {
        name: build_patch_set(
            dataset,
            patch_set_spec(plan, name),
            split,
            cache_dir,
            on_progress=lambda done, total, name=name: status(f"patches {name}", done, total),
        )
        for name in patch_set_names(plan)
    }
    train_rows = balanced_subset(patch_sets["train"].labels, plan.max_train_patches, plan.seed)

    out_dir = Path(out_dir)
    snapshots = Snapshots(snapshot_path(out_dir, plan.model_id), snapshot_every, resume)
    started = time.perf_counter()
    history: dict[str, list[float]] = {}
    detector, hyper, losses = family.train(plan, patch_sets["train"], train_rows, status, snapshots, history)
    training_seconds = time.perf_counter() - started + snapshots.earlier_seconds

    metrics, test_patches = {}, 0
    for name in patch_set_names(plan)[1:]:
        test_set = patch_sets[name]
        test_rows = balanced_subset(test_set.labels, plan.max_test_patches, plan.seed + 1)
        scores = family.score_patches(
            detector, test_set, test_rows, lambda stage, done, total, name=name: status(name, done, total)
        )
        metrics[name] = detection_rates(test_set.labels[test_rows], scores > family.threshold).as_dict()
        test_patches = test_patches or len(test_rows)
    record = {
        "id": plan.model_id,
        "family": plan.family,
        "task": plan.task,
        "variant": plan.variant,
        "cfzoo_version": __version__,
        "seed": plan.seed,
        "split": {"train": list(split.train), "test": list(split.test), "seed": split.seed},
        "patch_sets": {name: patch_set.meta["key"] for name, patch_set in patch_sets.items()},
        "training_data_sha256": training_data_digest(patch_sets["train"]),
        "zoomed_train_photos": patch_set_spec(plan, "train").keep_zoomed_photos,
        **(
            {"laundering": laundering_record(patch_set_spec(plan, "train").laundering)}
            if plan.variant == "wild"
            else {}
        ),
        "train_patches": len(train_rows),
        "test_patches": test_patches,
        "hyperparameters": hyper,
        "threshold": family.threshold,
        "score": family.score,
        "loss": loss_summary(losses),
        **({"adversarial_training": adversarial_record(history)} if history else {}),
        "metrics": metrics,
        "training_seconds": round(training_seconds, 1),
        "machine": training_machine(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / f"{plan.model_id}.safetensors", lambda path: family.save(detector, path))
    write_atomically(out_dir / f"{plan.model_id}.json", lambda path: path.write_text(json.dumps(record, indent=2)))
    snapshots.path.unlink(missing_ok=True)
    return record


def snapshot_path(checkpoint_dir: str | os.PathLike[str], model_id: str) -> Path:
    """Where a stopped training run of ``model_id`` keeps the state it continues from."""
    return Path(checkpoint_dir) / f"{model_id}.snapshot.safetensors"


def adversarial_record(history: dict[str, list[float]]) -> dict:
    """What a record says of adversarial training: the curves (as the loss's) and what they show went wrong."""
    from cfzoo.training.adversarial import collapse_flags

    return {
        "attack_success": loss_summary(history["attack_success"]),
        "clean_accuracy": loss_summary(history["clean_accuracy"]),
        "flags": collapse_flags(history["attack_success"], history["clean_accuracy"]),
    }


def laundering_record(name: str) -> dict:
    """What a record says of the laundering its train set went through (each photo's draw is in the patch set)."""
    return {
        "name": name,
        **{key: list(value) if isinstance(value, tuple) else value for key, value in LAUNDERINGS[name].items()},
    }


def patch_set_names(plan: TrainingPlan) -> tuple[str, ...]:
    """The patch sets of a plan, the train set first: ``train``; ``test`` (the test devices' photos as they are)
    when it evaluates; and for a wild variant ``test_wild`` (the same photos laundered as its train set was).
    The record's metrics are keyed by these names."""
    if not plan.evaluate:
        return ("train",)
    return ("train", "test", "test_wild") if plan.variant == "wild" else ("train", "test")


def patch_set_spec(plan: TrainingPlan, name: str) -> PatchSetSpec:
    """The patch set ``name`` (:func:`patch_set_names`) of a plan."""
    # Test sets always leave camera-upsampled photos out of resize tasks; only the train set may keep them.
    zoomed = (
        get_family(plan.family).zoomed_train_photos if plan.zoomed_train_photos is None else plan.zoomed_train_photos
    )
    keep_zoomed = zoomed and get_manipulation(plan.task).needs_unresampled_photos and name == "train"
    laundered = plan.variant == "wild" and name != "test"
    return PatchSetSpec(
        task=plan.task,
        split="train" if name == "train" else "test",
        seed=plan.seed,
        keep_zoomed_photos=keep_zoomed,
        laundering=WILD_LAUNDERING if laundered else None,
    )


def load_checkpoint(checkpoint_dir: str | os.PathLike[str], model_id: str) -> tuple[dict, object]:
    """(training record, detector) of a checkpoint written by :func:`train_detector`; the detector on the CPU."""
    checkpoint_dir = Path(checkpoint_dir)
    record_path = checkpoint_dir / f"{model_id}.json"
    weights_path = checkpoint_dir / f"{model_id}.safetensors"
    if not record_path.exists() or not weights_path.exists():
        raise CfzooError(
            f"no checkpoint {model_id} in {checkpoint_dir}; train it with: cfzoo train DATA -f FAMILY -t TASK --out {checkpoint_dir}"
        )
    record = json.loads(record_path.read_text())
    return record, get_family(record["family"]).load(weights_path, record)


# --- Table I from checkpoints -----------------------------------------------------------------


def available_models(
    checkpoint_dir: str | os.PathLike[str],
    families: Iterable[str],
    tasks: Iterable[str],
    need_weights: bool = True,
    variant: str = STANDARD_VARIANT,
) -> list[tuple[str, str]]:
    """(family, task) pairs whose model of ``variant`` has a training record (and weights, with ``need_weights``),
    in the given orders."""
    checkpoint_dir = Path(checkpoint_dir)
    suffixes = (".json", ".safetensors") if need_weights else (".json",)
    return [
        (family, task)
        for task in tasks
        for family in families
        if all((checkpoint_dir / f"{model_id(family, task, variant)}{suffix}").exists() for suffix in suffixes)
    ]


def recorded_rows(
    checkpoint_dir: str | os.PathLike[str], models: list[tuple[str, str]], variant: str = STANDARD_VARIANT
) -> list[CheckpointRow]:
    """Table I rows as measured at the end of training (no recomputation)."""
    rows = []
    for family, task in models:
        record = json.loads((Path(checkpoint_dir) / f"{model_id(family, task, variant)}.json").read_text())
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
    variant: str = STANDARD_VARIANT,
    laundering: str | None = None,
) -> list[CheckpointRow]:
    """Score every checkpoint (of ``variant``) on the test patches of the split it was trained with, laundered as
    ``laundering`` says (:data:`cfzoo.manipulations.LAUNDERINGS`; None: the photos as they are); with
    ``save_metrics``, store the measured rates in each checkpoint's record (for models trained with
    ``evaluate=False``; the laundered ones as ``test_<laundering>``)."""
    status = on_status or (lambda stage, done, total: None)
    rows = []
    metrics_key = "test" if laundering is None else f"test_{laundering}"
    for family_name, task in models:
        family = get_family(family_name)
        checkpoint_id = model_id(family_name, task, variant)
        record, detector = load_checkpoint(checkpoint_dir, checkpoint_id)
        split = split_devices(dataset.device_names, record["seed"], record["split"]["test"])
        test_set = build_patch_set(
            dataset,
            PatchSetSpec(task=task, split="test", seed=record["seed"], laundering=laundering),
            split,
            cache_dir,
            on_progress=lambda done, total: status(f"{checkpoint_id} patches", done, total),
        )
        chosen = balanced_subset(test_set.labels, max_test_patches, record["seed"] + 1)
        scores = family.score_patches(
            detector, test_set, chosen, lambda stage, done, total: status(f"{checkpoint_id} {stage}", done, total)
        )
        called = scores > family.threshold
        rates = detection_rates(test_set.labels[chosen], called)
        by_device = rates_by_device(test_set.labels[chosen], called, test_set.devices_of(chosen))
        rows.append(_row(record, rates.as_dict(), len(chosen), by_device))
        if save_metrics:
            record["metrics"][metrics_key] = rates.as_dict()
            record["test_patches"] = len(chosen)
            record["patch_sets"][metrics_key] = test_set.meta["key"]
            write_atomically(
                Path(checkpoint_dir) / f"{checkpoint_id}.json",
                lambda path, record=record: path.write_text(json.dumps(record, indent=2)),
            )
    return rows


def _row(record: dict, rates: dict, test_patches: int, by_device: dict[str, Rates] | None = None) -> CheckpointRow:
    return CheckpointRow(
        family=record["family"],
        task=record["task"],
        fpr=rates["fpr"],
        tpr=rates["tpr"],
        acc=rates["acc"],
        test_patches=test_patches,
        test_devices=record["split"]["test"],
        train_patches=record["train_patches"],
        machine=record["machine"]["device"],
        by_device=by_device,
    )
