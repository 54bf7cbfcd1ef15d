"""``cfzoo robustness``: every attack of the battery at several eps against one detector, and the worst case."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import address_option, handle_errors, note, stage_bars, stdout, variant_option
from cfzoo.cli.data import open_dataset
from cfzoo.cli.render import FORMATS, chosen_format, format_option, print_document
from cfzoo.engines.registry import engine_help, get_engine
from cfzoo.errors import CfzooError
from cfzoo.experiments.context import ExperimentContext
from cfzoo.experiments.robustness import (
    DEFAULT_ATTACKS,
    DEFAULT_EPS,
    DEFAULT_MAX_PATCHES,
    DEFAULT_RECOMPRESS,
    NO_ATTACK,
    WORST_CASE,
    RobustnessSettings,
    goal_words,
    health_details,
    health_line,
    robustness,
    robustness_markdown,
    write_robustness_folder,
)
from cfzoo.files import check_output_dir
from cfzoo.manipulations import TASK_IDS
from cfzoo.ops.attacks.common import DEFAULT_BATCH_SIZE, GOALS, parse_survive
from cfzoo.ops.attacks.registry import attack_names, methods_help, option_help
from cfzoo.paper import FAMILY_IDS
from cfzoo.reports import column_title
from cfzoo.results import RobustnessReport
from cfzoo.zoo.runtime import PROVIDER_CHOICES


@handle_errors
def robustness_command(
    target: list[str] = typer.Option(
        ...,
        "--target",
        "-T",
        "--model",
        help=f"The detector to test: a family ({', '.join(FAMILY_IDS)}; its model of each task), a model id or an .onnx file. "
        f"Repeat it for an ensemble (a patch counts as detected while any member detects it; attacks {', '.join(attack_names(ensemble=True))}).",
    ),
    eps: list[int] = typer.Option(
        list(DEFAULT_EPS), "--eps", help="Integer noise amplitudes in gray levels (repeatable)."
    ),
    attacks: list[str] = typer.Option(
        [],
        "--attack",
        "-a",
        help=f"Attacks of the battery (repeatable): {', '.join(attack_names())}; default {', '.join(DEFAULT_ATTACKS)} (an ensemble: "
        f"{', '.join(attack_names(ensemble=True))}). Gradient companions: {', '.join(attack_names(needs_gradient=True))} need the "
        f"target's; the others none of their own. {methods_help()}",
    ),
    task: list[str] = typer.Option(
        [], "--task", "-t", help=f"Tasks (repeatable; default every task the target has here): {', '.join(TASK_IDS)}."
    ),
    variant: str = variant_option(),
    goal: str = typer.Option(
        "hide",
        "--goal",
        help=f"{' or '.join(GOALS)}. hide: push manipulated patches towards pristine and report the TPR. frame: push pristine "
        "patches towards manipulated (an untouched photo made to look manipulated) and report the FPR.",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Camera dataset folder (one sub-folder per device). Default: scikit-image's bundled photos.",
    ),
    max_patches: int = typer.Option(
        DEFAULT_MAX_PATCHES,
        "--max-patches",
        min=1,
        help="Test patches attacked per task (manipulated; pristine with --goal frame; and as many of the other class to rank "
        "against), seeded and spread over the test "
        "devices. The default is the fewest for which a TPR of 0 has a 95% upper bound under 10 points, and runs the four "
        "default attacks at three eps on eight tasks in minutes on 2 CPU cores (docs/robustness.md has the times).",
    ),
    queries: int | None = typer.Option(
        None, "--queries", min=1, help=f"Detector runs per patch at most: {option_help('queries')}."
    ),
    survive: str | None = typer.Option(
        None,
        "--survive",
        help=f"jpeg:Q: the attacks aim at the patches as stored after JPEG at quality Q ({', '.join(attack_names(ensemble=True))}); "
        "compare the recompressed TPRs with and without it.",
    ),
    recompress: list[int] = typer.Option(
        list(DEFAULT_RECOMPRESS),
        "--recompress",
        help="Also judge the attacked patches after JPEG at these qualities (repeatable; what social networks do to uploads).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the device split, the patch subset and the attacks' random draws."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Also write ROBUSTNESS.md, robustness.json, robustness.csv and eps_curve.png into this new folder.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace the contents of a non-empty --out."),
    output_format: str = format_option(*FORMATS),
    providers: str = typer.Option("auto", "--providers", help=f"onnxruntime providers: {', '.join(PROVIDER_CHOICES)}."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Patches per onnxruntime call."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE)."
    ),
    engine: str = typer.Option(
        "local", "--engine", help=f"Where the tasks run: {engine_help()}. The report is the same."
    ),
    address: str | None = address_option(),
) -> None:
    """How robust is a detector? Its TPR on manipulated test patches after each attack of the battery at each eps,
    and in the worst case (a patch counts as detected only if every attack fails on it). With --goal frame, its FPR on
    pristine test patches that every attack tries to make look manipulated.

    Every attack stays in integers: the attacked patches are uint8 and each pixel within eps of the original
    (docs/attacks.md). Rows also give the PSNR, the model runs per patch, the time, and the TPR once the attacked
    patches are recompressed as JPEG (--recompress).

    Examples:

      cfzoo robustness --target bayar2016 --data ../shared/data/cameras --out robustness-bayar2016

      cfzoo robustness --target spam -t median7 --attack square --eps 4 --queries 1000 --format markdown

      cfzoo robustness --target spam -t median3 -t jpeg70 --attack spam-prist --attack spam-close --eps 1

      cfzoo robustness --target cozzolino2017 --goal frame --data ../shared/data/cameras --out framing-cozzolino2017
    """
    output_format = chosen_format(output_format, FORMATS)
    engine_choice = get_engine(engine, address)
    survive_jpeg = parse_survive(survive).get("survive_jpeg")
    if survive is not None and survive_jpeg is None:
        raise CfzooError(
            "--survive resize:F attacks one IMAGE (cfzoo attack IMAGE); robustness attacks 128-pixel patches, use --survive jpeg:Q"
        )
    settings = RobustnessSettings(
        tuple(target),
        tuple(eps),
        tuple(attacks or DEFAULT_ATTACKS),
        tuple(task),
        queries,
        tuple(recompress),
        survive_jpeg,
        goal,
        variant,
    )
    if out is not None:
        check_output_dir(out, force)
    context = ExperimentContext(open_dataset(data, cache_dir), seed, max_patches, providers, batch_size, cache_dir)
    settings.targets(context)  # a missing model is reported before any data work
    with stage_bars() as on_status:
        run_cells = engine_choice.cell_runner(functools.partial(on_status, "tasks on Ray"))
        report = robustness(replace(context, on_status=on_status, run_cells=run_cells), settings)
    if out is not None:
        write_robustness_folder(report, out)
        note(f"report: {out}/ROBUSTNESS.md (and robustness.json, robustness.csv, eps_curve.png)")
    print_document(report, output_format, lambda: _print_table(report), lambda: robustness_markdown(report))


def _print_table(report: RobustnessReport) -> None:
    flagged = health_line(report)
    if flagged:
        stdout.print(flagged, style="bold yellow", soft_wrap=True)
    rate, attacked, _ = goal_words(report.goal)
    table = Table(
        title=f"{column_title(report.target)}: {rate} % on {attacked} patches after each attack ({report.goal}; "
        f"{', '.join(report.test_devices)})"
    )
    for column in ("task", "attack", *(f"eps {eps}" for eps in report.eps)):
        table.add_column(column, justify="left" if column in ("task", "attack") else "right")
    for task in dict.fromkeys(row.task for row in report.rows):
        rows = [row for row in report.rows if row.task == task and row.attack != NO_ATTACK]
        table.add_row(task, "none", *(f"{rows[0].flagged_before:.1f}" for _ in report.eps), style="dim")
        for attack in [*report.attacks, WORST_CASE]:
            cells = [
                f"{row.flagged_after:.1f}"
                for eps in report.eps
                for row in rows
                if row.attack == attack and row.eps == eps
            ]
            table.add_row(
                "", attack, *cells, style="bold" if attack == WORST_CASE else None, end_section=attack == WORST_CASE
            )
    stdout.print(table)
    for line in health_details(report):
        stdout.print(line, style="yellow", soft_wrap=True)
