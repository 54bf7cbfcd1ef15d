"""Writing files so that they appear whole or not at all."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from cfzoo.errors import CfzooError


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` next to ``path`` and rename the result into place.

    On any error the temporary file is removed and ``path`` is untouched. The file gets the usual
    permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, _default_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_png_destination(out: str | os.PathLike[str], source: str | os.PathLike[str], why_png: str) -> Path:
    """``out`` as a Path if an image derived from ``source`` can be written there, checked before any work:
    a ``.png`` name (``why_png`` says why lossless), not the input itself, not a folder, not a symlink loop."""
    out, source = Path(out), Path(source)
    if out.suffix.lower() != ".png":
        raise CfzooError(f"--out {out} must end in .png: {why_png}")
    try:
        resolved = out.resolve()
        same = resolved == source.resolve() or (out.exists() and source.exists() and out.samefile(source))
    except (RuntimeError, OSError) as error:  # a symlink loop (RuntimeError before Python 3.13)
        raise CfzooError(f"--out {out} cannot be followed ({error}); remove the link or choose another file name") from None
    if same:
        raise CfzooError(f"--out {out} is the input image; choose another file name")
    if out.is_dir():
        raise CfzooError(f"--out {out} is a folder; give a file name ending in .png")
    return out
