"""The attack battery: every method behind one call, :func:`attack_patches`.

| method | needs | rounding |
|---|---|---|
| ``fgsm`` | companion | none: one integer step of eps |
| ``ifgsm`` | companion, detector | none: integer steps of 1 |
| ``pgd`` | companion, detector | floats inside the ball, rounded and judged every step |
| ``apgd`` | companion, detector | floats inside the ball, rounded and judged every step |
| ``square`` | detector only | none: every pixel is original +- eps |
| ``spam-prist``, ``spam-close`` | a SPAM+SVM detector | floats inside the ball, rounded and judged every step |

The spam-feature attacks (the paper's Section III-A) descend a distance in SPAM feature space through the embedded
soft-SPAM companion, towards the pristine partner's feature (``spam-prist``: pass ``pristine``) or the closest
feature across the SVM's boundary (``spam-close``); see :mod:`cfzoo.ops.attacks.spam_feature`.

fgsm, ifgsm, pgd, apgd and square also attack an ensemble (:class:`~cfzoo.ops.attacks.common.AttackTarget` with several
detectors): one set of patches that every member calls pristine; and they can aim at the patches as stored after
JPEG recompression (``survive_jpeg``, ``--survive jpeg:Q``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.data import PatchSet, pristine_partners
from cfzoo.errors import CfzooError, check_count, option
from cfzoo.manipulations import get_manipulation
from cfzoo.ops.attacks.common import AttackResult, AttackSettings, AttackTarget, check_eps
from cfzoo.ops.attacks.fgsm import IFGSM_STEP, default_iterations, fgsm, iterative_fgsm
from cfzoo.ops.attacks.pgd import APGD_ITERATIONS, PGD_ITERATIONS, apgd, pgd
from cfzoo.ops.attacks.spam_feature import SPAM_FEATURE_ITERATIONS, check_spam_target, spam_feature, spam_feature_step
from cfzoo.ops.attacks.square import DEFAULT_P_INIT, DEFAULT_QUERIES, square
from cfzoo.zoo.runtime import load_spam_feature_companion, provider_choice

#: The spam-feature attacks, towards f_prist and f_close.
SPAM_FEATURE_METHODS = ("spam-prist", "spam-close")
METHODS = ("fgsm", "ifgsm", "pgd", "apgd", "square", *SPAM_FEATURE_METHODS)
#: Methods that need no gradient companion of the target (the spam-feature attacks bring their own).
GRADIENT_FREE = ("square", *SPAM_FEATURE_METHODS)
#: Methods that attack several detectors at once (an ensemble, fooled only when every member is).
ENSEMBLE_METHODS = ("fgsm", "ifgsm", "pgd", "apgd", "square")


def needs_gradient(method: str) -> bool:
    check_method(method)
    return method not in GRADIENT_FREE


def check_method(method: str) -> str:
    if method not in METHODS:
        raise CfzooError(f"unknown attack method {method!r}; choose one of: {', '.join(METHODS)}")
    return method


def check_settings(settings: AttackSettings, ensemble: bool = False) -> str:
    """The method, once ``settings`` are known to fit it and (with ``ensemble``) to attack several detectors at
    once; else a one-line CfzooError (an option another method owns, a method that attacks one detector)."""
    method = check_method(settings.method)
    if ensemble and method not in ENSEMBLE_METHODS:
        raise CfzooError(f"{option('method')} {method} attacks one detector; for several at once use {option('method')} {', '.join(ENSEMBLE_METHODS)}")
    check_eps(settings.eps)
    check_count(settings.restarts, "restarts", "use 1 for a single random start")
    for name, value, owners in (("iterations", settings.iterations, ("ifgsm", "pgd", "apgd", *SPAM_FEATURE_METHODS)), ("queries", settings.queries, ("square",))):
        check_count(value, name, "leave it out for the method's default")
        if value is not None and method not in owners:
            raise CfzooError(f"{option(name)} applies to {option('method')} {', '.join(owners)} only, not {method}")
    if settings.restarts != 1 and method != "pgd":
        raise CfzooError(f"{option('restarts')} applies to {option('method')} pgd only, not {method}")
    for name in ("survive_jpeg", "survive_resize"):
        if getattr(settings, name) is not None and method not in ENSEMBLE_METHODS:
            raise CfzooError(f"{option(name, '--survive')} works with {option('method')} {', '.join(ENSEMBLE_METHODS)}, not {method}")
    if settings.survive_jpeg is not None and settings.survive_resize is not None:
        raise CfzooError("survive one platform step at a time: JPEG or resize, not both")
    return method


def check_method_fits(method: str, target: AttackTarget, task: str) -> None:
    """A one-line CfzooError, before any work, where ``method`` cannot attack ``target`` on ``task``: a spam-feature
    attack on a detector that is not SPAM+SVM, spam-prist on a task without pristine partners."""
    if method in SPAM_FEATURE_METHODS:
        check_spam_target(method, target)
    if method == "spam-prist" and not get_manipulation(task).keeps_size:
        raise CfzooError(f"spam-prist needs each patch's pristine partner, which {task} (a change of size) has not; name the tasks that keep the size with {option('tasks', '--task')}, or leave out spam-prist")


def pristine_rows(method: str, patch_set: PatchSet, rows: np.ndarray) -> np.ndarray | None:
    """The rows of the pristine partners of manipulated ``rows`` where ``method`` needs them (spam-prist), else None.
    Rows, not patches: a caller that attacks in batches reads each batch's partners with it."""
    return pristine_partners(patch_set, rows) if method == "spam-prist" else None


def attack_parameters(settings: AttackSettings) -> dict:
    """The parameters ``settings`` resolve to, defaults filled in, for reports: iterations and step (gray levels;
    None where the method adapts it), and restarts (pgd) or the query budget (square)."""
    survive = {name: getattr(settings, name) for name in ("survive_jpeg", "survive_resize") if getattr(settings, name) is not None}
    return {**_method_parameters(settings), **survive}


def _method_parameters(settings: AttackSettings) -> dict:
    method, eps, iterations = check_settings(settings), settings.eps, settings.iterations
    if method == "fgsm":
        return {"iterations": 1, "step": eps}
    if method == "ifgsm":
        return {"iterations": iterations or default_iterations(eps), "step": IFGSM_STEP}
    if method == "pgd":
        iterations = iterations or PGD_ITERATIONS
        return {"iterations": iterations, "step": round(2.5 * eps / iterations, 6), "restarts": settings.restarts}
    if method == "apgd":
        return {"iterations": iterations or APGD_ITERATIONS, "step": None}
    if method in SPAM_FEATURE_METHODS:
        iterations = iterations or SPAM_FEATURE_ITERATIONS
        return {"iterations": iterations, "step": round(spam_feature_step(iterations), 6)}
    return {"queries": settings.queries or DEFAULT_QUERIES, "p_init": DEFAULT_P_INIT}


def attack_patches(
    settings: AttackSettings,
    target: AttackTarget,
    patches,
    on_progress: ProgressCallback | None = None,
    first_row: int = 0,
    pristine=None,
) -> AttackResult:
    """Attack [N,H,W,3] uint8 patches as ``settings`` say. ``target``: one detector or an ensemble (ENSEMBLE_METHODS),
    with companions where the method needs them. ``first_row``: where these patches start in a larger
    set attacked in pieces (it seeds the random draws). ``pristine``: each patch's pristine partner (spam-prist)."""
    method = check_settings(settings, target.is_ensemble)
    if needs_gradient(method) and not target.has_gradient:
        raise CfzooError(f"{method} needs the target's gradient companion; {option('method')} square needs none")
    target = replace(target, survive_jpeg=settings.survive_jpeg, survive_resize=settings.survive_resize)
    batch = settings.batch_size
    if method == "fgsm":
        return fgsm(target, patches, settings.eps, batch, on_progress)
    if method == "ifgsm":
        return iterative_fgsm(target, patches, settings.eps, settings.iterations, batch, on_progress)
    if method == "pgd":
        return pgd(target, patches, settings.eps, settings.iterations, settings.restarts, None, settings.seed, batch, on_progress, first_row)
    if method == "apgd":
        return apgd(target, patches, settings.eps, settings.iterations, settings.seed, batch, on_progress, first_row)
    if method in SPAM_FEATURE_METHODS:
        features = load_spam_feature_companion(provider_choice(target.detectors[0].providers))
        towards = method.removeprefix("spam-")
        return spam_feature(target, features, patches, settings.eps, towards, pristine, settings.iterations, batch, on_progress)
    return square(
        target, patches, settings.eps, settings.queries, seed=settings.seed, batch_size=batch, on_progress=on_progress, first_row=first_row
    )
