"""What an attack aims at: the detectors (and gradient companions) named by one target or an ensemble, per task.

Models are named and found through :mod:`cfzoo.zoo.catalog`; this module only groups them into
:class:`~cfzoo.ops.attacks.common.AttackTarget` objects."""

from __future__ import annotations

from collections.abc import Sequence

from cfzoo.errors import CfzooError
from cfzoo.ops.attacks.common import AttackTarget
from cfzoo.zoo.catalog import family_detectors, open_companion
from cfzoo.zoo.registry import STANDARD_VARIANT


def is_ensemble(targets: str | Sequence[str]) -> bool:
    """Whether ``targets`` (one reference, or several) name more than one detector to attack at once."""
    return not isinstance(targets, str) and len(set(targets)) > 1


def target_columns(targets: dict[str, AttackTarget]) -> str:
    """The report columns of what :func:`attack_targets` returned: its members' columns joined by +."""
    return "+".join(member.entry.column for member in next(iter(targets.values())).detectors)


def attack_targets(
    targets: str | Sequence[str],
    tasks: Sequence[str] | None,
    providers: str = "auto",
    gradient: bool = True,
    variant: str = STANDARD_VARIANT,
) -> dict[str, AttackTarget]:
    """What is attacked for each task: one target (see :func:`~cfzoo.zoo.catalog.family_detectors`; a family means
    its detectors of ``variant``) or, for several, their ensemble on the tasks every one of them has (with
    ``gradient``, each with its companion)."""
    members = [targets] if isinstance(targets, str) else list(dict.fromkeys(targets))
    if not members:
        raise CfzooError("name a target: a family, a model id or an .onnx file")
    by_member = [family_detectors(member, tasks, providers, gradient, variant) for member in members]
    shared = [task for task in by_member[0] if all(task in found for found in by_member[1:])]
    if not shared:
        have = "; ".join(f"{member}: {', '.join(found)}" for member, found in zip(members, by_member))
        raise CfzooError(
            f"{' and '.join(members)} share no task here ({have}); an ensemble attacks detectors of one task"
        )
    return {
        task: AttackTarget(
            tuple(found[task] for found in by_member),
            tuple(open_companion(found[task]) if gradient else None for found in by_member),
        )
        for task in shared
    }
