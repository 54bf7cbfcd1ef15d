"""What commands print: --format table|json|csv|markdown with the same numbers in each, tables that fit 80 (and
160) columns whole, and help that names values (PATH, N, TASK) instead of Python types."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.images import save_png
from cfzoo.manipulations import apply_manipulation

MODELS = [f"{family}-{task}" for family in ("spam", "bayar2016", "cozzolino2017") for task in ("jpeg70", "median3")]
PYTHON_TYPE = re.compile(r"<(bool|int|float|str|path|list\[\w+\])>", re.IGNORECASE)


@pytest.fixture
def runner():
    return CliRunner()


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_help_names_values_and_fits_80_columns(runner):
    commands = list(_commands(typer.main.get_command(app)))
    assert len(commands) >= 18
    for command in [(), *commands]:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (command, result.output)
        assert not PYTHON_TYPE.search(result.stdout), (command, PYTHON_TYPE.search(result.stdout).group())
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, command
    detect_help = runner.invoke(app, ["detect", "--help"], env={"COLUMNS": "200"}).stdout
    assert re.search(r"--task\s+-t\s+TASK\s", detect_help) and re.search(r"--batch-size,--batch\s+N\s", detect_help)
    assert re.search(r"--format\s+-F\s+table\|json\|csv\s", detect_help)


def test_detect_csv_holds_the_json_numbers(models, runner, photo, tmp_path):
    save_png(apply_manipulation("jpeg70", photo), tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    arguments = ["detect", str(tmp_path / "a.png"), str(tmp_path / "broken.png"), "-t", "jpeg70"]
    as_json = runner.invoke(app, [*arguments, "--format", "json"])
    as_csv = runner.invoke(app, [*arguments, "-F", "csv"])
    assert as_json.exit_code == as_csv.exit_code == 1  # one input failed, the other was analysed
    document, rows = json.loads(as_json.stdout), _csv(as_csv.stdout)
    good, bad = document["images"]
    assert [row["model"] for row in rows[:3]] == [result["model"] for result in good["results"]]
    for row, result in zip(rows, good["results"]):
        assert float(row["mean_probability"]) == pytest.approx(result["mean_probability"], rel=1e-12)
        assert float(row["flagged_share"]) == result["flagged_share"] and row["verdict"] == result["verdict"]
        assert row["path"] == good["path"] and int(row["width"]) == 512 and row["error"] == ""
    assert (
        len(rows) == 4
        and rows[3]["path"] == bad["path"]
        and rows[3]["error"] == bad["error"]
        and rows[3]["model"] == ""
    )


def test_formats_are_one_choice_and_only_where_offered(runner, photo, tmp_path):
    save_png(photo, tmp_path / "a.png")
    for arguments, message in [
        (["detect", str(tmp_path / "a.png"), "--json", "-F", "csv"], "choose one output format, not csv and json"),
        (
            ["detect", str(tmp_path / "a.png"), "-F", "markdown"],
            "--format markdown is not offered here; choose one of: table, json, csv",
        ),
        (["list", "-F", "yaml"], "--format yaml is not offered here"),
        (
            [
                "attack",
                str(tmp_path / "a.png"),
                "--target",
                "spam",
                "-t",
                "jpeg70",
                "--out",
                str(tmp_path / "b.png"),
                "-F",
                "csv",
            ],
            "--format csv applies to dataset attacks",
        ),
    ]:
        result = runner.invoke(app, arguments)
        assert result.exit_code == 1 and result.stderr.startswith(f"error: {message}"), result.stderr
        assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert not (tmp_path / "b.png").exists()


def test_list_csv_and_json_list_the_same_models(runner, conforms):
    rows = _csv(runner.invoke(app, ["list", "-F", "csv"]).stdout)
    listed = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    conforms(listed, "list")
    assert {row["kind"] for row in listed} == {"detector", "restorer", "conclusion"}
    assert [row["id"] for row in rows] == [row["id"] for row in listed]
    for row, entry in zip(rows, listed):
        assert row["sources"].split() == entry["sources"] and row["kind"] == entry["kind"]
        assert row["hub_repo_id"] == ((entry["hub"] or {}).get("repo_id") or "")


def test_attack_and_evaluate_csv_hold_the_json_numbers(models, runner, sample_root, tmp_path):
    common = ["--data", str(sample_root), "--cache-dir", str(tmp_path / "cache")]
    attack = ["attack", "--target", "bayar2016", "-t", "jpeg70", "--eps", "1", "--max-patches", "8", *common]
    report, rows = (
        json.loads(runner.invoke(app, [*attack, "--json"]).stdout),
        _csv(runner.invoke(app, [*attack, "-F", "csv"]).stdout),
    )
    expected = [
        (family, rates["before"], rates["after"]) for row in report["rows"] for family, rates in row["tpr"].items()
    ]
    assert [(row["family"], float(row["tpr_before"]), float(row["tpr_after"])) for row in rows] == expected
    for row in rows:  # every TPR with its 95% Wilson interval
        assert float(row["tpr_after_low"]) <= float(row["tpr_after"]) <= float(row["tpr_after_high"])
    for cell in (rates for row in report["rows"] for rates in row["tpr"].values()):
        assert cell["before_interval"][0] <= cell["before"] <= cell["before_interval"][1]
    evaluate = [
        "evaluate",
        str(sample_root),
        "-m",
        "spam-jpeg70",
        "-m",
        "cozzolino2017-jpeg70",
        "-t",
        "jpeg70",
        "--max-test-patches",
        "20",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    table, rows = (
        json.loads(runner.invoke(app, [*evaluate, "--json"]).stdout),
        _csv(runner.invoke(app, [*evaluate, "-F", "csv"]).stdout),
    )
    assert [(row["model"], float(row["acc"])) for row in rows] == [(row["model"], row["acc"]) for row in table["rows"]]
    assert [(float(row["auc"]), float(row["eer_low"]), float(row["tpr_at_fpr_1"])) for row in rows] == [
        (row["binary"]["auc"], row["binary"]["eer_interval"][0], row["binary"]["tpr_at_fpr_1"]) for row in table["rows"]
    ]


@pytest.mark.parametrize("columns", [80, 160])
def test_tables_fit_the_terminal_whole(models, sample_root, photo, tmp_path, columns):
    """detect, evaluate, restore, list and robustness in a terminal of 80 (and 160) columns: no table line is longer,
    and no header or cell is cut (rich marks a cut with an ellipsis). Lines that name a file run on whole, so that
    the path can be copied."""
    save_png(apply_manipulation("median3", photo), tmp_path / "filtered.png")
    data = ["--data", str(sample_root), "--cache-dir", str(tmp_path / "cache")]
    commands = {
        "detect": ["detect", str(tmp_path / "filtered.png")],
        "evaluate": [
            "evaluate",
            str(sample_root),
            "-m",
            "spam-jpeg70",
            "-m",
            "bayar2016-jpeg70",
            "-t",
            "jpeg70",
            "--max-test-patches",
            "20",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        "restore": [
            "restore",
            str(tmp_path / "filtered.png"),
            "-t",
            "median3",
            "-d",
            "kim",
            "--out",
            str(tmp_path / "restored.png"),
        ],
        "robustness": [
            "robustness",
            "--target",
            "spam",
            "-t",
            "jpeg70",
            "--attack",
            "fgsm",
            "--eps",
            "1",
            "--max-patches",
            "8",
            *data,
        ],
        "list": ["list"],
    }
    environment = {**os.environ, "COLUMNS": str(columns)}
    for name, arguments in commands.items():
        completed = subprocess.run(
            [sys.executable, "-m", "cfzoo", *arguments], capture_output=True, text=True, env=environment, timeout=600
        )
        assert completed.returncode == 0, (name, completed.stderr)
        lines = [line for line in completed.stdout.splitlines() if line[:1] in "┏┃┡│├└"]
        assert lines and max(len(line) for line in lines) <= columns, (name, max(lines, key=len))
        assert "…" not in completed.stdout, (name, completed.stdout)
        if name == "restore":
            assert "restorer-median3-kim" in completed.stdout and "spam-median3" in completed.stdout
