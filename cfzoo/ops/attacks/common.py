"""What every attack shares: integer eps, the uint8 patch layout, settings and results, and success after rounding.

Every attack returns uint8 patches inside the L-infinity ball of radius eps (an integer number of gray levels)
around the originals and inside 0..255. Success is what the target's detector says about those stored
integers: a patch is fooled when the detector's probability of "manipulated" is at or below its threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import CfzooError
from cfzoo.manipulations import jpeg_compress
from cfzoo.metrics import cross_entropy
from cfzoo.zoo.runtime import Detector, GradientModel, to_model_input

MANIPULATED = 1
#: The most an 8-bit pixel can move.
MAX_EPS = 255
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class AttackResult:
    """Attacked patches and what the attack did to each one."""

    patches: np.ndarray  # [N,128,128,3] uint8
    iterations: np.ndarray  # gradient steps (or black-box proposals) per patch
    zero_gradient: np.ndarray  # bool: the first gradient was zero everywhere (gradient-free attacks: all False)
    queries: np.ndarray  # model runs per patch: detector and companion calls that included it


@dataclass(frozen=True)
class AttackSettings:
    """How :func:`cfzoo.ops.attacks.battery.attack_patches` attacks: ``method`` (one of
    :data:`~cfzoo.ops.attacks.battery.METHODS`), ``eps`` in gray levels, ``iterations`` (ifgsm, pgd, apgd; None
    for each method's default), ``restarts`` (pgd), ``queries`` (square's budget per patch; None for its default),
    ``seed`` (random starts and proposals), the patches per model run, and ``survive_jpeg`` (see
    :class:`AttackTarget`)."""

    eps: int
    method: str = "fgsm"
    iterations: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    restarts: int = 1
    queries: int | None = None
    seed: int = 0
    survive_jpeg: int | None = None  # aim at the patches as stored after JPEG at this quality (ENSEMBLE_METHODS)


def check_eps(eps: int) -> int:
    """``eps`` as an int, or a CfzooError: the attack needs an integer number of gray levels, 1..255."""
    if isinstance(eps, bool) or not isinstance(eps, (int, np.integer)) or not 1 <= eps <= MAX_EPS:
        raise CfzooError(
            f"eps must be an integer number of gray levels from 1 to {MAX_EPS}, got {eps!r}; "
            "the paper uses --eps 1, the weakest noise that survives 8-bit storage"
        )
    return int(eps)


def check_count(value: int | None, what: str, hint: str) -> int | None:
    """``value`` if it is None or a positive integer, else a one-line CfzooError."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise CfzooError(f"{what} must be an integer of at least 1, got {value!r}; {hint}")
    return value


def checked_patches(patches: np.ndarray) -> np.ndarray:
    patches = np.asarray(patches)
    if patches.dtype != np.uint8 or patches.ndim != 4 or patches.shape[3] != 3:
        raise CfzooError(f"patches must be [N,H,W,3] uint8 RGB, got a {patches.dtype} array of shape {list(patches.shape)}")
    return patches


def ball(original: np.ndarray, eps: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) int16 bounds of the integer eps-ball around ``original``, inside 0..255."""
    original = original.astype(np.int16)
    return np.maximum(original - eps, 0), np.minimum(original + eps, 255)


def manipulated_margin(detector: Detector, patches: np.ndarray) -> np.ndarray:
    """logit(manipulated) - logit(pristine) minus the detector's threshold in logit units, per uint8 patch: the
    patch is fooled where this is <= 0. The attacks minimise it (square) or check it (all)."""
    logits = detector.logits(to_model_input(patches)).astype(np.float64)
    threshold = float(np.clip(detector.threshold, 1e-12, 1 - 1e-12))
    return logits[:, 1] - logits[:, 0] - np.log(threshold / (1 - threshold))


@dataclass(frozen=True)
class AttackTarget:
    """What an attack aims at: one detector, or an ensemble that is fooled only when every member is. Each
    detector comes with its gradient companion, or None where the attack needs none (square).

    An ensemble's margin is its members' largest (:func:`manipulated_margin`), and its loss the sum of their
    cross-entropies; its gradient sums theirs, each scaled to unit mean absolute value per patch, so that a
    member whose loss is steep does not drown the others' directions.

    ``survive_jpeg``: aim at the patches as a platform stores them after JPEG at this quality. The margin judges
    the recompressed patches, and the gradient is taken at the recompressed (rounded) iterate and applied to the
    iterate itself (a straight-through estimate: JPEG has no useful gradient of its own). The patches returned
    are those to upload, before recompression."""

    detectors: tuple[Detector, ...]
    companions: tuple[GradientModel | None, ...]
    survive_jpeg: int | None = None

    @classmethod
    def of(cls, detector: Detector, companion: GradientModel | None = None) -> AttackTarget:
        return cls((detector,), (companion,))

    @property
    def is_ensemble(self) -> bool:
        return len(self.detectors) > 1

    @property
    def has_gradient(self) -> bool:
        return all(companion is not None for companion in self.companions)

    def margin(self, patches: np.ndarray) -> np.ndarray:
        """Per uint8 patch: <= 0 exactly when every member calls it pristine (run DEFAULT_BATCH_SIZE at a time)."""
        if not len(patches):
            return np.zeros(0)
        patches = self._as_stored(patches)
        return np.concatenate([
            np.max([manipulated_margin(detector, patches[start:start + DEFAULT_BATCH_SIZE]) for detector in self.detectors], axis=0)
            for start in range(0, len(patches), DEFAULT_BATCH_SIZE)
        ])

    def loss_and_gradient(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(loss [N], its gradient [N,H,W,3]) at float [N,H,W,3] images: the cross-entropy for the label
        manipulated (summed over members, their gradients scaled as the class says)."""
        labels = np.full(len(images), MANIPULATED, dtype=np.int64)
        if self.survive_jpeg is not None:
            images = self._as_stored(np.rint(images).astype(np.uint8))
        contract = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
        total_loss, total_gradient = np.zeros(len(images)), np.zeros(images.shape, dtype=np.float32)
        for companion in self.companions:
            logits, gradient = companion.logits_and_gradient(contract, labels)
            gradient = gradient.transpose(0, 2, 3, 1)
            if self.is_ensemble:
                scale = np.abs(gradient).reshape(len(images), -1).mean(axis=1)
                gradient = gradient / np.where(scale > 0, scale, 1.0)[:, None, None, None]
            total_loss += cross_entropy(logits, MANIPULATED)
            total_gradient += gradient
        return total_loss, total_gradient

    def _as_stored(self, patches: np.ndarray) -> np.ndarray:
        if self.survive_jpeg is None:
            return patches
        return np.stack([jpeg_compress(patch, self.survive_jpeg) for patch in patches])


def parse_survive(text: str | None) -> int | None:
    """The JPEG quality of ``--survive jpeg:Q`` (None for None), or a one-line CfzooError."""
    if text is None:
        return None
    kind, _, quality = text.partition(":")
    if kind != "jpeg" or not quality.isdigit() or not 1 <= int(quality) <= 100:
        raise CfzooError(f"--survive {text!r}: give jpeg:Q with a JPEG quality Q from 1 to 100, e.g. jpeg:90")
    return int(quality)


def attack_in_batches(
    patches: np.ndarray, batch_size: int, seed: int, first_row: int, on_progress: ProgressCallback | None,
    attack_batch: Callable[[np.ndarray, np.random.Generator, slice], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> AttackResult:
    """Run ``attack_batch(original, rng, part)`` -> (patches, iterations, zero_gradient, queries) over batches (``part``:
    where the batch lies in ``patches``, for per-patch data that travels beside them); each batch
    draws from ``default_rng([seed, first_row + its first row])``, so a set attacked in pieces (``first_row`` where
    each piece starts) draws what one call would."""
    attacked = np.empty_like(patches)
    iterations = np.zeros(len(patches), dtype=np.int64)
    zero_gradient = np.zeros(len(patches), dtype=bool)
    queries = np.zeros(len(patches), dtype=np.int64)
    for start in range(0, len(patches), batch_size):
        original = patches[start:start + batch_size]
        part = slice(start, start + len(original))
        rng = np.random.default_rng([seed, first_row + start])
        attacked[part], iterations[part], zero_gradient[part], queries[part] = attack_batch(original, rng, part)
        if on_progress is not None:
            on_progress(start + len(original), len(patches))
    return AttackResult(attacked, iterations, zero_gradient, queries)
