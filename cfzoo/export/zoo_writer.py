"""Export checkpoints into a zoo directory: ONNX files under ``models/`` and their entries in ``registry.json``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cfzoo.export.onnx_export import export_detector
from cfzoo.zoo.registry import (
    MODELS_FOLDER,
    REGISTRY_NAME,
    HubSource,
    ModelEntry,
    Registry,
    describe_file,
    embedded_zoo_dir,
)

#: Families whose files are too large to ship inside the package (83 MB per Xception graph).
NOT_EMBEDDED = ("xception",)
#: Where cfzoo's published models live; a registry entry's default Hub source.
DEFAULT_HUB_REPO = "cfzoo/detectors"

_TRAINING_KEYS = (
    "seed", "split", "train_patches", "test_patches", "hyperparameters", "training_data_sha256", "zoomed_train_photos",
    "training_seconds", "machine", "loss", "cfzoo_version", "weights_transport",
)


def registry_entry(record: dict, detector_path: Path, gradient_path: Path, embedded: bool, hub: HubSource | None) -> ModelEntry:
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
    )


def export_to_zoo(
    checkpoint_dir: str | os.PathLike[str],
    model_ids: list[str],
    zoo_dir: str | os.PathLike[str],
    hub: HubSource | None = HubSource(DEFAULT_HUB_REPO, "main"),
    on_model: Callable[[str, int, int], None] | None = None,
) -> Registry:
    """Export every model into ``zoo_dir`` and update its registry; returns the updated registry.

    A model exported into the package's embedded zoo is marked embedded unless its family is in
    :data:`NOT_EMBEDDED` (its files stay local; the registry still lists their checksums).
    """
    from cfzoo.training.run import load_detector

    zoo_dir = Path(zoo_dir)
    registry_path = zoo_dir / REGISTRY_NAME
    registry = Registry.read(registry_path) if registry_path.exists() else Registry([])
    into_package = zoo_dir.resolve() == embedded_zoo_dir().resolve()
    entries = list(registry)
    for number, model_id in enumerate(model_ids):
        if on_model is not None:
            on_model(model_id, number, len(model_ids))
        record, detector = load_detector(checkpoint_dir, model_id)
        detector_path, gradient_path = export_detector(record["family"], detector, record, zoo_dir / MODELS_FOLDER, model_id)
        embedded = into_package and record["family"] not in NOT_EMBEDDED
        entries = [entry for entry in entries if entry.id != model_id]
        entries.append(registry_entry(record, detector_path, gradient_path, embedded, hub))
        registry = Registry(entries)
        registry.write(registry_path)  # after every model, so an interrupted export keeps what it finished
    if on_model is not None:
        on_model("", len(model_ids), len(model_ids))
    return registry
