"""Registry entries of exported models (the export itself, which depends on the family: :func:`cfzoo.families.export_to_zoo`)."""

from __future__ import annotations

from pathlib import Path

from cfzoo.zoo.registry import STANDARD_VARIANT, HubSource, ModelEntry, describe_file

#: Where cfzoo's published models live; a registry entry's default Hub source.
DEFAULT_HUB_REPO = "cfzoo/detectors"

_TRAINING_KEYS = (
    "seed",
    "split",
    "train_patches",
    "test_patches",
    "hyperparameters",
    "training_data_sha256",
    "zoomed_train_photos",
    "laundering",
    "training_seconds",
    "machine",
    "loss",
    "cfzoo_version",
    "weights_transport",
)


def registry_entry(
    record: dict, detector_path: Path, gradient_path: Path, embedded: bool, hub: HubSource | None
) -> ModelEntry:
    """The registry entry of an exported model, from its training record and files."""
    return ModelEntry(
        id=record["id"],
        family=record["family"],
        task=record["task"],
        files={"detector": describe_file(detector_path), "gradient": describe_file(gradient_path)},
        threshold=float(record["threshold"]),
        score=record["score"],
        metrics=record["metrics"],
        training={key: record[key] for key in _TRAINING_KEYS if key in record},
        embedded=embedded,
        hub=hub,
        variant=record.get("variant", STANDARD_VARIANT),
    )
