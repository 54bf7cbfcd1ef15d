"""The restorer registry: GAN generators that restore median-filtered images (the paper's Table V), no torch.

Restorers live beside the detectors but in their own registry, so the detector registry keeps its schema::

    restorers.json
    models/restorer-<task>-<discriminator>.onnx

in any zoo folder: the package's (``cfzoo/zoo/embedded``) and the user's (``$CFZOO_HOME/zoo``), whose
entries replace the package's for the same id. A file is taken from the user zoo first, then from the
embedded zoo, and is checked against the registry's sha256 before use.

ONNX contract: input ``image`` float32 [N,3,H,W] RGB 0..255, output ``restored`` float32 of the same shape,
0..255 (round to uint8 to store); N, H and W are dynamic, H and W >= 1. An output pixel depends on the input
within ``receptive_radius`` pixels, which tiled processing uses as its overlap.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.zoo.registry import MODELS_FOLDER, ModelFile, embedded_zoo_dir, read_registry_file, user_zoo_dir
from cfzoo.zoo.resolve import ResolvedFile, confined, file_digest

RESTORER_REGISTRY_NAME = "restorers.json"
RESTORER_SCHEMA_VERSION = 1
#: The paper restores median filtering only (Table V), in its row order.
RESTORATION_TASKS = ("median7", "median3")
DISCRIMINATORS = ("kim", "vgg")
#: Side of the tiles an image is restored in (memory stays bounded; results equal a whole-image run).
DEFAULT_TILE = 512
DISCRIMINATOR_TITLES = {"kim": "Kim2018 discriminator", "vgg": "VGG discriminator"}
IMAGE_INPUT, RESTORED_OUTPUT = "image", "restored"


def restorer_id(task: str, discriminator: str) -> str:
    return f"restorer-{task}-{discriminator}"


def check_restorer(task: str, discriminator: str) -> None:
    """A one-line error for a task or discriminator kind that has no restorer."""
    if task not in RESTORATION_TASKS:
        raise CfzooError(f"restorers exist for {', '.join(RESTORATION_TASKS)} (the paper's Table V), not {task!r}")
    if discriminator not in DISCRIMINATORS:
        raise CfzooError(f"unknown discriminator {discriminator!r}; choose one of: {', '.join(DISCRIMINATORS)}")


def how_to_get(task: str, discriminator: str) -> str:
    return (
        f"train and export it: cfzoo train-restorer DATA --task {task} --discriminator {discriminator}, "
        f"then cfzoo export-restorer --task {task} --discriminator {discriminator}"
    )


@dataclass(frozen=True)
class RestorerEntry:
    """One restorer: its ONNX file with sha256, its receptive radius, test PSNR/SSIM and training record."""

    id: str
    task: str
    discriminator: str
    file: ModelFile
    receptive_radius: int
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    embedded: bool = False

    def to_json(self) -> dict:
        return asdict(self)


class RestorerRegistry:
    """Restorers by id, in Table V order (task, then discriminator)."""

    def __init__(self, entries, problems=()):
        self.problems = tuple(problems)  # one line per invalid entry left out (user zoo)
        order = {restorer_id(task, kind): index for index, (task, kind) in enumerate((t, k) for t in RESTORATION_TASKS for k in DISCRIMINATORS)}
        self.entries = {entry.id: entry for entry in sorted(entries, key=lambda entry: (order.get(entry.id, len(order)), entry.id))}

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, model_id: str) -> bool:
        return model_id in self.entries

    def find(self, task: str, discriminator: str) -> RestorerEntry:
        check_restorer(task, discriminator)
        model_id = restorer_id(task, discriminator)
        if model_id not in self.entries:
            invalid = next((problem for problem in self.problems if f"entry {model_id!r}:" in problem), None)
            if invalid is not None:
                raise CfzooError(f"{invalid}; fix or delete that entry")
            raise CfzooError(f"restorer {model_id} is not in any zoo here; {how_to_get(task, discriminator)}")
        return self.entries[model_id]

    def merged(self, overlay: RestorerRegistry) -> RestorerRegistry:
        """This registry with ``overlay``'s entries replacing or adding to it (embedded only if the file is the same)."""
        merged = dict(self.entries)
        for entry in overlay:
            base = merged.get(entry.id)
            merged[entry.id] = replace(entry, embedded=bool(base) and base.embedded and base.file == entry.file)
        return RestorerRegistry(merged.values(), self.problems + overlay.problems)

    def to_json(self) -> dict:
        return {"schema": RESTORER_SCHEMA_VERSION, "restorers": [entry.to_json() for entry in self]}

    @classmethod
    def read(cls, path: str | os.PathLike[str], lenient: bool = False) -> RestorerRegistry:
        """The restorer registry file at ``path`` (see :func:`cfzoo.zoo.registry.read_registry_file`)."""
        entries, problems = read_registry_file(path, RestorerEntry, "restorers", RESTORER_SCHEMA_VERSION, "restorer registry", lenient)
        return cls(entries, problems)

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_atomically(path, lambda temporary: temporary.write_text(json.dumps(self.to_json(), indent=2) + "\n"))


def _read_if_present(zoo_dir: Path, lenient: bool = False) -> RestorerRegistry:
    path = zoo_dir / RESTORER_REGISTRY_NAME
    return RestorerRegistry.read(path, lenient) if path.exists() else RestorerRegistry([])


def load_restorer_registry() -> RestorerRegistry:
    """Every restorer cfzoo knows: the package's restorer registry, overlaid by the user zoo's (whose invalid
    entries are left out and named in ``problems``)."""
    return _read_if_present(embedded_zoo_dir()).merged(_read_if_present(user_zoo_dir(), lenient=True))


def restorer_candidates(entry: RestorerEntry) -> list[ResolvedFile]:
    """Where the file may be, in resolution order: the user zoo, then (if shipped) the embedded zoo."""
    relative = f"{MODELS_FOLDER}/{entry.file.name}"
    found = [ResolvedFile(user_zoo_dir() / relative, "user")]
    if entry.embedded:
        found.append(ResolvedFile(embedded_zoo_dir() / relative, "embedded"))
    return found


def is_available(entry: RestorerEntry) -> bool:
    return any(candidate.path.is_file() for candidate in restorer_candidates(entry))


def resolve_restorer(entry: RestorerEntry) -> ResolvedFile:
    """The first location of the restorer's file whose sha256 matches the registry."""
    for candidate in restorer_candidates(entry):
        if not candidate.path.is_file():
            continue
        if file_digest(confined(candidate).path) != entry.file.sha256:
            raise CfzooError(
                f"{candidate.path} ({candidate.source}) does not match the restorer registry's sha256 for {entry.id}; "
                f"delete it and export the restorer again (cfzoo export-restorer --task {entry.task} --discriminator {entry.discriminator})"
            )
        return candidate
    raise CfzooError(f"restorer {entry.id} is not available here; {how_to_get(entry.task, entry.discriminator)}")
