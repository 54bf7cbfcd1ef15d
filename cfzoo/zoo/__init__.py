"""The model zoo: the registry of every model, where its files are, and onnxruntime sessions (no torch).

- :func:`load_registry` -> :class:`Registry` of :class:`ModelEntry` (id, family, task, files with sha256)
- :func:`resolve` a model file: explicit path, user zoo (``$CFZOO_HOME/zoo``), Hub cache, embedded zoo
- :func:`load_detector` / :func:`load_gradient_model`: cached onnxruntime sessions, CUDA when available
"""

from cfzoo.zoo.registry import (
    FAMILY_IDS,
    HubSource,
    ModelEntry,
    ModelFile,
    Registry,
    embedded_zoo_dir,
    load_registry,
    user_zoo_dir,
)
from cfzoo.zoo.resolve import available_sources, resolve
from cfzoo.zoo.runtime import (
    PROVIDER_CHOICES,
    Detector,
    GradientModel,
    execution_providers,
    load_detector,
    load_gradient_model,
    manipulated_probability,
)

__all__ = [
    "FAMILY_IDS",
    "PROVIDER_CHOICES",
    "Detector",
    "GradientModel",
    "HubSource",
    "ModelEntry",
    "ModelFile",
    "Registry",
    "available_sources",
    "embedded_zoo_dir",
    "execution_providers",
    "load_detector",
    "load_gradient_model",
    "load_registry",
    "manipulated_probability",
    "resolve",
    "user_zoo_dir",
]
