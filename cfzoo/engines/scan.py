"""``cfzoo scan``: every input image through the selected detectors, rows written as Parquet parts as they come.

Engines:

- ``local``: this process, one image at a time (memory bounded by one decoded image and one batch of patches).
- ``ray``: Ray Data. The paths become a dataset whose blocks a pool of actors scores (``map_batches``); each actor
  opens its onnxruntime sessions once, on a GPU where the cluster has one, else with one thread for the one
  CPU Ray gives it. Ray retries a batch whose worker
  died, and the driver writes every batch it receives as one part, so a killed worker neither loses nor
  duplicates rows. Without ``address`` a Ray is started on this machine; with it the scan joins that cluster
  (whose nodes must see the same paths).

Both write the same rows; their order in the parts may differ.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cfzoo.callbacks import ProgressCallback
from cfzoo.engines.parts import ScanOutput
from cfzoo.engines.ray_session import check_engine, ray_session
from cfzoo.errors import CfzooError, check_count, option
from cfzoo.ops.detect import DetectSettings
from cfzoo.ops.scan import scan_rows
from cfzoo.zoo.runtime import set_session_threads

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


@dataclass
class ScanSummary:
    images: int  # inputs
    scanned: int  # inputs scanned by this run (the others were held by the output already)
    rows_written: int
    failed_images: int
    models: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # families without models here, as cfzoo detect reports them


def run_scan(
    paths: Sequence[Path],
    out: str | os.PathLike[str],
    settings: ScanSettings,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ScanSummary:
    """Scan ``paths`` into the parts folder ``out``; with ``resume``, only what ``out`` does not hold yet."""
    check_engine(engine, address)
    check_count(workers, option("workers"), "leave it out for one actor per CPU (or GPU)")
    if not paths:
        raise CfzooError("no input to scan; give image files, folders, glob patterns or a manifest")
    selection = settings.select()
    models = [detector.entry.id for detector in selection.detectors]
    output = ScanOutput(out, resume)
    pending = output.pending(paths, models)
    progress = on_progress or (lambda done, total: None)
    progress(0, len(pending))
    if engine == "local":
        failed = _local(pending, output, settings, selection.detectors, progress)
    else:
        failed = _on_ray(pending, output, settings, address, workers, progress)
    return ScanSummary(len(paths), len(pending), output.written, failed, models, selection.skipped)


def _local(pending, output: ScanOutput, settings: ScanSettings, detectors, progress) -> int:
    failed = 0
    for start in range(0, len(pending), settings.images_per_part):
        rows = []
        for done, path in enumerate(pending[start:start + settings.images_per_part], start + 1):
            image_rows = scan_rows(path, detectors, settings.stride, settings.batch_size)
            failed += image_rows[0]["error"] is not None
            rows.extend(image_rows)
            progress(done, len(pending))
        output.write(rows)
    return failed


class _ScanWorker:
    """A Ray actor: opens the detectors once, then turns batches of paths into rows. It works in the driver's
    folder (``cwd``, on the shared filesystem the nodes mount alike), so relative inputs and their rows and
    errors read as they do on the local engine."""

    def __init__(self, settings: ScanSettings, providers: str, threads: int | None, cwd: str):
        os.chdir(cwd)
        set_session_threads(threads)
        self.settings = settings
        self.detectors = settings.detectors(providers)

    def __call__(self, batch: dict) -> dict:
        rows = [row for path in batch["path"] for row in scan_rows(path, self.detectors, self.settings.stride, self.settings.batch_size)]
        return {name: [row[name] for row in rows] for name in rows[0]} if rows else {}


def _on_ray(pending, output: ScanOutput, settings: ScanSettings, address, workers, progress) -> int:
    if not pending:
        return 0
    with ray_session(address) as ray:
        return _run_on_ray(ray, pending, output, settings, workers, progress)


def _run_on_ray(ray, pending, output: ScanOutput, settings: ScanSettings, workers, progress) -> int:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    gpus = ray.cluster_resources().get("GPU", 0)
    pool = workers or max(1, int(gpus or ray.cluster_resources().get("CPU", 1)))
    paths = [{"path": str(path)} for path in pending]
    blocks = max(1, -(-len(paths) // settings.images_per_part))
    dataset = ray.data.from_items(paths, override_num_blocks=blocks).map_batches(
        _ScanWorker, fn_constructor_kwargs={
            "settings": settings, "providers": "cuda" if gpus else "cpu", "threads": None if gpus else 1, "cwd": os.getcwd(),
        },
        batch_size=settings.images_per_part, concurrency=pool, num_cpus=0 if gpus else 1, num_gpus=1 if gpus else 0,
        batch_format="numpy",  # Ray Data restarts dead actors and retries their batches by default
    )
    done, failed = set(), 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows = batch.to_pylist()
        output.write(rows)
        images = {row["path"]: row["error"] is not None for row in rows}
        failed += sum(images.values())
        done.update(images)
        progress(len(done), len(pending))
    return failed
