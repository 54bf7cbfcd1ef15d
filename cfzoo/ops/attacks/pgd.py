"""Projected gradient attacks in the integer domain: PGD (Madry et al. 2018) and APGD-CE (Croce and Hein 2020).

Both maximise CE(logits(x), y) through the target's ONNX gradient companion, y the patch's true label
(manipulated when hiding a manipulation, pristine when framing a photo), which takes float
images, so they optimise in floats inside the eps-ball and measure success after rounding:

- the iterate ``x`` is a float32 image in [max(x0 - eps, 0), min(x0 + eps, 255)]; those bounds are integers,
  so ``rint(x)`` (half to even) stays in the integer ball;
- before every gradient step, and after the last, ``rint(x)`` is stored as uint8 and the target's detector
  judges it; a patch is done the first time the stored integers fool the detector (early stop, as AutoAttack);
- a patch never fooled returns the rounded iterate with the lowest margin seen (nearest the goal).

PGD: a random integer start, uniform in the ball; ``iterations`` signed steps of ``step`` (default Madry's
2.5 eps / iterations) with projection; ``restarts`` fresh starts for the patches not yet fooled.

Warm start (both): given a start per patch (a smaller eps's best result, :attr:`AttackCall.start`), the first run
begins there instead of at random. The start is judged first and kept unless something better is found, so the
result is never worse than it. A random start at a large eps is noise of amplitude eps over the whole patch;
framing a patch as blurred or resized from there, the signed steps cannot smooth it again (measured on the camera
photos: PGD that framed every patch at eps 1 framed none at eps 4).

APGD-CE: AutoAttack's step-size-free schedule. Start uniform in the ball, first step 2 eps, momentum 0.75;
at checkpoints (:func:`apgd_checkpoints`: 22, 41, 57, 70, 80, 87, 93, 99 of 100 iterations) a patch halves its
step and restarts from its best point (without momentum) when fewer than 75% of the steps since the last
checkpoint raised its loss, or when its step was not halved at the last checkpoint and its best loss has not
risen since (AutoAttack's rule). The DLR loss is not offered: it divides by the
gap between the largest and the third-largest logit, and a detector has two; for two classes its numerator,
the logit margin, gives the same sign-gradient steps as cross-entropy.

Randomness comes from ``seed`` and each batch's first row (counted from ``first_row``, so a set attacked in
pieces draws what one call would): same seed and batch size, same result.
"""

from __future__ import annotations

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import check_count
from cfzoo.ops.attacks.common import (
    DEFAULT_BATCH_SIZE,
    AttackResult,
    AttackTarget,
    RoundedIterates,
    attack_in_batches,
    ball,
    check_eps,
    checked_patches,
)
from cfzoo.ops.attacks.registry import Attack, register_attack

PGD_ITERATIONS = 10
APGD_ITERATIONS = 20
APGD_MOMENTUM = 0.75
APGD_RHO = 0.75


def _loss_and_sign(target: AttackTarget, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the target's loss, sign of its gradient) at float [N,H,W,3] images."""
    loss, gradient = target.loss_and_gradient(images)
    return loss, np.sign(gradient, out=gradient)


def pgd(
    target: AttackTarget,
    patches: np.ndarray,
    eps: int,
    iterations: int | None = None,
    restarts: int = 1,
    step: float | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    first_row: int = 0,
) -> AttackResult:
    """Madry et al.'s PGD with random integer starts and ``restarts``; see the module's notes on rounding."""
    eps = check_eps(eps)
    check_count(iterations, "iterations", f"leave it out for {PGD_ITERATIONS}")
    check_count(restarts, "restarts", "use 1 for a single random start")
    return _pgd(
        target, checked_patches(patches), eps, iterations, restarts, step, seed, batch_size, on_progress, first_row
    )


def _pgd(
    target, patches, eps, iterations, restarts, step, seed, batch_size, on_progress, first_row, start=None
) -> AttackResult:
    """:func:`pgd` on arguments known to be valid (the battery's settings were checked when built); ``start``: each
    patch's warm start, or None."""
    iterations = iterations or PGD_ITERATIONS
    step = 2.5 * eps / iterations if step is None else float(step)
    return attack_in_batches(
        patches,
        batch_size,
        seed,
        first_row,
        on_progress,
        lambda original, rng, part: _pgd_batch(
            target, original, eps, iterations, restarts, step, rng, None if start is None else start[part]
        ),
    )


def _pgd_batch(target, original, eps, iterations, restarts, step, rng, warm=None):
    low, high = (bound.astype(np.float32) for bound in ball(original, eps))
    tracker = RoundedIterates(target, original)
    steps = np.zeros(len(original), dtype=np.int64)
    zero_gradient = np.zeros(len(original), dtype=bool)
    for restart in range(restarts):
        rows = np.flatnonzero(~tracker.fooled)
        if not len(rows):
            break
        row_low, row_high = low[rows], high[rows]
        if restart == 0 and warm is not None:
            x = np.clip(warm[rows].astype(np.float32), row_low, row_high)
        else:
            start = rng.integers(-eps, eps + 1, size=(len(rows), *original.shape[1:]), dtype=np.int16)
            x = np.clip(original[rows].astype(np.float32) + start, row_low, row_high)
        for iteration in range(iterations + 1):
            fooled = tracker.judge(rows, x)  # the start too: it may fool the detector already
            if fooled.any():
                rows, x, row_low, row_high = rows[~fooled], x[~fooled], row_low[~fooled], row_high[~fooled]
            if not len(rows) or iteration == iterations:
                break
            _, sign = _loss_and_sign(target, x)
            tracker.queries[rows] += len(target.companions)
            if restart == 0 and iteration == 0:
                zero_gradient[rows] = ~sign.reshape(len(rows), -1).any(axis=1)
            sign *= step
            x += sign
            np.clip(x, row_low, row_high, out=x)
            steps[rows] += 1
    return tracker.best, steps, zero_gradient, tracker.queries


def apgd_checkpoints(iterations: int) -> list[int]:
    """The iterations at which APGD may halve a patch's step: the first after 22% of them, each later interval
    3% shorter than the one before but at least 6% (in whole iterations, as AutoAttack counts)."""
    interval, shorter, shortest = (max(int(share * iterations), 1) for share in (0.22, 0.03, 0.06))
    checkpoints, at = [], interval
    while at < iterations:
        checkpoints.append(at)
        interval = max(interval - shorter, shortest)
        at += interval
    return checkpoints


def apgd(
    target: AttackTarget,
    patches: np.ndarray,
    eps: int,
    iterations: int | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    first_row: int = 0,
) -> AttackResult:
    """Croce and Hein's APGD on cross-entropy; see the module's notes on rounding and on DLR."""
    eps = check_eps(eps)
    check_count(iterations, "iterations", f"leave it out for {APGD_ITERATIONS}")
    return _apgd(target, checked_patches(patches), eps, iterations, seed, batch_size, on_progress, first_row)


def _apgd(target, patches, eps, iterations, seed, batch_size, on_progress, first_row, start=None) -> AttackResult:
    """:func:`apgd` on arguments known to be valid; ``start``: each patch's warm start, or None."""
    iterations = iterations or APGD_ITERATIONS
    return attack_in_batches(
        patches,
        batch_size,
        seed,
        first_row,
        on_progress,
        lambda original, rng, part: _apgd_batch(
            target, original, eps, iterations, rng, None if start is None else start[part]
        ),
    )


def _apgd_batch(target, original, eps, iterations, rng, warm=None):
    low, high = (bound.astype(np.float32) for bound in ball(original, eps))
    count = len(original)
    tracker = RoundedIterates(target, original)
    steps = np.zeros(count, dtype=np.int64)
    zero_gradient = np.zeros(count, dtype=bool)
    if warm is None:
        direction = rng.uniform(-1, 1, size=original.shape).astype(np.float32)
        scale = np.abs(direction).reshape(count, -1).max(axis=1).reshape(-1, 1, 1, 1)
        x = np.clip(original + eps * direction / scale, low, high)
    else:
        x = np.clip(warm.astype(np.float32), low, high)
    active = np.flatnonzero(~tracker.fooled)
    active = active[~tracker.judge(active, x[active])]  # the start may fool the detector already
    loss, eta = np.zeros(count), np.full(count, 2.0 * eps, dtype=np.float32)
    previous = x.copy()
    if len(active):
        loss[active], sign = _loss_and_sign(target, x[active])
        tracker.queries[active] += len(target.companions)
        zero_gradient[active] = ~sign.reshape(len(active), -1).any(axis=1)
        x[active] = np.clip(x[active] + eta[active, None, None, None] * sign, low[active], high[active])
        steps[active] += 1
    best_loss, best_x = loss.copy(), previous.copy()
    checkpoints = apgd_checkpoints(iterations)
    last_checkpoint, raised = 0, np.zeros(count, dtype=np.int64)
    halved_last, best_at_checkpoint = np.zeros(count, dtype=bool), best_loss.copy()
    for iteration in range(1, iterations + 1):
        if not len(active):
            break
        current = x[active]  # the active patches' iterates, gathered once per iteration
        fooled = tracker.judge(active, current)
        if fooled.any():
            active, current = active[~fooled], current[~fooled]
        if not len(active) or iteration == iterations:
            break
        new_loss, sign = _loss_and_sign(target, current)
        tracker.queries[active] += len(target.companions)
        raised[active] += new_loss > loss[active]
        loss[active] = new_loss
        improved = new_loss > best_loss[active]
        best_loss[active[improved]], best_x[active[improved]] = new_loss[improved], current[improved]
        step = eta[active, None, None, None]
        active_low, active_high = low[active], high[active]
        z = np.clip(current + step * sign, active_low, active_high)
        moved = current + APGD_MOMENTUM * (z - current) + (1 - APGD_MOMENTUM) * (current - previous[active])
        previous[active] = current
        x[active] = np.clip(moved, active_low, active_high)
        steps[active] += 1
        if iteration in checkpoints:
            too_few = raised[active] < APGD_RHO * (iteration - last_checkpoint)
            stalled = ~halved_last[active] & (best_loss[active] <= best_at_checkpoint[active])
            halve = active[too_few | stalled]
            eta[halve] /= 2
            x[halve] = previous[halve] = best_x[halve]  # restart from the best point, without momentum
            halved_last[:] = False
            halved_last[halve] = True
            last_checkpoint, raised[:] = iteration, 0
            best_at_checkpoint = best_loss.copy()
    return tracker.best, steps, zero_gradient, tracker.queries


def _pgd_parameters(settings) -> dict:
    iterations = settings.iterations or PGD_ITERATIONS
    return {"iterations": iterations, "step": round(2.5 * settings.eps / iterations, 6), "restarts": settings.restarts}


register_attack(
    Attack(
        name="pgd",
        summary="random start, signed steps of 2.5 eps / iterations, --restarts.",
        run=lambda settings, target, patches, call: _pgd(
            target,
            patches,
            settings.eps,
            settings.iterations,
            settings.restarts,
            None,
            settings.seed,
            settings.batch_size,
            call.on_progress,
            call.first_row,
            call.start,
        ),
        parameters=_pgd_parameters,
        options={"iterations": str(PGD_ITERATIONS), "restarts": "1"},
        warm_starts=True,
    )
)
register_attack(
    Attack(
        name="apgd",
        summary="AutoAttack's step-size-free PGD.",
        run=lambda settings, target, patches, call: _apgd(
            target,
            patches,
            settings.eps,
            settings.iterations,
            settings.seed,
            settings.batch_size,
            call.on_progress,
            call.first_row,
            call.start,
        ),
        parameters=lambda settings: {"iterations": settings.iterations or APGD_ITERATIONS, "step": None},
        options={"iterations": str(APGD_ITERATIONS)},
        warm_starts=True,
    )
)
