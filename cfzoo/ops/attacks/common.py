"""What every attack shares: integer eps, the uint8 patch layout, the goal, settings and results, and success after
rounding.

Every attack returns uint8 patches inside the L-infinity ball of radius eps (an integer number of gray levels)
around the originals and inside 0..255. Success is what the target's detector says about those stored
integers. Two goals (:data:`GOALS`): ``hide`` a manipulation (manipulated patches; fooled when the detector's
probability of "manipulated" is at or below its threshold) or ``frame`` an untouched photo (pristine patches;
fooled when it is above, so the detector accuses them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import CfzooError, check_count, option
from cfzoo.manipulations import jpeg_compress, resize
from cfzoo.metrics import cross_entropy
from cfzoo.ops.scoring import DEFAULT_BATCH_SIZE, manipulated_margin
from cfzoo.patches import PATCH_SIZE, cut_patches, patch_grid
from cfzoo.zoo.runtime import Detector, GradientModel

PRISTINE, MANIPULATED = 0, 1
#: What an attack is after: ``hide`` pushes manipulated patches to "pristine", ``frame`` pristine ones to
#: "manipulated" (counter-forensics' other half: an innocent photo made to look manipulated).
GOALS = ("hide", "frame")
#: The most an 8-bit pixel can move.
MAX_EPS = 255


@dataclass(frozen=True)
class AttackResult:
    """Attacked patches and what the attack did to each one."""

    patches: np.ndarray  # [N,128,128,3] uint8
    iterations: np.ndarray  # gradient steps (or black-box proposals) per patch
    zero_gradient: np.ndarray  # bool: the first gradient was zero everywhere (gradient-free attacks: all False)
    queries: np.ndarray  # model runs per patch: detector and companion calls that included it


@dataclass(frozen=True)
class AttackSettings:
    """How :func:`cfzoo.ops.attacks.battery.attack_patches` attacks: ``method`` (a registered attack,
    :func:`cfzoo.ops.attacks.registry.attacks`), ``eps`` in gray levels, the method's own options (``iterations``,
    ``restarts``, ``queries``: None or 1 for its defaults), ``seed`` (random starts and proposals), the patches per
    model run, ``survive_jpeg`` or ``survive_resize`` (see :class:`AttackTarget`) and the ``goal`` (:data:`GOALS`).

    Built only when valid: an unknown method or goal, an eps that is not an integer 1..255, an option the method
    does not take, a count below 1 or a platform step the method cannot aim through is a one-line CfzooError here."""

    eps: int
    method: str = "fgsm"
    iterations: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    restarts: int = 1
    queries: int | None = None
    seed: int = 0
    survive_jpeg: int | None = None  # aim at the patches as stored after JPEG at this quality (ensemble attacks)
    survive_resize: float | None = None  # aim at the image as a platform downscales it by this factor (one IMAGE)
    goal: str = "hide"

    def __post_init__(self) -> None:
        from cfzoo.ops.attacks.registry import attack_names, get_attack, option_owners

        attack = get_attack(self.method)
        check_goal(self.goal)
        object.__setattr__(self, "eps", check_eps(self.eps))
        check_count(self.batch_size, option("batch_size"), "it is the patches per model run")
        for name, value in (("iterations", self.iterations), ("queries", self.queries), ("restarts", self.restarts)):
            check_count(value, name, "leave it out for the method's default")
            if value not in (None, 1 if name == "restarts" else None) and name not in attack.options:
                raise CfzooError(
                    f"{option(name)} applies to {option('method')} {', '.join(option_owners(name))} only, not {self.method}"
                )
        if self.survive_jpeg is not None and self.survive_resize is not None:
            raise CfzooError("survive one platform step at a time: JPEG or resize, not both")
        for name, text in (
            ("survive_jpeg", f"jpeg:{self.survive_jpeg}"),
            ("survive_resize", f"resize:{self.survive_resize}"),
        ):
            if getattr(self, name) is None:
                continue
            if not attack.ensemble:
                raise CfzooError(
                    f"{option(name, '--survive')} works with {option('method')} {', '.join(attack_names(ensemble=True))}, not {self.method}"
                )
            parse_survive(text)  # a one-line error for a quality or factor out of range


def check_eps(eps: int) -> int:
    """``eps`` as an int, or a CfzooError: the attack needs an integer number of gray levels, 1..255."""
    if isinstance(eps, bool) or not isinstance(eps, (int, np.integer)) or not 1 <= eps <= MAX_EPS:
        raise CfzooError(
            f"eps must be an integer number of gray levels from 1 to {MAX_EPS}, got {eps!r}; "
            "the paper uses --eps 1, the weakest noise that survives 8-bit storage"
        )
    return int(eps)


def check_goal(goal: str) -> str:
    """``goal`` if it is one of :data:`GOALS`, else a one-line CfzooError."""
    if goal not in GOALS:
        raise CfzooError(
            f"unknown goal {goal!r}; choose hide (manipulated patches made to look pristine) or frame (pristine patches "
            "made to look manipulated)"
        )
    return goal


def goal_margin(decision_margin: np.ndarray, goal: str) -> np.ndarray:
    """The attacker's margin, from the detector's (:func:`manipulated_margin`, above 0 where it calls a patch
    manipulated): at or below 0 exactly where the attack reached ``goal``. Framing succeeds where the detector's
    margin is above 0, so its margin is the next float above minus the detector's (at or below 0 exactly where
    the detector's is strictly above 0)."""
    if goal == "hide":
        return decision_margin
    return np.nextafter(-np.asarray(decision_margin, dtype=np.float64), np.inf)


def checked_patches(patches: np.ndarray) -> np.ndarray:
    patches = np.asarray(patches)
    if patches.dtype != np.uint8 or patches.ndim != 4 or patches.shape[3] != 3:
        raise CfzooError(
            f"patches must be [N,H,W,3] uint8 RGB, got a {patches.dtype} array of shape {list(patches.shape)}"
        )
    return patches


def ball(original: np.ndarray, eps: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) int16 bounds of the integer eps-ball around ``original``, inside 0..255."""
    original = original.astype(np.int16)
    return np.maximum(original - eps, 0), np.minimum(original + eps, 255)


@dataclass(frozen=True)
class AttackTarget:
    """What an attack aims at: one detector, or an ensemble, which calls a patch manipulated when any member does.
    Each detector comes with its gradient companion, or None where the attack needs none (square).

    ``goal`` (:data:`GOALS`): ``hide`` is fooled when every member calls the patch pristine, ``frame`` when the
    ensemble calls it manipulated. An ensemble's decision margin is its members' largest
    (:func:`manipulated_margin`), the attacker's margin follows from it (:func:`goal_margin`), and its loss is the
    sum of the members' cross-entropies for the label the patch truly has (manipulated when hiding, pristine when
    framing), which the attacks ascend; its gradient sums theirs, each scaled to unit mean absolute value per
    patch, so that a member whose loss is steep does not drown the others' directions.

    ``survive_jpeg``: aim at the patches as a platform stores them after JPEG at this quality. The margin judges
    the recompressed patches, and the gradient is taken at the recompressed (rounded) iterate and applied to the
    iterate itself (a straight-through estimate: JPEG has no useful gradient of its own). The patches returned
    are those to upload, before recompression.

    ``survive_resize``: aim at whole images as a platform downscales them by this factor (bicubic, as
    :func:`cfzoo.manipulations.resize`): each sample is a full-size image, judged by the patches of the `cfzoo
    detect` grid of its downscaled copy; it is fooled when every one of them is. The gradient at those patches is
    pulled back through the resampling, which is linear (:func:`resampling_matrix`; exact but for the rounding).
    """

    detectors: tuple[Detector, ...]
    companions: tuple[GradientModel | None, ...]
    survive_jpeg: int | None = None
    survive_resize: float | None = None
    #: Patches per model run when the target judges or differentiates (the settings' ``batch_size``).
    batch_size: int = DEFAULT_BATCH_SIZE
    goal: str = "hide"

    @classmethod
    def of(cls, detector: Detector, companion: GradientModel | None = None) -> AttackTarget:
        return cls((detector,), (companion,))

    @property
    def is_ensemble(self) -> bool:
        return len(self.detectors) > 1

    @property
    def has_gradient(self) -> bool:
        return all(companion is not None for companion in self.companions)

    @property
    def true_label(self) -> int:
        """The label of the patches attacked (the one whose cross-entropy the attacks ascend)."""
        return MANIPULATED if self.goal == "hide" else PRISTINE

    def margin(self, patches: np.ndarray) -> np.ndarray:
        """The attacker's margin per uint8 sample: <= 0 exactly when the attack reached its goal (hiding: every
        member calls every patch the sample becomes pristine; framing: some member calls one manipulated)."""
        return goal_margin(self.decision_margin(patches), self.goal)

    def decision_margin(self, patches: np.ndarray) -> np.ndarray:
        """Per uint8 sample: above 0 exactly when some member calls some patch it becomes manipulated (run
        ``batch_size`` patches at a time)."""
        if not len(patches):
            return np.zeros(0)
        views, owners = self._views(patches)
        per_view = np.max([manipulated_margin(detector, views, self.batch_size) for detector in self.detectors], axis=0)
        margins = np.full(len(patches), -np.inf)
        np.maximum.at(margins, owners, per_view)
        return margins

    def loss_and_gradient(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(loss [N], its gradient [N,H,W,3]) at float [N,H,W,3] images: the cross-entropy for the patches' true
        label (summed over members and over the patches a sample becomes, the members' gradients scaled as the
        class says), which the attacks ascend."""
        if self.survive_jpeg is None and self.survive_resize is None:
            views, owners = images, np.arange(len(images))
        else:
            views, owners = self._views(np.clip(np.rint(images), 0, 255).astype(np.uint8))
        labels = np.full(len(views), self.true_label, dtype=np.int64)
        contract = np.ascontiguousarray(views.transpose(0, 3, 1, 2), dtype=np.float32)
        view_loss, view_gradient = np.zeros(len(views)), None
        for companion in self.companions:
            gradients = []
            for start in range(0, len(views), self.batch_size):
                part = slice(start, start + self.batch_size)
                logits, gradient = companion.logits_and_gradient(contract[part], labels[part])
                if self.is_ensemble:
                    scale = np.abs(gradient).reshape(len(gradient), -1).mean(axis=1)
                    gradient = gradient / np.where(scale > 0, scale, 1.0)[:, None, None, None]
                view_loss[part] += cross_entropy(logits, self.true_label)
                gradients.append(gradient)
            gradient = np.concatenate(gradients).transpose(0, 2, 3, 1)
            view_gradient = np.ascontiguousarray(gradient) if view_gradient is None else view_gradient + gradient
        loss = np.bincount(owners, weights=view_loss, minlength=len(images))
        if self.survive_resize is None:
            return loss, view_gradient
        return loss, self._pulled_back(view_gradient, owners, images.shape)

    def _views(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the uint8 128-pixel patches the detectors read once the samples are stored, the sample each came from)."""
        if self.survive_resize is not None:
            small = [resize(image, self.survive_resize) for image in patches]
            grid = patch_grid(*small[0].shape[:2])
            return np.concatenate([cut_patches(image, grid) for image in small]), np.repeat(
                np.arange(len(patches)), len(grid)
            )
        if self.survive_jpeg is not None:
            patches = np.stack([jpeg_compress(patch, self.survive_jpeg) for patch in patches])
        return patches, np.arange(len(patches))

    def _pulled_back(self, view_gradient: np.ndarray, owners: np.ndarray, shape: tuple) -> np.ndarray:
        """The gradient on the full-size samples: each patch's gradient added into the downscaled image at its grid
        place, then through the resampling, which is linear: rows A_h x A_w^T, so the pull-back is A_h^T g A_w."""
        height, width = shape[1:3]
        small_height, small_width = (round(length * self.survive_resize) for length in (height, width))
        rows, columns = resampling_matrix(height, small_height), resampling_matrix(width, small_width)
        grid = patch_grid(small_height, small_width)
        gradient = np.zeros(shape, dtype=np.float32)
        for sample in range(shape[0]):
            canvas = np.zeros((small_height, small_width, 3), dtype=np.float64)
            for (row, col), patch_gradient in zip(grid, view_gradient[owners == sample]):
                canvas[row : row + PATCH_SIZE, col : col + PATCH_SIZE] += patch_gradient
            gradient[sample] = np.einsum("ji,jkc,kl->ilc", rows, canvas, columns, optimize=True)
        return gradient


class RoundedIterates:
    """The best (lowest-margin) rounded iterate of each patch of a batch, which patches are fooled, and the detector
    runs each patch took: the bookkeeping of every attack that optimises in floats and is judged after rounding."""

    def __init__(self, target: AttackTarget, original: np.ndarray):
        self.target = target
        self.best = original.copy()
        self.margin = np.full(len(original), np.inf)
        self.queries = np.zeros(len(original), dtype=np.int64)
        self.judge(np.arange(len(original)), original)

    @property
    def fooled(self) -> np.ndarray:
        return self.margin <= 0

    def judge(self, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Round float candidates for ``rows``, keep each row's best; returns which of ``rows`` are now fooled."""
        if not len(rows):
            return np.zeros(0, dtype=bool)
        stored = np.rint(candidates).astype(np.uint8)
        margin = self.target.margin(stored)
        self.queries[rows] += len(self.target.detectors)
        better = margin < self.margin[rows]
        self.best[rows[better]] = stored[better]
        self.margin[rows[better]] = margin[better]
        return self.margin[rows] <= 0


@functools.cache
def resampling_matrix(source: int, target: int) -> np.ndarray:
    """A [target, source] with A @ line = the bicubic resize of a ``source``-pixel line to ``target`` pixels (PIL's
    float resampling of each column of the identity): the linear map :func:`cfzoo.manipulations.resize` applies,
    one axis at a time, before it rounds."""
    columns = []
    for index in range(source):
        unit = np.zeros((1, source), dtype=np.float32)
        unit[0, index] = 1.0
        resized = Image.fromarray(unit, mode="F").resize(
            (target, 1), resample=Image.Resampling.BICUBIC, reducing_gap=None
        )
        columns.append(np.asarray(resized, dtype=np.float64)[0])
    return np.stack(columns, axis=1)


#: ``--survive resize:F``: downscales from this factor up to just below 1.
MIN_SURVIVE_RESIZE = 0.25


def parse_survive(text: str | None) -> dict:
    """``--survive jpeg:Q`` as {"survive_jpeg": Q}, ``--survive resize:F`` as {"survive_resize": F} (the
    :class:`AttackSettings` fields; {} for None), or a one-line CfzooError."""
    if text is None:
        return {}
    kind, _, value = text.partition(":")
    if kind == "jpeg" and value.isdigit() and 1 <= int(value) <= 100:
        return {"survive_jpeg": int(value)}
    if kind == "resize":
        try:
            factor = float(value)
        except ValueError:
            factor = math.nan
        if MIN_SURVIVE_RESIZE <= factor < 1:
            return {"survive_resize": factor}
    raise CfzooError(
        f"--survive {text!r}: give jpeg:Q with a JPEG quality Q from 1 to 100 (e.g. jpeg:90), or resize:F with a "
        f"downscale factor F from {MIN_SURVIVE_RESIZE} to below 1 (e.g. resize:0.5)"
    )


def attack_in_batches(
    patches: np.ndarray,
    batch_size: int,
    seed: int,
    first_row: int,
    on_progress: ProgressCallback | None,
    attack_batch: Callable[
        [np.ndarray, np.random.Generator, slice], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    ],
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
        original = patches[start : start + batch_size]
        part = slice(start, start + len(original))
        rng = np.random.default_rng([seed, first_row + start])
        attacked[part], iterations[part], zero_gradient[part], queries[part] = attack_batch(original, rng, part)
        if on_progress is not None:
            on_progress(start + len(original), len(patches))
    return AttackResult(attacked, iterations, zero_gradient, queries)
