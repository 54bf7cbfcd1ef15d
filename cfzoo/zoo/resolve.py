"""Finding a model's files: explicit path, then the user zoo, then the Hub cache, then the embedded zoo.

Every file found in a zoo is checked against the registry's sha256 before use (once per process and file
state). A file that does not match is an error that says how to repair it, never silently skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from cfzoo.errors import CfzooError
from cfzoo.files import file_sha256
from cfzoo.zoo.registry import MODELS_FOLDER, ModelEntry, ModelFile, embedded_zoo_dir, user_zoo_dir

if TYPE_CHECKING:
    from cfzoo.zoo.conclusions import ConclusionEntry
    from cfzoo.zoo.restorers import RestorerEntry

SOURCES = ("path", "user", "hub-cache", "embedded")


@dataclass(frozen=True)
class ResolvedFile:
    path: Path
    source: str  # one of SOURCES


_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def file_digest(path: Path) -> str:
    """sha256 of a file, remembered while the file's size and modification time stay the same."""
    status = path.stat()
    key = (str(path), status.st_size, status.st_mtime_ns)
    if key not in _verified:
        _verified[key] = file_sha256(path)
    return _verified[key]


def confined(candidate: ResolvedFile) -> ResolvedFile:
    """``candidate`` if it is a Hub-cache file or, symlinks followed, lies inside its zoo's models folder.

    A zoo's registry vouches only for files in that zoo: a link from it to anywhere else on disk would make a
    matching sha256 trust a file nobody put in the zoo."""
    if candidate.source not in ("user", "embedded"):
        return candidate
    models = ((user_zoo_dir() if candidate.source == "user" else embedded_zoo_dir()) / MODELS_FOLDER).resolve()
    try:
        real = candidate.path.resolve(strict=True)
    except (OSError, RuntimeError) as error:  # a symlink loop among them
        raise CfzooError(
            f"{candidate.path}: cannot follow this zoo file ({error}); delete it and export or pull the model again"
        ) from None
    if not real.is_relative_to(models):
        raise CfzooError(
            f"{candidate.path} leads outside its zoo, to {real}; a zoo may only use files inside {models}: "
            "replace the link by the file itself, or delete it and export or pull the model again"
        )
    return candidate


ZooEntry = Union[ModelEntry, "RestorerEntry", "ConclusionEntry"]


def _file_of(entry: ZooEntry, kind: str) -> ModelFile:
    if kind not in entry.files:
        raise CfzooError(f"{entry.describe(kind)} has no {kind} file; kinds: {', '.join(entry.files)}")
    return entry.files[kind]


def hub_cache_path(entry: ZooEntry, kind: str) -> Path | None:
    """The file in the Hugging Face cache for the entry's Hub source, if it was downloaded."""
    if entry.hub is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.hub.repo_id, _file_of(entry, kind).path_in_zoo, revision=entry.hub.revision)
    return Path(found) if isinstance(found, str) else None


def candidates(entry: ZooEntry, kind: str) -> list[ResolvedFile]:
    """Where the file may be, in resolution order, whether or not it exists: the user zoo, the Hub cache (for an
    entry with a Hub source), the embedded zoo (for an entry that ships in the package)."""
    relative = _file_of(entry, kind).path_in_zoo
    found = [ResolvedFile(user_zoo_dir() / relative, "user")]
    cached = hub_cache_path(entry, kind)
    if cached is not None:
        found.append(ResolvedFile(cached, "hub-cache"))
    if entry.embedded:
        found.append(ResolvedFile(embedded_zoo_dir() / relative, "embedded"))
    return found


def available_sources(entry: ZooEntry, kind: str = "detector") -> list[str]:
    """The sources that hold the file now (existence only; :func:`resolve` verifies)."""
    return [candidate.source for candidate in candidates(entry, kind) if candidate.path.is_file()]


def is_available(entry: ZooEntry, kind: str = "detector") -> bool:
    return bool(available_sources(entry, kind))


def resolve(entry: ZooEntry, kind: str = "detector", path: str | os.PathLike[str] | None = None) -> ResolvedFile:
    """The first verified location of an entry's file of ``kind`` (detector, gradient, restorer): one resolver for
    every kind of entry.

    ``path`` (a user-supplied ONNX file) wins and is not checked against the registry: the user chose it.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CfzooError(f"model file {path} does not exist; give the path of an exported .onnx file")
        return ResolvedFile(path, "path")
    expected = _file_of(entry, kind)
    for candidate in candidates(entry, kind):
        if not candidate.path.is_file():
            continue
        if file_digest(confined(candidate).path) != expected.sha256:
            raise CfzooError(
                f"{candidate.path} ({candidate.source}) does not match the {entry.listed_in}'s sha256 for {entry.id}; {entry.how_to_repair()}"
            )
        return candidate
    raise CfzooError(f"{entry.describe(kind)} is not available here; {entry.how_to_get()}")
