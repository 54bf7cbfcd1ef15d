"""Changing a zoo folder all or nothing: files are staged, then the registry is replaced in one atomic rename.

A registry entry only ever names files that are whole and verified, whatever moment a crash (SIGKILL, a full disk)
strikes:

- each new file is written into a staging folder inside the zoo, then moved into ``models/`` under a name that
  holds its content's sha256 (``<id>.<12 hex digits>.onnx``, the companion ``<id>.<12 hex digits>.grad.onnx``):
  a new file never replaces a file another entry uses, and two entries' names never collide (the digits are
  always the second-to-last part of a detector's name and never followed by ``.grad`` in a companion's);
- the registry is written atomically (a temporary file renamed over it): the moment of the change;
- files no entry names any more, and staging folders, are removed afterwards, and by the next writer when a
  crash left them: a crash costs some disk until then, never an entry.

Writers of one zoo take turns (an exclusive lock on ``<zoo>/.lock``), so two registrations cannot interleave.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cfzoo.errors import CfzooError
from cfzoo.files import file_sha256, locked
from cfzoo.zoo.registry import MODELS_FOLDER, REGISTRY_NAME, ModelFile, Registry

#: Seconds a registration may spend loading, running and converting the graph it registers (in a child process).
REGISTER_TIMEOUT = 600.0
LOCK_NAME = ".lock"
STAGING_PREFIX = ".staging-"
#: Names this writer gives files: ``<id>.<12 hex>.onnx`` and ``<id>.<12 hex>.grad.onnx``.
CONTENT_NAME = re.compile(r".+\.[0-9a-f]{12}(\.grad)?\.onnx")


def content_name(stem: str, sha256: str, suffix: str) -> str:
    """``<stem>.<first 12 hex digits of sha256><suffix>``."""
    return f"{stem}.{sha256[:12]}{suffix}"


class ZooWriter:
    """``with ZooWriter(zoo_dir) as writer:`` stage files with :meth:`add`, then :meth:`commit` the new registry.

    Leaving the block without a commit (an error, a refusal) leaves the zoo as it was."""

    def __init__(self, zoo_dir: str | os.PathLike[str]):
        self.zoo_dir = Path(zoo_dir)
        self.models = self.zoo_dir / MODELS_FOLDER

    def __enter__(self) -> ZooWriter:
        try:
            self.models.mkdir(parents=True, exist_ok=True)
            self._lock = locked(self.zoo_dir / LOCK_NAME)
        except OSError as error:
            raise CfzooError(
                f"cannot write the zoo {self.zoo_dir} ({error.strerror or error}); set CFZOO_HOME to a folder you can write"
            ) from None
        self._clean()  # what a writer killed before its cleanup left behind
        self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.zoo_dir))
        return self

    def add(self, stem: str, suffix: str, write: Callable[[Path], None]) -> ModelFile:
        """Write a file with ``write(path)`` in staging, then move it into ``models/`` under its content name."""
        staged = self.staging / f"file{suffix}"
        try:
            write(staged)
            digest = file_sha256(staged)
            name = content_name(stem, digest, suffix)
            size = staged.stat().st_size
            os.replace(staged, self.models / name)  # same content, same name: replacing it changes nothing
        except OSError as error:
            raise CfzooError(
                f"cannot write into the zoo {self.zoo_dir} ({error.strerror or error}); free some space and try again"
            ) from None
        return ModelFile(name=name, sha256=digest, size=size)

    def commit(self, registry: Registry) -> None:
        """Replace the zoo's registry (the one atomic step), then remove the files no entry names any more."""
        registry.write(self.zoo_dir / REGISTRY_NAME)
        self._clean()

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self._clean()
        self._lock.close()  # closing the file releases its lock

    def _clean(self) -> None:
        """Remove staging folders and the content-named files that no entry of the zoo's registry names."""
        for leftover in self.zoo_dir.glob(f"{STAGING_PREFIX}*"):
            if getattr(self, "staging", None) != leftover:
                shutil.rmtree(leftover, ignore_errors=True)
        named = self._named_files()
        if named is None:
            return  # a registry that cannot be read: keep every file, the user may repair it
        for path in self.models.iterdir():
            if CONTENT_NAME.fullmatch(path.name) and path.name not in named:
                path.unlink(missing_ok=True)

    def _named_files(self) -> set[str] | None:
        """Every file name the registry's JSON mentions, valid entries or not (an entry that fails validation
        keeps its files); None when the registry cannot be read."""
        path = self.zoo_dir / REGISTRY_NAME
        if not path.exists():
            return set()
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        named = set()
        for entry in document.get("models", []) if isinstance(document, dict) else []:
            files = entry.get("files") if isinstance(entry, dict) else None
            for found in files.values() if isinstance(files, dict) else []:
                if isinstance(found, dict) and isinstance(found.get("name"), str):
                    named.add(found["name"])
        return named
