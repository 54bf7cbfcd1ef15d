"""``cfzoo check``: does a detector follow the model contract that every attack and report relies on?"""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from cfzoo.cli.common import handle_errors, stdout
from cfzoo.cli.render import chosen_format, format_option, json_flag, print_document
from cfzoo.results import CheckReport
from cfzoo.zoo.runtime import PROVIDER_CHOICES

STYLES = {"pass": "green", "fail": "bold red", "skipped": "yellow"}


@handle_errors
def check(
    models: list[str] = typer.Argument(
        ...,
        help="Detectors to check: ids (`cfzoo list`), registered ids, or .onnx files that follow docs/contract.md.",
        show_default=False,
    ),
    task: str | None = typer.Option(
        None, "--task", "-t", help="The task of an .onnx file cfzoo did not write (cfzoo's own models know theirs)."
    ),
    companion: bool = typer.Option(
        True, "--companion/--no-companion", help="Also check the gradient companion (default), or only the detector."
    ),
    providers: str = typer.Option("cpu", "--providers", help=f"onnxruntime providers: {', '.join(PROVIDER_CHOICES)}."),
    output_format: str = format_option("table", "json", "csv"),
    as_json: bool = json_flag(),
) -> None:
    """Check detectors against the model contract, as scikit-learn's check_estimator checks an estimator: a pass/fail list per model.

    On real photos no zoo model was trained on (scikit-image's), before and after the model's task, and on black, white and noise patches: the input and output contract, the file's metadata, finite logits, probabilities and threshold, batch independence, determinism; then the gradient companion: its logits against the detector's, and its gradient against central finite differences. The same checks run in Python as cfzoo.testing.check_detector(model).

    Examples:
      cfzoo check bayar2016-median7
      cfzoo check my-detector --format json      (a model added with cfzoo register)

    Exit code 1 if any check fails; a missing companion fails "companion" unless --no-companion.
    """
    from cfzoo.zoo.conformance import check_detector

    output_format = chosen_format(output_format, ("table", "json", "csv"), as_json)
    reports = [check_detector(model, task=task, companion=companion, providers=providers) for model in models]
    for report in reports:
        print_document(report, output_format, lambda report=report: _print_report(report))
    if not all(report.passed for report in reports):
        raise typer.Exit(1)


def _print_report(report: CheckReport) -> None:
    failed = sum(item.status == "fail" for item in report.checks)
    title = f"{report.model} ({report.task}, from {report.source}): " + (f"{failed} failed" if failed else "conforms")
    table = Table(title=title)
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for item in report.checks:
        table.add_row(item.name, Text(item.status, STYLES[item.status]), item.detail)
    stdout.print(table)
