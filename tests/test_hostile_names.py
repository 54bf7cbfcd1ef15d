"""File names are data: any bytes a file system allows come back whole from JSON and CSV, print escaped (never as
markup, never as terminal control), and a name a spreadsheet would run as a formula is neutralised in CSV."""

import csv
import io
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.images import save_png
from cfzoo.paths import printable
from cfzoo.results.base import FORMULA_PREFIXES

MODELS = ("spam-jpeg70",)
runner = CliRunner()
#: A file name's bytes: anything but the separator and NUL, and not "." or "..".
NAME_BYTES = st.binary(min_size=1, max_size=24).filter(lambda name: b"/" not in name and b"\0" not in name)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(5).integers(0, 256, (128, 128, 3), dtype=np.uint8)


def _detect(path, *options):
    return runner.invoke(app, ["detect", os.fsdecode(path), "--model", "spam-jpeg70", *options])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAME_BYTES)
def test_any_file_name_comes_back_from_json_and_csv_and_prints_escaped(models, pixels, tmp_path_factory, name):
    folder = tmp_path_factory.mktemp("names")
    path = os.path.join(os.fsencode(folder), name + b".png")
    save_png(pixels, os.fsdecode(path))

    as_json = _detect(path, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    [image] = json.loads(as_json.stdout_bytes.decode("utf-8"))["images"]
    assert os.fsencode(image["path"]) == path and image["ok"]

    as_csv = _detect(path, "--format", "csv")
    assert as_csv.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout_bytes.decode("utf-8", "surrogateescape"), newline="")))
    assert len(rows) == 1
    written = rows[0]["path"]
    if os.fsdecode(path).startswith(FORMULA_PREFIXES):
        assert written.startswith("'")  # OWASP: a leading quote, so a spreadsheet shows it as text
        written = written[1:]
    assert os.fsencode(written) == path

    table = _detect(path)
    assert table.exit_code == 0
    shown = table.stdout_bytes.decode("utf-8")  # escaped: always valid UTF-8
    assert printable(os.fsdecode(path)) in shown.replace("\n", "")
    assert "\r" not in shown and "\x1b" not in shown


@pytest.mark.parametrize("name", ["[red]adv.png", "res[/]x.png", "=HYPERLINK(1).png", ":smile:.png", "a\x1b[2Jb.png"])
def test_names_with_markup_or_formulas_are_shown_as_they_are(models, pixels, tmp_path, name):
    save_png(pixels, tmp_path / name)
    table = _detect(tmp_path / name)
    assert table.exit_code == 0, table.output
    assert printable(str(tmp_path / name)) in table.stdout.replace("\n", "")
    as_csv = _detect(tmp_path / name, "--format", "csv").stdout
    line = next(csv.DictReader(io.StringIO(as_csv)))
    assert line["path"].lstrip("'") == str(tmp_path / name)
    assert not line["path"].startswith(FORMULA_PREFIXES)


def test_a_carriage_return_in_a_name_cannot_split_a_csv_row(models, pixels, tmp_path):
    path = tmp_path / "two\rrows.png"
    save_png(pixels, path)
    text = _detect(path, "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == 2 and rows[1][0] == str(path)  # the header and one row, the name whole
    assert all(line.count('"') % 2 == 0 for line in text.split("\n"))


def test_a_name_that_is_not_utf8_gets_its_html_report_section_like_any_other(models, pixels, tmp_path):
    folder = os.path.join(os.fsencode(tmp_path), b"photos")
    os.mkdir(folder)
    for name in (b"a\xff\xfe.png", b"plain.png"):
        save_png(pixels, os.fsdecode(os.path.join(folder, name)))
    report = tmp_path / "report.html"
    result = runner.invoke(app, ["detect", os.fsdecode(folder), "--model", "spam-jpeg70", "--report", str(report)])
    assert result.exit_code == 0, result.output
    page = report.read_text(encoding="utf-8")
    assert "a\\xff\\xfe.png" in page and "plain.png" in page and page.count("<h2>") == 2


def test_a_scan_keeps_every_name_exactly_and_resumes_over_them(models, pixels, tmp_path):
    from cfzoo.engines.parts import read_rows

    folder = os.path.join(os.fsencode(tmp_path), b"in[")
    os.mkdir(folder)
    names = [b"a\xff\xfe.png", b"[red]b.png", b"=c\rd.png", b"plain.png"]
    for name in names:
        save_png(pixels, os.fsdecode(os.path.join(folder, name)))
    out = tmp_path / "res[" / "[/]x.parquet"
    first = runner.invoke(app, ["scan", os.fsdecode(folder), "--model", "spam-jpeg70", "--out", str(out)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["scan", os.fsdecode(folder), "--model", "spam-jpeg70", "--out", str(out), "--resume"])
    assert again.exit_code == 0 and "0 rows written" in again.output
    rows = read_rows(out)
    assert sorted(row["path_bytes"] for row in rows) == sorted(os.path.join(folder, name) for name in names)
    assert all(row["path"] == printable(os.fsdecode(row["path_bytes"])) and row["verdict"] for row in rows)
