"""What every command shares: one-line errors with a non-zero exit code, and progress bars on stderr."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cfzoo.errors import CfzooError

stdout = Console()
stderr = Console(stderr=True)
#: ``cfzoo --quiet``: no notes and no progress bars on stderr; results (stdout) and errors still print.
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def note(text: str) -> None:
    """A line for the user on stderr (a note, where files went); ``--quiet`` leaves it out."""
    if not _quiet:
        typer.echo(text, err=True)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CfzooError or OSError into ``error: <message>`` on stderr and exit code 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CfzooError as error:
            typer.echo(f"error: {error.for_command_line()}", err=True)
            raise typer.Exit(1) from None
        except OSError as error:
            typer.echo(f"error: {error.strerror or error}{f': {error.filename}' if error.filename else ''}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def new_progress(rate_unit: str | None = None) -> Progress:
    """Rich progress bars on stderr (stdout stays clean for --json); off when stderr is not a terminal, so
    logs and captured output hold only results and one-line errors. ``rate_unit`` adds the rate, e.g. images/s."""
    rate = [TextColumn(f"{{task.fields[rate]}} {rate_unit}/s")] if rate_unit else []
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *rate, TimeElapsedColumn(), TimeRemainingColumn()
    )
    return Progress(*columns, console=stderr, transient=False, disable=_quiet or not stderr.is_terminal)


@contextmanager
def progress_bar(description: str, rate_unit: str | None = None) -> Iterator[Callable[[int, int], None]]:
    """One progress bar; yields a callback ``update(done, total)``. With ``rate_unit``, it shows the rate too."""
    with new_progress(rate_unit) as progress:
        task = progress.add_task(description, total=None, rate="-")

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            speed = progress.tasks[task].speed
            progress.update(task, rate="-" if speed is None else f"{speed:.2f}")

        yield update


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, allow_nan=False))


@contextmanager
def stage_bars() -> Iterator[Callable[[str, int, int], None]]:
    """Yields ``on_status(stage, done, total)``: one progress bar per stage on stderr, the first shown only
    when work starts, so that an early error is the only line printed."""
    progress = new_progress()
    bars: dict[str, int] = {}

    def on_status(stage: str, done: int, total: int) -> None:
        if not bars:
            progress.start()
        if stage not in bars:
            bars[stage] = progress.add_task(stage, total=total)
        progress.update(bars[stage], completed=done, total=total)

    try:
        yield on_status
    finally:
        if bars:
            progress.stop()
