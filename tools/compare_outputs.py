"""Compare two folders of cfzoo outputs, clocks aside: the proof that a redesign preserves behaviour.

Run the same commands before and after a change (the before side from a worktree of the old commit, e.g.
``git worktree add /tmp/before HEAD~1`` and ``PYTHONPATH=/tmp/before``), each writing its outputs into a folder, then:

    python tools/compare_outputs.py BEFORE AFTER

JSON documents are compared key by key without their clocks (seconds, created, machine, ...); CSV files cell by
cell without their clock columns. Exit code 0 when everything is the same.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

CLOCKS = {"seconds", "created", "machine", "training_seconds", "total", "restore_seconds"}


def without_clocks(value):
    if isinstance(value, dict):
        return {key: without_clocks(item) for key, item in value.items() if key not in CLOCKS}
    if isinstance(value, list):
        return [without_clocks(item) for item in value]
    return value


def csv_without_clocks(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{key: cell for key, cell in row.items() if key not in CLOCKS} for row in csv.DictReader(handle)]


def same_file(before: Path, after: Path) -> bool:
    if before.suffix == ".json":
        return without_clocks(json.loads(before.read_text())) == without_clocks(json.loads(after.read_text()))
    return csv_without_clocks(before) == csv_without_clocks(after)


def main(before: Path, after: Path) -> int:
    different = 0
    for path in sorted(before.rglob("*")):
        if path.suffix not in (".json", ".csv"):
            continue
        other = after / path.relative_to(before)
        same = other.exists() and same_file(path, other)
        different += not same
        print("same" if same else "DIFFERENT", path.relative_to(before))
    print("all the same" if not different else f"{different} files differ")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
