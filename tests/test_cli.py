import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from cfzoo import __version__
from cfzoo.cli import app
from cfzoo.sample_data import SAMPLE_DEVICES
from cfzoo.zoo.registry import load_registry


@pytest.fixture
def runner():
    return CliRunner()


def test_version_and_help(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"cfzoo {__version__}"
    result = runner.invoke(app, ["data", "build", "--help"])
    assert result.exit_code == 0
    assert "--task" in result.stdout and "jpeg70" in result.stdout


def test_data_inspect_json_lists_every_device_and_the_split(runner, sample_root, conforms):
    result = runner.invoke(app, ["data", "inspect", str(sample_root), "--json", "--seed", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    conforms(summary, "data-inspect")
    assert [d["device"] for d in summary["devices"]] == sorted(SAMPLE_DEVICES)
    assert summary["split"]["seed"] == 3 and len(summary["split"]["test"]) == 1


def test_data_inspect_table(runner, sample_root):
    result = runner.invoke(app, ["data", "inspect", str(sample_root), "--test-device", "skimage_gray"])
    assert result.exit_code == 0, result.output
    for device in SAMPLE_DEVICES:
        assert device in result.stdout
    assert "test = skimage_gray" in result.stdout


def test_data_build_json_then_cached(runner, sample_root, tmp_path):
    arguments = [
        "data",
        "build",
        str(sample_root),
        "--task",
        "blur0.5",
        "--split",
        "test",
        "--patches-per-image",
        "4",
        "--cache-dir",
        str(tmp_path),
        "--workers",
        "1",
        "--json",
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["task"] == "blur0.5" and row["split"] == "test" and not row["cached"]
    assert row["pristine"] == row["manipulated"] == 4 * row["images"]
    assert os.path.isdir(row["path"])
    (again,) = json.loads(runner.invoke(app, arguments).stdout)
    assert again["cached"] and again["path"] == row["path"]


def test_data_commands_default_to_the_embedded_photos(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("CFZOO_CACHE", str(tmp_path))
    result = runner.invoke(app, ["data", "inspect", "--json"])
    assert result.exit_code == 0, result.output
    assert "scikit-image" in result.stderr
    assert json.loads(result.stdout)["images"] == sum(len(names) for names in SAMPLE_DEVICES.values())


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["data", "inspect", "/no/such/folder"], "error: /no/such/folder: not a directory"),
        (["data", "build", "/no/such/folder", "--task", "jpeg70"], "error: /no/such/folder: not a directory"),
        (["data", "build", "--task", "jpeg75"], "error: unknown task 'jpeg75'"),
        (["data", "build", "--task", "jpeg70", "--split", "val"], "error: unknown split 'val'"),
        (["data", "inspect", "--test-device", "nope"], "error: unknown test device(s) nope"),
    ],
)
def test_errors_are_one_line_with_exit_code_1(runner, tmp_path, monkeypatch, arguments, message):
    monkeypatch.setenv("CFZOO_CACHE", str(tmp_path))
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message)
    assert result.stderr.endswith(errors[0] + "\n")
    assert "Traceback" not in result.output


def test_console_script_exits_non_zero_without_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "cfzoo", "data", "inspect", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env={**os.environ, "CFZOO_CACHE": str(tmp_path)},
    )
    assert completed.returncode == 1
    assert (
        completed.stderr.strip()
        == f"error: {tmp_path / 'missing'}: not a directory; pass a folder with one sub-folder of photos per camera device"
    )
    assert completed.stdout == ""


def test_data_inspect_reports_unreadable_photos_and_goes_on(runner, sample_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sample_root, root)
    (root / "skimage_gray" / "broken.png").write_bytes(b"not a png")
    result = runner.invoke(app, ["data", "inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    gray = next(d for d in json.loads(result.stdout)["devices"] if d["device"] == "skimage_gray")
    assert gray["images"] == len(SAMPLE_DEVICES["skimage_gray"]) + 1
    assert len(gray["unreadable"]) == 1 and "broken.png" in gray["unreadable"][0]
    table = runner.invoke(app, ["data", "inspect", str(root)])
    assert "1 unreadable" in table.stdout and "broken.png" in table.stdout
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["data", "inspect", str(root), "-F", "csv"]).stdout)))
    assert {row["device"]: int(row["unreadable"]) for row in rows}["skimage_gray"] == 1
    assert [(row["device"], int(row["images"])) for row in rows] == [
        (device["device"], device["images"]) for device in json.loads(result.stdout)["devices"]
    ]


def test_list_fits_80_columns_and_never_cuts_a_model_id():
    result = subprocess.run(
        [sys.executable, "-m", "cfzoo", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    shown = {line.split("│")[1].strip() for line in lines if line.startswith("│")}
    assert {entry.id for entry in load_registry()} <= shown


def test_the_top_level_help_starts_with_what_a_newcomer_runs_and_offers_completion(runner):
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    text = result.stdout
    assert text.index("Start here: `cfzoo detect photo.jpg`") < text.index("Commands")
    commands = text[text.index("Commands") :]
    listed = [
        line[2:].split()[0] for line in commands.splitlines() if line.startswith("│ ") and not line.startswith("│  ")
    ]
    assert listed[:4] == ["detect", "attack", "list", "pull"], listed
    assert "--install-completion" in text and "--quiet" in text


def test_quiet_leaves_out_notes_but_not_results_or_errors(runner, tmp_path, photo):
    from cfzoo.images import save_png

    save_png(photo, tmp_path / "a.png")
    arguments = [
        "detect",
        str(tmp_path / "a.png"),
        "-f",
        "spam",
        "-f",
        "xception",
        "-t",
        "jpeg70",
        "--report",
        str(tmp_path / "r.html"),
    ]
    loud = runner.invoke(app, arguments)
    assert loud.exit_code == 0 and "note: xception: no model here" in loud.stderr and "report: " in loud.stderr
    quiet = runner.invoke(app, ["--quiet", *arguments])
    assert quiet.exit_code == 0 and quiet.stderr == "" and "jpeg70" in quiet.stdout and (tmp_path / "r.html").is_file()
    failing = runner.invoke(app, ["-q", "detect", str(tmp_path / "missing.png"), "-t", "jpeg70"])
    assert failing.exit_code == 1 and "error: " in failing.stderr


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["attack", "--eps", "0.5"], "error: Invalid value for '--eps': "),
        (["detect", "--nosuch"], "error: No such option: --nosuch"),
        (["attack", "--task", "jpeg70"], "error: Missing option '--target'"),
    ],
)
def test_a_usage_error_is_one_line_with_exit_code_2_not_a_box(arguments, message):
    done = subprocess.run([sys.executable, "-m", "cfzoo", *arguments], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(message) and line.endswith(f"; see cfzoo {arguments[0]} --help"), line


def _commands(group, prefix=""):
    for command in group.registered_commands:
        yield prefix + (command.name or command.callback.__name__.replace("_", "-")), command
    for sub in group.registered_groups:
        yield from _commands(sub.typer_instance, f"{prefix}{sub.name} ")


def test_every_help_paragraph_wraps_at_the_terminals_width():
    """A docstring's line breaks inside a paragraph would stay in the help, ragged at any width but the source's;
    each paragraph reaches the terminal as one line to wrap (examples, indented, keep theirs)."""
    click_app = typer.main.get_command(app)
    checked = 0
    for name, _ in _commands(app):
        command = click_app
        for word in name.split():
            command = command.commands[word]
        for paragraph in (command.help or "").split("\n\n"):
            lines = paragraph.split("\n")
            assert all(line.startswith(" ") for line in lines[1:]), (name, paragraph[:80])
        checked += 1
    assert checked >= 19  # every command and sub-command
    wide = subprocess.run(
        [sys.executable, "-m", "cfzoo", "reproduce", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    ).stdout
    assert "Tables II-IV: FGSM with --eps against each family" in " ".join(wide.split())
    assert max(len(line) for line in wide.splitlines()) <= 80
