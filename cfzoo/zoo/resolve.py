"""Finding a model's files: explicit path, then the user zoo, then the Hub cache, then the embedded zoo.

Every file found in a zoo is checked against the registry's sha256 before use (once per process and file
state). A file that does not match is an error that says how to repair it, never silently skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cfzoo.errors import CfzooError
from cfzoo.files import file_sha256
from cfzoo.zoo.registry import MODELS_FOLDER, ModelEntry, embedded_zoo_dir, user_zoo_dir

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
        raise CfzooError(f"{candidate.path}: cannot follow this zoo file ({error}); delete it and export or pull the model again") from None
    if not real.is_relative_to(models):
        raise CfzooError(
            f"{candidate.path} leads outside its zoo, to {real}; a zoo may only use files inside {models}: "
            "replace the link by the file itself, or delete it and export or pull the model again"
        )
    return candidate


def hub_cache_path(entry: ModelEntry, kind: str) -> Path | None:
    """The file in the Hugging Face cache for the entry's Hub source, if it was downloaded."""
    if entry.hub is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.hub.repo_id, entry.file(kind).path_in_zoo, revision=entry.hub.revision)
    return Path(found) if isinstance(found, str) else None


def candidates(entry: ModelEntry, kind: str) -> list[ResolvedFile]:
    """Where the file may be, in resolution order, whether or not it exists."""
    relative = entry.file(kind).path_in_zoo
    found = [ResolvedFile(user_zoo_dir() / relative, "user")]
    cached = hub_cache_path(entry, kind)
    if cached is not None:
        found.append(ResolvedFile(cached, "hub-cache"))
    if entry.embedded:
        found.append(ResolvedFile(embedded_zoo_dir() / relative, "embedded"))
    return found


def available_sources(entry: ModelEntry, kind: str = "detector") -> list[str]:
    """The sources that hold the file now (existence only; :func:`resolve` verifies)."""
    return [candidate.source for candidate in candidates(entry, kind) if candidate.path.is_file()]


def resolve(entry: ModelEntry, kind: str = "detector", path: str | os.PathLike[str] | None = None) -> ResolvedFile:
    """The first verified location of a model file.

    ``path`` (a user-supplied ONNX file) wins and is not checked against the registry: the user chose it.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CfzooError(f"model file {path} does not exist; give the path of an exported .onnx file")
        return ResolvedFile(path, "path")
    expected = entry.file(kind)
    for candidate in candidates(entry, kind):
        if not candidate.path.is_file():
            continue
        if file_digest(confined(candidate).path) != expected.sha256:
            raise CfzooError(
                f"{candidate.path} ({candidate.source}) does not match the registry's sha256 for {entry.id}; "
                f"delete it, then run `cfzoo pull {entry.id}` or export the model again"
            )
        return candidate
    hint = (
        f"run `cfzoo pull {entry.id}`" if entry.hub else f"train and export it: cfzoo train DATA -f {entry.family} -t {entry.task}, then cfzoo export"
    )
    raise CfzooError(f"model {entry.id} ({kind}) is not available here; {hint}")
