"""A scan's output: a folder of Parquet parts, each written whole (atomically) as the scan goes, owned by one scan
at a time.

A crash loses at most the parts being written; their hidden temporary files (``.part-*.partial``, which readers
such as pyarrow, Ray Data, pandas and DuckDB skip) are removed by the next scan into the folder. Readers read the
folder as one table.

- **One writer.** A scan holds an exclusive lock on ``<out>/.cfzoo-scan.lock`` while it writes; a second scan into
  the same folder is refused in one line instead of writing every row twice.
- **Provenance.** Each part carries, in its Parquet metadata, what made its rows comparable (the rows' schema
  version and the patch stride). A part without it, of another schema, or of another stride is refused by name
  before any work: nothing foreign is read as rows.
- **Resume.** ``--resume`` writes only the rows not held: a row is held when its (path's bytes, sha256 of the file,
  model id) is, so a new model gets its rows and a file changed since is scanned again. A changed file's old rows,
  every model's, are dropped first (the parts that hold them are rewritten without them, each atomically), so the
  folder keeps at most one row per path and model, for the file as it is now. Rows of files not among this run's
  inputs are kept.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from cfzoo.errors import CfzooError, option
from cfzoo.files import check_writable, locked, write_atomically
from cfzoo.ops.detect import content_sha256
from cfzoo.ops.scan import COLUMN_TYPES
from cfzoo.results import RESULTS_SCHEMA_VERSION

PART_GLOB = "part-*.parquet"
LOCK_NAME = ".cfzoo-scan.lock"
#: The Parquet metadata key of a part's provenance.
PROVENANCE_KEY = b"cfzoo.scan"
KEY_COLUMNS = ("path_bytes", "sha256", "model")


def schema():
    import pyarrow

    types = {"list<string>": pyarrow.list_(pyarrow.string())}
    return pyarrow.schema(
        [(name, types[kind] if kind in types else getattr(pyarrow, kind)()) for name, kind in COLUMN_TYPES.items()]
    )


def provenance(stride: int) -> dict:
    """What a part's rows depend on besides the image and the model (each row names those)."""
    return {"schema_version": RESULTS_SCHEMA_VERSION, "stride": stride}


def row_key(row: dict) -> tuple:
    return tuple(row[name] for name in KEY_COLUMNS)


def check_out(folder: str | os.PathLike[str]) -> Path:
    """``folder`` as a Path if a scan can write its parts there, or a one-line CfzooError, before any work."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CfzooError(
            f"{option('out')} {folder} is a file; give a folder for the Parquet parts (e.g. results.parquet)"
        )
    return check_writable(folder, option("out"))


class ScanOutput:
    """The parts folder ``folder`` of scans with ``stride``: new (or empty), or with ``resume`` one that already
    holds rows of the same provenance. Opening it takes the folder's lock (until :meth:`close`) and removes what a
    killed scan left."""

    def __init__(self, folder: str | os.PathLike[str], stride: int, resume: bool = False):
        self.folder = check_out(folder)
        self.provenance = provenance(stride)
        parts = sorted(self.folder.glob(PART_GLOB)) if self.folder.is_dir() else []
        if parts and not resume:
            raise CfzooError(
                f"{self.folder} already holds a scan ({len(parts)} parts); add {option('resume')} to finish it, "
                f"or choose another {option('out')}"
            )
        for part in parts:  # before the lock: a refusal leaves the folder as it was
            self._check_part(part)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = locked(self.folder / LOCK_NAME, wait=False)
        except OSError as error:
            raise CfzooError(
                f"{option('out')} {self.folder} cannot be written ({error.strerror or error}); choose a folder you can write"
            ) from None
        if self._lock is None:
            raise CfzooError(
                f"another cfzoo scan is writing into {self.folder}; let it finish (then add {option('resume')}), "
                f"or choose another {option('out')}"
            )
        for leftover in self.folder.glob(".part-*.partial"):
            leftover.unlink(missing_ok=True)
        self.held = held_keys(parts)
        self._run = uuid.uuid4().hex[:8]
        self._numbers = itertools.count(len(parts))
        self.written = 0

    def close(self) -> None:
        """Let another scan write here."""
        self._lock.close()

    def __enter__(self) -> ScanOutput:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_part(self, part: Path) -> None:
        import pyarrow.parquet as parquet

        try:
            found = parquet.read_schema(part)
        except (OSError, ValueError) as error:
            raise CfzooError(
                f"{part}: the part cannot be read ({str(error).splitlines()[0]}); move it away and {option('resume')}"
            ) from None
        written = (found.metadata or {}).get(PROVENANCE_KEY)
        if written is None or not found.remove_metadata().equals(schema()):
            raise CfzooError(
                f"{part} is not a part of a cfzoo scan (other columns, or no cfzoo provenance); move it out of "
                f"{self.folder}, or choose another {option('out')}"
            )
        written = json.loads(written)
        differ = [
            f"{name} {written.get(name)} (this scan: {value})"
            for name, value in self.provenance.items()
            if written.get(name) != value
        ]
        if differ:
            raise CfzooError(
                f"{part} was written with {'; '.join(differ)}: its rows would not compare with this scan's; "
                f"scan with its settings, or choose another {option('out')}"
            )

    def pending(self, paths: Sequence[Path], models: Sequence[str]) -> list[Path]:
        """The paths with a row still to write for some model: those the output has never seen, and those whose
        bytes (hashed now) or models differ from the rows held. A changed file's old rows are dropped here."""
        if not self.held:
            return list(paths)
        seen = {name for name, _, _ in self.held}
        waiting, changed = [], {}
        for path in paths:
            name = os.fsencode(path)
            if name in seen:
                digest = content_sha256(path)
                if all((name, digest, model) in self.held for model in models):
                    continue
                changed[name] = digest
            waiting.append(path)
        self._drop(lambda key: key[0] in changed and key[1] != changed[key[0]])
        return waiting

    def _drop(self, stale) -> None:
        """Rewrite the parts that hold rows whose key is ``stale(key)``, without those rows."""
        import pyarrow
        import pyarrow.parquet as parquet

        if not any(stale(key) for key in self.held):
            return
        for part in sorted(self.folder.glob(PART_GLOB)):
            table = next(_tables([part]))
            keep = [not stale(key) for key in zip(*(table.column(name).to_pylist() for name in KEY_COLUMNS))]
            if all(keep):
                continue
            if any(keep):
                kept = table.filter(pyarrow.array(keep)).replace_schema_metadata(self._metadata())
                write_atomically(part, lambda temporary, kept=kept: parquet.write_table(kept, temporary))
            else:
                part.unlink()
        self.held = {key for key in self.held if not stale(key)}

    def _metadata(self) -> dict:
        return {PROVENANCE_KEY: json.dumps(self.provenance).encode()}

    def write(self, rows: Iterable[dict]) -> int:
        """Write the rows not held yet as one part; returns how many were written."""
        import pyarrow
        import pyarrow.parquet as parquet

        fresh = [row for row in rows if row_key(row) not in self.held]
        if not fresh:
            return 0
        table = pyarrow.Table.from_pylist(fresh, schema=schema()).replace_schema_metadata(self._metadata())
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
