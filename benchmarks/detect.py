"""Detector speed: onnxruntime (as `cfzoo detect` runs it) against the same model in torch eager, CPU, batch 64.

    python benchmarks/detect.py [--checkpoints checkpoints/cameras-seed0] [--task jpeg70] [--repeats 5] [--contend]

For each family with a checkpoint, the script exports it to a temporary folder (the same ONNX graph the
zoo ships), checks that onnxruntime and torch agree on 64 patches of scikit-image's astronaut (JPEG
Q=70), then times both, alternating, and prints patches/second (best of ``--repeats``) and the ratio.
It also times onnxruntime with other session options: graph optimisation level (basic / all) and
intra-op threads (1, one per core), with and without spin-waiting. Needs the `train` extra.

``--contend`` runs the same measurements a second time beside a neighbour that keeps every core busy with
memory-bound work (a process per core copying 256 MB arrays back and forth: what a shared host's other tenants do
to a memory-bound model), and prints each family's rate against spam's, idle and under contention.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from cfzoo.export.spam_svm import SpamSVM
from cfzoo.export.zoo_writer import registry_entry
from cfzoo.families import export_checkpoint, load_checkpoint
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation
from cfzoo.patches import cut_patches, patch_grid
from cfzoo.sample_data import skimage_data_dir
from cfzoo.zoo.registry import FAMILY_IDS
from cfzoo.zoo.resolve import ResolvedFile
from cfzoo.zoo.runtime import Detector

BATCH = 64


def benchmark_batch() -> np.ndarray:
    """64 patches, float32 [64,3,128,128]: the overlapping stride-48 grid of the JPEG Q=70 astronaut."""
    photo = apply_manipulation("jpeg70", read_rgb(skimage_data_dir() / "astronaut.png"))
    positions = patch_grid(*photo.shape[:2], stride=48)[:BATCH]
    return np.ascontiguousarray(cut_patches(photo, positions).transpose(0, 3, 1, 2), dtype=np.float32)


def torch_model(family: str, detector) -> torch.nn.Module:
    return SpamSVM(detector, hard=True).eval() if family == "spam" else detector.eval()


def session_variants(path: Path) -> dict[str, onnxruntime.InferenceSession]:
    cores = os.cpu_count() or 1
    variants = {}
    for label, level, threads, spinning in (
        ("basic graph optimisation", onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC, 0, True),
        ("1 intra-op thread", onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL, 1, True),
        (f"{cores} intra-op threads, no spinning", onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL, cores, False),
    ):
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = level
        options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        variants[label] = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    return variants


def best_rate(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return BATCH / best


#: What each neighbour process copies back and forth: far beyond any cache.
NEIGHBOUR_BYTES = 256 * 2**20


def _neighbour(stop) -> None:
    source = np.ones(NEIGHBOUR_BYTES // 8)
    target = np.empty_like(source)
    while not stop.is_set():
        np.copyto(target, source)
        np.copyto(source, target)


@contextmanager
def contention():
    """One memory-bound neighbour process per core, for the duration of the block."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    neighbours = [context.Process(target=_neighbour, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
    for process in neighbours:
        process.start()
    time.sleep(2.0)  # let them allocate and start streaming
    try:
        yield
    finally:
        stop.set()
        for process in neighbours:
            process.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints/cameras-seed0"))
    parser.add_argument("--task", default="jpeg70")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--contend", action="store_true", help="also measure beside a memory-bound neighbour per core")
    arguments = parser.parse_args()
    rates = {"idle": measure(arguments)}
    if arguments.contend:
        with contention():
            print(f"\nunder contention: {os.cpu_count()} neighbour processes copying {NEIGHBOUR_BYTES >> 20} MB arrays")
            rates["contended"] = measure(arguments)
    print("\nonnxruntime (as cfzoo detect runs it), patches/s and the rate against spam's:")
    for condition, found in rates.items():
        spam = found.get("spam")
        cells = [
            f"{family} {rate:.1f}" + (f" ({rate / spam:.2f}x spam)" if spam and family != "spam" else "")
            for family, rate in found.items()
        ]
        print(f"  {condition:<9} " + ", ".join(cells))


def measure(arguments) -> dict[str, float]:
    """Each family's onnxruntime rate (patches/s, as detect runs it), after printing the comparison with torch."""
    found = {}
    images = benchmark_batch()
    tensor = torch.from_numpy(images)
    print(
        f"CPU, batch {BATCH}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__}; patches/s, best of {arguments.repeats}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for family in FAMILY_IDS:
            model_id = f"{family}-{arguments.task}"
            if not (arguments.checkpoints / f"{model_id}.safetensors").exists():
                print(f"{model_id}: no checkpoint in {arguments.checkpoints}, skipped")
                continue
            record, detector = load_checkpoint(arguments.checkpoints, model_id)
            model = torch_model(family, detector)
            detector_path, gradient_path = export_checkpoint(arguments.checkpoints, model_id, folder)
            entry = registry_entry(record, detector_path, gradient_path, embedded=False, hub=None)
            ort = Detector(entry, ResolvedFile(detector_path, "path"), ("CPUExecutionProvider",))
            with torch.inference_mode():
                np.testing.assert_allclose(ort.logits(images), model(tensor).numpy(), rtol=1e-3, atol=1e-3)
                ort_rate = torch_rate = 0.0
                for _ in range(arguments.repeats):  # alternate, so background load hits both alike
                    ort_rate = max(ort_rate, best_rate(partial(ort.logits, images), 1))
                    torch_rate = max(torch_rate, best_rate(partial(model, tensor), 1))
            found[family] = ort_rate
            print(
                f"{model_id:<22} onnxruntime {ort_rate:8.1f}  torch eager {torch_rate:8.1f}  ratio {ort_rate / torch_rate:5.2f}x"
            )
            for label, session in session_variants(detector_path).items():
                rate = best_rate(partial(session.run, ["logits"], {"image": images}), arguments.repeats)
                print(f"{'':<22} onnxruntime, {label:<36} {rate:8.1f}  ratio {rate / torch_rate:5.2f}x")
    return found


if __name__ == "__main__":
    main()
