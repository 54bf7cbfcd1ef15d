"""How robust is a detector? Every attack of the battery at several eps on the same test patches.

Two goals. Hiding (the default): the manipulated test patches are pushed towards "pristine", and a row gives the
TPR on the attacked patches. Framing: pristine test patches are pushed towards "manipulated" (an innocent photo
made to look manipulated), and a row gives the FPR. Each row also gives the PSNR, the model runs per patch and
the time. The worst case over the battery counts a patch as held (still detected when hiding, still called
pristine when framing) only if the detector holds it after every attack (RobustBench's rule: the strongest
attack for each patch). Rates are over every chosen patch, so patches the detector gets wrong unattacked count as
lost everywhere.

Eps after eps: an attacker allowed eps may use any perturbation of a smaller eps, so each row is an envelope (each
patch's best result at this eps or a smaller one), and the attacks that can (``warm_starts``: PGD, APGD, Square)
begin their search at a larger eps from their own best result at the smaller ones, inside the larger ball.

Recompression: what social networks do to an upload. Each attacked patch is also stored as JPEG at every
quality of ``recompress`` (default 95, 90, 80) and judged again; ``recompressed`` gives the TPR (FPR) then, per
quality, for each attack and for the worst case, and for the unattacked patches (a row with attack "none" and
eps 0), since recompression alone can hide a manipulation from a detector. A jpeg task's patches were JPEG-compressed once already, so
recompression is also what the detector was trained to see.

Patches: the manipulated (hiding) or pristine (framing) patches of the test devices (device-disjoint split drawn
with ``seed``), ``max_patches`` of them per task drawn with ``seed`` evenly over the devices
(:func:`cfzoo.data.class_rows`); the ranking metrics compare them with as many patches of the other class.
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

from cfzoo.data import PatchSetSpec, build_patch_set, class_rows
from cfzoo.errors import CfzooError, check_count, option
from cfzoo.experiments.context import ExperimentContext
from cfzoo.experiments.health import battery_flags, check_target, run_flags, stuck_patches, zero_gradient_flags
from cfzoo.files import write_atomically, write_folder_atomically
from cfzoo.manipulations import jpeg_compress
from cfzoo.metrics import finite_or_none, psnr, ranking_metrics, wilson_interval
from cfzoo.ops.attacks.battery import (
    attack_parameters,
    check_method_fits,
    needs_gradient,
    partners_for,
    run_attack,
)
from cfzoo.ops.attacks.common import AttackSettings, AttackTarget, check_eps, check_goal
from cfzoo.ops.attacks.registry import attack_names, get_attack
from cfzoo.ops.targets import attack_targets, is_ensemble, target_columns
from cfzoo.reports import column_title
from cfzoo.results import LOW_FPR_RULE, AttackParameters, HealthFlag, RobustnessReport, RobustnessRow
from cfzoo.zoo.registry import STANDARD_VARIANT, check_variant

DEFAULT_ATTACKS = ("fgsm", "pgd", "apgd", "square")
DEFAULT_EPS = (1, 2, 4)
#: JPEG qualities the attacked patches are recompressed at (social networks' range).
DEFAULT_RECOMPRESS = (95, 90, 80)
#: Patches per task by default: the fewest for which a worst-case TPR of 0 has a 95% upper bound under 10 points
#: (Wilson: 8.8 points at 0 of 40; 10.7 at 0 of 32), and few enough for a report of the four attacks at three eps
#: on eight tasks in minutes.
DEFAULT_MAX_PATCHES = 40
WORST_CASE = "worst-case"
#: The row (eps 0) of the unattacked patches: their TPR (FPR), and after recompression alone.
NO_ATTACK = "none"
REPORT_NAME, JSON_NAME, CSV_NAME, PLOT_NAME = "ROBUSTNESS.md", "robustness.json", "robustness.csv", "eps_curve.png"


def check_battery(
    attacks: Sequence[str], ensemble: bool = False, survive_jpeg: int | None = None, goal: str = "hide"
) -> list[str]:
    """The attacks, without repeats, once each is known to fit the target (one detector or an ``ensemble``),
    ``survive_jpeg`` and ``goal``; else a one-line CfzooError, before any work."""
    chosen = list(dict.fromkeys(attacks))
    if not chosen:
        raise CfzooError(f"name at least one attack; choose from: {', '.join(attack_names())}")
    unfit = [attack for attack in chosen if not get_attack(attack).ensemble]
    if ensemble and unfit:
        raise CfzooError(
            f"an ensemble is attacked by {', '.join(attack_names(ensemble=True))} only; leave out {', '.join(unfit)}"
        )
    for attack in chosen:
        AttackSettings(1, attack, survive_jpeg=survive_jpeg, goal=goal)  # refuses what the attack cannot aim through
    return chosen


@dataclass(frozen=True)
class RobustnessSettings:
    """What ``cfzoo robustness`` runs: the ``target`` (a family, a model id or an ``.onnx`` path; several: their
    ensemble, a patch detected while any member detects it), each attack of ``attacks`` at each of ``eps``, on
    ``tasks`` (empty: all the target has), towards ``goal`` (hide: manipulated patches; frame: pristine ones), the
    attacked patches also judged after JPEG at each ``recompress`` quality. ``queries`` is Square's budget per
    patch. The seed (device split, patches, the attacks' random starts),
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
    goal: str = "hide"
    #: Which detectors a family target means (:data:`cfzoo.zoo.registry.VARIANTS`).
    variant: str = STANDARD_VARIANT

    def __post_init__(self) -> None:
        check_goal(self.goal)
        check_variant(self.variant)
        normalised = {
            "target": self.target if isinstance(self.target, str) else tuple(self.target),
            "eps": tuple(sorted({check_eps(eps) for eps in self.eps})),
            "attacks": tuple(check_battery(self.attacks, is_ensemble(self.target), self.survive_jpeg, self.goal)),
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
            goal=self.goal,
        )

    def targets(self, context: ExperimentContext) -> dict[str, AttackTarget]:
        """What is attacked for each task (with companions when an attack needs gradients); a one-line CfzooError
        for a target that is missing or that an attack cannot reach."""
        targets = attack_targets(
            self.target,
            self.tasks or None,
            context.providers,
            any(needs_gradient(attack) for attack in self.attacks),
            self.variant,
        )
        for task, chosen in targets.items():
            for attack in self.attacks:
                check_method_fits(attack, chosen, task)
        # the reported rates are judged as the attacks judge: --batch-size patches per model run, towards the goal
        return {
            task: replace(chosen, batch_size=context.batch_size, goal=self.goal) for task, chosen in targets.items()
        }


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
    rows, health = [], []
    for task, chosen in targets.items():
        task_rows, task_health = _task_robustness(context, settings, task, chosen)
        rows += task_rows
        health += task_health
    return RobustnessReport(
        target=target_columns(targets),
        goal=settings.goal,
        attacks=list(settings.attacks),
        parameters={
            attack: AttackParameters(
                **attack_parameters(settings.attack_settings(attack, 1, context)),
                warm_start=get_attack(attack).warm_starts or None,
            )
            for attack in settings.attacks
        },
        eps=list(settings.eps),
        recompress=list(settings.recompress),
        seed=context.seed,
        max_patches=context.max_patches,
        dataset=str(context.dataset.root),
        test_devices=list(context.split.test),
        rows=rows,
        health=health,
    )


@dataclass
class _Best:
    """One attack's best result so far, per patch: the lowest attacker's margin over its runs at this eps and
    every smaller one (an attacker allowed eps may use any perturbation of a smaller eps)."""

    patches: np.ndarray
    margins: np.ndarray

    def take(self, patches: np.ndarray, margins: np.ndarray) -> None:
        better = margins < self.margins
        self.patches[better], self.margins[better] = patches[better], margins[better]


def _task_robustness(
    context: ExperimentContext, settings: RobustnessSettings, task: str, chosen: AttackTarget
) -> tuple[list[RobustnessRow], list[HealthFlag]]:
    """The rows of one task (none, then each eps: each attack and the worst case) and its health flags.

    Everything runs on the attacker's margins (``chosen.margin``: above 0 where the detector holds the patch,
    whatever the goal); a row reports the share the detector calls manipulated, TPR or FPR."""
    seed, recompress, status, goal = context.seed, settings.recompress, context.status, settings.goal
    patch_set = build_patch_set(
        context.dataset,
        PatchSetSpec(task=task, split="test", seed=seed),
        context.split,
        context.cache_dir,
        on_progress=functools.partial(status, f"{task} patches"),
    )
    attacked_label = 1 if goal == "hide" else 0
    rows_chosen = class_rows(patch_set, attacked_label, context.max_patches, seed)
    if not len(rows_chosen):
        kind = "manipulated" if goal == "hide" else "pristine"
        raise CfzooError(f"the {task} test patch set has no {kind} patches to attack; check the data folder")
    original = np.asarray(patch_set.patches[rows_chosen])
    others = np.asarray(patch_set.patches[class_rows(patch_set, 1 - attacked_label, len(rows_chosen), seed)])
    margins_before = chosen.margin(original)
    other_margins = chosen.margin(others)
    health = check_target(task, chosen, original, margins_before, settings.attacks)
    model = "+".join(member.entry.id for member in chosen.detectors)
    flagged_before = _flagged(margins_before, goal)
    # ranked by the detector's score: the attacker's margin when hiding, minus it when framing
    score_sign = 1.0 if goal == "hide" else -1.0
    labels = np.r_[np.full(len(original), attacked_label), np.full(len(others), 1 - attacked_label)]

    def row(eps: int, attack: str, margins: np.ndarray, **measured) -> RobustnessRow:
        flagged = _flagged(margins, goal)
        return RobustnessRow(
            task=task,
            model=model,
            patches=len(original),
            flagged_before=_percent(flagged_before),
            flagged_before_interval=_wilson(flagged_before),
            eps=eps,
            attack=attack,
            flagged_after=_percent(flagged),
            flagged_after_interval=_wilson(flagged),
            compared=len(others),
            ranking=ranking_metrics(labels, score_sign * np.r_[margins, other_margins], seed),
            **measured,
        )

    def recompressed_flagged(patches: np.ndarray, quality: int) -> np.ndarray:
        return _flagged(chosen.margin(_recompressed(patches, quality)), goal)

    rows = [  # recompression alone, without an attack: how much of the change is the JPEG's own doing
        row(
            0,
            NO_ATTACK,
            margins_before,
            psnr_db=None,
            mean_queries=None,
            seconds=0.0,
            recompressed={str(quality): _percent(recompressed_flagged(original, quality)) for quality in recompress},
        )
    ]
    partners = {attack: partners_for(attack, patch_set, rows_chosen) for attack in settings.attacks}
    partner_patches = {
        attack: None if found is None else np.asarray(patch_set.patches[found]) for attack, found in partners.items()
    }
    best = {attack: _Best(original.copy(), margins_before.copy()) for attack in settings.attacks}
    raw_held: dict[str, int] = {}  # patches each attack's own run at the last eps left held
    for eps in settings.eps:
        seconds = 0.0
        held_recompressed = {quality: margins_before > 0 for quality in recompress}
        stuck = {}
        for attack in settings.attacks:
            started = time.perf_counter()
            # from the second eps on, an attack that can searches from its best result so far (inside this ball)
            warm = attack in raw_held and get_attack(attack).warm_starts
            result = run_attack(
                settings.attack_settings(attack, eps, context),
                chosen,
                original,
                functools.partial(status, f"{task} eps {eps} {attack}"),
                partners=partner_patches[attack],
                start=best[attack].patches.copy() if warm else None,
            )
            elapsed = time.perf_counter() - started
            margins = chosen.margin(result.patches)
            health += run_flags(task, eps, attack, margins, raw_held.get(attack))
            stuck[attack] = stuck_patches(margins, result)
            raw_held[attack] = int(np.sum(margins > 0))
            best[attack].take(result.patches, margins)
            recompressed = {}
            for quality in recompress:
                flagged = recompressed_flagged(best[attack].patches, quality)
                held_recompressed[quality] &= flagged if goal == "hide" else ~flagged
                recompressed[str(quality)] = _percent(flagged)
            seconds += elapsed
            rows.append(
                row(
                    eps,
                    attack,
                    best[attack].margins,
                    psnr_db=finite_or_none(psnr(original, best[attack].patches)),
                    mean_queries=round(float(result.queries.mean()), 2),
                    seconds=round(elapsed, 2),
                    recompressed=recompressed,
                )
            )
        health += zero_gradient_flags(task, eps, stuck)
        worst = np.min([found.margins for found in best.values()], axis=0)
        rows.append(
            row(
                eps,
                WORST_CASE,
                worst,
                psnr_db=None,
                mean_queries=None,
                seconds=round(seconds, 2),
                recompressed={
                    str(quality): _percent(held if goal == "hide" else ~held)
                    for quality, held in held_recompressed.items()
                },
            )
        )
    health += battery_flags(task, [found for found in rows if found.eps > 0], goal)
    return rows, health


def _flagged(margins: np.ndarray, goal: str) -> np.ndarray:
    """Which patches the detector calls manipulated, from the attacker's margins (above 0: the detector holds)."""
    return margins > 0 if goal == "hide" else ~(margins > 0)


def health_line(report: RobustnessReport) -> str | None:
    """One line for the top of a flagged report: how many flags of which kinds (None when there is none)."""
    if not report.health:
        return None
    kinds = ", ".join(
        f"{flag} x{sum(found.flag == flag for found in report.health)}"
        for flag in dict.fromkeys(found.flag for found in report.health)
    )
    return f"FLAGGED: this evaluation may be unreliable ({kinds}); see the health flags (docs/robustness.md says what each means)"


def health_details(report: RobustnessReport) -> list[str]:
    """One line per health flag: where it was seen and what it means."""
    return [
        f"{found.flag}: {found.task}"
        + ("" if found.eps is None else f", eps {found.eps}")
        + ("" if found.attack is None else f", {found.attack}")
        + f": {found.detail}"
        for found in report.health
    ]


def robustness_markdown(report: RobustnessReport) -> str:
    """Per task, the TPR (hiding) or FPR (framing) after each attack and in the worst case, one column per eps; a
    flagged report says so first."""
    eps_values = report.eps
    flagged = health_line(report)
    rate, attacked, other = goal_words(report.goal)
    lines = [f"**{flagged}**", ""] if flagged else []
    lines += [
        f"Robustness of {column_title(report.target)} ({report.goal}): {rate} (percent) on {attacked} test patches of "
        f"{', '.join(report.test_devices)} after each attack, seed {report.seed}",
        "",
        f"| task | patches | {rate} before | attack | "
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
            cells = [f"{by_eps[eps].flagged_after:.2f}" for eps in eps_values]
            if attack == WORST_CASE:
                cells = [
                    f"**{cell}** {_interval_text(by_eps[eps].flagged_after_interval)}"
                    for eps, cell in zip(eps_values, cells)
                ]
            psnr_cell = "" if first.psnr_db is None else f"{first.psnr_db:.2f}"
            runs = "" if first.mean_queries is None else f"{first.mean_queries:.1f}"
            head = f"| {task} | {first.patches} | {first.flagged_before:.2f} |" if number == 0 else "| | | |"
            lines.append(f"{head} {attack} | " + " | ".join(cells) + f" | {psnr_cell} | {runs} |")
    lines += [
        "",
        f"Worst case: a patch counts as {'detected' if report.goal == 'hide' else 'called pristine'} only if the "
        f"detector still {'calls it manipulated' if report.goal == 'hide' else 'calls it pristine'} after every attack "
        f"({', '.join(report.attacks)}), with its 95% Wilson interval. Each attack's figure at an eps is the envelope: "
        "every patch's best result at that eps or a smaller one.",
        "",
        f"Ranking under attack: the worst case's attacked {attacked} patches against as many {other} test patches "
        f"(AUC 0..1; TPR percent at FPR 1%, {LOW_FPR_RULE})",
        "",
        "| task | " + " | ".join(f"eps {eps}: AUC / TPR@FPR1" for eps in [0, *eps_values]) + " |",
        "|---|" + "---:|" * (len(eps_values) + 1),
    ]
    for task in dict.fromkeys(row.task for row in report.rows):
        ranked = [row for row in report.rows if row.task == task and row.attack in (NO_ATTACK, WORST_CASE)]
        cells = [f"{_number(row.ranking.auc, 3)} / {_number(row.ranking.tpr_at_fpr_1, 1)}" for row in ranked]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if report.health:
        lines += ["", "Health flags:", "", *(f"- {line}" for line in health_details(report))]
    if report.recompress:
        qualities = [str(quality) for quality in report.recompress]
        lines += [
            "",
            f"After recompression: {rate} (percent) when the attacked patches (eps {eps_values[0]}) are stored as JPEG; "
            "attack none: the patches as they were, recompressed",
            "",
            "| task | attack | attacked | " + " | ".join(f"JPEG Q{quality}" for quality in qualities) + " |",
            "|---|---|---:|" + "---:|" * len(qualities),
        ]
        for row in (row for row in report.rows if row.eps in (0, eps_values[0])):
            cells = [f"{row.recompressed[quality]:.2f}" for quality in qualities]
            lines.append(f"| {row.task} | {row.attack} | {row.flagged_after:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_words(goal: str) -> tuple[str, str, str]:
    """(the rate a report of ``goal`` gives, the patches attacked, the other class): TPR on manipulated patches
    when hiding, FPR on pristine ones when framing."""
    return ("TPR", "manipulated", "pristine") if goal == "hide" else ("FPR", "pristine", "manipulated")


def check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise CfzooError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)


def write_robustness_folder(report: RobustnessReport, out: str | os.PathLike[str]) -> Path:
    """ROBUSTNESS.md, robustness.json, robustness.csv and the eps curve (PNG) in ``out``, whole or not at all."""

    def fill(staging: Path) -> None:
        write_eps_curve(report, staging / PLOT_NAME)
        markdown = robustness_markdown(report) + f"\n\n![{goal_words(report.goal)[0]} against eps]({PLOT_NAME})\n"
        for name, text in (
            (REPORT_NAME, markdown),
            (JSON_NAME, json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"),
            (CSV_NAME, report.to_csv()),
        ):
            write_atomically(staging / name, lambda temporary, text=text: temporary.write_text(text))

    return write_folder_atomically(out, fill)


def write_eps_curve(report: RobustnessReport, path: Path) -> Path:
    """TPR (hiding) or FPR (framing) against eps, one panel per task, a line per attack and a thick one for the
    worst case (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(row.task for row in report.rows))
    rate = goal_words(report.goal)[0]
    columns = min(4, len(tasks))
    figure = Figure(figsize=(3.2 * columns, 2.8 * ((len(tasks) + columns - 1) // columns)), layout="constrained")
    for number, task in enumerate(tasks):
        axes = figure.add_subplot((len(tasks) + columns - 1) // columns, columns, number + 1)
        for attack in [WORST_CASE, *report.attacks]:
            points = [(row.eps, row.flagged_after) for row in report.rows if row.task == task and row.attack == attack]
            points.insert(0, (0, next(row.flagged_before for row in report.rows if row.task == task)))
            # the worst case wide and pale underneath, so attacks that reach it stay visible on top of it
            style = (
                {"color": "black", "linewidth": 6, "alpha": 0.25}
                if attack == WORST_CASE
                else {"linewidth": 1.2, "marker": "o"}
            )
            axes.plot(*zip(*points), label=attack, **style)
        axes.set_title(task)
        axes.set_xlabel("eps (gray levels)")
        axes.set_ylabel(f"{rate} %")
        axes.set_ylim(-3, 103)
        axes.set_xticks([0, *report.eps])
    figure.axes[0].legend(fontsize="small")
    figure.suptitle(f"{column_title(report.target)}: {rate} after each attack ({report.goal})")
    return write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))


def _recompressed(patches: np.ndarray, quality: int) -> np.ndarray:
    return np.stack([jpeg_compress(patch, quality) for patch in patches])


def _interval_text(bounds: list[float | None]) -> str:
    return "[" + ", ".join(_number(bound, 1) for bound in bounds) + "]"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _wilson(decisions: np.ndarray) -> list[float | None]:
    return [finite_or_none(bound) for bound in wilson_interval(int(np.sum(decisions)), len(decisions))]


def _percent(decisions: np.ndarray) -> float:
    return round(100.0 * float(np.mean(decisions)), 4) if len(decisions) else 0.0
