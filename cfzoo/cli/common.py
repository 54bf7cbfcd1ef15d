"""What every command shares: one-line errors with a non-zero exit code, and progress bars on stderr."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePath
from typing import Any

import typer
import typer.core
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cfzoo.errors import CfzooError
from cfzoo.paths import printable


class PlainConsole(Console):
    """A console that prints text as text: no markup (``[red]x.png`` is a file name), no emoji codes, and every
    string it renders, table cells and titles included, shown by :func:`~cfzoo.paths.printable` (control
    characters and undecodable bytes escaped), so data cannot restyle or forge what a table shows. Styles come
    from ``style=`` and :class:`rich.text.Text`."""

    def __init__(self, **options: Any):
        super().__init__(markup=False, emoji=False, **options)

    def render_str(self, text: str, **options: Any):
        return super().render_str(printable(text), **options)


stdout = PlainConsole()
stderr = PlainConsole(stderr=True)
#: ``cfzoo --quiet``: no notes and no progress bars on stderr; results (stdout) and errors still print.
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def address_option() -> Any:
    """``--address``: the Ray cluster the ``ray`` engine joins (robustness, reproduce, bench)."""
    return typer.Option(
        None,
        "--address",
        help="With --engine ray: join this Ray cluster (e.g. 10.0.0.5:6379); default: start Ray here.",
    )


def variant_option() -> Any:
    """``--variant``: which of each family x task's detectors a command runs (detect, scan, attack, robustness)."""
    return typer.Option(
        "standard",
        "--variant",
        help="Which detectors: standard (trained on the photos as they are), wild (trained on photos laundered as a "
        "platform would: JPEG re-saves, downscales; ids <family>-<task>-wild) or robust (adversarially trained, "
        "<family>-<task>-robust). `cfzoo list` shows which are here.",
    )


def note(text: str) -> None:
    """A line for the user on stderr (a note, where files went), shown by :func:`~cfzoo.paths.printable`;
    ``--quiet`` leaves it out."""
    if not _quiet:
        typer.echo(printable(text), err=True)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CfzooError or OSError into ``error: <message>`` on stderr and exit code 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CfzooError as error:
            typer.echo(f"error: {printable(error.for_command_line())}", err=True)
            raise typer.Exit(1) from None
        except OSError as error:
            where = f": {error.filename}" if error.filename else ""
            typer.echo(printable(f"error: {error.strerror or error}{where}"), err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _metavar(parameter) -> str:
    """What help shows after an option: nothing for a flag, PATH, N (an integer), X (a number), or the option's
    own name in capitals (TASK, FAMILY) for text, where Typer would show Python types (<list[str]>, <bool>)."""
    if getattr(parameter, "is_flag", False):
        return ""
    descriptor = getattr(parameter, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    element = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
    if isinstance(element, type) and issubclass(element, PurePath):
        return "PATH"
    return {int: "N", float: "X"}.get(element, (parameter.name or "value").upper())


class _PlainMetavars:
    def get_params(self, ctx):
        parameters = super().get_params(ctx)
        for parameter in parameters:
            if isinstance(parameter, typer.core.TyperArgument):
                # an argument's metavar would replace its name, which says enough; its help says what it takes
                parameter.display_type_rich = lambda ctx: None
            elif parameter.metavar is None:
                parameter.metavar = _metavar(parameter)
        return parameters


def reflowed(text: str | None) -> str | None:
    """Help text whose paragraphs wrap where the terminal does: the lines of a paragraph joined into one, while
    indented lines (examples) stay lines of their own. Rich keeps a docstring's line breaks, which at any width
    but the source's leaves ragged half-lines."""
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.split("\n")
        joined = lines[:1]
        for line in lines[1:]:
            if line.startswith(" ") or joined[-1].startswith(" "):
                joined.append(line)
            else:
                joined[-1] += " " + line
        paragraphs.append("\n".join(joined))
    return "\n\n".join(paragraphs)


class _ReflowedHelp:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.help = reflowed(self.help)


class Command(_ReflowedHelp, _PlainMetavars, typer.core.TyperCommand):
    """A cfzoo command: its help names values as PATH, N or TASK, flags without a type, and wraps its paragraphs
    at the terminal's width."""


class Group(_ReflowedHelp, _PlainMetavars, typer.core.TyperGroup):
    """The cfzoo group (and ``cfzoo data``), with the metavars of :class:`Command`."""


def new_progress(rate_unit: str | None = None, transient: bool = False) -> Progress:
    """Rich progress bars on stderr (stdout stays clean for --json); off when stderr is not a terminal, so
    logs and captured output hold only results and one-line errors. ``rate_unit`` adds the rate, e.g. images/s;
    ``transient`` bars vanish when stopped."""
    rate = [TextColumn(f"{{task.fields[rate]}} {rate_unit}/s")] if rate_unit else []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *rate,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=stderr, transient=transient, disable=_quiet or not stderr.is_terminal)


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


@contextmanager
def patch_bars() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Yields ``bar_for(name)``: the progress callback of one image's patches, a bar on stderr that appears with
    the first batch and vanishes when the last is scored, so that the image's table prints on a clean screen."""
    progress = new_progress(transient=True)

    def bar_for(name: str) -> Callable[[int, int], None]:
        task = None

        def update(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                progress.start()
                task = progress.add_task(f"{printable(name)}: patches", total=total, completed=done)
            progress.update(task, completed=done, total=total)
            if done >= total:
                progress.remove_task(task)
                progress.stop()

        return update

    try:
        yield bar_for
    finally:
        progress.stop()


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
