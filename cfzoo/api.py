"""cfzoo's Python API: load a detector (cfzoo's, a registered one, or an ONNX file), score images, detect,
attack, restore. Documented, with examples that run as tests, in docs/api.md.

One layout for the user: images and patches are uint8 RGB arrays as people hold them, H x W x 3, and batches
N x 128 x 128 x 3. The model contract's float32 [N,3,128,128] stays inside.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cfzoo.errors import CfzooError
from cfzoo.images import as_rgb_uint8, load_image
from cfzoo.ops.attacks.battery import check_settings, needs_gradient, run_attack
from cfzoo.ops.attacks.common import DEFAULT_BATCH_SIZE, AttackSettings, AttackTarget
from cfzoo.ops.attacks.registry import attack_names, get_attack
from cfzoo.ops.conclusion import concluder_for
from cfzoo.ops.detect import score_image
from cfzoo.ops.restore import restore_image
from cfzoo.ops.scoring import called_manipulated
from cfzoo.patches import DEFAULT_STRIDE, PATCH_SIZE
from cfzoo.results import Conclusion, DetectorVerdict
from cfzoo.zoo.catalog import open_companion, open_detector, select_detectors
from cfzoo.zoo.restorers import DEFAULT_TILE
from cfzoo.zoo.runtime import Detector, clear_session_cache

ImageLike = np.ndarray | str | os.PathLike


class Model:
    """One detector, whatever made it. ``id``, ``task``, ``family`` (``external`` for one cfzoo did not make) and
    ``threshold``: a patch whose probability of "manipulated" exceeds it is called manipulated."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector

    def __repr__(self) -> str:
        return f"Model(id={self.id!r}, task={self.task!r}, family={self.family!r})"

    @property
    def id(self) -> str:
        return self._detector.entry.id

    @property
    def task(self) -> str:
        return self._detector.entry.task

    @property
    def family(self) -> str:
        return self._detector.entry.family

    @property
    def threshold(self) -> float:
        return float(self._detector.threshold)

    def predict_proba(self, patches: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Probability that each 128 x 128 patch is manipulated: [N] float64 for [N,128,128,3] uint8 (a float for
        one 128 x 128 x 3 patch)."""
        batch, single = _patch_batch(patches)
        probability, _ = called_manipulated(self._detector, batch, batch_size)
        return probability[0] if single else probability

    def predict(self, patches: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Whether each patch is called manipulated (probability above :attr:`threshold`)."""
        batch, single = _patch_batch(patches)
        _, called = called_manipulated(self._detector, batch, batch_size)
        return called[0] if single else called

    def detect(
        self, image: ImageLike, stride: int = DEFAULT_STRIDE, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> DetectorVerdict:
        """The verdict on a whole image (an H x W x 3 uint8 array or a file, at least 128 x 128): manipulated when
        more than half of its patches are called manipulated, as ``cfzoo detect`` says."""
        return score_image(_pixels(image), [self._detector], stride, batch_size, source=_name(image)).verdicts[0]


def load_detector(model: str | os.PathLike[str], *, task: str | None = None, providers: str = "auto") -> Model:
    """A detector by id (``"bayar2016-jpeg70"``, or one you registered) or from an ``.onnx`` file that follows
    docs/contract.md (``task`` says what a file not made by cfzoo detects)."""
    return Model(open_detector(model, task=task, providers=providers))


def register(
    path,
    id: str,
    task: str,
    *,
    layout: str = "NCHW",
    input_range: int = 255,
    outputs: str = "two-logits",
    manipulated_class: int = 1,
    threshold: float = 0.5,
    companion: bool = True,
) -> Model:
    """Add a detector cfzoo did not make to the user zoo, as ``cfzoo register`` does, and load it: ``path`` is an
    ONNX file, or a ``torch.nn.Module`` (exported by torch first, no export code of yours needed). The adapter
    arguments say how its input and output depart from docs/contract.md. Needs the ``train`` extra."""
    from cfzoo.export.third_party import Adapter, register_model, register_module

    adapter = Adapter(layout=layout, input_range=input_range, outputs=outputs, manipulated_class=manipulated_class)
    if isinstance(path, (str, os.PathLike)):
        register_model(path, id, task, adapter, threshold, companion)
    else:
        register_module(path, id, task, adapter, threshold=threshold, companion=companion)
    clear_session_cache()  # an id registered again names new files
    return load_detector(id)


def detect(
    image: ImageLike,
    *,
    families: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] = (),
    stride: int = DEFAULT_STRIDE,
    providers: str = "auto",
    variant: str = "standard",
) -> list[DetectorVerdict]:
    """Every available detector's verdict on one image (an array or a file), as ``cfzoo detect``: the zoo's
    families x tasks (default all that are here) of ``variant`` (``standard``, ``wild``: trained through platform
    laundering, or ``robust``: adversarially trained), or only ``models`` (ids or .onnx files) when they are given."""
    selection = select_detectors(families, tasks, providers, models, variant)
    return score_image(_pixels(image), selection.detectors, stride, source=_name(image)).verdicts


def conclude(image: ImageLike, *, stride: int = DEFAULT_STRIDE, providers: str = "auto") -> Conclusion:
    """What was most likely done to one image (an array or a file), as ``cfzoo detect`` concludes it: every zoo
    detector reads the image, then the conclusion model gives each manipulation's probability and that of "none"."""
    selection = select_detectors(None, None, providers)
    concluder, why_not = concluder_for(selection.detectors)
    if concluder is None:
        raise CfzooError(why_not.removeprefix("conclusion: "))
    return concluder.conclude(score_image(_pixels(image), selection.detectors, stride, source=_name(image)).verdicts)


def attack(
    model: Model | Sequence[Model],
    patches: np.ndarray,
    eps: int,
    *,
    method: str = "fgsm",
    iterations: int | None = None,
    restarts: int = 1,
    queries: int | None = None,
    seed: int = 0,
    survive_jpeg: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    goal: str = "hide",
    partners: np.ndarray | None = None,
) -> np.ndarray:
    """Adversarial patches against ``model``: uint8, the shape given ([N,128,128,3] or one 128 x 128 x 3 patch),
    each pixel within ``eps`` gray levels (an integer) of the original. ``method``: a registered attack
    (:func:`cfzoo.ops.attacks.registry.attacks`; ``cfzoo attack --help`` says what each does): ``fgsm`` (one step of
    eps), ``ifgsm`` (steps of 1), ``pgd`` (random start, ``iterations`` steps, ``restarts``), ``apgd`` (step-size
    free), ``square`` (black-box, at most ``queries`` detector runs per patch; needs no gradient companion), against a
    SPAM+SVM detector also the paper's feature-space descent, ``spam-prist`` (towards the SPAM of ``partners``, each
    patch's partner of the other class: its unmanipulated original when hiding) or ``spam-close``, and any attack
    registered since. ``seed`` drives the random starts and proposals. docs/attacks.md says how each one meets the
    integers. ``goal``: ``hide`` (manipulated patches made to look pristine) or ``frame`` (pristine patches made to
    look manipulated). A list of models is an ensemble, which calls a patch manipulated when any member does: hiding
    needs patches that every one of them calls pristine (the attacks that declare ``ensemble``). ``survive_jpeg=Q``
    aims at the patches as stored after JPEG at quality Q (the same attacks)."""
    models = [model] if isinstance(model, Model) else list(model)
    if not models or not all(isinstance(member, Model) for member in models):
        raise CfzooError("attack takes a Model from cfzoo.load_detector, or a list of them for an ensemble")
    batch, single = _patch_batch(patches)
    settings = AttackSettings(eps, method, iterations, batch_size, restarts, queries, seed, survive_jpeg, goal=goal)
    check_settings(settings, ensemble=len(models) > 1)
    detectors = tuple(member._detector for member in models)
    companions = tuple(open_companion(detector) if needs_gradient(method) else None for detector in detectors)
    if partners is not None:
        if not get_attack(method).needs_partners:
            raise CfzooError(
                f"partner patches are the goal of method {', '.join(attack_names(needs_partners=True))} only, not {method}; leave them out"
            )
        partners, _ = _patch_batch(partners)
    # checked above: the method fits the ensemble, the companions exist, the patches are uint8 [N,128,128,3]
    result = run_attack(settings, AttackTarget(detectors, companions), batch, partners=partners)
    return result.patches[0] if single else result.patches


def restore(
    image: ImageLike, task: str, *, discriminator: str = "vgg", tile: int = DEFAULT_TILE, providers: str = "auto"
) -> np.ndarray:
    """A median-filtered image (``task`` median3 or median7) restored by the zoo's GAN generator: H x W x 3 uint8."""
    return restore_image(_pixels(image), task, discriminator, providers, tile)


def _patch_batch(patches: np.ndarray) -> tuple[np.ndarray, bool]:
    """([N,128,128,3] uint8, whether one patch was given) or a CfzooError naming the layout expected."""
    patches = np.asarray(patches)
    single = patches.ndim == 3
    batch = patches[None] if single else patches
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (PATCH_SIZE, PATCH_SIZE, 3):
        raise CfzooError(
            f"patches must be uint8 RGB, {PATCH_SIZE} x {PATCH_SIZE} x 3 or N x {PATCH_SIZE} x {PATCH_SIZE} x 3, got a {patches.dtype} array "
            f"of shape {list(patches.shape)}; for a whole image use detect()"
        )
    return batch, single


def _pixels(image: ImageLike) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return load_image(image).pixels
    try:
        return as_rgb_uint8(image)
    except ValueError as error:
        raise CfzooError(str(error)) from None


def _name(image: ImageLike) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else "the image"


__all__ = ["Model", "load_detector", "register", "detect", "attack", "restore", "DetectorVerdict"]
