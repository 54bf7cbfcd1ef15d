"""``cfzoo evaluate``: Table I (FPR, TPR, ACC per family and task on the test devices)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import handle_errors, progress_bar, stdout
from cfzoo.cli.data import DATA_DIR, open_dataset
from cfzoo.cli.render import FORMATS, chosen_format, format_option, json_flag, print_document
from cfzoo.errors import CfzooError
from cfzoo.experiments.context import ExperimentContext
from cfzoo.families import FAMILIES
from cfzoo.manipulations import TASK_IDS, check_laundering, get_manipulation
from cfzoo.paper import FAMILY_TITLES
from cfzoo.paths import default_checkpoint_dir
from cfzoo.reports import TABLE1_ORDER, table1_markdown
from cfzoo.results import LOW_FPR_RULE, CheckpointRow, CheckpointTable, DetectionTable, Rates
from cfzoo.training import require_training_extra
from cfzoo.zoo.registry import check_variant


@handle_errors
def evaluate(
    data: Path | None = DATA_DIR,
    checkpoints: Path | None = typer.Option(
        None, "--checkpoints", help="Folder of trained checkpoints (default $CFZOO_HOME/checkpoints)."
    ),
    family: list[str] = typer.Option([], "--family", "-f", help=f"Only these families: {', '.join(FAMILIES)}."),
    task: list[str] = typer.Option([], "--task", "-t", help=f"Only these tasks: {', '.join(TASK_IDS)}."),
    recorded: bool = typer.Option(
        False,
        "--recorded",
        help="Use the test metrics stored at training time instead of scoring again (needs only the JSON records).",
    ),
    max_test_patches: int | None = typer.Option(
        None, "--max-test-patches", help="Score a seeded, balanced subset of the test patches."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE)."
    ),
    save_metrics: bool = typer.Option(
        False,
        "--save-metrics",
        help="Store the measured test metrics in each checkpoint's record (for models trained with --no-evaluate).",
    ),
    per_device: bool = typer.Option(
        False,
        "--per-device",
        help="Also print FPR, TPR and ACC on each test device, to see which cameras a model fails on (checkpoints "
        "and --model alike; JSON rows get by_device, CSV a line per model and test device).",
    ),
    model: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="Score these ONNX detectors instead of checkpoints (repeatable): ids (`cfzoo list`, `cfzoo register`) or .onnx "
        "files (docs/contract.md; one not made by cfzoo needs one --task). onnxruntime only, no torch.",
    ),
    seed: int = typer.Option(0, "--seed", help="With --model: seed of the device split and of --max-test-patches."),
    variant: str = typer.Option(
        "standard", "--variant", help="Which checkpoints: standard, wild or robust (<family>-<task>-<variant>)."
    ),
    laundering: str | None = typer.Option(
        None,
        "--laundering",
        help="Score the test photos laundered as a platform would (wild: what wild variants train on, each photo's "
        "JPEG re-save and downscale drawn for it) instead of as they are; --save-metrics stores them as test_wild.",
    ),
    output_format: str = format_option(*FORMATS),
    as_json: bool = json_flag(),
    markdown: bool = typer.Option(
        False, "--markdown", help="The same as --format markdown: Table I with the paper's figures beside ours."
    ),
) -> None:
    """Table I: FPR, TPR and ACC (percent) of every trained detector on its unseen test devices.

    With --per-device, JSON rows carry by_device and CSV has one line per model, then one per model and test device
    (checkpoints scored now always carry them).

    Examples: cfzoo evaluate ../shared/data/cameras --format markdown; cfzoo evaluate ../shared/data/cameras -m bayar2016-jpeg70 --per-device
    """
    output_format = chosen_format(output_format, FORMATS, as_json, markdown)
    if model:
        _evaluate_models(
            data,
            model,
            task,
            max_test_patches,
            seed,
            cache_dir,
            output_format,
            per_device,
            (family, checkpoints, recorded, save_metrics, variant != "standard", laundering),
        )
        return
    families = list(dict.fromkeys(family)) or list(FAMILIES)
    tasks = list(dict.fromkeys(task)) or list(TABLE1_ORDER)
    for name in families:
        if name not in FAMILIES:
            raise CfzooError(f"unknown family {name!r}; choose one of: {', '.join(FAMILIES)}")
    for task_id in tasks:
        get_manipulation(task_id)
    if not recorded:
        require_training_extra()
    from cfzoo.families.checkpoints import available_models, evaluate_checkpoints, recorded_rows

    checkpoints = checkpoints or default_checkpoint_dir()
    # recorded metrics need only the JSON records (Xception's 83 MB weights are not committed)
    check_variant(variant)
    if laundering is not None:
        check_laundering(laundering)
        if recorded:
            raise CfzooError("--laundering scores laundered test photos now; it cannot be combined with --recorded")
    models = available_models(checkpoints, families, tasks, need_weights=not recorded, variant=variant)
    if not models:
        raise CfzooError(f"no trained checkpoints for these families and tasks in {checkpoints}; run cfzoo train first")
    if recorded and per_device:
        raise CfzooError("--per-device needs the test patches scored again; leave out --recorded")
    if recorded and save_metrics:
        raise CfzooError("--save-metrics stores scores measured now; it cannot be combined with --recorded")
    if recorded:
        rows = recorded_rows(checkpoints, models, variant)
    else:
        dataset = open_dataset(data, cache_dir)
        with progress_bar("scoring test patches") as update:

            def on_status(stage: str, done: int, total: int) -> None:
                update(done, total)

            rows = evaluate_checkpoints(
                dataset, checkpoints, models, cache_dir, max_test_patches, on_status, save_metrics, variant, laundering
            )
    present = [name for name in families if any(row.family == name for row in rows)]
    print_document(
        CheckpointTable(rows=rows),
        output_format,
        lambda: _print_table(rows, present),
        lambda: table1_markdown(rows, present),
    )
    if per_device and output_format in ("table", "markdown"):
        _print_device_table({f"{row.family}-{row.task}": row.by_device for row in rows})


def _evaluate_models(
    data, models, tasks, max_test_patches, seed, cache_dir, output_format, per_device, checkpoint_options
) -> None:
    """Table I rows of ONNX detectors given by id or file, scored with onnxruntime on the test devices."""
    if any(option for option in checkpoint_options):
        raise CfzooError(
            "--model scores ONNX detectors; --family, --checkpoints, --recorded, --save-metrics, --variant "
            "and --laundering apply to checkpoints"
        )
    if output_format == "markdown":
        raise CfzooError(
            "--format markdown lays out the paper's Table I by family; with --model use table, json or csv"
        )
    from cfzoo.experiments.reproduce import measure_detection

    dataset = open_dataset(data, cache_dir)
    with progress_bar("scoring test patches") as update:
        context = ExperimentContext(
            dataset,
            seed,
            max_test_patches,
            cache_dir=cache_dir,
            on_status=lambda stage, done, total: update(done, total),
        )
        measured = measure_detection(context, list(dict.fromkeys(tasks)), models, per_device)
    print_document(measured, output_format, lambda: _print_measured(measured))
    if per_device and output_format == "table":
        _print_device_table({row.model: row.by_device for row in measured.rows})


def _print_measured(measured: DetectionTable) -> None:
    table = Table(title=f"Detection (percent) on test devices: {', '.join(measured.test_devices)}")
    for column in ("model", "task", "patches", "FPR", "TPR", "ACC"):
        table.add_column(column, justify="left" if column in ("model", "task") else "right")
    for row in measured.rows:
        cells = [
            "-" if getattr(row, metric) is None else f"{getattr(row, metric):.2f}" for metric in ("fpr", "tpr", "acc")
        ]
        table.add_row(row.model, row.task, str(row.pristine + row.manipulated), *cells)
    stdout.print(table)
    ranked = [row for row in measured.rows if row.binary is not None]
    if not ranked:
        return
    table = Table(title="Ranking and calibration (percent; AUC and Brier 0..1); --format json or csv: 95% intervals")
    for column in ("model", "AUC", "EER", "TPR@FPR1", "TPR@FPR5", "ECE", "Brier"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=column == "model")
    for row in ranked:
        metrics = row.binary
        cells = [
            _number(metrics.auc, 3),
            _number(metrics.eer),
            _number(metrics.tpr_at_fpr_1),
            _number(metrics.tpr_at_fpr_5),
            _number(metrics.ece),
            _number(metrics.brier, 3),
        ]
        table.add_row(row.model, *cells)
    table.caption = f"TPR at FPR 1% and 5%: {LOW_FPR_RULE}; ECE over {ranked[0].binary.ece_bins} equal-width bins"
    stdout.print(table)


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_table(rows: list[CheckpointRow], families: list[str]) -> None:
    """One line per task and family (80 columns hold it; --format markdown has the paper's wide layout)."""
    by_key = {(row.family, row.task): row for row in rows}
    table = Table(title=f"Table I (percent) on test devices: {', '.join(rows[0].test_devices)}")
    for column in ("task", "family", "FPR", "TPR", "ACC", "test patches"):
        table.add_column(column, justify="left" if column in ("task", "family") else "right", no_wrap=True)
    for task_id in TABLE1_ORDER:
        found = [by_key[name, task_id] for name in families if (name, task_id) in by_key]
        for number, row in enumerate(found):
            rates = [
                "-" if getattr(row, metric) is None else f"{getattr(row, metric):.2f}"
                for metric in ("fpr", "tpr", "acc")
            ]
            table.add_row(
                task_id if number == 0 else "",
                FAMILY_TITLES[row.family],
                *rates,
                str(row.test_patches),
                end_section=number == len(found) - 1,
            )
    stdout.print(table)


def _print_device_table(by_model: dict[str, dict[str, Rates]]) -> None:
    devices = list(dict.fromkeys(device for by_device in by_model.values() for device in by_device))
    table = Table(title="ACC (FPR) percent per test device")
    table.add_column("model")
    for device in devices:
        table.add_column(device, justify="right")
    for name, by_device in by_model.items():
        cells = [by_device.get(device) for device in devices]
        table.add_row(name, *(f"{cell.acc:.2f} ({cell.fpr:.2f})" if cell else "-" for cell in cells))
    stdout.print(table)
