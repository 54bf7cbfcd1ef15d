"""Tables II-IV: attack the manipulated test patches with one target's gradient companion, then measure the
TPR of every detector available here on them (the attack's transfer to the other families), and how each
detector's score ranks them, before and after, against as many pristine test patches (AUC, EER, TPR at low FPR).

Patches come from the device-disjoint test split (:func:`cfzoo.data.split_devices` with the seed) of each
task's patch set; ``max_patches`` takes a seeded subset spread evenly over the test devices. Work streams
in batches, so memory does not grow with the number of patches.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfzoo.data import PatchSet, PatchSetSpec, build_patch_set, manipulated_rows, pristine_sample
from cfzoo.errors import CfzooError, option
from cfzoo.experiments.context import ExperimentContext
from cfzoo.files import check_writable, write_atomically, write_folder_atomically
from cfzoo.images import save_png
from cfzoo.metrics import finite_or_none, psnr_from_mse, tpr_change
from cfzoo.ops.attacks.battery import (
    attack_parameters,
    check_method_fits,
    check_settings,
    needs_gradient,
    partners_for,
    run_attack,
)
from cfzoo.ops.attacks.common import AttackResult, AttackSettings, AttackTarget
from cfzoo.ops.attacks.registry import get_attack
from cfzoo.ops.scoring import called_manipulated
from cfzoo.ops.targets import attack_targets, is_ensemble, target_columns
from cfzoo.paper import PAPER_NUMBERS, PAPER_TABLES, paper_tables
from cfzoo.reports import before_after_cells, before_after_header, column_title, reported_families
from cfzoo.results import AttackReport, AttackRow
from cfzoo.zoo.catalog import detectors_here, open_detector
from cfzoo.zoo.registry import STANDARD_VARIANT, ModelEntry

INDEX_NAME = "index.csv"
INDEX_COLUMNS = (
    "file",
    "task",
    "patch_row",
    "image",
    "device",
    "top",
    "left",
    "target_probability_before",
    "target_probability_after",
)


def paper_tpr(target: str, task: str, family: str, method: str, eps: int) -> float | None:
    """The paper's TPR (percent) of ``family`` after FGSM eps = 1 against ``target``; None for other settings."""
    if method != "fgsm" or eps != 1 or target not in PAPER_TABLES:
        return None
    return paper_tables()[PAPER_TABLES[target]]["by_task"].get(task, {}).get(family)


def attack_patch_set(
    patch_set: PatchSet,
    rows: np.ndarray,
    target: AttackTarget,
    settings: AttackSettings,
    providers: str = "auto",
    save_dir: str | os.PathLike[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[AttackRow, list[dict]]:
    """Attack ``rows`` of ``patch_set`` (one target or an ensemble) and score them with every detector here (the
    zoo's for the task, and the targets themselves where they are external models).

    Returns the table row and, when ``save_dir`` is given, the index records of the PNGs written to
    ``save_dir/<task>/<patch_row>.png``."""
    task = patch_set.task
    if not len(rows):
        raise CfzooError(f"the {task} test patch set has no manipulated patches to attack; check the data folder")
    target_id = "+".join(detector.entry.id for detector in target.detectors)
    target_column = target.detectors[0].entry.column  # the member whose probabilities --save records
    detectors = {entry.column: open_detector(entry.id, providers=providers) for entry in detectors_here(task)}
    for member in target.detectors:
        detectors.setdefault(member.entry.column, member)
    entries = [detector.entry for detector in detectors.values()]
    before = {family: [] for family in detectors}
    after = {family: [] for family in detectors}
    scores_before = {family: [] for family in detectors}
    scores_after = {family: [] for family in detectors}
    squared_error, zero_gradient, steps, queries, index = 0.0, 0, 0, 0, []
    partners = partners_for(settings.method, patch_set, rows)
    started = time.perf_counter()
    for start in range(0, len(rows), settings.batch_size):
        chunk = rows[start : start + settings.batch_size]
        original = np.asarray(patch_set.patches[chunk])
        partner_patches = (
            None if partners is None else np.asarray(patch_set.patches[partners[start : start + settings.batch_size]])
        )
        result: AttackResult = run_attack(settings, target, original, first_row=start, partners=partner_patches)
        squared_error += float(np.sum((result.patches.astype(np.int32) - original) ** 2))
        zero_gradient += int(result.zero_gradient.sum())
        steps += int(result.iterations.sum())
        queries += int(result.queries.sum())
        probabilities = {}
        for family, detector in detectors.items():
            probability_before, decision_before = called_manipulated(detector, original, settings.batch_size)
            probability_after, decision_after = called_manipulated(detector, result.patches, settings.batch_size)
            before[family].append(decision_before)
            after[family].append(decision_after)
            scores_before[family].append(probability_before)
            scores_after[family].append(probability_after)
            probabilities[family] = (probability_before, probability_after)
        if save_dir is not None:
            index += _save_patches(Path(save_dir), patch_set, chunk, result.patches, probabilities[target_column])
        if on_progress is not None:
            on_progress(start + len(chunk), len(rows))
    # the ranking's other class: as many pristine test patches, drawn as the manipulated ones were
    pristine = np.asarray(patch_set.patches[pristine_sample(patch_set, len(rows), settings.seed)])
    pristine_scores = {
        family: called_manipulated(detector, pristine, settings.batch_size)[0] for family, detector in detectors.items()
    }
    samples = len(rows) * int(np.prod(patch_set.patches.shape[1:]))
    row = AttackRow(
        task=task,
        target=target_id,
        test_devices=list(patch_set.meta["devices"]),
        patches=len(rows),
        manipulated_in_split=int((patch_set.labels == 1).sum()),
        psnr_db=finite_or_none(psnr_from_mse(squared_error / samples)),
        mse=round(squared_error / samples, 6),
        zero_gradient_patches=zero_gradient,
        mean_iterations=round(steps / len(rows), 4),
        mean_queries=round(queries / len(rows), 4) if get_attack(settings.method).reports_queries else None,
        seconds=round(time.perf_counter() - started, 2),
        tpr={
            entry.column: tpr_change(
                entry.id,
                before[entry.column],
                after[entry.column],
                None
                if target.is_ensemble
                else paper_tpr(target_column, task, entry.column, settings.method, settings.eps),
                (pristine_scores[entry.column], scores_before[entry.column], scores_after[entry.column]),
                settings.seed,
            )
            for entry in entries
        },
    )
    return row, index


@dataclass(frozen=True)
class AttackPlan:
    """An attack on a dataset, resolved and checked once, before any data work: the settings, what is attacked on
    each task (one target or an ensemble, with companions where the method needs them), the onnxruntime providers
    the other detectors run on, and the folder the attacked patches are saved to (None: not saved)."""

    settings: AttackSettings
    targets: dict[str, AttackTarget]
    providers: str = "auto"
    save_dir: Path | None = None


def plan_attack(
    target: str | Sequence[str],
    settings: AttackSettings,
    tasks: Sequence[str] | None = None,
    providers: str = "auto",
    save_dir: str | os.PathLike[str] | None = None,
    replace_saved: bool = False,
    variant: str = STANDARD_VARIANT,
) -> AttackPlan:
    """``target`` is a family (its model of each task is attacked) or one model, by id or ``.onnx`` path (its task is
    attacked; ``variant`` says which of its detectors), or several of those: their ensemble, on the tasks they share (``tasks``: only these). A one-line
    CfzooError for a missing model, a method that cannot attack it, or a ``save_dir`` that cannot be made, or that
    holds files (unless ``replace_saved``: its contents are then replaced, once the new ones are complete)."""
    check_settings(settings, ensemble=is_ensemble(target))
    targets = attack_targets(target, tasks, providers, needs_gradient(settings.method), variant)
    for task, found in targets.items():
        check_method_fits(settings.method, found, task)
    check_save_dir(save_dir, replace_saved)
    return AttackPlan(settings, targets, providers, None if save_dir is None else Path(save_dir))


def attack_dataset(context: ExperimentContext, plan: AttackPlan) -> AttackReport:
    """Tables II-IV for one planned attack (:func:`plan_attack`): a row per task with every available detector's
    TPR before and after, on the context's ``max_patches`` manipulated test patches per task (drawn with its seed, as
    the device split, which must be the attack's). The context's ``on_status`` hears of patch-set building and
    attacking."""
    settings, save_dir = plan.settings, plan.save_dir
    if settings.seed != context.seed:
        raise CfzooError(
            f"the attack's seed ({settings.seed}) is not the experiment's ({context.seed}); one seed draws the split, "
            "the patches and the random starts"
        )
    dataset, max_patches, status = context.dataset, context.max_patches, context.status
    split = context.split
    rows = []

    def attack_every_task(saving_to: Path | None) -> None:
        index = []
        for task, target in plan.targets.items():
            patch_set = build_patch_set(
                dataset,
                PatchSetSpec(task=task, split="test", seed=settings.seed),
                split,
                context.cache_dir,
                on_progress=functools.partial(status, f"{task} patches"),
            )
            chosen = manipulated_rows(patch_set, max_patches, settings.seed)
            row, saved = attack_patch_set(
                patch_set,
                chosen,
                target,
                settings,
                plan.providers,
                saving_to,
                functools.partial(status, f"{task} attack"),
            )
            rows.append(row)
            index += saved
        if saving_to is not None:
            write_index(saving_to / INDEX_NAME, index)

    if save_dir is None:
        attack_every_task(None)
    else:  # assembled beside --save and put in its place whole: never old PNGs beside new ones
        write_folder_atomically(save_dir, attack_every_task)
    columns = target_columns(plan.targets)
    members = [member.entry for found in plan.targets.values() for member in found.detectors]
    return AttackReport(
        target=columns,
        method=settings.method,
        eps=settings.eps,
        **attack_parameters(settings),
        seed=settings.seed,
        dataset=str(dataset.root),
        test_devices=list(split.test),
        target_trained_on_test_devices=trained_on(members, split.test),
        rows=rows,
        paper_table=PAPER_NUMBERS.get(columns) if settings.method == "fgsm" and settings.eps == 1 else None,
    )


def check_save_dir(save_dir: str | os.PathLike[str] | None, replace_saved: bool = False) -> None:
    """A one-line error, before any work, for a --save folder that is a file, cannot be made or written, or holds
    files (without ``replace_saved``)."""
    if save_dir is None:
        return
    save = option("save_dir", "--save")
    if Path(save_dir).exists() and not Path(save_dir).is_dir():
        raise CfzooError(f"{save_dir} exists and is not a folder; choose a folder for {save}")
    if Path(save_dir).is_dir() and any(Path(save_dir).iterdir()) and not replace_saved:
        raise CfzooError(
            f"{save} {save_dir} is not empty; choose a new folder, or add {option('replace_saved', '--force')} "
            "to replace its contents"
        )
    check_writable(save_dir, save)


def trained_on(entries: Iterable[ModelEntry], devices: Iterable[str]) -> list[str]:
    """Which of ``devices`` the target's models were trained on (their TPR there is not a test figure)."""
    devices = set(devices)
    seen = set()
    for entry in entries:
        seen |= devices & set(entry.training.get("split", {}).get("train", []))
    return sorted(seen)


def write_index(path: Path, records: list[dict]) -> Path:
    """The CSV index of saved adversarial patches (one line per PNG), written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return write_atomically(path, lambda temporary: temporary.write_text(text.getvalue()))


def attack_markdown(report: AttackReport) -> str:
    """Tables II-IV as markdown: each detector's TPR before and after the attack, the paper's in brackets."""
    families = reported_families(report.rows)
    lines = [
        f"TPR (percent) on manipulated test patches, {report.method.upper()} eps = {report.eps}, target {column_title(report.target)}",
        "",
        "| task | patches | PSNR dB | " + before_after_header(families) + " |",
        "|---|---:|---:|" + "---:|---:|" * len(families),
    ]
    for row in report.rows:
        cells = before_after_cells(row.tpr, families, bold=report.target)
        psnr_cell = "inf" if row.psnr_db is None else f"{row.psnr_db:.2f}"
        lines.append(f"| {row.task} | {row.patches} | {psnr_cell} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Bold: the target itself. "
        + (
            f"In brackets: the paper's Table {report.paper_table} (its PSNR is {paper_tables()['psnr_fgsm_eps1_db']} dB)."
            if report.paper_table
            else "The paper reports FGSM eps = 1 against Bayar2016, Cozzolino2017 and Xception only."
        ),
    ]
    return "\n".join(lines)


def _save_patches(
    save_dir: Path, patch_set: PatchSet, rows: np.ndarray, patches: np.ndarray, target_probabilities
) -> list[dict]:
    records = []
    before, after = target_probabilities
    for offset, row in enumerate(rows):
        name = f"{patch_set.task}/{int(row):06d}.png"
        save_png(patches[offset], save_dir / name)
        image = patch_set.images[patch_set.sources[row]]
        top, left = (int(value) for value in patch_set.positions[row])
        records.append(
            {
                "file": name,
                "task": patch_set.task,
                "patch_row": int(row),
                "image": image.relative_path,
                "device": image.device,
                "top": top,
                "left": left,
                "target_probability_before": f"{before[offset]:.6f}",
                "target_probability_after": f"{after[offset]:.6f}",
            }
        )
    return records
