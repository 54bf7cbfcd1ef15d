"""Attacking one whole image, patch by patch.

Tiles: the grid ``cfzoo detect`` scores by default (:func:`cfzoo.ops.detect.patch_grid`, stride 128: corners
on multiples of 128, plus a last row/column as close to the bottom/right border as the 8-pixel JPEG lattice
allows) and, where that lattice leaves a strip of up to 7 pixels at the border, one more row/column flush
with the border, so every pixel is attacked. Each tile is attacked on its own, then the tiles are pasted
back so that, where they overlap, the tile nearer the top-left corner wins: the 128-grid is exactly as
attacked, each later tile contributes only what earlier ones do not cover, and the flush tiles only the
last few pixels. The detectors' verdicts are taken on the detect grid, cut from the assembled image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cfzoo.errors import CfzooError
from cfzoo.files import check_png_destination
from cfzoo.images import load_image, save_png
from cfzoo.manipulations import TASK_IDS, resize
from cfzoo.metrics import finite_or_none, psnr
from cfzoo.ops.attacks.battery import check_method_fits, check_settings, needs_gradient, run_attack
from cfzoo.ops.attacks.common import AttackSettings
from cfzoo.ops.attacks.registry import get_attack
from cfzoo.ops.detect import verdict_change
from cfzoo.ops.scoring import called_before_and_after
from cfzoo.ops.targets import attack_targets, is_ensemble
from cfzoo.patches import PATCH_SIZE, check_fits, cut_patches, patch_grid
from cfzoo.results import GridShares, ImageAttackSummary, OtherTaskFlag
from cfzoo.zoo.catalog import detectors_here, open_detector
from cfzoo.zoo.registry import STANDARD_VARIANT


def attack_positions(height: int, width: int) -> np.ndarray:
    """Tile corners [K, 2], raster order: the detect grid plus the rows/columns flush with the border."""
    grid = patch_grid(height, width)
    rows = np.unique(np.append(grid[:, 0], height - PATCH_SIZE))
    cols = np.unique(np.append(grid[:, 1], width - PATCH_SIZE))
    grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([grid_rows.ravel(), grid_cols.ravel()], axis=1)


def paste_patches(image: np.ndarray, patches: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with ``patches`` written at ``positions``; where they overlap, the earlier
    position in the list wins (pasting runs backwards)."""
    out = image.copy()
    size = patches.shape[1]
    for patch, (row, col) in zip(patches[::-1], positions[::-1]):
        out[row : row + size, col : col + size] = patch
    return out


@dataclass(frozen=True)
class ImageAttack:
    pixels: np.ndarray  # the attacked image, H x W x 3 uint8
    positions: np.ndarray  # attacked tile corners [K, 2]
    detect_positions: (
        np.ndarray
    )  # the detect grid the verdicts are taken on [J, 2] (of the downscaled copy, surviving a resize)
    psnr_db: float
    zero_gradient_tiles: int
    tpr: dict[str, GridShares]  # by column (family or external id): percent of detect-grid patches called manipulated
    target: str  # the attacked model's id (an ensemble's ids joined by +)
    #: the other tasks' detectors that call the attacked image uncertain or manipulated (with ``other_tasks``)
    still_flagging: list[OtherTaskFlag]


def attack_image(
    pixels: np.ndarray,
    target: str | Sequence[str],
    task: str,
    settings: AttackSettings,
    providers: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
    other_tasks: bool = True,
    variant: str = STANDARD_VARIANT,
) -> ImageAttack:
    """Attack every tile of an H x W x 3 uint8 image as ``settings`` say: a manipulated image made to look pristine
    (goal hide), or an untouched one made to look manipulated by ``task`` (goal frame). ``target``: a family (its
    ``task`` model of ``variant``), a model id or an ``.onnx`` path, or several of those (an ensemble). With ``other_tasks`` every
    other task's detectors read the result too, and those that still flag it are listed: hiding one trace from
    its own detectors does not make an image look untouched to the others.

    With ``settings.survive_resize`` = F the whole image is one sample aimed at every patch of the detect grid of
    its copy downscaled by F (:class:`~cfzoo.ops.attacks.common.AttackTarget`), and the verdicts are taken on that
    copy, as a platform would serve it; the image returned is the one to upload, at full size."""
    check_settings(settings, ensemble=is_ensemble(target))
    if get_attack(settings.method).needs_partners:
        raise CfzooError(
            f"{settings.method} needs the other version of the photo behind every tile (before or after the manipulation), "
            "so it attacks patch sets (attack or robustness with --data), not one IMAGE; the other methods need none"
        )
    factor = settings.survive_resize
    if factor is not None and min(round(length * factor) for length in pixels.shape[:2]) < PATCH_SIZE:
        height, width = pixels.shape[:2]
        raise CfzooError(
            f"downscaled by {factor}, this {width}x{height} image would be smaller than one {PATCH_SIZE}-pixel patch; "
            f"use a factor of at least {PATCH_SIZE / min(height, width):.2f} or a larger image"
        )
    chosen = attack_targets(target, [task], providers, needs_gradient(settings.method), variant)[task]
    check_method_fits(settings.method, chosen, task)
    # surviving a resize, the whole image is one sample, judged by every patch of its downscaled copy
    positions = attack_positions(*pixels.shape[:2]) if factor is None else np.zeros((1, 2), dtype=np.int64)
    tiles = cut_patches(pixels, positions) if factor is None else pixels[None]
    if on_progress is not None:
        on_progress(0, len(tiles))
    result = run_attack(settings, chosen, tiles, on_progress)
    attacked = paste_patches(pixels, result.patches, positions) if factor is None else result.patches[0]
    judged = (pixels, attacked) if factor is None else (resize(pixels, factor), resize(attacked, factor))
    detect_positions = patch_grid(*judged[0].shape[:2])
    detectors = {entry.column: open_detector(entry.id, providers=providers) for entry in detectors_here(task)}
    for member in chosen.detectors:
        detectors.setdefault(member.entry.column, member)
    others = [
        open_detector(entry.id, providers=providers)
        for other in (TASK_IDS if other_tasks else ())
        if other != task
        for entry in detectors_here(other)
    ]
    before, after = called_before_and_after(
        *judged, [*detectors.values(), *others], detect_positions, settings.batch_size
    )
    tpr = {
        column: GridShares(model=detector.entry.id, before=100.0 * before[row].mean(), after=100.0 * after[row].mean())
        for row, (column, detector) in enumerate(detectors.items())
    }
    changes = [
        verdict_change(detector.entry, before[row], after[row]) for row, detector in enumerate(others, len(detectors))
    ]
    return ImageAttack(
        attacked,
        positions,
        detect_positions,
        psnr(pixels, attacked),
        int(result.zero_gradient.sum()),
        tpr,
        "+".join(member.entry.id for member in chosen.detectors),
        [change for change in changes if change.verdict_after != "pristine"],
    )


def attack_image_file(
    image_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    target: str | Sequence[str],
    task: str,
    settings: AttackSettings,
    providers: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
    other_tasks: bool = True,
    variant: str = STANDARD_VARIANT,
) -> tuple[ImageAttack, ImageAttackSummary]:
    """Read an image, attack it, write the result as a lossless PNG (atomically); returns the attack and its
    summary (``cfzoo attack IMAGE``'s document). Refuses to write over the input and to write anything but ``.png``."""
    out_path = check_png_destination(out_path, image_path, "the attack survives only lossless storage")
    loaded = load_image(image_path)
    check_fits(loaded.height, loaded.width, source=image_path)
    attack = attack_image(loaded.pixels, target, task, settings, providers, on_progress, other_tasks, variant)
    save_png(attack.pixels, out_path)
    summary = ImageAttackSummary(
        image=str(image_path),
        out=str(out_path),
        width=loaded.width,
        height=loaded.height,
        notes=list(loaded.notes),
        target=attack.target,
        goal=settings.goal,
        method=settings.method,
        eps=int(settings.eps),
        tiles=len(attack.positions),
        detect_grid_patches=len(attack.detect_positions),
        psnr_db=finite_or_none(attack.psnr_db),
        zero_gradient_tiles=attack.zero_gradient_tiles,
        detect_grid_called_manipulated=attack.tpr,
        still_flagged_by_other_tasks=attack.still_flagging,
        judged_after_resize=settings.survive_resize,
    )
    return attack, summary
