"""`cfzoo detect` and cfzoo.ops.detect: the patch grid, the majority rule, heatmaps, bad inputs, and the
real spam-jpeg70 and cozzolino2017-jpeg70 models on scikit-image's astronaut.

The models are the embedded ones. Where the embedded zoo lacks one (while it is being populated), it is
exported once per module from checkpoints/cameras-seed0 into a temporary user zoo; without torch or those
checkpoints the tests that need a model skip.
"""

import io
import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_images import write_png16_rgb
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.files import file_sha256
from cfzoo.images import save_png
from cfzoo.manipulations import apply_manipulation
from cfzoo.ops.detect import (
    HEATMAP_ABOVE,
    HEATMAP_BELOW,
    UNCERTAIN_BAND,
    detect_files,
    expand_inputs,
    probability_colours,
    summarise,
)
from cfzoo.ops.scoring import score_positions
from cfzoo.patches import ImageTooSmallError, patch_grid
from cfzoo.zoo.catalog import select_detectors
from cfzoo.zoo.registry import PROBABILITY_SCORE, SVM_DECISION_SCORE, ModelEntry, load_registry

MODELS = ("spam-jpeg70", "cozzolino2017-jpeg70")


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def astronaut_pair(tmp_path_factory, photo):
    """The astronaut as a PNG, untouched and after cfzoo's JPEG Q=70 (saved losslessly, so the JPEG traces stay)."""
    folder = tmp_path_factory.mktemp("astronaut")
    save_png(photo, folder / "original.png")
    save_png(apply_manipulation("jpeg70", photo), folder / "jpeg70.png")
    return folder / "original.png", folder / "jpeg70.png"


def entry(family="cozzolino2017", threshold=0.5):
    score = SVM_DECISION_SCORE if family == "spam" else PROBABILITY_SCORE
    return ModelEntry(id=f"{family}-jpeg70", family=family, task="jpeg70", files={}, threshold=threshold, score=score)


# --- the grid, the rule, the colours: no model needed -------------------------------------------


@pytest.mark.parametrize(
    "height, width, stride",
    [(128, 128, 128), (512, 512, 128), (300, 257, 128), (870, 1218, 128), (135, 300, 64), (200, 150, 8)],
)
def test_patch_grid_covers_all_but_a_sub_lattice_strip(height, width, stride):
    positions = patch_grid(height, width, stride)
    assert (positions % 8 == 0).all(), "every corner on the 8-pixel JPEG lattice"
    assert positions.min() >= 0 and (positions[:, 0] + 128 <= height).all() and (positions[:, 1] + 128 <= width).all()
    assert [tuple(p) for p in positions] == sorted({tuple(p) for p in positions}), "raster order, no repeats"
    covered = np.zeros((height, width), bool)
    for row, column in positions:
        covered[row : row + 128, column : column + 128] = True
    bottom, right = (height - 128) // 8 * 8 + 128, (width - 128) // 8 * 8 + 128
    assert covered[:bottom, :right].all() and not covered[bottom:].any() and not covered[:, right:].any()
    assert bottom > height - 8 and right > width - 8, "at most 7 pixels left at the bottom and right"
    if stride == 128 and height % 128 == 0 and width % 128 == 0:
        assert len(positions) == (height // 128) * (width // 128), "an exact multiple needs no extra row or column"


def test_patch_grid_adds_one_row_and_column_at_the_edge():
    positions = patch_grid(300, 257)
    assert sorted(set(positions[:, 0])) == [0, 128, 168] and sorted(set(positions[:, 1])) == [0, 128]


def test_patch_grid_refuses_small_images_and_off_lattice_strides():
    with pytest.raises(ImageTooSmallError, match="smaller than one 128x128 patch"):
        patch_grid(127, 400)
    for stride in (0, 12, 136):
        with pytest.raises(CfzooError, match="multiple of 8"):
            patch_grid(256, 256, stride)


def test_verdict_is_uncertain_in_the_middle_band_and_leans_to_the_majority():
    verdict = summarise(entry(), np.array([0.9, 0.6, 0.1]))
    assert (
        verdict.manipulated
        and verdict.flagged_share == pytest.approx(2 / 3)
        and verdict.mean_probability == pytest.approx(0.5333, abs=1e-4)
    )
    assert verdict.verdict == "uncertain", "two thirds of the patches is in the band: uncertain, leaning manipulated"
    assert not summarise(entry(), np.array([0.9, 0.1])).manipulated, "a tie is not a majority"
    # three very confident patches lift the mean above the threshold but do not outvote the other four
    outvoted = summarise(entry(), np.array([1.0, 1.0, 1.0, 0.2, 0.2, 0.2, 0.2]))
    assert outvoted.mean_probability > 0.5 and not outvoted.manipulated and outvoted.verdict == "uncertain"
    low, high = UNCERTAIN_BAND
    shares = {0.2: "pristine", low: "uncertain", 0.5: "uncertain", high: "uncertain", 0.8: "manipulated"}
    for share, expected in shares.items():
        flagged = round(share * 20)
        assert summarise(entry(), np.array([0.9] * flagged + [0.1] * (20 - flagged))).verdict == expected, share
    # the SVM's threshold is on its decision value; on the probability it goes through the sigmoid
    spam = summarise(entry("spam", threshold=1.0), np.array([0.7, 0.7, 0.75]))
    assert spam.threshold == pytest.approx(1 / (1 + np.exp(-1.0))) and spam.flagged_share == pytest.approx(1 / 3)


def test_probability_colours_break_at_the_threshold():
    colours = probability_colours(np.array([0.0, 0.2999, 0.3001, 1.0]), threshold=0.3)
    np.testing.assert_allclose(colours[0], HEATMAP_BELOW[0])
    np.testing.assert_allclose(colours[1], HEATMAP_BELOW[1], atol=0.1)
    np.testing.assert_allclose(colours[2], HEATMAP_ABOVE[0], atol=0.1)
    np.testing.assert_allclose(colours[3], HEATMAP_ABOVE[1])
    assert (colours[:2, 2] > colours[:2, 0]).all() and (colours[2:, 0] > colours[2:, 2]).all(), "cold below, warm above"


def test_expand_inputs_lists_folders_sorted_and_keeps_what_will_fail(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "notes.txt", "nested/c.png"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    inputs = [folder, tmp_path / "missing.png", tmp_path / "empty", folder / "b.png"]
    assert expand_inputs(inputs) == [folder / "a.JPG", folder / "b.png", tmp_path / "missing.png", tmp_path / "empty"]


# --- real models ------------------------------------------------------------------------------


def test_jpeg70_astronaut_is_flagged_and_the_original_is_not(models, astronaut_pair):
    selection = select_detectors(["spam", "cozzolino2017"], ["jpeg70"], providers="cpu")
    assert [d.entry.id for d in selection.detectors] == list(MODELS) and selection.skipped == []
    original, compressed = detect_files(list(astronaut_pair), selection.detectors)
    assert original.patches == compressed.patches == 16
    for verdict in compressed.results:
        assert verdict.manipulated and verdict.flagged_share > 0.8, verdict
    for verdict in original.results:
        assert not verdict.manipulated and verdict.flagged_share < 0.2, verdict


def test_memory_is_bounded_by_the_batch_not_the_image(models, photo):
    detector = select_detectors(["spam"], ["jpeg70"], providers="cpu").detectors[0]
    image = np.tile(photo, (2, 2, 1))  # 1024 x 1024: 64 patches, 12.6 MB as float32
    positions = patch_grid(*image.shape[:2])
    tracemalloc.start()
    try:
        small_batches = score_positions(image, [detector], positions, batch_size=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    all_patches = len(positions) * 3 * 128 * 128 * 4
    assert peak < all_patches / 3, (
        f"{peak} bytes traced with batches of 4 patches; all {len(positions)} as float32: {all_patches}"
    )
    np.testing.assert_allclose(small_batches, score_positions(image, [detector], positions, batch_size=64), atol=1e-5)


def encoded(pixels, image_format):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def write_bad_and_odd_inputs(folder, photo):
    """One file per kind of awkward input; returns {name: expected words in its error, or None if it is analysed}."""
    crop = photo[:192, :256]
    jpeg, png = encoded(crop, "JPEG"), encoded(crop, "PNG")
    (folder / "zero-byte.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "cut-with-eoi.jpg").write_bytes(
        jpeg[: len(jpeg) * 2 // 3] + b"\xff\xd9"
    )  # libjpeg would fill it with gray
    middle = len(png) // 2
    (folder / "corrupt.png").write_bytes(png[:middle] + bytes([png[middle] ^ 0xFF]) + png[middle + 1 :])
    (folder / "notes.txt").write_text("not pixels\n" * 50)
    Image.new("1", (10000, 10000)).save(folder / "bomb.png")  # above Pillow's 89.5 Mpixel limit
    Image.fromarray(crop[:100]).save(folder / "small.png")
    write_png16_rgb(folder / "sixteen-bit-rgb.png", crop.astype(np.uint16) * 257)
    Image.fromarray(crop[:, :, 1].astype(np.uint16) * 257).save(folder / "sixteen-bit-gray.png")
    Image.fromarray(crop).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(crop).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    frames = [Image.fromarray(crop), Image.fromarray(crop[::-1].copy())]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=40)
    return {
        "zero-byte.jpg": "empty file",
        "truncated.jpg": "truncated",
        "corrupt.png": "corrupt",
        "cut-with-eoi.jpg": "corrupt or truncated JPEG",
        "notes.txt": "not an image",
        "bomb.png": "too many pixels",
        "small.png": "smaller than one 128x128 patch",
        "missing.png": "no such file",
        "sixteen-bit-rgb.png": None,
        "sixteen-bit-gray.png": None,
        "cmyk.jpg": None,
        "palette.gif": None,
        "animated.gif": None,
    }


def test_bad_inputs_fail_one_line_each_and_the_others_go_on(models, runner, tmp_path, photo, astronaut_pair):
    expected = write_bad_and_odd_inputs(tmp_path, photo)
    names = sorted(expected)
    arguments = [
        "detect",
        str(astronaut_pair[1]),
        *(str(tmp_path / name) for name in names),
        "-t",
        "jpeg70",
        "-f",
        "spam",
        "--json",
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    images = {Path(image["path"]).name: image for image in document["images"]}
    assert list(images) == ["jpeg70.png", *names], "every input reported, in order"
    assert images["jpeg70.png"]["ok"] and images["jpeg70.png"]["results"][0]["verdict"] == "manipulated"
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    failures = [name for name in names if expected[name]]
    assert document["failed"] == len(failures) == len(error_lines)
    assert (
        result.stderr.splitlines()[-1] == f"{len(failures)} of {len(names) + 1} inputs failed; the others were analysed"
    )
    only_bad = runner.invoke(
        app, ["detect", *(str(tmp_path / name) for name in failures[:2]), "-t", "jpeg70", "-f", "spam"]
    )
    assert only_bad.exit_code == 1 and only_bad.stderr.splitlines()[-1] == "no input could be analysed"
    one_bad = runner.invoke(app, ["detect", str(tmp_path / failures[0]), "-t", "jpeg70", "-f", "spam"])
    assert one_bad.exit_code == 1 and one_bad.stderr.splitlines()[-1] == "the input could not be analysed"
    for name in names:
        image = images[name]
        if expected[name] is None:
            assert image["ok"] and image["error"] is None and len(image["results"]) == 1, name
        else:
            assert not image["ok"] and image["results"] == [], name
            assert expected[name] in image["error"] and name in image["error"] and "\n" not in image["error"]
            assert any(image["error"] in line for line in error_lines)
    assert any("first frame" in note for note in images["animated.gif"]["notes"])
    assert any("16-bit" in note for note in images["sixteen-bit-gray.png"]["notes"])
    assert any("CMYK" in note for note in images["cmyk.jpg"]["notes"])
    assert any("palette" in note for note in images["palette.gif"]["notes"])
    assert "Traceback" not in result.output


def test_table_heatmaps_and_json_schema(models, runner, tmp_path, astronaut_pair):
    folder = astronaut_pair[0].parent
    maps = tmp_path / "maps"
    families = ["-f", "spam", "-f", "cozzolino2017", "-f", "xception"]
    result = runner.invoke(
        app, ["detect", str(folder), "-t", "jpeg70", *families, "--heatmap", str(maps), "--providers", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "xception: no model here for any selected task" in result.stderr, "unavailable family named on stderr"
    assert (
        "cfzoo train DATA -f xception -t jpeg70, then cfzoo export" in result.stderr
        or "cfzoo pull -f xception -t jpeg70" in result.stderr
    )
    table = result.stdout
    assert table.index("jpeg70.png") < table.index("original.png"), "folder listed in name order"
    compressed_table, original_table = table.split("cells:")[0].split("original.png")
    assert "manipulated" in compressed_table and "pristine" not in compressed_table
    assert "pristine" in original_table and "manipulated" not in original_table
    for image in astronaut_pair:  # the footer of a case file: each image's sha256, then each model's
        assert f"sha256 {file_sha256(image)}" in table
    assert f"model spam-jpeg70 sha256 {load_registry().get('spam-jpeg70').files['detector'].sha256}" in table

    heatmaps = sorted(path.name for path in maps.iterdir())
    assert {"jpeg70-jpeg70-spam.png", "original-jpeg70-cozzolino2017.png"} <= set(heatmaps)
    assert not [name for name in heatmaps if name.endswith(".partial")]
    for name, warm in (("jpeg70-jpeg70-cozzolino2017.png", True), ("original-jpeg70-cozzolino2017.png", False)):
        with Image.open(maps / name) as heatmap:
            pixels = np.asarray(heatmap.convert("RGB"), dtype=float)
        assert pixels.shape[1] == 512 and pixels.shape[0] > 512, "full width, a caption strip above the image"
        red, blue = pixels[-512:, :, 0].mean(), pixels[-512:, :, 2].mean()
        assert (red > blue + 30) if warm else (blue > red + 30), (name, red, blue)

    default = runner.invoke(app, ["detect", str(astronaut_pair[1]), "-t", "jpeg70", "--providers", "cpu"])
    assert default.exit_code == 0, default.output
    assert "xception" not in default.stderr, "by default, a family with no model here is left out without a note"

    result = runner.invoke(
        app, ["detect", str(folder), "-t", "jpeg70", "-f", "spam", "-f", "cozzolino2017", "--json", "--stride", "64"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"schema", "settings", "detectors", "conclusion_model", "skipped", "images", "failed"}
    assert document["schema"] == 3 and document["failed"] == 0 and document["conclusion_model"] is None
    assert [line.split(",")[0] for line in document["skipped"]] == ["conclusion: not drawn"]
    assert document["settings"]["stride"] == 64 and document["settings"]["patch_size"] == 128
    assert [d["model"] for d in document["detectors"]] == list(MODELS)
    image = document["images"][0]
    assert set(image) == {
        "path",
        "sha256",
        "ok",
        "error",
        "width",
        "height",
        "patches",
        "notes",
        "conclusion",
        "results",
    }
    assert image["conclusion"] is None
    assert image["sha256"] == file_sha256(image["path"])
    assert [d["sha256"] for d in document["detectors"]] == [
        load_registry().get(model).files["detector"].sha256 for model in MODELS
    ]
    assert image["patches"] == 49 and (image["width"], image["height"]) == (512, 512)
    assert set(image["results"][0]) == {
        "model",
        "family",
        "task",
        "threshold",
        "mean_probability",
        "flagged_share",
        "verdict",
        "heatmap",
    }


def test_settings_and_missing_models_are_one_line_errors(models, runner, astronaut_pair):
    image = str(astronaut_pair[0])
    for arguments, words in (
        (["--stride", "100"], "multiple of 8"),
        (["--batch", "0"], "batch size must be at least 1"),
        (["--providers", "gpu"], "unknown provider"),
        (["-t", "jpeg71"], "unknown task"),
        (["-f", "xception"], "no detector is available"),
    ):
        result = runner.invoke(app, ["detect", image, *arguments])
        assert result.exit_code == 1, (arguments, result.output)
        assert result.stderr.startswith("error: ") and words in result.stderr and result.stderr.count("\n") == 1, (
            result.stderr
        )


def test_table_mode_shows_a_bar_over_each_images_patches_on_a_terminal_and_none_when_quiet(tmp_path, photo):
    """Rich draws bars only on a terminal; TTY_COMPATIBLE=1 tells it stderr is one. The bar is transient: stdout
    holds the table only."""
    save_png(photo[:384, :384], tmp_path / "photo.png")
    command = [sys.executable, "-m", "cfzoo", "detect", str(tmp_path / "photo.png"), "-f", "spam", "-t", "jpeg70"]
    environment = {**os.environ, "TTY_COMPATIBLE": "1", "COLUMNS": "100"}
    shown = subprocess.run([*command, "--batch-size", "2"], capture_output=True, text=True, env=environment)
    assert shown.returncode == 0, shown.stderr
    assert "photo.png: patches" in shown.stderr and re.search(r"\x1b\[32m[1-9]/9\b", shown.stderr)
    assert ": patches" not in shown.stdout and "9 patches)" in shown.stdout  # the bar is stderr's, the table stdout's
    quiet = subprocess.run(
        [sys.executable, "-m", "cfzoo", "-q", *command[3:]], capture_output=True, text=True, env=environment
    )
    assert quiet.returncode == 0 and "photo.png: patches" not in quiet.stderr
