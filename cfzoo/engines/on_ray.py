"""The ``ray`` engine (the ``scale`` extra): cells as Ray tasks, scans on Ray Data, one way into Ray for both.

- Cells: each a Ray task with one CPU, retried when its worker dies (``CELL_RETRIES``), its results returned in
  the cells' order.
- Scans: the paths become a dataset whose blocks a pool of actors scores (``map_batches``); each actor opens its
  onnxruntime sessions once, on a GPU where the cluster has one, else with one thread for the one CPU Ray gives
  it. Ray retries a batch whose worker died, and the driver writes every batch it receives as one part, so a
  killed worker neither loses nor duplicates rows.

Without an address a Ray is started on this machine; with one the work joins that cluster, whose nodes must see
the same paths (a shared filesystem): every cell and actor works in the driver's folder, with its zoo and caches
(:data:`DRIVER_ENVIRONMENT`). Ray's own output is kept off stdout, which holds results.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cfzoo.engines.registry import Engine
from cfzoo.errors import CfzooError, option
from cfzoo.experiments.cells import CellRunner
from cfzoo.ops.scan import scan_rows
from cfzoo.zoo.runtime import set_session_threads

#: The refusal when Ray is not installed.
NO_RAY = '--engine ray needs Ray: pip install "cfzoo[scale]"'
#: Retries of a cell whose worker died.
CELL_RETRIES = 3
#: The driver's settings every cell runs with: its zoo, patch-set cache and Hugging Face cache.
DRIVER_ENVIRONMENT = ("CFZOO_HOME", "CFZOO_CACHE", "HF_HOME", "HF_HUB_OFFLINE")


class RayEngine(Engine):
    name = "ray"
    summary = 'a Ray task or actor each; pip install "cfzoo\\[scale]"'
    takes_address = True

    def __init__(self, address: str | None = None):
        try:  # before any output is written
            installed = importlib.util.find_spec("ray") is not None
        except ImportError:  # an import hook that refuses it
            installed = False
        if not installed:
            raise CfzooError(NO_RAY)
        if address is not None:
            check_listening(address)
        super().__init__(address)

    def cell_runner(self, on_progress=None) -> CellRunner:
        def run(cells: Sequence[Callable[[], Any]]) -> list:
            with ray_session(self.address) as ray:
                environment = {name: os.environ[name] for name in DRIVER_ENVIRONMENT if name in os.environ}
                task = ray.remote(num_cpus=1, max_retries=CELL_RETRIES, runtime_env={"env_vars": environment})(
                    _run_cell
                )
                pending = [task.remote(cell, os.getcwd()) for cell in cells]
                waiting = list(pending)
                while waiting:
                    _, waiting = ray.wait(waiting, num_returns=1)
                    if on_progress is not None:
                        on_progress(len(pending) - len(waiting), len(pending))
                return ray.get(pending)

        return CellRunner(run, in_process=False)

    def map_images(self, pending, output, settings, selection, workers, progress) -> int:
        if not pending:
            return 0
        with ray_session(self.address) as ray:
            return _scan_on_ray(ray, pending, output, settings, workers, progress)


#: Seconds to wait for a cluster's head to answer before saying nobody does (Ray itself retries for minutes).
CONNECT_SECONDS = 5


def check_listening(address: str) -> None:
    """A one-line CfzooError, within seconds, where nothing answers at ``address`` (``host:port`` or
    ``ray://host:port``); ``auto`` and addresses of another form are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CfzooError(
            f"nothing answers at {address} ({reason}); start the cluster there (ray start --head --port {port}) or "
            f"check {option('address')}; without it, Ray starts here"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator:
    """The ``ray`` module, connected: to ``address``, or to a Ray started on this machine when it is None."""
    try:
        import ray
    except ImportError:
        raise CfzooError(NO_RAY) from None
    # Ray prints what its nodes report (a worker that died and was replaced) to stdout: keep stdout for results
    with contextlib.redirect_stdout(sys.stderr):
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise CfzooError(
                    f"cannot reach a Ray cluster at {address}: {str(error).splitlines()[0]}; check {option('address')} (ray status shows it)"
                ) from None
        try:
            for name in ("ray", "ray.data"):  # Ray's info lines: cfzoo reports progress itself
                logging.getLogger(name).setLevel(logging.ERROR)
            yield ray
        finally:
            if started_here:
                ray.shutdown()


def _run_cell(cell: Callable[[], Any], cwd: str) -> Any:
    # the driver's folder (on the filesystem the nodes share), and one onnxruntime thread for the one CPU Ray gives
    os.chdir(cwd)
    set_session_threads(1)
    return cell()


class _ScanWorker:
    """A Ray actor: opens the detectors once, then turns batches of paths into rows. It works in the driver's
    folder (``cwd``), so relative inputs and their rows and errors read as they do on the local engine."""

    def __init__(self, settings, providers: str, threads: int | None, cwd: str):
        os.chdir(cwd)
        set_session_threads(threads)
        self.settings = settings
        self.detectors = settings.detectors(providers)

    def __call__(self, batch: dict) -> dict:
        rows = [
            row
            for name in batch["path_bytes"]
            for row in scan_rows(
                os.fsdecode(bytes(name)), self.detectors, self.settings.stride, self.settings.batch_size
            )
        ]
        return {name: [row[name] for row in rows] for name in rows[0]} if rows else {}


def _scan_on_ray(ray, pending, output, settings, workers, progress) -> int:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    gpus = ray.cluster_resources().get("GPU", 0)
    pool = workers or max(1, int(gpus or ray.cluster_resources().get("CPU", 1)))
    paths = [{"path_bytes": os.fsencode(path)} for path in pending]  # exact: a name need not be UTF-8
    blocks = max(1, -(-len(paths) // settings.images_per_part))
    dataset = ray.data.from_items(paths, override_num_blocks=blocks).map_batches(
        _ScanWorker,
        fn_constructor_kwargs={
            "settings": settings,
            "providers": "cuda" if gpus else "cpu",
            "threads": None if gpus else 1,
            "cwd": os.getcwd(),
        },
        batch_size=settings.images_per_part,
        concurrency=pool,
        num_cpus=0 if gpus else 1,
        num_gpus=1 if gpus else 0,
        batch_format="numpy",  # Ray Data restarts dead actors and retries their batches by default
    )
    done, failed = set(), 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows = batch.to_pylist()
        output.write(rows)
        images = {row["path_bytes"]: row["error"] is not None for row in rows}
        failed += sum(images.values())
        done.update(images)
        progress(len(done), len(pending))
    return failed
