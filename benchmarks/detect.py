"""Detector speed: onnxruntime (as `cfzoo detect` runs it) against the same model in torch eager, CPU, batch 64.

    python benchmarks/detect.py [--checkpoints checkpoints/cameras-seed0] [--task jpeg70] [--repeats 5]

For each family with a checkpoint, the script exports it to a temporary folder (the same ONNX graph the
zoo ships), checks that onnxruntime and torch agree on 64 patches of scikit-image's astronaut (JPEG
Q=70), then times both, alternating, and prints patches/second (best of ``--repeats``) and the ratio.
It also times onnxruntime with other session options: graph optimisation level (basic / all) and
intra-op threads (1, one per core), with and without spin-waiting. Needs the `train` extra.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints/cameras-seed0"))
    parser.add_argument("--task", default="jpeg70")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
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
            print(
                f"{model_id:<22} onnxruntime {ort_rate:8.1f}  torch eager {torch_rate:8.1f}  ratio {ort_rate / torch_rate:5.2f}x"
            )
            for label, session in session_variants(detector_path).items():
                rate = best_rate(partial(session.run, ["logits"], {"image": images}), arguments.repeats)
                print(f"{'':<22} onnxruntime, {label:<36} {rate:8.1f}  ratio {rate / torch_rate:5.2f}x")


if __name__ == "__main__":
    main()
