"""How robust is a detector? Every attack of the battery at several eps on the same manipulated test patches.

Per task, the target's detector is attacked by each attack at each eps; a row gives its TPR on the attacked
patches, their PSNR, the model runs per patch and the time. The worst case over the battery counts a patch as
detected only if the detector still calls it manipulated after every attack (RobustBench's rule: the
strongest attack for each patch). TPR is over every chosen manipulated patch, so patches the detector misses
unattacked count as missed everywhere.

Recompression: what social networks do to an upload. Each attacked patch is also stored as JPEG at every
quality of ``recompress`` (default 95, 90, 80) and judged again; ``recompressed`` gives the TPR then, per
quality, for each attack and for the worst case, and for the unattacked patches (a row with attack "none" and
eps 0), since recompression alone can hide a manipulation from a detector. A jpeg task's patches were JPEG-compressed once already, so
recompression is also what the detector was trained to see.

Patches: the manipulated patches of the test devices (device-disjoint split drawn with ``seed``), ``max_patches``
of them per task drawn with ``seed`` evenly over the devices (:func:`cfzoo.data.manipulated_rows`).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cfzoo.data import PatchSetSpec, build_patch_set, manipulated_rows
from cfzoo.errors import CfzooError, check_count, option
from cfzoo.experiments.context import ExperimentContext
from cfzoo.files import write_atomically, write_folder_atomically
from cfzoo.manipulations import jpeg_compress
from cfzoo.metrics import finite_or_none, psnr
from cfzoo.ops.attacks.battery import (
    attack_parameters,
    check_method_fits,
    needs_gradient,
    pristine_rows,
    run_attack,
)
from cfzoo.ops.attacks.common import AttackSettings, AttackTarget, check_eps
from cfzoo.ops.attacks.registry import attack_names, get_attack
from cfzoo.ops.targets import attack_targets, is_ensemble, target_columns
from cfzoo.reports import column_title
from cfzoo.results import AttackParameters, RobustnessReport, RobustnessRow

DEFAULT_ATTACKS = ("fgsm", "pgd", "apgd", "square")
DEFAULT_EPS = (1, 2, 4)
#: JPEG qualities the attacked patches are recompressed at (social networks' range).
DEFAULT_RECOMPRESS = (95, 90, 80)
#: Patches per task by default: enough for a report of the four attacks at three eps on eight tasks in minutes.
DEFAULT_MAX_PATCHES = 32
WORST_CASE = "worst-case"
#: The row (eps 0) of the unattacked patches: their TPR, and after recompression alone.
NO_ATTACK = "none"
REPORT_NAME, JSON_NAME, CSV_NAME, PLOT_NAME = "ROBUSTNESS.md", "robustness.json", "robustness.csv", "eps_curve.png"


def check_battery(attacks: Sequence[str], ensemble: bool = False, survive_jpeg: int | None = None) -> list[str]:
    """The attacks, without repeats, once each is known to fit the target (one detector or an ``ensemble``) and
    ``survive_jpeg``; else a one-line CfzooError, before any work."""
    chosen = list(dict.fromkeys(attacks))
    if not chosen:
        raise CfzooError(f"name at least one attack; choose from: {', '.join(attack_names())}")
    unfit = [attack for attack in chosen if not get_attack(attack).ensemble]
    if ensemble and unfit:
        raise CfzooError(
            f"an ensemble is attacked by {', '.join(attack_names(ensemble=True))} only; leave out {', '.join(unfit)}"
        )
    for attack in chosen:
        AttackSettings(1, attack, survive_jpeg=survive_jpeg)  # a platform step the attack cannot aim through is refused
    return chosen


@dataclass(frozen=True)
class RobustnessSettings:
    """What ``cfzoo robustness`` runs: the ``target`` (a family, a model id or an ``.onnx`` path; several: their
    ensemble, a patch detected while any member detects it), each attack of ``attacks`` at each of ``eps``, on
    ``tasks`` (empty: all the target has), the attacked patches also judged after JPEG at each ``recompress``
    quality. ``queries`` is Square's budget per patch. The seed (device split, patches, the attacks' random starts),
    patches per task, providers and batch size are the :class:`~cfzoo.experiments.context.ExperimentContext`'s.
    Built only when valid (eps, attacks that fit the target and ``survive_jpeg``, qualities): otherwise a one-line
    CfzooError here, before any work."""

    target: str | tuple[str, ...]
    eps: tuple[int, ...] = DEFAULT_EPS
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    tasks: tuple[str, ...] = ()
    queries: int | None = None
    recompress: tuple[int, ...] = DEFAULT_RECOMPRESS
    survive_jpeg: int | None = None

    def __post_init__(self) -> None:
        normalised = {
            "target": self.target if isinstance(self.target, str) else tuple(self.target),
            "eps": tuple(sorted({check_eps(eps) for eps in self.eps})),
            "attacks": tuple(check_battery(self.attacks, is_ensemble(self.target), self.survive_jpeg)),
            "tasks": tuple(self.tasks or ()),
            "recompress": tuple(sorted({check_quality(quality) for quality in self.recompress}, reverse=True)),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        if not self.eps:
            raise CfzooError(f"give at least one {option('eps')}")
        check_count(self.queries, option("queries"), "leave it out for the attack's default")

    def attack_settings(self, attack: str, eps: int, context: ExperimentContext) -> AttackSettings:
        budget = (
            self.queries if "queries" in get_attack(attack).options else None
        )  # only the attacks that take a budget
        return AttackSettings(
            eps,
            attack,
            batch_size=context.batch_size,
            queries=budget,
            seed=context.seed,
            survive_jpeg=self.survive_jpeg,
        )

    def targets(self, context: ExperimentContext) -> dict[str, AttackTarget]:
        """What is attacked for each task (with companions when an attack needs gradients); a one-line CfzooError
        for a target that is missing or that an attack cannot reach."""
        targets = attack_targets(
            self.target, self.tasks or None, context.providers, any(needs_gradient(attack) for attack in self.attacks)
        )
        for task, chosen in targets.items():
            for attack in self.attacks:
                check_method_fits(attack, chosen, task)
        # the reported rates are judged as the attacks judge: --batch-size patches per model run
        return {task: replace(chosen, batch_size=context.batch_size) for task, chosen in targets.items()}


def robustness(context: ExperimentContext, settings: RobustnessSettings) -> RobustnessReport:
    """The robustness report of ``settings.target``: one row per task x eps x attack, a worst-case row per
    task x eps, and a row of the unattacked patches per task. With a context whose cells run elsewhere (the ``ray``
    engine's) each task is a cell of its own, run there and merged in task order: the same report."""
    targets = settings.targets(context)
    if not context.run_cells.in_process:
        cell_context = context.for_cells()
        parts = context.run_cells(
            [functools.partial(robustness, cell_context, replace(settings, tasks=(task,))) for task in targets]
        )
        return parts[0].model_copy(update={"rows": [row for part in parts for row in part.rows]})
    dataset, status = context.dataset, context.status
    seed, recompress = context.seed, settings.recompress
    split = context.split
    rows = []
    for task, chosen in targets.items():
        patch_set = build_patch_set(
            dataset,
            PatchSetSpec(task=task, split="test", seed=seed),
            split,
            context.cache_dir,
            on_progress=functools.partial(status, f"{task} patches"),
        )
        rows_chosen = manipulated_rows(patch_set, context.max_patches, seed)
        if not len(rows_chosen):
            raise CfzooError(f"the {task} test patch set has no manipulated patches to attack; check the data folder")
        original = np.asarray(patch_set.patches[rows_chosen])
        detected_before = chosen.margin(original) > 0
        model = "+".join(member.entry.id for member in chosen.detectors)
        common = {"task": task, "model": model, "patches": len(original), "tpr_before": _percent(detected_before)}
        rows.append(
            RobustnessRow(  # recompression alone, without an attack: how much of the drop is the JPEG's own doing
                **common,
                eps=0,
                attack=NO_ATTACK,
                tpr_after=common["tpr_before"],
                psnr_db=None,
                mean_queries=None,
                seconds=0.0,
                recompressed={
                    str(quality): _percent(chosen.margin(_recompressed(original, quality)) > 0)
                    for quality in recompress
                },
            )
        )
        partners = {attack: pristine_rows(attack, patch_set, rows_chosen) for attack in settings.attacks}
        pristine = {
            attack: None if found is None else np.asarray(patch_set.patches[found])
            for attack, found in partners.items()
        }
        for eps in settings.eps:
            survivors, seconds = detected_before.copy(), 0.0
            survivors_recompressed = {quality: detected_before.copy() for quality in recompress}
            for attack in settings.attacks:
                started = time.perf_counter()
                result = run_attack(
                    settings.attack_settings(attack, eps, context),
                    chosen,
                    original,
                    functools.partial(status, f"{task} eps {eps} {attack}"),
                    pristine=pristine[attack],
                )
                elapsed = time.perf_counter() - started
                detected = chosen.margin(result.patches) > 0
                survivors &= detected
                recompressed = {}
                for quality in recompress:
                    still_detected = chosen.margin(_recompressed(result.patches, quality)) > 0
                    survivors_recompressed[quality] &= still_detected
                    recompressed[str(quality)] = _percent(still_detected)
                seconds += elapsed
                rows.append(
                    RobustnessRow(
                        **common,
                        eps=eps,
                        attack=attack,
                        tpr_after=_percent(detected),
                        psnr_db=finite_or_none(psnr(original, result.patches)),
                        mean_queries=round(float(result.queries.mean()), 2),
                        seconds=round(elapsed, 2),
                        recompressed=recompressed,
                    )
                )
            rows.append(
                RobustnessRow(
                    **common,
                    eps=eps,
                    attack=WORST_CASE,
                    tpr_after=_percent(survivors),
                    psnr_db=None,
                    mean_queries=None,
                    seconds=round(seconds, 2),
                    recompressed={str(quality): _percent(survivors_recompressed[quality]) for quality in recompress},
                )
            )
    return RobustnessReport(
        target=target_columns(targets),
        attacks=list(settings.attacks),
        parameters={
            attack: AttackParameters(**attack_parameters(settings.attack_settings(attack, 1, context)))
            for attack in settings.attacks
        },
        eps=list(settings.eps),
        recompress=list(recompress),
        seed=seed,
        max_patches=context.max_patches,
        dataset=str(dataset.root),
        test_devices=list(split.test),
        rows=rows,
    )


def robustness_markdown(report: RobustnessReport) -> str:
    """Per task, the TPR after each attack and in the worst case, one column per eps."""
    eps_values = report.eps
    lines = [
        f"Robustness of {column_title(report.target)}: TPR (percent) on manipulated test patches of "
        f"{', '.join(report.test_devices)} after each attack, seed {report.seed}",
        "",
        "| task | patches | TPR before | attack | "
        + " | ".join(f"eps {eps}" for eps in eps_values)
        + " | PSNR dB (eps "
        + str(eps_values[0])
        + ") | model runs per patch |",
        "|---|---:|---:|---|" + "---:|" * len(eps_values) + "---:|---:|",
    ]
    for task in dict.fromkeys(row.task for row in report.rows):
        task_rows = [row for row in report.rows if row.task == task and row.attack != NO_ATTACK]
        for number, attack in enumerate([*report.attacks, WORST_CASE]):
            by_eps = {row.eps: row for row in task_rows if row.attack == attack}
            first = by_eps[eps_values[0]]
            cells = [f"{by_eps[eps].tpr_after:.2f}" for eps in eps_values]
            if attack == WORST_CASE:
                cells = [f"**{cell}**" for cell in cells]
            psnr_cell = "" if first.psnr_db is None else f"{first.psnr_db:.2f}"
            runs = "" if first.mean_queries is None else f"{first.mean_queries:.1f}"
            head = f"| {task} | {first.patches} | {first.tpr_before:.2f} |" if number == 0 else "| | | |"
            lines.append(f"{head} {attack} | " + " | ".join(cells) + f" | {psnr_cell} | {runs} |")
    lines += [
        "",
        f"Worst case: a patch counts as detected only if the detector still calls it manipulated after every attack ({', '.join(report.attacks)}).",
    ]
    if report.recompress:
        qualities = [str(quality) for quality in report.recompress]
        lines += [
            "",
            f"After recompression: TPR (percent) when the attacked patches (eps {eps_values[0]}) are stored as JPEG; "
            "attack none: the patches as they were, recompressed",
            "",
            "| task | attack | attacked | " + " | ".join(f"JPEG Q{quality}" for quality in qualities) + " |",
            "|---|---|---:|" + "---:|" * len(qualities),
        ]
        for row in (row for row in report.rows if row.eps in (0, eps_values[0])):
            cells = [f"{row.recompressed[quality]:.2f}" for quality in qualities]
            lines.append(f"| {row.task} | {row.attack} | {row.tpr_after:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise CfzooError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)


def write_robustness_folder(report: RobustnessReport, out: str | os.PathLike[str]) -> Path:
    """ROBUSTNESS.md, robustness.json, robustness.csv and the eps curve (PNG) in ``out``, whole or not at all."""

    def fill(staging: Path) -> None:
        write_eps_curve(report, staging / PLOT_NAME)
        markdown = robustness_markdown(report) + f"\n\n![TPR against eps]({PLOT_NAME})\n"
        for name, text in (
            (REPORT_NAME, markdown),
            (JSON_NAME, json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"),
            (CSV_NAME, report.to_csv()),
        ):
            write_atomically(staging / name, lambda temporary, text=text: temporary.write_text(text))

    return write_folder_atomically(out, fill)


def write_eps_curve(report: RobustnessReport, path: Path) -> Path:
    """TPR against eps, one panel per task, a line per attack and a thick one for the worst case (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(row.task for row in report.rows))
    columns = min(4, len(tasks))
    figure = Figure(figsize=(3.2 * columns, 2.8 * ((len(tasks) + columns - 1) // columns)), layout="constrained")
    for number, task in enumerate(tasks):
        axes = figure.add_subplot((len(tasks) + columns - 1) // columns, columns, number + 1)
        for attack in [WORST_CASE, *report.attacks]:
            points = [(row.eps, row.tpr_after) for row in report.rows if row.task == task and row.attack == attack]
            points.insert(0, (0, next(row.tpr_before for row in report.rows if row.task == task)))
            # the worst case wide and pale underneath, so attacks that reach it stay visible on top of it
            style = (
                {"color": "black", "linewidth": 6, "alpha": 0.25}
                if attack == WORST_CASE
                else {"linewidth": 1.2, "marker": "o"}
            )
            axes.plot(*zip(*points), label=attack, **style)
        axes.set_title(task)
        axes.set_xlabel("eps (gray levels)")
        axes.set_ylabel("TPR %")
        axes.set_ylim(-3, 103)
        axes.set_xticks([0, *report.eps])
    figure.axes[0].legend(fontsize="small")
    figure.suptitle(f"{column_title(report.target)}: TPR after each attack")
    return write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))


def _recompressed(patches: np.ndarray, quality: int) -> np.ndarray:
    return np.stack([jpeg_compress(patch, quality) for patch in patches])


def _percent(decisions: np.ndarray) -> float:
    return round(100.0 * float(np.mean(decisions)), 4) if len(decisions) else 0.0
