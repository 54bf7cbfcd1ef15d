"""``cfzoo reproduce``: the paper's Tables I-V in one command, into one report folder."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from cfzoo.cli.common import address_option, handle_errors, note, stage_bars
from cfzoo.cli.data import DATA_DIR, open_dataset
from cfzoo.cli.render import print_json
from cfzoo.engines.registry import engine_help, get_engine
from cfzoo.experiments.context import ExperimentContext
from cfzoo.manipulations import TASK_IDS, get_manipulation
from cfzoo.ops.attacks.common import DEFAULT_BATCH_SIZE, check_eps
from cfzoo.sample_data import DESCRIPTION as SAMPLE_DESCRIPTION
from cfzoo.zoo.runtime import PROVIDER_CHOICES, execution_providers

#: Default patches per task and class: the paper's tables on ../shared/data/cameras in under an hour on 2 CPU cores.
REPORT_PATCHES = 500


@handle_errors
def reproduce(
    data: Path | None = DATA_DIR,
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Report folder to create (REPORT.md, CSVs, reproduce.json, PNGs); must be new or empty.",
    ),
    task: list[str] = typer.Option(
        [], "--task", "-t", help=f"Only these tasks (repeatable; default all 8): {', '.join(TASK_IDS)}."
    ),
    max_patches: int = typer.Option(
        REPORT_PATCHES,
        "--max-patches",
        min=1,
        help="Per task: attack and restore this many manipulated patches, and score this many of each class for Table I, "
        "seeded and spread over the test devices. The default fits the whole report in under an hour on 2 CPU cores; "
        "a number above the test set's size takes every patch (many hours).",
    ),
    eps: int = typer.Option(
        1, "--eps", help="FGSM noise amplitude in gray levels, 1..255 (the paper's Tables II-IV: 1)."
    ),
    providers: str = typer.Option("auto", "--providers", help=f"onnxruntime providers: {', '.join(PROVIDER_CHOICES)}."),
    seed: int = typer.Option(0, "--seed", help="Seed of the device split and of the patch subsets."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Patches per onnxruntime call."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace the contents of a non-empty --out."),
    as_json: bool = typer.Option(False, "--json", help="Also print the whole report (reproduce.json) on stdout."),
    engine: str = typer.Option(
        "local", "--engine", help=f"Where the tables' cells run: {engine_help()}. The tables are the same."
    ),
    address: str | None = address_option(),
) -> None:
    """The paper's Tables I-V measured with the zoo's ONNX models (no torch), ours beside the paper's figures.

    Table I: FPR/TPR/ACC of every detector here on the test devices' patches. Tables II-IV: FGSM with --eps
    against each family with gradient companions here (SPAM+SVM as a target is ours, beyond the paper), and
    every detector's TPR before and after. Table V: GAN restoration of median filtering, if restorers are here.
    One device-disjoint split (--seed) serves all tables.

    Writes --out/REPORT.md (settings, data, devices, machine, time per stage; each table beside the paper's,
    differences over 5 points listed), one CSV per table, reproduce.json (everything) and PNG plots.

    Examples:

      cfzoo reproduce --out report-sample --max-patches 50

      cfzoo reproduce ../shared/data/cameras --out report-cameras --max-patches 500 --task jpeg70 --task median7

      cfzoo reproduce ../shared/data/cameras --out report-cameras --engine ray --address 10.0.0.5:6379

    How long it takes on 2 CPU cores, and what it measured on the camera photos: docs/reproduction.md.
    """
    from cfzoo.experiments.reproduce import reproduce as run_reproduce
    from cfzoo.files import check_output_dir

    tasks = [get_manipulation(name).task_id for name in dict.fromkeys(task)]
    engine_choice = get_engine(engine, address)
    check_eps(eps)
    execution_providers(providers)
    check_output_dir(out, force)  # every input is checked before any data work
    dataset = open_dataset(data, cache_dir)
    with stage_bars() as on_status:
        run_cells = engine_choice.cell_runner(functools.partial(on_status, "cells on Ray"))
        context = ExperimentContext(dataset, seed, max_patches, providers, batch_size, cache_dir, on_status, run_cells)
        document = run_reproduce(
            context, out, tasks or None, eps, force, None if data is not None else SAMPLE_DESCRIPTION
        )
    if as_json:
        print_json(document.to_json())
    files = document.files
    note(
        f"reproduced Tables I-V in {_duration(document.seconds.total)}: {out}/{files.report}, "
        f"{len(files.csv)} CSV, {files.json_file}, {len(files.png)} PNG"
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
