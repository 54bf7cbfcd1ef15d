"""Export a fitted conclusion model (:mod:`cfzoo.training.conclusion`) as one ONNX graph and a zoo entry.

skl2onnx converts the classifier (StandardScaler -> LogisticRegression, ``probabilities``) and the neighbour search
(the same scaler -> NearestNeighbors, ``distance``); the two graphs are joined side by side on one ``evidence``
input (:mod:`cfzoo.zoo.conclusions` has the contract). The joined graph is checked against scikit-learn on the
training rows before it is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cfzoo._version import __version__
from cfzoo.errors import CfzooError
from cfzoo.export.onnx_export import save_model
from cfzoo.training.conclusion import UNCERTAIN_BELOW, FittedConclusion
from cfzoo.zoo.conclusions import (
    CONCLUSION_REGISTRY_NAME,
    DISTANCE_OUTPUT,
    EVIDENCE_INPUT,
    PROBABILITIES_OUTPUT,
    ConclusionEntry,
    ConclusionRegistry,
)
from cfzoo.zoo.registry import MODELS_FOLDER, describe_file, embedded_zoo_dir

OPSETS = {"": 17, "ai.onnx.ml": 3}
#: How closely the ONNX graph must follow scikit-learn on the training rows.
TOLERANCE = 1e-4


def conclusion_graph(fitted: FittedConclusion, feature_count: int):
    """The joined ONNX graph: ``evidence`` -> ``probabilities`` [N, C] and ``distance`` [N, K]."""
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    def converted(pipeline, options, prefix):
        model = to_onnx(
            pipeline,
            initial_types=[(EVIDENCE_INPUT, FloatTensorType([None, feature_count]))],
            options=options,
            target_opset=OPSETS,
        )
        return onnx.compose.add_prefix(model, prefix)

    classifier = converted(fitted.classifier, {id(fitted.classifier.steps[-1][1]): {"zipmap": False}}, "classifier_")
    neighbours = converted(fitted.neighbours, None, "neighbours_")
    nodes = [
        onnx.helper.make_node("Identity", [EVIDENCE_INPUT], [f"{prefix}{EVIDENCE_INPUT}"])
        for prefix in ("classifier_", "neighbours_")
    ]
    nodes += [*classifier.graph.node, *neighbours.graph.node]
    nodes += [
        onnx.helper.make_node("Identity", ["classifier_probabilities"], [PROBABILITIES_OUTPUT]),
        onnx.helper.make_node("Identity", ["neighbours_distance"], [DISTANCE_OUTPUT]),
    ]
    class_count = len(fitted.classifier.classes_)
    graph = onnx.helper.make_graph(
        nodes,
        "cfzoo_conclusion",
        [onnx.helper.make_tensor_value_info(EVIDENCE_INPUT, onnx.TensorProto.FLOAT, [None, feature_count])],
        [
            onnx.helper.make_tensor_value_info(PROBABILITIES_OUTPUT, onnx.TensorProto.FLOAT, [None, class_count]),
            onnx.helper.make_tensor_value_info(
                DISTANCE_OUTPUT, onnx.TensorProto.FLOAT, [None, fitted.neighbours[-1].n_neighbors]
            ),
        ],
        initializer=[*classifier.graph.initializer, *neighbours.graph.initializer],
    )
    opsets = [onnx.helper.make_opsetid(domain, version) for domain, version in OPSETS.items()]
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="cfzoo", producer_version=__version__)
    _canonical_names(
        model.graph,
        {EVIDENCE_INPUT: EVIDENCE_INPUT, PROBABILITIES_OUTPUT: PROBABILITIES_OUTPUT, DISTANCE_OUTPUT: DISTANCE_OUTPUT},
    )
    return model


def _canonical_names(graph, names: dict[str, str]) -> None:
    """Rename every node and tensor of ``graph`` and its subgraphs (a Scan's body) in order of appearance, keeping
    those already in ``names``: skl2onnx numbers names with counters global to the process, so the same model
    converted twice in one process would otherwise give two files."""

    def renamed(name: str) -> str:
        if not name:
            return name  # an omitted optional input
        return names.setdefault(name, f"t{len(names)}")

    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        value.name = renamed(value.name)
    for index, node in enumerate(graph.node):
        node.input[:] = [renamed(name) for name in node.input]
        node.output[:] = [renamed(name) for name in node.output]
        node.name = f"{graph.name}_{index}_{node.op_type}"
        for attribute in node.attribute:
            if attribute.type == attribute.GRAPH:
                attribute.g.name = f"{node.name}_body"
                _canonical_names(attribute.g, names)


def check_against_sklearn(model, fitted: FittedConclusion, features: np.ndarray) -> None:
    """The graph's probabilities and distances on ``features`` equal scikit-learn's, or a CfzooError."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    probabilities, distances = session.run(
        [PROBABILITIES_OUTPUT, DISTANCE_OUTPUT], {EVIDENCE_INPUT: features.astype(np.float32)}
    )
    expected_distances = fitted.neighbours[-1].kneighbors(fitted.neighbours[0].transform(features))[0]
    gaps = (
        np.abs(probabilities - fitted.classifier.predict_proba(features)).max(),
        np.abs(distances - expected_distances).max() / max(1.0, np.abs(expected_distances).max()),
    )
    if max(gaps) > TOLERANCE:
        raise CfzooError(
            f"the exported conclusion differs from scikit-learn (probabilities by {gaps[0]:.2g}, distances by "
            f"{gaps[1]:.2g}); the export is broken, please report it"
        )


def build_conclusion_model(
    fitted: FittedConclusion,
    train_features: np.ndarray,
    *,
    model_id: str,
    version: int,
    models: dict[str, str],
    statistics: list[str],
    classes: list[str],
):
    """The conclusion's ONNX model, checked against scikit-learn, with its ``metadata_props``."""
    model = conclusion_graph(fitted, train_features.shape[1])
    check_against_sklearn(model, fitted, train_features)
    metadata = {
        "model_id": model_id,
        "kind": "conclusion",
        "version": str(version),
        "models": json.dumps(models),
        "statistics": json.dumps(statistics),
        "classes": json.dumps(classes),
        "distance_threshold": repr(fitted.distance_threshold),
        "exported_by": f"cfzoo {__version__}",
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = (
        f"cfzoo {model_id}: {EVIDENCE_INPUT} float32 [N,{train_features.shape[1]}] (each detector's flagged share "
        f"and mean probability) -> {PROBABILITIES_OUTPUT} [N,{len(classes)}], {DISTANCE_OUTPUT} [N,K] to the nearest training rows"
    )
    return model


def conclusion_entry(
    model_path: Path, fitted: FittedConclusion, metadata: dict[str, str], metrics: dict, training: dict, embedded: bool
) -> ConclusionEntry:
    """The registry entry of the conclusion model written at ``model_path`` (its ``metadata``: the ONNX file's)."""
    return ConclusionEntry(
        id=metadata["model_id"],
        version=int(metadata["version"]),
        file=describe_file(model_path),
        models=json.loads(metadata["models"]),
        statistics=json.loads(metadata["statistics"]),
        classes=json.loads(metadata["classes"]),
        distance_threshold=fitted.distance_threshold,
        uncertain_below=UNCERTAIN_BELOW,
        metrics=metrics,
        training={**training, **fitted.record()},
        embedded=embedded,
    )


def export_conclusion(
    model, fitted: FittedConclusion, metrics: dict, training: dict, zoo_dir: str | os.PathLike[str]
) -> ConclusionEntry:
    """Write the conclusion ``model`` (from :func:`build_conclusion_model`) into ``zoo_dir`` and its entry into the
    zoo's conclusion registry (created if absent; an entry of the same id is replaced); exporting into the
    package's zoo marks it embedded."""
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    zoo_dir = Path(zoo_dir)
    path = save_model(model, zoo_dir / MODELS_FOLDER / f"{metadata['model_id']}.onnx")
    embedded = zoo_dir.resolve() == embedded_zoo_dir().resolve()
    entry = conclusion_entry(path, fitted, metadata, metrics, training, embedded)
    registry_path = zoo_dir / CONCLUSION_REGISTRY_NAME
    registry = ConclusionRegistry.read(registry_path) if registry_path.exists() else ConclusionRegistry([])
    ConclusionRegistry([*(other for other in registry if other.id != entry.id), entry]).write(registry_path)
    return entry
