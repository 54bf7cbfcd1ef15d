"""One conclusion per image: the evidence, the fitted model (scikit-learn -> ONNX), its measurement, and how
detect, the API and `cfzoo list` use the one that ships."""

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

import cfzoo
from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.experiments.conclusion import (
    EvidenceSpec,
    EvidenceTable,
    evidence_crop,
    naive_prediction,
    top_label_calibration_error,
)
from cfzoo.files import file_sha256
from cfzoo.images import save_png
from cfzoo.manipulations import apply_manipulation, jpeg_compress
from cfzoo.ops.conclusion import CLASSES, concluder_for, conclusion_of, evidence_models
from cfzoo.zoo.catalog import open_detector
from cfzoo.zoo.conclusions import DEFAULT_CONCLUSION, ConclusionRegistry, load_conclusion
from cfzoo.zoo.registry import user_zoo_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def shipped():
    return ConclusionRegistry.load().get(DEFAULT_CONCLUSION)


def test_the_rule_names_a_class_hedges_or_declines(shipped):
    confident = np.array([0.02, 0.9, 0.06, 0.02, 0, 0, 0, 0, 0])
    found = conclusion_of(shipped, confident, distance=0.0)
    assert (found.status, found.most_likely, found.probability) == ("confident", "blur1.1", pytest.approx(0.9))
    assert found.text == (
        "most likely: Gaussian blurring, sigma = 1.10 (p = 0.90); also consistent with: Gaussian blurring, sigma = 0.50 (p = 0.06)"
    )
    assert [item.name for item in found.probabilities][:2] == ["blur1.1", "blur0.5"]
    split = conclusion_of(shipped, np.array([0.45, 0.4, 0.15, 0, 0, 0, 0, 0, 0]), distance=0.0)
    assert split.status == "uncertain" and split.text.startswith("uncertain between: none of the zoo's eight")
    far = conclusion_of(shipped, confident, distance=shipped.distance_threshold * 1.01)
    assert (far.status, far.most_likely, far.probability) == ("unfamiliar", None, None)
    assert far.text.startswith("no conclusion: the detectors' evidence is unlike any")


def test_calibration_error_and_the_naive_rule_on_known_numbers():
    labels = np.array([0, 1, 1, 0])
    # confidence 0.9 everywhere, 3 of 4 right: one bin, gap |0.75 - 0.9|
    probabilities = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    assert top_label_calibration_error(probabilities, labels) == pytest.approx(0.15)
    assert top_label_calibration_error(np.eye(2)[labels], labels) == 0.0
    models = ("a-median7", "b-median7", "a-jpeg70", "b-jpeg70")
    features = np.array(
        [
            [0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.3, 0.3],  # median7 flags most
            [0.2, 0.3, 0.1, 0.1, 0.4, 0.4, 0.5, 0.5],  # no task's detectors flag more than half on average
            [0.1, 0.2, 0.0, 0.1, 1.0, 0.9, 0.8, 0.9],  # jpeg70
        ],
        dtype=np.float32,
    )
    table = EvidenceTable(features, np.zeros(3, int), np.array(["d"] * 3), np.array(["p"] * 3), models, CLASSES)
    assert [CLASSES[index] for index in naive_prediction(table)] == ["median7", "none", "jpeg70"]


def test_evidence_crops_keep_the_jpeg_grid_and_apply_the_manipulation_to_the_region(photo):
    spec = EvidenceSpec(crop=256, margin=64)
    compressed = jpeg_compress(photo, 80)
    untouched = evidence_crop(compressed, "none", spec, [0, 7])
    again = evidence_crop(compressed, "none", spec, [0, 7])
    assert np.array_equal(untouched, again) and untouched.shape == (256, 256, 3)
    # the crop is a block of the photo at offsets that are multiples of 16
    matches = [
        (row, column)
        for row in range(0, 512 - 256 + 1, 16)
        for column in range(0, 512 - 256 + 1, 16)
        if np.array_equal(compressed[row : row + 256, column : column + 256], untouched)
    ]
    assert matches
    row, column = matches[0]
    filtered = evidence_crop(compressed, "median7", spec, [0, 7])
    # away from the region's border, the same pixels as filtering the whole photo
    whole = apply_manipulation("median7", compressed)[row : row + 256, column : column + 256]
    assert np.array_equal(filtered[8:-8, 8:-8], whole[8:-8, 8:-8])
    assert evidence_crop(compressed, "resize1.5", spec, [0, 7]).shape == (256, 256, 3)


def test_fitting_exports_one_graph_that_matches_scikit_learn_and_is_measured(tmp_path, sample_root):
    """`cfzoo train-conclusion` on scikit-image's photos, at a 128-pixel crop (one patch per detector): the model it
    writes is what `cfzoo detect` then uses from the user zoo."""
    pytest.importorskip("sklearn")
    figure = tmp_path / "confusion.png"
    arguments = ["train-conclusion", str(sample_root), "--crop", "128", "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, [*arguments, "--figure", str(figure), "--version", "3", "--format", "json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert (entry["id"], entry["version"], entry["classes"]) == (DEFAULT_CONCLUSION, 3, list(CLASSES))
    assert list(entry["models"]) == list(evidence_models())
    for model, sha256 in entry["models"].items():
        assert sha256 == open_detector(model).entry.files["detector"].sha256
    test = entry["metrics"]["test"]
    assert test["images"] == 9 * test["photos"] and np.sum(test["confusion"]) == test["images"]
    assert 0 <= test["expected_calibration_error"] <= 1 and "naive_rule" in test
    assert entry["metrics"]["test_jpeg90"]["images"] == test["images"]
    assert figure.read_bytes().startswith(b"\x89PNG")
    written = user_zoo_dir() / "models" / entry["file"]["name"]
    assert file_sha256(written) == entry["file"]["sha256"]
    # the evidence is cached: a second fit reads it and writes the same model
    again = runner.invoke(app, [*arguments, "--version", "3", "--format", "json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["file"] == entry["file"]
    model = load_conclusion()
    assert model.entry.version == 3 and model.path == written
    probabilities, distances = model.predict(np.zeros((2, model.entry.feature_count), np.float32))
    assert probabilities.shape == (2, 9) and np.allclose(probabilities.sum(axis=1), 1) and distances.shape == (2,)
    listed = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    row = next(row for row in listed if row["kind"] == "conclusion")
    assert row["sources"] == ["user"] and row["test_acc"] == pytest.approx(100 * test["accuracy"])


@pytest.fixture(scope="module")
def filtered(photo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("conclusion-photos")
    save_png(apply_manipulation("median7", photo), folder / "astronaut-median7.png")
    return folder / "astronaut-median7.png"


def test_detect_concludes_first_and_records_the_conclusion_model(filtered, shipped, conforms):
    result = runner.invoke(app, ["detect", str(filtered), "--providers", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("most likely: Median filtering, 7x7 (p = ")
    assert f"conclusion model {DEFAULT_CONCLUSION} v{shipped.version} sha256 {shipped.file.sha256}" in result.stdout
    document = json.loads(runner.invoke(app, ["detect", str(filtered), "--providers", "cpu", "--json"]).stdout)
    conforms(document, "detection")
    conclusion = document["images"][0]["conclusion"]
    assert conclusion["most_likely"] == "median7" and conclusion["probability"] >= shipped.uncertain_below
    assert sum(item["probability"] for item in conclusion["probabilities"]) == pytest.approx(1, abs=1e-5)
    assert document["conclusion_model"]["sha256"] == shipped.file.sha256
    assert cfzoo.conclude(filtered).most_likely == "median7"


def test_no_conclusion_without_every_detector_it_reads_or_from_other_versions(filtered, shipped):
    result = runner.invoke(app, ["detect", str(filtered), "-t", "median7", "--providers", "cpu", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["images"][0]["conclusion"] is None and document["conclusion_model"] is None
    assert any(line.startswith("conclusion: not drawn, it reads all 24 detectors") for line in document["skipped"])
    quiet = runner.invoke(app, ["detect", str(filtered), "--no-conclusion", "--json"])
    assert json.loads(quiet.stdout)["skipped"] == [] and "not drawn" not in quiet.stderr
    # an entry fitted on another version of one detector: detect says so instead of concluding
    models = dict(shipped.models, **{"spam-median7": "0" * 64})
    ConclusionRegistry([replace(shipped, models=models, embedded=False)]).write(user_zoo_dir() / "conclusions.json")
    detectors = [open_detector(model) for model in evidence_models()]
    concluder, why = concluder_for(detectors)
    assert concluder is None and why.startswith(
        "conclusion: not drawn, it was fitted on other versions of spam-median7"
    )
    with pytest.raises(CfzooError, match="fit it again"):
        cfzoo.conclude(filtered)


def test_a_damaged_conclusion_registry_is_named_and_left_out(tmp_path):
    (user_zoo_dir()).mkdir(parents=True, exist_ok=True)
    (user_zoo_dir() / "conclusions.json").write_text('{"schema": 1, "conclusions": [{"id": "conclusion-zoo"}]}')
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert "conclusions.json: entry 'conclusion-zoo': version: Field required" in result.stderr
    assert "conclusion-zoo" in result.stdout  # the embedded one stays
