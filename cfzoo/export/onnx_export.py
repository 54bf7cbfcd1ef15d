"""Export trained detectors to the zoo's ONNX contract: ``<id>.onnx`` and its gradient companion ``<id>.grad.onnx``.

Detector: input ``image`` float32 [N,3,128,128], RGB 0..255; output ``logits`` float32 [N,2], class 1 =
manipulated; N is dynamic (dimension ``batch``). Gray conversion, scaling and SPAM extraction are part of
the graph because they are part of the torch modules.

Gradient companion: inputs ``image`` and ``label`` int64 [N]; outputs ``logits`` and ``grad`` =
d (sum over the batch of CrossEntropy(logits_n, label_n)) / d image, [N,3,128,128]. The sum, not the
mean: a sample's gradient is the same whatever batch it is in. How it is traced: :mod:`cfzoo.export.gradients`.

Per family:

- ``bayar2016``, ``xception``: the network in eval mode (batch norm with its running statistics, no
  dropout), detector and companion alike;
- ``cozzolino2017``: the soft (fine-tuned) network is the detector and what the companion differentiates;
- ``spam``: see :mod:`cfzoo.export.spam_svm` (hard SPAM + skl2onnx SVM; the companion differentiates the
  soft SPAM through the same linear decision, so its ``logits`` approximate the detector's).

Both files carry ``metadata_props`` (:func:`model_metadata`), pass ``onnx.checker.check_model`` with
``full_check``, and appear atomically.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from cfzoo import __version__
from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.patches import PATCH_SIZE
from cfzoo.training import FAMILIES, require_training_extra

#: ONNX default-domain opset of the exported graphs (torch 2.15's default; onnxruntime >= 1.17 runs it).
OPSET = 20
#: Name of the dynamic batch dimension.
BATCH = "batch"
CLASS_NAMES = ("pristine", "manipulated")
IMAGE, LABEL, LOGITS, GRAD = "image", "label", "logits", "grad"
GOAL, WEIGHT, DISTANCE = "goal", "weight", "distance"
GRADIENT_DEFINITION = "d sum_n CrossEntropy(logits_n, label_n) / d image (sum over the batch, natural log)"

_NETWORK_CLASSES = {
    "bayar2016": ("cfzoo.training.models", "Bayar2016"),
    "cozzolino2017": ("cfzoo.training.cozzolino", "Cozzolino2017"),
    "xception": ("cfzoo.training.models", "Xception"),
}


def require_export_extra() -> None:
    """A one-line error naming what is missing for export (the ``train`` extra brings all of it)."""
    require_training_extra("export", ("torch", "onnx", "onnxscript", "sklearn", "skl2onnx"))


def detector_file_names(model_id: str) -> tuple[str, str]:
    """(detector, gradient companion) file names of a model id."""
    return f"{model_id}.onnx", f"{model_id}.grad.onnx"


def model_metadata(family: str, record: dict, model_id: str, kind: str, detector) -> dict[str, str]:
    """The ``metadata_props`` of an exported file, from the training record (:func:`cfzoo.training.run.load_detector`).

    ``kind`` is ``detector`` or ``gradient``; a spam ``detector`` (its LinearSVM) adds the SVM's arrays. The record
    needs ``task`` and ``training_data_sha256``; ``family``, when present, must match. ``threshold`` (default: the family's) applies to ``score``:
    the SVM decision ``logits[:,1] - logits[:,0]`` for spam, ``softmax(logits)[:,1]`` for the networks.
    """
    from cfzoo.training.run import decision_threshold

    if record.get("family", family) != family:
        raise CfzooError(f"the training record is for family {record['family']!r}, not {family!r}; export it as {record['family']}")
    missing = [key for key in ("task", "training_data_sha256") if not record.get(key)]
    if missing:
        raise CfzooError(f"the training record lacks {', '.join(missing)}; export a checkpoint written by cfzoo train")
    score = (
        "logits[:,1] - logits[:,0] (the svm decision function)"
        if family == "spam"
        else "softmax(logits)[:,1] (the probability of class 1)"
    )
    metadata = {
        "model_id": model_id,
        "family": family,
        "task": str(record["task"]),
        "kind": kind,
        "patch_size": str(PATCH_SIZE),
        "threshold": repr(float(record.get("threshold", decision_threshold(family)))),
        "score": score,
        "class_names": ",".join(CLASS_NAMES),
        "input": f"{IMAGE}: float32 [N,3,{PATCH_SIZE},{PATCH_SIZE}] RGB 0..255",
        "cfzoo_version": str(record.get("cfzoo_version", __version__)),
        "exported_by": f"cfzoo {__version__}",
        "training_data_sha256": str(record["training_data_sha256"]),
    }
    if kind == "detector" and family == "spam":
        from cfzoo.export.spam_svm import spam_svm_metadata
        from cfzoo.zoo.runtime import SPAM_SVM

        metadata[SPAM_SVM] = spam_svm_metadata(detector)
    if kind == "gradient":
        metadata["gradient"] = GRADIENT_DEFINITION
        if family == "spam":
            metadata["differentiated"] = "soft SPAM (softmax quantisation, Cozzolino2017 hard=False) through the linear SVM"
    return metadata


def export_detector(
    family: str,
    detector,
    record: dict,
    out_dir: str | os.PathLike[str],
    model_id: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<model_id>.onnx`` and ``<model_id>.grad.onnx`` into ``out_dir``; returns their paths.

    ``detector`` is what :func:`cfzoo.training.run.load_detector` returns: a LinearSVM for ``spam``, the
    torch module for the networks (exported in eval mode; the module itself is not changed). ``record``
    is the training record, or a plain dict with at least ``task`` and ``training_data_sha256``.
    ``model_id`` defaults to ``record["id"]``, else ``<family>-<task>``.
    """
    require_export_extra()
    if family not in FAMILIES:
        raise CfzooError(f"unknown family {family!r}; choose one of: {', '.join(FAMILIES)}")
    model_id = model_id or record.get("id") or f"{family}-{record.get('task')}"
    _check_detector(family, detector)
    metadata = [model_metadata(family, record, model_id, kind, detector) for kind in ("detector", "gradient")]
    models = build_models(family, detector)
    out_dir = Path(out_dir)
    paths = []
    for model, properties, name in zip(models, metadata, detector_file_names(model_id)):
        describe_model(model, properties)
        paths.append(save_model(model, out_dir / name))
    return paths[0], paths[1]


def export_checkpoint(
    checkpoint_dir: str | os.PathLike[str], model_id: str, out_dir: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Export a checkpoint written by ``cfzoo train`` (``<model_id>.json`` + ``.safetensors``)."""
    from cfzoo.training.run import load_detector

    require_export_extra()
    record, detector = load_detector(checkpoint_dir, model_id)
    return export_detector(record["family"], detector, record, out_dir, model_id)


def build_models(family: str, detector):
    """(detector ModelProto, gradient companion ModelProto), without metadata."""
    if family == "spam":
        from cfzoo.export.spam_svm import FEATURES, SpamFeatures, SpamSVM, merge_detector

        features = export_module(SpamFeatures(hard=True), output_name=FEATURES)
        return merge_detector(features, detector, BATCH), export_gradient(SpamSVM(detector, hard=False))
    return export_module(detector), export_gradient(detector)


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


def _check_detector(family: str, detector) -> None:
    if family == "spam":
        from cfzoo.training.svm import LinearSVM

        if not isinstance(detector, LinearSVM):
            raise CfzooError(f"a spam detector is a LinearSVM, got {type(detector).__name__}")
        from cfzoo.training.spam import SPAM_DIMENSION

        if np.shape(detector.coef) != (SPAM_DIMENSION,):
            raise CfzooError(f"the LinearSVM has {np.size(detector.coef)} weights; SPAM has {SPAM_DIMENSION} features")
        return
    import importlib

    module_name, class_name = _NETWORK_CLASSES[family]
    expected = getattr(importlib.import_module(module_name), class_name)
    if not isinstance(detector, expected):
        raise CfzooError(f"a {family} detector is a {class_name} module, got {type(detector).__name__}")
