"""The SPAM+SVM detector as ONNX: SPAM extraction in ONNX operators composed with the skl2onnx linear SVM.

- Detector: the hard Cozzolino2017 network's features (exactly :func:`cfzoo.training.spam.spam_features`),
  exported from torch, merged (``onnx.compose.merge_models``) with a scikit-learn ``StandardScaler`` +
  ``LinearSVC`` pipeline converted by skl2onnx (``Scaler`` and ``LinearClassifier`` of ``ai.onnx.ml``),
  whose parameters are the :class:`~cfzoo.training.svm.LinearSVM`'s own (mean, scale, coef, intercept).
  The pipeline's decision ``d`` becomes ``logits = [0, d]``: class 1 (manipulated) when ``d > 0``.
- Gradient companion: the soft (softmax-quantised) SPAM of ``Cozzolino2017(hard=False)`` through the same
  linear decision, :class:`SpamSVM` with ``hard=False``; the hard SPAM has no useful gradient.
- The SVM itself: the detector's metadata ``spam_svm`` holds its arrays as JSON (:func:`spam_svm_metadata`): the
  spam-feature attack measures feature distances in the SVM's standardised space and finds f_close with them.
- Feature companion (one for every task: SPAM has no trained parameters): :class:`SpamFeatureDistance`, the soft
  SPAM's weighted squared distance to a goal feature and its image gradient, for the spam-feature attack of the
  paper's Section III-A (:mod:`cfzoo.ops.attacks.spam_feature`).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from cfzoo.training.cozzolino import Cozzolino2017
from cfzoo.training.spam import SPAM_DIMENSION
from cfzoo.training.svm import LinearSVM

FEATURES = "features"


class SpamFeatures(nn.Module):
    """RGB [N,3,H,W] (0..255) -> SPAM [N,338], hard (exact) or soft (the relaxation, differentiable)."""

    def __init__(self, hard: bool = True) -> None:
        super().__init__()
        self.network = Cozzolino2017(hard=hard)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network.features(image)


class LinearDecision(nn.Module):
    """features -> logits [0, ((f - mean) / scale) . coef + intercept], the LinearSVM's decision in class 1."""

    def __init__(self, svm: LinearSVM) -> None:
        super().__init__()
        for name, values in (("mean", svm.mean), ("scale", svm.scale), ("coef", svm.coef)):
            self.register_buffer(name, torch.from_numpy(np.asarray(values, dtype=np.float32).copy()))
        self.register_buffer("intercept", torch.tensor(float(svm.intercept), dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        decision = ((features - self.mean) / self.scale) @ self.coef + self.intercept
        return torch.stack([torch.zeros_like(decision), decision], dim=1)


class SpamSVM(nn.Module):
    """The SPAM+SVM detector in torch: image -> logits [0, decision]. ``hard=False`` is the companion's model."""

    def __init__(self, svm: LinearSVM, hard: bool = True) -> None:
        super().__init__()
        self.features = SpamFeatures(hard=hard)
        self.decision = LinearDecision(svm)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decision(self.features(image))


class SpamFeatureDistance(nn.Module):
    """(image [N,3,H,W] 0..255, goal [N,338], weight [338]) -> (distance [N], soft SPAM [N,338], d sum_n distance_n / d image).

    ``distance_n = sum_i weight_i (f_i(image_n) - goal_n,i)^2`` with f the soft SPAM, the relaxation the companions
    differentiate (``weight = 1 / scale^2``: the Euclidean distance in an SVM's standardised space).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = SpamFeatures(hard=False)

    def forward(
        self, image: torch.Tensor, goal: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            image = image.detach().requires_grad_(True)
            features = self.features(image)
            distance = (weight * (features - goal) ** 2).sum(dim=1)
            (gradient,) = torch.autograd.grad(distance.sum(), image)
        return distance.detach(), features.detach(), gradient


def spam_svm_metadata(svm: LinearSVM) -> str:
    """The SVM's arrays (decision ``((f - mean) / scale) . coef + intercept``) as JSON, float64 digits kept."""
    return json.dumps({name: [float(value) for value in values] for name, values in svm.arrays().items()})


def svm_pipeline(svm: LinearSVM):
    """A scikit-learn StandardScaler + LinearSVC pipeline whose decision_function is the LinearSVM's.

    Built from the stored arrays, not fitted: the LinearSVM keeps no pickled estimator.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    scaler = StandardScaler()
    scaler.mean_ = np.asarray(svm.mean, dtype=np.float64)
    scaler.scale_ = np.asarray(svm.scale, dtype=np.float64)
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = SPAM_DIMENSION
    scaler.n_samples_seen_ = 1
    classifier = LinearSVC()
    classifier.coef_ = np.asarray(svm.coef, dtype=np.float64).reshape(1, -1)
    classifier.intercept_ = np.array([svm.intercept], dtype=np.float64)
    classifier.classes_ = np.array([0, 1])
    classifier.n_features_in_ = SPAM_DIMENSION
    return Pipeline([("scaler", scaler), ("svm", classifier)])


def svm_graph(svm: LinearSVM, opset: int, ir_version: int, batch: str):
    """skl2onnx's ONNX of :func:`svm_pipeline`, input ``svm/features`` [N,338], output ``logits`` [N,2] = [0, d].

    skl2onnx gives a binary LinearSVC's decision function as its ``probabilities`` output, shape [N,1]
    (tests check value and sign against scikit-learn); one ``Mul`` by [0, 1] turns it into the logits.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    pipeline = svm_pipeline(svm)
    model = convert_sklearn(
        pipeline,
        initial_types=[(FEATURES, FloatTensorType([None, SPAM_DIMENSION]))],
        target_opset={"": opset, "ai.onnx.ml": 1},
        # explicit options for the classifier: otherwise skl2onnx offers it ZipMap, which LinearSVC refuses
        options={id(pipeline.steps[-1][1]): {"raw_scores": False}},
    )
    model = onnx.compose.add_prefix(model, "svm/")
    graph = model.graph
    (scores,) = [output.name for output in graph.output if output.name.endswith("probabilities")]
    graph.initializer.append(numpy_helper.from_array(np.array([0.0, 1.0], dtype=np.float32), "svm/class_1_only"))
    graph.node.append(helper.make_node("Mul", [scores, "svm/class_1_only"], ["logits"], name="svm/logits"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2]))
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = batch
    # skl2onnx lists the default domain twice; merge_models wants one entry per domain, and one IR version
    domains = {entry.domain: entry.version for entry in model.opset_import}
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in domains.items())
    model.ir_version = ir_version
    return model


def merge_detector(features_model, svm: LinearSVM, batch: str):
    """One graph: the exported SPAM features model (output ``features``) feeding the SVM graph."""
    import onnx

    opset = {entry.domain: entry.version for entry in features_model.opset_import}[""]
    classifier = svm_graph(svm, opset, features_model.ir_version, batch)
    classifier.graph.name = (
        "svm"  # skl2onnx names it with a random uuid; a fixed name keeps the export byte-for-byte repeatable
    )
    return onnx.compose.merge_models(
        features_model, classifier, io_map=[(FEATURES, "svm/" + FEATURES)], outputs=["logits"], producer_name="cfzoo"
    )
