"""The ``cfzoo`` command line: a thin Typer layer over the library."""

from __future__ import annotations

import signal
import sys

import click
import typer

from cfzoo._version import __version__
from cfzoo.cli.attack import attack
from cfzoo.cli.bench import bench_command
from cfzoo.cli.cards import cards
from cfzoo.cli.check import check
from cfzoo.cli.common import Command, Group, handle_errors, set_quiet
from cfzoo.cli.conclusion import train_conclusion
from cfzoo.cli.data import data_app
from cfzoo.cli.detect import detect
from cfzoo.cli.evaluate import evaluate
from cfzoo.cli.hub import publish, pull
from cfzoo.cli.reproduce import reproduce
from cfzoo.cli.restore import export_restorer, restore, train_restorer
from cfzoo.cli.robustness import robustness_command
from cfzoo.cli.scan import scan
from cfzoo.cli.train import train
from cfzoo.cli.zoo import export, list_models, register

app = typer.Typer(
    name="cfzoo",
    help=(
        "Counter-forensics model zoo: detectors of global image manipulations (SPAM+SVM, Bayar2016, Cozzolino2017, "
        "Xception), adversarial attacks against them, and the paper's tables.\n\n"
        "Start here: `cfzoo detect photo.jpg` (which manipulations the detectors see in a photo; add --report page.html), "
        "`cfzoo attack --target bayar2016 --task jpeg70` (FGSM against a detector, on embedded photos), "
        "`cfzoo list` (the models and where each comes from), `cfzoo pull MODEL` (one from the Hub). "
        "Each command's --help ends with examples."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=Group,
)
# what a newcomer runs first, then measurements, then data, training and publishing
for name, command in (
    ("detect", detect),
    ("attack", attack),
    ("list", list_models),
    ("pull", pull),
    ("robustness", robustness_command),
    ("bench", bench_command),
    ("scan", scan),
    ("reproduce", reproduce),
    ("restore", restore),
):
    app.command(name, cls=Command)(command)
app.add_typer(data_app, name="data")
for name, command in (
    ("train", train),
    ("train-conclusion", train_conclusion),
    ("evaluate", evaluate),
    ("export", export),
    ("register", register),
    ("check", check),
    ("publish", publish),
    ("cards", cards),
    ("train-restorer", train_restorer),
    ("export-restorer", export_restorer),
):
    app.command(name, cls=Command)(command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cfzoo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No notes and no progress bars on stderr; results and errors still print."
    ),
) -> None:
    set_quiet(quiet)


def _exit_on_sigterm(signal_number: int, frame) -> None:
    # Python's default for SIGTERM ends the process at once, skipping every `finally`: an atomic write would
    # leave its hidden temporary file. Raising SystemExit instead runs the cleanup, as Ctrl-C does.
    raise SystemExit(128 + signal_number)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        code = app(prog_name="cfzoo", standalone_mode=False)
    except (click.ClickException, typer.exceptions.TyperException) as error:  # Typer >= 0.24 bundles its own click
        if not hasattr(error, "format_message"):
            raise
        # a bad value, a missing or unknown option: one line, as cfzoo's own errors, not Typer's box
        context = getattr(error, "ctx", None)
        command = context.command_path if context is not None else "cfzoo"
        message = " ".join(error.format_message().split()).rstrip(".")
        print(f"error: {message}; see {command} --help", file=sys.stderr)
        sys.exit(error.exit_code)
    except (click.Abort, typer.Abort):  # Ctrl-C, or end of input at a prompt
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main", "handle_errors"]
