"""Registration is all or nothing (cfzoo.zoo.writer): no entry's files collide with another's, a replaced entry's
files go only after the new registry is in place, and a register killed at any moment leaves a zoo that verifies."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skimage import data
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.images import save_png
from cfzoo.zoo.registry import Registry, user_zoo_dir
from cfzoo.zoo.resolve import resolve
from cfzoo.zoo.writer import CONTENT_NAME

runner = CliRunner()


def _detector(path, bias: float):
    """A contract-following detector: logits [0, mean brightness / 255 - 0.5 + bias] (smooth, so a companion checks)."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["score"]),
        helper.make_node("Mul", ["score", "zero"], ["nothing"]),
        helper.make_node("Unsqueeze", ["nothing", "axis"], ["first"]),
        helper.make_node("Unsqueeze", ["score", "axis"], ["second"]),
        helper.make_node("Concat", ["first", "second"], ["logits"], axis=1),
    ]
    initializers = [
        helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255]),
        helper.make_tensor("shift", TensorProto.FLOAT, [], [bias - 0.5]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes,
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 128, 128])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _register(path, model_id, *options):
    return runner.invoke(app, ["register", str(path), "--id", model_id, "--task", "jpeg70", *options])


def _verify_zoo():
    """Every entry of the user zoo resolves to files whose sha256 match; no staging or unnamed file is left."""
    zoo = user_zoo_dir()
    registry = Registry.in_zoo(zoo)
    for entry in registry:
        for kind in entry.files:
            assert resolve(entry, kind).source == "user"
    named = {file.name for entry in registry for file in entry.files.values()}
    assert {path.name for path in (zoo / "models").iterdir()} == named
    assert not [path for path in zoo.iterdir() if path.name.startswith(".staging-")]
    return registry


def _photo(tmp_path):
    save_png(data.astronaut()[:256, :256], tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_an_id_that_ends_in_grad_does_not_lose_its_file_to_another_entry(tmp_path):
    assert _register(_detector(tmp_path / "a.onnx", 0.1), "x.grad", "--no-companion").exit_code == 0
    result = _register(_detector(tmp_path / "b.onnx", -0.1), "x")
    assert result.exit_code == 0, result.output
    registry = _verify_zoo()
    names = [file.name for entry in registry for file in entry.files.values()]
    assert len(set(names)) == len(names) == 3 and all(CONTENT_NAME.fullmatch(name) for name in names)
    for model in ("x.grad", "x"):
        detected = runner.invoke(app, ["detect", str(_photo(tmp_path)), "--model", model, "--json"])
        assert detected.exit_code == 0, detected.output
    listed = runner.invoke(app, ["list", "--json", "-t", "jpeg70"])  # a --no-companion entry lists too
    assert listed.exit_code == 0 and {"x", "x.grad"} <= {row["id"] for row in json.loads(listed.stdout)}


def test_registering_an_id_again_replaces_its_files_only_after_the_new_entry_is_in(tmp_path):
    assert _register(_detector(tmp_path / "a.onnx", 0.2), "mine").exit_code == 0
    before = {file.name for file in Registry.in_zoo(user_zoo_dir()).get("mine").files.values()}
    assert _register(_detector(tmp_path / "b.onnx", -0.2), "mine").exit_code == 0
    after = {file.name for file in _verify_zoo().get("mine").files.values()}
    assert before.isdisjoint(after)  # the old files are gone, the new ones named by their content
    # a damaged file of a registered model gets the advice that fits it
    damaged = user_zoo_dir() / "models" / Registry.in_zoo(user_zoo_dir()).get("mine").files["detector"].name
    damaged.write_bytes(damaged.read_bytes() + b"\0")
    result = runner.invoke(app, ["detect", str(_photo(tmp_path)), "--model", "mine"])
    assert result.exit_code == 1 and "register it again: cfzoo register b.onnx --id mine --task jpeg70" in result.output
    assert "cfzoo pull" not in result.output


def test_a_register_killed_at_any_moment_leaves_a_zoo_that_verifies(tmp_path):
    """SIGKILL at seeded moments over whole registrations that replace an entry, one way and back; after each, the
    zoo verifies with the entry before or after, and a rerun gives exactly the uninterrupted result with nothing
    left behind."""
    sources = [_detector(tmp_path / "old.onnx", 0.3), _detector(tmp_path / "new.onnx", -0.3)]

    def command(source):
        return [sys.executable, "-m", "cfzoo", "register", str(source), "--id", "victim", "--task", "jpeg70"]

    entries = []
    for source in sources:  # the uninterrupted results, and how long one takes
        started = time.perf_counter()
        subprocess.run(command(source), check=True, capture_output=True, env=os.environ)
        entries.append(Registry.in_zoo(user_zoo_dir()).get("victim"))
    whole = time.perf_counter() - started
    for turn, fraction in enumerate(np.random.default_rng(7).uniform(0.3, 1.0, size=4)):
        source, before, after = sources[turn % 2], entries[(turn + 1) % 2], entries[turn % 2]
        process = subprocess.Popen(
            command(source), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
        )
        time.sleep(fraction * whole)
        process.send_signal(signal.SIGKILL)
        process.wait()
        found = Registry.in_zoo(user_zoo_dir()).get("victim")
        assert found in (before, after)
        for kind in found.files:
            assert resolve(found, kind).source == "user"  # whole and verified, whichever it is
        assert _register(source, "victim").exit_code == 0
        assert _verify_zoo().get("victim") == after


@pytest.fixture(autouse=True)
def _no_torch_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the subprocesses share two cores with the suite
