"""The paper's Section III-A: a SPAM-based detector attacked by gradient descent in pixels towards a goal feature.

The target is a SPAM+SVM detector (its ``spam_svm`` metadata: a linear SVM on standardised SPAM features). The patch
``x`` descends ``psi(x) = ||z(x) - z_goal||^2``, the Euclidean distance in the SVM's standardised feature space
``z = (f - mean) / scale``, f the soft SPAM (Cozzolino2017's relaxation: softmax quantisation; its image gradient
comes from the embedded feature companion, the same for every task), under the distortion bound of every attack
here: the integer L-infinity ball of radius eps. Standardised, not raw: in raw SPAM the frequent co-occurrences
dominate every distance (on median3 the raw f_close lay 1e-5 from f0, all of it in rare bins), while the SVM, and
any SPAM pipeline, weighs each feature by its spread. Two goals (the paper's Fig. 2):

- ``spam-prist``, towards f_prist: the soft SPAM of the patch's pristine partner (same photo, same place, before the
  manipulation). The attacker uses the feature statistics (mean, scale) but not the decision; tasks that change
  the image size (resize) have no partner and cannot be attacked this way.
- ``spam-close``, towards f_close: the feature closest to f0 (the manipulated patch's soft SPAM) across the
  target's decision boundary, on its pristine margin: ``argmin ||z - z0||`` subject to ``coef . z + intercept <= -1``
  and ``f >= 0`` (SPAM features are frequencies), i.e. ``max(z0 - lambda coef, -mean / scale)`` with lambda found by
  bisection. The attacker knows the classifier exactly.

Framing (goal ``frame``) runs both the other way: a pristine patch descends towards its manipulated partner's
feature (spam-prist: the partner across the boundary), or towards the nearest feature on the manipulated margin
(spam-close: the same problem for the SVM with its sign flipped, ``coef . z + intercept >= 1``).

Rounding and success: the iterate is a float image inside the ball (integer bounds), moved by signed steps of
2.5 / iterations gray levels from the original (no random start: the descent has a goal, not a boundary, to find).
The step does not grow with eps, as PGD's does: a residual weighs four pixels by 1, 3, 3, 1, so a step of s gray
levels moves it by up to 8 s, against quantisation bins 3 levels wide whose soft edges (sharpness 10) turn within
a fraction of a level; longer steps overshoot. With PGD's rule (steps of 0.5 at eps 4) fewer patches fooled
SPAM+SVM at eps 4 than at eps 2, on training devices too. A larger ball gives room, not speed.

Every iterate is rounded and judged by the target's detector, which for SPAM+SVM computes the hard SPAM exactly. A
patch does not stop when it first fools the target: it keeps descending towards its goal, since how far past the
boundary it lands is what decides whether other detectors are fooled too. It returns its last iterate if that
fools the target, else the last iterate that did, else its last. ``iterations`` in the result counts the steps
until the target was first fooled (the speed of convergence the paper compares; all steps if never).
"""

from __future__ import annotations

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import CfzooError, check_count, option
from cfzoo.manipulations import get_manipulation
from cfzoo.ops.attacks.common import (
    DEFAULT_BATCH_SIZE,
    AttackResult,
    AttackTarget,
    attack_in_batches,
    ball,
    check_eps,
    checked_patches,
)
from cfzoo.ops.attacks.registry import Attack, register_attack
from cfzoo.zoo.runtime import (
    SpamFeatureCompanion,
    SpamSVM,
    load_spam_feature_companion,
    provider_choice,
    to_model_input,
)

SPAM_FEATURE_ITERATIONS = 20
#: The decision the f_close goal lies on: the SVM's pristine margin (the boundary is at 0).
CLOSE_MARGIN = -1.0
TOWARDS = ("prist", "close")
#: This module's attacks, towards f_prist and f_close.
SPAM_FEATURE_METHODS = tuple(f"spam-{towards}" for towards in TOWARDS)
_BISECTION_STEPS = 60


def spam_feature(
    target: AttackTarget,
    features: SpamFeatureCompanion,
    patches: np.ndarray,
    eps: int,
    towards: str,
    partners: np.ndarray | None = None,
    iterations: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
) -> AttackResult:
    """Descend towards the partner's feature (``towards="prist"``, ``partners``: each patch's partner across the
    boundary, pristine when hiding) or f_close (``"close"``); see the module's notes."""
    eps = check_eps(eps)
    check_count(iterations, "iterations", f"leave it out for {SPAM_FEATURE_ITERATIONS}")
    return _spam_feature(
        target, features, checked_patches(patches), eps, towards, partners, iterations, batch_size, on_progress
    )


def _spam_feature(
    target, features, patches, eps, towards, partners, iterations, batch_size, on_progress
) -> AttackResult:
    """:func:`spam_feature` once eps, iterations and the patches are known to be valid."""
    iterations = iterations or SPAM_FEATURE_ITERATIONS
    if towards not in TOWARDS:
        raise CfzooError(f"towards must be one of {', '.join(TOWARDS)}, got {towards!r}")
    svm = check_spam_target(f"spam-{towards}", target)
    if towards == "prist" and (partners is None or np.shape(partners) != patches.shape):
        raise CfzooError(
            "spam-prist needs each patch's partner across the boundary (same photo, same place: the pristine one of a "
            "manipulated patch, the manipulated one of a pristine patch when framing); resize tasks have none"
        )
    # framing crosses to the manipulated margin: the pristine margin of the SVM with its sign flipped
    boundary = svm if target.goal == "hide" else svm._replace(coef=-svm.coef, intercept=-svm.intercept)

    def goal_of(original: np.ndarray, part: slice) -> np.ndarray:
        if towards == "prist":
            return features.features(to_model_input(checked_patches(partners[part])))
        return closest_across(features.features(to_model_input(original)), boundary)

    weight = 1.0 / svm.scale**2
    step = spam_feature_step(iterations)
    return attack_in_batches(
        patches,
        batch_size,
        0,
        0,
        on_progress,
        lambda original, rng, part: _descend(
            target, features, original, goal_of(original, part), weight, eps, iterations, step
        ),
    )


def spam_feature_step(iterations: int) -> float:
    """Gray levels per signed step, whatever eps (see the module's notes)."""
    return 2.5 / iterations


def check_spam_target(method: str, target: AttackTarget) -> SpamSVM:
    """The SVM of a one-detector SPAM+SVM target, or a one-line CfzooError."""
    if target.is_ensemble:
        raise CfzooError(f"{method} aims at one detector; give one {option('target')}")
    svm = target.detectors[0].spam_svm
    if svm is None:
        raise CfzooError(
            f"{method} attacks a SPAM+SVM detector (cfzoo's spam models), not {target.detectors[0].entry.id}; "
            "for other detectors use --method pgd, apgd or square"
        )
    return svm


def closest_across(features: np.ndarray, svm: SpamSVM, margin: float = CLOSE_MARGIN) -> np.ndarray:
    """Per row of ``features``, the nearest non-negative f (in the SVM's standardised space) whose decision is at most
    ``margin``: ``max(z0 - lambda coef, -mean / scale)`` for the smallest lambda >= 0 that reaches it (the decision
    falls as lambda grows; bisection), as raw features."""
    features = np.asarray(features, dtype=np.float64)
    standardised = (features - svm.mean) / svm.scale
    floor = -svm.mean / svm.scale  # z of a zero frequency

    def moved(scale: np.ndarray) -> np.ndarray:
        return np.maximum(standardised - scale[:, None] * svm.coef, floor)

    def decision(scale: np.ndarray) -> np.ndarray:
        return moved(scale) @ svm.coef + svm.intercept

    low, high = np.zeros(len(standardised)), np.ones(len(standardised))
    while (beyond := decision(high) > margin).any():
        high[beyond] *= 2
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        reached = decision(middle) <= margin
        high = np.where(reached, middle, high)
        low = np.where(reached, low, middle)
    already = decision(np.zeros(len(standardised))) <= margin  # on the pristine side: the goal is f0 itself
    return np.where(already[:, None], features, svm.mean + svm.scale * moved(high))


def _descend(target, features, original, goal, weight, eps, iterations, step):
    low, high = (bound.astype(np.float32) for bound in ball(original, eps))
    count = len(original)
    x = original.astype(np.float32)
    returned = original.copy()
    ever_fooled = np.zeros(count, dtype=bool)
    first_fooled = np.full(count, iterations, dtype=np.int64)
    queries = np.zeros(count, dtype=np.int64)
    zero_gradient = np.zeros(count, dtype=bool)
    for iteration in range(iterations + 1):
        stored = np.rint(x).astype(np.uint8)
        fooled = target.margin(stored) <= 0
        queries += 1
        first_fooled[fooled & ~ever_fooled] = iteration
        ever_fooled |= fooled
        keep = fooled | ~ever_fooled  # a patch that fooled the target before but not now keeps that iterate
        returned[keep] = stored[keep]
        if iteration == iterations:
            break
        _, _, gradient = features.distance_and_gradient(to_model_input(x), goal, weight)
        queries += 1
        sign = -np.sign(gradient.transpose(0, 2, 3, 1))  # descend the distance
        if iteration == 0:
            zero_gradient = ~sign.reshape(count, -1).any(axis=1)
        x = np.clip(x + step * sign, low, high)
    return returned, first_fooled, zero_gradient, queries


def _register(towards: str, summary: str) -> None:
    """Register the descent towards ``towards`` (prist or close) as the attack ``spam-<towards>``."""
    method = f"spam-{towards}"

    def fits(target: AttackTarget, task: str) -> None:
        check_spam_target(method, target)
        if towards == "prist" and not get_manipulation(task).keeps_size:
            raise CfzooError(
                f"spam-prist needs each patch's pristine partner, which {task} (a change of size) has not; name the tasks "
                f"that keep the size with {option('tasks', '--task')}, or leave out spam-prist"
            )

    def run(settings, target: AttackTarget, patches: np.ndarray, call) -> AttackResult:
        features = load_spam_feature_companion(provider_choice(target.detectors[0].providers))
        return _spam_feature(
            target,
            features,
            patches,
            settings.eps,
            towards,
            call.partners,
            settings.iterations,
            settings.batch_size,
            call.on_progress,
        )

    def parameters(settings) -> dict:
        iterations = settings.iterations or SPAM_FEATURE_ITERATIONS
        return {"iterations": iterations, "step": round(spam_feature_step(iterations), 6)}

    register_attack(
        Attack(
            name=method,
            summary=summary,
            run=run,
            parameters=parameters,
            options={"iterations": str(SPAM_FEATURE_ITERATIONS)},
            needs_gradient=False,  # the embedded SPAM feature companion stands in for the target's
            ensemble=False,
            needs_partners=towards == "prist",
            fits=fits,
        )
    )


_register(
    "prist",
    "the paper's descent in SPAM feature space against --target spam, towards the pristine patch's feature (framing: the "
    "manipulated one's; datasets only).",
)
_register("close", "the same descent towards the nearest feature across the SVM's boundary.")
