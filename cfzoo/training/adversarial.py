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

Two objectives weigh what the network learns from those examples. Madry's (the default): the attacked rows replace
their clean ones in the batch and are trained on their true label; the attack raises the cross-entropy of that
label. TRADES (Zhang et al. 2019, ``trades_beta``): every clean row is trained on its label, plus beta times the
KL divergence between the network's clean and adversarial predictions on the attacked rows; the attack raises that
divergence. Beta sets the trade between clean accuracy and robustness explicitly.

The first recipe (3 steps of one whole gray level, the last iterate kept) left PGD and APGD at eps 1 as strong as
before: its examples were weaker than the evaluation's (docs/robustness.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

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


#: What an attack in training raises: logits [N,2] -> one loss per patch [N].
Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AdversarialTraining:
    """PGD inside training: ``share`` of every batch attacked, eps drawn per patch from ``eps`` (gray levels),
    ``steps`` signed steps of 2.5 eps / ``steps``; trained with Madry's objective, or with TRADES when
    ``trades_beta`` is set. TRADES as published attacks every row; here, too, only ``share`` of them, which keeps
    a step about as costly as Madry's."""

    eps: tuple[int, ...] = (1, 2)
    steps: int = 5
    share: float = 0.5
    trades_beta: float | None = None

    def identity(self) -> dict:
        """The settings as a run's snapshot and record keep them; ``trades_beta`` only when set, so that snapshots
        taken before TRADES existed still resume."""
        settings = asdict(self)
        if self.trades_beta is None:
            del settings["trades_beta"]
        return settings

    def objective_text(self) -> str:
        if self.trades_beta is None:
            return (
                "Madry: the attack raises the cross-entropy of the true label (both classes towards the other label); "
                "the attacked rows replace their clean ones, trained on their true label"
            )
        return (
            f"TRADES, beta {self.trades_beta:g}: the attack raises the KL divergence from the clean prediction; "
            "cross-entropy on every clean row plus beta times that divergence on the attacked rows"
        )


def cross_entropy_of(targets: torch.Tensor) -> Objective:
    """The cross-entropy of ``targets``, per patch: raising it moves each patch towards the other label."""
    return lambda logits: F.cross_entropy(logits, targets, reduction="none")


def divergence_from(clean_logits: torch.Tensor) -> Objective:
    """The KL divergence of the predictions from those of ``clean_logits``, per patch (TRADES's inner objective)."""
    reference = F.softmax(clean_logits.detach(), dim=1)
    return lambda logits: F.kl_div(F.log_softmax(logits, dim=1), reference, reduction="none").sum(dim=1)


def integer_pgd(
    model: nn.Module,
    images: torch.Tensor,
    objective: Objective,
    radius: torch.Tensor,
    steps: int,
    rng: np.random.Generator,
) -> torch.Tensor:
    """PGD examples of ``images`` (float [N,3,H,W] holding integers 0..255) that raise ``objective``, each within
    its ``radius`` [N] (integer gray levels) of the original and inside 0..255: per patch, the rounded iterate with
    the highest loss."""
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
                loss = objective(model(rounded))
            better = loss.detach() > best_loss
            best[better], best_loss[better] = rounded.detach()[better], loss.detach()[better]
            if last:
                break
            (gradient,) = torch.autograd.grad(loss.sum(), rounded)
            iterate = torch.minimum(torch.maximum(iterate + step_size * gradient.sign(), low), high)
    finally:
        model.train(was_training)
    return best


@dataclass(frozen=True)
class AdversarialBatch:
    """What a training step learns from: ``images`` to feed the network, the batch's ``rows`` that were attacked,
    and the share of those examples the network misclassified (``fooled``)."""

    images: torch.Tensor
    rows: np.ndarray
    fooled: float
    trades_beta: float | None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of the network's ``logits`` for :attr:`images`."""
        if self.trades_beta is None:
            return F.cross_entropy(logits, targets)
        clean, adversarial = logits[: len(targets)], logits[len(targets) :]
        divergence = F.kl_div(
            F.log_softmax(adversarial, dim=1), F.softmax(clean[self.rows], dim=1), reduction="batchmean"
        )
        return F.cross_entropy(clean, targets) + self.trades_beta * divergence

    def clean_correct(self, logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        """Per clean row the network saw in :attr:`images`, whether ``logits`` call it right."""
        if self.trades_beta is None:
            clean = np.ones(len(targets), dtype=bool)
            clean[self.rows] = False
            return (logits.detach().argmax(dim=1) == targets).cpu().numpy()[clean]
        return (logits.detach()[: len(targets)].argmax(dim=1) == targets).cpu().numpy()


def adversarial_batch(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    settings: AdversarialTraining,
    rng: np.random.Generator,
) -> AdversarialBatch:
    """PGD examples of ``settings.share`` of the batch's rows, in the form the objective trains on: Madry's, the
    batch with those rows replaced; TRADES's, the clean batch followed by the examples."""
    count = max(1, round(settings.share * len(images)))
    rows = np.sort(rng.permutation(len(images))[:count])
    radius = torch.from_numpy(rng.choice(np.asarray(settings.eps, dtype=np.float32), size=count))
    index = torch.from_numpy(rows).to(images.device)
    if settings.trades_beta is None:
        objective = cross_entropy_of(targets[index])
    else:
        with torch.no_grad():
            model.eval()
            objective = divergence_from(model(images[index]))
            model.train()
    attacked = integer_pgd(model, images[index], objective, radius, settings.steps, rng)
    with torch.no_grad():
        model.eval()
        fooled = float((model(attacked).argmax(dim=1) != targets[index]).float().mean())
        model.train()
    if settings.trades_beta is None:
        mixed = images.clone()
        mixed[index] = attacked
        return AdversarialBatch(mixed, rows, fooled, None)
    return AdversarialBatch(torch.cat([images, attacked]), rows, fooled, settings.trades_beta)


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
