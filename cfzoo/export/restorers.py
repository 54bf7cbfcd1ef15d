"""Export trained restorers (GAN generators) to ONNX and register them in a zoo's ``restorers.json``.

Contract (:mod:`cfzoo.zoo.restorers`): input ``image`` float32 [N,3,H,W] RGB 0..255, output ``restored``
float32 [N,3,H,W] 0..255; N, H, W dynamic. The file carries ``metadata_props`` (id, task, discriminator,
receptive radius, training-data digest, cfzoo version), passes ``onnx.checker`` with ``full_check`` and
appears atomically. With the default generator (48 channels, 4 residual blocks) a file is about 0.68 MB.
"""

from __future__ import annotations

import os
from pathlib import Path

from cfzoo._version import __version__
from cfzoo.export.onnx_export import BATCH, onnx_export_program, require_export_extra, save_model
from cfzoo.zoo.registry import MODELS_FOLDER, describe_file, embedded_zoo_dir
from cfzoo.zoo.restorers import (
    IMAGE_INPUT,
    RESTORED_OUTPUT,
    RESTORER_REGISTRY_NAME,
    RestorerEntry,
    RestorerRegistry,
    check_restorer,
    restorer_id,
)

#: Sizes the exporter traces with; any H, W >= 1 runs (the graph has no size-dependent branch).
_TRACE_SHAPE = (2, 3, 40, 56)
_TRAINING_KEYS = (
    "seed",
    "split",
    "train_pairs",
    "hyperparameters",
    "training_data_sha256",
    "training_seconds",
    "machine",
    "loss",
    "cfzoo_version",
)


def export_generator(generator, record: dict, path: str | os.PathLike[str]) -> Path:
    """Write ``generator`` (a :class:`cfzoo.training.restoration.KimGenerator`) as ONNX to ``path``."""
    import torch

    from cfzoo.export.gradients import frozen_copy

    require_export_extra()
    dims = (torch.export.Dim(BATCH, min=1), torch.export.Dim("height", min=1), torch.export.Dim("width", min=1))
    model = onnx_export_program(
        frozen_copy(generator),
        (torch.zeros(*_TRACE_SHAPE),),
        [IMAGE_INPUT],
        [RESTORED_OUTPUT],
        ({0: dims[0], 2: dims[1], 3: dims[2]},),
    )
    metadata = {
        "model_id": record["id"],
        "kind": "restorer",
        "task": record["task"],
        "discriminator": record["discriminator"],
        "receptive_radius": str(generator.receptive_radius),
        "input": f"{IMAGE_INPUT}: float32 [N,3,H,W] RGB 0..255 (median-filtered)",
        "output": f"{RESTORED_OUTPUT}: float32 [N,3,H,W] RGB 0..255 (round to uint8 to store)",
        "cfzoo_version": str(record.get("cfzoo_version", __version__)),
        "exported_by": f"cfzoo {__version__}",
        "training_data_sha256": str(record["training_data_sha256"]),
    }
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "cfzoo", __version__
    model.doc_string = f"cfzoo {record['id']}: GAN generator restoring {record['task']} images ({record['discriminator']} discriminator)"
    return save_model(model, path)


def export_restorer(
    checkpoint_dir: str | os.PathLike[str], task: str, discriminator: str, zoo_dir: str | os.PathLike[str]
) -> RestorerEntry:
    """Export the checkpoint ``restorer-<task>-<discriminator>`` into ``zoo_dir`` (``models/`` + ``restorers.json``,
    created if absent); returns its registry entry. Exporting into the package's embedded zoo marks it embedded."""
    from cfzoo.training.restoration import load_generator

    check_restorer(task, discriminator)
    model_id = restorer_id(task, discriminator)
    record, generator = load_generator(checkpoint_dir, model_id)
    zoo_dir = Path(zoo_dir)
    path = export_generator(generator, record, zoo_dir / MODELS_FOLDER / f"{model_id}.onnx")
    entry = RestorerEntry(
        id=model_id,
        task=task,
        discriminator=discriminator,
        file=describe_file(path),
        receptive_radius=generator.receptive_radius,
        metrics=record.get("metrics", {}),
        training={key: record[key] for key in _TRAINING_KEYS if key in record},
        embedded=zoo_dir.resolve() == embedded_zoo_dir().resolve(),
    )
    registry_path = zoo_dir / RESTORER_REGISTRY_NAME
    registry = RestorerRegistry.read(registry_path) if registry_path.exists() else RestorerRegistry([])
    RestorerRegistry([*(other for other in registry if other.id != model_id), entry]).write(registry_path)
    return entry
