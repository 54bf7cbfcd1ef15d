"""Where work runs: one registry of engines, each implementing :class:`Engine`.

An engine runs an experiment's independent cells (:class:`~cfzoo.experiments.cells.CellRunner`) and maps a scan's
images to rows. ``local`` runs everything in this process; ``ray`` on a Ray cluster (the ``scale`` extra). A new
engine (Dask, Spark) is one module with an :class:`Engine` subclass and a line in :data:`_ENGINES`; the commands
that take ``--engine`` ask :func:`get_engine`, and their help lists :func:`engine_help`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import CfzooError, option
from cfzoo.experiments.cells import CellRunner


class Engine(ABC):
    """Where work runs. Built by :func:`get_engine` once its name and address are known to be valid."""

    name: str
    #: One line for the commands' ``--engine`` help.
    summary: str
    #: Whether ``--address`` (a cluster to join) means anything to it.
    takes_address: bool = False

    def __init__(self, address: str | None = None):
        self.address = address

    @abstractmethod
    def cell_runner(self, on_progress: ProgressCallback | None = None) -> CellRunner:
        """A runner of independent cells; ``on_progress(cells done, cells)`` where the cells cannot report themselves."""

    @abstractmethod
    def map_images(
        self, pending: Sequence[Path], output, settings, selection, workers: int | None, progress: ProgressCallback
    ) -> int:
        """Score every path of ``pending`` with the scan ``settings`` (``selection``: the detectors, opened here),
        write the rows to ``output`` (:class:`~cfzoo.engines.parts.ScanOutput`) part by part, report images done
        to ``progress``; returns how many images failed."""


#: name -> (module, class): modules are imported only when their engine is asked for.
_ENGINES = {"local": ("cfzoo.engines.local", "LocalEngine"), "ray": ("cfzoo.engines.on_ray", "RayEngine")}
ENGINE_NAMES = tuple(_ENGINES)


def _engine_class(name: str) -> type[Engine]:
    module, class_name = _ENGINES[name]
    return getattr(importlib.import_module(module), class_name)


def get_engine(name: str, address: str | None = None) -> Engine:
    """The engine called ``name``, joining ``address`` where it takes one; a one-line CfzooError for an unknown name,
    an address it cannot use, or an engine whose extra is not installed."""
    if name not in _ENGINES:
        raise CfzooError(f"unknown {option('engine')} {name!r}; choose one of: {', '.join(ENGINE_NAMES)}")
    engine_class = _engine_class(name)
    if address is not None and not engine_class.takes_address:
        clusters = [other for other in ENGINE_NAMES if _engine_class(other).takes_address]
        raise CfzooError(f"{option('address')} joins a Ray cluster; add {option('engine')} {' or '.join(clusters)}")
    return engine_class(address)


def engine_help() -> str:
    """``local (...) or ray (...)``: every engine with its summary, for the commands' help."""
    return " or ".join(f"{name} ({_engine_class(name).summary})" for name in ENGINE_NAMES)
