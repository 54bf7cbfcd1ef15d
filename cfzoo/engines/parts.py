"""A scan's output: a folder of Parquet parts, each written whole (atomically) as the scan goes.

A crash loses at most the parts being written. Readers (pyarrow, Ray Data, pandas, DuckDB) read the folder as one
table; the temporary files of parts in flight start with a dot, which they skip. ``--resume`` reads the rows held
and the scan writes only the others: a row is held when its (path's bytes, sha256 of the file, model id) is, so a
file changed since is scanned again.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from cfzoo.errors import CfzooError, option
from cfzoo.files import write_atomically
from cfzoo.ops.scan import COLUMN_TYPES, file_sha256

PART_GLOB = "part-*.parquet"


def schema():
    import pyarrow

    return pyarrow.schema([(name, getattr(pyarrow, kind)()) for name, kind in COLUMN_TYPES.items()])


KEY_COLUMNS = ("path_bytes", "sha256", "model")


def row_key(row: dict) -> tuple:
    return tuple(row[name] for name in KEY_COLUMNS)


class ScanOutput:
    """The parts folder ``folder``: new (or empty), or with ``resume`` one that already holds rows."""

    def __init__(self, folder: str | os.PathLike[str], resume: bool = False):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise CfzooError(
                f"{option('out')} {self.folder} is a file; give a folder for the Parquet parts (e.g. results.parquet)"
            )
        parts = sorted(self.folder.glob(PART_GLOB)) if self.folder.is_dir() else []
        if parts and not resume:
            raise CfzooError(
                f"{self.folder} already holds a scan ({len(parts)} parts); add {option('resume')} to finish it, or choose another {option('out')}"
            )
        self.held = held_keys(parts)
        self._run = uuid.uuid4().hex[:8]
        self._numbers = itertools.count(len(parts))
        self.written = 0

    def pending(self, paths: Sequence[Path], models: Sequence[str]) -> list[Path]:
        """The paths with a row still to write for some model: those the output has never seen, and those whose
        bytes (hashed now) or models differ from the rows held."""
        if not self.held:
            return list(paths)
        seen = {path for path, _, _ in self.held}
        waiting = []
        for path in paths:
            name = os.fsencode(path)
            if name in seen:
                try:
                    digest = file_sha256(path)
                except OSError:
                    digest = None
                if all((name, digest, model) in self.held for model in models):
                    continue
            waiting.append(path)
        return waiting

    def write(self, rows: Iterable[dict]) -> int:
        """Write the rows not held yet as one part; returns how many were written."""
        import pyarrow
        import pyarrow.parquet as parquet

        fresh = [row for row in rows if row_key(row) not in self.held]
        if not fresh:
            return 0
        table = pyarrow.Table.from_pylist(fresh, schema=schema())
        name = f"part-{next(self._numbers):06d}-{self._run}.parquet"
        write_atomically(self.folder / name, lambda temporary: parquet.write_table(table, temporary))
        self.held.update(row_key(row) for row in fresh)
        self.written += len(fresh)
        return len(fresh)


def read_rows(folder: str | os.PathLike[str]) -> list[dict]:
    """Every row of a scan's parts folder."""
    return [row for table in _tables(sorted(Path(folder).glob(PART_GLOB))) for row in table.to_pylist()]


def held_keys(parts: Sequence[Path]) -> set[tuple]:
    """The (path's bytes, sha256, model) of every row in ``parts``, read from those three columns only."""
    return {
        key
        for table in _tables(parts, KEY_COLUMNS)
        for key in zip(*(table.column(name).to_pylist() for name in KEY_COLUMNS))
    }


def _tables(parts: Sequence[Path], columns: Sequence[str] | None = None):
    import pyarrow.parquet as parquet

    for part in parts:
        try:
            yield parquet.read_table(part, columns=None if columns is None else list(columns), schema=schema())
        except (OSError, ValueError) as error:
            raise CfzooError(
                f"{part}: the part cannot be read ({str(error).splitlines()[0]}); move it away and {option('resume')}"
            ) from None
