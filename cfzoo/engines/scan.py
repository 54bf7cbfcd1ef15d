"""``cfzoo scan``: every input image through the selected detectors, rows written as Parquet parts as they come.

Engines (:mod:`cfzoo.engines.registry`): ``local`` scores one image at a time in this process; ``ray`` on Ray
Data, a pool of actors that hold their models (:mod:`cfzoo.engines.on_ray`).

Both write the same rows; their order in the parts may differ.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cfzoo.callbacks import ProgressCallback
from cfzoo.engines.parts import ScanOutput, check_out
from cfzoo.engines.registry import Engine, get_engine
from cfzoo.errors import CfzooError, check_count, option
from cfzoo.ops.detect import DetectSettings
from cfzoo.results import ScanSummary

#: Images per Parquet part (local engine) and per Ray batch.
IMAGES_PER_PART = 64


@dataclass(frozen=True)
class ScanSettings(DetectSettings):
    """What a scan runs: what ``cfzoo detect`` runs (detectors, stride, patches per model run, providers), and
    images per part."""

    images_per_part: int = IMAGES_PER_PART

    def __post_init__(self) -> None:
        super().__post_init__()
        check_count(self.images_per_part, option("images_per_part"), "it is what a crash can lose")


def run_scan(
    paths: Sequence[Path],
    out: str | os.PathLike[str],
    settings: ScanSettings,
    engine: str | Engine = "local",
    address: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ScanSummary:
    """Scan ``paths`` into the parts folder ``out`` on ``engine`` (a name, joining ``address``, or an engine from
    :func:`~cfzoo.engines.registry.get_engine`); with ``resume``, only what ``out`` does not hold yet."""
    engine = get_engine(engine, address) if isinstance(engine, str) else engine
    check_count(workers, option("workers"), "leave it out for one actor per CPU (or GPU)")
    if not paths:
        raise CfzooError("no input to scan; give image files, folders, glob patterns or a manifest")
    check_out(out)  # a folder that cannot be written is refused before the models load
    selection = settings.select()
    models = [detector.entry.id for detector in selection.detectors]
    with ScanOutput(out, settings.stride, resume) as output:
        pending = output.pending(paths, models)
        progress = on_progress or (lambda done, total: None)
        progress(0, len(pending))
        failed = engine.map_images(pending, output, settings, selection, workers, progress)
    return ScanSummary(
        out=str(out),
        engine=engine.name,
        images=len(paths),
        scanned=len(pending),
        rows_written=output.written,
        failed_images=failed,
        models=models,
        skipped=selection.skipped,
    )
