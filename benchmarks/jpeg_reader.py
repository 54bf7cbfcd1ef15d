"""The strict JPEG reader's cost: cfzoo's reader (Pillow's pixels after simplejpeg's strict check) against
Pillow alone (the reader before the check), on every JPEG of a camera folder, side by side.

    python benchmarks/jpeg_reader.py ../shared/data/cameras [--repeats 3]

For each photo both readers run alternately, ``--repeats`` times; the script prints the total of each
reader's best times, the ratio, the check's share, how many photos the strict reader refused (a whole camera
file should never be), and confirms that both give the same pixels. Needs only the runtime.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cfzoo.errors import ImageReadError
from cfzoo.images import _decode, load_image


def pillow_only(path: Path) -> np.ndarray:
    """The reader as it was: the same decode, mode table and orientation, without the strict check."""
    with Image.open(path) as image:
        return _decode(path, image, []).pixels


def best_seconds(read, path: Path, repeats: int):
    best, pixels = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        pixels = read(path)
        best = min(best, time.perf_counter() - started)
    return best, pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a folder of camera folders (searched recursively)")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    photos = sorted(path for path in arguments.data.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        raise SystemExit(f"error: no JPEG under {arguments.data}")
    totals = {"pillow": 0.0, "strict": 0.0}
    refused, pixels_read = [], 0
    for path in photos:
        pillow_seconds, expected = best_seconds(pillow_only, path, arguments.repeats)
        try:
            strict_seconds, pixels = best_seconds(lambda p: load_image(p).pixels, path, arguments.repeats)
        except ImageReadError as error:
            refused.append(str(error))
            continue
        assert np.array_equal(pixels, expected), f"{path}: the strict reader changed the pixels"
        totals["pillow"] += pillow_seconds
        totals["strict"] += strict_seconds
        pixels_read += pixels.shape[0] * pixels.shape[1]
    read = len(photos) - len(refused)
    print(
        f"{len(photos)} JPEGs under {arguments.data}, {pixels_read / 1e6:.0f} Mpixel; best of {arguments.repeats} per photo"
    )
    print(
        f"Pillow alone (before)        {totals['pillow']:7.2f} s  {pixels_read / 1e6 / totals['pillow']:6.1f} Mpixel/s"
    )
    print(
        f"strict check + Pillow (now)  {totals['strict']:7.2f} s  {pixels_read / 1e6 / totals['strict']:6.1f} Mpixel/s"
    )
    print(
        f"cost: {totals['strict'] / totals['pillow']:.2f}x the time of Pillow alone; same pixels on all {read} photos read"
    )
    print(f"refused: {len(refused)}" + "".join(f"\n  {message}" for message in refused))


if __name__ == "__main__":
    main()
