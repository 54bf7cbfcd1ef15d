"""Reading images safely into RGB uint8 arrays, and writing them without leaving partial files.

Every reader in cfzoo goes through :func:`load_image`, so all consumers see the same pixels:

* the EXIF orientation tag is applied (the array is upright as a viewer shows it);
* modes are converted explicitly: gray and 1-bit are replicated to three channels; palette images
  are expanded through their palette; alpha is dropped (the stored colour values are kept, not
  composited, so no pixel is altered); CMYK goes through Pillow's CMYK->RGB; 16-bit samples keep
  their high byte (``v >> 8``), which is what Pillow itself does for 16-bit RGB files;
* Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is kept, and an image above it
  is refused rather than merely warned about;
* truncated, corrupt, empty and non-image files raise :class:`~cfzoo.errors.ImageReadError` with a
  one-line message naming the file and the problem. JPEG needs a second decoder for that (see
  :func:`_check_jpeg_stream`): libjpeg fills a stream cut short with gray and only warns, which Pillow hides.
  TIFF needs its layout checked (:func:`_check_tiff`): strips that cover part of the rows, or JPEG strips cut
  short, also decode into filler;
* only the formats in :data:`READ_FORMATS` are read, each one checked for data cut short (tests/test_images.py);
  whatever else Pillow can open (ICO, PCX, TGA, PSD, ...) is refused rather than trusted.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cfzoo.errors import ImageReadError, first_line
from cfzoo.files import write_atomically

#: ITU-R BT.601 luma weights: how every detector turns RGB into gray, inside its model.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: Suffixes treated as images when scanning directories.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".avif", ".ppm", ".pgm"})
#: Pillow's formats that cfzoo reads: those whose decoders refuse, or whose data cfzoo checks for, a file cut short.
READ_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "BMP", "WEBP", "GIF", "AVIF", "PPM"})
_READ_FORMATS_TEXT = "JPEG, PNG, TIFF, BMP, WebP, GIF, AVIF or PPM/PGM"

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class LoadedImage:
    """An image as cfzoo sees it, with what was done to get there."""

    path: Path
    pixels: np.ndarray  # H x W x 3, uint8, RGB
    source_format: str | None
    source_mode: str
    frame_count: int
    notes: tuple[str, ...]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Decode ``path`` into an upright RGB uint8 array; raise ImageReadError for anything unusable."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise ImageReadError(f"{path}: a broken symbolic link or a link loop; point it at an image file")
        raise ImageReadError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image file")
    if not path.is_file():  # reading a pipe would block, a device would never end
        raise ImageReadError(f"{path}: not a regular file (a pipe, socket or device); save the image to a file first")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes); re-copy or re-export the image")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; cfzoo refuses at the limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_stream(path, image)
                return _decode(path, image, [])
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(
            f"{path}: too many pixels for a safe decode ({first_line(error)}); downscale or crop it before analysis"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file Pillow can decode; expected {_READ_FORMATS_TEXT}") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied; make the file readable for this user") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, MemoryError) as error:
        # Pillow reports truncation and corrupt streams through these; its messages are specific enough.
        raise ImageReadError(
            f"{path}: corrupt or truncated image ({first_line(error)}); re-copy or re-export it"
        ) from None


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Shorthand for ``load_image(path).pixels``."""
    return load_image(path).pixels


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, without decoding the pixels."""

    height: int  # after EXIF orientation
    width: int
    digital_zoom: float  # EXIF DigitalZoomRatio; 1.0 when absent or 0 (EXIF's "no digital zoom")

    @property
    def upsampled_in_camera(self) -> bool:
        """A digital zoom above 1 means the camera resampled the picture: not a never-resampled original."""
        return self.digital_zoom > 1


def read_header(path: str | os.PathLike[str]) -> ImageHeader:
    """Size (after EXIF orientation) and digital zoom of an image file; ImageReadError if unreadable."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                exif = image.getexif()
                orientation = exif.get(_EXIF_ORIENTATION, 1)
                zoom = exif.get_ifd(_EXIF_IFD).get(_EXIF_DIGITAL_ZOOM_RATIO)
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise ImageReadError(f"{path}: cannot read the image header ({first_line(error)})") from None
    if orientation in (5, 6, 7, 8):  # rotations by 90 degrees swap the axes
        width, height = height, width
    try:
        zoom = float(zoom)
    except (TypeError, ValueError, ZeroDivisionError):  # absent, or a malformed rational
        zoom = 1.0
    return ImageHeader(height=height, width=width, digital_zoom=zoom if zoom > 0 else 1.0)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly in ``folder`` (by :data:`IMAGE_SUFFIXES`, any case; not recursive), sorted."""
    return sorted(path for path in Path(folder).iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def save_png(pixels: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an RGB uint8 array as a lossless PNG, atomically: the file appears whole or not at all."""
    pixels = as_rgb_uint8(pixels, "image to save")
    return write_atomically(path, functools.partial(write_png, pixels))


def write_png(pixels: np.ndarray, path: Path) -> None:
    """An RGB uint8 array as a lossless PNG at ``path`` (not atomic: for the writers of :mod:`cfzoo.files`)."""
    Image.fromarray(as_rgb_uint8(pixels, "image to save"), mode="RGB").save(path, format="PNG")


def as_rgb_uint8(pixels: np.ndarray, what: str = "image") -> np.ndarray:
    """Check that ``pixels`` is an H x W x 3 uint8 array and return it (no copy)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"{what} must be an H x W x 3 uint8 RGB array, got {pixels.dtype} array of shape {pixels.shape}"
        )
    return pixels


_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_EXIF_DIGITAL_ZOOM_RATIO = 0xA404


def _decode(path: Path, image: Image.Image, notes: list[str]) -> LoadedImage:
    """Pillow's pixels, upright and RGB; ``notes`` (what was done so far) grows with what is done here."""
    source_format = image.format
    frame_count = int(getattr(image, "n_frames", 1))
    if frame_count > 1:
        image.seek(0)
        notes.append(f"animated {source_format or 'image'} with {frame_count} frames: only the first frame is analysed")
    source_mode = image.mode
    if image.mode in ("RGB", "RGBA") and image.tile and str(image.tile[0].args).endswith(";16B"):
        notes.append(f"16-bit {image.mode} reduced to 8 bits (high byte)")
    image.load()
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in range(2, 9):  # the eight EXIF orientations; 1 is upright
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied")
    elif orientation not in (1, None):
        notes.append(
            f"EXIF orientation {orientation!r} is not one of the eight defined (1-8): ignored, the pixels as stored"
        )
    pixels, conversion = _to_rgb(image, path)
    if conversion:
        notes.append(conversion)
    return LoadedImage(
        path=path,
        pixels=pixels,
        source_format=source_format,
        source_mode=source_mode,
        frame_count=frame_count,
        notes=tuple(notes),
    )


#: simplejpeg's output colour space for Pillow's mode of a JPEG (the check needs a conversion libjpeg can do).
_JPEG_CHECK_COLORSPACE = {"L": "GRAY", "CMYK": "CMYK"}


def _check_stream(path: Path, image: Image.Image) -> None:
    """Refuse ``image`` (just opened from ``path``) unless its format is one cfzoo reads and its data is whole."""
    if image.format not in READ_FORMATS:
        raise ImageReadError(
            f"{path}: {image.format} is not a format cfzoo checks for damage; convert it to PNG "
            f"(cfzoo reads {_READ_FORMATS_TEXT})"
        )
    if image.format in ("JPEG", "MPO"):
        layout = "/".join(f"{horizontal}x{vertical}" for _, horizontal, vertical, _ in getattr(image, "layer", []))
        _check_jpeg_stream(path, path.read_bytes(), _JPEG_CHECK_COLORSPACE.get(image.mode, "RGB"), layout)
    elif image.format == "TIFF":
        _check_tiff(path, image)


def _check_jpeg_stream(path: Path, stream: bytes, colorspace: str, layout: str, where: str = "JPEG") -> None:
    """Refuse a JPEG ``stream`` whose entropy-coded data is cut short or corrupt (``where``: what it is, for the
    message).

    libjpeg(-turbo) recovers from such streams by filling the rest with gray and only *warns* ("premature end of
    data segment", "corrupt JPEG data"); Pillow hides those warnings, so a broken file would be judged as an
    image. simplejpeg (libjpeg-turbo, strict mode) turns them into errors. Decoding at the smallest DCT scale
    still reads every entropy-coded segment; on 119 camera photos it made reading 1.28x as long as Pillow
    alone (benchmarks/jpeg_reader.py). The pixels still come from Pillow, so every consumer sees what it saw
    before. A chroma layout TurboJPEG's API does not take (sampling factors such as 3x1/1x1/1x1, which no
    camera writes) cannot be checked, so it is refused too.
    """
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(stream, colorspace=colorspace, min_height=1, min_width=1, strict=True)
    except ValueError as error:
        message = first_line(error)
        if message.startswith("tjDecompressHeader"):
            raise ImageReadError(
                f"{path}: {where} with the chroma layout {layout or 'of this file'}, which cfzoo's strict decoder "
                "cannot check for data cut short (that would decode to filler); convert it to PNG with a strict "
                "decoder (djpeg -strict) if you trust it"
            ) from None
        raise ImageReadError(f"{path}: corrupt or truncated {where} ({message}); re-copy or re-export it") from None


#: TIFF tags read by :func:`_check_tiff`.
_TIFF = {
    "bits": 258,
    "compression": 259,
    "photometric": 262,
    "strip_offsets": 273,
    "samples": 277,
    "rows_per_strip": 278,
    "strip_counts": 279,
    "planar": 284,
    "tile_width": 322,
    "tile_length": 323,
    "tile_offsets": 324,
    "tile_counts": 325,
    "jpeg_tables": 347,
}
_TIFF_JPEG, _TIFF_OLD_JPEG, _TIFF_YCBCR = 7, 6, 6


def _check_tiff(path: Path, image: Image.Image) -> None:
    """Refuse a TIFF (its first image) whose strips or tiles do not cover the image, end beyond the file, hold fewer
    bytes than their rows need (uncompressed), or hold JPEG data cut short: libtiff fills what is missing with
    black, or with gray through libjpeg, and Pillow decodes the filler as pixels. LZW, Deflate and PackBits data
    cut short are refused by libtiff itself."""
    tags = image.tag_v2

    def values(name: str) -> tuple:
        found = tags.get(_TIFF[name], ())
        return found if isinstance(found, tuple) else (found,)

    width, height = image.size
    samples = tags.get(_TIFF["samples"], 1)
    planes = samples if tags.get(_TIFF["planar"], 1) == 2 else 1
    bits = values("bits") or (1,)
    row_bits = sum(bits) if planes == 1 else bits[0]  # a strip holds every sample of its rows, or one plane's
    if _TIFF["tile_width"] in tags:
        piece_width, piece_rows = tags[_TIFF["tile_width"]], tags[_TIFF["tile_length"]]
        pieces = -(-width // piece_width) * -(-height // piece_rows)
        offsets, counts, what = values("tile_offsets"), values("tile_counts"), "tile"
        rows_of = [piece_rows] * pieces
    else:
        piece_width, piece_rows = width, min(tags.get(_TIFF["rows_per_strip"], height) or height, height)
        pieces = -(-height // piece_rows)
        offsets, counts, what = values("strip_offsets"), values("strip_counts"), "strip"
        rows_of = [min(piece_rows, height - index * piece_rows) for index in range(pieces)]
    held = min(len(offsets), len(counts))
    if held < pieces * planes:
        covered = (
            f"{held // planes * piece_rows} of {height} rows"
            if what == "strip"
            else f"{held} of {pieces * planes} tiles"
        )
        raise ImageReadError(
            f"{path}: its TIFF {what}s cover {covered}; the rest would be filler; re-copy or re-export it"
        )
    size = path.stat().st_size
    if any(count <= 0 or offset + count > size for offset, count in zip(offsets, counts)):
        raise ImageReadError(
            f"{path}: TIFF data cut short (a {what} is empty or ends beyond the file); re-copy or re-export it"
        )
    compression = tags.get(_TIFF["compression"], 1)
    if compression == _TIFF_OLD_JPEG:
        raise ImageReadError(
            f"{path}: old-style JPEG compression in TIFF (deprecated since 1995) is not read; convert it to PNG"
        )
    if compression == 1 and tags.get(_TIFF["photometric"]) != _TIFF_YCBCR:
        row_bytes = -(-piece_width * row_bits // 8)
        short = [
            index
            for index, count in enumerate(counts[: pieces * planes])
            if count < rows_of[index % pieces] * row_bytes
        ]
        if short:
            raise ImageReadError(
                f"{path}: TIFF data cut short ({what} {short[0]} holds fewer bytes than its rows need); "
                "re-copy or re-export it"
            )
    if compression == _TIFF_JPEG:
        tables = tags.get(_TIFF["jpeg_tables"], b"")
        colorspace = "GRAY" if samples // planes == 1 else "CMYK" if tags.get(_TIFF["photometric"]) == 5 else "RGB"
        with open(path, "rb") as stream:
            for index, (offset, count) in enumerate(zip(offsets, counts)):
                stream.seek(offset)
                data = stream.read(count)
                whole = (
                    tables[:-2] + data[2:] if tables else data
                )  # the tables' SOI..DQT/DHT, then the strip's SOF..EOI
                _check_jpeg_stream(path, whole, colorspace, "", where=f"JPEG data in TIFF {what} {index}")


def _to_rgb(image: Image.Image, path: Path) -> tuple[np.ndarray, str | None]:
    """The explicit mode table; returns the pixels and a note when anything was converted."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy(), None
    if mode in ("L", "1"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), f"{mode} (grayscale) replicated to RGB"
    if mode in ("P", "PA"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(rgba[:, :, :3]), "palette expanded to RGB; transparency ignored"
    if mode in ("RGBA", "RGBa", "RGBX"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(rgba[:, :, :3]), f"{mode}: alpha channel dropped, colours kept as stored"
    if mode in ("LA", "La"):
        gray = np.asarray(image.convert("LA"), dtype=np.uint8)[:, :, 0]
        return np.repeat(gray[:, :, None], 3, axis=2), "LA (grayscale + alpha): alpha dropped, gray replicated to RGB"
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), f"{mode} converted to RGB by Pillow"
    if mode in _SIXTEEN_BIT_MODES:
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), f"16-bit grayscale ({mode}) reduced to 8 bits (high byte)"
    if mode == "I":  # Pillow's 32-bit container, which also holds 16-bit grayscale (PGM, some TIFF and PNG)
        values = np.asarray(image)
        if values.size and values.min() >= 0 and values.max() <= 0xFFFF:
            gray = (values.astype(np.uint16) >> 8).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2), "16-bit grayscale reduced to 8 bits (high byte)"
    raise ImageReadError(
        f"{path}: pixel mode {mode!r} (32-bit or float samples) is not supported; "
        "convert it to 8- or 16-bit RGB or grayscale"
    )
