"""cfzoo robustness on scikit-image's photos: the battery against a detector, the worst case, and the report files."""

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cfzoo.cards.model_cards import family_card
from cfzoo.cli import app
from cfzoo.experiments.robustness import WORST_CASE
from cfzoo.images import read_rgb, save_png
from cfzoo.manipulations import apply_manipulation
from cfzoo.results import HEALTH_FLAGS
from cfzoo.zoo.registry import Registry, embedded_zoo_dir

runner = CliRunner()


def _run(*arguments):
    return runner.invoke(app, ["robustness", *arguments])


SMALL_BATTERY = (
    "-T",
    "cozzolino2017",
    "-t",
    "median7",
    "-t",
    "jpeg70",
    "--eps",
    "1",
    "--eps",
    "2",
    "-a",
    "fgsm",
    "-a",
    "pgd",
    "-a",
    "square",
    "--queries",
    "12",
    "--max-patches",
    "8",
    "--recompress",
    "80",
    "--recompress",
    "95",
    "--format",
    "json",
)


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory, sample_root):
    out = tmp_path_factory.mktemp("robustness") / "report"
    result = _run(*SMALL_BATTERY, "--data", str(sample_root), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_the_ray_engine_gives_the_same_report(report_folder, sample_root):
    """Each task a Ray task on a Ray started here: the same rows, in the same order, clocks aside."""
    _, local = report_folder
    completed = subprocess.run(
        [sys.executable, "-m", "cfzoo", "robustness", *SMALL_BATTERY, "--data", str(sample_root), "--engine", "ray"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    assert completed.returncode == 0, completed.stderr
    on_ray = json.loads(completed.stdout)

    def without_seconds(report):
        return {
            **report,
            "rows": [{key: value for key, value in row.items() if key != "seconds"} for row in report["rows"]],
        }

    assert without_seconds(on_ray) == without_seconds(local)


def test_the_worst_case_is_no_better_for_the_detector_than_any_attack(report_folder):
    _, report = report_folder
    schema = json.loads(
        (Path(__file__).resolve().parent.parent / "docs" / "schemas" / "robustness.schema.json").read_text()
    )
    jsonschema.Draft202012Validator(schema).validate(report)
    assert report["schema_version"] == 3 and set(report["parameters"]["square"]) == {
        "step",
        "queries",
        "p_init",
        "warm_start",
    }
    # each eps after the first starts PGD and Square from the smaller eps's best; FGSM takes its one step from scratch
    assert report["parameters"]["pgd"]["warm_start"] and "warm_start" not in report["parameters"]["fgsm"]
    assert report["attacks"] == ["fgsm", "pgd", "square"] and report["eps"] == [1, 2]
    assert len(report["rows"]) == 2 * (1 + 2 * 4)  # tasks x (unattacked + eps x (attacks + worst case))
    for task in ("jpeg70", "median7"):
        for eps in (1, 2):
            rows = {row["attack"]: row for row in report["rows"] if row["task"] == task and row["eps"] == eps}
            assert set(rows) == {"fgsm", "pgd", "square", WORST_CASE}
            assert rows[WORST_CASE]["flagged_after"] <= min(
                rows[attack]["flagged_after"] for attack in ("fgsm", "pgd", "square")
            )
            assert all(
                row["flagged_after"] <= row["flagged_before"] for row in rows.values()
            )  # envelopes start unattacked
            assert all(
                row["flagged_after_interval"][0] <= row["flagged_after"] <= row["flagged_after_interval"][1]
                for row in rows.values()
            )
            assert rows["square"]["mean_queries"] <= 12 and rows["fgsm"]["mean_queries"] == 1
            # the attacked patches are judged, not the originals: PGD brings the TPR down
            assert rows["pgd"]["flagged_after"] < rows["pgd"]["flagged_before"]
            assert rows["pgd"]["psnr_db"] >= 20 * math.log10(255 / eps) - 0.01  # no pixel moved more than eps
    assert report["parameters"]["square"]["queries"] == 12 and report["parameters"]["pgd"]["iterations"] == 10
    assert report["recompress"] == [95, 80]
    for task in (
        "jpeg70",
        "median7",
    ):  # every attack's row and the worst case are envelopes: never worse at a larger eps
        for attack in ("fgsm", "pgd", "square", WORST_CASE):
            by_eps = {row["eps"]: row for row in report["rows"] if row["task"] == task and row["attack"] == attack}
            assert by_eps[2]["flagged_after"] <= by_eps[1]["flagged_after"]
    assert all(flag["flag"] in HEALTH_FLAGS for flag in report["health"])
    unattacked = [row for row in report["rows"] if row["attack"] == "none"]
    assert [row["eps"] for row in unattacked] == [0, 0] and all(
        row["flagged_after"] == row["flagged_before"] for row in unattacked
    )
    assert all(set(row["recompressed"]) == {"95", "80"} for row in unattacked)
    for task in ("jpeg70", "median7"):
        rows = {row["attack"]: row for row in report["rows"] if row["task"] == task and row["eps"] == 1}
        for quality in ("95", "80"):
            assert rows[WORST_CASE]["recompressed"][quality] <= min(
                rows[attack]["recompressed"][quality] for attack in ("fgsm", "pgd", "square")
            )


def test_the_report_folder_holds_markdown_json_csv_and_the_eps_curve(report_folder):
    out, report = report_folder
    assert sorted(path.name for path in out.iterdir()) == [
        "ROBUSTNESS.md",
        "eps_curve.png",
        "robustness.csv",
        "robustness.json",
    ]
    assert json.loads((out / "robustness.json").read_text()) == report
    rows = list(csv.DictReader(io.StringIO((out / "robustness.csv").read_text())))
    assert [(row["task"], int(row["eps"]), row["attack"]) for row in rows] == [
        (row["task"], row["eps"], row["attack"]) for row in report["rows"]
    ]
    assert [float(row["flagged_jpeg80"]) for row in rows] == [row["recompressed"]["80"] for row in report["rows"]]
    with Image.open(out / "eps_curve.png") as plot:
        assert plot.format == "PNG" and plot.width > 400
    markdown = (out / "ROBUSTNESS.md").read_text()
    assert "| median7 | 8 |" in markdown and "**" in markdown and "eps_curve.png" in markdown


def test_a_detector_without_companion_is_tested_by_square_alone(tmp_path, sample_root):
    shutil.copy(embedded_zoo_dir() / "models" / "spam-jpeg70.onnx", tmp_path / "spam-jpeg70.onnx")
    model = str(tmp_path / "spam-jpeg70.onnx")
    refused = _run("-T", model, "--data", str(sample_root), "--max-patches", "4")
    assert refused.exit_code == 1 and "has no gradient companion beside it" in refused.output
    result = _run(
        "-T",
        model,
        "-a",
        "square",
        "--eps",
        "4",
        "--queries",
        "8",
        "--data",
        str(sample_root),
        "--max-patches",
        "4",
        "--format",
        "csv",
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["attack"] for row in rows] == ["none", "square", WORST_CASE] and rows[0]["model"] == "spam-jpeg70"


def test_bad_options_are_refused_before_any_work(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    for arguments, message in (
        (["-T", "bayar2016", "-a", "cw"], "unknown attack method 'cw'"),
        (["-T", "bayar2016", "--eps", "0"], "eps must be an integer number of gray levels"),
        (
            ["-T", "bayar2016", "--format", "xml"],
            "--format xml is not offered here; choose one of: table, json, csv, markdown",
        ),
        (["-T", "bayar2016", "--recompress", "101"], "JPEG quality must be an integer from 1 to 100"),
        (
            ["-T", "spam", "-a", "spam-close", "--survive", "jpeg:90"],
            "--survive works with --method fgsm, ifgsm, pgd, apgd, square, not spam-close",
        ),
        (["-T", "bayar2016", "-a", "pgd", "--survive", "webp:90"], "give jpeg:Q"),
        (
            ["-T", "bayar2016", "-a", "pgd", "--survive", "resize:0.5"],
            "--survive resize:F attacks one IMAGE (cfzoo attack IMAGE)",
        ),
        (["-T", "bayar2016", "--out", str(tmp_path / "full")], "is not empty"),
    ):
        result = _run(*arguments)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert (tmp_path / "full" / "x").read_text() == "keep"


def test_an_ensemble_is_tested_as_one_detector_that_any_member_can_raise(sample_root, tmp_path, photo):
    result = _run(
        "-T",
        "spam",
        "-T",
        "bayar2016",
        "-t",
        "median7",
        "--eps",
        "1",
        "--max-patches",
        "4",
        "--recompress",
        "90",
        "--data",
        str(sample_root),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"] == "spam+bayar2016" and report["attacks"] == ["fgsm", "pgd", "apgd", "square"]
    assert {row["model"] for row in report["rows"]} == {"spam-median7+bayar2016-median7"}
    refused = _run("-T", "spam", "-T", "bayar2016", "-a", "spam-close", "--data", str(sample_root))
    assert (
        refused.exit_code == 1
        and "an ensemble is attacked by fgsm, ifgsm, pgd, apgd, square only; leave out spam-close" in refused.output
    )
    image = save_png(apply_manipulation("median7", photo[:256, :256]), tmp_path / "median7.png")
    out = tmp_path / "attacked.png"
    attacked = runner.invoke(
        app,
        [
            "attack",
            str(image),
            "-T",
            "spam",
            "-T",
            "cozzolino2017",
            "-t",
            "median7",
            "--method",
            "pgd",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert attacked.exit_code == 0, attacked.output
    summary = json.loads(attacked.stdout)
    assert summary["target"] == "spam-median7+cozzolino2017-median7"
    assert np.abs(read_rgb(out).astype(int) - read_rgb(image)).max() <= 1
    one_method = runner.invoke(
        app,
        [
            "attack",
            str(image),
            "-T",
            "spam",
            "-T",
            "cozzolino2017",
            "-t",
            "median7",
            "--method",
            "spam-close",
            "--out",
            str(out),
        ],
    )
    assert one_method.exit_code == 1 and "--method spam-close attacks one detector" in one_method.output


def test_the_recording_tool_puts_the_eps1_figures_on_the_model_cards(report_folder, tmp_path):
    """tools/record_robustness.py writes a report's eps-1 figures into a registry; the card shows the worst case."""
    out, report = report_folder
    registry_path = tmp_path / "registry.json"
    embedded = Registry.read(embedded_zoo_dir() / "registry.json")
    Registry(
        replace(entry, metrics={key: value for key, value in entry.metrics.items() if key != "robustness_eps1"})
        for entry in embedded
    ).write(registry_path)
    tool = Path(__file__).resolve().parent.parent / "tools" / "record_robustness.py"
    done = subprocess.run(
        [sys.executable, str(tool), str(out / "robustness.json"), "--registry", str(registry_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    recorded = Registry.read(registry_path).get("cozzolino2017-median7").metrics["robustness_eps1"]
    worst = next(
        row for row in report["rows"] if row["task"] == "median7" and row["eps"] == 1 and row["attack"] == WORST_CASE
    )
    assert (
        recorded["worst_case_tpr"] == worst["flagged_after"]
        and recorded["square_queries"] == 12
        and recorded["patches"] == 8
    )
    summary = Registry.read(registry_path).get("cozzolino2017-median7").metrics["robustness_summary"]
    unattacked = next(row for row in report["rows"] if row["task"] == "median7" and row["attack"] == "none")
    for row in report["rows"]:
        if row["task"] == "median7" and row["attack"] == WORST_CASE:
            assert summary[f"worst_case_tpr_eps{row['eps']}"] == row["flagged_after"]
    assert summary["tpr"] == unattacked["flagged_before"]
    for quality, tpr in unattacked["recompressed"].items():
        assert summary[f"recompressed_tpr_q{quality}"] == tpr
        assert summary[f"attacked_recompressed_tpr_q{quality}"] == worst["recompressed"][quality]
    card = family_card("cozzolino2017", Registry.read(registry_path)).text
    line = next(line for line in card.splitlines() if line.startswith("| `cozzolino2017-median7` |"))
    assert line.split(" | ")[7] == f"{worst['flagged_after']:.2f}"
    assert "on 8 manipulated test patches per task, Square with 12 queries" in card
    mixed = tmp_path / "mixed.json"
    shutil.copy(embedded_zoo_dir() / "registry.json", mixed)  # the shipped figures: 32 patches, 300 queries
    subprocess.run(
        [sys.executable, str(tool), str(out / "robustness.json"), "--registry", str(mixed)],
        check=True,
        capture_output=True,
    )
    assert (
        "on the patches and with the Square budget each registry entry records"
        in family_card("cozzolino2017", Registry.read(mixed)).text
    )
    assert "robustness_eps1" not in Registry.read(registry_path).get("cozzolino2017-blur1.1").metrics


def test_the_price_of_robustness_tool_tabulates_and_draws_a_report(report_folder, tmp_path):
    """tools/price_of_robustness.py: one row per model with its record's clean ACC and the report's worst cases and
    recompressions, and the Pareto figure (a PNG)."""
    out, report = report_folder
    tool = Path(__file__).resolve().parent.parent / "tools" / "price_of_robustness.py"
    figure = tmp_path / "price.png"
    done = subprocess.run(
        [sys.executable, str(tool), str(out / "robustness.json"), "--figure", str(figure)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| median7 | standard |")).split(" | ")
    checkpoints = Path(__file__).resolve().parent.parent / "checkpoints" / "cameras-seed0"
    record = json.loads((checkpoints / "cozzolino2017-median7.json").read_text())
    worst = next(
        row for row in report["rows"] if row["task"] == "median7" and row["eps"] == 1 and row["attack"] == WORST_CASE
    )
    assert row[2] == f"{record['metrics']['test']['acc']:.1f}" and row[5] == f"{worst['flagged_after']:.1f}"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
