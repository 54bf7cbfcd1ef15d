"""tools/gpu_train.py: what trains on a lent GPU machine comes back as checkpoints that load and score alike."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cfzoo.data import split_devices  # noqa: E402
from cfzoo.families import load_checkpoint  # noqa: E402

TOOL = Path(__file__).resolve().parent.parent / "tools" / "gpu_train.py"


def test_int8_packing_keeps_each_weight_within_half_a_step_of_its_channel_scale(load_tool):
    tool = load_tool("gpu_train")
    generator = torch.Generator().manual_seed(0)
    state = {
        "conv.weight": torch.randn(16, 8, 3, 3, generator=generator) * torch.linspace(0.01, 3.0, 16).view(16, 1, 1, 1),
        "fc.weight": torch.randn(2, 64, generator=generator),
        "bn.running_var": torch.rand(16, generator=generator),
        "bn.num_batches_tracked": torch.tensor(7),
    }
    packed = tool.quantise(state)
    assert packed["conv.weight.int8"].dtype == torch.int8 and "conv.weight" not in packed
    assert torch.equal(packed["bn.running_var"], state["bn.running_var"])  # rank 1 travels as it is
    unpacked = tool.dequantise(packed)
    assert set(unpacked) == set(state)
    for name in ("conv.weight", "fc.weight"):
        step = packed[f"{name}.scale"].view(-1, *([1] * (state[name].ndim - 1)))
        error = (unpacked[name] - state[name]).abs()
        assert bool((error <= step / 2 + 1e-6).all())
        assert float(error.max()) > 0  # it is lossy: the record must say so
    # a small channel keeps its own fine scale instead of the tensor's largest
    assert float(packed["conv.weight.scale"][0]) < float(packed["conv.weight.scale"][-1]) / 100


def test_train_on_the_train_photos_then_unpack_gives_checkpoints_that_evaluate(sample_root, tmp_path):
    from typer.testing import CliRunner

    from cfzoo.cli import app

    test_device = split_devices([path.name for path in sample_root.iterdir() if path.is_dir()], seed=0).test[0]
    train_photos = tmp_path / "train-photos"
    shutil.copytree(sample_root, train_photos, ignore=shutil.ignore_patterns(test_device))
    work = tmp_path / "work"
    command = [
        sys.executable,
        str(TOOL),
        "train",
        "--data",
        str(train_photos),
        "--test-device",
        test_device,
        "--work",
        str(work),
        "--tasks",
        "median3",
        "--xception-steps",
        "2",
        "--xception-batch",
        "4",
        "--bayar",
        "long:0",
        "--bayar-steps",
        "3",
        "--bayar-batch",
        "8",
        "--check-patches",
        "32",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "2 of 2 models" in finished.stdout

    out = tmp_path / "unpacked"
    unpacked = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "unpack",
            "--chunks",
            *map(str, sorted((work / "chunks").iterdir())),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unpacked.returncode == 0, unpacked.stderr
    report = json.loads((out / "packing_report.json").read_text())
    assert report["xception-median3"]["patches"] == 32

    record, network = load_checkpoint(out / "xception", "xception-median3")
    assert (
        "int8" in record["weights_transport"] and record["metrics"] == {} and record["split"]["test"] == [test_device]
    )
    _, trained = load_checkpoint(work / "xception", "xception-median3")
    for name, tensor in trained.state_dict().items():
        assert torch.allclose(
            network.state_dict()[name].float(), tensor.float(), atol=float(tensor.float().abs().max()) / 127
        )
    _, bayar = load_checkpoint(out / "bayar2016-long", "bayar2016-median3")  # float32 travels unchanged
    _, bayar_trained = load_checkpoint(work / "bayar2016-long", "bayar2016-median3")
    assert all(torch.equal(bayar.state_dict()[name], tensor) for name, tensor in bayar_trained.state_dict().items())

    scored = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(sample_root),
            "--checkpoints",
            str(out / "bayar2016-long"),
            "--save-metrics",
            "--json",
            "--max-test-patches",
            "40",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert scored.exit_code == 0, scored.output
    row = json.loads(scored.stdout)["rows"][0]
    saved = json.loads((out / "bayar2016-long" / "bayar2016-median3.json").read_text())
    assert saved["metrics"]["test"]["acc"] == row["acc"] and 0 <= row["acc"] <= 100
    assert np.isfinite(row["fpr"])
