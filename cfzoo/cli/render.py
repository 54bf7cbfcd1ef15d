"""Output formats in one place: a renderer per format over the typed documents of :mod:`cfzoo.results`.

A command that prints a result builds one typed document and hands it to :func:`print_document` with the format
``--format`` chose (``--json`` and ``--markdown`` stay as aliases). ``json`` and ``csv`` are the same for every
document: its JSON (:meth:`~cfzoo.results.Result.to_json`) and, for a :class:`~cfzoo.results.Tabular` one, a
line per row. ``table`` and ``markdown`` are views for people that the command passes along. A new format is one
:class:`Renderer` in :data:`RENDERERS`; commands offer it through :func:`format_option`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer

from cfzoo.errors import CfzooError


@dataclass(frozen=True)
class Views:
    """A command's views of its document for people: ``table()`` prints it, ``markdown()`` returns it."""

    table: Callable[[], None]
    markdown: Callable[[], str] | None = None


@dataclass(frozen=True)
class Renderer:
    name: str
    use: str  # in --format's help
    render: Callable[[Any, Views], None]


def print_json(payload: Any) -> None:
    emit(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def emit(text: str) -> None:
    """``text`` on stdout as UTF-8 bytes, a file name's undecodable bytes (surrogate escapes) as the bytes they were,
    so a path read back from the output is the path (JSON escapes them itself)."""
    typer.echo(text.encode("utf-8", "surrogateescape"), nl=False)


RENDERERS = {
    renderer.name: renderer
    for renderer in (
        Renderer("table", "for people", lambda document, views: views.table()),
        Renderer(
            "json", "one document, schemas in docs/schemas/", lambda document, views: print_json(document.to_json())
        ),
        Renderer("csv", "one line per row", lambda document, views: emit(document.to_csv())),
        Renderer("markdown", "beside the paper's figures", lambda document, views: emit(views.markdown() + "\n")),
    )
}
#: Every format, in the order --format lists them.
FORMATS = tuple(RENDERERS)


def format_option(*formats: str) -> Any:
    """``--format/-F``, offering ``formats`` (table first)."""
    uses = "; ".join(f"{name}: {RENDERERS[name].use}" for name in formats)
    return typer.Option("table", "--format", "-F", metavar="|".join(formats), help=f"What to print on stdout ({uses}).")


def json_flag() -> Any:
    return typer.Option(False, "--json", help="The same as --format json.")


def chosen_format(output_format: str, formats: Sequence[str], as_json: bool = False, markdown: bool = False) -> str:
    """The format asked for, by ``--format`` or by the flags ``--json`` and ``--markdown`` that stay as its aliases."""
    asked = {output_format} - {"table"} | ({"json"} if as_json else set()) | ({"markdown"} if markdown else set())
    if len(asked) > 1:
        raise CfzooError(f"choose one output format, not {' and '.join(sorted(asked))}")
    chosen = asked.pop() if asked else "table"
    if chosen not in formats:
        raise CfzooError(f"--format {chosen} is not offered here; choose one of: {', '.join(formats)}")
    return chosen


def print_document(
    document: Any, output_format: str, table: Callable[[], None], markdown: Callable[[], str] | None = None
) -> None:
    """``document`` (a typed result) in the chosen format, by that format's renderer."""
    RENDERERS[output_format].render(document, Views(table, markdown))
