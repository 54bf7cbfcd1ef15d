"""Independent cells of an experiment and the runner that executes them.

A cell is a call without arguments whose result is a typed document (Table I of one task, FGSM against one
target on one task, the robustness of one task). An experiment hands its cells to a :data:`CellRunner` and merges
the results in the order it gave them, so its tables are the same wherever the cells ran: :func:`run_here` runs
them in this process, one after the other; ``cfzoo.engines.cells.ray_cells`` runs each as a Ray task."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

#: Runs independent cells (calls without arguments) and returns their results in order.
CellRunner = Callable[[Sequence[Callable[[], Any]]], list]


def run_here(cells: Sequence[Callable[[], Any]]) -> list:
    """The local engine: each cell in this process, one after the other."""
    return [cell() for cell in cells]


def timed(function: Callable[..., Any], *args, **options) -> tuple[Any, float]:
    """(``function(*args, **options)``, the seconds it took): a cell that reports its own time."""
    clock = time.perf_counter()
    return function(*args, **options), time.perf_counter() - clock
