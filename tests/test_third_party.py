"""Detectors cfzoo did not make: registered with an adapter, detected with and attacked from the CLI and Python.

The third-party graphs are torch networks of an architecture no cfzoo family has (a residual block, GELU-free so
onnx2torch converts it, global average pooling), exported by torch's own exporter the way their authors would.
"""

import csv
import io
import json
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

import cfzoo
from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.export.third_party import FD_TOLERANCE, check_companion
from cfzoo.images import read_rgb, save_png
from cfzoo.manipulations import apply_manipulation
from cfzoo.zoo.registry import load_registry, user_zoo_dir


class Residual(torch.nn.Module):
    """NHWC in 0..1 (or NCHW in 0..255); one logit (or two)."""

    def __init__(self, nhwc: bool = True, logits: int = 1, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.nhwc = nhwc
        self.stem = torch.nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.block = torch.nn.Sequential(torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1))
        self.head = torch.nn.Linear(8, logits)

    def forward(self, pixels):
        x = pixels.permute(0, 3, 1, 2) - 0.5 if self.nhwc else pixels / 255.0 - 0.5
        x = self.stem(x)
        x = x + self.block(x)
        return self.head(x.mean(dim=(2, 3)))


def _export(network, path, shape, dynamic=True, opset=17):
    dynamic_axes = {"pixels": {0: "n"}, "score": {0: "n"}} if dynamic else None
    torch.onnx.export(
        network.eval(),
        (torch.rand(*shape),),
        str(path),
        input_names=["pixels"],
        output_names=["score"],
        dynamic_axes=dynamic_axes,
        dynamo=False,
        opset_version=opset,
    )
    return path


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    folder = tmp_path_factory.mktemp("third_party")
    with pytest.warns(DeprecationWarning):  # torch calls its TorchScript exporter legacy; third parties still use it
        return {
            "nhwc": _export(Residual(), folder / "nhwc.onnx", (2, 128, 128, 3)),
            "two": _export(Residual(nhwc=False, logits=2, seed=1), folder / "two.onnx", (2, 3, 128, 128)),
            "fixed": _export(Residual(), folder / "fixed.onnx", (1, 128, 128, 3), dynamic=False),
        }


@pytest.fixture(scope="module")
def compressed(photo):
    return apply_manipulation("jpeg70", photo)


def _tiles(image):
    return np.stack(
        [image[row : row + 128, col : col + 128] for row in range(0, 384, 128) for col in range(0, 384, 128)]
    )


runner = CliRunner()


def _register(path, model_id, *options):
    return runner.invoke(app, ["register", str(path), "--id", model_id, "--task", "jpeg70", *options])


def test_an_nhwc_one_logit_detector_registers_and_scores_as_its_own_network(third_party, compressed):
    result = _register(
        third_party["nhwc"], "residual", "--layout", "NHWC", "--input-range", "1", "--outputs", "one-logit", "--json"
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert entry["family"] == "external" and set(entry["files"]) == {"detector", "gradient"}
    assert entry["training"]["adapter"] == {
        "layout": "NHWC",
        "input_range": 1,
        "outputs": "one-logit",
        "manipulated_class": 1,
    }
    assert 0 <= entry["companion_finite_difference_error"] <= FD_TOLERANCE
    assert load_registry().get("residual").files["detector"].sha256 == entry["files"]["detector"]["sha256"]
    listed = json.loads(runner.invoke(app, ["list", "--json", "-t", "jpeg70"]).stdout)
    assert {"id": "residual", "kind": "user", "family": "external", "sources": ["user"]}.items() <= next(
        row for row in listed if row["id"] == "residual"
    ).items()

    model = cfzoo.load_detector("residual")
    patches = _tiles(compressed)
    with torch.no_grad():
        expected = torch.sigmoid(Residual().eval()(torch.from_numpy(patches / 255.0).float()))[:, 0].numpy()
    np.testing.assert_allclose(model.predict_proba(patches), expected, atol=1e-5)

    attacked = cfzoo.attack(model, patches, eps=4)
    assert np.abs(attacked.astype(int) - patches).max() == 4
    assert (model.predict_proba(attacked) < model.predict_proba(patches)).all()


def test_two_logits_with_manipulated_first_are_reordered(third_party, compressed):
    model = cfzoo.register(third_party["two"], "two-first", "jpeg70", manipulated_class=0)
    patches = _tiles(compressed)
    with torch.no_grad():
        expected = torch.softmax(
            Residual(nhwc=False, logits=2, seed=1).eval()(torch.from_numpy(patches).permute(0, 3, 1, 2).float()), 1
        )
    np.testing.assert_allclose(model.predict_proba(patches), expected[:, 0].numpy(), atol=1e-5)


def test_a_registered_detector_is_detected_with_and_attacked_from_the_cli(third_party, compressed, tmp_path):
    assert (
        _register(
            third_party["nhwc"], "residual", "--layout", "NHWC", "--input-range", "1", "--outputs", "one-logit"
        ).exit_code
        == 0
    )
    image = save_png(compressed[:256, :256], tmp_path / "compressed.png")
    detected = runner.invoke(app, ["detect", str(image), "--model", "residual", "-f", "spam", "-t", "jpeg70", "--json"])
    assert detected.exit_code == 0, detected.output
    results = json.loads(detected.stdout)["images"][0]["results"]
    assert [(result["model"], result["family"]) for result in results] == [
        ("spam-jpeg70", "spam"),
        ("residual", "external"),
    ]
    table = runner.invoke(app, ["detect", str(image), "--model", "residual", "-t", "jpeg70"])
    assert "residual" in table.stdout and "spam" not in table.stdout  # --model without --detector: that model only

    out = tmp_path / "attacked.png"
    attacked = runner.invoke(
        app, ["attack", str(image), "--target", "residual", "-t", "jpeg70", "--eps", "2", "--out", str(out), "--json"]
    )
    assert attacked.exit_code == 0, attacked.output
    summary = json.loads(attacked.stdout)
    assert summary["target"] == "residual" and "residual" in summary["detect_grid_called_manipulated"]
    assert np.abs(read_rgb(out).astype(int) - compressed[:256, :256]).max() == 2

    # the zoo's file by path is the registered model, companion and all
    detector_file = user_zoo_dir() / "models" / load_registry().get("residual").files["detector"].name
    by_path = runner.invoke(app, ["detect", str(image), "--model", str(detector_file), "--json"])
    assert json.loads(by_path.stdout)["images"][0]["results"][0]["model"] == "residual"


@pytest.mark.parametrize(
    ("which", "options", "message"),
    [
        (
            "nhwc",
            ["--outputs", "one-logit"],
            "not NCHW with 3 channels and 128x128 pixels; if it is NHWC, say --layout NHWC",
        ),
        ("nhwc", ["--layout", "NHWC"], "expects [2, 2]; if it gives one logit, say --outputs one-logit"),
        (
            "fixed",
            ["--layout", "NHWC", "--outputs", "one-logit"],
            "it takes a fixed batch of 1; export it with a dynamic batch dimension",
        ),
        ("not-onnx", [], "is not an ONNX model"),
    ],
)
def test_a_graph_that_does_not_fit_is_refused_in_one_line_and_nothing_is_written(
    third_party, tmp_path, which, options, message
):
    path = third_party.get(which)
    if path is None:
        path = tmp_path / "notes.onnx"
        path.write_text("not a protobuf at all")
    result = _register(path, "refused", *options)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not user_zoo_dir().exists() or not any(user_zoo_dir().rglob("refused*"))
    assert "refused" not in load_registry()


def test_taken_ids_and_non_contract_files_by_path_are_refused(third_party, tmp_path):
    taken = _register(third_party["nhwc"], "bayar2016-mine", "--layout", "NHWC", "--outputs", "one-logit")
    assert taken.exit_code == 1 and "taken by cfzoo's own models" in taken.output
    image = save_png(np.zeros((128, 128, 3), np.uint8), tmp_path / "black.png")
    raw = runner.invoke(app, ["detect", str(image), "--model", str(third_party["nhwc"]), "-t", "jpeg70"])
    assert raw.exit_code == 1
    assert "does not follow the model contract" in raw.output and "cfzoo register" in raw.output
    assert "Traceback" not in raw.output


def test_a_companion_that_is_not_the_detectors_gradient_is_caught(third_party):
    first = cfzoo.register(third_party["nhwc"], "first", "jpeg70", layout="NHWC", input_range=1, outputs="one-logit")
    cfzoo.register(third_party["two"], "second", "jpeg70")
    registry = load_registry()

    def file_of(model_id, kind):
        return user_zoo_dir() / "models" / registry.get(model_id).files[kind].name

    assert check_companion(file_of("first", "detector"), file_of("first", "gradient")) <= FD_TOLERANCE
    with pytest.raises(CfzooError, match="disagrees with finite differences"):
        check_companion(file_of("first", "detector"), file_of("second", "gradient"))
    assert first.family == "external"


def test_a_model_registered_without_companion_cannot_be_attacked_and_says_why(third_party, compressed):
    model = cfzoo.register(
        third_party["nhwc"], "bare", "jpeg70", layout="NHWC", input_range=1, outputs="one-logit", companion=False
    )
    assert list(load_registry().get("bare").files) == ["detector"]
    assert [path.name.endswith(".grad.onnx") for path in (user_zoo_dir() / "models").iterdir()] == [False]
    with pytest.raises(CfzooError, match="registered without a gradient companion"):
        cfzoo.attack(model, _tiles(compressed), eps=1)


def test_a_registered_detector_is_evaluated_like_the_zoos_own(third_party, sample_root):
    assert (
        _register(
            third_party["nhwc"], "residual", "--layout", "NHWC", "--input-range", "1", "--outputs", "one-logit"
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(sample_root),
            "--model",
            "residual",
            "--model",
            "bayar2016-jpeg70",
            "--max-test-patches",
            "16",
            "--per-device",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    rows = {row["model"]: row for row in table["rows"]}
    assert set(rows) == {"residual", "bayar2016-jpeg70"}
    assert rows["residual"]["family"] == "external" and rows["residual"]["paper"] is None
    assert rows["residual"]["pristine"] == rows["residual"]["manipulated"] == 16
    assert rows["bayar2016-jpeg70"]["paper"] is not None and rows["bayar2016-jpeg70"]["acc"] > rows["residual"]["acc"]
    for row in rows.values():
        # each test device's patches, and its false alarms and hits, add up to the model's
        devices = row["by_device"]
        assert sorted(devices) == sorted(table["test_devices"])
        for rate, count in (("fpr", "pristine"), ("tpr", "manipulated")):
            assert sum(device[count] for device in devices.values()) == row[count]
            found = sum(device[rate] * device[count] for device in devices.values() if device[count]) / row[count]
            assert abs(found - row[rate]) < 1e-9
    as_csv = runner.invoke(
        app,
        ["evaluate", str(sample_root), "-m", "residual", "--max-test-patches", "16", "--per-device", "--format", "csv"],
    )
    assert as_csv.exit_code == 0, as_csv.output
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [line["device"] for line in lines] == ["", *sorted(table["test_devices"])]
    assert [float(line["fpr"]) for line in lines[1:]] == [
        pytest.approx(rows["residual"]["by_device"][line["device"]]["fpr"]) for line in lines[1:]
    ]
    mixed = runner.invoke(app, ["evaluate", str(sample_root), "--model", "residual", "--recorded"])
    assert mixed.exit_code == 1 and "apply to checkpoints" in mixed.output
    twice = runner.invoke(app, ["evaluate", str(sample_root), "-m", "residual", "-m", "residual", "--json"])
    assert twice.exit_code == 1 and "two of the models are 'residual'" in twice.output and not twice.stdout.strip()


def _endless_loop_graph(path):
    """A detector whose logits come out of a Loop of 10^15 iterations: it never finishes a batch."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 128, 128])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    carried_in = helper.make_tensor_value_info("carried_in", TensorProto.FLOAT, None)
    carried_out = helper.make_tensor_value_info("carried_out", TensorProto.FLOAT, None)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["condition_in"], ["condition_out"]),
            helper.make_node("Identity", ["carried_in"], ["carried_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("condition_in", TensorProto.BOOL, []),
            carried_in,
        ],
        [helper.make_tensor_value_info("condition_out", TensorProto.BOOL, []), carried_out],
    )
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Slice", ["mean", "start", "end", "axis"], ["two"]),
        helper.make_node("Loop", ["trips", "true", "two"], ["logits"], body=body),
    ]
    constants = [
        helper.make_tensor("start", TensorProto.INT64, [1], [0]),
        helper.make_tensor("end", TensorProto.INT64, [1], [2]),
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        helper.make_tensor("trips", TensorProto.INT64, [], [10**15]),
        helper.make_tensor("true", TensorProto.BOOL, [], [True]),
    ]
    graph = helper.make_graph(nodes, "endless", [image], [logits], constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_a_graph_that_never_finishes_is_refused_in_time_and_sigterm_ends_a_registration(tmp_path):
    """Registration runs the graph in a child process with a time limit: a Loop of 10^15 iterations is refused
    after --timeout, and SIGTERM ends a registration at once; either way the zoo is as it was."""
    endless = tmp_path / "endless.onnx"
    _endless_loop_graph(endless)
    zoo = user_zoo_dir()
    command = [sys.executable, "-m", "cfzoo", "register", str(endless), "--id", "endless", "--task", "jpeg70"]
    started = time.monotonic()
    refused = subprocess.run(
        [*command, "--no-companion", "--timeout", "15"], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().endswith(
        "took more than 15 s (a loop that does not end, or a graph too large to check here); give it more with "
        "--timeout, or register it with --no-companion if the companion is the slow part"
    )
    assert time.monotonic() - started < 60
    before = _spawned_children()
    process = subprocess.Popen([*command, "--no-companion"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(10)  # in the graph's endless loop by now
    assert _spawned_children() - before, "the graph runs in a child process"
    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    assert time.monotonic() - stopped < 10
    assert not (zoo / "registry.json").exists() or "endless" not in (zoo / "registry.json").read_text()
    assert _spawned_children() <= before, "the child running the graph was killed with its parent"


def _spawned_children() -> set[str]:
    """The pids of processes started by multiprocessing's spawn, on this machine."""
    found = subprocess.run(["pgrep", "-f", "spawn_main"], capture_output=True, text=True)
    return set(found.stdout.split())


class Corpus(torch.nn.Module):
    """A small detector (NHWC in 0..1, one logit) whose middle block is one of the layers real detectors use."""

    def __init__(self, block: str):
        super().__init__()
        torch.manual_seed(3)
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.kind = block
        self.block = {
            "groupnorm": torch.nn.GroupNorm(4, 8),
            "layernorm": torch.nn.LayerNorm(8),  # over channels, channels last, as ConvNeXt
            "instancenorm": torch.nn.InstanceNorm2d(8, affine=True),
            "depthwise": torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.Conv2d(8, 8, 1)),
            "dilated": torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2),
            "silu-gelu": torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Conv2d(8, 8, 1), torch.nn.GELU()),
            "batchnorm": torch.nn.BatchNorm2d(8),
            "maxpool-ceil": torch.nn.MaxPool2d(3, stride=2, ceil_mode=True),
            "avgpool": torch.nn.AvgPool2d(2),
            "upsample-nearest": torch.nn.Upsample(scale_factor=2, mode="nearest"),
            "upsample-bilinear": torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            "attention": torch.nn.MultiheadAttention(8, 2, batch_first=True),
            "hardswish": torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Hardswish()),
            "squeeze-excitation": torch.nn.Sequential(
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Conv2d(8, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(2, 8, 1)
            ),
            "flatten-gemm": torch.nn.Sequential(torch.nn.AvgPool2d(16), torch.nn.Flatten(), torch.nn.Linear(128, 8)),
        }.get(block)
        self.head = torch.nn.Linear(8, 1)
        if block == "grid-sample":  # the 64 x 64 map after the stem, turned by 8 degrees
            rotation = torch.tensor([[[0.99, -0.14, 0.0], [0.14, 0.99, 0.0]]])
            self.register_buffer("grid", torch.nn.functional.affine_grid(rotation, [1, 8, 64, 64], align_corners=False))
        if block == "shared-weights":  # made last, so that the other blocks' random weights stay as they were
            # two convolutions with equal weights, which torch's exporter stores once and hands on through Identity
            # nodes (as in timm's xception41); onnx2torch reads a convolution's weights from initializers only
            convolution = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.block = torch.nn.Sequential(convolution, torch.nn.Conv2d(8, 8, 3, padding=1))
            self.block[1].load_state_dict(convolution.state_dict())

    def forward(self, pixels):
        x = torch.relu(self.stem(pixels.permute(0, 3, 1, 2)))
        if self.kind == "layernorm":
            x = self.block(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        elif self.kind == "squeeze-excitation":
            x = x * torch.sigmoid(self.block(x))
        elif self.kind == "flatten-gemm":  # a fixed spatial size: 64 x 64 after the stem, pooled to 4 x 4
            x = self.block(x)[:, :, None, None]
        elif self.kind == "l2-normalize":  # feature vectors scaled to unit length, as metric-learning heads do
            x = torch.nn.functional.normalize(x, dim=1)
        elif self.kind == "grid-sample":  # resampled on a fixed, slightly rotated grid, as a spatial transformer
            x = torch.nn.functional.grid_sample(x, self.grid.expand(x.shape[0], -1, -1, -1), align_corners=False)
        elif self.kind == "attention":  # self-attention over the 8 x 8 grid of pooled positions, as a ViT block
            tokens = torch.nn.functional.avg_pool2d(x, 8).flatten(2).transpose(1, 2)
            x = self.block(tokens, tokens, tokens, need_weights=False)[0].transpose(1, 2).unsqueeze(-1)
        else:
            x = self.block(x)
        return self.head(x.mean(dim=(2, 3)))


#: Each corpus detector is exported at its own opset, so that together they cover opsets 13 to 20 as torch's
#: exporter writes them (onnx2torch reads up to 17: newer graphs are converted down first).
CORPUS_OPSETS = {
    "groupnorm": 17,
    "layernorm": 18,
    "instancenorm": 17,
    "batchnorm": 14,
    "depthwise": 15,
    "dilated": 16,
    "silu-gelu": 13,
    "maxpool-ceil": 19,
    "avgpool": 20,
    "upsample-nearest": 13,
    "upsample-bilinear": 19,
    "hardswish": 14,
    "squeeze-excitation": 16,
    "flatten-gemm": 20,
    "shared-weights": 18,
    "attention": 17,
    "l2-normalize": 15,
}


@pytest.mark.parametrize("block", list(CORPUS_OPSETS))
def test_detectors_with_the_layers_real_ones_use_get_a_checked_companion_and_fall_to_pgd(tmp_path, compressed, block):
    """Exported by torch at its opset (13 to 20) with a dynamic batch, registered through the CLI: each gets a gradient
    companion that passes the finite-difference check, and PGD at eps 2 moves every patch towards pristine.
    (GroupNorm used to fail: "Could not guard on data-dependent expression Eq(u0, 1)".)"""
    with pytest.warns(DeprecationWarning):
        path = _export(Corpus(block), tmp_path / f"{block}.onnx", (2, 128, 128, 3), opset=CORPUS_OPSETS[block])
    adapter = ["--layout", "NHWC", "--input-range", "1", "--outputs", "one-logit"]
    # untrained, it scores about 0.5 everywhere: a low threshold makes every patch "manipulated", to be hidden
    result = _register(path, block, *adapter, "--threshold", "0.05", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["companion_finite_difference_error"] <= FD_TOLERANCE
    model = cfzoo.load_detector(block)
    patches = _tiles(compressed)[:4]
    before = model.predict_proba(patches)
    after = model.predict_proba(cfzoo.attack(model, patches, 2, method="pgd"))
    assert np.all(before > model.threshold) and np.all(after < before), (before, after)


@pytest.mark.parametrize("block", ["groupnorm", "attention"])
def test_graphs_from_torchs_default_exporter_get_a_checked_companion(tmp_path, compressed, block):
    """torch's default exporter (``dynamo=True`` since torch 2.9) writes opset 18 and on, with ``ReduceMean``'s
    ``noop_with_empty_axes``, reshapes with ``allowzero=1`` and targets as initializers; each used to stop
    registration (onnxruntime refused the graph brought down to opset 17; onnx2torch refused allowzero; the trace
    failed on GroupNorm's reshape)."""
    path = tmp_path / f"{block}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress and its notes about torch.export
        torch.onnx.export(
            Corpus(block).eval(),
            (torch.rand(2, 128, 128, 3),),
            str(path),
            input_names=["pixels"],
            output_names=["score"],
            dynamic_shapes={"pixels": {0: torch.export.Dim("n")}},
            dynamo=True,
        )
    result = _register(
        path, block, "--layout", "NHWC", "--input-range", "1", "--outputs", "one-logit", "--threshold", "0.05", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["companion_finite_difference_error"] <= FD_TOLERANCE
    model = cfzoo.load_detector(block)
    patches = _tiles(compressed)[:2]
    before = model.predict_proba(patches)
    assert np.all(model.predict_proba(cfzoo.attack(model, patches, 2, method="pgd")) < before)


@pytest.mark.parametrize(
    "starts, ends, axes, steps",
    [([1], [-1], [2], [1]), ([-3, 0], [2**62, 5], [3, 1], [2, 1]), ([-100], [100], [-1], [3]), ([4], [2], [0], [1])],
)
def test_slices_with_constant_bounds_cut_as_onnx_slice_does(starts, ends, axes, steps):
    """The converted network's slices by integers (negative bounds from the end, out-of-range bounds clamped, empty
    when the end comes first) against onnxruntime's Slice on the same tensor."""
    from cfzoo.export.converted import _StaticSlice
    from cfzoo.zoo.runtime import onnxruntime_module

    tensor = np.arange(4 * 5 * 6 * 7, dtype=np.float32).reshape(4, 5, 6, 7)
    constants = [np.array(values, dtype=np.int64) for values in (starts, ends, axes, steps)]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
        "slice",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, tensor.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            onnx.numpy_helper.from_array(value, name)
            for value, name in zip(constants, ("starts", "ends", "axes", "steps"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxruntime_module().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": tensor})[0]
    found = _StaticSlice(starts, ends, axes, steps)(torch.from_numpy(tensor)).numpy()
    assert found.shape == expected.shape and np.array_equal(found, expected)


def test_a_companion_that_cannot_be_made_is_refused_naming_the_operator_that_blocks_it(tmp_path):
    """A spatial transformer's ``GridSample`` is an operator onnx2torch has no converter for: no companion, and the
    refusal names the operator and says what to do instead."""
    with pytest.warns(DeprecationWarning):
        path = _export(Corpus("grid-sample"), tmp_path / "grid.onnx", (2, 128, 128, 3))
    result = _register(path, "grid", "--layout", "NHWC", "--input-range", "1", "--outputs", "one-logit")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        "onnx2torch cannot convert it for a gradient companion (it has no converter for GridSample (opset 17))"
        in result.stderr
    )
    assert result.stderr.strip().endswith(
        "register it with --no-companion and attack it with the gradient-free square, whose result is only an upper "
        "bound on its robustness"
    )
    bare = _register(path, "grid", "--layout", "NHWC", "--input-range", "1", "--outputs", "one-logit", "--no-companion")
    assert bare.exit_code == 0, bare.output


TORCH_FILE = """
import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.norm = torch.nn.GroupNorm(2, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, image):  # NCHW, 0..255, two logits: the contract's own layout
        return self.head(torch.relu(self.norm(self.conv(image / 255.0))).mean(dim=(2, 3)))


def load():
    return Tiny()
"""


def test_a_torch_module_registers_without_export_code(tmp_path, compressed):
    """From the command line, FILE.py:FACTORY; from Python, the module itself: cfzoo exports it, makes and checks
    its companion, and the registered model gives the module's own logits."""
    source = tmp_path / "mynet.py"
    source.write_text(TORCH_FILE)
    result = runner.invoke(
        app, ["register", "--torch", f"{source}:load", "--id", "mynet", "--task", "jpeg70", "--json"]
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert set(entry["files"]) == {"detector", "gradient"} and entry["training"]["registered_from"] == "Tiny.onnx"
    namespace = {}
    exec(TORCH_FILE, namespace)
    module = namespace["load"]().eval()
    patches = _tiles(compressed)[:3]
    with torch.no_grad():
        expected = module(torch.from_numpy(patches).permute(0, 3, 1, 2).float())
    probabilities = torch.softmax(expected, dim=1)[:, 1].numpy()
    model = cfzoo.load_detector("mynet")
    np.testing.assert_allclose(model.predict_proba(patches), probabilities, atol=1e-5)
    again = cfzoo.register(module, id="mynet-api", task="jpeg70")
    np.testing.assert_allclose(again.predict_proba(patches), probabilities, atol=1e-5)
    for spec, message in ((f"{source}", "give FILE.py:FACTORY"), (f"{source}:nothing", "defines no nothing")):
        refused = runner.invoke(app, ["register", "--torch", spec, "--id", "x", "--task", "jpeg70"])
        assert refused.exit_code == 1 and message in refused.output and "Traceback" not in refused.output
    both = runner.invoke(app, ["register", str(source), "--torch", f"{source}:load", "--id", "x", "--task", "jpeg70"])
    assert both.exit_code == 1 and "one of them" in both.output


class BatchDependent(torch.nn.Module):
    """A detector whose score of a patch depends on the other patches of its batch (it subtracts the batch mean,
    as a normalisation left in training mode would): attacks and detect batch patches, so it cannot be used."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(3, 2)

    def forward(self, pixels):
        means = pixels.mean(dim=(2, 3)) / 255.0
        return self.head(means - means.mean(dim=0, keepdim=True))


def test_a_detector_that_fails_the_conformance_check_is_refused_naming_the_check(tmp_path):
    with pytest.warns(DeprecationWarning):
        path = _export(BatchDependent(), tmp_path / "batchy.onnx", (2, 3, 128, 128))
    result = _register(path, "batchy", "--no-companion")
    assert result.exit_code == 1
    assert (
        "does not conform to the model contract: batch independence (a patch scores differently alone" in result.output
    )
    assert "nothing was registered" in result.output and "batchy" not in load_registry()
    # the same network in the contract's own names, checked by path
    contract = tmp_path / "batchy-contract.onnx"
    with pytest.warns(DeprecationWarning):
        torch.onnx.export(
            BatchDependent().eval(),
            (torch.rand(2, 3, 128, 128) * 255,),
            str(contract),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
            dynamo=False,
            opset_version=17,
        )
    checked = runner.invoke(app, ["check", str(contract), "--task", "jpeg70", "--no-companion", "--json"])
    assert checked.exit_code == 1, checked.output
    statuses = {item["name"]: item["status"] for item in json.loads(checked.stdout)["checks"]}
    assert statuses["batch independence"] == "fail" and statuses["companion gradient"] == "skipped"
