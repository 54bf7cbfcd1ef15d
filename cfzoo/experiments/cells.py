"""Independent cells of an experiment and the runner that executes them.

A cell is a call without arguments whose result is a typed document (Table I of one task, FGSM against one
target on one task, the robustness of one task). An experiment hands its cells to a :class:`CellRunner` and merges
the results in the order it gave them, so its tables are the same wherever the cells ran. Each engine
(:mod:`cfzoo.engines`) makes a runner: ``local`` runs the cells in this process, one after the other
(:data:`RUN_HERE`); ``ray`` runs each as a Ray task."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Cell = Callable[[], Any]


@dataclass(frozen=True)
class CellRunner:
    """Runs independent cells and returns their results in order. ``in_process``: the cells run in this process,
    so they may report progress through the caller's callbacks (elsewhere the runner reports cells done)."""

    run: Callable[[Sequence[Cell]], list]
    in_process: bool

    def __call__(self, cells: Sequence[Cell]) -> list:
        return self.run(cells)


#: The local engine's runner: each cell in this process, one after the other.
RUN_HERE = CellRunner(lambda cells: [cell() for cell in cells], in_process=True)


def timed(function: Callable[..., Any], *args, **options) -> tuple[Any, float]:
    """(``function(*args, **options)``, the seconds it took): a cell that reports its own time."""
    clock = time.perf_counter()
    return function(*args, **options), time.perf_counter() - clock
