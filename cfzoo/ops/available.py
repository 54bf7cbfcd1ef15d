"""Which of the zoo's detectors are here (files present) for a task, and which can be attacked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cfzoo.errors import CfzooError, option
from cfzoo.ops.attacks.common import AttackTarget
from cfzoo.reports import TABLE1_ORDER
from cfzoo.zoo.registry import FAMILY_IDS, ModelEntry, load_registry
from cfzoo.zoo.resolve import is_available
from cfzoo.zoo.runtime import Detector, companion_of, load_detector, names_a_file, open_model


def attackable_tasks(target: str, tasks: Iterable[str] | None = None, gradient: bool = True) -> list[str]:
    """The tasks (Table I order) for which the target family's detector and (with ``gradient``) its gradient
    companion are here.

    With ``tasks`` given, every one of them must be attackable, else a CfzooError says which is missing."""
    if target not in FAMILY_IDS:
        raise CfzooError(f"unknown target family {target!r}; choose one of: {', '.join(FAMILY_IDS)}")
    registry = load_registry()
    wanted = list(dict.fromkeys(tasks)) if tasks else None
    if wanted is not None:
        registry.select([target], wanted)  # one-line error for unknown tasks
        for task in wanted:
            model_id = f"{target}-{task}"
            if not _attackable(registry, model_id, gradient):
                raise CfzooError(
                    f"{model_id} (detector and gradient companion) is not available here; `cfzoo list` shows what is, "
                    f"`cfzoo pull {model_id}` or `cfzoo train` + `cfzoo export` make it available"
                )
        return [task for task in TABLE1_ORDER if task in wanted]
    found = [task for task in TABLE1_ORDER if _attackable(registry, f"{target}-{task}", gradient)]
    if not found:
        raise CfzooError(
            f"no {target} model is available here; `cfzoo list` shows the models, `cfzoo pull ID` fetches one"
        )
    return found


def _attackable(registry, model_id: str, gradient: bool = True) -> bool:
    if model_id not in registry or not is_available(registry.get(model_id)):
        return False
    return not gradient or is_available(registry.get(model_id), "gradient")


def detector_entries(task: str) -> list[ModelEntry]:
    """The zoo's detectors of ``task`` whose files are here, in family order (the columns of Tables II-IV)."""
    return [entry for entry in load_registry().select(FAMILY_IDS, [task]) if is_available(entry)]


def target_models(
    target: str, tasks: Sequence[str] | None, providers: str = "auto", gradient: bool = True
) -> dict[str, Detector]:
    """The detector attacked for each task: a family's model of each attackable task, or one model (id or path)
    for its own task; with ``gradient``, a one-line error for a model without a gradient companion."""
    if target in FAMILY_IDS:
        return {
            task: load_detector(f"{target}-{task}", providers) for task in attackable_tasks(target, tasks, gradient)
        }
    if not names_a_file(target) and target not in load_registry():
        raise CfzooError(
            f"unknown target family {target!r}; choose one of: {', '.join(FAMILY_IDS)}, or give a model id (`cfzoo list`) or an .onnx file"
        )
    wanted = list(dict.fromkeys(tasks or []))
    if len(wanted) > 1:
        raise CfzooError(f"model {target} detects one manipulation; give at most one {option('tasks', '--task')}")
    detector = open_model(target, wanted[0] if wanted else None, providers)
    if gradient:
        companion_of(detector)  # a missing companion is reported before any data work
    return {detector.entry.task: detector}


def is_ensemble(targets: str | Sequence[str]) -> bool:
    """Whether ``targets`` (one reference, or several) name more than one detector to attack at once."""
    return not isinstance(targets, str) and len(set(targets)) > 1


def target_columns(targets: dict[str, AttackTarget]) -> str:
    """The report columns of what :func:`attack_targets` returned: its members' columns joined by +."""
    return "+".join(member.entry.column for member in next(iter(targets.values())).detectors)


def attack_targets(
    targets: str | Sequence[str], tasks: Sequence[str] | None, providers: str = "auto", gradient: bool = True
) -> dict[str, AttackTarget]:
    """What is attacked for each task: one target (see :func:`target_models`) or, for several, their ensemble on
    the tasks every one of them has (with ``gradient``, each with its companion)."""
    members = [targets] if isinstance(targets, str) else list(dict.fromkeys(targets))
    if not members:
        raise CfzooError("name a target: a family, a model id or an .onnx file")
    by_member = [target_models(member, tasks, providers, gradient) for member in members]
    shared = [task for task in by_member[0] if all(task in found for found in by_member[1:])]
    if not shared:
        have = "; ".join(f"{member}: {', '.join(found)}" for member, found in zip(members, by_member))
        raise CfzooError(
            f"{' and '.join(members)} share no task here ({have}); an ensemble attacks detectors of one task"
        )
    return {
        task: AttackTarget(
            tuple(found[task] for found in by_member),
            tuple(companion_of(found[task]) if gradient else None for found in by_member),
        )
        for task in shared
    }
