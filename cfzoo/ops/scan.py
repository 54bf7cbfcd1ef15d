"""What a scan records: one row per image x detector (each detector is one task), from :func:`cfzoo.ops.detect.detect_image`.

A row holds the image's path (as text for people, and as the exact bytes the file system has, the row's key), the
sha256 of its bytes, its size, the detector (model id, family, task, and the
sha256 of its ONNX file as its version), the flagged share of patches, the mean probability, the verdict, what
reading the image noted (``notes``, as detect prints them), and cfzoo's version. An input that cannot be analysed
(unreadable, corrupt, too small, not a regular file) still gets its rows, with the one-line ``error`` detect would
print and no scores, so a scan never stops (or blocks, on a pipe) on one bad file and every input is accounted for.

Inputs (:func:`scan_inputs`): files, folders (recursive), glob patterns, and manifests (a ``.txt`` with one path per
line, or a ``.parquet`` with a ``path`` column; relative paths are taken from the manifest's folder).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cfzoo._version import __version__
from cfzoo.errors import CfzooError
from cfzoo.images import IMAGE_SUFFIXES
from cfzoo.ops.detect import detect_image, model_sha256
from cfzoo.ops.scoring import DEFAULT_BATCH_SIZE
from cfzoo.patches import DEFAULT_STRIDE
from cfzoo.paths import printable
from cfzoo.results import ScanRow
from cfzoo.zoo.runtime import Detector

#: The Parquet type of each column of a scan row (:class:`~cfzoo.results.ScanRow`), in the row's order.
COLUMN_TYPES = {
    name: {
        "path_bytes": "binary",
        "width": "int32",
        "height": "int32",
        "flagged_share": "float64",
        "mean_probability": "float64",
        "notes": "list<string>",
    }.get(name, "string")
    for name in ScanRow.model_fields
}
MANIFEST_SUFFIXES = (".txt", ".parquet")


def scan_rows(
    path: str | os.PathLike[str],
    detectors: Sequence[Detector],
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[dict]:
    """The rows of one input (each a :class:`~cfzoo.results.ScanRow`, as the dict its Parquet part takes): one per
    detector, with scores, or with the input's one-line error."""
    path = Path(path)
    report = detect_image(path, detectors, stride, batch_size)  # it hashes regular files only: a pipe never blocks
    digest, failure = report.sha256, report.error
    verdicts = {verdict.model: verdict for verdict in report.results}
    rows = []
    for detector in detectors:
        entry, verdict = detector.entry, verdicts.get(detector.entry.id)
        row = ScanRow(
            path=printable(str(path)),  # Parquet text is UTF-8; the exact name is path_bytes
            path_bytes=os.fsencode(path),
            sha256=digest,
            width=report.width,
            height=report.height,
            task=entry.task,
            model=entry.id,
            family=entry.family,
            model_sha256=model_sha256(detector),
            flagged_share=None if verdict is None else verdict.flagged_share,
            mean_probability=None if verdict is None else verdict.mean_probability,
            verdict=None if verdict is None else verdict.verdict,
            notes=[printable(note) for note in report.notes],
            error=None if failure is None else printable(failure),
            cfzoo_version=__version__,
        )
        rows.append(row.model_dump())
    return rows


def scan_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every input path, in order and once: files as given, folders walked recursively (image suffixes only,
    sorted), glob patterns expanded (sorted), manifests read. A path that does not exist stays, so that its rows
    carry the error; a pattern that matches nothing, or an unreadable manifest, is a CfzooError."""
    found: list[Path] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir():
            found.extend(_walk(path))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            found.extend(_manifest(path))
        elif glob.has_magic(item) and not path.exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise CfzooError(
                    f"{item}: the pattern matches no file; check it (quote it so that the shell does not expand it)"
                )
            found.extend(
                image for match in map(Path, matches) for image in (_walk(match) if match.is_dir() else [match])
            )
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def _walk(folder: Path) -> list[Path]:
    images = []
    for directory, _, names in os.walk(folder):
        images.extend(Path(directory) / name for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES)
    return sorted(images)


def _manifest(path: Path) -> list[Path]:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as parquet

            table = parquet.read_table(path)
            if "path" not in table.column_names:
                raise CfzooError(
                    f"{path}: a Parquet manifest needs a 'path' column (it has {', '.join(table.column_names)})"
                )
            lines = [str(value) for value in table.column("path").to_pylist() if value]
        else:
            lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CfzooError(
            f"{path}: the manifest cannot be read ({error}); give a text file of paths or a Parquet with a path column"
        ) from None
    return [
        path.parent / line if not Path(line).is_absolute() else Path(line)
        for line in lines
        if line and not line.startswith("#")
    ]
