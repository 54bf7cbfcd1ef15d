"""Crash tests: commands killed with SIGKILL at seeded moments, several times each. After every kill the next run
ends with exactly the uninterrupted result, and no hidden temporary of a killed run is left behind (each writer
removes those of processes that no longer run; cfzoo.files). Registration has its own (tests/test_zoo_writer.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cfzoo.engines.parts import LOCK_NAME, read_rows
from cfzoo.images import read_rgb, save_png
from cfzoo.sample_data import skimage_data_dir

KILLS = 3


def _cfzoo(*arguments: str, environment: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cfzoo", "-q", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _finish(process: subprocess.Popen) -> float:
    started = time.monotonic()
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return time.monotonic() - started


def _hidden(folder: Path) -> list[str]:
    """What is hidden in ``folder`` (and below), but the scan folder's documented lock file."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob(".*") if path.name != LOCK_NAME)


def _killed_then_finished(command: list[str], seconds: float, seed: int, environment: dict, check) -> None:
    """Run ``command`` and SIGKILL it at a seeded moment within its usual ``seconds``, :data:`KILLS` times; after
    each kill run it to its end and ``check()`` the result."""
    moments = np.random.default_rng(seed).uniform(0.3, 0.95, KILLS) * seconds
    for moment in moments:
        process = _cfzoo(*command, environment=environment)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait()
        _finish(_cfzoo(*command, environment=environment))
        check()


@pytest.fixture
def environment(tmp_path):
    return {**os.environ, "CFZOO_CACHE": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    save_png(read_rgb(skimage_data_dir() / "astronaut.png")[:256, :256], path)
    return path


def test_attack_out_killed_anywhere_is_redone_exactly_and_leaves_nothing_hidden(tmp_path, photo, environment):
    def command(out: Path) -> list[str]:
        return ["attack", str(photo), "--target", "bayar2016", "--task", "jpeg70", "--method", "pgd", "--out", str(out)]

    expected = tmp_path / "whole" / "adv.png"
    seconds = _finish(_cfzoo(*command(expected), environment=environment))
    out = tmp_path / "killed" / "adv.png"

    def check():
        assert out.read_bytes() == expected.read_bytes()
        assert _hidden(out.parent) == []

    _killed_then_finished(command(out), seconds, 0, environment, check)


def test_reproduce_killed_anywhere_is_redone_exactly_and_leaves_nothing_hidden(tmp_path, environment):
    def command(out: Path) -> list[str]:
        return ["reproduce", "--task", "jpeg70", "--max-patches", "2", "--out", str(out)]

    expected = tmp_path / "whole"
    seconds = _finish(_cfzoo(*command(expected), environment=environment))
    out = tmp_path / "killed" / "report"

    def check():
        tables = sorted(path.name for path in expected.glob("*.csv"))
        assert sorted(path.name for path in out.glob("*.csv")) == tables and tables
        for name in tables:
            assert (out / name).read_bytes() == (expected / name).read_bytes(), name
        assert _hidden(out.parent) == []

    _killed_then_finished([*command(out), "--force"], seconds, 1, environment, check)


def test_a_scan_killed_anywhere_resumes_to_exactly_the_whole_rows_and_leaves_nothing_hidden(
    tmp_path, photo, environment
):
    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(6):
        save_png(np.roll(read_rgb(photo), 8 * number, axis=1), photos / f"{number}.png")
    selection = ["-f", "spam", "-t", "jpeg70", "-t", "median3", "--images-per-part", "1"]
    expected = tmp_path / "whole.parquet"
    seconds = _finish(_cfzoo("scan", str(photos), "--out", str(expected), *selection, environment=environment))
    out = tmp_path / "killed.parquet"

    def rows(folder):
        return sorted((row["path"], row["model"], row["flagged_share"]) for row in read_rows(folder))

    def check():
        assert rows(out) == rows(expected)
        assert _hidden(out) == [] and _hidden(out.parent) == []

    _killed_then_finished(
        ["scan", str(photos), "--out", str(out), *selection, "--resume"], seconds, 2, environment, check
    )
