"""How cfzoo spreads a batch over the CPU cores: one onnxruntime run on every core (intra-op threads) against the
batch split into one share of rows per core, each share run on one thread at the same time (what
:func:`cfzoo.zoo.runtime.run_rows` does for detectors and gradient companions), side by side in one run.

    python benchmarks/threads.py [--model bayar2016-median7 --model cozzolino2017-median7 ...]

For each zoo model: its detector and its gradient companion on the 64 patches of benchmarks/pgd.py, both ways,
alternating, median of 7 after a warm-up; the outputs must be identical (no operator of a detector mixes rows).
With two cores and one thread each, both shares stay busy, where one run's thread pool waits at every operator's
end for its slowest thread. Needs the `train` extra (benchmarks/pgd.py builds the patches).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime
from pgd import manipulated_patches  # benchmarks/pgd.py

from cfzoo.zoo.catalog import open_companion, open_detector
from cfzoo.zoo.runtime import cpu_workers

REPEATS = 7


def one_run_on_every_core(path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = cpu_workers()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as cfzoo's sessions
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def median_milliseconds(runs: dict) -> dict:
    """Each run's median time, the runs alternating so that background load hits them alike."""
    for run in runs.values():
        run()
    seconds = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in seconds.items()}


def measure(model_id: str) -> None:
    images = np.ascontiguousarray(
        manipulated_patches(model_id.split("-", 1)[1]).transpose(0, 3, 1, 2), dtype=np.float32
    )
    labels = np.ones(len(images), dtype=np.int64)
    detector, companion = open_detector(model_id, providers="cpu"), open_companion(model_id, providers="cpu")
    for kind, model, feeds, shares in (
        ("detector", detector, {"image": images}, lambda: [detector.logits(images)]),
        (
            "companion",
            companion,
            {"image": images, "label": labels},
            lambda: list(companion.logits_and_gradient(images, labels)),
        ),
    ):
        whole = one_run_on_every_core(model.path)
        outputs = [output.name for output in whole.get_outputs()][: len(shares())]
        if not all(np.array_equal(a, b) for a, b in zip(whole.run(outputs, feeds), shares())):
            raise SystemExit(f"{model_id}'s {kind}: the row shares do not give the one run's outputs")
        times = median_milliseconds({"one run": lambda: whole.run(outputs, feeds), "row shares": shares})
        print(
            f"{model_id:<24} {kind:<9}  one run on {cpu_workers()} threads {times['one run']:7.1f} ms   "
            f"{cpu_workers()} row shares on 1 thread {times['row shares']:7.1f} ms   {times['one run'] / times['row shares']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        help="zoo model ids (repeatable); default the median7 model of spam, bayar2016, cozzolino2017",
    )
    arguments = parser.parse_args()
    print(f"batch 64, CPU, onnxruntime {onnxruntime.__version__}, {cpu_workers()} cores; identical outputs checked")
    for model_id in arguments.model or ["spam-median7", "bayar2016-median7", "cozzolino2017-median7"]:
        measure(model_id)


if __name__ == "__main__":
    main()
