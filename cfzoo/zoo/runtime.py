"""onnxruntime sessions for zoo models: CUDA when available, else the CPU; created once and reused.

:class:`Detector` wraps a ``<id>.onnx`` detector, :class:`GradientModel` its ``<id>.grad.onnx`` companion.
Both take images as the model contract says: float32 [N,3,128,128], RGB 0..255. :class:`SpamFeatureCompanion`
wraps the one soft-SPAM feature graph that the spam-feature attack descends (the same for every task).
"""

from __future__ import annotations

import collections
import functools
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from cfzoo.errors import CfzooError
from cfzoo.zoo.registry import ModelEntry, embedded_zoo_dir
from cfzoo.zoo.resolve import ResolvedFile

PROVIDER_CHOICES = ("auto", "cpu", "cuda")
#: The probability above which an external model's patch counts as manipulated, unless its registration says otherwise.
EXTERNAL_THRESHOLD = 0.5
_PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
#: The soft-SPAM feature companion in the embedded zoo (tools/spam_feature_files.py writes it).
SPAM_FEATURE_COMPANION = "spam-features.onnx"
#: Detector metadata of a SPAM+SVM detector: the SVM's arrays (:class:`SpamSVM`).
SPAM_SVM = "spam_svm"


class SpamSVM(NamedTuple):
    """A linear SVM on standardised SPAM features f: decision ``((f - mean) / scale) . coef + intercept``, > 0 manipulated."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float


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


#: Session option that makes a session allocate CPU memory from the allocator registered with onnxruntime's
#: environment (:func:`_register_shared_cpu_allocator`) instead of an arena of its own.
USE_SHARED_ALLOCATOR = "session.use_env_allocators"


@functools.cache
def _register_shared_cpu_allocator() -> None:
    """Register, once per process, one CPU arena allocator that every cfzoo session shares.

    The memory rule: an arena keeps what it grew to, so one arena per session held the sum of every cached
    session's peak (the 24 embedded detectors: 18.6 GB on one 1024x1024 photo), and shrinking each arena after
    every run bounded that but cost most of the speed. One shared arena holds the largest single run instead,
    keeping the arena's speed (benchmarks/memory.py measures the three rules side by side). The arena grows by
    what is asked, not to the next power of two, so it stays near that largest run.
    """
    onnxruntime = onnxruntime_module()
    memory = onnxruntime.OrtMemoryInfo(
        "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
    )
    onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg({"arena_extend_strategy": 1}))


#: The CPU threads each model run may use; None: one per core (:func:`set_session_threads`).
_session_threads: int | None = None


def set_session_threads(threads: int | None) -> None:
    """CPU threads each model run may use (None: one per core). A process that shares the cores with others doing
    the same work (a Ray actor given one CPU) sets 1, or the runs fight over the cores."""
    global _session_threads
    _session_threads = threads


def cpu_workers() -> int:
    """How many shares a CPU run splits its rows into (:func:`run_rows`): the threads allowed, else the cores this
    process may use."""
    if _session_threads is not None:
        return _session_threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def new_session(path: Path, providers: tuple[str, ...], row_parallel: bool = True):
    """An onnxruntime session of ``path`` that draws CPU memory from the process's shared allocator, or a one-line
    error. ``row_parallel``: the model is run on batches through :func:`run_rows`, which parallelises over rows on
    the CPU, so the session itself runs on one thread there; otherwise (one whole image at a time) it spreads each
    run over the cores."""
    onnxruntime = onnxruntime_module()
    _register_shared_cpu_allocator()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's warnings (e.g. unused initialisers) are not the user's concern
    # Spin-waiting threads fight any other busy process for the cores: with one running beside it,
    # cozzolino2017 scored 89 patches/s spinning and 220 without (benchmarks/detect.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry(USE_SHARED_ALLOCATOR, "1")
    if row_parallel and _cpu_only(providers):
        options.intra_op_num_threads = 1
    elif _session_threads is not None:
        options.intra_op_num_threads = _session_threads
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as error:  # onnxruntime raises its own exception types
        raise CfzooError(
            f"onnxruntime cannot load {path}: {str(error).splitlines()[0]}; export or pull the model again"
        ) from None


def _cpu_only(providers) -> bool:
    return tuple(providers) == (_PROVIDER_NAMES["cpu"],)


@functools.cache
def _row_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="cfzoo-rows")


def run_rows(
    session, outputs: list[str], rows: dict[str, np.ndarray], shared: dict[str, np.ndarray] | None = None
) -> list[np.ndarray]:
    """``session.run(outputs, rows | shared)``, where every array of ``rows`` has one row per sample and the outputs
    too. On the CPU the rows are split into :func:`cpu_workers` shares, each run on one thread at the same time
    (onnxruntime lets go of the GIL): one-threaded runs side by side keep the cores busier than one run on all of
    them, whose thread pool waits at every operator (benchmarks/threads.py). Each row's result is the same either
    way, since no operator of a detector mixes rows."""
    shared = shared or {}
    count = len(next(iter(rows.values())))
    shares = min(cpu_workers(), count) if _cpu_only(session.get_providers()) else 1
    if shares <= 1:
        return session.run(outputs, {**rows, **shared})
    bounds = np.linspace(0, count, shares + 1).round().astype(int)

    def run_share(share: int) -> list[np.ndarray]:
        part = slice(bounds[share], bounds[share + 1])
        return session.run(outputs, {**{name: array[part] for name, array in rows.items()}, **shared})

    results = list(_row_pool(shares).map(run_share, range(shares)))
    return [np.concatenate(pieces) for pieces in zip(*results)]


class OnnxSession:
    """An onnxruntime session of one zoo file."""

    #: Whether the model runs on batches of rows (:func:`new_session`).
    row_parallel = True

    def __init__(self, entry: ModelEntry, resolved: ResolvedFile, providers: tuple[str, ...]):
        self.entry, self.resolved = entry, resolved
        self.session = new_session(resolved.path, providers, self.row_parallel)
        self.providers = tuple(self.session.get_providers())

    @property
    def path(self) -> Path:
        return self.resolved.path


class Detector(OnnxSession):
    """A detector: ``logits(images)`` -> [N,2]; ``probability(images)`` -> softmax class-1 probability."""

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The model's logits [N, 2]; a one-line CfzooError where any is NaN or infinite: no verdict, rate or attack
        may rest on a score that is not a number."""
        logits = run_rows(self.session, ["logits"], {"image": _contract_images(images)})[0]
        broken = ~np.isfinite(logits).all(axis=1)
        if broken.any():
            raise CfzooError(
                f"{self.entry.id} gave a score that is not a number (NaN or infinite) on {int(broken.sum())} of "
                f"{len(logits)} patches; nothing can be judged with it: check the model's graph (a division by zero, "
                "a log of 0) and register or export it again"
            )
        return logits

    def probability(self, images: np.ndarray) -> np.ndarray:
        return manipulated_probability(self.logits(images))

    @property
    def threshold(self) -> float:
        """Patches with :meth:`probability` above this are called manipulated."""
        return self.entry.probability_threshold

    @functools.cached_property
    def spam_svm(self) -> SpamSVM | None:
        """The linear SVM on SPAM features that makes the decision, where the metadata declares one (cfzoo's SPAM+SVM
        detectors); else None."""
        text = self.session.get_modelmeta().custom_metadata_map.get(SPAM_SVM)
        if text is None:
            return None
        try:
            arrays = json.loads(text)
            svm = SpamSVM(
                *(np.asarray(arrays[name], dtype=np.float64) for name in ("mean", "scale", "coef")),
                float(arrays["intercept"][0]),
            )
        except (ValueError, KeyError, TypeError, IndexError):
            raise CfzooError(
                f"{self.path}: its {SPAM_SVM} metadata is not an SVM's mean, scale, coef and intercept; export the model again"
            ) from None
        vectors = (svm.mean, svm.scale, svm.coef)
        if (
            any(
                vector.shape != svm.mean.shape or vector.ndim != 1 or not np.isfinite(vector).all()
                for vector in vectors
            )
            or not (svm.scale > 0).all()
        ):
            raise CfzooError(
                f"{self.path}: its {SPAM_SVM} metadata holds no valid SVM (equal-length finite vectors, scale > 0); export the model again"
            )
        return svm


class GradientModel(OnnxSession):
    """A gradient companion: ``logits_and_gradient(images, labels)`` -> (logits [N,2], d CE / d image)."""

    def logits_and_gradient(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        images = _contract_images(images)
        if len(labels) != len(images):
            raise CfzooError(f"{len(images)} images but {len(labels)} labels")
        logits, gradient = run_rows(self.session, ["logits", "grad"], {"image": images, "label": labels})
        return logits, gradient


class SpamFeatureCompanion:
    """The soft SPAM (Cozzolino2017's relaxation, no trained parameters) and its weighted squared distance to goal
    features, with the image gradient of that distance."""

    def __init__(self, path: Path, providers: tuple[str, ...]):
        self.path = path
        self.session = new_session(path, providers)

    def distance_and_gradient(
        self, images: np.ndarray, goal: np.ndarray, weight: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sum_i weight_i (f_i(image) - goal_i)^2 [N], soft SPAM f [N,338], d distance / d image [N,3,128,128]) at
        contract images."""
        images = _contract_images(images)
        goal = np.ascontiguousarray(goal, dtype=np.float32)
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        if goal.shape != (len(images), self.dimension) or weight.shape != (self.dimension,):
            raise CfzooError(
                f"goal features must be [{len(images)},{self.dimension}] and weights [{self.dimension}], got {list(goal.shape)} and {list(weight.shape)}"
            )
        distance, features, gradient = run_rows(
            self.session, ["distance", "features", "grad"], {"image": images, "goal": goal}, {"weight": weight}
        )
        return distance, features, gradient

    def features(self, images: np.ndarray) -> np.ndarray:
        """The soft SPAM [N,338] of contract images."""
        zeros = np.zeros((len(images), self.dimension), dtype=np.float32)
        return self.distance_and_gradient(images, zeros, np.ones(self.dimension, dtype=np.float32))[1]

    @property
    def dimension(self) -> int:
        return int(self.session.get_inputs()[1].shape[1])


def load_spam_feature_companion(providers: str = "auto") -> SpamFeatureCompanion:
    """The embedded soft-SPAM feature companion, its session created once per providers."""
    path = embedded_zoo_dir() / SPAM_FEATURE_COMPANION
    if not path.is_file():
        raise CfzooError(f"{path} is missing; reinstall cfzoo (python tools/spam_feature_files.py writes it)")
    chosen = execution_providers(providers)
    return cached_session(("spam features", str(path), chosen), lambda: SpamFeatureCompanion(path, chosen))


#: How many sessions the process keeps; beyond it the least recently used is dropped (its memory goes back to the
#: shared allocator when nothing else holds the session).
SESSION_CACHE_SIZE = 128
_sessions: collections.OrderedDict[tuple, object] = collections.OrderedDict()
_Session = TypeVar("_Session")


def cached_session(key: tuple, create: Callable[[], _Session]) -> _Session:
    """The one session cache of the process, for every kind of model file (detectors, gradient companions, the SPAM
    feature companion, restorers): ``create()`` runs once per ``key``, which names the kind, the file and the providers."""
    if key in _sessions:
        _sessions.move_to_end(key)
        return _sessions[key]
    session = create()
    _sessions[key] = session
    while len(_sessions) > SESSION_CACHE_SIZE:
        _sessions.popitem(last=False)
    return session


def to_model_input(patches: np.ndarray) -> np.ndarray:
    """[N,H,W,3] uint8 patches as the contract's images: [N,3,H,W] float32, 0..255."""
    return np.ascontiguousarray(np.asarray(patches).transpose(0, 3, 1, 2), dtype=np.float32)


def manipulated_probability(logits: np.ndarray) -> np.ndarray:
    """softmax(logits)[:, 1], computed stably as the sigmoid of the logit difference."""
    difference = logits[:, 1].astype(np.float64) - logits[:, 0]
    return 0.5 * (1.0 + np.tanh(0.5 * difference))


def provider_choice(providers: tuple[str, ...]) -> str:
    """The ``providers`` choice (cpu, cuda) that gives a session these providers."""
    return "cuda" if _PROVIDER_NAMES["cuda"] in providers else "cpu"


def clear_session_cache() -> None:
    """Forget every session (after the zoo's files changed on disk)."""
    _sessions.clear()


def _contract_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (3, 128, 128):
        raise CfzooError(f"images must be [N,3,128,128] RGB 0..255, got shape {list(images.shape)}")
    return np.ascontiguousarray(images, dtype=np.float32)
