"""Square Attack (Andriushchenko et al. 2020), L-infinity, score-based: it needs the detector graph only.

No gradient and no companion, so it attacks detectors that have none and non-differentiable ones (the hard
SPAM+SVM). It minimises the attacker's margin: hiding, the detector's logit(manipulated) - logit(pristine) -
logit(threshold), which is <= 0 exactly when the stored patch is called pristine; framing, minus that.

In integers from the start: every pixel of every candidate is original +- eps, clipped to 0..255, so nothing
is ever rounded; the detector judges the very uint8 patches that are returned.

- Start: the original is judged (a patch already at the goal is returned as it is), then vertical
  stripes: each column of each channel shifted by +eps or -eps at random, kept where they lower the margin (the
  paper keeps them always; at a large eps they can push a patch away from the goal, and the search then starts
  behind the original).
- Each proposal: a square of side s at a random place, each channel of it set to +eps or -eps at random
  (relative to the original); kept if it lowers the margin. s = round(sqrt(p * 128 * 128)), where p starts at
  ``p_init`` and halves after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of every 10,000 queries, the
  paper's schedule scaled to the budget.
- A patch stops when it is fooled or has used ``queries`` detector runs (the original and the stripes count).
- Warm start (:attr:`AttackCall.start`, a smaller eps's best result): the search begins at the start where it is
  nearer the goal than the original, and the stripes are kept only where they beat it, so the result is never
  worse than the start.

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
    attack_in_batches,
    ball,
    check_eps,
    checked_patches,
)
from cfzoo.ops.attacks.registry import Attack, register_attack

DEFAULT_QUERIES = 300
DEFAULT_P_INIT = 0.05
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(query: int, budget: int, p_init: float = DEFAULT_P_INIT) -> float:
    """The share of the patch's pixels a proposal changes at ``query`` of ``budget`` (the paper's schedule)."""
    progress = int(query / budget * 10000)
    return p_init / 2 ** sum(progress > step for step in _HALVINGS)


def square(
    target: AttackTarget,
    patches: np.ndarray,
    eps: int,
    queries: int | None = None,
    p_init: float = DEFAULT_P_INIT,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    first_row: int = 0,
) -> AttackResult:
    """Square Attack on [N,H,W,3] uint8 patches with at most ``queries`` detector runs per patch."""
    eps = check_eps(eps)
    check_count(queries, "queries", f"leave it out for {DEFAULT_QUERIES}")
    return _square(target, checked_patches(patches), eps, queries, p_init, seed, batch_size, on_progress, first_row)


def _square(
    target, patches, eps, queries, p_init, seed, batch_size, on_progress, first_row, start=None
) -> AttackResult:
    """:func:`square` on arguments known to be valid; ``start``: each patch's warm start, or None."""
    budget = queries or DEFAULT_QUERIES
    return attack_in_batches(
        patches,
        batch_size,
        seed,
        first_row,
        on_progress,
        lambda original, rng, part: _square_batch(
            target, original, eps, budget, p_init, rng, None if start is None else start[part]
        ),
    )


def _square_batch(
    target: AttackTarget,
    original: np.ndarray,
    eps: int,
    budget: int,
    p_init: float,
    rng: np.random.Generator,
    warm: np.ndarray | None = None,
):
    count, height, width, channels = original.shape
    low, high = ball(original, eps)
    base = original.astype(np.int16)
    current = original.copy()
    margin = target.margin(current)  # a patch already at the goal stays as it is
    runs = len(target.detectors)  # model runs per judgement
    used = np.full(count, runs, dtype=np.int64)
    judged = 2  # the original and the stripes (and a warm start) count against the budget
    if warm is not None:
        judged += 1
        active = np.flatnonzero(margin > 0)
        warm = np.clip(warm[active], low[active], high[active])
        warm_margin = target.margin(warm)
        used[active] += runs
        nearer = warm_margin < margin[active]
        current[active[nearer]], margin[active[nearer]] = warm[nearer], warm_margin[nearer]
    proposals = np.zeros(count, dtype=np.int64)
    stripes = rng.choice(np.array([-eps, eps], dtype=np.int16), size=(count, 1, width, channels))
    active = np.flatnonzero(margin > 0)
    if len(active):
        # the stripes are kept where they help: a patch they push away from the goal starts from the original, so
        # a larger eps, whose stripes are stronger, never starts further from the goal than the patch itself
        striped = np.clip(base[active] + stripes[active], low[active], high[active])
        striped_margin = target.margin(striped)
        used[active] += runs
        better = striped_margin < margin[active]
        current[active[better]] = striped[better]
        margin[active[better]] = striped_margin[better]
    for query in range(judged, budget):
        active = np.flatnonzero(margin > 0)
        if not len(active):
            break
        side = int(
            np.clip(round(np.sqrt(square_fraction(query, budget, p_init) * height * width)), 1, min(height, width) - 1)
        )
        candidates = current[active].copy()
        for row, patch in enumerate(active):
            top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            window = (slice(top, top + side), slice(left, left + side))
            shift = rng.choice(np.array([-eps, eps], dtype=np.int16), size=(1, 1, channels))
            candidates[row][window] = np.clip(base[patch][window] + shift, low[patch][window], high[patch][window])
        new_margin = target.margin(candidates)
        used[active] += runs
        proposals[active] += 1
        better = new_margin < margin[active]
        current[active[better]] = candidates[better]
        margin[active[better]] = new_margin[better]
    return current, proposals, np.zeros(count, dtype=bool), used


register_attack(
    Attack(
        name="square",
        summary="black-box Square Attack, detector only (no companion; works on the hard SPAM+SVM).",
        run=lambda settings, target, patches, call: _square(
            target,
            patches,
            settings.eps,
            settings.queries,
            DEFAULT_P_INIT,
            settings.seed,
            settings.batch_size,
            call.on_progress,
            call.first_row,
            call.start,
        ),
        parameters=lambda settings: {"queries": settings.queries or DEFAULT_QUERIES, "p_init": DEFAULT_P_INIT},
        options={"queries": str(DEFAULT_QUERIES)},
        needs_gradient=False,
        warm_starts=True,
    )
)
