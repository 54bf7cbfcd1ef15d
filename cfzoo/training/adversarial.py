"""Adversarial training (the robust variants): integer-domain PGD examples made inside training, and the signs
that such training collapsed.

Each step, a share of the batch is replaced by PGD examples against the network as it is at that step
(Madry et al. 2018), made as ``cfzoo robustness`` makes them (cfzoo/ops/attacks/pgd.py): a random integer start in
the L-infinity ball of radius eps, drawn per patch, then signed steps of 2.5 eps / steps in floats, each projected
back into the ball and into 0..255. The gradient is taken at the rounded iterate, and each patch keeps the rounded
iterate with the highest loss: every example is a uint8 image an attacker could store, and the strongest one the
search met (the robustness battery, too, counts a patch as fooled by any rounded iterate). Both classes are
attacked, each towards the other label (hiding and framing). The examples are made with the network in eval mode,
as it is attacked after training.

The first recipe (3 steps of one whole gray level, the last iterate kept) left PGD and APGD at eps 1 as strong as
before: its examples were weaker than the evaluation's (docs/robustness.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Below this clean accuracy on the training batches (late in training) adversarial training has collapsed to chance.
COLLAPSED_ACCURACY = 0.6
#: Below this share of attacks that succeed in training (late in training, after it was higher early on) the
#: attack in training stopped finding examples: true robustness or masked gradients, which only a gradient-free
#: attack (Square, in ``cfzoo robustness``) tells apart.
STALLED_ATTACK = 0.02
#: Above this share of the early one, late in training, the attack in training succeeds about as often as it did at
#: the start: adversarial training made no headway (a network without the capacity to resist, or too small a step).
NO_HEADWAY = 0.9


@dataclass(frozen=True)
class AdversarialTraining:
    """PGD inside training: ``share`` of every batch attacked, eps drawn per patch from ``eps`` (gray levels),
    ``steps`` signed steps of 2.5 eps / ``steps``."""

    eps: tuple[int, ...] = (1, 2)
    steps: int = 5
    share: float = 0.5


def integer_pgd(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    radius: torch.Tensor,
    steps: int,
    rng: np.random.Generator,
) -> torch.Tensor:
    """PGD examples of ``images`` (float [N,3,H,W] holding integers 0..255) that raise the cross-entropy of
    ``targets``, each within its ``radius`` [N] (integer gray levels) of the original and inside 0..255: per patch,
    the rounded iterate with the highest loss."""
    radius = radius.to(images).view(-1, 1, 1, 1)
    low, high = (images - radius).clamp(0, 255), (images + radius).clamp(0, 255)
    uniform = torch.from_numpy(rng.random(images.shape, dtype=np.float32)).to(images.device)
    start = torch.floor(uniform * (2 * radius + 1)) - radius  # integers -r..r, uniform
    iterate = torch.minimum(torch.maximum(images + start, low), high)
    step_size = 2.5 * radius / steps
    best, best_loss = iterate.clone(), torch.full((len(images),), -torch.inf, device=images.device)
    was_training = model.training
    model.eval()
    try:
        for step in range(steps + 1):
            last = step == steps  # judged only: no gradient, no graph
            rounded = torch.round(iterate).requires_grad_(not last)  # bounds are integers: stays in the ball
            with torch.set_grad_enabled(not last):
                loss = F.cross_entropy(model(rounded), targets, reduction="none")
            better = loss.detach() > best_loss
            best[better], best_loss[better] = rounded.detach()[better], loss.detach()[better]
            if last:
                break
            (gradient,) = torch.autograd.grad(loss.sum(), rounded)
            iterate = torch.minimum(torch.maximum(iterate + step_size * gradient.sign(), low), high)
    finally:
        model.train(was_training)
    return best


def adversarial_batch(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    settings: AdversarialTraining,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, np.ndarray, float]:
    """(the batch with ``settings.share`` of its rows replaced by PGD examples, those rows, the share of them the
    network misclassifies)."""
    count = max(1, round(settings.share * len(images)))
    rows = np.sort(rng.permutation(len(images))[:count])
    radius = torch.from_numpy(rng.choice(np.asarray(settings.eps, dtype=np.float32), size=count))
    index = torch.from_numpy(rows).to(images.device)
    attacked = integer_pgd(model, images[index], targets[index], radius, settings.steps, rng)
    with torch.no_grad():
        model.eval()
        fooled = float((model(attacked).argmax(dim=1) != targets[index]).float().mean())
        model.train()
    mixed = images.clone()
    mixed[index] = attacked
    return mixed, rows, fooled


def collapse_flags(attack_success: list[float], clean_accuracy: list[float]) -> list[str]:
    """What the training curves say went wrong, one line each (none: adversarial training looks sound). Judged on
    the last tenth of the steps against the first tenth."""
    if not attack_success:
        return []
    tenth = max(1, len(attack_success) // 10)
    early_success, late_success = np.mean(attack_success[:tenth]), np.mean(attack_success[-tenth:])
    late_accuracy = np.mean(clean_accuracy[-tenth:])
    flags = []
    if late_accuracy < COLLAPSED_ACCURACY:
        flags.append(
            f"collapsed: clean accuracy on the training batches fell to {100 * late_accuracy:.1f}% (chance is 50%)"
        )
    if late_success < STALLED_ATTACK <= early_success:
        flags.append(
            f"the attack in training stopped finding examples ({100 * early_success:.1f}% -> {100 * late_success:.1f}% "
            "succeed): robust, or masked gradients; check with Square (cfzoo robustness)"
        )
    elif late_success >= STALLED_ATTACK and late_success >= NO_HEADWAY * early_success:
        flags.append(
            f"no headway: the attack in training succeeds about as often at the end as at the start "
            f"({100 * early_success:.1f}% -> {100 * late_success:.1f}%); expect little robustness"
        )
    return flags
