import io
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfzoo.errors import CfzooError, ImageReadError
from cfzoo.images import IMAGE_SUFFIXES, list_images, load_image, read_header, read_rgb, save_png
from cfzoo.sample_data import skimage_data_dir


def write_png16_rgb(path, samples):
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): IHDR, one IDAT, IEND."""
    height, width, _ = samples.shape

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = b"".join(b"\x00" + samples[row].astype(">u2").tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def assert_one_line_error(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    assert isinstance(excinfo.value, CfzooError)


# --- good inputs -----------------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(tmp_path, rng):
    pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    save_png(pixels, tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.flags.writeable
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.notes == () and loaded.frame_count == 1


@pytest.mark.parametrize(
    "orientation, expected",
    [
        (3, lambda a: a[::-1, ::-1]),  # rotated 180
        (6, lambda a: np.rot90(a, k=-1)),  # needs a 90 degree clockwise turn
        (8, lambda a: np.rot90(a, k=1)),  # needs a 90 degree counter-clockwise turn
        (2, lambda a: a[:, ::-1]),  # mirrored
    ],
)
def test_exif_orientation_is_applied(tmp_path, rng, orientation, expected):
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "o.png", exif=exif)
    loaded = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(loaded.pixels, expected(pixels))
    header = read_header(tmp_path / "o.png")
    assert (header.height, header.width) == loaded.pixels.shape[:2] and header.digital_zoom == 1.0
    assert any("orientation" in note for note in loaded.notes)


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_an_orientation_outside_exifs_eight_is_not_reported_as_applied(tmp_path, rng, orientation):
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "o.png", exif=exif)
    loaded = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert [note for note in loaded.notes if "orientation" in note] == [
        f"EXIF orientation {orientation} is not one of the eight defined (1-8): ignored, the pixels as stored"
    ]


def test_gray_and_bilevel_are_replicated(tmp_path, rng):
    gray = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"), np.stack([gray] * 3, axis=2))
    bits = gray > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "b.png"), np.stack([bits * 255] * 3, axis=2).astype(np.uint8))


def test_palette_gif_uses_the_palette_colours(tmp_path):
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    indices = np.array([[0, 1, 2, 1]] * 3, dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette)
    image.save(tmp_path / "p.gif")
    colours = np.array(palette[:9], dtype=np.uint8).reshape(3, 3)
    np.testing.assert_array_equal(read_rgb(tmp_path / "p.gif"), colours[indices])


def test_rgba_drops_alpha_and_keeps_colours(tmp_path, rng):
    rgba = rng.integers(0, 256, (12, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(loaded.pixels, rgba[:, :, :3])
    assert "alpha" in loaded.notes[0]


def test_cmyk_tiff_follows_the_stated_formula(tmp_path, rng):
    cmyk = rng.integers(0, 256, (10, 14, 4), dtype=np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.tif")
    c, m, y, k = (cmyk[:, :, i].astype(np.float64) for i in range(4))
    expected = np.stack([(255 - ch) * (255 - k) / 255 for ch in (c, m, y)], axis=2)
    assert np.abs(read_rgb(tmp_path / "c.tif").astype(float) - expected).max() <= 1.0


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_whole_jpegs_pass_the_strict_check_with_pillows_pixels(tmp_path, mode):
    """The strict check refuses nothing whole, and the pixels are still Pillow's (no number changes)."""
    (tmp_path / "p.jpg").write_bytes(photo_bytes("JPEG", mode, quality=85))
    loaded = load_image(tmp_path / "p.jpg")
    with Image.open(tmp_path / "p.jpg") as image:
        expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert not any("not checked" in note for note in loaded.notes)


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    Image.new("CMYK", (64, 48), (10, 200, 30, 40)).save(tmp_path / "c.jpg", quality=95)
    loaded = load_image(tmp_path / "c.jpg")
    assert loaded.source_mode == "CMYK" and loaded.pixels.shape == (48, 64, 3)
    expected = np.array([245 * 215 / 255, 55 * 215 / 255, 225 * 215 / 255])
    assert np.abs(loaded.pixels.reshape(-1, 3).mean(axis=0) - expected).max() < 3


def test_sixteen_bit_gray_png_keeps_the_high_byte(tmp_path, rng):
    samples = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(loaded.pixels, np.stack([(samples >> 8).astype(np.uint8)] * 3, axis=2))
    assert "16-bit" in loaded.notes[0]


def test_sixteen_bit_rgb_png_keeps_the_high_byte(tmp_path, rng):
    samples = rng.integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    write_png16_rgb(tmp_path / "rgb16.png", samples)
    loaded = load_image(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(loaded.pixels, (samples >> 8).astype(np.uint8))
    assert loaded.notes == ("16-bit RGB reduced to 8 bits (high byte)",)  # as a 16-bit gray image says so


def test_animated_gif_gives_the_first_frame_and_says_so(tmp_path):
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    loaded = load_image(tmp_path / "anim.gif")
    assert loaded.frame_count == 3
    assert (loaded.pixels == np.array([255, 0, 0], np.uint8)).all()
    assert "first frame" in loaded.notes[0]


def test_list_images_is_sorted_case_insensitive_files_only_and_not_recursive(tmp_path):
    for name in ("b.png", "a.JPG", "C.Tiff", ".hidden.jpg", "notes.txt", "jpg", "nested/d.png", "folder.png/e.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path) == [tmp_path / name for name in (".hidden.jpg", "C.Tiff", "a.JPG", "b.png")]
    assert {path.suffix.lower() for path in list_images(tmp_path)} <= IMAGE_SUFFIXES
    assert list_images(tmp_path / "nested") == [tmp_path / "nested" / "d.png"]


def test_save_png_is_atomic_and_leaves_no_partial_file(tmp_path, rng):
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save_png(pixels, tmp_path / "out" / "x.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png"]
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(
        CfzooError, match=f"cannot write {tmp_path / 'blocker' / 'y.png'} "
    ):  # the user's path, not the temporary
        save_png(pixels, tmp_path / "blocker" / "y.png")
    with pytest.raises(ValueError):
        save_png(pixels.astype(np.float32), tmp_path / "out" / "z.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png"]


# --- bad inputs ------------------------------------------------------------------------------


def jpeg_bytes(rng):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_bytes(rng):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def photo_bytes(fmt, mode="RGB", **options):
    """A real photo (scikit-image's astronaut) in ``mode``, encoded as ``fmt``."""
    buffer = io.BytesIO()
    Image.open(skimage_data_dir() / "astronaut.png").convert(mode).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def cut_and_closed(data, end):
    """The first 60% of ``data`` and then the format's end marker: a file that looks complete to a parser."""
    return data[: int(len(data) * 0.6)] + end


PNG_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def flip_middle_byte(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.parametrize(
    "name, make, words",
    [
        ("missing.png", None, "no such file"),
        ("empty.jpg", lambda rng: b"", "empty file"),
        ("notes.txt", lambda rng: b"these are not pixels\n" * 20, "not an image"),
        ("truncated.jpg", lambda rng: jpeg_bytes(rng)[:400], "truncated"),
        ("truncated.png", lambda rng: png_bytes(rng)[:300], "truncated"),
        ("header-only.png", lambda rng: png_bytes(rng)[:8] + b"\x00" * 64, "not an image"),
        ("corrupt-data.png", lambda rng: flip_middle_byte(png_bytes(rng)), "corrupt"),
        # libjpeg fills the missing part with gray and only warns: strict decoding refuses it
        (
            "cut-with-eoi.jpg",
            lambda rng: cut_and_closed(photo_bytes("JPEG", quality=90), b"\xff\xd9"),
            "corrupt or truncated JPEG",
        ),
        (
            "gray-cut-with-eoi.jpg",
            lambda rng: cut_and_closed(photo_bytes("JPEG", "L"), b"\xff\xd9"),
            "corrupt or truncated JPEG",
        ),
        ("cut-with-iend.png", lambda rng: cut_and_closed(photo_bytes("PNG"), PNG_IEND), "truncated"),
        ("cut-short.webp", lambda rng: cut_and_closed(photo_bytes("WEBP"), b""), "corrupt or truncated"),
        ("cut-with-trailer.gif", lambda rng: cut_and_closed(photo_bytes("GIF"), b";"), "truncated"),
        ("cut-short.bmp", lambda rng: cut_and_closed(photo_bytes("BMP"), b""), "truncated"),
        ("cut-short.ppm", lambda rng: cut_and_closed(photo_bytes("PPM"), b""), "truncated"),
    ],
)
def test_bad_files_raise_one_line_image_errors(tmp_path, rng, name, make, words):
    path = tmp_path / name
    if make is not None:
        path.write_bytes(make(rng))
    with pytest.raises(ImageReadError) as excinfo:
        load_image(path)
    assert_one_line_error(excinfo, path)
    assert words in str(excinfo.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="is a directory"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused_at_pillows_limit(tmp_path):
    # 10000 x 10000 = 1e8 pixels: above Pillow's 89.5 Mpixel limit, where Pillow only warns.
    assert 10000 * 10000 > Image.MAX_IMAGE_PIXELS
    Image.new("1", (10000, 10000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    for read in (load_image, read_header):
        with pytest.raises(ImageReadError) as excinfo:
            read(tmp_path / "bomb.png")
        assert_one_line_error(excinfo, tmp_path / "bomb.png")
        assert "too many pixels" in str(excinfo.value) or "header" in str(excinfo.value)


def test_32_bit_samples_are_refused_with_advice(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match="not supported; convert"):
        load_image(tmp_path / "f.tif")
    Image.fromarray(np.full((8, 8), 70000, np.int32), mode="I").save(tmp_path / "i.tif")  # beyond 16 bits
    with pytest.raises(ImageReadError, match="32-bit or float samples"):
        load_image(tmp_path / "i.tif")


def test_a_16_bit_pgm_is_read_as_16_bit_grayscale(tmp_path, rng):
    """Pillow opens it in its 32-bit container (mode I); it used to be refused as 32-bit."""
    samples = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "deep.pgm")
    loaded = load_image(tmp_path / "deep.pgm")
    np.testing.assert_array_equal(loaded.pixels[:, :, 0], (samples >> 8).astype(np.uint8))
    assert "16-bit grayscale reduced to 8 bits (high byte)" in loaded.notes


def test_links_that_lead_nowhere_and_pipes_are_refused_in_one_line(tmp_path):
    os.symlink(tmp_path / "b.png", tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "broken.png")
    os.mkfifo(tmp_path / "pipe.png")
    for name, words in (
        ("a.png", "link loop"),
        ("broken.png", "broken symbolic link"),
        ("pipe.png", "not a regular file"),
    ):
        with pytest.raises(ImageReadError) as caught:
            load_image(tmp_path / name)
        assert_one_line_error(caught, tmp_path / name)
        assert words in str(caught.value)


# --- damaged layouts: data that would decode into filler ------------------------------------------


def tiff_bytes(compression=None):
    """The astronaut as a little-endian TIFF of strips of 48 rows."""
    return photo_bytes("TIFF", **({"compression": compression} if compression else {}), tiffinfo={278: 48})


def with_tiff_entry(data, tag, count=None, index=None, value=None):
    """``data`` (a TIFF) with the first IFD's ``tag`` given ``count`` values, or its value ``index`` set to
    ``value``."""
    at = struct.unpack("<I", data[4:8])[0]
    for entry in range(struct.unpack("<H", data[at : at + 2])[0]):
        place = at + 2 + 12 * entry
        found, kind, values, pointer = struct.unpack("<HHII", data[place : place + 12])
        if found != tag:
            continue
        if count is not None:
            return data[: place + 4] + struct.pack("<I", count) + data[place + 8 :]
        size, code = {3: (2, "<H"), 4: (4, "<I")}[kind]
        where = pointer + size * index if values * size > 4 else place + 8 + size * index
        return data[:where] + struct.pack(code, value) + data[where + size :]
    raise AssertionError(f"no tag {tag}")


def tiff_tags(data):
    return Image.open(io.BytesIO(data)).tag_v2


def strip_halved(data):
    """The middle strip's byte count halved: its data ends early (for JPEG strips, inside the entropy data)."""
    counts = tiff_tags(data)[279]
    return with_tiff_entry(data, 279, index=len(counts) // 2, value=counts[len(counts) // 2] // 2)


def first_strip_only(data):
    """The strip tables cut to their first entry: the strips cover a few rows of the image."""
    return with_tiff_entry(with_tiff_entry(data, 273, count=1), 279, count=1)


def beyond_the_end(data):
    return with_tiff_entry(data, 273, index=1, value=len(data) - 10)


@pytest.mark.parametrize(
    "compression, damage, words, filler",
    [
        ("jpeg", strip_halved, "corrupt or truncated JPEG data in TIFF strip 5", True),
        (None, strip_halved, "strip 5 holds fewer bytes than its rows need", True),
        (None, first_strip_only, "its TIFF strips cover 48 of 512 rows", True),
        ("tiff_lzw", first_strip_only, "its TIFF strips cover 48 of 512 rows", False),
        ("jpeg", beyond_the_end, "ends beyond the file", False),
        ("tiff_adobe_deflate", strip_halved, "corrupt or truncated", False),
        ("packbits", strip_halved, "corrupt or truncated", False),
    ],
)
def test_a_tiff_whose_data_would_decode_into_filler_is_refused(tmp_path, compression, damage, words, filler):
    whole = tiff_bytes(compression)
    assert len(tiff_tags(whole)[273]) > 2, "several strips"
    path = tmp_path / "damaged.tif"
    path.write_bytes(damage(whole))
    if filler:  # Pillow alone decodes it, the missing part as black or gray filler
        Image.open(path).convert("RGB")
    with pytest.raises(ImageReadError) as excinfo:
        load_image(path)
    assert_one_line_error(excinfo, path)
    assert words in str(excinfo.value)


def tiffcp(tmp_path, *options) -> Path:
    """The astronaut rewritten by libtiff's tiffcp with ``options`` (Debian package libtiff-tools, which README's
    test command installs): tiles and separate planes, which Pillow does not write."""
    plain, out = tmp_path / "plain.tif", tmp_path / "tiffcp.tif"
    plain.write_bytes(tiff_bytes())
    subprocess.run(["tiffcp", *options, str(plain), str(out)], capture_output=True, check=True)
    return out


@pytest.mark.parametrize(
    "options",
    [
        ("-c", "none"),
        ("-c", "jpeg"),
        ("-c", "lzw"),
        ("-t", "-w", "64", "-l", "64", "-c", "jpeg"),
        ("-t", "-w", "64", "-l", "64", "-c", "zip"),
        ("-t", "-w", "64", "-l", "64", "-c", "none"),
        ("-p", "separate", "-c", "none"),
        ("-p", "separate", "-c", "lzw"),
    ],
)
def test_whole_tiffs_of_every_layout_read_as_pillow_reads_them(tmp_path, options):
    path = tiffcp(tmp_path, *options)
    loaded = load_image(path)
    assert np.array_equal(loaded.pixels, np.asarray(Image.open(path).convert("RGB")))
    assert loaded.notes == ()


def test_a_tiled_tiff_with_a_jpeg_tile_cut_short_is_refused(tmp_path):
    path = tiffcp(tmp_path, "-t", "-w", "64", "-l", "64", "-c", "jpeg")
    counts = tiff_tags(path.read_bytes())[325]
    path.write_bytes(with_tiff_entry(path.read_bytes(), 325, index=20, value=counts[20] // 2))
    Image.open(path).convert("RGB")  # Pillow alone decodes it, the missing part as gray filler
    with pytest.raises(ImageReadError) as excinfo:
        load_image(path)
    assert_one_line_error(excinfo, path)
    assert "corrupt or truncated JPEG data in TIFF tile 20" in str(excinfo.value)


def cjpeg(sampling: str, tmp_path) -> bytes:
    """The astronaut encoded by libjpeg-turbo's cjpeg with the chroma ``sampling`` factors (Debian package
    libjpeg-turbo-progs, which README's test command installs)."""
    source = tmp_path / "astronaut.ppm"
    Image.open(skimage_data_dir() / "astronaut.png").convert("RGB").save(source)
    return subprocess.run(
        ["cjpeg", "-sample", sampling, "-quality", "90", str(source)], capture_output=True, check=True
    ).stdout


def test_a_jpeg_of_a_layout_the_strict_check_cannot_take_is_refused_whole_or_cut(tmp_path):
    odd = cjpeg("3x1,1x1,1x1", tmp_path)
    for name, data in (("odd.jpg", odd), ("odd-cut.jpg", cut_and_closed(odd, b"\xff\xd9"))):
        path = tmp_path / name
        path.write_bytes(data)
        Image.open(path).convert("RGB")  # Pillow decodes both, the cut one into gray filler
        with pytest.raises(ImageReadError) as excinfo:
            load_image(path)
        assert_one_line_error(excinfo, path)
        assert "chroma layout 3x1/1x1/1x1" in str(excinfo.value) and "djpeg -strict" in str(excinfo.value)
    standard = tmp_path / "standard.jpg"
    standard.write_bytes(cjpeg("2x2,1x1,1x1", tmp_path))
    assert load_image(standard).pixels.shape == (512, 512, 3)


def test_formats_cfzoo_does_not_check_are_refused_and_avif_is_read(tmp_path):
    image = Image.open(skimage_data_dir() / "astronaut.png").convert("RGB")
    icon = tmp_path / "icon.ico"
    image.save(icon)
    with pytest.raises(ImageReadError) as excinfo:
        load_image(icon)
    assert_one_line_error(excinfo, icon)
    assert "ICO is not a format cfzoo checks for damage" in str(excinfo.value) and "AVIF" in str(excinfo.value)
    avif = tmp_path / "photo.avif"
    image.save(avif, quality=90)
    assert load_image(avif).source_format == "AVIF" and ".avif" in IMAGE_SUFFIXES
    avif.write_bytes(cut_and_closed(avif.read_bytes(), b""))
    with pytest.raises(ImageReadError):
        load_image(avif)
