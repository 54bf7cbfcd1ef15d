"""Restoring median-filtered images with the zoo's GAN generators (onnxruntime, no torch).

- :func:`restore_patches`: uint8 patches -> restored uint8 patches, a batch at a time;
- :func:`restore_image`: one H x W x 3 uint8 image -> restored uint8, tile by tile so memory stays bounded;
- :func:`restore_image_file`: the same from a file to lossless PNGs (one per discriminator), with every detector's
  verdict before and after: those of the task restored, and those of other tasks that the restoration trips.

The paper's Table V (every detector on restored test patches) is :mod:`cfzoo.experiments.restoration`.

Tiles: cores of ``tile`` x ``tile`` pixels, each run with ``receptive_radius`` pixels of context on every side
that the image has (the generator's replicate padding takes the image border, as it does for a whole-image
run), so a tiled result equals the whole-image result: an output pixel never sees past its tile's context.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfzoo.errors import CfzooError, check_count, option
from cfzoo.files import check_png_destination, write_all_atomically
from cfzoo.images import load_image, write_png
from cfzoo.manipulations import TASK_IDS
from cfzoo.metrics import finite_or_none, psnr
from cfzoo.ops.detect import VERDICTS, verdict_change
from cfzoo.ops.scoring import decisions_at
from cfzoo.patches import PATCH_SIZE, patch_grid
from cfzoo.results import GridShares, ImageRestoration, ImageRestorations
from cfzoo.zoo.catalog import detectors_here, open_detector
from cfzoo.zoo.resolve import resolve
from cfzoo.zoo.restorers import (
    DEFAULT_TILE,
    IMAGE_INPUT,
    MIN_TILE,
    RESTORED_OUTPUT,
    check_restorer,
    load_restorer_registry,
)
from cfzoo.zoo.runtime import OnnxSession, cached_session, execution_providers

DEFAULT_BATCH_SIZE = 32


class Restorer(OnnxSession):
    """A restorer's onnxruntime session: ``restore(images)`` float32 [N,3,H,W] 0..255 -> same shape, 0..255."""

    row_parallel = False  # it restores one whole tile at a time

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
    resolved = resolve(entry, entry.kind)
    chosen = execution_providers(providers)
    return cached_session(
        ("restorer", str(resolved.path), entry.file.sha256, chosen), lambda: Restorer(entry, resolved, chosen)
    )


def to_uint8(restored: np.ndarray) -> np.ndarray:
    """Generator output (float, 0..255) -> uint8, rounded half to even."""
    return np.clip(np.rint(restored), 0, 255).astype(np.uint8)


def restore_patches(restorer: Restorer, patches: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """uint8 [N,H,W,3] patches -> restored uint8 [N,H,W,3], ``batch_size`` at a time."""
    out = np.empty(np.shape(patches), dtype=np.uint8)
    for start in range(0, len(patches), batch_size):
        images = np.asarray(patches[start : start + batch_size]).transpose(0, 3, 1, 2)
        out[start : start + len(images)] = to_uint8(restorer.restore(images)).transpose(0, 2, 3, 1)
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
    check_tile(tile)
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise CfzooError(
            f"the image must be H x W x 3 uint8 RGB, got a {pixels.dtype} array of shape {list(pixels.shape)}"
        )
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
        out[top:bottom, left:right] = restored[top - above : bottom - above, left - before : right - before]
        if on_progress is not None:
            on_progress(done + 1, len(cores))
    return out


def check_tile(tile: int) -> None:
    """A one-line CfzooError for a tile side below :data:`MIN_TILE` pixels."""
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < MIN_TILE:
        raise CfzooError(
            f"{option('tile')} must be at least {MIN_TILE} pixels, got {tile!r}: each tile runs the generator once, "
            f"so tiny tiles would take days on a photo; the default is {DEFAULT_TILE}"
        )


# --- whole images -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreSettings:
    """What ``cfzoo restore IMAGE`` runs: the ``task`` the image was median-filtered by, the restorers (one per
    ``discriminators`` kind, "vgg" when none is given), tiles of ``tile`` pixels, patches per detector run,
    onnxruntime ``providers``, and whether every other task's detectors also read the result (``other_tasks``).
    Built only when valid: an unknown task or kind is a one-line CfzooError here, before any work."""

    task: str
    discriminators: tuple[str, ...] = ()
    tile: int = DEFAULT_TILE
    batch_size: int = DEFAULT_BATCH_SIZE
    providers: str = "auto"
    other_tasks: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "discriminators", tuple(dict.fromkeys(self.discriminators)) or ("vgg",))
        for discriminator in self.discriminators:
            check_restorer(self.task, discriminator)
        check_tile(self.tile)
        check_count(self.batch_size, option("batch_size"), "it is the patches per detector run")

    def outputs(self, out: str | os.PathLike[str]) -> dict[str, Path]:
        """Where each restorer's PNG goes: ``out`` itself for one, ``OUT-<discriminator>.png`` for several."""
        out = Path(out)
        if len(self.discriminators) == 1:
            return {self.discriminators[0]: out}
        return {kind: out.with_name(f"{out.stem}-{kind}{out.suffix}") for kind in self.discriminators}


def restore_image_file(
    image_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: RestoreSettings,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImageRestorations:
    """Read an image once and restore it with the restorer of each discriminator kind of ``settings``, each
    written as a lossless PNG (atomically) where :meth:`RestoreSettings.outputs` says. Returns one
    summary per restorer with the share of `cfzoo detect` grid patches each detector of the task calls
    manipulated, before and after, and ``flagged_by_other_tasks``: the detectors of the other tasks whose verdict
    on the image grew worse (pristine to uncertain or manipulated, uncertain to manipulated), since restoring
    hides one trace by adding others. Without ``settings.other_tasks`` only the task's own detectors run (a few
    instead of all of them) and none is listed.

    Refuses to write anything but ``.png``, to write over the input, and to write two restorations to one file."""
    task, providers, tile, batch_size = settings.task, settings.providers, settings.tile, settings.batch_size
    destinations = {
        discriminator: check_png_destination(path, image_path, "a lossy format would add its own traces")
        for discriminator, path in settings.outputs(out).items()
    }
    if len(set(destinations.values())) < len(destinations):
        raise CfzooError("each discriminator's restoration needs its own output file")
    loaded = load_image(image_path)
    positions = (
        patch_grid(loaded.height, loaded.width)
        if min(loaded.height, loaded.width) >= PATCH_SIZE
        else np.empty((0, 2), dtype=int)
    )
    tasks = TASK_IDS if settings.other_tasks else (task,)
    entries = [entry for task_id in tasks for entry in detectors_here(task_id)] if len(positions) else []
    detectors = [open_detector(entry.id, providers=providers) for entry in entries]
    before = decisions_at(loaded.pixels, detectors, positions, batch_size)
    registry = load_restorer_registry()
    summaries, restorations = [], {}
    for discriminator, out_path in destinations.items():
        restored = restore_image(loaded.pixels, task, discriminator, providers, tile, on_progress)
        restorations[out_path] = restored
        after = decisions_at(restored, detectors, positions, batch_size)
        own, others = {}, []
        for row, entry in enumerate(entries):
            change = verdict_change(entry, before[row], after[row])
            if entry.task == task:
                own[entry.family] = GridShares(model=entry.id, before=change.before, after=change.after)
            elif VERDICTS.index(change.verdict_after) > VERDICTS.index(change.verdict_before):
                others.append(change)
        summaries.append(
            ImageRestoration(
                image=str(image_path),
                out=str(out_path),
                width=loaded.width,
                height=loaded.height,
                notes=list(loaded.notes),
                restorer=registry.find(task, discriminator).id,
                tile=tile,
                psnr_db_vs_input=finite_or_none(psnr(loaded.pixels, restored)),
                detect_grid_patches=len(positions),
                detect_grid_called_manipulated=own,
                flagged_by_other_tasks=others,
            )
        )
    # every restoration or none: a restorer that fails leaves no other's PNG behind
    write_all_atomically({path: functools.partial(write_png, pixels) for path, pixels in restorations.items()})
    return ImageRestorations(summaries)
