"""The paper's Tables I-V in one run, measured with the zoo's ONNX models (no torch), written to one folder.

- Table I: FPR / TPR / ACC of every detector here on the test devices' patches (pristine and manipulated);
- Tables II-IV: FGSM against every family with gradient companions here (:func:`cfzoo.experiments.transfer.attack_dataset`);
  SPAM+SVM as a target is ours, beyond the paper;
- Table V: GAN restoration of median filtering (:func:`cfzoo.experiments.restoration.evaluate_restoration`), when restorers are here.

All tables share one device-disjoint split (:func:`cfzoo.data.split_devices` with the seed). The output folder
holds REPORT.md (ours beside the paper's figures, differences over :data:`DIFFERENCE_POINTS` listed), one CSV
per table, ``reproduce.json`` (everything, schema :class:`cfzoo.results.ReproduceDocument`) and PNG plots. It is assembled in a
staging folder beside ``out`` and renamed into place, so ``out`` is whole or absent.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cfzoo._version import __version__
from cfzoo.data import (
    PatchSetSpec,
    balanced_subset,
    build_patch_set,
)
from cfzoo.errors import CfzooError
from cfzoo.experiments.cells import timed
from cfzoo.experiments.context import ExperimentContext
from cfzoo.experiments.transfer import attack_dataset, attack_markdown, plan_attack
from cfzoo.files import check_output_dir, write_atomically, write_folder_atomically
from cfzoo.manipulations import get_manipulation
from cfzoo.metrics import ECE_BINS, binary_metrics, detection_rates, finite_or_none, rates_by_device
from cfzoo.ops.attacks.common import AttackSettings, check_eps
from cfzoo.ops.scoring import called_manipulated
from cfzoo.paper import FAMILY_TITLES, PAPER_NUMBERS, PAPER_TABLES, table1
from cfzoo.reports import TABLE1_ORDER, reported_families, table1_markdown
from cfzoo.results import (
    AttackReport,
    AttackRow,
    DataDescription,
    DetectionRow,
    DetectionTable,
    MachineDescription,
    ReportFiles,
    ReproduceDocument,
    ReproduceSettings,
    RestorationReport,
    RestorationRow,
    StageSeconds,
)
from cfzoo.zoo.catalog import attackable_tasks, detectors_here, open_detector
from cfzoo.zoo.registry import FAMILY_IDS
from cfzoo.zoo.restorers import DISCRIMINATORS, RESTORATION_TASKS, how_to_get
from cfzoo.zoo.runtime import Detector, execution_providers, onnxruntime_module

REPORT_NAME, JSON_NAME = "REPORT.md", "reproduce.json"
#: Differences from the paper larger than this many percentage points are listed under each table.
DIFFERENCE_POINTS = 5.0


def attack_targets(tasks: Sequence[str]) -> dict[str, list[str]]:
    """{target family: its attackable tasks among ``tasks``} for every family with gradient companions here:
    the paper's targets first (Tables II-IV), then the others."""
    targets = {}
    for family in sorted(FAMILY_IDS, key=lambda family: family not in PAPER_TABLES):
        try:
            found = [task for task in attackable_tasks(family) if task in tasks]
        except CfzooError:  # no model of this family here
            continue
        if found:
            targets[family] = found
    return targets


def measure_detection(
    context: ExperimentContext, tasks: Sequence[str], models: Sequence[str] = (), per_device: bool = False
) -> DetectionTable:
    """Table I with the zoo's detectors: for each task, every detector here on the test split's patches
    (all, or the context's ``max_patches`` of each class drawn with its seed as `cfzoo evaluate --max-test-patches`
    does). With ``models`` (ids or ``.onnx`` files), those detectors instead, each on its own task; with
    ``per_device``, each row also holds the rates on each test device."""
    split = context.split
    by_task: dict[str, dict[str, Detector]] = {}
    if models:
        for model in models:
            detector = open_detector(model, task=None if len(tasks) != 1 else tasks[0], providers=context.providers)
            same_task = by_task.setdefault(detector.entry.task, {})
            if detector.entry.id in same_task:
                raise CfzooError(
                    f"two of the models are {detector.entry.id!r} (the second: {model}); each row is named by its "
                    "id, so score them in separate runs or register one under another id (cfzoo register)"
                )
            same_task[detector.entry.id] = detector
    else:
        for task in tasks:
            by_task[task] = {
                entry.id: open_detector(entry.id, providers=context.providers) for entry in detectors_here(task)
            }
    rows = []
    for task, detectors in by_task.items():
        if not detectors:
            continue
        patch_set = build_patch_set(
            context.dataset,
            PatchSetSpec(task=task, split="test", seed=context.seed),
            split,
            context.cache_dir,
            on_progress=functools.partial(context.status, f"Table I {task} patches"),
        )
        chosen = balanced_subset(
            patch_set.labels, None if context.max_patches is None else 2 * context.max_patches, context.seed + 1
        )
        scored = {model_id: ([], []) for model_id in detectors}  # probabilities, decisions
        for start in range(0, len(chosen), context.batch_size):
            patches = np.asarray(patch_set.patches[chosen[start : start + context.batch_size]])
            for model_id, detector in detectors.items():
                for found, part in zip(scored[model_id], called_manipulated(detector, patches, context.batch_size)):
                    found.append(part)
            context.status(f"Table I {task} detect", start + len(patches), len(chosen))
        labels = patch_set.labels[chosen]
        devices = patch_set.devices_of(chosen) if per_device else None
        for entry in (detector.entry for detector in detectors.values()):
            probabilities, decisions = (
                np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
                for parts, dtype in zip(scored[entry.id], (np.float64, bool))
            )
            rates = detection_rates(labels, decisions)
            rows.append(
                DetectionRow(
                    task=task,
                    family=entry.family,
                    model=entry.id,
                    pristine=rates.pristine,
                    manipulated=rates.manipulated,
                    **{metric: finite_or_none(getattr(rates, metric)) for metric in ("fpr", "tpr", "acc")},
                    paper=table1(task, entry.family),
                    trained_on_test_devices=sorted(
                        set(split.test) & set(entry.training.get("split", {}).get("train", []))
                    ),
                    binary=binary_metrics(labels, probabilities, decisions, context.seed),
                    by_device=None if devices is None else rates_by_device(labels, decisions, devices),
                )
            )
    return DetectionTable(test_devices=list(split.test), rows=rows)


def machine_description(providers: str) -> MachineDescription:
    return MachineDescription(
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        python=platform.python_version(),
        onnxruntime=onnxruntime_module().__version__,
        providers=list(execution_providers(providers)),
    )


def reproduce(
    context: ExperimentContext,
    out: str | os.PathLike[str],
    tasks: Sequence[str] | None = None,
    eps: int = 1,
    force: bool = False,
    data_description: str | None = None,
) -> ReproduceDocument:
    """Measure Tables I-V on the context's data and write the report folder ``out``; returns the document
    (``reproduce.json``).

    ``tasks`` (default: all eight) restricts every table; the context's ``max_patches`` caps, per task, the
    manipulated patches attacked and restored, and each class of Table I's patches. ``data_description`` says where
    the data came from (e.g. the embedded sample photos) in the report. The tables are measured in independent
    cells (Table I per task, FGSM per target and task, Table V) that the context's ``run_cells`` runs: here, one
    after the other (:data:`~cfzoo.experiments.cells.RUN_HERE`, the default), or elsewhere (the ``ray`` engine: a
    Ray task each); the tables are the same wherever the cells run."""
    out = check_output_dir(out, force)
    check_eps(eps)
    tasks = (
        [task for task in TABLE1_ORDER if task in {get_manipulation(task).task_id for task in tasks}]
        if tasks
        else list(TABLE1_ORDER)
    )
    machine = machine_description(context.providers)  # an unknown provider fails here, before any work
    split = context.split
    started = time.perf_counter()

    # independent cells: Table I per task, FGSM per target and task, Table V; progress only where they run here
    cell_context = context.for_cells()
    detection_cells = [functools.partial(timed, measure_detection, cell_context, [task]) for task in tasks]
    attack_cells = [
        functools.partial(
            timed,
            _attack_cell,
            cell_context.staged(f"FGSM {target}"),
            target,
            task,
            AttackSettings(eps, "fgsm", batch_size=context.batch_size, seed=context.seed),
        )
        for target, target_tasks in attack_targets(tasks).items()
        for task in target_tasks
    ]
    restoration_cell = functools.partial(timed, restore_if_available, cell_context, tasks)
    results = context.run_cells([*detection_cells, *attack_cells, restoration_cell])
    detection_results, attack_results, (restoration, restoration_seconds) = (
        results[: len(detection_cells)],
        results[len(detection_cells) : -1],
        results[-1],
    )
    detection = DetectionTable(
        test_devices=list(split.test),
        rows=[row for table, _ in detection_results for row in table.rows],
    )
    attacks = _merged_attack_reports([report for report, _ in attack_results])
    seconds = {  # each stage: the time its cells took, wherever they ran
        "table1": round(sum(taken for _, taken in detection_results), 2),
        "attacks": round(sum(taken for _, taken in attack_results), 2),
        "restoration": round(restoration_seconds, 2),
    }

    document = ReproduceDocument(
        cfzoo_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        settings=ReproduceSettings(
            tasks=tasks,
            eps=eps,
            method="fgsm",
            seed=context.seed,
            max_patches=context.max_patches,
            providers=context.providers,
            batch_size=context.batch_size,
        ),
        data=DataDescription(
            path=str(context.dataset.root),
            description=data_description,
            images=context.dataset.image_count(),
            devices=list(context.dataset.device_names),
            train_devices=list(split.train),
            test_devices=list(split.test),
        ),
        machine=machine,
        seconds=StageSeconds(**seconds, total=round(time.perf_counter() - started, 2)),
        table1=detection,
        attacks=attacks,
        restoration=restoration,
        differences=differences(detection, attacks, restoration),
    )
    return write_report_folder(document, out)


def _attack_cell(context: ExperimentContext, target: str, task: str, settings: AttackSettings) -> AttackReport:
    """One target on one task, planned where the cell runs (a plan holds onnxruntime sessions, which do not travel)."""
    return attack_dataset(context, plan_attack(target, settings, [task], context.providers))


def _merged_attack_reports(reports: Sequence[AttackReport]) -> list[AttackReport]:
    """One report per target from the per-task cells' reports, rows in task order."""
    by_target: dict[str, list[AttackReport]] = {}
    for report in reports:
        by_target.setdefault(report.target, []).append(report)
    return [
        parts[0].model_copy(
            update={
                "rows": [row for part in parts for row in part.rows],
                "target_trained_on_test_devices": sorted(
                    {device for part in parts for device in part.target_trained_on_test_devices}
                ),
            }
        )
        for parts in by_target.values()
    ]


def restore_if_available(context: ExperimentContext, tasks: Sequence[str]) -> RestorationReport:
    """Table V for the restorers here among ``tasks``; with none, the same keys, no rows and a note saying how to get them."""
    from cfzoo.experiments.restoration import evaluable_restorers, evaluate_restoration

    chosen = [task for task in RESTORATION_TASKS if task in tasks]
    wanted = [f"restorer-{task}-{kind}" for task in chosen for kind in DISCRIMINATORS]
    empty = RestorationReport(
        seed=context.seed,
        dataset=str(context.dataset.root),
        test_devices=list(context.split.test),
        max_patches=context.max_patches,
        missing=wanted,
        rows=[],
    )
    if not chosen:
        return empty.model_copy(
            update={"note": f"Not run: Table V restores {' and '.join(RESTORATION_TASKS)}, none of the tasks chosen"}
        )
    try:
        evaluable_restorers(chosen)
    except CfzooError:  # none of them is here
        task, kind = chosen[0], DISCRIMINATORS[-1]
        return empty.model_copy(
            update={
                "note": f"Not run: no GAN restorer is available here; {how_to_get(task, kind)} (likewise for the others)"
            }
        )
    return evaluate_restoration(context.staged("Table V"), chosen)


# --- comparison with the paper -----------------------------------------------------------------


def differences(
    table1_measured: DetectionTable, attacks: list[AttackReport], restoration: RestorationReport
) -> dict[str, list[str]]:
    """{table key: lines "what: ours vs paper (difference)"} where ours and the paper differ by more than
    :data:`DIFFERENCE_POINTS`; keys ``table1``, ``fgsm_<target>``, ``table5``."""
    found = {"table1": []}
    for row in table1_measured.rows:
        for metric in ("fpr", "tpr", "acc"):
            if row.paper is not None:
                what = f"{FAMILY_TITLES[row.family]} {row.task} {metric.upper()}"
                _compare(found["table1"], what, getattr(row, metric), getattr(row.paper, metric))
    for report in attacks:
        lines = found[f"fgsm_{report.target}"] = []
        for row in report.rows:
            for family, rates in row.tpr.items():
                _compare(lines, f"{FAMILY_TITLES[family]} {row.task} TPR after", rates.after, rates.paper)
    found["table5"] = []
    for row in restoration.rows:
        for family, rates in row.tpr.items():
            _compare(
                found["table5"],
                f"{FAMILY_TITLES[family]} {row.task} ({row.discriminator}) TPR after",
                rates.after,
                rates.paper,
            )
    return found


def _compare(lines: list[str], what: str, ours: float | None, paper: float | None) -> None:
    if ours is None or paper is None or math.isnan(ours) or abs(ours - paper) <= DIFFERENCE_POINTS:
        return
    lines.append(f"{what}: {ours:.2f} vs {paper:.2f} in the paper ({ours - paper:+.2f})")


# --- the report folder -------------------------------------------------------------------------


def attack_file_stem(report: AttackReport) -> str:
    number = {"II": "table2", "III": "table3", "IV": "table4"}.get(report.paper_table)
    return f"{number}_fgsm_{report.target}" if number else f"fgsm_eps{report.eps}_{report.target}"


def table_csvs(document: ReproduceDocument) -> dict[str, str]:
    """{file name: CSV text}, one file per table, values as in the JSON."""
    files = {"table1_detection.csv": document.table1.to_csv()}
    files.update({f"{attack_file_stem(report)}.csv": report.to_csv() for report in document.attacks})
    files["table5_restoration.csv"] = document.restoration.to_csv()
    return files


def report_markdown(document: ReproduceDocument, plots: dict[str, str]) -> str:
    """REPORT.md: settings, data, machine, time per stage, then each table beside the paper's figures."""
    settings, data, machine, seconds = document.settings, document.data, document.machine, document.seconds
    lines = [
        "# The paper's Tables I-V, reproduced with cfzoo",
        "",
        f"cfzoo {document.cfzoo_version}, {document.created}. Paper: Gragnaniello et al., EUSIPCO 2018 (arXiv:1808.08426).",
        "",
        "## Run",
        "",
        (
            f"- settings: tasks {', '.join(settings.tasks)}; FGSM eps = {settings.eps}; seed {settings.seed}; "
            f"max patches per task {settings.max_patches if settings.max_patches is not None else 'all'}; providers {settings.providers}"
        ),
        f"- data: {data.path}" + (f" ({data.description})" if data.description else ""),
        f"- devices: train {', '.join(data.train_devices)}; test {', '.join(data.test_devices)} ({data.images} images in all)",
        f"- machine: {machine.platform}, {machine.cpu_count} CPUs, Python {machine.python}, onnxruntime {machine.onnxruntime} ({', '.join(machine.providers)})",
        f"- time: Table I {seconds.table1:.1f} s, Tables II-IV {seconds.attacks:.1f} s, Table V {seconds.restoration:.1f} s; total {seconds.total:.1f} s",
        "",
        "## Table I: detection without attack",
        "",
    ]
    families = [family for family in FAMILY_IDS if any(row.family == family for row in document.table1.rows)]
    if document.table1.rows:
        lines.append(table1_markdown(document.table1.rows, families))
        trained = sorted({device for row in document.table1.rows for device in row.trained_on_test_devices})
        if trained:
            lines += [
                "",
                f"Note: {', '.join(trained)} were training devices of some detectors; their figures there are not test figures.",
            ]
    else:
        lines.append("No detector of these tasks is available here (`cfzoo list`).")
    lines += _differences_section(document.differences["table1"], plots.get("table1"))
    if plots.get("reliability"):
        lines += [
            f"Calibration: share manipulated against the mean probability of manipulated, per bin of {ECE_BINS} "
            "(the diagonal is a calibrated detector; docs/metrics.md)",
            "",
            f"![{plots['reliability']}]({plots['reliability']})",
            "",
        ]
    lines += ["## Tables II-IV: FGSM and its transfer", ""]
    absent = [target for target in PAPER_TABLES if target not in {report.target for report in document.attacks}]
    if absent:
        lines += [
            "Not run, no model with a gradient companion here for these tasks: "
            + ", ".join(f"{FAMILY_TITLES[target]} (the paper's Table {PAPER_NUMBERS[target]})" for target in absent)
            + "; `cfzoo list` shows the models, `cfzoo pull ID` or `cfzoo train` + `cfzoo export` add them.",
            "",
        ]
    for report in document.attacks:
        title = FAMILY_TITLES[report.target]
        lines += [
            f"### Target {title}: "
            + (
                f"the paper's Table {report.paper_table}"
                if report.paper_table
                else "ours, beyond the paper"
                if report.target not in PAPER_TABLES
                else f"eps = {report.eps}, the paper reports eps = 1"
            ),
            "",
        ]
        lines.append(attack_markdown(report))
        if report.target_trained_on_test_devices:
            lines += [
                "",
                f"Note: {', '.join(report.target_trained_on_test_devices)} were training devices of the {title} models.",
            ]
        lines += _differences_section(document.differences[f"fgsm_{report.target}"], plots.get(f"fgsm_{report.target}"))
    lines += ["## Table V: GAN restoration of median filtering", ""]
    restoration = document.restoration
    if restoration.rows:
        lines.append(_restoration_markdown(restoration))
        lines += _differences_section(document.differences["table5"], plots.get("table5"))
    else:
        lines += [restoration.note + ".", ""]
    return "\n".join(lines)


def _restoration_markdown(restoration: RestorationReport) -> str:
    from cfzoo.experiments.restoration import restoration_markdown

    return restoration_markdown(restoration)


def _differences_section(lines: list[str], plot: str | None) -> list[str]:
    section = [
        "",
        f"Differences from the paper over {DIFFERENCE_POINTS:g} points:"
        if lines
        else f"No difference from the paper over {DIFFERENCE_POINTS:g} points.",
        "",
    ]
    section += [f"- {line}" for line in lines]
    if lines:
        section.append("")
    if plot:
        section += [f"![{plot}]({plot})", ""]
    return section


def before_after_series(rows: Sequence[AttackRow | RestorationRow]) -> list[tuple[str, list, dict]]:
    """Bar series for a before/after TPR report (Tables II-V): per family, a faint 'before' and a solid 'after'."""
    series = []
    for number, family in enumerate(reported_families(rows)):
        for when, style in (("before", {"color": f"C{number}", "alpha": 0.35}), ("after", {"color": f"C{number}"})):
            values = [None if family not in row.tpr else getattr(row.tpr[family], when) for row in rows]
            series.append((f"{FAMILY_TITLES[family]} {when}", values, style))
    return series


def write_plots(document: ReproduceDocument, folder: Path) -> dict[str, str]:
    """PNG plots (matplotlib, Agg, no display): Table I ACC ours vs paper; per attack target, every detector's
    TPR before and after per task; Table V TPR before and after. Returns {table key: file name}."""
    from matplotlib.figure import Figure

    def save(figure: Figure, name: str) -> str:
        write_atomically(
            folder / name, lambda temporary: figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
        )
        return name

    def grouped(axes, groups: list[str], series: list[tuple[str, list[float | None], dict]]) -> None:
        width = 0.8 / max(1, len(series))
        for number, (label, values, style) in enumerate(series):
            positions = np.arange(len(groups)) + (number - (len(series) - 1) / 2) * width
            axes.bar(positions, [np.nan if value is None else value for value in values], width, label=label, **style)
        axes.set_xticks(np.arange(len(groups)), groups, rotation=30, ha="right")
        axes.set_ylim(0, 105)
        axes.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))

    plots = {}
    rows = document.table1.rows
    if rows:
        tasks = list(dict.fromkeys(row.task for row in rows))
        by_key = {(row.family, row.task): row for row in rows}
        series = []
        for number, family in enumerate(family for family in FAMILY_IDS if any(row.family == family for row in rows)):
            colour = f"C{number}"
            series.append(
                (
                    f"{FAMILY_TITLES[family]} ours",
                    [by_key[(family, t)].acc if (family, t) in by_key else None for t in tasks],
                    {"color": colour},
                )
            )
            series.append(
                (
                    f"{FAMILY_TITLES[family]} paper",
                    [(table1(t, family) or {}).get("acc") for t in tasks],
                    {"color": colour, "alpha": 0.35, "hatch": "//"},
                )
            )
        figure = Figure(figsize=(max(6, 1.4 * len(tasks) + 3), 4))
        axes = figure.add_subplot()
        grouped(axes, tasks, series)
        axes.set_ylabel("ACC (%)")
        axes.set_title("Table I: accuracy on the test devices, ours vs the paper")
        plots["table1"] = save(figure, "table1_acc.png")
        plots["reliability"] = save(_reliability_figure(rows, tasks), "table1_reliability.png")
    for report in document.attacks:
        tasks = [row.task for row in report.rows]
        series = before_after_series(report.rows)
        figure = Figure(figsize=(max(6, 1.4 * len(tasks) + 3), 4))
        axes = figure.add_subplot()
        grouped(axes, tasks, series)
        axes.set_ylabel("TPR (%)")
        axes.set_title(f"FGSM eps = {report.eps} against {FAMILY_TITLES[report.target]}: TPR before and after")
        plots[f"fgsm_{report.target}"] = save(figure, f"{attack_file_stem(report)}.png")
    restored = document.restoration.rows
    if restored:
        groups = [f"{row.task} {row.discriminator}" for row in restored]
        series = before_after_series(restored)
        figure = Figure(figsize=(max(6, 1.6 * len(groups) + 3), 4))
        axes = figure.add_subplot()
        grouped(axes, groups, series)
        axes.set_ylabel("TPR (%)")
        axes.set_title("Table V: TPR before and after GAN restoration")
        plots["table5"] = save(figure, "table5_restoration.png")
    return plots


def _reliability_figure(rows: Sequence[DetectionRow], tasks: list[str]):
    """Table I's reliability diagrams: one panel per task, one line per family (points: non-empty bins)."""
    from matplotlib.figure import Figure

    columns = min(4, len(tasks))
    lines = math.ceil(len(tasks) / columns)
    figure = Figure(figsize=(3 * columns, 3 * lines))
    families = [family for family in FAMILY_IDS if any(row.family == family for row in rows)]
    for number, task in enumerate(tasks):
        axes = figure.add_subplot(lines, columns, number + 1)
        axes.plot([0, 1], [0, 1], color="0.7", linewidth=1)
        for family in families:
            found = next((row for row in rows if row.task == task and row.family == family), None)
            if found is None or found.binary is None:
                continue
            points = [(b.mean_probability, b.manipulated_share) for b in found.binary.reliability if b.samples]
            axes.plot(
                *zip(*points), marker="o", markersize=3, label=FAMILY_TITLES[family], color=f"C{families.index(family)}"
            )
        axes.set_title(task, fontsize=9)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.tick_params(labelsize=7)
    figure.axes[0].legend(fontsize=7)
    figure.supxlabel("mean probability of manipulated")
    figure.supylabel("share manipulated")
    return figure


def write_report_folder(document: ReproduceDocument, out: Path) -> ReproduceDocument:
    """Write every file of the report into ``out``, whole or not at all (:func:`~cfzoo.files.write_folder_atomically`);
    returns the document with the files it names."""
    written = []

    def fill(staging: Path) -> None:
        plots = write_plots(document, staging)
        csvs = table_csvs(document)
        for name, text in csvs.items():
            write_atomically(staging / name, lambda temporary, text=text: temporary.write_text(text))
        files = ReportFiles(report=REPORT_NAME, json_file=JSON_NAME, csv=list(csvs), png=sorted(plots.values()))
        complete = document.model_copy(update={"files": files})
        markdown = report_markdown(complete, plots)
        write_atomically(staging / REPORT_NAME, lambda temporary: temporary.write_text(markdown + "\n"))
        payload = json.dumps(complete.to_json(), indent=2, allow_nan=False)
        write_atomically(staging / JSON_NAME, lambda temporary: temporary.write_text(payload + "\n"))
        written.append(complete)

    write_folder_atomically(out, fill)
    return written[0]
