"""Health flags of a robustness evaluation: signs that its numbers are not to be trusted (docs/robustness.md).

- ``not-monotone``: an attack's own run at a larger eps left the detector right on more patches than its run at a
  smaller one (more still detected when hiding, more still called pristine when framing), by more than a few
  (:data:`MONOTONE_SLACK`: random starts move a patch or two either way). Not raised for attacks that take a fixed
  step rather than search the ball (FGSM's one step of exactly eps may overshoot; the paper's attack is kept as it
  is).
  An attacker allowed eps may use any perturbation of a smaller eps, so this is the attack failing (Square's
  random search at a large eps is the known case); the report's rows are envelopes (each patch's best result at
  this eps or any smaller one), so they stay monotone, and the flag says the raw run was not.
- ``gradient-free-beats-gradient``: at some eps a gradient-free attack (Square) leaves the detector right on fewer
  patches than every gradient attack, beyond their 95% intervals: the gradients mislead (gradient masking, or a
  broken companion), so the gradient attacks' figures overstate robustness.
- ``zero-gradients``: on more than a few patches, every gradient attack of the battery at some eps met a zero
  gradient (or a non-finite score) where it started: no gradient attack really attacked them. (One attack's zero
  gradient alone is not a weakness of the evaluation when another's random start found a gradient there: FGSM
  starts at the patch itself, where the soft SPAM of a flat patch has an exactly zero gradient by symmetry.)
- ``not-deterministic``: the target scored the same patches twice and gave different numbers; every figure of the
  report is then one draw of a random variable.
- ``companion-disagrees``: the gradient companion's scores do not follow the detector's (correlation below 0.9 on
  the patches attacked), so its gradient is not the detector's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cfzoo.ops.attacks.battery import needs_gradient
from cfzoo.ops.attacks.common import AttackResult, AttackTarget
from cfzoo.ops.attacks.registry import attack_names, get_attack
from cfzoo.results import HealthFlag, RobustnessRow
from cfzoo.zoo.runtime import to_model_input

#: Zero gradients on more than this share of the patches (and more than two of them) raise ``zero-gradients``.
ZERO_GRADIENT_SHARE = 0.02
#: Below this correlation between the companion's and the detector's scores, ``companion-disagrees``.
COMPANION_CORRELATION = 0.9
#: Patches the companion is compared with the detector on.
COMPANION_PATCHES = 16
#: ``not-monotone`` is raised when a run at a larger eps holds more than this share of the patches (and more than
#: two) beyond the run at the smaller eps.
MONOTONE_SLACK = 0.05


def check_target(
    task: str, target: AttackTarget, patches: np.ndarray, margins: np.ndarray, attacks: Sequence[str]
) -> list[HealthFlag]:
    """``not-deterministic`` (the target scores ``patches`` again) and, when an attack uses gradients,
    ``companion-disagrees`` for each member with a companion."""
    flags = []
    again = target.margin(patches)
    if not np.array_equal(again, margins, equal_nan=True):
        changed = int(np.sum(again != margins))
        flags.append(
            _flag(
                "not-deterministic",
                task,
                f"scoring the same {len(patches)} patches twice changed {changed} scores; every figure is one draw",
            )
        )
    if not any(needs_gradient(attack) for attack in attacks):
        return flags
    images = to_model_input(patches[:COMPANION_PATCHES])
    for detector, companion in zip(target.detectors, target.companions):
        if companion is None or len(images) < 3:
            continue
        hard = detector.logits(images).astype(np.float64)
        soft, _ = companion.logits_and_gradient(images, np.ones(len(images), dtype=np.int64))
        hard_margin, soft_margin = hard[:, 1] - hard[:, 0], soft[:, 1].astype(np.float64) - soft[:, 0]
        if np.std(hard_margin) == 0 or np.std(soft_margin) == 0:
            continue
        correlation = float(np.corrcoef(hard_margin, soft_margin)[0, 1])
        if not correlation >= COMPANION_CORRELATION:
            flags.append(
                _flag(
                    "companion-disagrees",
                    task,
                    f"{detector.entry.id}'s gradient companion scores correlate {correlation:.2f} with the detector's "
                    f"(below {COMPANION_CORRELATION}); its gradient is not the detector's: re-export or re-register it",
                )
            )
    return flags


def run_flags(task: str, eps: int, attack: str, margins: np.ndarray, smaller_eps_held: int | None) -> list[HealthFlag]:
    """``not-monotone`` for one run, from the attacker's ``margins`` (above 0: the detector holds the patch), against
    the same attack's run at the next smaller eps (``smaller_eps_held`` patches held)."""
    held = int(np.sum(margins > 0))
    slack = max(2, MONOTONE_SLACK * len(margins))
    if smaller_eps_held is None or not get_attack(attack).searches or held - smaller_eps_held <= slack:
        return []
    return [
        _flag(
            "not-monotone",
            task,
            f"its run left the detector right on {held} of {len(margins)} patches, {held - smaller_eps_held} more "
            "than at a smaller eps: the attack failed; the row reports each patch's best result at this eps or a "
            "smaller one",
            eps,
            attack,
        )
    ]


def stuck_patches(margins: np.ndarray, result: AttackResult) -> np.ndarray:
    """Which patches a run did not really attack: a zero gradient where it started, or a non-finite score."""
    return result.zero_gradient | ~np.isfinite(margins)


def zero_gradient_flags(task: str, eps: int, stuck: dict[str, np.ndarray]) -> list[HealthFlag]:
    """``zero-gradients`` at one eps, from :func:`stuck_patches` of each attack run there: raised when the patches
    stuck in every gradient attack are more than a few."""
    gradient = {attack: patches for attack, patches in stuck.items() if needs_gradient(attack)}
    if not gradient:
        return []
    everywhere = np.logical_and.reduce(list(gradient.values()))
    count, total = int(everywhere.sum()), len(everywhere)
    if count <= max(2, ZERO_GRADIENT_SHARE * total):
        return []
    names = ", ".join(gradient)
    return [
        _flag(
            "zero-gradients",
            task,
            f"{count} of {total} patches had a zero gradient or a non-finite score in every gradient attack ({names}); "
            "no gradient attack really attacked them",
            eps,
            next(iter(gradient)) if len(gradient) == 1 else None,
        )
    ]


def battery_flags(task: str, rows: Sequence[RobustnessRow], goal: str = "hide") -> list[HealthFlag]:
    """``gradient-free-beats-gradient`` at each eps of one task's attack rows (of a report with ``goal``)."""
    flags, battery = [], set(attack_names())
    for eps in dict.fromkeys(row.eps for row in rows):
        at_eps = [row for row in rows if row.eps == eps and row.attack in battery]
        gradient = [row for row in at_eps if needs_gradient(row.attack)]
        free = [row for row in at_eps if not needs_gradient(row.attack)]
        if not gradient or not free:
            continue
        best_free = min(free, key=lambda row: held(row, goal)[0])
        best_gradient = min(gradient, key=lambda row: held(row, goal)[0])
        free_held, (_, free_high) = held(best_free, goal)
        gradient_held, (gradient_low, _) = held(best_gradient, goal)
        if free_high < gradient_low:
            flags.append(
                _flag(
                    "gradient-free-beats-gradient",
                    task,
                    f"{best_free.attack} leaves the detector right on {free_held:.1f}% of the patches, every gradient "
                    f"attack on at least {gradient_held:.1f}% ({best_gradient.attack}), beyond their 95% intervals: the "
                    "gradients mislead (masking or a broken companion); the gradient attacks overstate robustness",
                    eps,
                    best_free.attack,
                )
            )
    return flags


def held(row: RobustnessRow, goal: str) -> tuple[float, tuple[float, float]]:
    """(percent of the row's patches the detector still gets right after the attack, its 95% interval): the
    flagged share when hiding, the rest when framing."""
    low, high = (math.nan if bound is None else bound for bound in row.flagged_after_interval)
    if goal == "hide":
        return row.flagged_after, (low, high)
    return 100.0 - row.flagged_after, (100.0 - high, 100.0 - low)


def _flag(flag: str, task: str, detail: str, eps: int | None = None, attack: str | None = None) -> HealthFlag:
    return HealthFlag(flag=flag, task=task, eps=eps, attack=attack, detail=detail)
