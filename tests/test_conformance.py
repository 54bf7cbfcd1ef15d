"""Conformance over the registry, in the spirit of timm's test over ``list_models()`` and scikit-learn's
``check_estimator``: every model the package ships is loaded and checked, so a wrong, swapped or broken
embedded file fails the suite.

For each detector: the contract (input and output names, shapes, dtypes, ``metadata_props`` that agree with
the registry), that its scores separate real pristine patches from patches of its own manipulation (photos
of scikit-image, which no model was trained on), and the public conformance check (cfzoo.testing, `cfzoo
check`), whose companion checks compare its logits with the detector's (soft SPAM's for spam) and its gradient
with central finite differences. For each restorer: the contract, metadata, and that restoring real
median-filtered patches brings them closer to their pristine originals. For the conclusion model: its contract
and that it reads exactly the detector files that ship.

Separation bars (AUC of the score, manipulated against pristine): 0.9 on the paper's easy tasks, 0.6 on the
challenging ones, where the detectors are weaker on any camera. On these 56 + 56 patches the shipped models
measured 0.945-1.000 (easy) and 0.667-0.994 (challenging) when this test was written.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from cfzoo.images import read_rgb
from cfzoo.manipulations import MANIPULATIONS, apply_manipulation
from cfzoo.metrics import pair_quality
from cfzoo.ops.conclusion import CLASSES, evidence_models
from cfzoo.ops.restore import load_restorer, restore_patches
from cfzoo.patches import cut_patches, sample_positions
from cfzoo.sample_data import skimage_data_dir
from cfzoo.testing import check_detector
from cfzoo.zoo.catalog import open_companion, open_detector
from cfzoo.zoo.conclusions import DEFAULT_CONCLUSION, ConclusionRegistry, load_conclusion
from cfzoo.zoo.registry import embedded_registry, embedded_zoo_dir, model_id
from cfzoo.zoo.restorers import load_restorer_registry
from cfzoo.zoo.runtime import to_model_input

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg", "camera.png", "brick.png")
PATCHES_PER_PHOTO = 8
SEPARATION = {"easy": 0.9, "challenging": 0.6}
DETECTORS = [entry for entry in embedded_registry() if entry.embedded]
RESTORERS = [entry for entry in load_restorer_registry() if entry.embedded]


def test_the_package_ships_every_family_task_and_restorer():
    """The lists the conformance tests run over are what the zoo promises: 3 families x 8 tasks of standard
    detectors, variants of them named by their variant, 4 restorers."""
    standard = [entry for entry in DETECTORS if entry.variant == "standard"]
    assert sorted((entry.family, entry.task) for entry in standard) == sorted(
        (family, task) for family in ("spam", "bayar2016", "cozzolino2017") for task in MANIPULATIONS
    )
    assert all(entry.id == model_id(entry.family, entry.task, entry.variant) for entry in DETECTORS)
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
def test_detector_passes_the_public_conformance_check(entry):
    """cfzoo.testing.check_detector, what `cfzoo check` runs for anyone: contract, finite and batch-independent
    logits, determinism, and the companion's logits and gradient (against central finite differences)."""
    report = check_detector(entry.id)
    assert report.passed, [item for item in report.checks if item.status != "pass"]
    assert [item.status for item in report.checks] == ["pass"] * 8


def test_the_shipped_conclusion_model_reads_the_shipped_detectors():
    """Its contract, and the very detector files it was fitted on: shipping a retrained detector without fitting
    the conclusion again (cfzoo train-conclusion DATA --zoo cfzoo/zoo/embedded) fails here."""
    entry = ConclusionRegistry.in_zoo(embedded_zoo_dir()).get(DEFAULT_CONCLUSION)
    shipped = {detector.id: detector.files["detector"].sha256 for detector in DETECTORS}
    assert entry.embedded and entry.models == {model: shipped[model] for model in entry.models}
    assert list(entry.models) == list(evidence_models()) and entry.classes == list(CLASSES)
    model = load_conclusion()
    assert io_signature(model.session) == (
        {"evidence": ("tensor(float)", [None, 48])},
        {
            "probabilities": ("tensor(float)", [None, 9]),
            "distance": ("tensor(float)", [None, entry.training["neighbours"]]),
        },
    )
    metadata = model.session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["models"]) == entry.models and json.loads(metadata["classes"]) == entry.classes
    evidence = np.random.default_rng(0).uniform(0, 1, (5, 48)).astype(np.float32)
    probabilities, distances = model.predict(evidence)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5) and np.all(distances > 0)
    assert entry.metrics["test"]["accuracy"] > entry.metrics["test"]["naive_rule"]["accuracy"]


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
