"""Write what the spam-feature attack needs into a zoo: the SPAM feature companion and each spam detector's SVM.

    python tools/spam_feature_files.py --checkpoints checkpoints/cameras-seed0 [--zoo cfzoo/zoo/embedded]

- ``<zoo>/spam-features.onnx``: :func:`cfzoo.export.onnx_export.export_spam_feature_companion` (one file for
  every task: SPAM has no trained parameters).
- Each ``spam-<task>.onnx`` of the zoo's registry gets the ``spam_svm`` metadata (its checkpoint's LinearSVM),
  once that SVM is shown to be the one in the graph (same decision on 64 random feature vectors, to float32
  precision); its sha256 and size in the registry follow. New exports write it themselves.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from cfzoo.export.onnx_export import export_spam_feature_companion, save_model
from cfzoo.export.spam_svm import FEATURES, spam_svm_metadata
from cfzoo.families import load_checkpoint
from cfzoo.training.spam import SPAM_DIMENSION
from cfzoo.zoo.registry import Registry, embedded_zoo_dir
from cfzoo.zoo.runtime import SPAM_FEATURE_COMPANION, SPAM_SVM

PROBES = 64


def graph_decisions(model: onnx.ModelProto, features: np.ndarray) -> np.ndarray:
    """logits[:,1] - logits[:,0] of the detector's SVM part, fed SPAM ``features`` directly."""
    head = onnx.utils.Extractor(model).extract_model([FEATURES], ["logits"])
    session = onnxruntime.InferenceSession(head.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {FEATURES: features.astype(np.float32)})[0]
    return logits[:, 1] - logits[:, 0]


def add_spam_svm(path: Path, svm) -> None:
    model = onnx.load(str(path))
    probes = np.random.default_rng(0).dirichlet(np.ones(SPAM_DIMENSION), size=PROBES) * 4  # SPAM sums to 4
    expected = svm.decision_function(probes)
    found = graph_decisions(model, probes)
    if not np.allclose(found, expected, rtol=1e-4, atol=1e-3):
        raise SystemExit(
            f"{path.name}: the checkpoint's SVM is not the one in the graph (largest gap {np.abs(found - expected).max():.3g})"
        )
    kept = [entry for entry in model.metadata_props if entry.key != SPAM_SVM]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = SPAM_SVM, spam_svm_metadata(svm)
    save_model(model, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints", type=Path, required=True, help="cfzoo train's output folder of the spam models"
    )
    parser.add_argument("--zoo", type=Path, default=embedded_zoo_dir())
    arguments = parser.parse_args()
    save_model(export_spam_feature_companion(), arguments.zoo / SPAM_FEATURE_COMPANION)
    registry = Registry.read(arguments.zoo / "registry.json")
    entries = []
    for entry in registry:
        if entry.family == "spam":
            _, svm = load_checkpoint(arguments.checkpoints, entry.id)
            path = arguments.zoo / "models" / entry.files["detector"].name
            add_spam_svm(path, svm)
            data = path.read_bytes()
            detector_file = replace(entry.files["detector"], sha256=hashlib.sha256(data).hexdigest(), size=len(data))
            entry = replace(entry, files={**entry.files, "detector": detector_file})
            print(f"{entry.id}: SVM written")
        entries.append(entry)
    Registry(entries).write(arguments.zoo / "registry.json")


if __name__ == "__main__":
    main()
