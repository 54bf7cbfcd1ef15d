"""The embedded default dataset: real photos shipped inside scikit-image's wheel, grouped as pseudo-devices.

They stand in for a camera dataset when no ``--data`` folder is given and in the tests, so everything
runs on a fresh install. The groups keep related shots together (the two motorcycle frames are a stereo
pair) so that a device-disjoint split stays meaningful. Files are copied byte for byte.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cfzoo.errors import DataError
from cfzoo.paths import default_cache_dir

SAMPLE_DEVICES: dict[str, tuple[str, ...]] = {
    "skimage_portraits": ("astronaut.png", "chelsea.png", "coffee.png"),
    "skimage_vehicles": ("rocket.jpg", "motorcycle_left.png", "motorcycle_right.png"),
    "skimage_science": ("hubble_deep_field.jpg", "retina.jpg", "ihc.png"),
    "skimage_gray": ("camera.png", "grass.png", "gravel.png", "brick.png", "moon.png"),
}

DESCRIPTION = "scikit-image's bundled photos (4 pseudo-devices, 14 images), the embedded default"


def skimage_data_dir() -> Path:
    try:
        import skimage.data
    except ImportError:
        raise DataError("scikit-image is not installed; pip install scikit-image, or pass a data folder") from None
    return Path(skimage.data.__file__).parent


def sample_dataset_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A camera-style folder (device sub-folders) of scikit-image's photos, created once under the cache."""
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "sample-cameras"
    if root.is_dir():
        return root
    source = skimage_data_dir()
    staging = root.with_name(f".{root.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for device, names in SAMPLE_DEVICES.items():
            (staging / device).mkdir(parents=True)
            for name in names:
                shutil.copyfile(source / name, staging / device / name)
        os.replace(staging, root)
    except FileNotFoundError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"scikit-image's photo {error.filename} is missing; reinstall scikit-image") from None
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not root.is_dir():  # another process may have won the rename
            raise
    return root
