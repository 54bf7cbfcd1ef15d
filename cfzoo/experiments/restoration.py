"""The paper's Table V: GAN restoration of median filtering against every detector here.

:func:`evaluate_restoration`: for each task and discriminator kind, the TPR of every detector here on restored
median-filtered test patches (and before restoration), and PSNR / SSIM of the restored and of the filtered
patches against their pristine partners (same photo, same position). Restoring itself is :mod:`cfzoo.ops.restore`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence

import numpy as np

from cfzoo.data import (
    PatchSetSpec,
    aligned_pairs,
    build_patch_set,
    manipulated_rows,
)
from cfzoo.errors import CfzooError
from cfzoo.experiments.context import ExperimentContext
from cfzoo.metrics import finite_or_none, psnr_from_mse, quality_sums, tpr_change
from cfzoo.ops.restore import load_restorer, restore_patches
from cfzoo.ops.scoring import called_manipulated
from cfzoo.paper import paper_tables
from cfzoo.reports import before_after_cells, before_after_header, reported_families
from cfzoo.results import Quality, RestorationQuality, RestorationReport, RestorationRow
from cfzoo.zoo.catalog import detectors_here, open_detector
from cfzoo.zoo.resolve import is_available
from cfzoo.zoo.restorers import (
    DISCRIMINATOR_TITLES,
    DISCRIMINATORS,
    RESTORATION_TASKS,
    RestorerEntry,
    check_restorer,
    how_to_get,
    load_restorer_registry,
    restorer_id,
)

PAPER_TABLE = "table5_gan_restoration_median"


# --- Table V ----------------------------------------------------------------------------------


def paper_tpr(task: str, discriminator: str, family: str) -> float | None:
    """The paper's Table V TPR (percent) of ``family`` after restoration, or None where it has none."""
    return paper_tables()[PAPER_TABLE]["by_discriminator"].get(discriminator, {}).get(task, {}).get(family)


def evaluable_restorers(
    tasks: Iterable[str] | None = None, discriminators: Iterable[str] | None = None
) -> tuple[list[RestorerEntry], list[str]]:
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
            if entry is not None and is_available(entry, RestorerEntry.kind):
                found.append(entry)
            else:
                missing.append((task, kind))
    if missing and (not found or (tasks and discriminators)):
        task, kind = missing[0]
        raise CfzooError(f"restorer {restorer_id(task, kind)} is not available here; {how_to_get(task, kind)}")
    return found, [restorer_id(task, kind) for task, kind in missing]


def evaluate_restoration(
    context: ExperimentContext, tasks: Sequence[str] | None = None, discriminators: Sequence[str] | None = None
) -> RestorationReport:
    """Table V on the test devices of the context's data (device split drawn with its seed).

    For each task, its manipulated test patches (all, or ``max_patches`` spread evenly over the test devices)
    and their pristine partners; for each restorer of the task: restored patches, every detector's TPR on
    them and on the filtered patches, PSNR and SSIM against the pristine partners. Works in batches."""
    restorers, missing = evaluable_restorers(tasks, discriminators)
    split = context.split
    rows = []
    for task in dict.fromkeys(entry.task for entry in restorers):
        patch_set = build_patch_set(
            context.dataset,
            PatchSetSpec(task=task, split="test", seed=context.seed),
            split,
            context.cache_dir,
            on_progress=functools.partial(context.status, f"{task} patches"),
        )
        partners, manipulated = aligned_pairs(patch_set)
        chosen = np.searchsorted(manipulated, manipulated_rows(patch_set, context.max_patches, context.seed))
        entries = detectors_here(task)
        detectors = {entry.family: open_detector(entry.id, providers=context.providers) for entry in entries}
        kinds = [entry for entry in restorers if entry.task == task]
        sessions = {entry.discriminator: load_restorer(task, entry.discriminator, context.providers) for entry in kinds}
        before = {family: [] for family in detectors}
        after = {kind: {family: [] for family in detectors} for kind in sessions}
        sums = {name: np.zeros(2) for name in ("input", *sessions)}  # squared error, SSIM sum
        seconds = dict.fromkeys(sessions, 0.0)
        for start in range(0, len(chosen), context.batch_size):
            batch = chosen[start : start + context.batch_size]
            filtered = np.asarray(patch_set.patches[manipulated[batch]])
            pristine = np.asarray(patch_set.patches[partners[batch]])
            sums["input"] += quality_sums(pristine, filtered)[:2]
            for family, detector in detectors.items():
                before[family].append(called_manipulated(detector, filtered, context.batch_size)[1])
            for kind, restorer in sessions.items():
                started = time.perf_counter()
                restored = restore_patches(restorer, filtered, context.batch_size)
                seconds[kind] += time.perf_counter() - started
                sums[kind] += quality_sums(pristine, restored)[:2]
                for family, detector in detectors.items():
                    after[kind][family].append(called_manipulated(detector, restored, context.batch_size)[1])
            context.status(f"{task} restore", start + len(batch), len(chosen))
        samples = len(chosen) * int(np.prod(patch_set.patches.shape[1:]))
        for entry in kinds:
            rows.append(
                RestorationRow(
                    task=task,
                    discriminator=entry.discriminator,
                    restorer=entry.id,
                    patches=len(chosen),
                    quality=RestorationQuality(
                        input=_quality(sums["input"], samples, len(chosen)),
                        restored=_quality(sums[entry.discriminator], samples, len(chosen)),
                    ),
                    restore_seconds=round(seconds[entry.discriminator], 2),
                    tpr={
                        detector_entry.family: tpr_change(
                            detector_entry.id,
                            before[detector_entry.family],
                            after[entry.discriminator][detector_entry.family],
                            paper_tpr(task, entry.discriminator, detector_entry.family),
                        )
                        for detector_entry in entries
                    },
                )
            )
    return RestorationReport(
        seed=context.seed,
        dataset=str(context.dataset.root),
        test_devices=list(split.test),
        max_patches=context.max_patches,
        missing=missing,
        rows=rows,
    )


def _quality(sums: np.ndarray, samples: int, images: int) -> Quality:
    """PSNR and SSIM from (sum of squared errors, sum of SSIM) over ``images`` holding ``samples`` values."""
    return Quality(psnr_db=finite_or_none(psnr_from_mse(sums[0] / samples)), ssim=round(float(sums[1]) / images, 6))


def restoration_markdown(report: RestorationReport) -> str:
    """Table V as markdown: TPR of every detector before and after restoration, the paper's in brackets."""
    families = reported_families(report.rows)
    lines = [
        f"TPR (percent) on median-filtered test patches before and after GAN restoration; test devices: {', '.join(report.test_devices)}",
        "",
        "| task | discriminator | patches | PSNR dB filtered -> restored | SSIM filtered -> restored | "
        + before_after_header(families)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|---:|" * len(families),
    ]
    for row in report.rows:
        cells = before_after_cells(row.tpr, families)
        quality = row.quality
        lines.append(
            f"| {row.task} | {row.discriminator} | {row.patches} | {_db(quality.input.psnr_db)} -> {_db(quality.restored.psnr_db)} | "
            f"{quality.input.ssim:.4f} -> {quality.restored.ssim:.4f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        (
            "In brackets: the paper's Table V (TPR after restoration; the paper reports no PSNR or SSIM). "
            f"Discriminators: kim = {DISCRIMINATOR_TITLES['kim']}, vgg = {DISCRIMINATOR_TITLES['vgg']}."
        ),
    ]
    if report.missing:
        lines.append(f"Not available here: {', '.join(report.missing)}.")
    return "\n".join(lines)


def _db(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2f}"
