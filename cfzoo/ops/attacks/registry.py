"""The attacks cfzoo knows, one :class:`Attack` each, registered by the module that implements it.

An attack module ends with ``register_attack(Attack(...))``: its name, what it needs (a gradient companion, a
partner per patch across the boundary, a particular kind of detector), whether it attacks ensembles and survives platform
steps (``--survive``), the options it takes (an :class:`~cfzoo.ops.attacks.common.AttackSettings` field each:
``iterations``, ``restarts``, ``queries``) with their defaults, the parameters it reports, and the function that
runs it. Every module of this package is imported on the first lookup, so a new attack is one new module here;
the battery, the validation of settings, the CLI's help, the reports and the Python API read what it declares.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import CfzooError

#: The settings an attack may take besides eps, seed and batch size (fields of AttackSettings, flags of the CLI).
OPTION_NAMES = ("iterations", "restarts", "queries")


@dataclass(frozen=True)
class AttackCall:
    """What one run of an attack gets besides settings, target and patches."""

    on_progress: ProgressCallback | None = None
    #: Where these patches start in a larger set attacked in pieces: it seeds the random draws.
    first_row: int = 0
    #: Each patch's partner across the boundary (same photo, same place; pristine when hiding, manipulated when
    #: framing), for attacks with ``needs_partners``.
    partners: np.ndarray | None = None
    #: Where each patch's search starts (uint8, inside its eps-ball), for attacks with ``warm_starts``: a smaller
    #: eps's best result, so that a larger ball is never searched from further away than a smaller one.
    start: np.ndarray | None = None


@dataclass(frozen=True)
class Attack:
    """One attack method, as its module declares it."""

    name: str
    #: One paragraph for the CLI's help and docs: what it does and what it needs.
    summary: str
    #: ``run(settings, target, patches, call)`` -> :class:`~cfzoo.ops.attacks.common.AttackResult`.
    run: Callable
    #: ``parameters(settings)``: what the settings resolve to for reports (iterations, step, ...), defaults filled in.
    parameters: Callable[[object], dict]
    #: The options it takes, each with the text of its default (``{"iterations": "10"}``).
    options: dict[str, str] = field(default_factory=dict)
    needs_gradient: bool = True
    #: It attacks several detectors at once (fooled only when every member is) and aims through ``--survive``.
    ensemble: bool = True
    #: It aims at each patch's partner across the boundary (the caller passes ``AttackCall.partners``).
    needs_partners: bool = False
    #: ``fits(target, task)``: a one-line CfzooError where it cannot attack that target on that task.
    fits: Callable[[object, str], None] | None = None
    #: Reports give its model runs per patch (the paper's FGSM tables have none).
    reports_queries: bool = True
    #: It searches the eps-ball (iterates or samples), so a larger ball should not leave more patches unfooled;
    #: False for a fixed step of exactly eps (FGSM), which may overshoot (the health flag not-monotone skips it).
    searches: bool = True
    #: It can begin its search at ``AttackCall.start`` instead of its own start (random, stripes), keeping that
    #: start unless it finds better: its result at a larger eps is then never worse than the start's.
    warm_starts: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.options) - set(OPTION_NAMES)
        if unknown:
            raise ValueError(f"attack {self.name}: unknown options {sorted(unknown)}; known: {OPTION_NAMES}")


_ATTACKS: dict[str, Attack] = {}
_loaded = False


def register_attack(attack: Attack) -> Attack:
    """Add ``attack`` to the registry (its module calls this when imported)."""
    if attack.name in _ATTACKS and _ATTACKS[attack.name] is not attack:
        raise ValueError(f"two attacks are named {attack.name!r}")
    _ATTACKS[attack.name] = attack
    return attack


def _load_attack_modules() -> None:
    """Import every module of this package once, so that each registers its attack."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")


def attacks() -> dict[str, Attack]:
    """Every registered attack by name, in the battery's order (by :data:`ORDER`, then by name)."""
    _load_attack_modules()
    return {name: _ATTACKS[name] for name in sorted(_ATTACKS, key=lambda name: (_rank(name), name))}


#: The order attacks are listed in: the paper's first, then strength; later attacks go after these, by name.
ORDER = ("fgsm", "ifgsm", "pgd", "apgd", "square", "spam-prist", "spam-close")


def _rank(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def get_attack(name: str) -> Attack:
    """The attack called ``name``, or a one-line CfzooError listing the known ones."""
    known = attacks()
    if name not in known:
        raise CfzooError(f"unknown attack method {name!r}; choose one of: {', '.join(known)}")
    return known[name]


def attack_names(**needs: bool) -> tuple[str, ...]:
    """Names of the registered attacks whose declared properties equal ``needs`` (``ensemble=True``, ...)."""
    return tuple(
        name for name, attack in attacks().items() if all(getattr(attack, key) == value for key, value in needs.items())
    )


def option_owners(option: str) -> tuple[str, ...]:
    """The attacks that take ``option``."""
    return tuple(name for name, attack in attacks().items() if option in attack.options)


def option_help(option: str) -> str:
    """``"pgd (default 10), apgd (default 20)"``: which attacks take ``option``, with their defaults."""
    return ", ".join(
        f"{name} (default {attack.options[option]})" for name, attack in attacks().items() if option in attack.options
    )


def methods_help() -> str:
    """Every attack's summary, for the CLI's ``--method`` help."""
    return " ".join(f"{name}: {attack.summary}" for name, attack in attacks().items())
