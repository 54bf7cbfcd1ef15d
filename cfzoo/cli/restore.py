"""``cfzoo restore`` (restore a median-filtered image, or Table V with --evaluate), ``cfzoo train-restorer`` and
``cfzoo export-restorer`` (the GAN generators of the paper's Section III-C; training and export need the
``train`` extra)."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cfzoo.cli.common import handle_errors, note, stage_bars, stdout
from cfzoo.cli.data import SEED, TEST_DEVICES, open_dataset
from cfzoo.cli.render import FORMATS, chosen_format, format_option, json_flag, print_document, print_json
from cfzoo.errors import CfzooError
from cfzoo.experiments.context import ExperimentContext
from cfzoo.ops.detect import verdict_of
from cfzoo.paper import FAMILY_TITLES
from cfzoo.paths import default_checkpoint_dir
from cfzoo.results import ImageRestoration, ImageRestorations, RestorationReport
from cfzoo.zoo.registry import FAMILY_IDS, user_zoo_dir
from cfzoo.zoo.restorers import DISCRIMINATORS, RESTORATION_TASKS, check_restorer, restorer_id
from cfzoo.zoo.runtime import PROVIDER_CHOICES

TASKS_OPTION = typer.Option(
    [], "--task", "-t", help=f"Median-filtering task (repeatable): {', '.join(RESTORATION_TASKS)}."
)
DISCRIMINATORS_OPTION = typer.Option(
    [],
    "--discriminator",
    "-d",
    help="The discriminator the generator was trained against (repeatable): kim (Kim2018's, forensic) or vgg (VGG-style).",
)
CACHE_OPTION = typer.Option(None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE).")


def default_restorer_checkpoints() -> Path:
    """``$CFZOO_HOME/checkpoints/restorers``: apart from the detectors, which `cfzoo export` exports wholesale."""
    return default_checkpoint_dir() / "restorers"


@handle_errors
def restore(
    image: Path | None = typer.Argument(
        None, help="A median-filtered image to restore (needs --task and --out).", show_default=False, readable=False
    ),
    task: list[str] = TASKS_OPTION,
    discriminator: list[str] = DISCRIMINATORS_OPTION,
    out: Path | None = typer.Option(
        None,
        "--out",
        help="With IMAGE: where to write the restored image (.png, never the input); with several discriminators OUT-<discriminator>.png.",
    ),
    evaluate: bool = typer.Option(
        False, "--evaluate", help="Instead of an image: the paper's Table V on the test devices of --data."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="With --evaluate: camera dataset folder (one sub-folder per device). Default: scikit-image's bundled photos.",
    ),
    max_patches: int | None = typer.Option(
        None,
        "--max-patches",
        min=1,
        help="With --evaluate: a seeded subset of this many filtered patches per task, spread over the test devices (default: all).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the device split, the patch sampling and the --max-patches subset."
    ),
    providers: str = typer.Option("auto", "--providers", help=f"onnxruntime providers: {', '.join(PROVIDER_CHOICES)}."),
    tile: int = typer.Option(
        512,
        "--tile",
        min=1,
        help="With IMAGE: restore tiles of this many pixels a side (with overlap), so memory stays bounded.",
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Patches per onnxruntime call."),
    cache_dir: Path | None = CACHE_OPTION,
    other_tasks: bool = typer.Option(
        True,
        "--other-tasks/--no-other-tasks",
        help="With IMAGE: also run every other task's detectors, to warn of traces the restoration adds (about 8x the detector work of the task's own).",
    ),
    output_format: str = format_option(*FORMATS),
    as_json: bool = json_flag(),
    markdown: bool = typer.Option(
        False, "--markdown", help="The same as --format markdown (with --evaluate): Table V beside the paper's figures."
    ),
) -> None:
    """Restore median-filtered images with a GAN generator (Kim et al. 2018), or measure how well that hides median filtering from every detector (the paper's Table V).

    The generator adds back the fine structure the median filter removed; two were trained per task, one against Kim2018's forensic discriminator (kim), one against a VGG-style discriminator (vgg). Give --discriminator twice to get both, written as OUT-kim.png and OUT-vgg.png. Every detector of the zoo then reads the result: those of the task restored (before -> after), and a warning for each detector of another task that now calls the image more manipulated than before (restoring leaves traces of its own). --json prints one summary, or a list of them for several discriminators.

    Examples:

      cfzoo restore filtered.png --task median3 -d kim -d vgg --out restored.png

      cfzoo restore --evaluate --data ../shared/data/cameras --max-patches 2000 --format markdown

    --evaluate reports, per task and discriminator, the TPR of every detector on the restored test patches and on the filtered ones, and PSNR / SSIM of both against the pristine patches they came from.
    """
    output_format = chosen_format(output_format, FORMATS, as_json, markdown)
    if image is not None and evaluate:
        raise CfzooError("give an IMAGE to restore or --evaluate, not both")
    if image is None and not evaluate:
        raise CfzooError("give an IMAGE to restore (with --task and --out), or --evaluate for Table V")
    if image is not None:
        _restore_image(
            image, task, discriminator, out, providers, tile, batch_size, output_format, data, max_patches, other_tasks
        )
        return
    if out is not None:
        raise CfzooError("--out applies to one IMAGE; --evaluate writes no images")
    from cfzoo.experiments.restoration import evaluable_restorers, evaluate_restoration, restoration_markdown

    evaluable_restorers(task or None, discriminator or None)  # a missing restorer is reported before any data work
    dataset = open_dataset(data, cache_dir)
    with stage_bars() as on_status:
        context = ExperimentContext(dataset, seed, max_patches, providers, batch_size, cache_dir, on_status)
        report = evaluate_restoration(context, task or None, discriminator or None)
    if report.missing:
        note(f"note: not available here, left out: {', '.join(report.missing)}")
    print_document(report, output_format, lambda: _print_table(report), lambda: restoration_markdown(report))


def _restore_image(
    image, task, discriminator, out, providers, tile, batch_size, output_format, data, max_patches, other_tasks
):
    from cfzoo.ops.restore import RestoreSettings, restore_image_file

    for name, value in (("--data", data), ("--max-patches", max_patches)):
        if value is not None:
            raise CfzooError(f"{name} applies to --evaluate; with an IMAGE give --task, --discriminator and --out")
    if output_format not in ("table", "json"):
        raise CfzooError(f"--format {output_format} applies to --evaluate; an IMAGE's summary prints as table or json")
    if len(task) != 1:
        raise CfzooError(
            f"restoring an IMAGE needs exactly one --task (the median filter it went through): {', '.join(RESTORATION_TASKS)}"
        )
    if out is None:
        raise CfzooError("restoring an IMAGE needs --out FILE.png")
    settings = RestoreSettings(task[0], tuple(discriminator), tile, batch_size, providers, other_tasks)
    with stage_bars() as on_status:
        summaries = restore_image_file(image, out, settings, functools.partial(on_status, "tiles"))
    print_document(summaries, output_format, lambda: _print_restorations(summaries, task[0]))


def _print_restorations(summaries: ImageRestorations, task: str) -> None:
    for line in summaries.root[0].notes:
        note(f"note: {line}")
    for summary in summaries.root:
        _print_restoration(summary, task)


def _print_restoration(summary: ImageRestoration, task: str) -> None:
    """The restorer's line, then one table: the task's detectors, and in yellow those of other tasks it trips."""
    psnr = "inf" if summary.psnr_db_vs_input is None else f"{summary.psnr_db_vs_input:.2f}"
    stdout.print(
        f"{summary.out}: {summary.width}x{summary.height}, restored by {summary.restorer}, PSNR {psnr} dB against the input",
        soft_wrap=True,
    )
    if not summary.detect_grid_called_manipulated:
        return
    tripped = summary.flagged_by_other_tasks
    table = Table(title=f"patches of the detect grid ({summary.detect_grid_patches}) called manipulated, %")
    for column in ("detector", "task", "before → after", "verdict after"):
        table.add_column(column, justify="right" if column == "before → after" else "left", no_wrap=True)
    own = list(summary.detect_grid_called_manipulated.values())
    for number, rates in enumerate(own):
        table.add_row(
            rates.model,
            task,
            f"{rates.before:.1f} → {rates.after:.1f}",
            verdict_of(rates.after / 100.0),
            end_section=number == len(own) - 1,
        )
    for other in tripped:
        table.add_row(
            other.model,
            other.task,
            f"{other.before:.1f} → {other.after:.1f}",
            other.verdict_after,
            style="yellow",
        )
    stdout.print(table)
    if tripped:
        tasks = ", ".join(dict.fromkeys(other.task for other in tripped))
        stdout.print(
            Text.assemble(
                ("warning", "yellow"),
                f": {len(tripped)} detector(s) of other tasks ({tasks}) call the restored image more manipulated than "
                "the input: restoring hides the median filter but leaves traces of its own",
            )
        )


def _print_table(report: RestorationReport) -> None:
    families = [family for family in FAMILY_IDS if any(family in row.tpr for row in report.rows)]
    table = Table(
        title=f"TPR (percent) before -> after GAN restoration, paper in brackets; test devices: {', '.join(report.test_devices)}"
    )
    for column in (
        "task",
        "discriminator",
        "patches",
        "PSNR dB",
        "SSIM",
        *(FAMILY_TITLES[family] for family in families),
    ):
        table.add_column(column, justify="left" if column in ("task", "discriminator") else "right")
    for row in report.rows:
        quality = row.quality
        psnr = " -> ".join(
            "inf" if q.psnr_db is None else f"{q.psnr_db:.2f}" for q in (quality.input, quality.restored)
        )
        ssim = f"{quality.input.ssim:.4f} -> {quality.restored.ssim:.4f}"
        cells = []
        for family in families:
            rates = row.tpr.get(family)
            paper = "" if rates is None or rates.paper is None else f" ({rates.paper:.2f})"
            cells.append("-" if rates is None else f"{rates.before:.2f} -> {rates.after:.2f}{paper}")
        table.add_row(row.task, row.discriminator, str(row.patches), psnr, ssim, *cells)
    stdout.print(table)


@handle_errors
def train_restorer(
    data: Path | None = typer.Argument(
        None,
        help="Camera dataset folder (one sub-folder per device). Without it: scikit-image's bundled photos.",
        show_default=False,
    ),
    task: list[str] = TASKS_OPTION,
    discriminator: list[str] = DISCRIMINATORS_OPTION,
    all_restorers: bool = typer.Option(
        False, "--all", help="Every task and discriminator (or those given): Table V's four generators."
    ),
    out: Path | None = typer.Option(
        None,
        "--checkpoints",
        "--out",
        help="Checkpoint folder to write (default $CFZOO_HOME/checkpoints/restorers), the one export-restorer reads.",
    ),
    steps: int = typer.Option(
        None, "--steps", min=1, help="Optimiser steps (default 6000: about an hour on a busy 2-core CPU)."
    ),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Crop pairs per step (default 16)."),
    crop: int = typer.Option(
        None, "--crop", help="Side of the aligned training crops cut from the 128-pixel patches (default 48)."
    ),
    learning_rate: float = typer.Option(None, "--lr", help="Adam learning rate of both networks (default 2e-4)."),
    evaluation_pairs: int = typer.Option(
        None, "--evaluation-pairs", min=0, help="Test pairs for the record's PSNR/SSIM (default 256; 0: none)."
    ),
    seed: int = SEED,
    test_device: list[str] | None = TEST_DEVICES,
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave restorers whose checkpoint exists alone."),
    cache_dir: Path | None = CACHE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the training records as JSON."),
) -> None:
    """Train GAN restorers of median filtering: a residual generator (Kim et al. 2018) against the kim or the
    vgg discriminator, on aligned (filtered, pristine) crops of the train devices' patches.

    Each writes restorer-<task>-<discriminator>.safetensors (generator) and .json (hyper-parameters, loss
    curves, test PSNR/SSIM before and after, seconds, machine) to --out. Then `cfzoo export-restorer`.
    Design and loss: docs/restoration.md.

    Example: cfzoo train-restorer ../shared/data/cameras --all
    """
    from cfzoo.training import require_training_extra

    require_training_extra()
    from cfzoo.training.restoration import RestorerPlan, train_plan

    tasks = list(dict.fromkeys(task)) or (list(RESTORATION_TASKS) if all_restorers else [])
    kinds = list(dict.fromkeys(discriminator)) or (list(DISCRIMINATORS) if all_restorers else [])
    if not tasks or not kinds:
        raise CfzooError("say what to train: --task T --discriminator D (repeatable), or --all")
    for task_id in tasks:
        for kind in kinds:
            check_restorer(task_id, kind)
    dataset = open_dataset(data, cache_dir)
    out = out or default_restorer_checkpoints()
    given = {
        "steps": steps,
        "batch_size": batch_size,
        "crop": crop,
        "learning_rate": learning_rate,
        "evaluation_pairs": evaluation_pairs,
    }
    records = []
    for task_id in tasks:
        for kind in kinds:
            plan = RestorerPlan(
                task=task_id,
                discriminator=kind,
                seed=seed,
                test_devices=tuple(test_device) if test_device else None,
                **{name: value for name, value in given.items() if value is not None},
            )
            if skip_existing and (out / f"{plan.model_id}.json").exists():
                records.append(json.loads((out / f"{plan.model_id}.json").read_text()))
                continue
            with stage_bars() as on_status:
                record = train_plan(
                    plan,
                    dataset,
                    out,
                    cache_dir,
                    lambda stage, done, total, name=plan.model_id: on_status(f"{name} {stage}", done, total),
                )
            records.append(record)
            _log(out, record)
    if as_json:
        print_json(records)
        return
    table = Table(
        title=f"restorers; test pairs filtered -> restored; test devices: {', '.join(records[0]['split']['test'])}"
    )
    for column in ("restorer", "train pairs", "steps", "PSNR dB", "SSIM", "crops/s", "seconds"):
        table.add_column(column, justify="left" if column == "restorer" else "right", no_wrap=column == "restorer")
    for record in records:
        test = record["metrics"].get("test")
        psnr = ssim = "-"
        if test:
            psnr = " -> ".join(
                "inf" if q["psnr_db"] is None else f"{q['psnr_db']:.2f}" for q in (test["input"], test["restored"])
            )
            ssim = f"{test['input']['ssim']:.4f} -> {test['restored']['ssim']:.4f}"
        table.add_row(
            record["id"],
            str(record["train_pairs"]),
            str(record["hyperparameters"]["steps"]),
            psnr,
            ssim,
            f"{record['crops_per_second']:.1f}",
            f"{record['training_seconds']:.0f}",
        )
    stdout.print(table)
    stdout.print(f"checkpoints: {out}; next: cfzoo export-restorer --checkpoints {out}", soft_wrap=True)


def _log(out: Path, record: dict) -> None:
    test = record["metrics"].get("test", {})
    quality = " ".join(f"{name}_psnr={test[name]['psnr_db']}" for name in ("input", "restored") if name in test)
    with open(out / "train.log", "a") as log:
        log.write(
            f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {record['id']} seed={record['seed']} seconds={record['training_seconds']} {quality}\n"
        )


@handle_errors
def export_restorer(
    task: list[str] = TASKS_OPTION,
    discriminator: list[str] = DISCRIMINATORS_OPTION,
    checkpoints: Path | None = typer.Option(
        None,
        "--checkpoints",
        help="Folder of `cfzoo train-restorer` checkpoints (default $CFZOO_HOME/checkpoints/restorers).",
    ),
    zoo: Path | None = typer.Option(
        None, "--zoo", help="Zoo folder to export into (default $CFZOO_HOME/zoo, which cfzoo uses first)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the restorer registry entries as JSON."),
) -> None:
    """Export trained restorers to ONNX and register them in a zoo.

    Writes models/restorer-<task>-<discriminator>.onnx and its entry (sha256, size, receptive radius, test
    PSNR/SSIM, training record) in the zoo's restorers.json. Default: every restorer checkpoint found.
    Needs the `train` extra. Example: cfzoo export-restorer --task median3 --discriminator vgg
    """
    from cfzoo.export.onnx_export import require_export_extra
    from cfzoo.export.restorers import export_restorer as export_one

    require_export_extra()
    checkpoints = checkpoints or default_restorer_checkpoints()
    zoo = zoo or user_zoo_dir()
    tasks = list(dict.fromkeys(task)) or list(RESTORATION_TASKS)
    kinds = list(dict.fromkeys(discriminator)) or list(DISCRIMINATORS)
    chosen = [(t, k) for t in tasks for k in kinds]
    for task_id, kind in chosen:
        check_restorer(task_id, kind)
    if not task and not discriminator:
        chosen = [(t, k) for t, k in chosen if (checkpoints / f"{restorer_id(t, k)}.json").exists()]
        if not chosen:
            raise CfzooError(
                f"no restorer checkpoint in {checkpoints}; train one with cfzoo train-restorer DATA --task median3 --discriminator vgg"
            )
    with stage_bars() as on_status:
        entries = []
        for number, (task_id, kind) in enumerate(chosen):
            on_status("export", number, len(chosen))
            entries.append(export_one(checkpoints, task_id, kind, zoo))
        on_status("export", len(chosen), len(chosen))
    if as_json:
        print_json([entry.to_json() for entry in entries])
        return
    for entry in entries:
        stdout.print(f"{entry.id}: {zoo / 'models' / entry.file.name} ({entry.file.size / 1e6:.2f} MB)", soft_wrap=True)
