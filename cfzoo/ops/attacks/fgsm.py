"""FGSM and iterative FGSM with integer epsilon, on the ONNX gradient companions (onnxruntime, no torch).

The paper's attack (Section III-B): for a manipulated patch x,

    x' = clip(x + eps * sign(d CE(logits(x), manipulated) / d x), 0, 255),   eps an integer >= 1,

stored as uint8. Raising the loss of the label "manipulated" (1) pushes the patch towards "pristine". Framing
(goal ``frame``, :class:`~cfzoo.ops.attacks.common.AttackTarget`) raises the loss of "pristine" on a pristine
patch instead, and "called pristine" below reads "called manipulated".
Integer eps keeps every pixel an integer, so the attack survives the rounding of storage: nothing is
rounded away. Where the gradient is exactly zero (sign 0) the pixel is left unchanged; a patch the target
calls manipulated with a float32 probability of exactly 1 has a zero gradient everywhere and is not moved
at all (:attr:`AttackResult.zero_gradient` counts them).

Iterative FGSM (Kurakin et al.'s basic iterative method, in integers): step 1 gray level, at most
:func:`default_iterations` (eps) = min(eps + 4, ceil(1.25 eps)) steps; after each step the patch is projected
onto the L-infinity ball of radius eps around the original and onto 0..255, so it stays integer without any
rounding. A patch stops as soon as the target's detector calls it pristine (checked before every step), so
a patch the target already calls pristine is returned unchanged; it stops too after a step whose gradient
was zero everywhere, since the next one would be the same.

Patches are [N, 128, 128, 3] uint8 RGB, as patch sets store them; the companions take [N, 3, 128, 128]
float32 (the model contract). Each sample's gradient is its own: the companion differentiates the sum of
the per-sample losses.

Against an ensemble (an :class:`~cfzoo.ops.attacks.common.AttackTarget` with several detectors) the sign is that
of the members' summed gradients, each scaled to unit mean absolute value per patch, and iterative FGSM goes on
until every member calls the patch pristine.
"""

from __future__ import annotations

import math

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import check_count
from cfzoo.ops.attacks.common import DEFAULT_BATCH_SIZE, AttackResult, AttackTarget, check_eps, checked_patches
from cfzoo.ops.attacks.registry import Attack, register_attack

#: Iterative FGSM's step, in gray levels: the smallest change that survives rounding.
IFGSM_STEP = 1


def default_iterations(eps: int) -> int:
    """Iterative FGSM's step count for an eps: min(eps + 4, ceil(1.25 eps)), as Kurakin et al. with step 1."""
    return min(eps + 4, math.ceil(1.25 * eps))


def gradient_sign(target: AttackTarget, patches: np.ndarray) -> np.ndarray:
    """sign(d CE(logits, manipulated) / d patch) as int16 [N,H,W,3]: +1, -1, or 0 where the gradient is zero."""
    _, gradient = target.loss_and_gradient(patches.astype(np.float32))
    return np.sign(gradient).astype(np.int16)


def fgsm(
    target: AttackTarget,
    patches: np.ndarray,
    eps: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
) -> AttackResult:
    """One signed-gradient step of ``eps`` gray levels on every patch, clipped to 0..255."""
    return _fgsm(target, checked_patches(patches), check_eps(eps), batch_size, on_progress)


def _fgsm(target, patches, eps, batch_size, on_progress) -> AttackResult:
    """:func:`fgsm` on arguments known to be valid."""
    attacked = np.empty_like(patches)
    zero_gradient = np.zeros(len(patches), dtype=bool)
    for start in range(0, len(patches), batch_size):
        batch = patches[start : start + batch_size]
        sign = gradient_sign(target, batch)
        zero_gradient[start : start + len(batch)] = ~sign.reshape(len(batch), -1).any(axis=1)
        attacked[start : start + len(batch)] = np.clip(batch.astype(np.int16) + eps * sign, 0, 255)
        if on_progress is not None:
            on_progress(start + len(batch), len(patches))
    ones = np.ones(len(patches), dtype=np.int64)
    return AttackResult(attacked, ones, zero_gradient, queries=ones)


def iterative_fgsm(
    target: AttackTarget,
    patches: np.ndarray,
    eps: int,
    iterations: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
) -> AttackResult:
    """Steps of 1 gray level inside the eps-ball, each patch until the target's detectors call it pristine or
    ``iterations`` (default :func:`default_iterations`) steps are done."""
    eps = check_eps(eps)
    check_count(iterations, "iterations", "leave it out for min(eps + 4, ceil(1.25 eps))")
    return _iterative_fgsm(target, checked_patches(patches), eps, iterations, batch_size, on_progress)


def _iterative_fgsm(target, patches, eps, iterations, batch_size, on_progress) -> AttackResult:
    """:func:`iterative_fgsm` on arguments known to be valid."""
    iterations = default_iterations(eps) if iterations is None else iterations
    attacked = np.empty_like(patches)
    steps = np.zeros(len(patches), dtype=np.int64)
    queries = np.zeros(len(patches), dtype=np.int64)
    zero_gradient = np.zeros(len(patches), dtype=bool)
    for start in range(0, len(patches), batch_size):
        original = patches[start : start + batch_size].astype(np.int16)
        current = original.copy()
        low, high = np.maximum(original - eps, 0), np.minimum(original + eps, 255)
        active = np.arange(len(original))
        for step in range(iterations):
            if len(active):
                queries[start + active] += len(target.detectors)
                active = active[target.margin(current[active].astype(np.uint8)) > 0]
            if not len(active):
                break
            sign = gradient_sign(target, current[active].astype(np.uint8))
            stuck = ~sign.reshape(len(active), -1).any(axis=1)  # a zero gradient stays zero: the patch cannot move
            if step == 0:
                zero_gradient[start + active] = stuck
            current[active] = np.clip(current[active] + IFGSM_STEP * sign, low[active], high[active])
            steps[start + active] += 1
            queries[start + active] += len(target.companions)
            active = active[~stuck]
        attacked[start : start + len(original)] = current
        if on_progress is not None:
            on_progress(start + len(original), len(patches))
    return AttackResult(attacked, steps, zero_gradient, queries)


register_attack(
    Attack(
        name="fgsm",
        summary="one step of eps (the paper's attack).",
        run=lambda settings, target, patches, call: _fgsm(
            target, patches, settings.eps, settings.batch_size, call.on_progress
        ),
        parameters=lambda settings: {"iterations": 1, "step": settings.eps},
        reports_queries=False,
        searches=False,
    )
)
register_attack(
    Attack(
        name="ifgsm",
        summary="steps of 1, each patch until the target calls it pristine.",
        run=lambda settings, target, patches, call: _iterative_fgsm(
            target, patches, settings.eps, settings.iterations, settings.batch_size, call.on_progress
        ),
        parameters=lambda settings: {
            "iterations": settings.iterations or default_iterations(settings.eps),
            "step": IFGSM_STEP,
        },
        options={"iterations": "min(eps + 4, ceil(1.25 eps))"},
        reports_queries=False,
    )
)
