"""Every destination is checked before the work starts, and a write that fails names the user's path, not
cfzoo's hidden temporary file."""

import os
import resource
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.images import read_rgb, save_png
from cfzoo.sample_data import skimage_data_dir


@pytest.fixture
def photo_and_file(tmp_path):
    save_png(read_rgb(skimage_data_dir() / "astronaut.png")[:256, :256], tmp_path / "in.png")
    (tmp_path / "notes.txt").write_text("a file, where a folder would have to be")
    return tmp_path / "in.png", tmp_path / "notes.txt"


@pytest.mark.parametrize(
    "option, command",
    [
        (
            "--out",
            [
                "attack",
                "{image}",
                "--target",
                "bayar2016",
                "--task",
                "jpeg70",
                "--eps",
                "1",
                "--out",
                "{place}/adv.png",
            ],
        ),
        (
            "--out",
            ["restore", "{image}", "--task", "median3", "--discriminator", "vgg", "--out", "{place}/restored.png"],
        ),
        (
            "--save",
            [
                "attack",
                "--target",
                "bayar2016",
                "--task",
                "jpeg70",
                "--eps",
                "1",
                "--max-patches",
                "2",
                "--save",
                "{place}/adv",
            ],
        ),
        ("--heatmap", ["detect", "{image}", "-t", "jpeg70", "-f", "spam", "--heatmap", "{place}/maps"]),
        ("--out", ["reproduce", "--task", "jpeg70", "--max-patches", "1", "--out", "{place}/report"]),
    ],
)
def test_a_destination_under_a_file_is_refused_before_any_work(photo_and_file, tmp_path, monkeypatch, option, command):
    monkeypatch.setenv("CFZOO_CACHE", str(tmp_path / "cache"))
    image, blocker = photo_and_file
    arguments = [part.format(image=image, place=blocker) for part in command]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1 and "Traceback" not in result.output
    destination = next(arguments[index + 1] for index, part in enumerate(arguments) if part == option)
    assert (
        result.stderr
        == f"error: {option} {destination} cannot be made: {blocker} is a file, not a folder; choose another place\n"
    )
    assert not (tmp_path / "cache").exists()  # refused before any data work
    assert blocker.read_text().startswith("a file")


def test_a_failed_write_names_the_destination_not_the_temporary(tmp_path):
    target = tmp_path / "result.png"

    def fill_the_disk(temporary):
        raise OSError(28, "No space left on device")

    with pytest.raises(CfzooError) as caught:
        write_atomically(target, fill_the_disk)
    assert (
        str(caught.value) == f"cannot write {target} (No space left on device); choose a place you can write, with room"
    )
    assert list(tmp_path.iterdir()) == []


def _with_a_full_disk(limit: int):
    """For a child process: every file it writes may hold at most ``limit`` bytes (RLIMIT_FSIZE), and a write
    beyond fails with EFBIG, "File too large", instead of a signal: a disk that fills up while cfzoo writes."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    "command, limit",
    [
        (["reproduce", "--task", "jpeg70", "--max-patches", "1", "--out", "{place}/report"], 20_000),
        (["detect", "{image}", "-t", "jpeg70", "-f", "spam", "--report", "{place}/page.html"], 8_000),
    ],
)
def test_a_disk_that_fills_up_names_the_users_destination_and_leaves_nothing(
    photo_and_file, tmp_path, monkeypatch, command, limit
):
    image, _ = photo_and_file
    place = tmp_path / "place"
    place.mkdir()
    environment = {**os.environ, "CFZOO_CACHE": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    monkeypatch.setenv("CFZOO_CACHE", environment["CFZOO_CACHE"])
    warm = CliRunner().invoke(
        app, ["reproduce", "--task", "jpeg70", "--max-patches", "1", "--out", str(tmp_path / "w")]
    )
    assert warm.exit_code == 0, warm.output  # the patch cache is written before the disk fills
    arguments = [part.format(image=image, place=place) for part in command]
    done = subprocess.run(
        [sys.executable, "-m", "cfzoo", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        preexec_fn=_with_a_full_disk(limit),
        timeout=600,
    )
    destination = arguments[arguments.index("--out" if "--out" in arguments else "--report") + 1]
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: cannot write {destination} (File too large); choose a place you can write, with room"
    )
    assert list(place.iterdir()) == []
