"""onnxruntime sessions for zoo models: CUDA when available, else the CPU; created once and reused.

:class:`Detector` wraps a ``<id>.onnx`` detector, :class:`GradientModel` its ``<id>.grad.onnx`` companion.
Both take images as the model contract says: float32 [N,3,128,128], RGB 0..255.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from cfzoo.errors import CfzooError
from cfzoo.zoo.registry import ModelEntry, load_registry
from cfzoo.zoo.resolve import ResolvedFile, resolve

PROVIDER_CHOICES = ("auto", "cpu", "cuda")
_PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def onnxruntime_module():
    try:
        import onnxruntime
    except ImportError:
        raise CfzooError(
            "onnxruntime is not installed; install exactly one of: pip install 'cfzoo[cpu]' or pip install 'cfzoo[gpu]'"
        ) from None
    return onnxruntime


def execution_providers(choice: str = "auto") -> tuple[str, ...]:
    """onnxruntime providers for ``auto`` (CUDA if this onnxruntime has it, then CPU), ``cpu`` or ``cuda``."""
    if choice not in PROVIDER_CHOICES:
        raise CfzooError(f"unknown provider {choice!r}; choose one of: {', '.join(PROVIDER_CHOICES)}")
    available = onnxruntime_module().get_available_providers()
    if choice == "cpu":
        return (_PROVIDER_NAMES["cpu"],)
    if _PROVIDER_NAMES["cuda"] in available:
        return (_PROVIDER_NAMES["cuda"], _PROVIDER_NAMES["cpu"])
    if choice == "cuda":
        raise CfzooError(
            "CUDA is not available to onnxruntime; install the GPU build (pip uninstall onnxruntime, then "
            "pip install 'cfzoo[gpu]') on a machine with an NVIDIA driver, or use --providers cpu"
        )
    return (_PROVIDER_NAMES["cpu"],)


def _shrinking_run_options():
    """Run options that hand the memory arena's growth back after every run.

    A cached session otherwise keeps its peak: the 24 embedded detectors held 10 GB after one batch of 64
    each, and an attack over all 8 tasks ran out of 24 GB. The price is throughput on the fastest graphs
    (benchmarks/detect.py, idle machine: cozzolino2017 288 -> 156 patches/s, bayar2016 1390 -> 654);
    turning the arena off instead cost more (cozzolino2017 199 -> 96). Detectors, many of which stay
    cached, shrink; gradient companions keep their arena instead, and only the latest one stays cached
    (see :func:`load_gradient_model`).
    """
    options = onnxruntime_module().RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


class OnnxSession:
    #: Hand the memory arena's growth back after every run (see :func:`_shrinking_run_options`).
    shrinks_arena = True

    def __init__(self, entry: ModelEntry, resolved: ResolvedFile, providers: tuple[str, ...]):
        onnxruntime = onnxruntime_module()
        self.entry, self.resolved = entry, resolved
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings (e.g. unused initialisers) are not the user's concern
        # Spin-waiting threads fight any other busy process for the cores: with one running beside it,
        # cozzolino2017 scored 89 patches/s spinning and 220 without (benchmarks/detect.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(resolved.path), sess_options=options, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own exception types
            raise CfzooError(f"onnxruntime cannot load {resolved.path}: {str(error).splitlines()[0]}; export or pull the model again") from None
        self.providers = tuple(self.session.get_providers())
        self.run_options = _shrinking_run_options() if self.shrinks_arena else None

    @property
    def path(self) -> Path:
        return self.resolved.path


class Detector(OnnxSession):
    """A detector: ``logits(images)`` -> [N,2]; ``probability(images)`` -> softmax class-1 probability."""

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"image": _contract_images(images)}, self.run_options)[0]

    def probability(self, images: np.ndarray) -> np.ndarray:
        return manipulated_probability(self.logits(images))

    @property
    def threshold(self) -> float:
        """Patches with :meth:`probability` above this are called manipulated."""
        return self.entry.probability_threshold


class GradientModel(OnnxSession):
    """A gradient companion: ``logits_and_gradient(images, labels)`` -> (logits [N,2], d CE / d image)."""

    # An attack calls one companion batch after batch: with its arena kept, a batch of 64 ran 1.9x faster
    # on bayar2016-jpeg70 (0.69 -> 0.36 s) and 1.6x on cozzolino2017-jpeg70, for 0.5 and 1.4 GB more memory.
    shrinks_arena = False

    def logits_and_gradient(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        images = _contract_images(images)
        if len(labels) != len(images):
            raise CfzooError(f"{len(images)} images but {len(labels)} labels")
        logits, gradient = self.session.run(["logits", "grad"], {"image": images, "label": labels}, self.run_options)
        return logits, gradient


def to_model_input(patches: np.ndarray) -> np.ndarray:
    """[N,H,W,3] uint8 patches as the contract's images: [N,3,H,W] float32, 0..255."""
    return np.ascontiguousarray(np.asarray(patches).transpose(0, 3, 1, 2), dtype=np.float32)


def manipulated_probability(logits: np.ndarray) -> np.ndarray:
    """softmax(logits)[:, 1], computed stably as the sigmoid of the logit difference."""
    difference = logits[:, 1].astype(np.float64) - logits[:, 0]
    return 0.5 * (1.0 + np.tanh(0.5 * difference))


def load_detector(model_id: str, providers: str = "auto", path: str | os.PathLike[str] | None = None) -> Detector:
    """The detector of a registry model, its session created once per (model, providers, path)."""
    return _cached_detector_session(model_id, execution_providers(providers), None if path is None else str(path))


def load_gradient_model(model_id: str, providers: str = "auto", path: str | os.PathLike[str] | None = None) -> GradientModel:
    """The gradient companion of a registry model. Only the latest one stays cached, as companions keep their
    memory arena: an attack over several tasks holds one grown arena at a time, not one per task."""
    return _cached_gradient_session(model_id, execution_providers(providers), None if path is None else str(path))


def _new_session(kind_class, kind: str, model_id: str, providers: tuple[str, ...], path: str | None):
    entry = load_registry().get(model_id)
    return kind_class(entry, resolve(entry, kind, path), providers)


@functools.lru_cache(maxsize=64)
def _cached_detector_session(model_id: str, providers: tuple[str, ...], path: str | None) -> Detector:
    return _new_session(Detector, "detector", model_id, providers, path)


@functools.lru_cache(maxsize=1)
def _cached_gradient_session(model_id: str, providers: tuple[str, ...], path: str | None) -> GradientModel:
    return _new_session(GradientModel, "gradient", model_id, providers, path)


def clear_session_cache() -> None:
    """Forget every session (after the zoo's files changed on disk)."""
    _cached_detector_session.cache_clear()
    _cached_gradient_session.cache_clear()


def _contract_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (3, 128, 128):
        raise CfzooError(f"images must be [N,3,128,128] RGB 0..255, got shape {list(images.shape)}")
    return np.ascontiguousarray(images, dtype=np.float32)
