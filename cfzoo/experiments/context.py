"""What every experiment runs in: one :class:`ExperimentContext` instead of the same eight parameters in each.

An experiment takes its own settings (what to measure: tasks, eps, the attack) and this context (on what and
how: the data, the seed of the device split and of every draw, patches per task, onnxruntime providers, patches per
model run, the patch-set cache, progress, and the runner of its cells). It is validated when built."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path

from cfzoo.callbacks import StatusCallback
from cfzoo.data import CameraDataset, DeviceSplit, split_devices
from cfzoo.errors import check_count, option
from cfzoo.experiments.cells import RUN_HERE, CellRunner
from cfzoo.ops.scoring import DEFAULT_BATCH_SIZE, check_batch_size
from cfzoo.zoo.runtime import execution_providers


@dataclass(frozen=True)
class ExperimentContext:
    """``dataset`` with its device split drawn by ``seed`` (which also draws the patches), ``max_patches`` per task
    (None: all), onnxruntime ``providers``, ``batch_size`` patches per model run, the patch-set ``cache_dir``,
    ``on_status(stage, done, total)`` for progress, and ``run_cells`` for independent cells (:mod:`.cells`)."""

    dataset: CameraDataset
    seed: int = 0
    max_patches: int | None = None
    providers: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    cache_dir: str | os.PathLike[str] | None = None
    on_status: StatusCallback | None = None
    run_cells: CellRunner = RUN_HERE

    def __post_init__(self) -> None:
        check_count(self.max_patches, option("max_patches"), "or leave it out for every manipulated test patch")
        check_batch_size(self.batch_size)
        execution_providers(self.providers)  # an unknown choice is a one-line error here
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    @functools.cached_property
    def split(self) -> DeviceSplit:
        return split_devices(self.dataset.device_names, self.seed)

    def status(self, stage: str, done: int, total: int) -> None:
        if self.on_status is not None:
            self.on_status(stage, done, total)

    def staged(self, prefix: str) -> ExperimentContext:
        """The same context, its stages reported as ``prefix stage``."""
        if self.on_status is None:
            return self
        outer = self.on_status
        return replace(self, on_status=lambda stage, done, total: outer(f"{prefix} {stage}", done, total))

    def for_cells(self) -> ExperimentContext:
        """The context a cell gets: progress only when the cells run in this process (elsewhere the runner reports
        cells done), and cells run where they are."""
        return replace(self, on_status=self.on_status if self.run_cells.in_process else None, run_cells=RUN_HERE)
