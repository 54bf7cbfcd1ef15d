"""Writing files so that they appear whole or not at all.

Every temporary is hidden beside its destination and named for it and for the process that writes it:
``.<name>.cfzoo-<pid>.<...>``. A process killed with SIGKILL cannot remove its own, so the next write to the same
destination removes those of processes that no longer run (:func:`remove_stale_temporaries`): nothing hidden
outlives a crash by more than one run.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from cfzoo.errors import CfzooError, option


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class WriteError(CfzooError):
    """A file could not be written (a full disk, no permission); ``reason`` says why, as the OS put it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot write {path} ({reason}); choose a place you can write, with room")
        self.reason = reason


_TEMPORARY_TAG = "cfzoo-"


def temporary_name(path: Path, kind: str) -> Path:
    """A hidden name beside ``path`` for this process's temporary of ``kind``."""
    return path.with_name(f".{path.name}.{_TEMPORARY_TAG}{os.getpid()}.{kind}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove the hidden temporaries of ``path`` left by processes that no longer run; a folder that a killed run
    had moved aside (``.replaced``) goes back in ``path``'s place if nothing took it."""
    path = Path(path)
    named = re.compile(rf"\.{re.escape(path.name)}\.{_TEMPORARY_TAG}(\d+)\.")
    for leftover in sorted(path.parent.glob(f".{glob.escape(path.name)}.*")):
        found = named.match(leftover.name)
        if found is None or _running(int(found.group(1))):
            continue
        if leftover.name.endswith(".replaced") and not os.path.lexists(path):
            os.replace(leftover, path)
        elif leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def locked(path: Path, wait: bool = True) -> IO | None:
    """An exclusive lock (flock) on ``path``, made if missing, held until the returned file is closed; without
    ``wait``, None at once when another process holds it. OSError when the file cannot be made."""
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` next to ``path`` and rename the result into place.

    On any error the temporary file is removed and ``path`` is untouched. The file gets the usual
    permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        handle, temporary = tempfile.mkstemp(prefix=temporary_name(path, "").name, suffix=".partial", dir=path.parent)
    except OSError as error:
        raise WriteError(path, error.strerror or str(error)) from None
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, _default_mode())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise WriteError(path, error.strerror or str(error)) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_all_atomically(writes: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Several files, all or none: each ``write(temporary_path)`` beside its destination first, then every one renamed
    into place. A write that fails removes every temporary, leaves each destination as it was, and names its own."""
    temporaries: dict[Path, Path] = {}
    try:
        for path, write in writes.items():
            temporaries[path] = temporary_name(path, "all.partial")
            try:
                write_atomically(temporaries[path], write)
            except WriteError as error:
                raise WriteError(path, error.reason) from None
        for path, temporary in temporaries.items():
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise WriteError(path, error.strerror or str(error)) from None
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
    return list(writes)


def check_writable(path: str | os.PathLike[str], argument: str) -> Path:
    """``path`` (a file or folder to be written) as a Path, or a one-line CfzooError naming ``argument`` (an
    :func:`~cfzoo.errors.option`), before any work: the nearest folder that exists above it must be a folder this
    process may write into."""
    path = Path(path)
    ancestor = next((parent for parent in path.parents if parent.exists()), Path.cwd())
    if not ancestor.is_dir():
        raise CfzooError(f"{argument} {path} cannot be made: {ancestor} is a file, not a folder; choose another place")
    if not os.access(ancestor, os.W_OK | os.X_OK) or (path.is_dir() and not os.access(path, os.W_OK | os.X_OK)):
        raise CfzooError(f"{argument} {path} is not writable here; choose a folder you can write")
    try:  # permissions do not tell for root, nor on a read-only file system: a file made and removed does
        with tempfile.TemporaryFile(dir=path if path.is_dir() else ancestor):
            pass
    except OSError as error:
        raise CfzooError(
            f"{argument} {path} is not writable here ({error.strerror or error}); choose a folder you can write"
        ) from None
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
        raise CfzooError(f"{option('out')} {out} must end in .png: {why_png}")
    for path, what in ((source, "the input"), (out, option("out"))):
        try:
            path.resolve()
        except (RuntimeError, OSError) as error:  # a symlink loop (RuntimeError before Python 3.13)
            raise CfzooError(
                f"{what} {path} cannot be followed ({error}); remove the link or choose another file name"
            ) from None
    same = out.resolve() == source.resolve() or (out.exists() and source.exists() and out.samefile(source))
    if same:
        raise CfzooError(f"{option('out')} {out} is the input image; choose another file name")
    if out.is_dir():
        raise CfzooError(f"{option('out')} {out} is a folder; give a file name ending in .png")
    return check_writable(out, option("out"))


def check_output_dir(out: str | os.PathLike[str], force: bool = False) -> Path:
    """``out`` (a report folder to create) as a Path, or a one-line error, before any work: when it is a file or
    (without ``force``) a non-empty folder, or cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CfzooError(f"{option('out')} {out} is a file; give a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CfzooError(
            f"{option('out')} {out} is not empty; choose a new folder, or add {option('force')} to replace its contents"
        )
    return check_writable(out, option("out"))


def write_folder_atomically(out: str | os.PathLike[str], fill: Callable[[Path], None]) -> Path:
    """Call ``fill(staging_folder)`` in a hidden folder beside ``out``, then put that folder in ``out``'s place: an
    existing ``out`` is moved aside first and removed only once the new one is in place. On any error, or an
    interruption, the staging folder is removed and ``out`` is as it was; a write that fails (a full disk) is
    reported as a failure to write ``out``, the folder the user named, not the hidden one."""
    out = Path(os.path.abspath(out))
    staging = temporary_name(out, "partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as error:
        raise WriteError(out, error.strerror or str(error)) from None
    try:
        fill(staging)
        old = temporary_name(out, "replaced")
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    except WriteError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(out, error.reason) from None
    except OSError as error:  # a writer in fill that does not go through write_atomically, or the renames
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(out, error.strerror or str(error)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
