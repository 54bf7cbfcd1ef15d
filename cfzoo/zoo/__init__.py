"""The model zoo: the registry of every model, where its files are, and onnxruntime sessions (no torch).

- :meth:`Zoo.load` -> every entry with its kind: detectors (:class:`Registry` of :class:`ModelEntry`: id, family,
  task, files with sha256; kind ``detector``, or ``user`` for one registered with ``cfzoo register``) and GAN
  restorers (:class:`~cfzoo.zoo.restorers.RestorerRegistry`, kind ``restorer``); :func:`load_registry`: the detectors
- :func:`resolve` the file of any entry: explicit path, user zoo (``$CFZOO_HOME/zoo``), Hub cache, embedded zoo
- :func:`open_detector` / :func:`open_companion` (:mod:`.catalog`): any model reference (id, user id, ``.onnx``
  path) -> cached onnxruntime sessions, CUDA when available; :func:`inventory`: what ``cfzoo list`` shows
"""

from cfzoo.zoo.catalog import inventory, open_companion, open_detector
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
from cfzoo.zoo.restorers import Zoo
from cfzoo.zoo.runtime import (
    PROVIDER_CHOICES,
    Detector,
    GradientModel,
    execution_providers,
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
    "inventory",
    "open_companion",
    "open_detector",
    "load_registry",
    "manipulated_probability",
    "resolve",
    "user_zoo_dir",
    "Zoo",
]
