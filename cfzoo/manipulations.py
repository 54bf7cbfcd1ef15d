"""The eight global manipulations of the paper, by task id, each a pure function uint8 image -> uint8 image.

Every free parameter the paper leaves open is fixed here, in :data:`MANIPULATIONS`, and nowhere
else; model cards quote :func:`parameter_table`. Choices:

* blur: separable Gaussian, kernel radius ``ceil(4 sigma)`` (taps beyond it dropped, kernel
  renormalised to sum 1), half-sample symmetric border (edge pixel repeated), float32 arithmetic,
  rounded half to even and clipped to 0..255;
* JPEG: Pillow/libjpeg baseline encoder with the IJG standard quantisation tables scaled to quality
  Q, 4:2:0 chroma subsampling, no optimised Huffman tables, decoded again by Pillow;
* median: Pillow's median (rank) filter on each RGB channel, border by edge replication;
* resize: Pillow bicubic (Keys, a = -0.5) resampling, output size ``round(scale * size)`` per axis,
  on the uint8 RGB image. Photos the camera upsampled itself (EXIF DigitalZoomRatio > 1) are left out
  of resize patch sets: their "pristine" patches would be resampled already.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageFilter

from cfzoo.errors import CfzooError
from cfzoo.images import as_rgb_uint8

BLUR_TRUNCATE_SIGMAS = 4.0
JPEG_SUBSAMPLING = "4:2:0"
RESIZE_FILTER = "bicubic"


@dataclass(frozen=True)
class Manipulation:
    """One task: a manipulation with all of its parameters fixed."""

    task_id: str
    kind: str
    title: str
    difficulty: str  # "easy" or "challenging", as in Table I
    parameters: Mapping[str, object]
    _function: Callable[[np.ndarray], np.ndarray]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self._function(as_rgb_uint8(image, f"input of {self.task_id}"))

    @property
    def needs_unresampled_photos(self) -> bool:
        """Resampling detectors need originals the camera did not upsample (no digital zoom)."""
        return self.kind == "resize"

    @property
    def keeps_size(self) -> bool:
        """Whether the output has the input's size, so every manipulated patch has a pristine partner in place."""
        return self.kind != "resize"

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the manipulated image; only resizing changes it."""
        if self.kind == "resize":
            scale = float(self.parameters["scale"])
            return _scaled(height, scale), _scaled(width, scale)
        return height, width


def gaussian_kernel(sigma: float, truncate: float = BLUR_TRUNCATE_SIGMAS) -> np.ndarray:
    """The normalised 1-D Gaussian taps used by the blur tasks (float64, odd length)."""
    radius = math.ceil(truncate * sigma)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    kernel = gaussian_kernel(sigma).astype(np.float32)
    radius = len(kernel) // 2
    pixels = image.astype(np.float32)
    pixels = _correlate_axis(np.pad(pixels, ((radius, radius), (0, 0), (0, 0)), mode="symmetric"), kernel, axis=0)
    pixels = _correlate_axis(np.pad(pixels, ((0, 0), (radius, radius), (0, 0)), mode="symmetric"), kernel, axis=1)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def jpeg_encode(image: np.ndarray, quality: int, subsampling: str = JPEG_SUBSAMPLING) -> bytes:
    """The JPEG file the jpeg tasks produce (before decoding); ``subsampling`` "4:2:0" or "4:4:4"."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(
        buffer, format="JPEG", quality=quality, subsampling=subsampling, optimize=False, progressive=False
    )
    return buffer.getvalue()


def jpeg_compress(image: np.ndarray, quality: int, subsampling: str = JPEG_SUBSAMPLING) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg_encode(image, quality, subsampling))) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


def median_filter(image: np.ndarray, size: int) -> np.ndarray:
    filtered = Image.fromarray(image, mode="RGB").filter(ImageFilter.MedianFilter(size))
    return np.asarray(filtered, dtype=np.uint8).copy()


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape[:2]
    size = (_scaled(width, scale), _scaled(height, scale))
    resized = Image.fromarray(image, mode="RGB").resize(size, resample=Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(resized, dtype=np.uint8).copy()


def _correlate_axis(padded: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Valid correlation of ``padded`` with a 1-D kernel along ``axis`` (symmetric kernels: same as convolution)."""
    along = np.moveaxis(padded, axis, 0)
    length = along.shape[0] - len(kernel) + 1
    out = kernel[0] * along[:length]
    for offset in range(1, len(kernel)):
        out += kernel[offset] * along[offset : offset + length]
    return np.moveaxis(out, 0, axis)


def _scaled(size: int, scale: float) -> int:
    return int(round(size * scale))


def _blur(task_id: str, sigma: float, difficulty: str) -> Manipulation:
    radius = math.ceil(BLUR_TRUNCATE_SIGMAS * sigma)
    return Manipulation(
        task_id,
        "blur",
        f"Gaussian blurring, sigma = {sigma:.2f}",
        difficulty,
        {
            "sigma": sigma,
            "kernel_radius": radius,
            "kernel_size": 2 * radius + 1,
            "truncate_sigmas": BLUR_TRUNCATE_SIGMAS,
            "border": "half-sample symmetric",
            "rounding": "half to even, clipped to 0..255",
        },
        lambda image: gaussian_blur(image, sigma),
    )


def _jpeg(task_id: str, quality: int, difficulty: str) -> Manipulation:
    return Manipulation(
        task_id,
        "jpeg",
        f"JPEG compression, Q = {quality}",
        difficulty,
        {
            "quality": quality,
            "quantisation_tables": "IJG standard, scaled to quality",
            "chroma_subsampling": JPEG_SUBSAMPLING,
            "optimize_huffman": False,
            "progressive": False,
            "codec": "Pillow (libjpeg)",
        },
        lambda image: jpeg_compress(image, quality),
    )


def _median(task_id: str, size: int, difficulty: str) -> Manipulation:
    return Manipulation(
        task_id,
        "median",
        f"Median filtering, {size}x{size}",
        difficulty,
        {"window": size, "channels": "each RGB channel separately", "border": "edge replication"},
        lambda image: median_filter(image, size),
    )


def _resize(task_id: str, scale: float, difficulty: str) -> Manipulation:
    return Manipulation(
        task_id,
        "resize",
        f"Resizing, scale = {scale:.3f}",
        difficulty,
        {
            "scale": scale,
            "interpolation": f"{RESIZE_FILTER} (Keys a = -0.5, Pillow)",
            "output_size": "round(scale * size) per axis",
            "antialias": "Pillow's support widening (only when shrinking)",
            "excluded_photos": "EXIF DigitalZoomRatio > 1 (upsampled in camera)",
        },
        lambda image: resize(image, scale),
    )


MANIPULATIONS: Mapping[str, Manipulation] = MappingProxyType(
    {
        manipulation.task_id: manipulation
        for manipulation in (
            _blur("blur1.1", 1.1, "easy"),
            _blur("blur0.5", 0.5, "challenging"),
            _jpeg("jpeg70", 70, "easy"),
            _jpeg("jpeg90", 90, "challenging"),
            _median("median7", 7, "easy"),
            _median("median3", 3, "challenging"),
            _resize("resize1.5", 1.5, "easy"),
            _resize("resize1.01", 1.01, "challenging"),
        )
    }
)

TASK_IDS: tuple[str, ...] = tuple(MANIPULATIONS)


def get_manipulation(task_id: str) -> Manipulation:
    try:
        return MANIPULATIONS[task_id]
    except KeyError:
        raise CfzooError(f"unknown task {task_id!r}; choose one of: {', '.join(TASK_IDS)}") from None


def apply_manipulation(task_id: str, image: np.ndarray) -> np.ndarray:
    """Apply the manipulation of ``task_id`` to a whole RGB uint8 image."""
    return get_manipulation(task_id)(image)


# --- platform laundering (the wild variants' training data) ------------------------------------------------------


@dataclass(frozen=True)
class Laundering:
    """What a platform does to an upload: an optional bicubic downscale by ``scale``, then an optional JPEG re-save
    at ``quality`` with ``subsampling``. Applied to a whole photo after the task's manipulation, and to its pristine
    version alike."""

    scale: float | None = None
    quality: int | None = None
    subsampling: str = JPEG_SUBSAMPLING

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.scale is not None:
            image = resize(image, self.scale)
        if self.quality is not None:
            image = jpeg_compress(image, self.quality, self.subsampling)
        return image

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.scale is None:
            return height, width
        return _scaled(height, self.scale), _scaled(width, self.scale)

    def as_dict(self) -> dict[str, object]:
        """The drawn parameters, as a patch set's record keeps them (None: that step was not taken)."""
        return {
            "downscale": self.scale,
            "jpeg_quality": self.quality,
            "chroma_subsampling": None if self.quality is None else self.subsampling,
        }


#: The distribution each photo's laundering is drawn from, per named laundering. "wild": one of four equally
#: likely steps (none, a JPEG re-save, a downscale, a downscale then a re-save), quality uniform over the
#: integers 65..100, chroma subsampling 4:2:0 or 4:4:4, scale uniform in [0.5, 1.0] (three decimals). The
#: photos left as they are keep the detector's accuracy on images that were not laundered.
LAUNDERINGS: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {
        "wild": MappingProxyType(
            {
                "steps": ("none", "jpeg", "downscale", "downscale+jpeg"),
                "jpeg_quality": (65, 100),
                "chroma_subsampling": ("4:2:0", "4:4:4"),
                "downscale": (0.5, 1.0),
                "interpolation": f"{RESIZE_FILTER} (Keys a = -0.5, Pillow), round(scale * size) per axis",
                "codec": "Pillow (libjpeg), IJG tables, no optimised Huffman tables",
            }
        )
    }
)


def check_laundering(name: str) -> str:
    """``name`` if it is one of :data:`LAUNDERINGS`, else a one-line CfzooError."""
    if name not in LAUNDERINGS:
        raise CfzooError(f"unknown laundering {name!r}; choose one of: {', '.join(LAUNDERINGS)}")
    return name


def draw_laundering(name: str, rng: np.random.Generator) -> Laundering:
    """One photo's laundering drawn from the distribution ``name`` of :data:`LAUNDERINGS`."""
    distribution = LAUNDERINGS[check_laundering(name)]
    step = distribution["steps"][rng.integers(len(distribution["steps"]))]
    low_quality, high_quality = distribution["jpeg_quality"]
    low_scale, high_scale = distribution["downscale"]
    quality = int(rng.integers(low_quality, high_quality + 1))
    subsampling = str(distribution["chroma_subsampling"][rng.integers(2)])
    scale = round(float(rng.uniform(low_scale, high_scale)), 3)
    return Laundering(
        scale=scale if "downscale" in step else None,
        quality=quality if "jpeg" in step else None,
        subsampling=subsampling,
    )


def parameter_table() -> list[dict[str, object]]:
    """One row per task with every fixed parameter, for model cards and reports."""
    return [
        {"task": m.task_id, "manipulation": m.title, "difficulty": m.difficulty, **m.parameters}
        for m in MANIPULATIONS.values()
    ]
