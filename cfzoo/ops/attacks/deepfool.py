"""DeepFool (Moosavi-Dezfooli et al. 2016), L-infinity, for a binary detector, in integers.

A detector calls a patch manipulated where its margin ``m(x) = z1 - z0 - logit(threshold)`` is above 0 (``z`` the
logits). DeepFool linearises ``m`` at the current patch and takes the smallest L-infinity step that the linear
model says reaches the boundary, ``m / ||grad m||_1`` along ``-sign(grad m)``, a little beyond it (overshoot
2%), then looks again. Unlike the signed-gradient attacks, the step's size comes from the margin and the gradient's
magnitude: a patch far from the boundary takes a long step, a patch near it a short one, so it measures how little
noise each patch needs.

In integers: each step is rounded up to whole gray levels (at least 1: a smaller one would be rounded away when the
patch is stored), and the patch is projected onto the integer eps-ball and 0..255, so it stays integer without any
rounding. Before every step the target's detector judges the stored patch; a patch stops the first time it fools
the detector, or when its gradient is zero (it cannot move). A patch never fooled returns the step with the lowest
margin seen.

The gradient of the margin comes from the companion's cross-entropy gradient for the label "manipulated": for two
classes, ``CE = softplus(-(z1 - z0))``, so ``grad (z1 - z0) = -grad CE / sigmoid(z0 - z1)``. One detector at a time:
DeepFool's step is made for one boundary. Framing (goal ``frame``) crosses it the other way: the margin and its
gradient change sign.
"""

from __future__ import annotations

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import check_count
from cfzoo.ops.attacks.common import (
    DEFAULT_BATCH_SIZE,
    MANIPULATED,
    AttackResult,
    AttackTarget,
    RoundedIterates,
    attack_in_batches,
    ball,
    check_eps,
    checked_patches,
)
from cfzoo.ops.attacks.registry import Attack, register_attack

DEEPFOOL_ITERATIONS = 20
OVERSHOOT = 0.02


def deepfool(
    target: AttackTarget,
    patches: np.ndarray,
    eps: int,
    iterations: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
) -> AttackResult:
    """At most ``iterations`` (default 20) DeepFool steps per patch inside the integer eps-ball; see the module's notes."""
    eps = check_eps(eps)
    check_count(iterations, "iterations", f"leave it out for {DEEPFOOL_ITERATIONS}")
    return _deepfool(target, checked_patches(patches), eps, iterations, batch_size, on_progress)


def _deepfool(target, patches, eps, iterations, batch_size, on_progress) -> AttackResult:
    """:func:`deepfool` on arguments known to be valid."""
    iterations = iterations or DEEPFOOL_ITERATIONS
    return attack_in_batches(
        patches,
        batch_size,
        0,
        0,
        on_progress,
        lambda original, rng, part: _deepfool_batch(target, original, eps, iterations),
    )


def _deepfool_batch(target: AttackTarget, original: np.ndarray, eps: int, iterations: int):
    detector, companion = target.detectors[0], target.companions[0]
    low, high = ball(original, eps)
    threshold = float(np.clip(detector.threshold, 1e-12, 1 - 1e-12))
    goal_sign = 1.0 if target.goal == "hide" else -1.0  # framing lowers minus the margin
    judged = RoundedIterates(target, original)
    current = original.astype(np.int16)
    steps = np.zeros(len(original), dtype=np.int64)
    zero_gradient = np.zeros(len(original), dtype=bool)
    active = np.flatnonzero(~judged.fooled)
    for iteration in range(iterations):
        if not len(active):
            break
        images = np.ascontiguousarray(current[active].transpose(0, 3, 1, 2), dtype=np.float32)
        logits, gradient = companion.logits_and_gradient(images, np.full(len(active), MANIPULATED, dtype=np.int64))
        judged.queries[active] += 1
        difference = logits[:, 1].astype(np.float64) - logits[:, 0]
        # grad (z1 - z0) = -grad CE / sigmoid(z0 - z1), per patch, in the patches' layout
        with np.errstate(over="ignore", invalid="ignore"):  # a saturated patch: an infinite factor, found stuck below
            scale = (1.0 + np.exp(difference))[:, None, None, None]
            margin_gradient = -goal_sign * gradient.transpose(0, 2, 3, 1).astype(np.float64) * scale
            norm = np.abs(margin_gradient).reshape(len(active), -1).sum(axis=1)
        stuck = ~(norm > 0) | ~np.isfinite(norm)
        if iteration == 0:
            zero_gradient[active] = stuck
        margin = goal_sign * (difference - np.log(threshold / (1 - threshold)))
        size = np.ceil(np.maximum(margin, 0) * (1 + OVERSHOOT) / np.where(stuck, 1.0, norm))
        size = np.clip(np.nan_to_num(size, nan=1.0), 1, eps).astype(np.int16)[:, None, None, None]
        direction = np.sign(np.nan_to_num(margin_gradient)).astype(np.int16)
        moved = current[active] - size * direction
        current[active] = np.clip(moved, low[active], high[active])
        steps[active] += ~stuck
        active = active[~stuck]
        fooled = judged.judge(active, current[active])
        active = active[~fooled]
    return judged.best, steps, zero_gradient, judged.queries


register_attack(
    Attack(
        name="deepfool",
        summary="DeepFool: the smallest step the linearised margin needs, in whole gray levels, one detector, until fooled.",
        run=lambda settings, target, patches, call: _deepfool(
            target, patches, settings.eps, settings.iterations, settings.batch_size, call.on_progress
        ),
        parameters=lambda settings: {"iterations": settings.iterations or DEEPFOOL_ITERATIONS, "step": None},
        options={"iterations": str(DEEPFOOL_ITERATIONS)},
        ensemble=False,
    )
)
