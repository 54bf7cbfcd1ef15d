"""The sessions' memory rule, measured: every embedded detector on one photo, under three rules side by side.

    python benchmarks/memory.py [--photo PATH] [--size 1024] [--passes 3]

Each rule runs in a fresh process (peak memory is per process): every detector the package ships scores every
patch of the `cfzoo detect` grid of the photo (a centre crop of --size pixels; default scikit-image's
astronaut upscaled to it), batch 64, --passes times. The script prints seconds per pass (first and best),
the process's peak resident memory, and the ratios to cfzoo's rule.

- ``arena per session``: onnxruntime's default, each session keeps an arena at its own peak;
- ``shrink after every run``: per-session arenas handed back after each run (cfzoo's former rule);
- ``shared allocator``: one CPU arena registered with onnxruntime's environment and used by every session,
  cfzoo's rule (sessions made by :func:`cfzoo.zoo.catalog.open_detector`, as `cfzoo detect` makes them).
Needs only the runtime (no torch).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

RULES = ("arena per session", "shrink after every run", "shared allocator")
BATCH = 64


def photo_images(path: str | None, size: int) -> np.ndarray:
    """The contract's float32 [N,3,128,128] images of every detect-grid patch of the photo."""
    from PIL import Image

    from cfzoo.images import read_rgb
    from cfzoo.patches import cut_patches, patch_grid
    from cfzoo.sample_data import skimage_data_dir
    from cfzoo.zoo.runtime import to_model_input

    if path is None:
        with Image.open(skimage_data_dir() / "astronaut.png") as photo:
            pixels = np.asarray(photo.convert("RGB").resize((size, size), Image.BICUBIC))
    else:
        pixels = read_rgb(path)
        top, left = max(0, (pixels.shape[0] - size) // 2), max(0, (pixels.shape[1] - size) // 2)
        pixels = pixels[top : top + size, left : left + size]
    return to_model_input(cut_patches(pixels, patch_grid(*pixels.shape[:2])))


def scorers(rule: str) -> list:
    """One function per embedded detector, images -> logits, with sessions made under ``rule``."""
    from cfzoo.zoo.catalog import open_detector
    from cfzoo.zoo.registry import embedded_registry

    entries = [entry for entry in embedded_registry() if entry.embedded]
    if rule == "shared allocator":
        return [open_detector(entry.id, providers="cpu").logits for entry in entries]
    import onnxruntime

    from cfzoo.zoo.resolve import resolve

    run_options = onnxruntime.RunOptions()
    if rule == "shrink after every run":
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    functions = []
    for entry in entries:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as cfzoo's sessions
        session = onnxruntime.InferenceSession(
            str(resolve(entry, "detector").path), options, providers=["CPUExecutionProvider"]
        )
        functions.append(lambda images, session=session: session.run(["logits"], {"image": images}, run_options)[0])
    return functions


def measure(rule: str, photo: str | None, size: int, passes: int) -> dict:
    images = photo_images(photo, size)
    functions = scorers(rule)
    seconds, logits = [], None
    for _ in range(passes):
        started = time.perf_counter()
        logits = [
            np.concatenate([score(images[start : start + BATCH]) for start in range(0, len(images), BATCH)])
            for score in functions
        ]
        seconds.append(time.perf_counter() - started)
    peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    checksum = float(sum(np.abs(values).sum() for values in logits))
    return {
        "rule": rule,
        "detectors": len(functions),
        "patches": len(images),
        "first_s": seconds[0],
        "best_s": min(seconds),
        "peak_gb": peak_bytes / 1e9,
        "checksum": checksum,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", help="a photo to crop (default: scikit-image's astronaut, upscaled)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--rule", choices=RULES, help=argparse.SUPPRESS)  # one rule, in this process
    arguments = parser.parse_args()
    if arguments.rule:
        print(json.dumps(measure(arguments.rule, arguments.photo, arguments.size, arguments.passes)))
        return
    results = {}
    for rule in RULES:
        command = [
            sys.executable,
            __file__,
            "--rule",
            rule,
            "--size",
            str(arguments.size),
            "--passes",
            str(arguments.passes),
        ]
        if arguments.photo:
            command += ["--photo", arguments.photo]
        results[rule] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    shipped = results["shared allocator"]
    print(
        f"{shipped['detectors']} detectors x {shipped['patches']} patches of a {arguments.size}x{arguments.size} photo, "
        f"batch {BATCH}, {arguments.passes} passes, one process per rule"
    )
    print(
        f"{'rule':<24} {'first pass s':>12} {'best pass s':>12} {'peak GB':>8} {'speed vs cfzoo':>15} {'memory vs cfzoo':>16}"
    )
    for rule, result in results.items():
        print(
            f"{rule:<24} {result['first_s']:>12.2f} {result['best_s']:>12.2f} {result['peak_gb']:>8.2f} "
            f"{shipped['best_s'] / result['best_s']:>14.2f}x {result['peak_gb'] / shipped['peak_gb']:>15.2f}x"
        )
    checksums = {round(result["checksum"], 1) for result in results.values()}
    print("same logits under every rule" if len(checksums) == 1 else f"logits differ between rules: {checksums}")


if __name__ == "__main__":
    main()
