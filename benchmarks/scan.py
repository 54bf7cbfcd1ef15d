"""Scan throughput and memory: the local engine, Ray with one actor and Ray with two, on the same images in one run.

    python benchmarks/scan.py [--data DIR] [--images 14] [-f spam -f bayar2016 -f cozzolino2017]

Each configuration runs ``cfzoo scan`` in its own process on the same images (the first ``--images`` of ``--data``,
default scikit-image's photos as cfzoo lays them out, 512 x 512; every task, the chosen families) into a fresh
folder, twice: on the first two images and on all of them. Printed per configuration: wall time and
images/s of the full run, the ratio to the local engine, the seconds per further image ((full - two) / (N - 2):
start-up left out) and the start-up left, and the peak resident memory of the scan's processes (the driver and,
for Ray, every Ray process on this machine, sampled every 0.2 s). Ray's overhead per image is its seconds per
further image less the local engine's. From the local engine's, the script prints the CPU cores that 10 million
such images a day would need (docs/scale.md). Needs the ``scale`` extra (Ray, and psutil with it).
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
                family += [
                    candidate
                    for candidate in psutil.process_iter(["cmdline"])
                    if "ray" in " ".join(candidate.info["cmdline"] or [])
                ]
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


def run(
    images: list[Path], work: Path, name: str, selection: list[str], options: list[str]
) -> tuple[float, float, list[dict]]:
    """(seconds, peak MB, rows) of one ``cfzoo scan`` of ``images`` in its own process."""
    manifest = work / f"{name}-{len(images)}.txt"
    manifest.write_text("\n".join(str(path.resolve()) for path in images) + "\n")
    out = work / f"{name}-{len(images)}.parquet"
    command = [
        sys.executable,
        "-m",
        "cfzoo",
        "scan",
        str(manifest),
        "--out",
        str(out),
        *selection,
        "--images-per-part",
        "4",
        *options,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds, megabytes = peak_memory(process, include_ray=bool(options))
    if process.returncode != 0:
        raise SystemExit(f"{name}: {process.stderr.read()}")
    return seconds, megabytes, sorted(read_rows(out), key=lambda row: (row["path"], row["model"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--images", type=int, default=14)
    parser.add_argument("-f", "--family", action="append", default=None)
    arguments = parser.parse_args()
    families = arguments.family or ["spam", "bayar2016", "cozzolino2017"]
    selection = [option for family in families for option in ("-f", family)]
    images = scan_inputs([arguments.data or sample_dataset_dir()])[: arguments.images]
    configurations = {
        "local": [],
        "ray, 1 actor": ["--engine", "ray", "--workers", "1"],
        "ray, 2 actors": ["--engine", "ray", "--workers", "2"],
    }
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as work:
        for number, (name, options) in enumerate(configurations.items()):
            first, _, _ = run(images[:2], Path(work), f"{number}", selection, options)
            seconds, megabytes, rows = run(images, Path(work), f"{number}", selection, options)
            reference = reference or rows
            assert rows == reference, f"{name} wrote other rows than the local engine"
            marginal = (seconds - first) / (len(images) - 2)  # seconds per further image, start-up left out
            results[name] = (seconds, megabytes, marginal, first - 2 * marginal)
    pixels = sum(row["width"] * row["height"] for row in reference if row["width"]) / len(reference)
    detectors = len({row["model"] for row in reference})
    print(
        f"{len(images)} images ({pixels / 1e6:.2f} megapixels on average), {detectors} detectors, {len(reference)} rows; 2 CPU cores"
    )
    print(f"{'engine':<16}{'seconds':>9}{'images/s':>10}{'vs local':>10}{'s/image':>9}{'start-up s':>12}{'peak MB':>9}")
    local = results["local"]
    for name, (seconds, megabytes, marginal, fixed) in results.items():
        print(
            f"{name:<16}{seconds:>9.1f}{len(images) / seconds:>10.3f}{local[0] / seconds:>9.2f}x{marginal:>9.2f}{fixed:>12.1f}{megabytes:>9.0f}"
        )
    print(
        f"Ray overhead per image, start-up left out: {results['ray, 1 actor'][2] - local[2]:+.2f} s (1 actor), "
        f"{results['ray, 2 actors'][2] - local[2]:+.2f} s (2 actors)"
    )
    core_seconds = local[2] * 2 * IMAGES_PER_DAY
    print(
        f"10 million such images a day: {core_seconds / SECONDS_PER_DAY:,.0f} cores busy all day, at this machine's speed per core"
    )


if __name__ == "__main__":
    main()
