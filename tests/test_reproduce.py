"""`cfzoo reproduce`: one run on scikit-image's bundled photos with the embedded zoo (no torch), then its
report folder checked file against file."""

import csv
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image
from test_numbers import percent_flagged, without_timings
from test_zoo import run_cli_without_torch
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.data import PatchSetSpec, balanced_subset, build_patch_set, split_devices
from cfzoo.experiments.reproduce import DIFFERENCE_POINTS, differences
from cfzoo.paper import paper_tables, table1
from cfzoo.results import AttackReport, AttackRow, DetectionRow, DetectionTable, RestorationReport, TprChange

MODELS = [f"{family}-{task}" for family in ("spam", "bayar2016", "cozzolino2017") for task in ("jpeg70", "median3")]
TASKS = ["median3", "jpeg70"]
MAX_PATCHES = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_root):
    """One run of `reproduce` without DATA (the bundled photos) on two tasks, in a subprocess with torch
    blocked, an empty user zoo and an offline Hub cache: (completed process, out folder, JSON document)."""
    home = tmp_path_factory.mktemp("reproduce-home")
    out = home / "report"
    arguments = ["reproduce", "--out", str(out), "--max-patches", str(MAX_PATCHES), "--providers", "cpu"]
    for task in TASKS:
        arguments += ["--task", task]
    completed = run_cli_without_torch(
        arguments,
        home / "cfzoo",
        timeout=300,
        HF_HOME=str(home / "hf"),
        HF_HUB_OFFLINE="1",
        CFZOO_CACHE=str(sample_root.parent),
    )
    return completed, out, json.loads((out / "reproduce.json").read_text())


def read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_runs_on_the_bundled_photos_without_torch(models, run):
    completed, out, document = run
    assert completed.returncode == 0, completed.stderr
    assert "using scikit-image's bundled photos" in completed.stderr
    assert (
        "reproduced Tables I-V in" in completed.stderr
        and f"{out}/REPORT.md, 5 CSV, reproduce.json, 6 PNG" in completed.stderr
    )
    assert completed.stdout == ""
    assert sorted(path.name for path in out.iterdir()) == sorted(
        ["REPORT.md", "reproduce.json", *document["files"]["csv"], *document["files"]["png"]]
    )


def test_json_schema(models, run):
    _, _, document = run
    schema = json.loads(
        (Path(__file__).resolve().parent.parent / "docs" / "schemas" / "reproduce.schema.json").read_text()
    )
    jsonschema.Draft202012Validator(schema).validate(document)
    assert set(document) == {
        "schema_version",
        "cfzoo_version",
        "created",
        "settings",
        "data",
        "machine",
        "seconds",
        "table1",
        "attacks",
        "restoration",
        "differences",
        "files",
    }
    assert document["schema_version"] == 3
    assert document["settings"] == {
        "tasks": ["jpeg70", "median3"],
        "eps": 1,
        "method": "fgsm",
        "seed": 0,
        "max_patches": MAX_PATCHES,
        "providers": "cpu",
        "batch_size": 64,
    }
    data = document["data"]
    assert data["test_devices"] == ["skimage_science"] and "skimage_science" not in data["train_devices"]
    assert data["images"] == 14 and "bundled photos" in data["description"]
    assert document["machine"]["providers"] == ["CPUExecutionProvider"]
    assert set(document["seconds"]) == {"table1", "attacks", "restoration", "total"}
    assert document["seconds"]["total"] >= document["seconds"]["table1"] + document["seconds"]["attacks"] - 0.1

    rows = document["table1"]["rows"]
    assert [(row["task"], row["family"]) for row in rows] == [
        (task, family) for task in ("jpeg70", "median3") for family in ("spam", "bayar2016", "cozzolino2017")
    ]
    for row in rows:
        assert row["model"] == f"{row['family']}-{row['task']}" and row["pristine"] == row["manipulated"] == MAX_PATCHES
        assert row["paper"] == table1(row["task"], row["family"]) and row["trained_on_test_devices"] == []
        # ACC is the share of correct calls over both (equal-sized) classes
        assert row["acc"] == pytest.approx((100 - row["fpr"] + row["tpr"]) / 2)

    # the paper's targets first, SPAM+SVM (ours, beyond the paper) after them; Xception is not embedded
    assert [(report["target"], report["paper_table"]) for report in document["attacks"]] == [
        ("bayar2016", "II"),
        ("cozzolino2017", "III"),
        ("spam", None),
    ]
    for report in document["attacks"]:
        assert (
            report["eps"] == 1
            and report["method"] == "fgsm"
            and [row["task"] for row in report["rows"]] == ["jpeg70", "median3"]
        )
        for row in report["rows"]:
            assert row["patches"] == MAX_PATCHES and 47.5 < row["psnr_db"] < 48.5
            assert set(row["tpr"]) == {"spam", "bayar2016", "cozzolino2017"}

    # Table V from the embedded median3 restorers (jpeg70 has none: the paper restores median filtering only)
    restoration = document["restoration"]
    assert restoration["missing"] == [] and restoration["note"] is None
    assert [(row["task"], row["discriminator"], row["restorer"]) for row in restoration["rows"]] == [
        ("median3", "kim", "restorer-median3-kim"),
        ("median3", "vgg", "restorer-median3-vgg"),
    ]
    for row in restoration["rows"]:
        assert row["patches"] == MAX_PATCHES and set(row["tpr"]) == {"spam", "bayar2016", "cozzolino2017"}
        # the generator brings the filtered patches closer to their pristine partners
        assert row["quality"]["restored"]["psnr_db"] > row["quality"]["input"]["psnr_db"]
        assert row["quality"]["restored"]["ssim"] > row["quality"]["input"]["ssim"]
    assert set(document["differences"]) == {"table1", "fgsm_bayar2016", "fgsm_cozzolino2017", "fgsm_spam", "table5"}
    assert document["files"] == {
        "report": "REPORT.md",
        "json": "reproduce.json",
        "csv": [
            "table1_detection.csv",
            "table2_fgsm_bayar2016.csv",
            "table3_fgsm_cozzolino2017.csv",
            "fgsm_eps1_spam.csv",
            "table5_restoration.csv",
        ],
        "png": [
            "fgsm_eps1_spam.png",
            "table1_acc.png",
            "table1_reliability.png",
            "table2_fgsm_bayar2016.png",
            "table3_fgsm_cozzolino2017.png",
            "table5_restoration.png",
        ],
    }


def test_report_csv_json_and_plots_agree(models, run):
    _, out, document = run
    report = (out / "REPORT.md").read_text()
    lines = report.splitlines()

    table1_csv = read_csv(out / "table1_detection.csv")
    assert len(table1_csv) == len(document["table1"]["rows"])
    for cells, row in zip(table1_csv, document["table1"]["rows"]):
        assert (cells["task"], cells["family"], cells["model"]) == (row["task"], row["family"], row["model"])
        for metric in ("fpr", "tpr", "acc"):
            assert float(cells[metric]) == row[metric] and float(cells[f"paper_{metric}"]) == row["paper"][metric]
        title = {"jpeg70": "| JPEG compression, Q = 70", "median3": "| Median filtering, 3x3"}[row["task"]]
        markdown_row = next(line for line in lines if line.startswith(title))
        assert f"{row['tpr']:.2f} ({row['paper']['tpr']:.2f})" in markdown_row

    for attack in document["attacks"]:
        stem = {
            "bayar2016": "table2_fgsm_bayar2016",
            "cozzolino2017": "table3_fgsm_cozzolino2017",
            "spam": "fgsm_eps1_spam",
        }[attack["target"]]
        cells = read_csv(out / f"{stem}.csv")
        expected = [(row, family, rates) for row in attack["rows"] for family, rates in row["tpr"].items()]
        assert len(cells) == len(expected)
        paper = paper_tables().get(f"{stem[:6]}_fgsm_eps1_target_{attack['target']}")
        section = report.split("### Target ")[1 + [a["target"] for a in document["attacks"]].index(attack["target"])]
        for line, (row, family, rates) in zip(cells, expected):
            assert (line["task"], line["family"], line["target"]) == (
                row["task"],
                family,
                attack["target"] + "-" + row["task"],
            )
            assert float(line["tpr_before"]) == rates["before"] and float(line["tpr_after"]) == rates["after"]
            assert float(line["psnr_db"]) == row["psnr_db"]
            if attack["target"] == "spam":
                assert line["paper_tpr_after"] == "" and rates["paper"] is None
            else:
                assert float(line["paper_tpr_after"]) == rates["paper"] == paper["by_task"][row["task"]][family]
            markdown_row = next(
                text for text in section.splitlines() if text.startswith(f"| {row['task']} | {MAX_PATCHES} |")
            )
            assert f"{rates['after']:.2f}" in markdown_row and f"{rates['before']:.2f}" in markdown_row
        assert f"![{stem}.png]({stem}.png)" in section
        for difference in document["differences"][f"fgsm_{attack['target']}"]:
            assert f"- {difference}" in section

    table5_csv = read_csv(out / "table5_restoration.csv")
    expected = [(row, family, rates) for row in document["restoration"]["rows"] for family, rates in row["tpr"].items()]
    assert len(table5_csv) == len(expected) == 6
    table5_section = report.split("## Table V")[1]
    for cells, (row, family, rates) in zip(table5_csv, expected):
        assert (cells["task"], cells["discriminator"], cells["family"]) == (row["task"], row["discriminator"], family)
        assert float(cells["tpr_after"]) == rates["after"] and float(cells["paper_tpr_after"]) == rates["paper"]
        assert float(cells["psnr_db_restored"]) == row["quality"]["restored"]["psnr_db"]
        markdown_row = next(
            line
            for line in table5_section.splitlines()
            if line.startswith(f"| median3 | {row['discriminator']} | {MAX_PATCHES} |")
        )
        assert f"{rates['after']:.2f} ({rates['paper']:.2f})" in markdown_row
    assert "![table5_restoration.png](table5_restoration.png)" in table5_section
    assert "Xception (the paper's Table IV)" in report
    assert "machine:" in report and "time: Table I" in report and "test skimage_science" in report
    for name in document["files"]["png"]:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_differences_list_only_gaps_over_the_threshold():
    paper = table1("jpeg70", "bayar2016")
    near = {
        "fpr": paper["fpr"] + DIFFERENCE_POINTS,
        "tpr": paper["tpr"],
        "acc": paper["acc"] - DIFFERENCE_POINTS - 0.01,
    }
    detection = DetectionTable(
        test_devices=["d"],
        rows=[
            DetectionRow(
                task="jpeg70",
                family="bayar2016",
                model="bayar2016-jpeg70",
                pristine=10,
                manipulated=10,
                paper=paper,
                trained_on_test_devices=[],
                **near,
            )
        ],
    )
    row = AttackRow(
        task="jpeg70",
        target="bayar2016-jpeg70",
        test_devices=["d"],
        patches=10,
        manipulated_in_split=10,
        psnr_db=48.1,
        mse=0.5,
        zero_gradient_patches=0,
        mean_iterations=1,
        seconds=1.0,
        tpr={
            "spam": TprChange(
                model="spam-jpeg70",
                before=90.0,
                before_interval=[59.6, 98.2],
                after=7.0,
                after_interval=[0.0, 27.8],
                paper=0.06,
            ),
            "bayar2016": TprChange(
                model="bayar2016-jpeg70",
                before=90.0,
                before_interval=[59.6, 98.2],
                after=0.0,
                after_interval=[0.0, 27.8],
                paper=0.0,
            ),
        },
    )
    attack = AttackReport(
        target="bayar2016",
        method="fgsm",
        eps=1,
        iterations=1,
        step=1,
        seed=0,
        dataset="d",
        test_devices=["d"],
        target_trained_on_test_devices=[],
        rows=[row],
    )
    restoration = RestorationReport(seed=0, dataset="d", test_devices=["d"], max_patches=None, missing=[], rows=[])
    assert differences(detection, [attack], restoration) == {
        "table1": [f"Bayar2016 jpeg70 ACC: {near['acc']:.2f} vs {paper['acc']:.2f} in the paper (-5.01)"],
        "fgsm_bayar2016": ["SPAM+SVM jpeg70 TPR after: 7.00 vs 0.06 in the paper (+6.94)"],
        "table5": [],
    }


def test_refuses_a_non_empty_out_and_bad_input(models, tmp_path, sample_root):
    runner = CliRunner()
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    refused = runner.invoke(app, ["reproduce", str(sample_root), "--out", str(out), "--task", "jpeg70"])
    assert (
        refused.exit_code == 1
        and refused.stderr
        == f"error: --out {out} is not empty; choose a new folder, or add --force to replace its contents\n"
    )
    assert [path.name for path in out.iterdir()] == ["notes.txt"]

    for arguments, message in (
        ([str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")], "nowhere"),
        ([str(sample_root), "--out", str(tmp_path / "b"), "--providers", "gpu"], "unknown provider 'gpu'"),
        ([str(sample_root), "--out", str(tmp_path / "c"), "--task", "sharpen"], "unknown task 'sharpen'"),
    ):
        failed = runner.invoke(app, ["reproduce", *arguments])
        assert failed.exit_code == 1 and failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1, (
            failed.output
        )
        assert message in failed.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]

    forced = runner.invoke(
        app,
        [
            "reproduce",
            str(sample_root),
            "--out",
            str(out),
            "--force",
            "--task",
            "jpeg70",
            "--max-patches",
            "1",
            "--providers",
            "cpu",
            "--cache-dir",
            str(sample_root.parent),
            "--json",
        ],
    )
    assert forced.exit_code == 0, forced.output
    document = json.loads(forced.stdout)
    assert "notes.txt" not in {path.name for path in out.iterdir()} and (out / "REPORT.md").exists()
    assert json.loads((out / "reproduce.json").read_text()) == document
    assert document["data"]["description"] is None and document["settings"]["tasks"] == ["jpeg70"]
    assert document["restoration"]["note"].startswith("Not run: Table V restores median7 and median3")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]  # no staging folder left behind


def test_table1_cells_are_counted_from_the_detectors_scores(models, run, sample_dataset, sample_root):
    """Each Table I cell of the report, recomputed: the same seeded patches scored by the detector, counted by hand."""
    _, _, document = run
    split = split_devices(sample_dataset.device_names, 0)
    for row in document["table1"]["rows"]:
        patch_set = build_patch_set(
            sample_dataset, PatchSetSpec(task=row["task"], split="test", seed=0), split, sample_root.parent
        )
        chosen = balanced_subset(patch_set.labels, 2 * MAX_PATCHES, seed=1)
        labels = patch_set.labels[chosen]
        pristine, manipulated = (np.asarray(patch_set.patches[chosen[labels == label]]) for label in (0, 1))
        fpr, tpr = percent_flagged(row["model"], pristine), percent_flagged(row["model"], manipulated)
        assert row["fpr"] == pytest.approx(fpr, abs=1e-4) and row["tpr"] == pytest.approx(tpr, abs=1e-4)
        assert row["acc"] == pytest.approx((100 - fpr + tpr) / 2, abs=1e-4)


def test_a_second_run_gives_the_same_document(models, run, tmp_path, monkeypatch, sample_root):
    """Same seed, same data, same models: the same JSON, apart from the clocks (in process this time, with torch importable)."""
    _, _, first = run
    monkeypatch.setenv("CFZOO_CACHE", str(sample_root.parent))
    arguments = ["reproduce", "--out", str(tmp_path / "again"), "--max-patches", str(MAX_PATCHES), "--providers", "cpu"]
    for task in TASKS:
        arguments += ["--task", task]
    result = CliRunner().invoke(app, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    second = json.loads(result.stdout)

    assert without_timings(second) == without_timings(first)


def test_the_ray_engine_gives_the_same_tables(models, run, tmp_path, sample_root):
    """Every cell (Table I per task, FGSM per target and task, Table V) a Ray task on a Ray started here: the same
    document, apart from the clocks, and the same CSV files, byte for byte."""
    completed, out, first = run
    home = tmp_path / "home"
    arguments = [
        "reproduce",
        "--out",
        str(tmp_path / "ray"),
        "--max-patches",
        str(MAX_PATCHES),
        "--providers",
        "cpu",
        "--engine",
        "ray",
    ]
    for task in TASKS:
        arguments += ["--task", task]
    on_ray = run_cli_without_torch(
        arguments,
        home / "cfzoo",
        timeout=600,
        HF_HOME=str(home / "hf"),
        HF_HUB_OFFLINE="1",
        CFZOO_CACHE=str(sample_root.parent),
        RAY_USAGE_STATS_ENABLED="0",
    )
    assert on_ray.returncode == 0, on_ray.stderr
    second = json.loads((tmp_path / "ray" / "reproduce.json").read_text())
    assert without_timings(second) == without_timings(first)
    for name in first["files"]["csv"]:
        assert (tmp_path / "ray" / name).read_bytes() == (out / name).read_bytes(), name
    refused = CliRunner().invoke(app, ["reproduce", "--out", str(tmp_path / "x"), "--address", "127.0.0.1:1"])
    assert refused.exit_code == 1 and refused.stderr.startswith(
        "error: --address joins a Ray cluster; add --engine ray"
    )
