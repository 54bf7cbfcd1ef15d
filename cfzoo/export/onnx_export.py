"""The machinery that exports trained detectors to the zoo's ONNX contract: ``<id>.onnx`` and its gradient companion ``<id>.grad.onnx``.

Detector: input ``image`` float32 [N,3,128,128], RGB 0..255; output ``logits`` float32 [N,2], class 1 =
manipulated; N is dynamic (dimension ``batch``). Gray conversion, scaling and SPAM extraction are part of
the graph because they are part of the torch modules.

Gradient companion: inputs ``image`` and ``label`` int64 [N]; outputs ``logits`` and ``grad`` =
d (sum over the batch of CrossEntropy(logits_n, label_n)) / d image, [N,3,128,128]. The sum, not the
mean: a sample's gradient is the same whatever batch it is in. How it is traced: :mod:`cfzoo.export.gradients`.

What each family exports (:meth:`cfzoo.families.Family.export_graphs`):

- ``bayar2016``, ``xception``: the network in eval mode (batch norm with its running statistics, no
  dropout), detector and companion alike;
- ``cozzolino2017``: the soft (fine-tuned) network is the detector and what the companion differentiates;
- ``spam``: see :mod:`cfzoo.export.spam_svm` (hard SPAM + skl2onnx SVM; the companion differentiates the
  soft SPAM through the same linear decision, so its ``logits`` approximate the detector's).

Both files carry ``metadata_props`` (:func:`cfzoo.families.model_metadata`), pass ``onnx.checker.check_model`` with
``full_check``, and appear atomically.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from cfzoo._version import __version__
from cfzoo.files import write_atomically
from cfzoo.patches import PATCH_SIZE
from cfzoo.training import require_training_extra

#: ONNX default-domain opset of the exported graphs (torch 2.15's default; onnxruntime >= 1.17 runs it).
OPSET = 20
#: Name of the dynamic batch dimension.
BATCH = "batch"
CLASS_NAMES = ("pristine", "manipulated")
IMAGE, LABEL, LOGITS, GRAD = "image", "label", "logits", "grad"
GOAL, WEIGHT, DISTANCE = "goal", "weight", "distance"
GRADIENT_DEFINITION = "d sum_n CrossEntropy(logits_n, label_n) / d image (sum over the batch, natural log)"


def require_export_extra() -> None:
    """A one-line error naming what is missing for export (the ``train`` extra brings all of it)."""
    require_training_extra("export", ("torch", "onnx", "onnxscript", "sklearn", "skl2onnx"))


def detector_file_names(model_id: str) -> tuple[str, str]:
    """(detector, gradient companion) file names of a model id."""
    return f"{model_id}.onnx", f"{model_id}.grad.onnx"


def export_spam_feature_companion():
    """ONNX ModelProto of :class:`~cfzoo.export.spam_svm.SpamFeatureDistance`: inputs ``image``, ``goal`` [N,338],
    ``weight`` [338]; outputs ``distance`` [N], ``features`` [N,338], ``grad`` [N,3,128,128]."""
    import torch

    from cfzoo.export.gradients import TRACE_BATCH, trace_function
    from cfzoo.export.spam_svm import FEATURES, SpamFeatureDistance
    from cfzoo.training.spam import SPAM_DIMENSION

    distance = SpamFeatureDistance()
    image = torch.zeros(TRACE_BATCH, 3, PATCH_SIZE, PATCH_SIZE)
    goal = torch.zeros(TRACE_BATCH, SPAM_DIMENSION)
    weight = torch.ones(SPAM_DIMENSION)
    traced = trace_function(lambda image, goal, weight: distance(image, goal, weight), (image, goal, weight))
    batch = torch.export.Dim(BATCH, min=1)
    model = onnx_export_program(
        traced, (image, goal, weight), [IMAGE, GOAL, WEIGHT], [DISTANCE, FEATURES, GRAD], ({0: batch}, {0: batch}, None)
    )
    model.producer_name, model.producer_version = "cfzoo", __version__
    model.doc_string = (
        f"cfzoo SPAM feature companion: {IMAGE} float32 [N,3,{PATCH_SIZE},{PATCH_SIZE}] RGB 0..255, {GOAL} float32 "
        f"[N,{SPAM_DIMENSION}], {WEIGHT} float32 [{SPAM_DIMENSION}] -> {DISTANCE} = sum weight (soft SPAM(image) - goal)^2 [N], {FEATURES} = soft SPAM [N,{SPAM_DIMENSION}], "
        f"{GRAD} = d sum_n {DISTANCE}_n / d {IMAGE}"
    )
    return model


def export_module(module, output_name: str = LOGITS):
    """ONNX ModelProto of an image module (eval-mode copy): ``image`` [batch,3,128,128] -> ``output_name``."""
    import torch

    from cfzoo.export.gradients import TRACE_BATCH, frozen_copy

    image = torch.zeros(TRACE_BATCH, 3, PATCH_SIZE, PATCH_SIZE)
    batch = torch.export.Dim(BATCH, min=1)
    return onnx_export_program(frozen_copy(module), (image,), [IMAGE], [output_name], ({0: batch},))


def export_gradient(module):
    """ONNX ModelProto of the gradient companion of an image -> logits module (see :mod:`cfzoo.export.gradients`)."""
    import torch

    from cfzoo.export.gradients import TRACE_BATCH, trace_gradient

    traced = trace_gradient(module, PATCH_SIZE)
    image = torch.zeros(TRACE_BATCH, 3, PATCH_SIZE, PATCH_SIZE)
    label = torch.zeros(TRACE_BATCH, dtype=torch.int64)
    batch = torch.export.Dim(BATCH, min=1)
    return onnx_export_program(traced, (image, label), [IMAGE, LABEL], [LOGITS, GRAD], ({0: batch}, {0: batch}))


def save_model(model, path: str | os.PathLike[str]) -> Path:
    """Check (``full_check``: types and shapes too) and write atomically, one self-contained file."""
    import onnx

    onnx.checker.check_model(model, full_check=True)
    return write_atomically(path, lambda temporary: onnx.save_model(model, str(temporary)))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


# --- helpers ----------------------------------------------------------------------------------


def onnx_export_program(module, args, input_names, output_names, dynamic_shapes):
    import torch

    with warnings.catch_warnings():
        # the exporter's progress chatter and deprecation notices about its own internals
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
            optimize=True,
        )
    model = program.model_proto
    # the exporter annotates every node with its FX node, module path and stack trace: debugging aids that
    # make up most of a small model's file (75 % of Cozzolino2017's companion) and name the exporting machine's paths
    for node in model.graph.node:
        del node.metadata_props[:]
    return model


def describe_model(model, metadata: dict[str, str]) -> None:
    """Write ``metadata`` (with ``model_id`` and ``kind``) as the graph's ``metadata_props``, and cfzoo's producer and doc string."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "cfzoo"
    model.producer_version = __version__
    if metadata["kind"] == "gradient":
        model.doc_string = (
            f"cfzoo {metadata['model_id']} gradient companion: {IMAGE} float32 [N,3,{PATCH_SIZE},{PATCH_SIZE}] RGB 0..255, "
            f"{LABEL} int64 [N] -> {LOGITS} float32 [N,2], {GRAD} = {GRADIENT_DEFINITION}"
        )
    else:
        model.doc_string = (
            f"cfzoo {metadata['model_id']} detector: {IMAGE} float32 [N,3,{PATCH_SIZE},{PATCH_SIZE}] RGB 0..255 -> "
            f"{LOGITS} float32 [N,2], class 1 = manipulated"
        )
