"""Export trained detectors to ONNX: the detector graph and its gradient companion (needs the ``train`` extra).

- :func:`export_detector` ``(family, detector, record, out_dir, model_id)`` -> ``(<id>.onnx, <id>.grad.onnx)``
- :func:`export_checkpoint` ``(checkpoint_dir, model_id, out_dir)``: the same for a ``cfzoo train`` checkpoint

The contract the files follow is in :mod:`cfzoo.export.onnx_export`; how gradients become an ONNX graph is
in :mod:`cfzoo.export.gradients`; the SPAM+SVM composition in :mod:`cfzoo.export.spam_svm`. Importing this
package does not import torch.
"""

from cfzoo.export.onnx_export import (
    BATCH,
    CLASS_NAMES,
    GRADIENT_DEFINITION,
    OPSET,
    detector_file_names,
    export_checkpoint,
    export_detector,
    model_metadata,
    read_metadata,
)

__all__ = [
    "BATCH",
    "CLASS_NAMES",
    "GRADIENT_DEFINITION",
    "OPSET",
    "detector_file_names",
    "export_checkpoint",
    "export_detector",
    "model_metadata",
    "read_metadata",
]
