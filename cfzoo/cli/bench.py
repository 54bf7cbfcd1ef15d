"""``cfzoo bench``: the versioned benchmark, one entry per model, and its leaderboard."""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import address_option, handle_errors, note, stage_bars, stdout
from cfzoo.cli.data import open_dataset
from cfzoo.cli.render import FORMATS, chosen_format, format_option, print_document
from cfzoo.engines.registry import engine_help, get_engine
from cfzoo.errors import CfzooError
from cfzoo.experiments.bench import (
    BENCH_PROTOCOL,
    HTML_NAME,
    MARKDOWN_NAME,
    bench,
    board,
    entries_from_reports,
    leaderboard_markdown,
    write_bench_folder,
)
from cfzoo.experiments.context import ExperimentContext
from cfzoo.ops.scoring import DEFAULT_BATCH_SIZE
from cfzoo.results import BenchBoard, RobustnessReport
from cfzoo.zoo.catalog import inventory
from cfzoo.zoo.runtime import PROVIDER_CHOICES


@handle_errors
def bench_command(
    models: list[str] = typer.Argument(
        None,
        help="Models to bench: families (each of its models here), model ids (`cfzoo list`, `cfzoo register`) or "
        ".onnx files. Default: every detector here with its gradient companion, the zoo's and registered ones.",
        show_default=False,
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Camera dataset folder (one sub-folder per device); its seed-0 device split gives the test devices. "
        "Default: scikit-image's bundled photos.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help=f"Benchmark folder: each model's entry goes to entries/<model>.json (replacing its earlier one), and "
        f"{MARKDOWN_NAME}, {HTML_NAME} and leaderboard.json are rebuilt over every entry there.",
    ),
    reports: list[Path] = typer.Option(
        [],
        "--reports",
        help="Build the entries from `cfzoo robustness --format json` reports run with the protocol's settings (its "
        "defaults), a --goal hide and a --goal frame report of the same target each, instead of running the attacks.",
    ),
    output_format: str = format_option(*FORMATS),
    providers: str = typer.Option("auto", "--providers", help=f"onnxruntime providers: {', '.join(PROVIDER_CHOICES)}."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Patches per onnxruntime call."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE)."
    ),
    engine: str = typer.Option(
        "local", "--engine", help=f"Where each model's tasks run: {engine_help()}. The entries are the same."
    ),
    address: str | None = address_option(),
) -> None:
    """Bench models under cfzoo's fixed, versioned protocol: one entry per model, and a leaderboard.

    The protocol (docs/bench.md) is `cfzoo robustness` with its defaults, run for both goals: hide (manipulated
    patches pushed towards pristine: the worst-case TPR) and frame (pristine patches pushed towards manipulated: the
    worst-case FPR), at eps 1, 2 and 4, with FGSM, PGD, APGD and Square. Each entry records the protocol version,
    the clean and worst-case figures with intervals, the model runs the attacks used, the devices the model was
    trained on, and the health flags; a flagged entry is marked unreliable. The leaderboard ranks by robust balanced
    accuracy at eps 1: (worst-case TPR + 100 - worst-case FPR) / 2.

    Examples:

      cfzoo bench bayar2016-median7 --data ../shared/data/cameras --out bench

      cfzoo bench mynet --data ../shared/data/cameras --out bench      # a registered model joins the same board

      cfzoo bench --reports hide/robustness.json --reports frame/robustness.json --data ../shared/data/cameras --out bench
    """
    output_format = chosen_format(output_format, FORMATS)
    engine_choice = get_engine(engine, address)  # a cluster nobody runs is refused before any data work
    dataset = open_dataset(data, cache_dir)
    if reports:
        if models:
            raise CfzooError("give models to run, or --reports to build from, not both")
        entries = _entries_from_files(reports, dataset)
    else:
        targets = models or _models_here()
        with stage_bars() as on_status:
            context = ExperimentContext(
                dataset,
                BENCH_PROTOCOL.seed,
                BENCH_PROTOCOL.patches,
                providers,
                batch_size,
                cache_dir,
                on_status,
                engine_choice.cell_runner(functools.partial(on_status, "tasks on Ray")),
            )
            entries = bench(context, targets)
    if out is None:
        leaderboard = board(entries)
    else:
        leaderboard, skipped = write_bench_folder(out, entries)
        for line in skipped:
            note(f"left out of the leaderboard: {line}")
        note(f"leaderboard: {out}/{MARKDOWN_NAME} and {out}/{HTML_NAME} ({len(leaderboard.entries)} entries)")
    print_document(
        leaderboard, output_format, lambda: _print_table(leaderboard), lambda: leaderboard_markdown(leaderboard)
    )


def _models_here() -> list[str]:
    found, _ = inventory(available_only=True)
    models = [row.id for row in found.rows if row.kind == "detector"]
    if not models:
        raise CfzooError("no detector with its gradient companion is here; name models, or get them with cfzoo pull")
    return models


def _entries_from_files(paths: list[Path], dataset):
    loaded = [_read_report(path) for path in paths]
    elsewhere = [str(path) for path, report in zip(paths, loaded) if Path(report.dataset) != Path(dataset.root)]
    if elsewhere:
        raise CfzooError(
            f"{', '.join(elsewhere)} measured another data folder than --data {dataset.root}; give the one they used"
        )
    hiding = [report for report in loaded if report.goal == "hide"]
    framing = {
        tuple(dict.fromkeys(row.model for row in report.rows)): report for report in loaded if report.goal == "frame"
    }
    if len(hiding) != len(framing) or len(hiding) * 2 != len(loaded):
        raise CfzooError("--reports takes pairs: a --goal hide and a --goal frame report of each target")
    entries = []
    for hide in hiding:
        models = tuple(dict.fromkeys(row.model for row in hide.rows))
        if models not in framing:
            raise CfzooError(
                f"no --goal frame report covers {', '.join(models)}; run cfzoo robustness --goal frame on them"
            )
        entries += entries_from_reports(hide, framing[models], dataset.device_names)
    return entries


def _read_report(path: Path) -> RobustnessReport:
    try:
        return RobustnessReport.model_validate_json(path.read_bytes())
    except OSError as error:
        raise CfzooError(f"{path}: cannot be read ({error.strerror}); give a robustness.json file") from None
    except ValueError:
        raise CfzooError(
            f"{path} is not a cfzoo robustness report of this version; cfzoo robustness --format json writes one"
        ) from None


def _print_table(leaderboard: BenchBoard) -> None:
    first = str(leaderboard.protocol.eps[0])
    table = Table(
        title=f"cfzoo bench, protocol {leaderboard.protocol.version}, eps {first}",
        caption="bal.: robust balanced accuracy %; TPR: worst-case TPR % when hiding; FPR: worst-case FPR % when "
        "framing; clean figures and every eps in --format json",
    )
    for column in ("#", "model", "bal.", "TPR", "FPR", "flags"):
        table.add_column(column, justify="left" if column in ("model", "flags") else "right", no_wrap=True)
    for rank, entry in enumerate(leaderboard.entries, start=1):
        table.add_row(
            str(rank),
            entry.model,
            f"{entry.robust_balanced_accuracy:.1f}",
            f"{entry.robust_tpr[first]:.1f}",
            f"{entry.robust_fpr[first]:.1f}",
            "unreliable" if entry.unreliable else "-",
            style="yellow" if entry.unreliable else None,
        )
    stdout.print(table)
