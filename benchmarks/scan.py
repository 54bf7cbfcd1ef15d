"""Scan throughput and memory: the local engine, Ray with one actor and Ray with two, on the same images in one run.

    python benchmarks/scan.py [--data DIR] [--images 14] [-f spam -f bayar2016 -f cozzolino2017]

Each configuration runs ``cfzoo scan`` in its own process on the same images (the first ``--images`` of ``--data``,
default scikit-image's photos as cfzoo lays them out, 512 x 512; every task, the chosen families) into a fresh
folder. Printed per configuration: wall time, images/s, the
ratio to the local engine, and the peak resident memory of the scan's processes (the driver and, for Ray, every
Ray process on this machine, sampled every 0.2 s). The Ray overhead per image is (Ray's seconds per image with one
actor) - (the local engine's). From the local engine's seconds per image, megapixels per image and the detectors
scored, the script prints the CPU cores that 10 million images a day would need (docs/scale.md). Needs the
``scale`` extra (Ray, and psutil with it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from cfzoo.engines.parts import read_rows
from cfzoo.ops.scan import scan_inputs
from cfzoo.sample_data import sample_dataset_dir

IMAGES_PER_DAY = 10_000_000
SECONDS_PER_DAY = 86_400


def peak_memory(process: subprocess.Popen, include_ray: bool) -> tuple[float, float]:
    """(wall seconds, peak MB) of ``process`` and its children, plus Ray's processes when ``include_ray``."""
    peak, started = 0.0, time.perf_counter()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            total = 0
            try:
                family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                family = []
            if include_ray:
                family += [candidate for candidate in psutil.process_iter(["cmdline"]) if "ray" in " ".join(candidate.info["cmdline"] or [])]
            for member in {member.pid: member for member in family}.values():
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total / 2**20)
            time.sleep(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    process.wait()
    done.set()
    watcher.join()
    return time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--images", type=int, default=14)
    parser.add_argument("-f", "--family", action="append", default=None)
    arguments = parser.parse_args()
    families = arguments.family or ["spam", "bayar2016", "cozzolino2017"]
    images = scan_inputs([arguments.data or sample_dataset_dir()])[: arguments.images]
    with tempfile.TemporaryDirectory() as work:
        manifest = Path(work) / "images.txt"
        manifest.write_text("\n".join(str(path.resolve()) for path in images) + "\n")
        selection = [option for family in families for option in ("-f", family)]
        configurations = {"local": [], "ray, 1 actor": ["--engine", "ray", "--workers", "1"], "ray, 2 actors": ["--engine", "ray", "--workers", "2"]}
        results, reference = {}, None
        for name, options in configurations.items():
            out = Path(work) / f"{len(results)}.parquet"
            command = [sys.executable, "-m", "cfzoo", "scan", str(manifest), "--out", str(out), *selection, "--images-per-part", "4", *options]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            seconds, megabytes = peak_memory(process, include_ray=bool(options))
            if process.returncode != 0:
                raise SystemExit(f"{name}: {process.stderr.read()}")
            rows = sorted(read_rows(out), key=lambda row: (row["path"], row["model"]))
            reference = reference or rows
            assert rows == reference, f"{name} wrote other rows than the local engine"
            results[name] = (seconds, megabytes)
        pixels = sum(row["width"] * row["height"] for row in reference if row["width"]) / len(reference)
    detectors = len({row["model"] for row in reference})
    local_seconds = results["local"][0]
    print(f"{len(images)} images ({pixels / 1e6:.1f} megapixels on average), {detectors} detectors, {len(reference)} rows; 2 CPU cores")
    print(f"{'engine':<16}{'seconds':>9}{'images/s':>10}{'vs local':>10}{'peak MB':>9}")
    for name, (seconds, megabytes) in results.items():
        print(f"{name:<16}{seconds:>9.1f}{len(images) / seconds:>10.3f}{local_seconds / seconds:>9.2f}x{megabytes:>9.0f}")
    per_image = local_seconds / len(images)
    overhead = (results["ray, 1 actor"][0] - local_seconds) / len(images)
    print(f"local: {per_image:.2f} s per image on 2 cores; Ray overhead with one actor: {overhead:+.2f} s per image (start-up included)")
    core_seconds = per_image * 2 * IMAGES_PER_DAY
    print(f"10 million such images a day: {core_seconds / SECONDS_PER_DAY:,.0f} cores busy all day, at this machine's speed per core")


if __name__ == "__main__":
    main()
