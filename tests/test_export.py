"""ONNX export: detectors and gradient companions agree with torch / numpy on real patches, carry the contract.

Models are untrained but seeded; batch-norm statistics are calibrated on the real patches (a forward pass
in training mode) so that activations have realistic scales, and the SVM (spam, and Cozzolino2017's initial
layer) is fitted on SPAM features of a few dozen real patches. Every family is exported once per module.

Xception is exported twice: with default batch-norm statistics, checked like the others, and calibrated,
where 3x3 max-pooling of batch-norm outputs meets near-ties on flat image regions. There float32 rounding
(torch's or onnxruntime's, whose convolutions sum in another order) picks an argmax that float64 would not,
which reroutes part of the gradient: torch's own float32 gradient is then up to ~2e-2 (relative L2) away from
float64 autograd. That test compares the companion with float64 autograd and asks it to be as close as
torch's float32 gradient is.

Tolerances:
- logits: |onnx - reference| <= 1e-4 * max(1, max |reference|) (float32 against torch float32 or numpy float64);
- gradients: ||g_onnx - g_torch|| / ||g_torch|| < 1e-4, and the signs agree on >= 99.9 % of the elements whose
  |g_torch| exceeds 1e-3 of the largest (a fixed floor does not fit all: on these patches max |g| is about
  9e-3 for spam and cozzolino2017, 2e-4 for bayar2016 and 2e-8 for the untrained Xception).
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("skl2onnx")

from cfzoo.errors import CfzooError  # noqa: E402
from cfzoo.export import detector_file_names, read_metadata  # noqa: E402
from cfzoo.export.gradients import LogitsAndGradient  # noqa: E402
from cfzoo.export.spam_svm import SpamSVM, svm_graph, svm_pipeline  # noqa: E402
from cfzoo.families import export_checkpoint, export_detector, get_family  # noqa: E402
from cfzoo.images import read_rgb  # noqa: E402
from cfzoo.manipulations import apply_manipulation  # noqa: E402
from cfzoo.patches import cut_patches, sample_positions  # noqa: E402
from cfzoo.sample_data import skimage_data_dir  # noqa: E402
from cfzoo.training.cozzolino import Cozzolino2017  # noqa: E402
from cfzoo.training.loop import to_tensor  # noqa: E402
from cfzoo.training.models import Bayar2016, Xception  # noqa: E402
from cfzoo.training.spam import spam_features  # noqa: E402
from cfzoo.training.svm import fit_linear_svm  # noqa: E402

FAMILIES = ("spam", "bayar2016", "cozzolino2017", "xception")
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "camera.png")
BATCH_SIZES = (1, 7)


def record_for(family, task="blur1.1"):
    return {
        "id": f"{family}-{task}",
        "family": family,
        "task": task,
        "cfzoo_version": "0.1.0",
        "threshold": 0.0 if family == "spam" else 0.5,
        "training_data_sha256": "ab" * 32,
    }


@pytest.fixture(scope="module")
def photos():
    return [read_rgb(skimage_data_dir() / name) for name in PHOTOS]


@pytest.fixture(scope="module")
def training_patches(photos):
    """48 real patches: 4 positions of each photo, pristine (0) and Gaussian-blurred (1)."""
    patches, labels = [], []
    for index, photo in enumerate(photos):
        positions = sample_positions(*photo.shape[:2], seed=[0, index], count=4)
        for label, image in enumerate((photo, apply_manipulation("blur1.1", photo))):
            patches.append(cut_patches(image, positions))
            labels += [label] * len(positions)
    return np.concatenate(patches), np.array(labels)


@pytest.fixture(scope="module")
def patches(photos):
    """7 real patches from other positions: pristine, blurred, JPEG-70 and median-3, from different photos."""
    plan = [(0, None), (1, "blur1.1"), (2, "jpeg70"), (3, None), (4, "median3"), (5, "blur1.1"), (0, "jpeg70")]
    chosen = []
    for number, (index, task) in enumerate(plan):
        photo = photos[index]
        image = photo if task is None else apply_manipulation(task, photo)
        chosen.append(cut_patches(image, sample_positions(*photo.shape[:2], seed=[1, number], count=1)))
    return np.concatenate(chosen)


@pytest.fixture(scope="module")
def labels():
    return np.array([0, 1, 1, 0, 1, 1, 1])


@pytest.fixture(scope="module")
def svm(training_patches):
    features = spam_features(training_patches[0])
    return fit_linear_svm(features, training_patches[1], regularisation=1.0, seed=0)


def calibrated(network, training_patches):
    """Batch-norm running statistics from the real patches, then eval mode (a 'briefly initialised' network)."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    network.train()
    with torch.no_grad():
        network(to_tensor(training_patches[0][::3]))
    return network.eval()


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request, svm, training_patches, tmp_path_factory):
    """(family, detector as exported, torch reference image -> logits, companion reference, onnx path, grad path)."""
    family = request.param
    torch.manual_seed(0)
    if family == "spam":
        detector = svm
        reference = SpamSVM(svm, hard=True).eval()
        companion_reference = LogitsAndGradient(SpamSVM(svm, hard=False))
    else:
        if family == "bayar2016":
            detector = calibrated(Bayar2016(), training_patches)
        elif family == "xception":
            # the plain-image design with default batch-norm statistics, whose float32 gradient is exact enough
            # for the 1e-4 checks here; the current design (high-pass input) with calibrated statistics is
            # checked in test_xception_companion_is_as_accurate_as_torch_float32
            detector = Xception(input_filter=None).eval()
        else:
            detector = Cozzolino2017.from_linear_svm(svm).eval()
        reference = detector
        companion_reference = LogitsAndGradient(detector)
    out = tmp_path_factory.mktemp(f"onnx-{family}")
    onnx_path, grad_path = export_detector(family, detector, record_for(family), out, f"{family}-blur1.1")
    return family, detector, reference, companion_reference, onnx_path, grad_path


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def images(patches, count):
    return to_tensor(patches[:count])


def assert_logits_close(actual, expected):
    tolerance = 1e-4 * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)


# --- detectors --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", BATCH_SIZES)
def test_detector_logits_match_torch(exported, patches, count):
    family, _, reference, _, onnx_path, _ = exported
    image = images(patches, count)
    (logits,) = session(onnx_path).run(None, {"image": image.numpy()})
    assert logits.shape == (count, 2) and logits.dtype == np.float32
    with torch.no_grad():
        expected = reference(image).numpy()
    assert_logits_close(logits, expected)


@pytest.mark.parametrize("exported", ["spam"], indirect=True)
@pytest.mark.parametrize("count", BATCH_SIZES)
def test_spam_detector_is_spam_features_and_the_svm(exported, patches, svm, count):
    """The one SPAM+SVM graph against numpy: logits [0, decision], decision > 0 = manipulated, signs equal."""
    _, _, _, _, onnx_path, _ = exported
    (logits,) = session(onnx_path).run(None, {"image": images(patches, count).numpy()})
    decision = svm.decision_function(spam_features(patches[:count]))
    assert_logits_close(logits[:, 1] - logits[:, 0], decision)
    assert (logits[:, 0] == 0).all()
    assert ((logits[:, 1] > 0) == (decision > 0)).all()
    if count == 7:
        assert (decision > 0).any() and (decision < 0).any()  # both signs are exercised


def test_skl2onnx_svm_keeps_scikit_learns_decision_and_sign(svm, training_patches):
    features = spam_features(training_patches[0][::4]).astype(np.float32)
    pipeline = svm_pipeline(svm)
    expected = pipeline.decision_function(features.astype(np.float64))
    np.testing.assert_allclose(expected, svm.decision_function(features.astype(np.float64)), rtol=1e-10, atol=1e-10)
    model = svm_graph(svm, opset=20, ir_version=10, batch="batch")
    (logits,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"svm/features": features}
    )
    assert_logits_close(logits[:, 1] - logits[:, 0], expected)
    assert ((logits[:, 1] > 0) == (pipeline.predict(features) == 1)).all()


# --- gradient companions ----------------------------------------------------------------------


@pytest.mark.parametrize("count", BATCH_SIZES)
def test_companion_matches_torch_autograd(exported, patches, labels, count):
    family, _, _, companion_reference, _, grad_path = exported
    image, label = images(patches, count), torch.from_numpy(labels[:count])
    logits, grad = session(grad_path).run(None, {"image": image.numpy(), "label": label.numpy()})
    expected_logits, expected_grad = (tensor.numpy() for tensor in companion_reference(image, label))
    assert logits.shape == (count, 2) and grad.shape == (count, 3, 128, 128) and grad.dtype == np.float32
    assert_logits_close(logits, expected_logits)
    norm = np.linalg.norm(expected_grad)
    assert norm > 0
    assert np.linalg.norm(grad - expected_grad) / norm < 1e-4
    significant = np.abs(expected_grad) > 1e-3 * np.abs(expected_grad).max()
    assert significant.sum() > 100
    assert (np.sign(grad[significant]) == np.sign(expected_grad[significant])).mean() >= 0.999


def test_companion_gradient_is_per_sample(exported, patches, labels):
    """The loss is summed over the batch: a sample's gradient is the same alone and among 7."""
    _, _, _, _, _, grad_path = exported
    runner = session(grad_path)
    image = images(patches, 7).numpy()
    _, together = runner.run(None, {"image": image, "label": labels})
    _, alone = runner.run(None, {"image": image[3:4], "label": labels[3:4]})
    np.testing.assert_allclose(alone[0], together[3], rtol=1e-4, atol=1e-6 * np.abs(together[3]).max())


# Not Xception: with default batch-norm statistics it barely depends on its input (|g| ~ 1e-7), so a difference
# that float32 resolves needs steps of pixels, where it is no longer linear (float64 torch shows the same); it is
# checked against autograd only.
@pytest.mark.parametrize("exported", ["spam", "bayar2016", "cozzolino2017"], indirect=True)
def test_companion_gradient_is_that_of_the_cross_entropy(exported, patches, labels):
    """Against the definition, without autograd: a small step s changes the summed cross-entropy by ~ g . s
    (central difference, which the curvature does not bias)."""
    _, _, _, _, _, grad_path = exported
    runner = session(grad_path)
    image = images(patches, 2).numpy().astype(np.float64)
    logits, grad = runner.run(None, {"image": image.astype(np.float32), "label": labels[:2]})
    grad = grad.astype(np.float64)

    def loss(moved):
        logits, _ = runner.run(None, {"image": moved.astype(np.float32), "label": labels[:2]})
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        return float(-(shifted[np.arange(2), labels[:2]] - np.log(np.exp(shifted).sum(axis=1))).sum())

    step = 1e-3 * grad / (grad**2).sum()  # the loss should change by about 1e-3 either way
    forward, backward = (image + step).astype(np.float32), (image - step).astype(np.float32)
    predicted = float((grad * (forward.astype(np.float64) - backward)).sum()) / 2  # the step as rounded to float32
    assert predicted > 0
    assert (loss(forward) - loss(backward)) / 2 == pytest.approx(predicted, rel=0.05)


# --- files and metadata -----------------------------------------------------------------------


def test_files_follow_the_contract(exported):
    family, _, _, _, onnx_path, grad_path = exported
    assert (onnx_path.name, grad_path.name) == detector_file_names(f"{family}-blur1.1")
    for path, kind in ((onnx_path, "detector"), (grad_path, "gradient")):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        metadata = read_metadata(path)
        assert metadata["family"] == family and metadata["task"] == "blur1.1" and metadata["kind"] == kind
        assert metadata["patch_size"] == "128"
        assert metadata["class_names"] == "pristine,manipulated"
        assert float(metadata["threshold"]) == (0.0 if family == "spam" else 0.5)
        assert metadata["cfzoo_version"] == "0.1.0"
        assert metadata["training_data_sha256"] == "ab" * 32
        assert ("gradient" in metadata) == (kind == "gradient")
        runner = session(path)
        inputs = {item.name: item for item in runner.get_inputs()}
        outputs = {item.name: item for item in runner.get_outputs()}
        assert inputs["image"].type == "tensor(float)" and inputs["image"].shape == ["batch", 3, 128, 128]
        assert outputs["logits"].type == "tensor(float)" and outputs["logits"].shape == ["batch", 2]
        if kind == "detector":
            assert list(inputs) == ["image"] and list(outputs) == ["logits"]
        else:
            assert list(inputs) == ["image", "label"] and list(outputs) == ["logits", "grad"]
            assert inputs["label"].type == "tensor(int64)" and inputs["label"].shape == ["batch"]
            assert outputs["grad"].type == "tensor(float)" and outputs["grad"].shape == ["batch", 3, 128, 128]
    # no temporary files left behind by the atomic writes
    assert sorted(path.name for path in onnx_path.parent.iterdir()) == sorted([onnx_path.name, grad_path.name])


@pytest.mark.parametrize("exported", ["spam", "cozzolino2017"], indirect=True)
def test_spam_and_cozzolino_files_are_small_enough_to_embed(exported):
    """No dense constant (the former 625x169 symmetrisation matrix) nor per-node exporter annotations."""
    _, _, _, _, onnx_path, grad_path = exported
    for path in (onnx_path, grad_path):
        assert path.stat().st_size < 100_000
        assert not any(node.metadata_props for node in onnx.load(str(path)).graph.node)


def test_export_leaves_the_module_as_it_was(training_patches, tmp_path):
    torch.manual_seed(1)
    network = Bayar2016().train()
    before = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    export_detector("bayar2016", network, record_for("bayar2016"), tmp_path)
    assert network.training
    assert all(parameter.requires_grad for parameter in network.parameters())
    assert all(torch.equal(before[name], tensor) for name, tensor in network.state_dict().items())
    assert (tmp_path / "bayar2016-blur1.1.onnx").exists() and (tmp_path / "bayar2016-blur1.1.grad.onnx").exists()


def test_export_checkpoint_reads_a_training_checkpoint(svm, patches, tmp_path):
    record = record_for("spam", "jpeg70")
    checkpoint = tmp_path / "checkpoints"
    checkpoint.mkdir()
    get_family("spam").save(svm, checkpoint / "spam-jpeg70.safetensors")
    (checkpoint / "spam-jpeg70.json").write_text(json.dumps(record))
    onnx_path, grad_path = export_checkpoint(checkpoint, "spam-jpeg70", tmp_path / "zoo")
    assert onnx_path == tmp_path / "zoo" / "spam-jpeg70.onnx" and grad_path.exists()
    assert read_metadata(onnx_path)["task"] == "jpeg70"
    (logits,) = session(onnx_path).run(None, {"image": images(patches, 3).numpy()})
    assert_logits_close(logits[:, 1] - logits[:, 0], svm.decision_function(spam_features(patches[:3])))


def test_export_errors_say_what_to_do(svm, tmp_path):
    with pytest.raises(CfzooError, match="unknown family"):
        export_detector("vgg", svm, record_for("spam"), tmp_path)
    with pytest.raises(CfzooError, match="LinearSVM"):
        export_detector("spam", Bayar2016(), record_for("spam"), tmp_path)
    with pytest.raises(CfzooError, match="Bayar2016"):
        export_detector("bayar2016", svm, record_for("bayar2016"), tmp_path)
    with pytest.raises(CfzooError, match="not 'bayar2016'"):
        export_detector("bayar2016", Bayar2016(), record_for("spam"), tmp_path)
    with pytest.raises(CfzooError, match="training_data_sha256"):
        export_detector("spam", svm, {"task": "jpeg70"}, tmp_path)
    with pytest.raises(CfzooError, match="cfzoo train"):
        export_checkpoint(tmp_path, "spam-jpeg70", tmp_path / "zoo")
    assert list(tmp_path.iterdir()) == []


def test_xception_with_its_input_filter_is_as_accurate_as_torch_float32(training_patches, patches, labels, tmp_path):
    """Calibrated Xception with the shipped design (KV high-pass input, residual clipped at 8; see the module
    docstring): the detector graph's logits match float64 torch; the companion's error against float64 autograd is
    within twice torch float32's own, below 5e-2, with signs agreeing on >= 99.5 % of the significant entries."""
    import copy

    torch.manual_seed(0)
    network = calibrated(Xception(input_filter="kv", residual_clip=8.0), training_patches)
    onnx_path, grad_path = export_detector("xception", network, record_for("xception"), tmp_path)
    image, label = images(patches, 7), torch.from_numpy(labels)
    logits, grad = session(grad_path).run(None, {"image": image.numpy(), "label": label.numpy()})
    torch_logits, torch_grad = (tensor.numpy() for tensor in LogitsAndGradient(network)(image, label))
    exact_logits, exact_grad = (
        tensor.numpy() for tensor in LogitsAndGradient(copy.deepcopy(network).double())(image.double(), label)
    )
    assert_logits_close(logits, exact_logits)
    (detector_logits,) = session(onnx_path).run(None, {"image": image.numpy()})
    assert_logits_close(detector_logits, exact_logits)
    assert np.ptp(exact_logits[:, 1] - exact_logits[:, 0]) > 1e-3  # the input reaches the logits

    def error(candidate):
        return np.linalg.norm(candidate - exact_grad) / np.linalg.norm(exact_grad)

    assert error(grad) < min(5e-2, 2 * error(torch_grad) + 1e-4), (error(grad), error(torch_grad))
    significant = np.abs(exact_grad) > 1e-3 * np.abs(exact_grad).max()
    assert (np.sign(grad[significant]) == np.sign(exact_grad[significant])).mean() >= 0.995


def test_exporting_the_same_svm_twice_writes_the_same_bytes(svm, tmp_path):
    first = export_detector("spam", svm, record_for("spam"), tmp_path / "first")
    second = export_detector("spam", svm, record_for("spam"), tmp_path / "second")
    for one, other in zip(first, second):
        assert one.read_bytes() == other.read_bytes(), one.name


class PoolingNetwork(torch.nn.Module):
    """A 1x1 convolution, ReLU, the given max-pooling, then a linear read-out: on small integer images the
    pooling windows hold many ties, which the companion has to break as torch does (the first maximum)."""

    def __init__(self, pooling: torch.nn.MaxPool2d):
        super().__init__()
        self.mix = torch.nn.Conv2d(3, 4, 1)
        self.pooling = pooling
        self.read_out = torch.nn.Linear(4, 2)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0]]).view(4, 3, 1, 1))
            self.mix.bias.copy_(torch.tensor([0.0, -1.0, 0.0, 0.5]))

    def forward(self, image):
        pooled = self.pooling(torch.relu(self.mix(image)))
        return self.read_out(pooled.square().mean(dim=(2, 3)))


@pytest.mark.parametrize(
    "pooling",
    [
        dict(kernel_size=3, stride=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=2),
        dict(kernel_size=3, stride=1, dilation=2),
        dict(kernel_size=3, stride=2, ceil_mode=True),
    ],
    ids=["3-stride2", "3-stride2-pad1", "2", "3-dilated", "ceil"],
)
def test_companion_routes_max_pooling_ties_as_torch(pooling):
    """The max-pooling backward ignores the indices and finds each window's first maximum again: on images
    with values 0..3 most windows tie, and the gradient must still be autograd's exactly."""
    from cfzoo.export.onnx_export import export_gradient

    torch.manual_seed(0)
    network = PoolingNetwork(torch.nn.MaxPool2d(**pooling))
    companion = export_gradient(network)
    runner = ort.InferenceSession(companion.SerializeToString(), providers=["CPUExecutionProvider"])
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 4, (3, 3, 128, 128)).astype(np.float32))
    label = torch.tensor([0, 1, 1])
    logits, grad = runner.run(None, {"image": image.numpy(), "label": label.numpy()})
    expected_logits, expected_grad = (tensor.numpy() for tensor in LogitsAndGradient(network)(image, label))
    assert (expected_grad != 0).mean() > 0.05  # the ties are real: many pixels receive gradient, many do not
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6 * np.abs(expected_grad).max())
