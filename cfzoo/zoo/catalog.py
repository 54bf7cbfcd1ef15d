"""One door for naming models: every way to name a detector resolves here, and the zoo's inventory is taken here.

A model reference is a registry id (``bayar2016-jpeg70``), the id of a model registered with ``cfzoo register``
(``mynet``), or an ``.onnx`` path (a file cfzoo exported names its registry model in its metadata and is that
model; any other file follows the model contract and is an external model named after the file).

- :func:`open_detector` / :func:`open_companion`: a reference -> its cached onnxruntime session(s);
  :func:`find_entry`: an id -> its registry entry, no session
- :func:`detectors_here`, :func:`attackable_tasks`, :func:`family_detectors`, :func:`select_detectors`: which of
  the zoo's detectors are on this machine, for a task, a family or ``cfzoo detect``'s families x tasks
- :func:`inventory`: ``cfzoo list``, every family x task slot and every restorer with where its files are
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cfzoo.errors import CfzooError, option
from cfzoo.manipulations import TASK_IDS
from cfzoo.reports import TABLE1_ORDER
from cfzoo.results import HubReference, ModelList, ModelRow
from cfzoo.zoo.registry import (
    EXTERNAL_FAMILY,
    FAMILY_IDS,
    STANDARD_VARIANT,
    VARIANTS,
    ModelEntry,
    check_variant,
    load_registry,
    model_id,
)
from cfzoo.zoo.resolve import ResolvedFile, available_sources, is_available, resolve
from cfzoo.zoo.restorers import Zoo
from cfzoo.zoo.runtime import (
    EXTERNAL_THRESHOLD,
    Detector,
    GradientModel,
    OnnxSession,
    cached_session,
    execution_providers,
    to_model_input,
)

ModelReference = str | os.PathLike[str]


def is_path(reference: ModelReference) -> bool:
    """Whether a model reference is a file path (an ``.onnx`` name or anything with a folder), not a registry id."""
    text = os.fspath(reference)
    return text.endswith(".onnx") or os.sep in text or "/" in text


def open_detector(
    reference: ModelReference, *, task: str | None = None, providers: str = "auto", path: ModelReference | None = None
) -> Detector:
    """The detector a reference names, its session created once per (model, providers, path).

    ``task``, when given, must be the model's (and names the task of an external ``.onnx`` file); ``path`` loads a
    registry model's detector from that file instead of the zoo's (its metadata must not name another model)."""
    text = os.fspath(reference)
    if is_path(text):
        return _file_models(Path(text), task, execution_providers(providers))[0]
    detector = _registry_session(Detector, "detector", text, execution_providers(providers), path)
    if task is not None and task != detector.entry.task:
        raise CfzooError(
            f"model {text} detects {detector.entry.task}, not {task}; leave out the task or give {detector.entry.task}"
        )
    return detector


def open_companion(
    model: Detector | ModelReference, *, providers: str = "auto", path: ModelReference | None = None
) -> GradientModel:
    """The gradient companion of a detector (or of the model a reference names), or a one-line error that says
    how to get one. ``path`` loads a registry model's companion from that file."""
    detector = model if isinstance(model, Detector) else open_detector(model, providers=providers)
    chosen = detector.providers if isinstance(model, Detector) else execution_providers(providers)
    if detector.resolved.source == "path" and path is None:
        companion = _file_models(detector.path, detector.entry.task, chosen)[1]
        if companion is None:
            raise CfzooError(
                f"{detector.path} has no gradient companion beside it ({detector.path.stem}.grad.onnx); gradient attacks need one: "
                f"cfzoo register {detector.path} --id ID --task {detector.entry.task} makes it"
            )
        return companion
    if "gradient" not in detector.entry.files and path is None:
        raise CfzooError(
            f"model {detector.entry.id} was registered without a gradient companion; register it again without --no-companion"
        )
    companion = _registry_session(GradientModel, "gradient", detector.entry.id, chosen, path)
    if path is not None:
        _check_pair(detector, companion)
    return companion


def find_entry(model_id: str) -> ModelEntry | None:
    """The registry entry (the zoo's or a registered one) of ``model_id``; None for a model known only as a file."""
    return Zoo.load().detectors.entries.get(model_id)


def _registry_session(kind_class, kind: str, model_id: str, providers: tuple[str, ...], path: ModelReference | None):
    path = None if path is None else os.fspath(path)

    def create():
        entry = load_registry().get(model_id)
        session = kind_class(entry, resolve(entry, kind, path), providers)
        if path is not None:
            _check_identity(session, kind)
        return session

    return cached_session((kind, model_id, providers, path), create)


def _file_models(path: Path, task: str | None, providers: tuple[str, ...]) -> tuple[Detector, GradientModel | None]:
    """The detector in an ``.onnx`` file and its companion (``<name>.grad.onnx`` beside it) if there is one."""
    if path.suffix != ".onnx" or path.name.endswith(".grad.onnx"):
        raise CfzooError(
            f"{option('model')} {path}: give a detector's .onnx file (its companion, if any, is found beside it as <name>.grad.onnx)"
        )
    return cached_session(("file", str(path), task, providers), lambda: _load_file_models(path, task, providers))


def _load_file_models(
    path: Path, task: str | None, providers: tuple[str, ...]
) -> tuple[Detector, GradientModel | None]:
    entry = _external_entry(path, task or TASK_IDS[0])  # replaced below if the file is one of cfzoo's models
    detector = Detector(entry, resolve(entry, "detector", path), providers)
    claimed = detector.session.get_modelmeta().custom_metadata_map.get("model_id")
    registry = load_registry()
    if claimed is not None and claimed in registry:
        detector.entry = registry.get(claimed)
        _check_identity(detector, "detector")
        if task is not None and task != detector.entry.task:
            raise CfzooError(
                f"{path} is {claimed}, a detector for {detector.entry.task}, not {task}; leave out {option('task')} or give {detector.entry.task}"
            )
    else:
        _check_contract(detector, path)
        if task is None:
            raise CfzooError(
                f"{path} is not one of cfzoo's models; say which manipulation it detects with {option('task')} ({', '.join(TASK_IDS)})"
            )
    companion_path = path.with_name(path.name.removesuffix(".onnx") + ".grad.onnx")
    companion = None
    if companion_path.is_file():
        companion = GradientModel(detector.entry, ResolvedFile(companion_path, "path"), providers)
        _check_identity(companion, "gradient")
        _check_pair(detector, companion)
    return detector, companion


def _check_pair(detector: Detector, companion: GradientModel) -> None:
    """A companion found by path that does not say whose it is (no cfzoo ``model_id`` in its metadata) must give
    the detector's logits on two fixed patches, one dark and one bright, or it is refused: another model's
    companion would attack with another model's gradient."""
    if "model_id" in companion.session.get_modelmeta().custom_metadata_map:
        return  # _check_identity has checked what it says
    noise = np.random.default_rng(0).integers(-20, 21, size=(2, 128, 128, 3))
    patches = np.clip(np.array([60, 190]).reshape(2, 1, 1, 1) + noise, 0, 255).astype(np.uint8)
    images = to_model_input(patches)
    expected = detector.logits(images).astype(np.float64)
    found, _ = companion.logits_and_gradient(images, np.ones(len(images), dtype=np.int64))
    if not np.allclose(found, expected, rtol=1e-3, atol=1e-3 * (1 + np.abs(expected).max())):
        raise CfzooError(
            f"{companion.path} does not say whose companion it is, and its logits are not {detector.path.name}'s "
            f"({np.round(found.ravel(), 3).tolist()} against {np.round(expected.ravel(), 3).tolist()} on two test "
            "patches); give the detector's own companion, or register the detector to make one"
        )


def _check_identity(session: OnnxSession, kind: str) -> None:
    """A file given by path must not say, in its cfzoo ``metadata_props``, that it is another model or the other
    kind of file: a companion loaded under another model's id would attack with the wrong gradient."""
    metadata = session.session.get_modelmeta().custom_metadata_map
    claimed_id, claimed_kind = metadata.get("model_id"), metadata.get("kind")
    if claimed_id is not None and claimed_id != session.entry.id:
        raise CfzooError(
            f"{session.path} is {claimed_id}'s {claimed_kind or 'file'}, not {session.entry.id}'s; give the file of {session.entry.id}"
        )
    if claimed_kind is not None and claimed_kind != kind:
        raise CfzooError(
            f"{session.path} is a {claimed_kind} graph, not a {kind} graph; give {session.entry.id}'s {kind} file"
        )


def _external_entry(path: Path, task: str) -> ModelEntry:
    return ModelEntry(
        id=path.name.removesuffix(".onnx"),
        family=EXTERNAL_FAMILY,
        task=task,
        files={},
        threshold=EXTERNAL_THRESHOLD,
        score="probability",
    )


def _check_contract(detector: Detector, path: Path) -> None:
    """The model contract's input and output, or a one-line refusal that says how to adapt the graph."""
    inputs, outputs = detector.session.get_inputs(), detector.session.get_outputs()
    input_ok = len(inputs) == 1 and inputs[0].name == "image" and list(inputs[0].shape[1:]) == [3, 128, 128]
    output_ok = any(output.name == "logits" for output in outputs)
    if not (input_ok and output_ok):
        found = (
            ", ".join(f"{value.name} {list(value.shape)}" for value in inputs)
            + " -> "
            + ", ".join(f"{value.name} {list(value.shape)}" for value in outputs)
        )
        raise CfzooError(
            f"{path} does not follow the model contract (image [N,3,128,128] -> logits [N,2]; it has {found}); "
            "adapt it with: cfzoo register PATH --id ID --task T --layout ... --input-range ... --outputs ..."
        )


# --- what is here --------------------------------------------------------------------------------


def detectors_here(task: str, variant: str = STANDARD_VARIANT) -> list[ModelEntry]:
    """The zoo's detectors of ``task`` (and ``variant``) whose files are here, in family order (the columns of
    Tables II-IV)."""
    return [entry for entry in load_registry().select(FAMILY_IDS, [task], [variant]) if is_available(entry)]


def attackable_tasks(
    family: str, tasks: Iterable[str] | None = None, gradient: bool = True, variant: str = STANDARD_VARIANT
) -> list[str]:
    """The tasks (Table I order) for which the family's detector of ``variant`` and (with ``gradient``) its gradient
    companion are here. With ``tasks`` given, every one of them must be attackable, else a CfzooError says which is
    missing."""
    if family not in FAMILY_IDS:
        raise CfzooError(f"unknown target family {family!r}; choose one of: {', '.join(FAMILY_IDS)}")
    check_variant(variant)
    registry = load_registry()
    wanted = list(dict.fromkeys(tasks)) if tasks else None
    if wanted is not None:
        registry.select([family], wanted)  # one-line error for unknown tasks
        for task in wanted:
            wanted_id = model_id(family, task, variant)
            if not _attackable(registry, wanted_id, gradient):
                raise CfzooError(
                    f"{wanted_id} (detector and gradient companion) is not available here; `cfzoo list --variant all` "
                    f"shows what is, `cfzoo pull {wanted_id}` or `cfzoo train` + `cfzoo export` make it available"
                )
        return [task for task in TABLE1_ORDER if task in wanted]
    found = [task for task in TABLE1_ORDER if _attackable(registry, model_id(family, task, variant), gradient)]
    if not found:
        which = family if variant == STANDARD_VARIANT else f"{variant} {family}"
        raise CfzooError(
            f"no {which} model is available here; `cfzoo list --variant all` shows the models, `cfzoo pull ID` fetches one"
        )
    return found


def _attackable(registry, model_id: str, gradient: bool = True) -> bool:
    if model_id not in registry or not is_available(registry.get(model_id)):
        return False
    return not gradient or is_available(registry.get(model_id), "gradient")


def family_detectors(
    reference: str,
    tasks: Sequence[str] | None,
    providers: str = "auto",
    gradient: bool = True,
    variant: str = STANDARD_VARIANT,
) -> dict[str, Detector]:
    """{task: detector} for a reference that may also be a family: the family's model of ``variant`` for each
    attackable task, or one model (id or path) for its own task; with ``gradient``, a one-line error for a model
    without a companion."""
    if reference in FAMILY_IDS:
        return {
            task: open_detector(model_id(reference, task, variant), providers=providers)
            for task in attackable_tasks(reference, tasks, gradient, variant)
        }
    if not is_path(reference) and reference not in load_registry():
        raise CfzooError(
            f"unknown target family {reference!r}; choose one of: {', '.join(FAMILY_IDS)}, or give a model id (`cfzoo list`) or an .onnx file"
        )
    wanted = list(dict.fromkeys(tasks or []))
    if len(wanted) > 1:
        raise CfzooError(f"model {reference} detects one manipulation; give at most one {option('tasks', '--task')}")
    detector = open_detector(reference, task=wanted[0] if wanted else None, providers=providers)
    if gradient:
        open_companion(detector)  # a missing companion is reported before any data work
    return {detector.entry.task: detector}


@dataclass(frozen=True)
class DetectorSelection:
    """Loaded detectors in family-then-task order, and one line per family with models not available."""

    detectors: list[Detector]
    skipped: list[str]
    #: families with no model here at all, left out of a default selection, each with how to get its models
    left_out: list[str] = field(default_factory=list)

    @property
    def families(self) -> list[str]:
        """The report's columns: families, and external models by id."""
        return list(dict.fromkeys(detector.entry.column for detector in self.detectors))

    @property
    def tasks(self) -> list[str]:
        return [task for task in TASK_IDS if any(detector.entry.task == task for detector in self.detectors)]


def select_detectors(
    families: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    providers: str = "auto",
    models: Sequence[ModelReference] = (),
    variant: str = STANDARD_VARIANT,
) -> DetectorSelection:
    """The detectors of ``families`` x ``tasks`` (default: all) of ``variant`` whose model files are on this machine,
    then ``models`` (any references, see :func:`open_detector`; with models and no families, only them).

    A family with some of those models missing, or any asked for by name, is named in ``skipped`` with the
    tasks it lacks and the command that gets them; by default (no ``families``) a family with no model here
    at all is left out silently, since "all families" means those that are here. A CfzooError if nothing at
    all is available.
    """
    entries = {
        entry.id: entry for entry in load_registry().select(families or None, tasks or None, [check_variant(variant)])
    }  # checks the ids
    only_task = tasks[0] if tasks and len(tasks) == 1 else None
    chosen = [open_detector(model, task=only_task, providers=providers) for model in models]
    wanted_families = (
        [] if models and not families else [family for family in FAMILY_IDS if not families or family in families]
    )
    wanted_tasks = [task for task in TASK_IDS if not tasks or task in tasks]
    detectors, skipped, left_out = [], [], []
    for family in wanted_families:
        missing = []
        for task in wanted_tasks:
            entry = entries.get(model_id(family, task, variant))
            if entry is None or not available_sources(entry):
                missing.append(task)
            else:
                detectors.append(open_detector(entry.id, providers=providers))
        if not missing:
            continue
        which = "any selected task" if len(missing) == len(wanted_tasks) else ", ".join(missing)
        label = family if variant == STANDARD_VARIANT else f"{family} ({variant})"
        line = f"{label}: no model here for {which}; skipped ({how_to_get(family, missing, entries, variant)})"
        (skipped if families or len(missing) < len(wanted_tasks) else left_out).append(line)
    detectors += [detector for detector in chosen if detector not in detectors]
    if not detectors:
        raise CfzooError(
            "no detector is available for the selected families and tasks; `cfzoo list` shows how to get them "
            "(cfzoo pull ID, or cfzoo train then cfzoo export)"
        )
    return DetectorSelection(detectors, skipped, left_out)


def how_to_get(
    family: str, tasks: Sequence[str], entries: dict[str, ModelEntry], variant: str = STANDARD_VARIANT
) -> str:
    """The command that makes ``family``'s models of ``tasks`` (and ``variant``) available: a pull where the registry
    names a Hub source for each, else training and export."""
    options = " ".join(f"-t {task}" for task in tasks)
    with_variant = "" if variant == STANDARD_VARIANT else f" --variant {variant}"
    ids = [model_id(family, task, variant) for task in tasks]
    if all(entries.get(wanted) is not None and entries[wanted].hub is not None for wanted in ids):
        return f"get them with: cfzoo pull {' '.join(ids) if with_variant else f'-f {family} {options}'}"
    return f"train and export them: cfzoo train DATA -f {family} {options}{with_variant}, then cfzoo export"


def inventory(
    families: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    available_only: bool = False,
    variants: Sequence[str] | None = None,
) -> tuple[ModelList, list[str]]:
    """``cfzoo list``: every family x task slot of the standard detectors (registered or not) followed by its
    registered variants (``variants``, default: all), then registered external models, then the GAN restorers
    (none when ``families`` are given), then the conclusion models (none when ``families`` or ``tasks`` are
    given), each with the sources its files are here from; and one line per invalid entry of the user zoo,
    which is left out."""
    zoo = Zoo.load()
    variants = [check_variant(variant) for variant in variants] if variants else list(VARIANTS)
    entries = {entry.id: entry for entry in zoo.detectors.select(families or None, tasks or None, variants)}
    slots = [
        (name, task, variant)
        for name in (families or FAMILY_IDS)
        for task in TASK_IDS
        if not tasks or task in tasks
        for variant in variants
    ]
    slot_ids = [model_id(*slot) for slot in slots]
    rows = []
    for slot_id in [*slot_ids, *(entry_id for entry_id in entries if entry_id not in slot_ids)]:
        entry = entries.get(slot_id)
        if entry is None:
            family, task, variant = slots[slot_ids.index(slot_id)]
            if not available_only and variant == STANDARD_VARIANT:  # an unmade variant is no slot
                rows.append(
                    ModelRow(kind="detector", id=slot_id, family=family, task=task, variant=variant, registered=False)
                )
            continue
        sources = available_sources(entry)
        if "gradient" in entry.files:  # a model registered --no-companion has a detector only
            sources = [source for source in sources if source in available_sources(entry, "gradient")]
        if available_only and not sources:
            continue
        rows.append(
            ModelRow(
                kind=entry.kind,
                id=entry.id,
                family=entry.family,
                task=entry.task,
                variant=None if entry.family == EXTERNAL_FAMILY else entry.variant,
                registered=True,
                test_acc=entry.test_accuracy,
                available=bool(sources),
                sources=sources,
                hub=None if entry.hub is None else HubReference(repo_id=entry.hub.repo_id, revision=entry.hub.revision),
                size_bytes=sum(file.size for file in entry.files.values()),
            )
        )
    for entry in [] if families else zoo.restorers:
        sources = available_sources(entry, entry.kind)
        if (tasks and entry.task not in tasks) or (available_only and not sources):
            continue
        rows.append(
            ModelRow(
                kind=entry.kind,
                id=entry.id,
                task=entry.task,
                registered=True,
                discriminator=entry.discriminator,
                available=bool(sources),
                sources=sources,
                size_bytes=entry.file.size,
            )
        )
    for entry in [] if families or tasks else zoo.conclusions:
        sources = available_sources(entry, entry.kind)
        if available_only and not sources:
            continue
        accuracy = entry.metrics.get("test", {}).get("accuracy")
        rows.append(
            ModelRow(
                kind=entry.kind,
                id=entry.id,
                task="all",
                registered=True,
                test_acc=None if accuracy is None else 100.0 * accuracy,
                available=bool(sources),
                sources=sources,
                size_bytes=entry.file.size,
            )
        )
    return ModelList(rows), list(zoo.problems)
