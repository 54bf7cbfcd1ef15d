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

import functools
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import ClassVar

from pydantic import TypeAdapter, ValidationError

from cfzoo.errors import CfzooError
from cfzoo.files import file_sha256, write_atomically
from cfzoo.manipulations import TASK_IDS
from cfzoo.paper import FAMILY_IDS
from cfzoo.paths import cfzoo_home

REGISTRY_NAME = "registry.json"
MODELS_FOLDER = "models"
SCHEMA_VERSION = 1
FILE_KINDS = ("detector", "gradient")
#: A registry entry's ``score``: the SVM decision ``logit1 - logit0``, or the softmax probability of class 1.
SVM_DECISION_SCORE = "svm decision function"
PROBABILITY_SCORE = "softmax probability of class 1"
#: The family of detectors cfzoo did not make (``cfzoo register``, ``--model PATH.onnx``).
EXTERNAL_FAMILY = "external"
#: What a detector was trained for (DESIGN.md, "Variants"): ``standard`` (the photos as they are), ``wild``
#: (photos laundered as a platform would: JPEG re-saves and downscales) or ``robust`` (adversarially trained).
VARIANTS = ("standard", "wild", "robust")
STANDARD_VARIANT = "standard"


def check_variant(variant: str) -> str:
    """``variant`` if it is one of :data:`VARIANTS`, else a one-line CfzooError."""
    if variant not in VARIANTS:
        raise CfzooError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    return variant


def model_id(family: str, task: str, variant: str = STANDARD_VARIANT) -> str:
    """A cfzoo detector's id: ``<family>-<task>``, and ``-<variant>`` after it for a variant other than standard."""
    check_variant(variant)
    return f"{family}-{task}" if variant == STANDARD_VARIANT else f"{family}-{task}-{variant}"


#: The largest model file a registry may list: a claim beyond it is a damaged or hostile entry.
MAX_MODEL_BYTES = 1 << 40


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        # a registry names files inside its zoo's models folder only: no folders, no way up, no absolute path
        if not isinstance(self.name, str) or self.name in ("", ".", "..") or "/" in self.name or "\\" in self.name:
            raise ValueError(
                f"file name {self.name!r} must be a plain file name inside the zoo's {MODELS_FOLDER} folder"
            )
        if len(self.sha256) != 64 or any(character not in "0123456789abcdef" for character in self.sha256):
            raise ValueError(f"sha256 {self.sha256[:80]!r} must be 64 lowercase hexadecimal digits")
        if not 0 <= self.size <= MAX_MODEL_BYTES:
            raise ValueError(f"size {self.size} must be 0 to {MAX_MODEL_BYTES} bytes (1 TiB)")

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
    # {"test": {"fpr", "tpr", "acc", "pristine", "manipulated"}}; None where JSON could not hold a NaN
    metrics: dict[str, dict[str, int | float | None]] = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # seed, split, hyper-parameters, data digest, machine
    embedded: bool = False
    hub: HubSource | None = None
    variant: str = STANDARD_VARIANT

    def __post_init__(self) -> None:
        if not set(self.files) <= set(FILE_KINDS):
            raise ValueError(f"files may be of these kinds only: {', '.join(FILE_KINDS)}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} must be one of: {', '.join(VARIANTS)}")
        split = self.training.get("split", {})
        if not isinstance(split, dict) or not all(
            isinstance(split.get(part, []), list) and all(isinstance(device, str) for device in split.get(part, []))
            for part in ("train", "test")
        ):
            raise ValueError("training.split must hold lists of device names under 'train' and 'test'")

    listed_in: ClassVar[str] = "registry"

    @property
    def kind(self) -> str:
        """What the entry is: a cfzoo ``detector``, or a ``user`` detector (registered, not made by cfzoo)."""
        return "user" if self.family == EXTERNAL_FAMILY else "detector"

    def describe(self, kind: str) -> str:
        return f"model {self.id} ({kind})"

    def how_to_get(self) -> str:
        if self.hub is not None:
            return f"run `cfzoo pull {self.id}`"
        return f"train and export it: cfzoo train DATA -f {self.family} -t {self.task}, then cfzoo export"

    def how_to_repair(self) -> str:
        """What to do about a file that does not match the entry's sha256: register a registered model again,
        pull or export one of cfzoo's."""
        if self.family == EXTERNAL_FAMILY:
            source = self.training.get("registered_from", "DETECTOR.onnx")
            return f"register it again: cfzoo register {source} --id {self.id} --task {self.task} (with the options you used)"
        return f"delete it, then run `cfzoo pull {self.id}` or export the model again"

    @property
    def column(self) -> str:
        """The model's name in reports that have a column per family: the family (``<family>-<variant>`` for a
        variant other than standard), or for an external model its id."""
        if self.family == EXTERNAL_FAMILY:
            return self.id
        return self.family if self.variant == STANDARD_VARIANT else f"{self.family}-{self.variant}"

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test", {}).get("acc")

    @property
    def probability_threshold(self) -> float:
        """The threshold on softmax(logits)[:, 1]; the SVM's decision ``d`` equals logit1 - logit0, so
        softmax's class-1 probability is sigmoid(d) and the decision threshold maps through the sigmoid."""
        if self.score == SVM_DECISION_SCORE:
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


class EntryRegistry:
    """Entries of one kind by id, in the kind's canonical order (:meth:`order`), read from one file per zoo folder
    (``file_name``). ``problems``: one line for each entry of the files read that failed validation (left out;
    see :func:`read_registry_file`). :class:`Registry` holds the detectors (cfzoo's and user-registered ones),
    :class:`cfzoo.zoo.restorers.RestorerRegistry` the restorers; :func:`cfzoo.zoo.resolve.resolve` finds the
    files of either."""

    entry_type: ClassVar[type]
    key: ClassVar[str]  # the entries' list in the file
    schema: ClassVar[int]
    what: ClassVar[str]  # the file, in messages
    file_name: ClassVar[str]

    def __init__(self, entries: Iterable = (), problems: Iterable[str] = ()):
        self.entries = {entry.id: entry for entry in sorted(entries, key=self.order)}
        self.problems = tuple(problems)

    @staticmethod
    def order(entry) -> tuple:
        raise NotImplementedError

    def unknown(self, model_id: str) -> str:
        """The error for an id this registry does not hold."""
        raise NotImplementedError

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, model_id: str) -> bool:
        return model_id in self.entries

    def get(self, model_id: str):
        if model_id not in self.entries:
            invalid = next((problem for problem in self.problems if f"entry {model_id!r}:" in problem), None)
            if invalid is not None:
                raise CfzooError(f"{invalid}; fix or delete that entry")
            raise CfzooError(self.unknown(model_id))
        return self.entries[model_id]

    def merged(self, overlay: EntryRegistry):
        """This registry with ``overlay``'s entries replacing or adding to it; an entry stays embedded only if it
        replaces an embedded one with the same files."""
        merged = dict(self.entries)
        for entry in overlay:
            base = merged.get(entry.id)
            merged[entry.id] = replace(entry, embedded=bool(base) and base.embedded and base.files == entry.files)
        return type(self)(merged.values(), self.problems + overlay.problems)

    def to_json(self) -> dict:
        return {"schema": self.schema, self.key: [entry.to_json() for entry in self]}

    @classmethod
    def read(cls, path: str | os.PathLike[str], lenient: bool = False):
        """The registry file at ``path``; an invalid entry is an error, or with ``lenient`` left out and named in
        :attr:`problems`."""
        entries, problems = read_registry_file(path, cls.entry_type, cls.key, cls.schema, cls.what, lenient)
        return cls(entries, problems)

    @classmethod
    def in_zoo(cls, zoo_dir: Path, lenient: bool = False):
        """The registry file of the zoo folder ``zoo_dir``, or an empty registry where it has none."""
        path = zoo_dir / cls.file_name
        return cls.read(path, lenient) if path.exists() else cls()

    @classmethod
    def load(cls):
        """Every entry cfzoo knows: the package's, overlaid by the user zoo's (whose invalid entries are left out
        and named in ``problems``)."""
        return cls.in_zoo(embedded_zoo_dir()).merged(cls.in_zoo(user_zoo_dir(), lenient=True))

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_atomically(
            path, lambda temporary: temporary.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        )


class Registry(EntryRegistry):
    """Detectors by id, in family-then-task order."""

    entry_type, key, schema, what, file_name = ModelEntry, "models", SCHEMA_VERSION, "registry", REGISTRY_NAME

    @staticmethod
    def order(entry: ModelEntry) -> tuple:
        family = FAMILY_IDS.index(entry.family) if entry.family in FAMILY_IDS else len(FAMILY_IDS)
        task = TASK_IDS.index(entry.task) if entry.task in TASK_IDS else len(TASK_IDS)
        return family, task, VARIANTS.index(entry.variant), entry.id

    def unknown(self, model_id: str) -> str:
        return (
            f"unknown model {model_id!r}; `cfzoo list` shows the models (ids are <family>-<task>, e.g. bayar2016-jpeg70, "
            "with -wild or -robust after it for a variant)"
        )

    def find(self, family: str, task: str, variant: str = STANDARD_VARIANT) -> ModelEntry:
        return self.get(model_id(family, task, variant))

    def select(
        self,
        families: Iterable[str] | None = None,
        tasks: Iterable[str] | None = None,
        variants: Iterable[str] | None = (STANDARD_VARIANT,),
    ) -> list[ModelEntry]:
        """The entries of ``families`` (default: every family, registered external models too), ``tasks`` and
        ``variants`` (default: the standard detectors; None: every variant)."""
        families = _checked(families, (*FAMILY_IDS, EXTERNAL_FAMILY), "family")
        tasks = _checked(tasks, TASK_IDS, "task")
        variants = _checked(variants, VARIANTS, "variant")
        return [
            entry for entry in self if entry.family in families and entry.task in tasks and entry.variant in variants
        ]


def embedded_zoo_dir() -> Path:
    """The zoo that ships inside the package."""
    return Path(str(resources.files("cfzoo.zoo") / "embedded"))


def user_zoo_dir() -> Path:
    """The user's zoo: ``$CFZOO_HOME/zoo``."""
    return cfzoo_home() / "zoo"


def embedded_registry() -> Registry:
    return Registry.read(embedded_zoo_dir() / REGISTRY_NAME)


def user_registry() -> Registry:
    """The user zoo's registry; entries that fail validation are left out and named in ``problems``."""
    return Registry.in_zoo(user_zoo_dir(), lenient=True)


def load_registry() -> Registry:
    """Every detector cfzoo knows: the package's registry, overlaid by the user zoo's."""
    return Registry.load()


def read_registry_file(
    path: str | os.PathLike[str],
    entry_type: type,
    key: str,
    schema: int,
    what: str,
    lenient: bool = False,
) -> tuple[list, list[str]]:
    """(entries, problems) of a registry file: each item under ``key`` validated as ``entry_type`` (a dataclass)
    by pydantic in strict JSON mode, so a field of the wrong type is refused, not coerced.

    A file that cannot be a registry at all (unreadable, not UTF-8, not JSON, nested too deep, another schema)
    is a CfzooError. An invalid entry is one too, unless ``lenient``: then it is left out and described in
    ``problems``, one line naming the file, the entry and the field."""
    path = Path(path)
    again = f"delete it or export the {'restorers' if 'restorer' in what else 'models'} again"
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise CfzooError(
            f"{path}: cannot read this {what} ({error.strerror or error}); check its permissions"
        ) from None
    except UnicodeDecodeError:
        raise CfzooError(f"{path} is not UTF-8 text, so not a cfzoo {what}; {again}") from None
    except json.JSONDecodeError as error:
        raise CfzooError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}); {again}") from None
    except RecursionError:
        raise CfzooError(f"{path} is nested too deeply to be a cfzoo {what}; {again}") from None
    if not isinstance(payload, dict) or payload.get("schema") != schema or not isinstance(payload.get(key, []), list):
        raise CfzooError(
            f"{path} is not a cfzoo {what} (schema {schema}) with a list of entries under {key!r}; {again}"
        )
    adapter = _adapter(entry_type)
    entries, problems = [], []
    for number, item in enumerate(payload.get(key, []), start=1):
        try:
            entries.append(adapter.validate_json(json.dumps(item), strict=True))
        except ValidationError as error:
            problem = _entry_problem(path, number, item, error)
            if not lenient:
                raise CfzooError(f"{problem}; fix the entry, or {again}") from None
            problems.append(problem)
    return entries, problems


@functools.cache
def _adapter(entry_type: type):
    return TypeAdapter(entry_type)


def _entry_problem(path: Path, number: int, item: object, error) -> str:
    """ "<file>: entry '<id>': <field>: <what is wrong>" for a validation error's first finding."""
    label = repr(item["id"]) if isinstance(item, dict) and isinstance(item.get("id"), str) else f"#{number}"
    findings = error.errors()
    first = findings[0]
    # pydantic's location ends in the names of union branches after the field ("acc.int"): keep the field only
    fields, value = [], item
    for part in first["loc"]:
        if first["type"] == "missing" or isinstance(value, dict) and part in value:
            fields.append(str(part))
            value = value.get(part) if isinstance(value, dict) else None
        else:
            break
    field = ".".join(fields) or "the entry"
    branches = [
        finding for finding in findings if tuple(finding["loc"][: len(fields)]) == tuple(first["loc"][: len(fields)])
    ]
    if len(fields) < len(first["loc"]) and len(branches) > 1:
        message, remaining = (
            f"should be {' or '.join(str(b['loc'][len(fields)]) for b in branches)}, not {type(value).__name__}",
            len(findings) - len(branches),
        )
    else:
        message, remaining = first["msg"].removeprefix("Value error, "), len(findings) - 1
    return f"{path}: entry {label}: {field}: {message}" + (f" (and {remaining} more)" if remaining else "")


def describe_file(path: str | os.PathLike[str]) -> ModelFile:
    path = Path(path)
    return ModelFile(name=path.name, sha256=file_sha256(path), size=path.stat().st_size)


def _checked(values: Iterable[str] | None, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    if values is None:
        return known
    values = tuple(values)
    unknown = [value for value in values if value not in known]
    if unknown:
        raise CfzooError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from: {', '.join(known)}")
    return values
