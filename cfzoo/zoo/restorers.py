"""The restorer registry: GAN generators that restore median-filtered images (the paper's Table V), no torch;
and :class:`Zoo`, every entry of every kind (detectors, user-registered detectors, restorers) in one place.

Restorers are entries of one more kind (:class:`RestorerEntry`, kind ``restorer``), read by the same
:class:`~cfzoo.zoo.registry.EntryRegistry` code and found by the same resolver
(:func:`cfzoo.zoo.resolve.resolve`) as the detectors. They keep their own file, so the detector registry keeps
its schema::

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

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import Field

from cfzoo.errors import CfzooError
from cfzoo.zoo.conclusions import ConclusionEntry, ConclusionRegistry
from cfzoo.zoo.registry import EntryRegistry, ModelEntry, ModelFile, Registry

RESTORER_REGISTRY_NAME = "restorers.json"
RESTORER_SCHEMA_VERSION = 1
#: The paper restores median filtering only (Table V), in its row order.
RESTORATION_TASKS = ("median7", "median3")
DISCRIMINATORS = ("kim", "vgg")
#: Side of the tiles an image is restored in (memory stays bounded; results equal a whole-image run).
DEFAULT_TILE = 512
#: The smallest tile: each one runs the generator on the tile and its margin, so a tile of a few pixels would run
#: it once per few pixels (a 12-megapixel photo at --tile 1: 12 million runs, days).
MIN_TILE = 32
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


#: The most context a registry may claim for a restorer: more would make every tile's window enormous.
MAX_RECEPTIVE_RADIUS = 256


@dataclass(frozen=True)
class RestorerEntry:
    """One restorer: its ONNX file with sha256, its receptive radius, test PSNR/SSIM and training record."""

    id: str
    task: str
    discriminator: str
    file: ModelFile
    #: Pixels of context each output pixel depends on, the tiles' overlap (a restorer of the paper's size has 10).
    receptive_radius: Annotated[int, Field(ge=0, le=MAX_RECEPTIVE_RADIUS)]
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    embedded: bool = False

    kind: ClassVar[str] = "restorer"
    listed_in: ClassVar[str] = "restorer registry"
    hub: ClassVar[None] = None  # restorers ship in the package or come from export-restorer, not from the Hub

    @property
    def files(self) -> dict[str, ModelFile]:
        return {self.kind: self.file}

    def describe(self, kind: str) -> str:
        return f"restorer {self.id}"

    def how_to_get(self) -> str:
        return how_to_get(self.task, self.discriminator)

    def how_to_repair(self) -> str:
        return f"delete it and export the restorer again (cfzoo export-restorer --task {self.task} --discriminator {self.discriminator})"

    def to_json(self) -> dict:
        return asdict(self)


#: Every restorer the paper has, by id: (task, discriminator), in Table V order.
_SLOTS = {restorer_id(task, kind): (task, kind) for task in RESTORATION_TASKS for kind in DISCRIMINATORS}


class RestorerRegistry(EntryRegistry):
    """Restorers by id, in Table V order (task, then discriminator)."""

    entry_type, key, schema, what, file_name = (
        RestorerEntry,
        "restorers",
        RESTORER_SCHEMA_VERSION,
        "restorer registry",
        RESTORER_REGISTRY_NAME,
    )

    @staticmethod
    def order(entry: RestorerEntry) -> tuple:
        slots = list(_SLOTS)
        return (slots.index(entry.id) if entry.id in _SLOTS else len(slots)), entry.id

    def unknown(self, model_id: str) -> str:
        hint = how_to_get(*_SLOTS[model_id]) if model_id in _SLOTS else "`cfzoo list` shows the restorers"
        return f"restorer {model_id} is not in any zoo here; {hint}"

    def find(self, task: str, discriminator: str) -> RestorerEntry:
        check_restorer(task, discriminator)
        return self.get(restorer_id(task, discriminator))


def load_restorer_registry() -> RestorerRegistry:
    """Every restorer cfzoo knows: the package's restorer registry, overlaid by the user zoo's."""
    return RestorerRegistry.load()


@dataclass(frozen=True)
class Zoo:
    """Every entry of a zoo, of every kind: detectors (cfzoo's and user-registered, :class:`Registry`), restorers
    (:class:`RestorerRegistry`) and conclusion models (:class:`ConclusionRegistry`); :func:`cfzoo.zoo.resolve.resolve`
    finds the file of any of them."""

    detectors: Registry
    restorers: RestorerRegistry
    conclusions: ConclusionRegistry

    @classmethod
    def load(cls) -> Zoo:
        """What cfzoo knows here: the package's zoo overlaid by the user's."""
        return cls(Registry.load(), RestorerRegistry.load(), ConclusionRegistry.load())

    @classmethod
    def in_folder(cls, zoo_dir: Path) -> Zoo:
        """The zoo folder ``zoo_dir`` alone (such as one written by ``cfzoo export --zoo DIR``), read strictly."""
        if not any(
            (zoo_dir / registry.file_name).is_file() for registry in (Registry, RestorerRegistry, ConclusionRegistry)
        ):
            raise CfzooError(
                f"{zoo_dir / Registry.file_name} does not exist; give a zoo folder written by `cfzoo export --zoo DIR` "
                "(or `cfzoo export-restorer --zoo DIR`)"
            )
        return cls(Registry.in_zoo(zoo_dir), RestorerRegistry.in_zoo(zoo_dir), ConclusionRegistry.in_zoo(zoo_dir))

    @property
    def problems(self) -> tuple[str, ...]:
        return self.detectors.problems + self.restorers.problems + self.conclusions.problems

    def __iter__(self):
        return itertools.chain(self.detectors, self.restorers, self.conclusions)

    def get(self, model_id: str) -> ModelEntry | RestorerEntry | ConclusionEntry:
        """The entry of any kind with this id."""
        for registry in (self.restorers, self.conclusions):
            if model_id in registry:
                return registry.get(model_id)
        return self.detectors.get(model_id)
