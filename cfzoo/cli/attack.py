"""``cfzoo attack``: FGSM against one detector family, and the TPR of every detector afterwards (Tables II-IV);
or one whole image, attacked tile by tile and written as a lossless PNG."""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import handle_errors, note, stage_bars, stdout, variant_option
from cfzoo.cli.data import open_dataset
from cfzoo.cli.render import FORMATS, chosen_format, format_option, json_flag, print_document
from cfzoo.errors import CfzooError
from cfzoo.experiments.context import ExperimentContext
from cfzoo.experiments.transfer import attack_dataset, attack_markdown, plan_attack
from cfzoo.manipulations import TASK_IDS
from cfzoo.ops.attacks.common import DEFAULT_BATCH_SIZE, GOALS, AttackSettings, parse_survive
from cfzoo.ops.attacks.image import attack_image_file
from cfzoo.ops.attacks.registry import attack_names, get_attack, methods_help, option_help
from cfzoo.reports import column_title, reported_families
from cfzoo.results import AttackReport, ImageAttackSummary
from cfzoo.zoo.registry import FAMILY_IDS
from cfzoo.zoo.runtime import PROVIDER_CHOICES


@handle_errors
def attack(
    image: Path | None = typer.Argument(
        None,
        help="Attack this one image (every 128x128 tile) instead of a dataset; needs --task and --out.",
        show_default=False,
        readable=False,
    ),
    target: list[str] = typer.Option(
        ...,
        "--target",
        "-T",
        "--model",
        help=f"The detector attacked: a family ({', '.join(FAMILY_IDS)}; its model of each task), a model id "
        "(`cfzoo list`, `cfzoo register`) or a detector .onnx file with its <name>.grad.onnx beside it. Repeat it for an "
        f"ensemble: one noise that every target must call pristine (--method {', '.join(attack_names(ensemble=True))}).",
    ),
    eps: int = typer.Option(
        1, "--eps", help="Integer noise amplitude in gray levels, 1..255 (the paper: 1, PSNR 48.13 dB)."
    ),
    task: list[str] = typer.Option(
        [],
        "--task",
        "-t",
        help=f"Task(s) to attack (repeatable; default: every task the target has here): {', '.join(TASK_IDS)}.",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Camera dataset folder (one sub-folder per device). Default: scikit-image's bundled photos.",
    ),
    variant: str = variant_option(),
    goal: str = typer.Option(
        "hide",
        "--goal",
        help=f"{' or '.join(GOALS)}. hide: make a manipulated image look pristine. frame (one IMAGE): make an untouched photo "
        "look manipulated by --task; for framing over a dataset, with the FPR of every attack: cfzoo robustness --goal frame.",
    ),
    method: str = typer.Option(
        "fgsm",
        "--method",
        help=f"{methods_help()} docs/attacks.md says how each meets the integers.",
    ),
    iterations: int | None = typer.Option(None, "--iterations", help=f"Steps: {option_help('iterations')}."),
    restarts: int = typer.Option(
        1, "--restarts", min=1, help=f"Random starts for the patches not yet fooled: {option_help('restarts')}."
    ),
    queries: int | None = typer.Option(
        None, "--queries", min=1, help=f"Detector runs per patch at most: {option_help('queries')}."
    ),
    survive: str | None = typer.Option(
        None,
        "--survive",
        help=f"jpeg:Q: aim at the image as a platform stores it after JPEG at quality Q (--method {', '.join(attack_names(ensemble=True))}; "
        "the gradient passes straight through the JPEG). resize:F (one IMAGE): aim at the image as a platform downscales it by F "
        "(0.25 to below 1, bicubic); the verdicts are those on the downscaled image.",
    ),
    save: Path | None = typer.Option(
        None,
        "--save",
        help="Write the attacked patches as PNGs to DIR/<task>/<patch row>.png, with DIR/index.csv (a new or empty "
        "folder; it appears whole when the attack ends).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace the contents of a non-empty --save folder."),
    other_tasks: bool = typer.Option(
        True,
        "--other-tasks/--no-other-tasks",
        help="With IMAGE: every other task's detectors also read the result, and those that still flag it are listed "
        "(--no-other-tasks: only the task's own, faster).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="With IMAGE: where to write the attacked image (.png, never the input)."
    ),
    max_patches: int | None = typer.Option(
        None,
        "--max-patches",
        min=1,
        help="Attack a seeded subset of this many manipulated patches per task, spread evenly over the test devices (default: all).",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed of the device split, the patch sampling, the --max-patches subset and the attacks' random draws.",
    ),
    providers: str = typer.Option("auto", "--providers", help=f"onnxruntime providers: {', '.join(PROVIDER_CHOICES)}."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Patches per onnxruntime call."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE)."
    ),
    output_format: str = format_option(*FORMATS),
    as_json: bool = json_flag(),
    markdown: bool = typer.Option(
        False, "--markdown", help="The same as --format markdown: the paper's Tables II-IV figures beside ours."
    ),
) -> None:
    """Attack a detector (a family, a model or an ensemble) with one method of the battery at integer eps: the TPR of every detector on the attacked manipulated test patches, before and after (the paper's Tables II-IV with FGSM, the default), and the PSNR; or one IMAGE.

    --method picks the attack: FGSM (the paper's; eps times the sign of the gradient from the target's ONNX gradient companion, no torch), iterative FGSM, PGD, APGD, DeepFool, Square (no gradient needed) or the SPAM feature attacks. Pixels stay integers, clipped to 0..255. Hiding (--goal hide) pushes manipulated patches towards "pristine"; with IMAGE, --goal frame pushes an untouched photo towards "manipulated" (over a dataset, cfzoo robustness --goal frame).

    Patches: the manipulated patches of the test devices (device-disjoint split drawn with --seed). With IMAGE: every 128x128 tile of that one image, written to --out as a lossless PNG; every detector then reads it, and those of other tasks that still flag it are listed.

    Examples:

      cfzoo attack --target bayar2016 --eps 1 --task jpeg70 --data ../shared/data/cameras --max-patches 2000 --format markdown

      cfzoo attack photo_q70.jpg --target bayar2016 --task jpeg70 --eps 1 --out photo_adv.png

      cfzoo attack untouched.png --goal frame --target cozzolino2017 --task median3 --method pgd --eps 2 --out framed.png

    How long it takes on 2 CPU cores: docs/attacks.md (Tables II-IV).
    """
    output_format = chosen_format(output_format, FORMATS, as_json, markdown)
    settings = AttackSettings(
        eps, method, iterations, batch_size, restarts, queries, seed, **parse_survive(survive), goal=goal
    )
    if image is not None:
        _attack_image(
            image, target, task, settings, out, providers, output_format, data, save, max_patches, other_tasks, variant
        )
        return
    if out is not None:
        raise CfzooError("--out applies to one IMAGE; for a dataset use --save DIR")
    if goal != "hide":
        raise CfzooError(
            "--goal frame attacks one IMAGE here; over a dataset, cfzoo robustness --goal frame gives the FPR after each "
            "attack and in the worst case"
        )
    if settings.survive_resize is not None:
        raise CfzooError(
            "--survive resize:F attacks one IMAGE (tiles of 128/F pixels); patch sets hold 128-pixel patches, use --survive jpeg:Q there"
        )
    # a missing model or an unusable --save folder is reported before any data work
    plan = plan_attack(target, settings, task or None, providers, save, replace_saved=force, variant=variant)
    dataset = open_dataset(data, cache_dir)
    with stage_bars() as on_status:
        context = ExperimentContext(dataset, seed, max_patches, providers, batch_size, cache_dir, on_status)
        report = attack_dataset(context, plan)
    if report.target_trained_on_test_devices:
        note(
            f"note: {', '.join(report.target_trained_on_test_devices)} were training devices of the {' and '.join(target)} models; "
            "TPR there is not a test figure (use --seed to change the split)"
        )
    print_document(report, output_format, lambda: _print_table(report), lambda: attack_markdown(report))
    if save is not None:
        note(f"attacked patches: {save}/<task>/<patch row>.png, index {save}/index.csv")


def _attack_image(
    image, target, task, settings, out, providers, output_format, data, save, max_patches, other_tasks, variant
):
    for name, value in (("--data", data), ("--save", save), ("--max-patches", max_patches)):
        if value is not None:
            raise CfzooError(f"{name} applies to dataset attacks; with an IMAGE give --task and --out only")
    if output_format not in ("table", "json"):
        raise CfzooError(
            f"--format {output_format} applies to dataset attacks; an IMAGE's summary prints as table or json"
        )
    if len(task) != 1:
        raise CfzooError("attacking one IMAGE needs exactly one --task (the manipulation the image went through)")
    if out is None:
        raise CfzooError("attacking one IMAGE needs --out FILE.png")
    with stage_bars() as on_status:
        _, summary = attack_image_file(
            image,
            out,
            target,
            task[0],
            settings,
            providers,
            functools.partial(on_status, "tiles"),
            other_tasks,
            variant,
        )
    print_document(summary, output_format, lambda: _print_image_summary(summary))


def _print_image_summary(summary: ImageAttackSummary) -> None:
    for line in summary.notes:
        note(f"note: {line}")
    psnr = "inf" if summary.psnr_db is None else f"{summary.psnr_db:.2f}"
    stdout.print(
        f"{summary.out}: {summary.width}x{summary.height}, {summary.tiles} tiles, "
        f"{summary.method.upper()} eps {summary.eps} against {summary.target} (goal {summary.goal}), PSNR {psnr} dB",
        soft_wrap=True,
    )
    stdout.print(
        f"patches of the `cfzoo detect` grid ({summary.detect_grid_patches}) called manipulated, before -> after:"
    )
    for column, rates in summary.detect_grid_called_manipulated.items():
        stdout.print(f"  {column_title(column):>14}: {rates.before:.1f}% -> {rates.after:.1f}%")
    if summary.still_flagged_by_other_tasks:
        stdout.print("still flagged by other tasks' detectors, before -> after:")
        for flag in summary.still_flagged_by_other_tasks:
            stdout.print(
                f"  {flag.model:>24}: {flag.before:.1f}% -> {flag.after:.1f}% ({flag.verdict_after})", soft_wrap=True
            )


#: Detector columns side by side that fit 80 columns with every header and figure whole; more are stacked.
SIDE_BY_SIDE = 3


def _print_table(report: AttackReport) -> None:
    families = reported_families(report.rows)
    table = Table(
        title=f"TPR (percent) on manipulated test patches, before → after {report.method.upper()} eps {report.eps} "
        f"against {column_title(report.target)}; test devices: {', '.join(report.test_devices)}"
    )
    stacked = len(families) > SIDE_BY_SIDE  # then one row per task and detector, never a figure cut
    for column in ("task", "patches", "PSNR dB", *(("detector", "before → after") if stacked else ())):
        table.add_column(column, justify="left" if column in ("task", "detector") else "right", no_wrap=True)
    for family in () if stacked else families:
        table.add_column(column_title(family), justify="right", no_wrap=True)
    for row in report.rows:
        cells = {
            family: f"{rates.before:.1f} → {rates.after:.1f}" if (rates := row.tpr.get(family)) else "-"
            for family in families
        }
        psnr = "inf" if row.psnr_db is None else f"{row.psnr_db:.2f}"
        if not stacked:
            table.add_row(row.task, str(row.patches), psnr, *cells.values())
            continue
        for number, (family, cell) in enumerate(cells.items()):
            first = number == 0
            table.add_row(
                row.task if first else "",
                str(row.patches) if first else "",
                psnr if first else "",
                column_title(family),
                cell,
            )
    stdout.print(table)
    gradient = get_attack(report.method).needs_gradient
    for row in report.rows:
        parts = [f"{row.task}: {row.seconds:.1f} s"]
        if gradient:
            parts.append(f"{row.zero_gradient_patches} of {row.patches} patches with a zero gradient (left unchanged)")
        if report.method != "fgsm":
            parts.append(f"{row.mean_iterations:.2f} {'steps' if gradient else 'proposals'} per patch on average")
        if row.mean_queries is not None:
            parts.append(f"{row.mean_queries:.1f} model runs per patch")
        stdout.print(", ".join(parts), soft_wrap=True)
