"""The machinery that exports trained detectors to ONNX: the detector graph and its gradient companion (needs the
``train`` extra). Exporting a detector or a checkpoint of any family is :func:`cfzoo.families.export_detector` and
:func:`cfzoo.families.export_checkpoint`.

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
    read_metadata,
)

__all__ = [
    "BATCH",
    "CLASS_NAMES",
    "GRADIENT_DEFINITION",
    "OPSET",
    "detector_file_names",
    "read_metadata",
]
