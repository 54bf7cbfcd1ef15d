"""The evidence a conclusion model reads, and how well it concludes: per image, every zoo detector's flagged share
and mean probability (the numbers `cfzoo detect` prints), for photos of a camera dataset after each manipulation.

How an evidence row is made from one photo and one class (``none`` or a task):

1. a region of at most ``crop + 2 * margin`` pixels a side is cut at a seeded position (offsets multiples of 16,
   so a camera JPEG's 8x8 and chroma grids stay where they were);
2. the class's manipulation is applied to the region (for blur, median and JPEG the same pixels as applying it to
   the whole photo, away from the margin; resize scales the region), then, for a laundering study, a JPEG re-save;
3. a ``crop`` x ``crop`` square is taken from the middle (grid-aligned where the size did not change) and scored
   by every detector on detect's patch grid, exactly as `cfzoo detect` scores a photo.

Photos that the camera digitally zoomed (EXIF DigitalZoomRatio > 1) are left out: they were resampled in the
camera, so their "none" would be a resize.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import PIL

from cfzoo.callbacks import ProgressCallback
from cfzoo.data import CameraDataset, image_record
from cfzoo.errors import CfzooError, DataError
from cfzoo.files import write_atomically
from cfzoo.images import read_rgb
from cfzoo.manipulations import get_manipulation, jpeg_compress
from cfzoo.metrics import expected_calibration_error
from cfzoo.ops.conclusion import CLASSES, NONE, STATISTICS, evidence_vector
from cfzoo.ops.detect import model_sha256, score_image
from cfzoo.patches import DEFAULT_STRIDE, PATCH_SIZE
from cfzoo.paths import default_cache_dir
from cfzoo.zoo.conclusions import ConclusionModel
from cfzoo.zoo.runtime import Detector

EVIDENCE_FORMAT = 1
GRID = 16


def feature_names(models: Sequence[str]) -> list[str]:
    return [f"{model}:{statistic}" for model in models for statistic in STATISTICS]


@dataclass(frozen=True)
class EvidenceSpec:
    """How evidence rows are made (see the module): square ``crop`` and its ``margin``, detect's patch ``stride``,
    the ``seed`` of the regions' positions, an optional JPEG re-save after the manipulation (``recompress``, a
    quality), and the classes."""

    crop: int = 512
    margin: int = 64
    stride: int = DEFAULT_STRIDE
    seed: int = 0
    recompress: int | None = None
    classes: tuple[str, ...] = CLASSES
    max_images_per_device: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.crop < PATCH_SIZE or self.crop % GRID or self.margin < 0 or self.margin % GRID:
            raise CfzooError(f"the crop must be at least {PATCH_SIZE} and crop and margin multiples of {GRID}")
        unknown = [name for name in self.classes if name not in CLASSES]
        if unknown or NONE not in self.classes:
            raise CfzooError(f"classes must include {NONE!r} and come from: {', '.join(CLASSES)}")
        if self.recompress is not None and not 1 <= self.recompress <= 100:
            raise CfzooError(f"a JPEG re-save quality is 1 to 100, not {self.recompress}")


def evidence_crop(photo: np.ndarray, name: str, spec: EvidenceSpec, seed: Sequence[int]) -> np.ndarray:
    """The ``crop`` x ``crop`` square that stands for ``photo`` after class ``name`` (see the module)."""
    height, width = photo.shape[:2]
    side_h = min(height, spec.crop + 2 * spec.margin) // GRID * GRID
    side_w = min(width, spec.crop + 2 * spec.margin) // GRID * GRID
    if min(side_h, side_w) < spec.crop:
        raise DataError(f"a photo of {width}x{height} is smaller than the evidence crop ({spec.crop})")
    rng = np.random.default_rng(list(seed))
    top = int(rng.integers(0, (height - side_h) // GRID + 1)) * GRID
    left = int(rng.integers(0, (width - side_w) // GRID + 1)) * GRID
    region = photo[top : top + side_h, left : left + side_w]
    changed = region if name == NONE else get_manipulation(name)(region)
    if spec.recompress is not None:
        changed = jpeg_compress(changed, spec.recompress)
    if changed.shape == region.shape:  # keep the JPEG grid: offsets that are multiples of 16
        row, column = ((side_h - spec.crop) // 2) // GRID * GRID, ((side_w - spec.crop) // 2) // GRID * GRID
    else:
        row, column = (changed.shape[0] - spec.crop) // 2, (changed.shape[1] - spec.crop) // 2
    return np.ascontiguousarray(changed[row : row + spec.crop, column : column + spec.crop])


@dataclass(frozen=True)
class EvidenceTable:
    """Evidence rows with what they are: ``features`` [n, 2 x len(models)], ``labels`` (indices into ``classes``),
    the ``devices`` and ``images`` (paths relative to the dataset) they come from."""

    features: np.ndarray
    labels: np.ndarray
    devices: np.ndarray
    images: np.ndarray
    models: tuple[str, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: Path) -> Path:
        arrays = {
            "features": self.features,
            "labels": self.labels,
            "devices": self.devices.astype(str),
            "images": self.images.astype(str),
            "models": np.array(self.models, dtype=str),
            "classes": np.array(self.classes, dtype=str),
        }

        def write(temporary: Path) -> None:
            with temporary.open("wb") as handle:  # a handle: given a name, numpy would add ".npz" to it
                np.savez(handle, **arrays)

        return write_atomically(path, write)

    @classmethod
    def load(cls, path: Path) -> EvidenceTable:
        with np.load(path, allow_pickle=False) as stored:
            return cls(
                features=stored["features"],
                labels=stored["labels"],
                devices=stored["devices"],
                images=stored["images"],
                models=tuple(str(model) for model in stored["models"]),
                classes=tuple(str(name) for name in stored["classes"]),
            )

    @classmethod
    def concatenate(cls, tables: Sequence[EvidenceTable]) -> EvidenceTable:
        first = tables[0]
        if any(table.models != first.models or table.classes != first.classes for table in tables):
            raise CfzooError("evidence tables of different models or classes cannot be joined")
        return cls(
            *(
                np.concatenate([getattr(table, name) for table in tables])
                for name in ("features", "labels", "devices", "images")
            ),
            models=first.models,
            classes=first.classes,
        )


def evidence_photos(dataset: CameraDataset, devices: Sequence[str], spec: EvidenceSpec) -> list[tuple[str, Path, str]]:
    """(device, path, sha256) of the photos that give evidence: not digitally zoomed, large enough for the crop."""
    photos = []
    for device in devices:
        if device not in dataset.devices:
            raise DataError(f"unknown device {device!r}; the dataset has: {', '.join(dataset.device_names)}")
        paths = dataset.devices[device]
        if spec.max_images_per_device is not None and len(paths) > spec.max_images_per_device:
            device_seed = int(hashlib.sha256(device.encode()).hexdigest()[:16], 16)
            keep = np.random.default_rng([spec.seed, device_seed]).choice(len(paths), spec.max_images_per_device, False)
            paths = tuple(paths[index] for index in sorted(keep))
        for path in paths:
            record = image_record(dataset.root, device, path)
            if record.digital_zoom <= 1.0 and min(record.height, record.width) >= spec.crop:
                photos.append((device, path, record.sha256))
    return photos


def build_evidence(
    dataset: CameraDataset,
    devices: Sequence[str],
    detectors: Sequence[Detector],
    spec: EvidenceSpec = EvidenceSpec(),
    cache_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> EvidenceTable:
    """The evidence rows of ``devices``' photos, one per photo and class, from ``detectors`` (in their order);
    cached on disk, keyed by the photos' content, the detectors' files and ``spec``."""
    photos = evidence_photos(dataset, devices, spec)
    if not photos:
        raise DataError(f"no photos of {', '.join(devices)} can give evidence (all digitally zoomed or too small)")
    models = tuple(detector.entry.id for detector in detectors)
    key = _evidence_key(photos, detectors, spec)
    path = Path(cache_dir or default_cache_dir()) / "evidence" / f"{key}.npz"
    if path.exists():
        return EvidenceTable.load(path)
    rows, labels, row_devices, row_images = [], [], [], []
    total, done = len(photos) * len(spec.classes), 0
    for device, photo_path, sha256 in photos:
        photo = read_rgb(photo_path)
        for label, name in enumerate(spec.classes):
            crop = evidence_crop(photo, name, spec, [spec.seed, int(sha256[:16], 16)])
            verdicts = score_image(crop, detectors, spec.stride).verdicts
            rows.append(evidence_vector(verdicts, models))
            labels.append(label)
            row_devices.append(device)
            row_images.append(str(photo_path.relative_to(dataset.root)))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    table = EvidenceTable(
        np.stack(rows), np.array(labels), np.array(row_devices), np.array(row_images), models, spec.classes
    )
    table.save(path)
    return table


def _evidence_key(photos, detectors: Sequence[Detector], spec: EvidenceSpec) -> str:
    material = {
        "format": EVIDENCE_FORMAT,
        "pillow": PIL.__version__,
        "spec": asdict(spec),
        "manipulations": {
            name: {key: str(value) for key, value in get_manipulation(name).parameters.items()}
            for name in spec.classes
            if name != NONE
        },
        "photos": [sha256 for _, _, sha256 in photos],
        "detectors": [[detector.entry.id, model_sha256(detector)] for detector in detectors],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


# --- measured as a classifier ------------------------------------------------------------------


def naive_prediction(table: EvidenceTable) -> np.ndarray:
    """The naive rule: the task whose detectors flag the largest mean share of patches, or ``none`` when no task's
    detectors flag more than half (detect's majority)."""
    from cfzoo.ops.detect import MAJORITY

    shares = table.features[:, STATISTICS.index("flagged_share") :: len(STATISTICS)]
    tasks = np.array([model.rsplit("-", 1)[1] for model in table.models])
    names = [name for name in table.classes if name != NONE and name in tasks]
    by_task = np.stack([shares[:, tasks == name].mean(axis=1) for name in names], axis=1)
    best = by_task.argmax(axis=1)
    chosen = np.array([table.classes.index(names[index]) for index in best])
    return np.where(by_task.max(axis=1) > MAJORITY, chosen, table.classes.index(NONE))


def top_label_calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Top-label expected calibration error, 0..1: the binary one of :mod:`cfzoo.metrics` on the top probability
    against whether the top class is right."""
    correct = probabilities.argmax(axis=1) == labels
    return expected_calibration_error(correct, probabilities.max(axis=1)) / 100.0


def confusion(labels: np.ndarray, predicted: np.ndarray, class_count: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((class_count, class_count), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def classifier_scores(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict:
    matrix = confusion(labels, predicted, len(classes))
    predicted_counts, true_counts = matrix.sum(axis=0), matrix.sum(axis=1)
    diagonal = np.diag(matrix)
    return {
        "accuracy": float(diagonal.sum() / matrix.sum()),
        "confusion": matrix.tolist(),
        "precision": {
            name: (float(diagonal[i] / predicted_counts[i]) if predicted_counts[i] else None)
            for i, name in enumerate(classes)
        },
        "recall": {
            name: (float(diagonal[i] / true_counts[i]) if true_counts[i] else None) for i, name in enumerate(classes)
        },
    }


def evaluate_conclusion(model: ConclusionModel, table: EvidenceTable) -> dict:
    """The conclusion model measured on ``table`` (images, not patches): top-1 accuracy, confusion matrix,
    per-class precision and recall, expected calibration error, how often it answers "unfamiliar" or "uncertain",
    and the naive rule's accuracy and confusion on the same images."""
    entry = model.entry
    if list(table.models) != list(entry.models) or list(table.classes) != list(entry.classes):
        raise CfzooError(f"this evidence was made with other detectors or classes than {entry.id} reads")
    probabilities, distances = model.predict(table.features)
    predicted = probabilities.argmax(axis=1)
    unfamiliar = distances > entry.distance_threshold
    uncertain = ~unfamiliar & (probabilities.max(axis=1) < entry.uncertain_below)
    confident = ~unfamiliar & ~uncertain
    return {
        "images": len(table),
        "photos": len(np.unique(table.images)),
        "devices": sorted(np.unique(table.devices).tolist()),
        **classifier_scores(table.labels, predicted, table.classes),
        "expected_calibration_error": top_label_calibration_error(probabilities, table.labels),
        "unfamiliar_share": float(unfamiliar.mean()),
        "uncertain_share": float(uncertain.mean()),
        "confident_accuracy": float((predicted == table.labels)[confident].mean()) if confident.any() else None,
        "naive_rule": classifier_scores(table.labels, naive_prediction(table), table.classes),
    }


def confusion_figure(panels: dict[str, dict], classes: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """A PNG of confusion matrices side by side, one per ``panels`` item (title -> :func:`evaluate_conclusion`'s
    metrics): counts in the cells, colour by the share of the true class (row)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.6), squeeze=False)
    for axis, (title, metrics) in zip(axes[0], panels.items()):
        matrix = np.array(metrics["confusion"])
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if shares[row, column] > 0.6 else "black"
                axis.text(column, row, str(count), ha="center", va="center", fontsize=8, color=colour)
        axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(classes)), classes, fontsize=8)
        axis.set_xlabel("concluded")
        axis.set_ylabel("applied")
        axis.set_title(
            f"{title}\ntop-1 {metrics['accuracy']:.1%} (naive rule {metrics['naive_rule']['accuracy']:.1%}), "
            f"ECE {metrics['expected_calibration_error']:.1%}",
            fontsize=9,
        )
    figure.tight_layout()

    def write(temporary: Path) -> None:
        figure.savefig(temporary, format="png", dpi=110)

    try:
        return write_atomically(path, write)
    finally:
        pyplot.close(figure)
