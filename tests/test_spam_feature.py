"""The paper's Section III-A attack on SPAM+SVM: the feature companion against autograd, the SVM each detector
declares against its graph, f_close against a general solver, and the descent itself on real photos."""

import json

import numpy as np
import onnx
import pytest
import torch
from scipy.optimize import minimize
from skimage import data

import cfzoo
from cfzoo.errors import CfzooError
from cfzoo.export.spam_svm import SpamFeatureDistance
from cfzoo.manipulations import TASK_IDS, apply_manipulation
from cfzoo.ops.attacks.battery import attack_parameters, attack_patches, check_method_fits, partners_for
from cfzoo.ops.attacks.common import AttackSettings, AttackTarget
from cfzoo.ops.attacks.spam_feature import CLOSE_MARGIN, closest_across
from cfzoo.training.spam import spam_features
from cfzoo.zoo.catalog import open_detector
from cfzoo.zoo.registry import embedded_zoo_dir
from cfzoo.zoo.runtime import (
    SPAM_SVM,
    SpamSVM,
    load_spam_feature_companion,
    to_model_input,
)


def _tiles(image, count):
    return [image[row : row + 128, col : col + 128] for row in range(0, 384, 128) for col in range(0, 384, 128)][:count]


@pytest.fixture(scope="module")
def pairs():
    """(pristine, median3) tiles of three photos, pair by pair the same place."""
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    pristine = np.stack([tile for photo in photos for tile in _tiles(photo, 4)])
    manipulated = np.stack([tile for photo in photos for tile in _tiles(apply_manipulation("median3", photo), 4)])
    return pristine, manipulated


def test_the_feature_companion_is_the_soft_spam_and_its_autograd_gradient(pairs):
    pristine, manipulated = pairs
    images = to_model_input(manipulated)
    rng = np.random.default_rng(0)
    goal = spam_features(pristine).astype(np.float32)
    weight = rng.uniform(0.5, 2.0, goal.shape[1]).astype(np.float32)
    distance, features, gradient = load_spam_feature_companion("cpu").distance_and_gradient(images, goal, weight)
    expected = [
        tensor.numpy()
        for tensor in SpamFeatureDistance()(torch.from_numpy(images), torch.from_numpy(goal), torch.from_numpy(weight))
    ]
    np.testing.assert_allclose(distance, expected[0], rtol=1e-4)
    np.testing.assert_allclose(features, expected[1], atol=1e-6)
    assert np.abs(gradient - expected[2]).max() <= 1e-4 * np.abs(expected[2]).max()
    # the relaxation stays near the exact (hard) SPAM: each part sums to 2 in both
    assert np.abs(features - spam_features(manipulated)).sum(axis=1).max() < 0.2
    np.testing.assert_allclose(features.sum(axis=1), 4.0, atol=1e-4)


@pytest.mark.parametrize("task", TASK_IDS)
def test_every_spam_detector_declares_the_svm_its_graph_computes(task, pairs):
    detector = open_detector(f"spam-{task}", providers="cpu")
    svm = detector.spam_svm
    patches = np.concatenate(pairs)
    decision = ((spam_features(patches) - svm.mean) / svm.scale) @ svm.coef + svm.intercept
    logits = detector.logits(to_model_input(patches))
    np.testing.assert_allclose(decision, logits[:, 1] - logits[:, 0], atol=2e-3)
    assert open_detector(f"bayar2016-{task}", providers="cpu").spam_svm is None


def test_f_close_is_the_nearest_nonnegative_feature_on_the_pristine_margin():
    rng = np.random.default_rng(1)
    dimension = 6
    svm = SpamSVM(rng.uniform(0.1, 0.5, dimension), rng.uniform(0.05, 0.3, dimension), rng.normal(0, 2, dimension), 0.5)
    features = rng.uniform(0, 0.6, (5, dimension))
    goals = closest_across(features, svm)
    decision = lambda f: ((f - svm.mean) / svm.scale) @ svm.coef + svm.intercept
    for f0, goal in zip(features, goals):
        assert (goal >= 0).all()
        if decision(f0) <= CLOSE_MARGIN:
            np.testing.assert_array_equal(goal, f0)
            continue
        assert decision(goal) == pytest.approx(CLOSE_MARGIN, abs=1e-6)
        solved = minimize(
            lambda f: np.sum(((f - f0) / svm.scale) ** 2),
            f0,
            method="SLSQP",
            bounds=[(0, None)] * dimension,
            constraints=[{"type": "ineq", "fun": lambda f: CLOSE_MARGIN - decision(f)}],
            options={"ftol": 1e-12, "maxiter": 500},
        )
        np.testing.assert_allclose(goal, solved.x, atol=1e-4)


@pytest.mark.parametrize("method", ["spam-prist", "spam-close"])
def test_the_descent_fools_spam_svm_and_returns_what_it_reports(method, pairs):
    # steps of 2.5 / iterations gray levels whatever eps (the module says why)
    assert attack_parameters(AttackSettings(4, method)) == {"iterations": 20, "step": 0.125}
    pristine, manipulated = pairs
    detector = open_detector("spam-median3", providers="cpu")
    settings = AttackSettings(2, method, iterations=12)
    result = attack_patches(settings, AttackTarget.of(detector), manipulated, partners=pristine)
    again = attack_patches(settings, AttackTarget.of(detector), manipulated, partners=pristine)
    np.testing.assert_array_equal(result.patches, again.patches)
    assert np.abs(result.patches.astype(int) - manipulated).max() <= 2
    margin = AttackTarget.of(detector).margin(result.patches)
    fooled_on_the_way = result.iterations < 12
    assert (margin[fooled_on_the_way] <= 0).all()  # a patch that fooled the target once comes back fooling it
    detected_before = (AttackTarget.of(detector).margin(manipulated) > 0).mean()
    assert (margin > 0).mean() < detected_before - 0.3
    assert (result.queries == 12 * 2 + 1).all()  # one companion and one detector run per step, and the last judgement


def test_f_prist_moves_the_features_towards_the_pristine_ones(pairs):
    pristine, manipulated = pairs
    detector = cfzoo.load_detector("spam-median3")
    attacked = cfzoo.attack(detector, manipulated, 2, method="spam-prist", iterations=12, partners=pristine)
    scale = detector._detector.spam_svm.scale
    distance = lambda patches: np.sum(((spam_features(patches) - spam_features(pristine)) / scale) ** 2, axis=1)
    assert np.median(distance(attacked)) < 0.7 * np.median(distance(manipulated))


def test_what_the_spam_feature_attacks_cannot_do_is_refused_in_one_line(pairs, tmp_path):
    pristine, manipulated = pairs
    spam, bayar = cfzoo.load_detector("spam-median3"), cfzoo.load_detector("bayar2016-median3")
    with pytest.raises(CfzooError, match=r"spam-close attacks a SPAM\+SVM detector .*not bayar2016-median3"):
        cfzoo.attack(bayar, manipulated, 1, method="spam-close")
    with pytest.raises(CfzooError, match=r"spam-prist needs each patch's partner across the boundary"):
        cfzoo.attack(spam, manipulated, 1, method="spam-prist")
    with pytest.raises(CfzooError, match=r"partner patches are the goal of method spam-prist only, not pgd"):
        cfzoo.attack(spam, manipulated, 1, method="pgd", partners=pristine)
    with pytest.raises(CfzooError, match=r"^method spam-close attacks one detector"):
        cfzoo.attack([spam, cfzoo.load_detector("cozzolino2017-median3")], manipulated, 1, method="spam-close")
    with pytest.raises(CfzooError, match=r"which resize1.5 \(a change of size\) has not"):
        check_method_fits("spam-prist", AttackTarget.of(open_detector("spam-resize1.5", providers="cpu")), "resize1.5")
    # a detector file whose SVM metadata is damaged
    model = onnx.load(str(embedded_zoo_dir() / "models" / "spam-median3.onnx"))
    for entry in model.metadata_props:
        if entry.key == SPAM_SVM:
            arrays = json.loads(entry.value)
            arrays["scale"] = arrays["scale"][:10]
            entry.value = json.dumps(arrays)
        if entry.key == "model_id":
            entry.value = "damaged"
    onnx.save(model, tmp_path / "damaged.onnx")
    damaged = open_detector(tmp_path / "damaged.onnx", task="median3", providers="cpu")
    with pytest.raises(CfzooError, match=r"damaged.onnx: its spam_svm metadata holds no valid SVM"):
        damaged.spam_svm


def test_pristine_partners_come_from_the_patch_set(sample_dataset):
    from cfzoo.data import PatchSetSpec, build_patch_set, manipulated_rows, split_devices

    patch_set = build_patch_set(
        sample_dataset,
        PatchSetSpec(task="blur1.1", split="test", seed=0),
        split_devices(sample_dataset.device_names, 0),
    )
    rows = manipulated_rows(patch_set, 6, 0)
    partners = np.asarray(patch_set.patches[partners_for("spam-prist", patch_set, rows)])
    for row, partner in zip(rows, partners):
        # the partner, blurred, is the manipulated patch away from the borders the whole-photo blur saw
        np.testing.assert_array_equal(
            apply_manipulation("blur1.1", partner)[8:-8, 8:-8], np.asarray(patch_set.patches[row])[8:-8, 8:-8]
        )
    assert partners_for("pgd", patch_set, rows) is None


def test_a_spam_export_writes_the_svm_that_the_runtime_reads(tmp_path):
    from cfzoo.families import export_detector
    from cfzoo.training.svm import LinearSVM

    rng = np.random.default_rng(2)
    svm = LinearSVM(rng.uniform(0, 0.02, 338), rng.uniform(0.001, 0.01, 338), rng.normal(0, 1, 338), -0.25)
    detector_path, _ = export_detector(
        "spam", svm, {"task": "median3", "training_data_sha256": "0" * 64}, tmp_path, "spam-test"
    )
    detector = open_detector(detector_path, task="median3", providers="cpu")
    read = detector.spam_svm
    for name in ("mean", "scale", "coef"):
        np.testing.assert_array_equal(getattr(read, name), getattr(svm, name))
    assert read.intercept == svm.intercept
