"""A conformance check anyone can run on a detector, in the spirit of scikit-learn's ``check_estimator``:
``cfzoo check MODEL``, ``cfzoo.testing.check_detector(model)`` and ``cfzoo register`` (before anything is written)
verify what every attack and report of cfzoo relies on, and return a pass/fail list.

The detector (by id, registered id, or a contract-following ``.onnx`` file) is run on real photos that no zoo
model was trained on (scikit-image's), before and after its task's manipulation, and on extreme patches:

- contract: input ``image`` float32 [N,3,128,128], output ``logits`` float32 [N,2], N dynamic;
- metadata: a cfzoo file's ``metadata_props`` name this model, its task and kind, and its registry threshold;
- finite: every logit is a number, on real, black, white and noise patches;
- probabilities: softmax of the logits lies in 0..1, and the threshold strictly inside it;
- batch independence: a patch scores the same alone and in a batch;
- determinism: the same batch twice gives the same logits;
- companion logits: the gradient companion gives the detector's logits (for SPAM+SVM, whose companion
  differentiates soft SPAM, a correlation of the margins above 0.9);
- companion gradient: finite, of the image's shape, not all zero, and equal to central finite differences of the
  cross-entropy (from the companion's own logits) on the pixels where it is largest, within 5% at the best of a
  few steps (central or, next to a kink, one-sided), at real patches moved off the integer lattice (where a
  piecewise-linear network often sits on a kink).

A detector registered without a companion gets the companion checks as "skipped": attacks that need a gradient
cannot run on it, and the gradient-free ones give an upper bound on its robustness.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from cfzoo.errors import CfzooError
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation
from cfzoo.metrics import cross_entropy
from cfzoo.patches import PATCH_SIZE, cut_patches, sample_positions
from cfzoo.results import CheckItem, CheckReport
from cfzoo.sample_data import skimage_data_dir
from cfzoo.zoo.catalog import open_companion, open_detector
from cfzoo.zoo.registry import SVM_DECISION_SCORE
from cfzoo.zoo.runtime import Detector, GradientModel, to_model_input

#: Photos no zoo model was trained on, and patches cut from each, before and after the task's manipulation.
CHECK_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png")
PATCHES_PER_PHOTO = 2
#: How closely a patch's logits alone and in a batch, and the companion's and the detector's, must agree.
RELATIVE, ABSOLUTE = 1e-4, 1e-4
#: How closely the companion's gradient must follow central finite differences, on its largest entries, at the
#: best of these steps (gray levels): a piecewise-linear network (ReLU, max-pooling) has kinks that a large step
#: crosses, and a small one meets float32's resolution of the loss.
FINITE_DIFFERENCE_TOLERANCE = 0.05
FINITE_DIFFERENCE_STEPS = (8, 2, 0.5, 1 / 8, 1 / 32, 1 / 128)
#: A step that moves a loss of any sensible network by far less than its float32 rounding: its difference measures
#: that rounding.
NOISE_PROBE = 2.0**-14


class Unjudged(Exception):
    """A check that cannot decide on this model (said in the report as "skipped", with why)."""


@functools.cache
def check_patches(task: str) -> np.ndarray:
    """uint8 [16,128,128,3]: 2 seeded patches of 4 photos, pristine then after ``task``, then black, white, noise."""
    pristine, manipulated = [], []
    for index, name in enumerate(CHECK_PHOTOS):
        photo = read_rgb(skimage_data_dir() / name)
        changed = apply_manipulation(task, photo)
        for source, into in ((photo, pristine), (changed, manipulated)):
            into.append(
                cut_patches(source, sample_positions(*source.shape[:2], seed=[0, index], count=PATCHES_PER_PHOTO))
            )
    noise = np.random.default_rng(0).integers(0, 256, (1, PATCH_SIZE, PATCH_SIZE, 3), dtype=np.uint8)
    extremes = [np.zeros_like(noise), np.full_like(noise, 255), noise]
    return np.concatenate([*pristine, *manipulated, *extremes])


def check_detector(model, *, task: str | None = None, companion: bool = True, providers: str = "cpu") -> CheckReport:
    """Check one detector (an id, a registered id, an ``.onnx`` path, or a :class:`cfzoo.Model`) against the
    contract; ``task`` names the task of an ``.onnx`` file cfzoo did not write; ``companion=False`` skips the
    companion's checks. Never raises for a failed check: each is an item of the report, with what was found."""
    detector = model._detector if hasattr(model, "_detector") else open_detector(model, task=task, providers=providers)
    gradient_model, missing = None, None
    if companion:
        try:
            gradient_model = open_companion(detector)
        except CfzooError as error:
            missing = str(error)
    report = check_pair(detector, gradient_model, gradient=True)
    if missing is not None:
        checks = [CheckItem(name="companion", status="fail", detail=missing), *report.checks]
        report = report.model_copy(update={"checks": checks})
    elif not companion:
        checks = [
            item.model_copy(update={"detail": "not asked for"}) if item.name.startswith("companion") else item
            for item in report.checks
        ]
        report = report.model_copy(update={"checks": checks})
    return report


def check_pair(detector: Detector, companion: GradientModel | None, gradient: bool = True) -> CheckReport:
    """The checks of :func:`check_detector` on sessions already open: ``companion`` None skips the companion's,
    ``gradient=False`` its finite differences (``cfzoo register`` has its own, against the detector graph, in
    float64 where float32 is too coarse)."""
    images = to_model_input(check_patches(detector.entry.task))
    items: list[CheckItem] = []

    def run(name: str, check: Callable[[], str]) -> None:
        try:
            items.append(CheckItem(name=name, status="pass", detail=check()))
        except Unjudged as reason:
            items.append(CheckItem(name=name, status="skipped", detail=str(reason)))
        except (AssertionError, CfzooError) as failure:
            items.append(CheckItem(name=name, status="fail", detail=str(failure).splitlines()[0]))

    run("contract", lambda: _contract(detector))
    run("metadata", lambda: _metadata(detector))
    run("finite", lambda: _finite(detector, images))
    run("probabilities", lambda: _probabilities(detector, images))
    run("batch independence", lambda: _batch_independence(detector, images))
    run("determinism", lambda: _determinism(detector, images))
    if companion is None:
        for name in ("companion logits", "companion gradient"):
            items.append(CheckItem(name=name, status="skipped", detail="no companion"))
    else:
        run("companion logits", lambda: _companion_logits(detector, companion, images))
        if gradient:
            run("companion gradient", lambda: _companion_gradient(detector, companion, images))
        else:
            items.append(CheckItem(name="companion gradient", status="skipped", detail="checked separately"))
    return CheckReport(model=detector.entry.id, task=detector.entry.task, source=detector.resolved.source, checks=items)


def _io(session) -> tuple[dict, dict]:
    return (
        {item.name: (item.type, list(item.shape)) for item in session.get_inputs()},
        {item.name: (item.type, list(item.shape)) for item in session.get_outputs()},
    )


def _fixed(shape: list) -> list:
    """A shape with its symbolic dimensions as None."""
    return [dimension if isinstance(dimension, int) else None for dimension in shape]


def _contract(detector: Detector) -> str:
    inputs, outputs = _io(detector.session)
    assert set(inputs) == {"image"}, f"inputs {sorted(inputs)}, expected only 'image'"
    assert "logits" in outputs, f"outputs {sorted(outputs)}, expected 'logits'"
    kind, shape = inputs["image"]
    assert kind == "tensor(float)", f"'image' is {kind}, expected float32"
    assert _fixed(shape)[1:] == [3, PATCH_SIZE, PATCH_SIZE] and _fixed(shape)[0] is None, (
        f"'image' is {shape}, expected [N,3,128,128] with N dynamic"
    )
    kind, shape = outputs["logits"]
    assert kind == "tensor(float)" and _fixed(shape)[1:] == [2], f"'logits' is {kind} {shape}, expected float32 [N,2]"
    return "image float32 [N,3,128,128] -> logits float32 [N,2]"


def _metadata(detector: Detector) -> str:
    metadata = detector.session.get_modelmeta().custom_metadata_map
    if "model_id" not in metadata:
        return "no cfzoo metadata (a file cfzoo did not write): nothing to compare"
    entry = detector.entry
    assert metadata["model_id"] == entry.id, f"the file says it is {metadata['model_id']}, not {entry.id}"
    assert metadata.get("kind") == "detector", f"the file is a {metadata.get('kind')} graph"
    assert metadata.get("task", entry.task) == entry.task, f"the file's task is {metadata['task']}, not {entry.task}"
    if "threshold" in metadata:
        assert float(metadata["threshold"]) == entry.threshold, (
            f"threshold {metadata['threshold']} in the file, {entry.threshold} in the registry"
        )
    return f"model {entry.id}, task {entry.task}, kind detector"


def _finite(detector: Detector, images: np.ndarray) -> str:
    detector.logits(images)  # raises where a logit is NaN or infinite
    return f"{len(images)} patches (real, black, white, noise)"


def _probabilities(detector: Detector, images: np.ndarray) -> str:
    probability = detector.probability(images)
    assert np.all((probability >= 0) & (probability <= 1)), "a probability outside 0..1"
    assert 0 < detector.threshold < 1, f"threshold {detector.threshold} on the probability is not strictly inside 0..1"
    score = "SVM decision" if detector.entry.score == SVM_DECISION_SCORE else "probability"
    return f"threshold {detector.threshold:.4g} on the probability ({score} {detector.entry.threshold:g})"


def _batch_independence(detector: Detector, images: np.ndarray) -> str:
    together = detector.logits(images)
    alone = np.concatenate([detector.logits(images[index : index + 1]) for index in range(len(images))])
    gap = float(np.abs(together - alone).max())
    scale = max(1.0, float(np.abs(together).max()))
    assert gap <= ABSOLUTE * scale + RELATIVE * scale, f"a patch scores differently alone and in a batch (by {gap:.3g})"
    return f"alone and in a batch of {len(images)}: largest difference {gap:.2g}"


def _determinism(detector: Detector, images: np.ndarray) -> str:
    gap = float(np.abs(detector.logits(images) - detector.logits(images)).max())
    assert gap == 0.0, f"the same batch twice differs by {gap:.3g}"
    return "the same logits twice"


def _margin(logits: np.ndarray) -> np.ndarray:
    return logits[:, 1].astype(np.float64) - logits[:, 0]


def _companion_logits(detector: Detector, companion: GradientModel, images: np.ndarray) -> str:
    expected = detector.logits(images)
    found, _ = companion.logits_and_gradient(images, 1 - np.argmax(expected, axis=1))
    if detector.entry.score == SVM_DECISION_SCORE:  # an SVM's companion differentiates soft SPAM through it
        correlation = float(np.corrcoef(_margin(found), _margin(expected))[0, 1])
        assert correlation > 0.9, f"soft-SPAM margins correlate {correlation:.3f} with the detector's (expected > 0.9)"
        return f"soft-SPAM margins correlate {correlation:.3f} with the detector's"
    gap = float(np.abs(found - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    assert gap <= 1e-3 * scale, f"the companion's logits differ from the detector's by {gap:.3g}"
    return f"largest difference {gap:.2g}"


def _companion_gradient(detector: Detector, companion: GradientModel, images: np.ndarray) -> str:
    """Central differences on the 4 largest entries of the gradient of a pristine and a manipulated patch (those of
    largest gradient), for the label the detector disagrees with (so the loss is far from saturated)."""
    # off the integer lattice: at integer pixels a piecewise-linear network (ReLU, max-pooling) often sits on a
    # kink (an input of exactly 0, a tie), where autograd's one-sided derivative and a central difference differ
    real = images[: 2 * len(CHECK_PHOTOS) * PATCHES_PER_PHOTO]
    real = np.clip(real + np.random.default_rng(0).uniform(-0.3, 0.3, real.shape), 0, 255).astype(np.float32)
    labels = 1 - np.argmax(detector.logits(real), axis=1)
    _, gradient = companion.logits_and_gradient(real, labels)
    assert gradient.shape == real.shape, f"'grad' has shape {gradient.shape}, expected {real.shape}"
    assert np.isfinite(gradient).all(), "a gradient entry is NaN or infinite"
    peaks = np.abs(gradient).reshape(len(real), -1).max(axis=1)
    half = len(real) // 2
    steps = np.array(FINITE_DIFFERENCE_STEPS)
    worst, judged = 0.0, 0
    for sample in (int(np.argmax(peaks[:half])), half + int(np.argmax(peaks[half:]))):
        assert peaks[sample] > 0, "the gradient is zero on every pixel of a patch"
        for flat in np.argsort(np.abs(gradient[sample]).ravel())[-4:]:
            expected = float(gradient[sample].ravel()[flat])
            probed = np.append(steps, NOISE_PROBE)
            moved = np.repeat(real[sample : sample + 1], 2 * len(probed), axis=0)
            for index, step in enumerate(probed):
                moved[2 * index].reshape(-1)[flat] += step
                moved[2 * index + 1].reshape(-1)[flat] -= step
            label = int(labels[sample])
            moved_logits = companion.logits_and_gradient(moved, np.full(len(moved), label))[0]
            losses = cross_entropy(moved_logits, label).reshape(-1, 2)
            differences = losses[:, 0] - losses[:, 1]
            central = differences[:-1] / (2 * steps)
            # where a pixel sits next to a kink (a max-pooling tie within a step), autograd's gradient is one of the
            # one-sided derivatives, which the central difference averages
            base = float(cross_entropy(companion.logits_and_gradient(real[sample : sample + 1], [label])[0], label)[0])
            forward, backward = (losses[:-1, 0] - base) / steps, (base - losses[:-1, 1]) / steps
            # the loss's rounding noise (a float32 network's, normalisation layers' far above one unit in the last
            # place): what the difference at a step too small to move the loss measurably shows, at least one unit
            # in the last place; a step whose difference that noise could move by 40% of the tolerance cannot judge
            noise = max(
                abs(differences[-1] - 2 * NOISE_PROBE * expected), float(np.spacing(np.float32(np.abs(losses).max())))
            )
            usable = noise / steps < 0.4 * FINITE_DIFFERENCE_TOLERANCE * abs(expected)
            if usable.any():
                judged += 1
                gaps = np.abs(np.stack([central, forward, backward]) - expected)[:, usable]
                worst = max(worst, float(gaps.min()) / abs(expected))
    if not judged:
        raise Unjudged(
            "too small on every pixel for float32 finite differences to judge (normalisation layers do this); "
            "cfzoo register checks such a companion in float64 on the torch network it converts"
        )
    assert worst <= FINITE_DIFFERENCE_TOLERANCE, f"the gradient is {worst:.1%} off central finite differences"
    return f"within {worst:.2%} of finite differences on {judged} pixels (best of {len(steps)} steps)"
