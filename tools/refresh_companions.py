"""Export a zoo's gradient companions again from their checkpoints, leaving the detectors as they are.

    python tools/refresh_companions.py --checkpoints checkpoints/cameras-seed0 [--zoo cfzoo/zoo/embedded] [--family bayar2016 ...]

For when the way companions are traced changes (:mod:`cfzoo.export.gradients`): each ``<id>.grad.onnx`` of the
registry that is in the zoo folder and whose checkpoint is in ``--checkpoints`` is exported again, with the same metadata, and its sha256 and
size in the registry follow; the SPAM feature companion too when spam is refreshed. The detectors, their
metadata and their checksums are not touched, so Table I and every detector verdict stay as they were.
Each new companion must give the logits and gradients of the one it replaces on real patches (to float32
rounding); nothing is written unless every one does.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime

from cfzoo.export.onnx_export import describe_model, export_spam_feature_companion, save_model
from cfzoo.families import get_family, load_checkpoint, model_metadata
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation
from cfzoo.patches import cut_patches, sample_positions
from cfzoo.sample_data import skimage_data_dir
from cfzoo.zoo.registry import MODELS_FOLDER, REGISTRY_NAME, Registry, embedded_zoo_dir
from cfzoo.zoo.runtime import SPAM_FEATURE_COMPANION

#: Relative L2 distance allowed between the new companion's gradient and the old one's: float32 rounding.
TOLERANCE = 1e-5


def probe_patches(task: str) -> tuple[np.ndarray, np.ndarray]:
    """16 real patches, pristine and manipulated by ``task``, as [N,3,128,128] float32, and their labels."""
    photo = read_rgb(skimage_data_dir() / "astronaut.png")
    positions = sample_positions(*photo.shape[:2], seed=[0, 0], count=8)
    patches = np.concatenate([cut_patches(photo, positions), cut_patches(apply_manipulation(task, photo), positions)])
    return patches.transpose(0, 3, 1, 2).astype(np.float32), np.repeat([0, 1], len(positions))


def distance_to_old(model, old_path: Path, task: str) -> float:
    """Relative L2 distance between the gradients of ``model`` and of the companion at ``old_path``; a SystemExit
    when the logits or gradients differ beyond float32 rounding."""
    images, labels = probe_patches(task)
    runs = [
        onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"]).run(
            None, {"image": images, "label": labels}
        )
        for source in (model.SerializeToString(), str(old_path))
    ]
    (logits, grad), (old_logits, old_grad) = runs
    distance = float(np.linalg.norm(grad - old_grad) / np.linalg.norm(old_grad))
    if not (distance < TOLERANCE and np.allclose(logits, old_logits, rtol=1e-5, atol=1e-5)):
        raise SystemExit(
            f"the new companion of {old_path.stem} is {distance:.2g} away from the old one; nothing written"
        )
    return distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints", type=Path, required=True, help="cfzoo train's output folder of the zoo's models"
    )
    parser.add_argument("--zoo", type=Path, default=embedded_zoo_dir())
    parser.add_argument(
        "--family", action="append", help="only these families (repeatable; default every one with checkpoints)"
    )
    arguments = parser.parse_args()
    registry_path = arguments.zoo / REGISTRY_NAME
    models = arguments.zoo / MODELS_FOLDER
    entries, refreshed = [], {}
    for entry in Registry.read(registry_path):
        wanted = arguments.family is None or entry.family in arguments.family
        in_zoo = "gradient" in entry.files and (models / entry.files["gradient"].name).exists()
        if wanted and in_zoo and (arguments.checkpoints / f"{entry.id}.json").exists():
            record, detector = load_checkpoint(arguments.checkpoints, entry.id)
            _, companion = get_family(record["family"]).export_graphs(detector)
            describe_model(companion, model_metadata(record["family"], record, entry.id, "gradient", detector))
            distance = distance_to_old(companion, models / entry.files["gradient"].name, entry.task)
            refreshed[entry.id] = companion
            print(f"{entry.id}: companion exported again, {distance:.1e} from the old one")
        entries.append(entry)
    for number, entry in enumerate(entries):
        if entry.id in refreshed:
            data = save_model(refreshed[entry.id], models / entry.files["gradient"].name).read_bytes()
            gradient = replace(entry.files["gradient"], sha256=hashlib.sha256(data).hexdigest(), size=len(data))
            entries[number] = replace(entry, files={**entry.files, "gradient": gradient})
    Registry(entries).write(registry_path)
    if arguments.family is None or "spam" in arguments.family:
        save_model(export_spam_feature_companion(), arguments.zoo / SPAM_FEATURE_COMPANION)
        print(f"{SPAM_FEATURE_COMPANION}: exported again")


if __name__ == "__main__":
    main()
