"""``cfzoo detect``: which manipulations the zoo's detectors see in images (forensic triage)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cfzoo.cli.common import handle_errors, note, patch_bars, progress_bar, stdout, variant_option
from cfzoo.cli.render import chosen_format, format_option, json_flag, print_document
from cfzoo.errors import CfzooError, option
from cfzoo.files import check_writable
from cfzoo.manipulations import TASK_IDS
from cfzoo.ops.detect import RULE, DetectSettings, detect_files, detection_document, expand_inputs
from cfzoo.ops.html_report import DetectionHtmlReport, check_report_destination
from cfzoo.ops.scoring import DEFAULT_BATCH_SIZE
from cfzoo.patches import DEFAULT_STRIDE
from cfzoo.paths import printable
from cfzoo.results import DetectionDocument, ImageResult
from cfzoo.zoo.registry import FAMILY_IDS
from cfzoo.zoo.runtime import PROVIDER_CHOICES


@handle_errors
def detect(
    images: list[Path] = typer.Argument(
        ...,
        help="Image files, or folders of images (not recursive, sorted by name).",
        show_default=False,
        readable=False,
    ),
    task: list[str] = typer.Option(
        [], "--task", "-t", help=f"Only these tasks (repeatable); default all: {', '.join(TASK_IDS)}."
    ),
    detector: list[str] = typer.Option(
        [],
        "--family",
        "-f",
        "--detector",
        help=f"Only these detector families (repeatable); default every one available: {', '.join(FAMILY_IDS)}.",
    ),
    model: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="A model by id (`cfzoo list`, `cfzoo register`) or an .onnx file that follows docs/contract.md "
        "(repeatable); without --family, only these. A file not made by cfzoo needs one --task.",
    ),
    stride: int = typer.Option(
        DEFAULT_STRIDE,
        "--stride",
        help="Pixels between patch corners, a multiple of 8 (the JPEG block lattice the detectors were trained on): "
        "128 = non-overlapping grid, smaller overlaps. A last row/column near the bottom/right edge covers all but <8 pixels.",
    ),
    batch: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", "--batch", help="Patches per onnxruntime call; bounds the memory used."
    ),
    heatmap: Path | None = typer.Option(
        None,
        "--heatmap",
        help="Write one PNG per image x task x detector into this folder, <image>-<task>-<family>.png: each patch "
        "blue (probability 0) to light cyan below the detector's threshold, yellow to red (1) above it.",
    ),
    providers: str = typer.Option(
        "auto", "--providers", help=f"onnxruntime execution providers: {', '.join(PROVIDER_CHOICES)}."
    ),
    conclusion: bool = typer.Option(
        True,
        "--conclusion/--no-conclusion",
        help="First, one calibrated conclusion per image: which manipulation was most likely applied (or none), "
        "with its probability, from a model over every detector's verdict (docs/detect.md). It needs all of "
        "spam, bayar2016 and cozzolino2017 for the eight tasks, so it is left out with --family, --task or --model.",
    ),
    variant: str = variant_option(),
    output_format: str = format_option("table", "json", "csv"),
    as_json: bool = json_flag(),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Also write one self-contained HTML page (FILE.html): each image's verdict table, thumbnail and "
        "heatmaps inline, the rule, the versions and the model ids; open it in any browser, no server needed.",
    ),
) -> None:
    """Tell what was most likely done to each image, then, for each manipulation task, whether each detector calls it manipulated.

    Each image is cut into 128x128 patches and every detector scores every patch. The conclusion comes first: "most likely: Median filtering, 7x7 (p = 0.93)", or "uncertain between" the leading ones, or "no conclusion" when the detectors' evidence is unlike anything the conclusion model was fitted on (as after an adversarial attack). Then a cell per task and detector shows the verdict and the share of patches above the detector's threshold: manipulated above 75%, pristine below 25%, uncertain in between (docs/detect.md). Each image's table is printed as soon as it is ready.

    Examples: cfzoo detect photo.jpg; cfzoo detect photos/ -t jpeg70 -t median7 --heatmap maps/; cfzoo detect photos/ --report report.html

    Exit code 1 if any input failed (unreadable, too small...); the other inputs are still analysed.
    """

    output_format = chosen_format(output_format, ("table", "json", "csv"), as_json)
    settings = DetectSettings(detector, task, model, stride, batch, providers, conclusion, variant)
    if report is not None:
        check_report_destination(report)
    if heatmap is not None:  # a destination that cannot be is refused before any note or work
        if heatmap.exists() and not heatmap.is_dir():
            raise CfzooError(f"--heatmap {heatmap} is a file; give a folder for the heatmap PNGs")
        check_writable(heatmap, option("heatmap"))
    selection = settings.select()
    concluder, conclusion_skipped = settings.concluder(selection)
    for line in [*selection.skipped, *([conclusion_skipped] if conclusion_skipped else [])]:
        note(f"note: {line}")
    paths = expand_inputs(images)
    if heatmap is not None:
        heatmap.mkdir(parents=True, exist_ok=True)
    page = (
        DetectionHtmlReport(report, selection, settings, concluder, conclusion_skipped)
        if report is not None
        else nullcontext(None)
    )
    reports: list[ImageResult] = []
    tables = output_format == "table"
    with (
        page as html,
        progress_bar("detect") if len(paths) > 1 and not tables else nullcontext(None) as update,
        patch_bars() if tables else nullcontext(None) as bar_for,
    ):
        hooks = {} if html is None else {"on_heatmap": html.add_heatmap, "on_image": html.add_image}
        if bar_for is not None:  # tables print image by image: a bar over each image's patches before its table
            hooks["on_patches"] = lambda path: bar_for(path.name)
        found_all = detect_files(
            paths, selection.detectors, settings.stride, settings.batch_size, heatmap, concluder=concluder, **hooks
        )
        for found in found_all:
            reports.append(found)
            if html is not None:
                html.add(found)
            if update is not None:
                update(len(reports), len(paths))
            if tables:  # each image's table as soon as it is ready
                _print_report(found, selection.families, selection.tasks)
    document = detection_document(reports, selection, settings, concluder, conclusion_skipped)
    print_document(document, output_format, lambda: _print_legend(document))
    if report is not None:
        note(f"report: {report}")
    failed = [found for found in reports if not found.ok]
    for found in failed:
        typer.echo(f"error: {found.error}", err=True)
    if failed:
        typer.echo(failure_summary(len(failed), len(reports)), err=True)
        raise typer.Exit(1)


def failure_summary(failed: int, total: int) -> str:
    """The last line of a run in which inputs failed: what happened to the others, if there were any."""
    if failed == total:
        return "no input could be analysed" if total > 1 else "the input could not be analysed"
    return f"{failed} of {total} inputs failed; the others were analysed"


def _print_legend(document: DetectionDocument) -> None:
    """After the tables printed image by image: how to read their cells, and each model's sha256 (with each image's
    under its table, what a case file needs to name exactly what judged what)."""
    if not any(found.ok for found in document.images):
        return
    stdout.print(f"cells: verdict, share of patches above the detector's threshold; {RULE}", style="dim")
    if document.conclusion_model is not None:
        found = document.conclusion_model
        stdout.print(
            f"conclusion model {found.model} v{found.version} sha256 {found.sha256}", style="dim", soft_wrap=True
        )
    for detector in document.detectors:
        stdout.print(f"model {detector.model} sha256 {detector.sha256}", style="dim", soft_wrap=True)


def _print_report(report: ImageResult, families: list[str], tasks: list[str]) -> None:
    if not report.ok:
        return
    verdicts = {(verdict.task, verdict.column): verdict for verdict in report.results}
    stdout.print(
        Text.assemble(
            (printable(str(report.path)), "bold"), f" ({report.width}x{report.height}, {report.patches} patches)"
        ),
        soft_wrap=True,
    )
    if report.conclusion is not None:
        style = {"confident": "bold", "uncertain": "yellow", "unfamiliar": "yellow"}[report.conclusion.status]
        stdout.print(Text(report.conclusion.text, style), soft_wrap=True)
    table = Table()
    table.add_column("task")
    for family in families:
        table.add_column(family)
    for task in tasks:
        cells = []
        for family in families:
            verdict = verdicts.get((task, family))
            if verdict is None:
                cells.append("-")
            else:
                style = "yellow" if verdict.uncertain else "bold red" if verdict.manipulated else "green"
                cells.append(Text.assemble((verdict.verdict, style), f" {verdict.flagged_share:.0%}"))
        table.add_row(task, *cells)
    stdout.print(table)
    stdout.print(f"sha256 {report.sha256}", style="dim", soft_wrap=True)
    for remark in report.notes:
        stdout.print(f"note: {remark}", soft_wrap=True)
    heatmaps = [verdict.heatmap for verdict in report.results if verdict.heatmap is not None]
    if heatmaps:
        more = f" and {len(heatmaps) - 1} more (<image>-<task>-<family>.png)" if len(heatmaps) > 1 else ""
        stdout.print(f"heatmaps: {heatmaps[0]}{more}", soft_wrap=True)
