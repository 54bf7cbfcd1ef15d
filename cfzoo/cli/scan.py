"""``cfzoo scan``: many images through the detectors, rows written as Parquet parts; in this process or on Ray."""

from __future__ import annotations

from pathlib import Path

import typer

from cfzoo.cli.common import handle_errors, note, progress_bar, stdout, variant_option
from cfzoo.cli.render import print_document
from cfzoo.engines.registry import engine_help
from cfzoo.engines.scan import IMAGES_PER_PART, ScanSettings, run_scan
from cfzoo.manipulations import TASK_IDS
from cfzoo.ops.scan import scan_inputs
from cfzoo.ops.scoring import DEFAULT_BATCH_SIZE
from cfzoo.patches import DEFAULT_STRIDE
from cfzoo.results import ScanSummary
from cfzoo.zoo.registry import FAMILY_IDS
from cfzoo.zoo.runtime import PROVIDER_CHOICES


@handle_errors
def scan(
    inputs: list[str] = typer.Argument(
        ...,
        help="Image files, folders (walked recursively), glob patterns (quoted) or manifests (.txt of paths, .parquet "
        "with a path column).",
        show_default=False,
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder of Parquet parts, e.g. results.parquet; any Parquet reader reads it as one table.",
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
        [], "--model", "-m", help="A model by id or an .onnx file (repeatable); without --family, only these."
    ),
    engine: str = typer.Option("local", "--engine", help=f"Where to run: {engine_help()}."),
    address: str | None = typer.Option(
        None, "--address", help="Join this Ray cluster (e.g. 10.0.0.5:6379 or ray://...); default: start Ray here."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Ray actors scoring in parallel (default: one per CPU, or per GPU where there are GPUs).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Finish a stopped scan, or bring it up to date: write only the rows --out does not hold yet (by path, "
        "file sha256 and model); a file changed since gets new rows in place of its old ones.",
    ),
    stride: int = typer.Option(
        DEFAULT_STRIDE, "--stride", help="Pixels between patch corners, a multiple of 8 (as cfzoo detect)."
    ),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Patches per onnxruntime call; bounds the memory used."
    ),
    images_per_part: int = typer.Option(
        IMAGES_PER_PART,
        "--images-per-part",
        min=1,
        help="Images per Parquet part (and per Ray batch): what a crash can lose.",
    ),
    providers: str = typer.Option(
        "auto", "--providers", help=f"onnxruntime providers (local engine): {', '.join(PROVIDER_CHOICES)}."
    ),
    variant: str = variant_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Scan many images: one row per image x detector (path, sha256, size, task, model and its sha256, flagged share, mean probability, verdict, notes, error), written to --out as Parquet parts while the scan goes.

    A bad image is a row with its one-line error, never an abort. Stop a scan at any point and run it again with --resume: it ends with exactly the rows of an uninterrupted scan. One scan writes into a folder at a time, and only into a folder of its own parts (same stride). docs/scale.md has the details, throughput and a KubeRay recipe.

    Examples:

      cfzoo scan photos/ --out results.parquet -f spam -f bayar2016

      cfzoo scan manifest.txt --out results.parquet --engine ray --address 10.0.0.5:6379 --resume

    Read the result with pyarrow, which cfzoo installs: pyarrow.parquet.read_table("results.parquet").to_pylist(); or with pandas.read_parquet("results.parquet") or DuckDB (select * from 'results.parquet/*.parquet') where they are installed.
    """
    paths = scan_inputs(inputs)
    settings = ScanSettings(
        tuple(detector),
        tuple(task),
        tuple(model),
        stride,
        batch_size,
        providers,
        variant=variant,
        images_per_part=images_per_part,
    )
    with progress_bar("scan", rate_unit="images") as on_progress:
        summary = run_scan(paths, out, settings, engine, address, workers, resume, on_progress)
    for line in summary.skipped:
        note(f"note: {line}")
    print_document(summary, "json" if as_json else "table", lambda: _print_summary(summary))


def _print_summary(summary: ScanSummary) -> None:
    held = summary.images - summary.scanned
    stdout.print(
        f"{summary.images} images ({summary.scanned} scanned now{f', {held} held already' if held else ''}, "
        f"{summary.failed_images} failed) x {len(summary.models)} detectors: {summary.rows_written} rows written to {summary.out}",
        soft_wrap=True,
    )
