"""Conformance over the registry, in the spirit of timm's test over ``list_models()`` and scikit-learn's
``check_estimator``: every model the package ships is loaded and checked, so a wrong, swapped or broken
embedded file fails the suite.

For each detector: the contract (input and output names, shapes, dtypes, ``metadata_props`` that agree with
the registry), that its scores separate real pristine patches from patches of its own manipulation (photos
of scikit-image, which no model was trained on), and that its gradient companion gives the logits of the
detector (soft SPAM's for spam) and a gradient that agrees with central finite differences of the
cross-entropy computed from the companion's own logits. For each restorer: the contract, metadata, and that
restoring real median-filtered patches brings them closer to their pristine originals.

Separation bars (AUC of the score, manipulated against pristine): 0.9 on the paper's easy tasks, 0.6 on the
challenging ones, where the detectors are weaker on any camera. On these 56 + 56 patches the shipped models
measured 0.945-1.000 (easy) and 0.667-0.994 (challenging) when this test was written.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from cfzoo.images import read_rgb
from cfzoo.manipulations import MANIPULATIONS, apply_manipulation
from cfzoo.metrics import pair_quality
from cfzoo.ops.restore import load_restorer, restore_patches
from cfzoo.patches import cut_patches, sample_positions
from cfzoo.sample_data import skimage_data_dir
from cfzoo.zoo.catalog import open_companion, open_detector
from cfzoo.zoo.registry import embedded_registry
from cfzoo.zoo.restorers import load_restorer_registry
from cfzoo.zoo.runtime import to_model_input

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg", "camera.png", "brick.png")
PATCHES_PER_PHOTO = 8
SEPARATION = {"easy": 0.9, "challenging": 0.6}
DETECTORS = [entry for entry in embedded_registry() if entry.embedded]
RESTORERS = [entry for entry in load_restorer_registry() if entry.embedded]


def test_the_package_ships_every_family_task_and_restorer():
    """The lists the conformance tests run over are what the zoo promises: 3 families x 8 tasks, 4 restorers."""
    assert sorted((entry.family, entry.task) for entry in DETECTORS) == sorted(
        (family, task) for family in ("spam", "bayar2016", "cozzolino2017") for task in MANIPULATIONS
    )
    assert sorted(entry.id for entry in RESTORERS) == sorted(
        f"restorer-{task}-{kind}" for task in ("median3", "median7") for kind in ("kim", "vgg")
    )


@functools.cache
def real_patches(task: str) -> tuple[np.ndarray, np.ndarray]:
    """(pristine, manipulated) uint8 [56,128,128,3]: 8 seeded positions of 7 photos, before and after ``task``."""
    pristine, manipulated = [], []
    for index, name in enumerate(PHOTOS):
        photo = read_rgb(skimage_data_dir() / name)
        changed = apply_manipulation(task, photo)
        pristine.append(
            cut_patches(photo, sample_positions(*photo.shape[:2], seed=[0, index], count=PATCHES_PER_PHOTO))
        )
        manipulated.append(
            cut_patches(changed, sample_positions(*changed.shape[:2], seed=[0, index], count=PATCHES_PER_PHOTO))
        )
    return np.concatenate(pristine), np.concatenate(manipulated)


def margin(logits: np.ndarray) -> np.ndarray:
    """logit1 - logit0: the score both contract readings (SVM decision, softmax) are monotone in."""
    return logits[:, 1].astype(np.float64) - logits[:, 0]


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Probability that a positive outscores a negative (ties count half), by counting pairs."""
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float(greater + 0.5 * ties) / (len(positives) * len(negatives))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    top = logits.max(axis=1)
    return np.log(np.exp(logits - top[:, None]).sum(axis=1)) + top - logits[np.arange(len(logits)), labels]


def io_signature(session) -> tuple[dict, dict]:
    return (
        {item.name: (item.type, item.shape) for item in session.get_inputs()},
        {item.name: (item.type, item.shape) for item in session.get_outputs()},
    )


@pytest.mark.parametrize("entry", DETECTORS, ids=lambda entry: entry.id)
def test_detector_contract_and_metadata(entry):
    detector, companion = open_detector(entry.id), open_companion(entry.id)
    image = ("tensor(float)", ["batch", 3, 128, 128])
    assert io_signature(detector.session) == ({"image": image}, {"logits": ("tensor(float)", ["batch", 2])})
    assert io_signature(companion.session) == (
        {"image": image, "label": ("tensor(int64)", ["batch"])},
        {"logits": ("tensor(float)", ["batch", 2]), "grad": image},
    )
    for session, kind in ((detector.session, "detector"), (companion.session, "gradient")):
        metadata = session.get_modelmeta().custom_metadata_map
        assert (metadata["model_id"], metadata["family"], metadata["task"], metadata["kind"]) == (
            entry.id,
            entry.family,
            entry.task,
            kind,
        )
        assert metadata["patch_size"] == "128" and metadata["class_names"] == "pristine,manipulated"
        assert float(metadata["threshold"]) == entry.threshold
        assert metadata["training_data_sha256"] == entry.training["training_data_sha256"]
        assert metadata["cfzoo_version"]
    assert 0 < detector.threshold < 1


@pytest.mark.parametrize("entry", DETECTORS, ids=lambda entry: entry.id)
def test_detector_separates_real_patches_of_its_task(entry):
    pristine, manipulated = real_patches(entry.task)
    detector = open_detector(entry.id)
    logits = [detector.logits(to_model_input(patches)) for patches in (pristine, manipulated)]
    for values in logits:
        assert values.dtype == np.float32 and values.shape == (len(pristine), 2) and np.isfinite(values).all()
    separation = auc(margin(logits[0]), margin(logits[1]))
    assert separation >= SEPARATION[MANIPULATIONS[entry.task].difficulty], separation
    called = [detector.probability(to_model_input(patches)) > detector.threshold for patches in (pristine, manipulated)]
    assert called[1].mean() > called[0].mean()  # more manipulated patches flagged than pristine ones
    # the batch does not change a patch's score
    np.testing.assert_allclose(detector.logits(to_model_input(manipulated[3:4]))[0], logits[1][3], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("entry", DETECTORS, ids=lambda entry: entry.id)
def test_companion_logits_and_gradient(entry):
    pristine, manipulated = real_patches(entry.task)
    patches = np.concatenate([pristine[::14], manipulated[::14]])  # 4 + 4, from different photos
    detector, companion = open_detector(entry.id), open_companion(entry.id)
    images = to_model_input(patches)
    hard = detector.logits(images)
    # the label the detector disagrees with, so the loss is far from saturated and the gradient is not tiny
    labels = 1 - np.argmax(hard, axis=1)
    logits, gradient = companion.logits_and_gradient(images, labels)
    assert gradient.shape == images.shape and gradient.dtype == np.float32 and np.isfinite(gradient).all()
    if entry.family == "spam":
        # the companion differentiates soft SPAM (Cozzolino2017's relaxation) through the same SVM
        assert np.corrcoef(margin(logits), margin(hard))[0, 1] > 0.9
    else:
        np.testing.assert_allclose(logits, hard, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(hard).max())))
    # central differences on the 4 pixels of largest gradient, in the pristine and in the manipulated patch
    # whose gradient is largest; the step keeps the loss change well above float32's resolution
    peaks = np.abs(gradient).reshape(len(patches), -1).max(axis=1)
    half = len(patches) // 2
    for sample in (int(np.argmax(peaks[:half])), half + int(np.argmax(peaks[half:]))):
        assert peaks[sample] > 1e-4, peaks
        for flat in np.argsort(np.abs(gradient[sample]).ravel())[-4:]:
            expected = float(gradient[sample].ravel()[flat])
            step = float(np.clip(2e-4 / abs(expected), 0.02, 0.5))
            moved = np.repeat(images[sample : sample + 1], 2, axis=0)
            moved[0].reshape(-1)[flat] += step
            moved[1].reshape(-1)[flat] -= step
            moved_logits, _ = companion.logits_and_gradient(moved, labels[[sample, sample]])
            losses = cross_entropy(moved_logits, labels[[sample, sample]])
            assert (losses[0] - losses[1]) / (2 * step) == pytest.approx(expected, rel=0.05), (sample, flat, step)


@pytest.mark.parametrize("entry", RESTORERS, ids=lambda entry: entry.id)
def test_restorer_contract_and_restoration(entry):
    restorer = load_restorer(entry.task, entry.discriminator)
    image = ("tensor(float)", ["batch", 3, "height", "width"])
    assert io_signature(restorer.session) == ({"image": image}, {"restored": image})
    metadata = restorer.session.get_modelmeta().custom_metadata_map
    assert (metadata["model_id"], metadata["task"], metadata["discriminator"], metadata["kind"]) == (
        entry.id,
        entry.task,
        entry.discriminator,
        "restorer",
    )
    assert int(metadata["receptive_radius"]) == entry.receptive_radius
    assert metadata["training_data_sha256"] == entry.training["training_data_sha256"]
    pristine, filtered = real_patches(entry.task)
    pristine, filtered = pristine[::2], filtered[::2]
    restored = restore_patches(restorer, filtered, batch_size=8)
    assert restored.dtype == np.uint8 and restored.shape == filtered.shape
    before, after = pair_quality(pristine, filtered), pair_quality(pristine, restored)
    assert after["psnr_db"] > before["psnr_db"] + 0.5, (before, after)
    assert after["ssim"] > before["ssim"], (before, after)
