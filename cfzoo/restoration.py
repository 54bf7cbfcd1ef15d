"""Restoring median-filtered images with the zoo's GAN generators (onnxruntime, no torch), and the paper's Table V.

- :func:`restore_image`: one H x W x 3 uint8 image -> restored uint8, tile by tile so memory stays bounded;
- :func:`restore_image_file`: the same from a file to a lossless PNG, with the detectors' verdicts before and after;
- :func:`evaluate_restoration`: Table V: for each task and discriminator kind, the TPR of every detector here
  on restored median-filtered test patches (and before restoration), and PSNR / SSIM of the restored and of the
  filtered patches against their pristine partners (same photo, same position).

Tiles: cores of ``tile`` x ``tile`` pixels, each run with ``receptive_radius`` pixels of context on every side
that the image has (the generator's replicate padding takes the image border, as it does for a whole-image
run), so a tiled result equals the whole-image result: an output pixel never sees past its tile's context.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from cfzoo.data import CameraDataset, PatchSet, PatchSetSpec, build_patch_set, split_devices
from cfzoo.errors import CfzooError
from cfzoo.files import check_png_destination
from cfzoo.metrics import detection_rates, psnr_from_mse
from cfzoo.paper import paper_tables
from cfzoo.reports import before_after_cells, before_after_header, reported_families
from cfzoo.zoo.restorers import (
    DISCRIMINATOR_TITLES,
    DISCRIMINATORS,
    IMAGE_INPUT,
    RESTORATION_TASKS,
    RESTORED_OUTPUT,
    RestorerEntry,
    check_restorer,
    how_to_get,
    is_available,
    load_restorer_registry,
    resolve_restorer,
    restorer_id,
)
from cfzoo.zoo.runtime import OnnxSession, execution_providers

StatusCallback = Callable[[str, int, int], None]
DEFAULT_TILE = 512
DEFAULT_BATCH_SIZE = 32
PAPER_TABLE = "table5_gan_restoration_median"


class Restorer(OnnxSession):
    """A restorer's onnxruntime session: ``restore(images)`` float32 [N,3,H,W] 0..255 -> same shape, 0..255."""

    @property
    def receptive_radius(self) -> int:
        return self.entry.receptive_radius

    def restore(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != 3 or min(images.shape) < 1:
            raise CfzooError(f"images must be [N,3,H,W] RGB 0..255 with N, H, W >= 1, got shape {list(images.shape)}")
        feed = {IMAGE_INPUT: np.ascontiguousarray(images, dtype=np.float32)}
        return self.session.run([RESTORED_OUTPUT], feed)[0]


def load_restorer(task: str, discriminator: str, providers: str = "auto") -> Restorer:
    """The restorer of ``task`` trained with the ``discriminator`` kind, its file verified against the registry;
    a session is created once per (file, providers)."""
    entry = load_restorer_registry().find(task, discriminator)
    resolved = resolve_restorer(entry)
    key = (str(resolved.path), entry.file.sha256, execution_providers(providers))
    if key not in _sessions:
        _sessions[key] = Restorer(entry, resolved, key[2])
    return _sessions[key]


_sessions: dict[tuple[str, str, tuple[str, ...]], Restorer] = {}  # (file, sha256, providers) -> session


def to_uint8(restored: np.ndarray) -> np.ndarray:
    """Generator output (float, 0..255) -> uint8, rounded half to even."""
    return np.clip(np.rint(restored), 0, 255).astype(np.uint8)


def restore_patches(restorer: Restorer, patches: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """uint8 [N,H,W,3] patches -> restored uint8 [N,H,W,3], ``batch_size`` at a time."""
    out = np.empty(np.shape(patches), dtype=np.uint8)
    for start in range(0, len(patches), batch_size):
        images = np.asarray(patches[start:start + batch_size]).transpose(0, 3, 1, 2)
        out[start:start + len(images)] = to_uint8(restorer.restore(images)).transpose(0, 2, 3, 1)
    return out


def tile_cores(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) of the tile cores along one axis."""
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


def restore_image(
    pixels: np.ndarray,
    task: str,
    discriminator: str,
    providers: str = "auto",
    tile: int = DEFAULT_TILE,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Restore a whole H x W x 3 uint8 image (median-filtered by ``task``) with the restorer trained against the
    ``discriminator`` kind; returns H x W x 3 uint8. Memory is bounded by ``tile`` (see the module's notes)."""
    if tile < 1:
        raise CfzooError(f"tile must be at least 1 pixel, got {tile}")
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise CfzooError(f"the image must be H x W x 3 uint8 RGB, got a {pixels.dtype} array of shape {list(pixels.shape)}")
    restorer = load_restorer(task, discriminator, providers)
    margin = restorer.receptive_radius
    height, width = pixels.shape[:2]
    cores = [(rows, cols) for rows in tile_cores(height, tile) for cols in tile_cores(width, tile)]
    out = np.empty_like(pixels)
    for done, ((top, bottom), (left, right)) in enumerate(cores):
        above, below = max(0, top - margin), min(height, bottom + margin)
        before, after = max(0, left - margin), min(width, right + margin)
        window = pixels[above:below, before:after].transpose(2, 0, 1)[None]
        restored = to_uint8(restorer.restore(window))[0].transpose(1, 2, 0)
        out[top:bottom, left:right] = restored[top - above:bottom - above, left - before:right - before]
        if on_progress is not None:
            on_progress(done + 1, len(cores))
    return out


def pair_quality(pristine: np.ndarray, other: np.ndarray) -> dict:
    """{"psnr_db", "ssim"} of ``other`` against ``pristine``, uint8 [N,H,W,3] (or one H x W x 3 image):
    PSNR over all samples (None when identical), SSIM (scikit-image, 7x7 windows, data range 255, colour
    channels averaged) averaged over the images."""
    squared_error, ssim_sum, count = _quality_sums(pristine, other)
    return {"psnr_db": _finite(psnr_from_mse(squared_error / np.size(pristine))), "ssim": round(ssim_sum / count, 6)}


def _quality_sums(pristine: np.ndarray, other: np.ndarray) -> tuple[float, float, int]:
    from skimage.metrics import structural_similarity

    pristine, other = np.asarray(pristine), np.asarray(other)
    if pristine.shape != other.shape:
        raise CfzooError(f"cannot compare images of shapes {list(pristine.shape)} and {list(other.shape)}")
    if pristine.ndim == 3:
        pristine, other = pristine[None], other[None]
    squared_error = float(np.sum((pristine.astype(np.int32) - other) ** 2))
    ssim = sum(structural_similarity(a, b, channel_axis=2, data_range=255) for a, b in zip(pristine, other))
    return squared_error, float(ssim), len(pristine)


def _finite(value: float, digits: int = 4) -> float | None:
    return round(value, digits) if np.isfinite(value) else None


def aligned_pairs(patch_set: PatchSet) -> tuple[np.ndarray, np.ndarray]:
    """(pristine rows, manipulated rows), pair by pair: same source image, same position, so the two patches
    show the same pixels before and after the manipulation. Ascending by manipulated row."""
    manipulated = np.flatnonzero(patch_set.labels == 1)
    where = {
        (int(patch_set.sources[row]), *map(int, patch_set.positions[row])): row for row in np.flatnonzero(patch_set.labels == 0)
    }
    partners = [where.get((int(patch_set.sources[row]), *map(int, patch_set.positions[row]))) for row in manipulated]
    if any(partner is None for partner in partners):
        raise CfzooError(f"the {patch_set.task} patch set has manipulated patches without a pristine partner; restoration needs a size-preserving task")
    return np.asarray(partners, dtype=np.int64), manipulated


# --- whole images -----------------------------------------------------------------------------


def restore_image_file(
    image_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    task: str,
    discriminator: str,
    providers: str = "auto",
    tile: int = DEFAULT_TILE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Read an image, restore it, write a lossless PNG atomically; returns a JSON-ready summary with the share
    of `cfzoo detect` grid patches each detector of ``task`` calls manipulated, before and after.

    Refuses to write anything but ``.png`` and to write over the input."""
    from cfzoo.attacks.transfer import called_manipulated, detector_entries
    from cfzoo.detection import patch_grid
    from cfzoo.images import load_image, save_png
    from cfzoo.metrics import psnr
    from cfzoo.patches import PATCH_SIZE, cut_patches
    from cfzoo.zoo.runtime import load_detector

    check_restorer(task, discriminator)
    out_path = check_png_destination(out_path, image_path, "a lossy format would add its own traces")
    loaded = load_image(image_path)
    restored = restore_image(loaded.pixels, task, discriminator, providers, tile, on_progress)
    save_png(restored, out_path)
    verdicts, grid = {}, 0
    if min(loaded.height, loaded.width) >= PATCH_SIZE:
        positions = patch_grid(loaded.height, loaded.width)
        grid = len(positions)
        for entry in detector_entries(task):
            detector = load_detector(entry.id, providers)
            _, before = called_manipulated(detector, cut_patches(loaded.pixels, positions), batch_size)
            _, after = called_manipulated(detector, cut_patches(restored, positions), batch_size)
            verdicts[entry.family] = {"model": entry.id, "before": round(100.0 * before.mean(), 4), "after": round(100.0 * after.mean(), 4)}
    return {
        "image": str(image_path),
        "out": str(out_path),
        "width": loaded.width,
        "height": loaded.height,
        "notes": list(loaded.notes),
        "restorer": load_restorer_registry().find(task, discriminator).id,
        "tile": tile,
        "psnr_db_vs_input": _finite(psnr(loaded.pixels, restored)),
        "detect_grid_patches": grid,
        "detect_grid_called_manipulated": verdicts,
    }


# --- Table V ----------------------------------------------------------------------------------


def paper_tpr(task: str, discriminator: str, family: str) -> float | None:
    """The paper's Table V TPR (percent) of ``family`` after restoration, or None where it has none."""
    return paper_tables()[PAPER_TABLE]["by_discriminator"].get(discriminator, {}).get(task, {}).get(family)


def evaluable_restorers(tasks: Iterable[str] | None = None, discriminators: Iterable[str] | None = None) -> tuple[list[RestorerEntry], list[str]]:
    """(restorers to evaluate, ids of the selection left out because their files are not here).

    The selection is every task given (default: both) times every discriminator given (default: both). With
    both tasks and discriminators given, each restorer of the selection must be here; otherwise those that
    are here are used (at least one). A missing restorer is a one-line error that says how to get it."""
    chosen_tasks = list(dict.fromkeys(tasks or RESTORATION_TASKS))
    chosen_kinds = list(dict.fromkeys(discriminators or DISCRIMINATORS))
    for task in chosen_tasks:
        for kind in chosen_kinds:
            check_restorer(task, kind)
    registry = load_restorer_registry()
    found, missing = [], []
    for task in (task for task in RESTORATION_TASKS if task in chosen_tasks):
        for kind in (kind for kind in DISCRIMINATORS if kind in chosen_kinds):
            entry = registry.entries.get(restorer_id(task, kind))
            if entry is not None and is_available(entry):
                found.append(entry)
            else:
                missing.append((task, kind))
    if missing and (not found or (tasks and discriminators)):
        task, kind = missing[0]
        raise CfzooError(f"restorer {restorer_id(task, kind)} is not available here; {how_to_get(task, kind)}")
    return found, [restorer_id(task, kind) for task, kind in missing]


def evaluate_restoration(
    dataset: CameraDataset,
    tasks: Sequence[str] | None = None,
    discriminators: Sequence[str] | None = None,
    seed: int = 0,
    max_patches: int | None = None,
    providers: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_dir: str | os.PathLike[str] | None = None,
    on_status: StatusCallback | None = None,
) -> dict:
    """Table V on the test devices of ``dataset`` (device split drawn with ``seed``).

    For each task, its manipulated test patches (all, or ``max_patches`` spread evenly over the test devices)
    and their pristine partners; for each restorer of the task: restored patches, every detector's TPR on
    them and on the filtered patches, PSNR and SSIM against the pristine partners. Works in batches."""
    from cfzoo.attacks.transfer import called_manipulated, detector_entries, manipulated_rows
    from cfzoo.zoo.runtime import load_detector

    if batch_size < 1:
        raise CfzooError(f"batch size must be at least 1, got {batch_size}")
    restorers, missing = evaluable_restorers(tasks, discriminators)
    status = on_status or (lambda stage, done, total: None)
    split = split_devices(dataset.device_names, seed)
    rows = []
    for task in dict.fromkeys(entry.task for entry in restorers):
        patch_set = build_patch_set(
            dataset, PatchSetSpec(task=task, split="test", seed=seed), split, cache_dir,
            on_progress=functools.partial(status, f"{task} patches"),
        )
        partners, manipulated = aligned_pairs(patch_set)
        chosen = np.searchsorted(manipulated, manipulated_rows(patch_set, max_patches, seed))
        entries = detector_entries(task)
        detectors = {entry.family: load_detector(entry.id, providers) for entry in entries}
        kinds = [entry for entry in restorers if entry.task == task]
        sessions = {entry.discriminator: load_restorer(task, entry.discriminator, providers) for entry in kinds}
        before = {family: [] for family in detectors}
        after = {kind: {family: [] for family in detectors} for kind in sessions}
        sums = {name: np.zeros(2) for name in ("input", *sessions)}  # squared error, SSIM sum
        seconds = dict.fromkeys(sessions, 0.0)
        for start in range(0, len(chosen), batch_size):
            batch = chosen[start:start + batch_size]
            filtered = np.asarray(patch_set.patches[manipulated[batch]])
            pristine = np.asarray(patch_set.patches[partners[batch]])
            sums["input"] += _quality_sums(pristine, filtered)[:2]
            for family, detector in detectors.items():
                before[family].append(called_manipulated(detector, filtered, batch_size)[1])
            for kind, restorer in sessions.items():
                started = time.perf_counter()
                restored = restore_patches(restorer, filtered, batch_size)
                seconds[kind] += time.perf_counter() - started
                sums[kind] += _quality_sums(pristine, restored)[:2]
                for family, detector in detectors.items():
                    after[kind][family].append(called_manipulated(detector, restored, batch_size)[1])
            status(f"{task} restore", start + len(batch), len(chosen))
        samples = len(chosen) * int(np.prod(patch_set.patches.shape[1:]))
        for entry in kinds:
            rows.append({
                "task": task,
                "discriminator": entry.discriminator,
                "restorer": entry.id,
                "patches": len(chosen),
                "quality": {name: _quality(sums[key], samples, len(chosen)) for name, key in (("input", "input"), ("restored", entry.discriminator))},
                "restore_seconds": round(seconds[entry.discriminator], 2),
                "tpr": {
                    detector_entry.family: {
                        "model": detector_entry.id,
                        "before": _tpr(before[detector_entry.family]),
                        "after": _tpr(after[entry.discriminator][detector_entry.family]),
                        "paper": paper_tpr(task, entry.discriminator, detector_entry.family),
                    }
                    for detector_entry in entries
                },
            })
    return {
        "seed": seed,
        "dataset": str(dataset.root),
        "test_devices": list(split.test),
        "max_patches": max_patches,
        "missing": missing,
        "rows": rows,
    }


def _quality(sums: np.ndarray, samples: int, images: int) -> dict:
    """{"psnr_db", "ssim"} from (sum of squared errors, sum of SSIM) over ``images`` holding ``samples`` values."""
    return {"psnr_db": _finite(psnr_from_mse(sums[0] / samples)), "ssim": round(float(sums[1]) / images, 6)}


def _tpr(decisions: list[np.ndarray]) -> float:
    called = np.concatenate(decisions)
    return detection_rates(np.ones(len(called), dtype=bool), called).tpr


def restoration_markdown(report: dict) -> str:
    """Table V as markdown: TPR of every detector before and after restoration, the paper's in brackets."""
    families = reported_families(report["rows"])
    lines = [
        f"TPR (percent) on median-filtered test patches before and after GAN restoration; test devices: {', '.join(report['test_devices'])}",
        "",
        "| task | discriminator | patches | PSNR dB filtered -> restored | SSIM filtered -> restored | " + before_after_header(families) + " |",
        "|---|---|---:|---:|---:|" + "---:|---:|" * len(families),
    ]
    for row in report["rows"]:
        cells = before_after_cells(row["tpr"], families)
        quality = row["quality"]
        lines.append(
            f"| {row['task']} | {row['discriminator']} | {row['patches']} | {_db(quality['input']['psnr_db'])} -> {_db(quality['restored']['psnr_db'])} | "
            f"{quality['input']['ssim']:.4f} -> {quality['restored']['ssim']:.4f} | " + " | ".join(cells) + " |"
        )
    lines += ["", (
        "In brackets: the paper's Table V (TPR after restoration; the paper reports no PSNR or SSIM). "
        f"Discriminators: kim = {DISCRIMINATOR_TITLES['kim']}, vgg = {DISCRIMINATOR_TITLES['vgg']}."
    )]
    if report["missing"]:
        lines.append(f"Not available here: {', '.join(report['missing'])}.")
    return "\n".join(lines)


def _db(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2f}"
