"""The attack battery: every registered attack behind one call, :func:`attack_patches`.

Each attack is a module of this package that registers itself (:mod:`cfzoo.ops.attacks.registry`) with what it
needs and takes; ``cfzoo attack --help`` lists them, and docs/attacks.md says how each one meets the integers.

Settings are validated when :class:`~cfzoo.ops.attacks.common.AttackSettings` is built; what depends on the
target (an ensemble, a companion, a kind of detector, the task) is checked here, before any work.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.data import PatchSet, partner_rows
from cfzoo.errors import CfzooError, option
from cfzoo.ops.attacks.common import AttackResult, AttackSettings, AttackTarget, checked_patches
from cfzoo.ops.attacks.registry import AttackCall, attack_names, get_attack


def needs_gradient(method: str) -> bool:
    return get_attack(method).needs_gradient


def check_settings(settings: AttackSettings, ensemble: bool = False) -> str:
    """The method, once it is known to attack several detectors at once where ``ensemble`` says so; else a one-line
    CfzooError. (Everything else about ``settings`` was checked when they were built.)"""
    if ensemble and not get_attack(settings.method).ensemble:
        names = ", ".join(attack_names(ensemble=True))
        raise CfzooError(
            f"{option('method')} {settings.method} attacks one detector; for several at once use {option('method')} {names}"
        )
    return settings.method


def check_method_fits(method: str, target: AttackTarget, task: str) -> None:
    """A one-line CfzooError, before any work, where ``method`` cannot attack ``target`` on ``task`` (a spam-feature
    attack on a detector that is not SPAM+SVM, spam-prist on a task without pristine partners)."""
    fits = get_attack(method).fits
    if fits is not None:
        fits(target, task)


def partners_for(method: str, patch_set: PatchSet, rows: np.ndarray) -> np.ndarray | None:
    """The rows of the partners across the boundary of ``rows`` (:func:`cfzoo.data.partner_rows`) where ``method``
    needs them (spam-prist), else None. Rows, not patches: a caller that attacks in batches reads each batch's
    partners with it."""
    return partner_rows(patch_set, rows) if get_attack(method).needs_partners else None


def attack_parameters(settings: AttackSettings) -> dict:
    """The parameters ``settings`` resolve to, defaults filled in, for reports: iterations and step (gray levels;
    None where the method adapts it), and the method's own (restarts, the query budget), and the platform step
    it aims through."""
    survive = {
        name: getattr(settings, name)
        for name in ("survive_jpeg", "survive_resize")
        if getattr(settings, name) is not None
    }
    return {**get_attack(settings.method).parameters(settings), **survive}


def attack_patches(
    settings: AttackSettings,
    target: AttackTarget,
    patches,
    on_progress: ProgressCallback | None = None,
    first_row: int = 0,
    partners=None,
) -> AttackResult:
    """Attack [N,H,W,3] uint8 patches as ``settings`` say (towards its goal: manipulated patches made to look
    pristine, or pristine ones made to look manipulated), once the method is known to fit ``target``: one detector
    or an ensemble (attacks that declare ``ensemble``), with companions where the method needs them. ``first_row``:
    where these patches start in a larger set attacked in pieces (it seeds the random draws). ``partners``: each
    patch's partner across the boundary (attacks that declare ``needs_partners``)."""
    check_settings(settings, target.is_ensemble)
    if get_attack(settings.method).needs_gradient and not target.has_gradient:
        free = ", ".join(attack_names(needs_gradient=False, needs_partners=False, ensemble=True))
        raise CfzooError(
            f"{settings.method} needs the target's gradient companion; {option('method')} {free} needs none"
        )
    return run_attack(settings, target, checked_patches(patches), on_progress, first_row, partners)


def run_attack(
    settings: AttackSettings,
    target: AttackTarget,
    patches: np.ndarray,
    on_progress: ProgressCallback | None = None,
    first_row: int = 0,
    partners=None,
    start: np.ndarray | None = None,
) -> AttackResult:
    """:func:`attack_patches` for a target already checked against the method (an experiment's plan checks every
    target once, before any data work) and uint8 patches. ``start``: where each patch's search begins, for attacks
    that declare ``warm_starts`` (ignored by the others)."""
    target = replace(
        target,
        survive_jpeg=settings.survive_jpeg,
        survive_resize=settings.survive_resize,
        batch_size=settings.batch_size,
        goal=settings.goal,
    )
    return get_attack(settings.method).run(
        settings, target, patches, AttackCall(on_progress, first_row, partners, start)
    )
