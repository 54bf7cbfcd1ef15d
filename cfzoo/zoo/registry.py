"""The zoo registry: one JSON file that lists every model, its files with sha256 and size, its test metrics
and where it comes from.

A zoo directory has one layout wherever it lives (inside the package, in ``$CFZOO_HOME``, in a Hub repo)::

    registry.json
    models/<id>.onnx
    models/<id>.grad.onnx

The package's registry (``cfzoo/zoo/embedded/registry.json``) lists every model cfzoo knows; the user zoo's
registry lists the models the user exported or pulled, and its entries take precedence for the same id.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from cfzoo.errors import CfzooError
from cfzoo.files import file_sha256, write_atomically
from cfzoo.manipulations import TASK_IDS
from cfzoo.paths import cfzoo_home

REGISTRY_NAME = "registry.json"
MODELS_FOLDER = "models"
SCHEMA_VERSION = 1
FAMILY_IDS = ("spam", "bayar2016", "cozzolino2017", "xception")
FILE_KINDS = ("detector", "gradient")


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        # a registry names files inside its zoo's models folder only: no folders, no way up, no absolute path
        if not isinstance(self.name, str) or self.name in ("", ".", "..") or "/" in self.name or "\\" in self.name:
            raise ValueError(f"file name {self.name!r} must be a plain file name inside the zoo's {MODELS_FOLDER} folder")

    @property
    def path_in_zoo(self) -> str:
        """Path relative to a zoo directory (and in a Hub repo)."""
        return f"{MODELS_FOLDER}/{self.name}"


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str


@dataclass(frozen=True)
class ModelEntry:
    """One model. ``threshold`` applies to ``score``: the SVM decision ``logit1 - logit0`` for spam, the
    softmax probability of class 1 for the networks (see :meth:`probability_threshold`)."""

    id: str
    family: str
    task: str
    files: dict[str, ModelFile]  # kind (detector, gradient) -> file
    threshold: float
    score: str
    metrics: dict = field(default_factory=dict)  # {"test": {"fpr", "tpr", "acc", "pristine", "manipulated"}}
    training: dict = field(default_factory=dict)  # seed, split, hyper-parameters, data digest, machine
    embedded: bool = False
    hub: HubSource | None = None

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test", {}).get("acc")

    @property
    def probability_threshold(self) -> float:
        """The threshold on softmax(logits)[:, 1]; the SVM's decision ``d`` equals logit1 - logit0, so
        softmax's class-1 probability is sigmoid(d) and the decision threshold maps through the sigmoid."""
        if self.family == "spam":
            return 1.0 / (1.0 + math.exp(-self.threshold))
        return self.threshold

    def file(self, kind: str) -> ModelFile:
        if kind not in self.files:
            raise CfzooError(f"model {self.id} has no {kind} file; kinds: {', '.join(self.files)}")
        return self.files[kind]

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["files"] = {kind: asdict(file) for kind, file in self.files.items()}
        return payload

    @classmethod
    def from_json(cls, payload: dict) -> ModelEntry:
        try:
            hub = payload.get("hub")
            return cls(
                id=payload["id"],
                family=payload["family"],
                task=payload["task"],
                files={kind: ModelFile(**file) for kind, file in payload["files"].items()},
                threshold=float(payload["threshold"]),
                score=payload["score"],
                metrics=payload.get("metrics", {}),
                training=payload.get("training", {}),
                embedded=bool(payload.get("embedded", False)),
                hub=HubSource(**hub) if hub else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CfzooError(f"malformed registry entry {payload.get('id', '?')!r}: {error}") from None


class Registry:
    """Models by id, in family-then-task order."""

    def __init__(self, entries: Iterable[ModelEntry]):
        self.entries: dict[str, ModelEntry] = {}
        for entry in sorted(entries, key=_canonical_order):
            self.entries[entry.id] = entry

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, model_id: str) -> bool:
        return model_id in self.entries

    def get(self, model_id: str) -> ModelEntry:
        if model_id not in self.entries:
            raise CfzooError(f"unknown model {model_id!r}; `cfzoo list` shows the models (ids are <family>-<task>, e.g. bayar2016-jpeg70)")
        return self.entries[model_id]

    def find(self, family: str, task: str) -> ModelEntry:
        return self.get(f"{family}-{task}")

    def select(self, families: Iterable[str] | None = None, tasks: Iterable[str] | None = None) -> list[ModelEntry]:
        families, tasks = _checked(families, FAMILY_IDS, "family"), _checked(tasks, TASK_IDS, "task")
        return [entry for entry in self if entry.family in families and entry.task in tasks]

    def merged(self, overlay: Registry) -> Registry:
        """This registry with ``overlay``'s entries replacing or adding to it (embedded flags kept)."""
        merged = dict(self.entries)
        for entry in overlay:
            base = merged.get(entry.id)
            merged[entry.id] = replace(entry, embedded=base.embedded and base.files == entry.files) if base else entry
        return Registry(merged.values())

    def to_json(self) -> dict:
        return {"schema": SCHEMA_VERSION, "models": [entry.to_json() for entry in self]}

    @classmethod
    def from_json(cls, payload: dict, origin: str) -> Registry:
        if not isinstance(payload, dict) or payload.get("schema") != SCHEMA_VERSION:
            raise CfzooError(f"{origin} is not a cfzoo registry (schema {SCHEMA_VERSION}); delete it or export the models again")
        return cls(ModelEntry.from_json(item) for item in payload.get("models", []))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Registry:
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CfzooError(f"{path} is not valid JSON ({error.msg}); delete it or export the models again") from None
        return cls.from_json(payload, str(path))

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_atomically(path, lambda temporary: temporary.write_text(json.dumps(self.to_json(), indent=2) + "\n"))


def embedded_zoo_dir() -> Path:
    """The zoo that ships inside the package."""
    return Path(str(resources.files("cfzoo.zoo") / "embedded"))


def user_zoo_dir() -> Path:
    """The user's zoo: ``$CFZOO_HOME/zoo``."""
    return cfzoo_home() / "zoo"


def embedded_registry() -> Registry:
    return Registry.read(embedded_zoo_dir() / REGISTRY_NAME)


def user_registry() -> Registry:
    path = user_zoo_dir() / REGISTRY_NAME
    return Registry.read(path) if path.exists() else Registry([])


def load_registry() -> Registry:
    """Every model cfzoo knows: the package's registry, overlaid by the user zoo's."""
    return embedded_registry().merged(user_registry())


def describe_file(path: str | os.PathLike[str]) -> ModelFile:
    path = Path(path)
    return ModelFile(name=path.name, sha256=file_sha256(path), size=path.stat().st_size)


def _canonical_order(entry: ModelEntry) -> tuple:
    family = FAMILY_IDS.index(entry.family) if entry.family in FAMILY_IDS else len(FAMILY_IDS)
    task = TASK_IDS.index(entry.task) if entry.task in TASK_IDS else len(TASK_IDS)
    return family, task, entry.id


def _checked(values: Iterable[str] | None, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    if values is None:
        return known
    values = tuple(values)
    unknown = [value for value in values if value not in known]
    if unknown:
        raise CfzooError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from: {', '.join(known)}")
    return values
