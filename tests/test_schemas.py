"""Typed results: docs/schemas/ holds the JSON Schema of every document the types make, and what the CLI writes
validates against those files."""

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.images import save_png
from cfzoo.results import DOCUMENTS, RESULTS_SCHEMA_VERSION, json_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "docs" / "schemas"
MODELS = ["bayar2016-jpeg70", "spam-jpeg70", "cozzolino2017-jpeg70"]


def published(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


def validate(document: dict, name: str) -> None:
    schema = published(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def test_the_published_schemas_are_the_types_schemas(load_tool):
    tool = load_tool("json_schemas")
    assert sorted(path.name for path in SCHEMA_DIR.glob("*.schema.json")) == sorted(
        f"{name}.schema.json" for name in DOCUMENTS
    )
    for name in DOCUMENTS:
        assert (SCHEMA_DIR / f"{name}.schema.json").read_text() == tool.schema_text(name), (
            f"run python tools/json_schemas.py ({name})"
        )
        assert published(name) == json_schema(name)


def test_detect_json_validates_and_the_schema_has_teeth(models, photo, tmp_path):
    save_png(photo, tmp_path / "astronaut.png")
    result = CliRunner().invoke(
        app, ["detect", str(tmp_path / "astronaut.png"), "-t", "jpeg70", "--json", "--providers", "cpu"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == RESULTS_SCHEMA_VERSION and document["images"][0]["results"]
    validate(document, "detection")
    document["images"][0]["results"][0]["verdict"] = "perhaps"
    with pytest.raises(jsonschema.ValidationError, match="perhaps"):
        validate(document, "detection")
    del document["images"][0]["results"][0]["verdict"]
    with pytest.raises(jsonschema.ValidationError, match="'verdict' is a required property"):
        validate(document, "detection")


@pytest.mark.parametrize("method", ["fgsm", "square"])
def test_attack_json_validates_whatever_parameters_the_method_has(models, sample_root, tmp_path, method):
    result = CliRunner().invoke(
        app,
        [
            "attack",
            "--data",
            str(sample_root),
            "--target",
            "bayar2016",
            "--task",
            "jpeg70",
            "--eps",
            "2",
            "--method",
            method,
            "--max-patches",
            "4",
            "--json",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--providers",
            "cpu",
            *(["--queries", "20"] if method == "square" else []),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    validate(report, "attack")
    assert report["schema_version"] == RESULTS_SCHEMA_VERSION and set(report["rows"][0]["tpr"]) == {
        "spam",
        "bayar2016",
        "cozzolino2017",
    }
    # fgsm has no query budget and no mean_queries; square has no iterations
    assert ("queries" in report, "mean_queries" in report["rows"][0], "iterations" in report) == (
        (False, False, True) if method == "fgsm" else (True, True, False)
    )
    report["rows"][0]["patches"] = "four"
    with pytest.raises(jsonschema.ValidationError):
        validate(report, "attack")


def test_evaluate_model_json_is_a_detection_table(models, sample_root, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(sample_root),
            "--model",
            "spam-jpeg70",
            "--max-test-patches",
            "8",
            "--json",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    validate(table, "detection-table")
    assert [row["model"] for row in table["rows"]] == ["spam-jpeg70"] and table["rows"][0]["pristine"] == 8
    binary = table["rows"][0]["binary"]
    assert 0 <= binary["auc_interval"][0] <= binary["auc"] <= binary["auc_interval"][1] <= 1
    assert binary["tpr_interval"][0] <= table["rows"][0]["tpr"] <= binary["tpr_interval"][1]
    del binary["eer"]
    with pytest.raises(jsonschema.ValidationError, match="is not valid under any of the given schemas"):
        validate(table, "detection-table")
