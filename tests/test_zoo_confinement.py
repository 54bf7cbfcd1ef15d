"""A registry names files inside its own zoo only (issue: a user-zoo entry could load any ONNX file on disk)."""

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.images import read_rgb, save_png
from cfzoo.sample_data import skimage_data_dir
from cfzoo.zoo.catalog import open_detector
from cfzoo.zoo.registry import REGISTRY_NAME, Registry, embedded_registry, embedded_zoo_dir, load_registry, user_zoo_dir
from cfzoo.zoo.restorers import RESTORER_REGISTRY_NAME, load_restorer_registry

MODEL_ID = "spam-jpeg70"


def user_entry_payload(**file_changes):
    """The embedded spam-jpeg70 entry as a user-zoo entry, its detector file changed as given."""
    payload = embedded_registry().get(MODEL_ID).to_json()
    payload["embedded"] = False
    payload["files"]["detector"].update(file_changes)
    return payload


def write_user_registry(payloads, name=REGISTRY_NAME, key="models"):
    user_zoo_dir().mkdir(parents=True, exist_ok=True)
    (user_zoo_dir() / name).write_text(json.dumps({"schema": 1, key: payloads}))


@pytest.mark.parametrize("name", ["../../outside.onnx", "/tmp/outside.onnx", "sub/inside.onnx", ".."])
def test_a_file_name_that_leaves_the_models_folder_is_refused_in_one_line(tmp_path, name):
    """Refused wherever a registry is read: in a user zoo the entry is left out and named, elsewhere it is an error."""
    write_user_registry([user_entry_payload(name=name)])
    registry = load_registry()
    (problem,) = registry.problems
    assert (
        f"entry {MODEL_ID!r}: files.detector: file name {name!r} must be a plain file name inside the zoo's models folder"
        in problem
    )
    assert registry.get(MODEL_ID).embedded  # the embedded entry stands; the invalid overlay is not used
    with pytest.raises(CfzooError, match="must be a plain file name"):
        Registry.read(user_zoo_dir() / REGISTRY_NAME)
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert (
        result.stderr.startswith("note: ")
        and "must be a plain file name" in result.stderr
        and result.stderr.count("\n") == 1
    )


def test_a_restorer_file_name_that_leaves_the_models_folder_is_refused():
    payload = next(iter(load_restorer_registry())).to_json()
    payload["file"]["name"] = "../../outside.onnx"
    write_user_registry([payload], RESTORER_REGISTRY_NAME, "restorers")
    (problem,) = load_restorer_registry().problems
    assert f"entry {payload['id']!r}: file: file name '../../outside.onnx' must be a plain file name" in problem


def test_a_link_out_of_the_zoo_is_refused_even_when_the_checksum_matches(tmp_path):
    """The user zoo's file is a symlink to a copy of the real model elsewhere: same bytes, same sha256, refused."""
    entry = embedded_registry().get(MODEL_ID)
    outside = tmp_path / "elsewhere" / entry.files["detector"].name
    outside.parent.mkdir()
    shutil.copyfile(embedded_zoo_dir() / entry.files["detector"].path_in_zoo, outside)
    models = user_zoo_dir() / "models"
    models.mkdir(parents=True)
    os.symlink(outside, models / entry.files["detector"].name)
    write_user_registry([user_entry_payload()])
    with pytest.raises(CfzooError, match="leads outside its zoo") as caught:
        open_detector(MODEL_ID)
    assert str(outside) in str(caught.value) and "\n" not in str(caught.value)
    save_png(read_rgb(skimage_data_dir() / "astronaut.png")[:256, :256], tmp_path / "photo.png")
    result = CliRunner().invoke(app, ["detect", str(tmp_path / "photo.png"), "-t", "jpeg70", "-f", "spam"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.stderr.startswith("error: ")
        and "leads outside its zoo" in result.stderr
        and result.stderr.count("\n") == 1
    )


def test_a_symlink_loop_in_the_zoo_is_refused_in_one_line():
    entry = embedded_registry().get(MODEL_ID)
    models = user_zoo_dir() / "models"
    models.mkdir(parents=True)
    os.symlink(models / "b.onnx", models / entry.files["detector"].name)
    os.symlink(models / entry.files["detector"].name, models / "b.onnx")
    write_user_registry([user_entry_payload()])
    # a loop is not a file: the user zoo has nothing usable and the embedded copy is used
    assert open_detector(MODEL_ID).resolved.source == "embedded"


def test_a_link_inside_the_models_folder_is_followed(tmp_path):
    entry = embedded_registry().get(MODEL_ID)
    models = user_zoo_dir() / "models"
    models.mkdir(parents=True)
    shutil.copyfile(embedded_zoo_dir() / entry.files["detector"].path_in_zoo, models / "real.onnx")
    os.symlink(models / "real.onnx", models / entry.files["detector"].name)
    write_user_registry([user_entry_payload()])
    assert open_detector(MODEL_ID).resolved.source == "user"
