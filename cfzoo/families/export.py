"""Export any family's detectors: the ONNX files with their metadata, a checkpoint, a zoo folder.

The files follow the contract in :mod:`cfzoo.export.onnx_export`; what each family's graphs hold is its
:meth:`~cfzoo.families.Family.export_graphs`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cfzoo._version import __version__
from cfzoo.errors import CfzooError
from cfzoo.export.onnx_export import (
    CLASS_NAMES,
    GRADIENT_DEFINITION,
    IMAGE,
    describe_model,
    detector_file_names,
    require_export_extra,
    save_model,
)
from cfzoo.export.zoo_writer import DEFAULT_HUB_REPO, registry_entry
from cfzoo.families.checkpoints import load_checkpoint
from cfzoo.families.registry import get_family
from cfzoo.patches import PATCH_SIZE
from cfzoo.zoo.registry import MODELS_FOLDER, REGISTRY_NAME, HubSource, Registry, embedded_zoo_dir


def model_metadata(family: str, record: dict, model_id: str, kind: str, detector) -> dict[str, str]:
    """The ``metadata_props`` of an exported file, from the training record (:func:`load_checkpoint`).

    ``kind`` is ``detector`` or ``gradient``; the family adds its own (:meth:`~cfzoo.families.Family.metadata`:
    a spam detector's SVM arrays). The record needs ``task`` and ``training_data_sha256``; ``family``, when
    present, must match. ``threshold`` (default: the family's) applies to ``score``.
    """
    family_object = get_family(family)
    if record.get("family", family) != family:
        raise CfzooError(
            f"the training record is for family {record['family']!r}, not {family!r}; export it as {record['family']}"
        )
    missing = [key for key in ("task", "training_data_sha256") if not record.get(key)]
    if missing:
        raise CfzooError(f"the training record lacks {', '.join(missing)}; export a checkpoint written by cfzoo train")
    metadata = {
        "model_id": model_id,
        "family": family,
        "task": str(record["task"]),
        "kind": kind,
        "patch_size": str(PATCH_SIZE),
        "threshold": repr(float(record.get("threshold", family_object.threshold))),
        "score": family_object.graph_score,
        "class_names": ",".join(CLASS_NAMES),
        "input": f"{IMAGE}: float32 [N,3,{PATCH_SIZE},{PATCH_SIZE}] RGB 0..255",
        "cfzoo_version": str(record.get("cfzoo_version", __version__)),
        "exported_by": f"cfzoo {__version__}",
        "training_data_sha256": str(record["training_data_sha256"]),
    }
    if kind == "gradient":
        metadata["gradient"] = GRADIENT_DEFINITION
    return {**metadata, **family_object.metadata(detector, kind)}


def export_detector(
    family: str,
    detector,
    record: dict,
    out_dir: str | os.PathLike[str],
    model_id: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<model_id>.onnx`` and ``<model_id>.grad.onnx`` into ``out_dir``; returns their paths.

    ``detector`` is what :func:`load_checkpoint` returns: a LinearSVM for ``spam``, the torch module for the
    networks (exported in eval mode; the module itself is not changed). ``record`` is the training record, or a
    plain dict with at least ``task`` and ``training_data_sha256``. ``model_id`` defaults to ``record["id"]``,
    else ``<family>-<task>``.
    """
    require_export_extra()
    family_object = get_family(family)
    model_id = model_id or record.get("id") or f"{family}-{record.get('task')}"
    family_object.check(detector)
    metadata = [model_metadata(family, record, model_id, kind, detector) for kind in ("detector", "gradient")]
    models = family_object.export_graphs(detector)
    out_dir = Path(out_dir)
    paths = []
    for model, properties, name in zip(models, metadata, detector_file_names(model_id)):
        describe_model(model, properties)
        paths.append(save_model(model, out_dir / name))
    return paths[0], paths[1]


def export_checkpoint(
    checkpoint_dir: str | os.PathLike[str], model_id: str, out_dir: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Export a checkpoint written by ``cfzoo train`` (``<model_id>.json`` + ``.safetensors``)."""
    require_export_extra()
    record, detector = load_checkpoint(checkpoint_dir, model_id)
    return export_detector(record["family"], detector, record, out_dir, model_id)


def export_to_zoo(
    checkpoint_dir: str | os.PathLike[str],
    model_ids: list[str],
    zoo_dir: str | os.PathLike[str],
    hub: HubSource | None = HubSource(DEFAULT_HUB_REPO, "main"),
    on_model: Callable[[str, int, int], None] | None = None,
) -> Registry:
    """Export every model into ``zoo_dir`` and update its registry; returns the updated registry.

    A model exported into the package's embedded zoo is marked embedded unless its family's files are too large
    to ship (:attr:`~cfzoo.families.Family.embedded`; its files stay local, the registry still lists their checksums).
    """
    zoo_dir = Path(zoo_dir)
    registry_path = zoo_dir / REGISTRY_NAME
    registry = Registry.read(registry_path) if registry_path.exists() else Registry([])
    into_package = zoo_dir.resolve() == embedded_zoo_dir().resolve()
    entries = list(registry)
    for number, model_id in enumerate(model_ids):
        if on_model is not None:
            on_model(model_id, number, len(model_ids))
        record, detector = load_checkpoint(checkpoint_dir, model_id)
        detector_path, gradient_path = export_detector(
            record["family"], detector, record, zoo_dir / MODELS_FOLDER, model_id
        )
        embedded = into_package and get_family(record["family"]).embedded
        entries = [entry for entry in entries if entry.id != model_id]
        entries.append(registry_entry(record, detector_path, gradient_path, embedded, hub))
        registry = Registry(entries)
        registry.write(registry_path)  # after every model, so an interrupted export keeps what it finished
    if on_model is not None:
        on_model("", len(model_ids), len(model_ids))
    return registry
