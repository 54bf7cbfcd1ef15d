"""Where the experiments' independent cells run (``cfzoo reproduce --engine``, ``cfzoo robustness --engine``):
here, one after the other (:func:`cfzoo.experiments.cells.run_here`), or each as a Ray task (:func:`ray_cells`).

A cell is a call without arguments (Table I of one task, FGSM against one target on one task, Table V, the
robustness of one task) whose result is a typed document; the experiment merges the results in the order it
gave the cells, so the tables are the same wherever the cells ran. A Ray task whose worker dies is retried (``max_retries``). Each cell runs in
the driver's folder and with its zoo and caches (:data:`DRIVER_ENVIRONMENT`), so the nodes must see the same
paths (a shared filesystem), as for ``cfzoo scan``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from cfzoo.callbacks import ProgressCallback
from cfzoo.engines.ray_session import ray_session
from cfzoo.experiments.cells import CellRunner
from cfzoo.zoo.runtime import set_session_threads

#: Retries of a cell whose worker died.
CELL_RETRIES = 3
#: The driver's settings every cell runs with: its zoo, patch-set cache and Hugging Face cache.
DRIVER_ENVIRONMENT = ("CFZOO_HOME", "CFZOO_CACHE", "HF_HOME", "HF_HUB_OFFLINE")


def _run_cell(cell: Callable[[], Any], cwd: str) -> Any:
    # the driver's folder (on the filesystem the nodes share), and one onnxruntime thread for the one CPU Ray gives
    os.chdir(cwd)
    set_session_threads(1)
    return cell()


def ray_cells(address: str | None = None, on_progress: ProgressCallback | None = None) -> CellRunner:
    """A runner that submits every cell as a Ray task (one CPU each) on the cluster at ``address`` (None: a Ray
    started here) and returns their results in the cells' order, reporting cells done to ``on_progress``."""

    def run(cells: Sequence[Callable[[], Any]]) -> list:
        with ray_session(address) as ray:
            environment = {name: os.environ[name] for name in DRIVER_ENVIRONMENT if name in os.environ}
            task = ray.remote(num_cpus=1, max_retries=CELL_RETRIES, runtime_env={"env_vars": environment})(_run_cell)
            pending = [task.remote(cell, os.getcwd()) for cell in cells]
            waiting = list(pending)
            while waiting:
                _, waiting = ray.wait(waiting, num_returns=1)
                if on_progress is not None:
                    on_progress(len(pending) - len(waiting), len(pending))
            return ray.get(pending)

    return run
