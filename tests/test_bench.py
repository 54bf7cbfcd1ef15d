"""`cfzoo bench`: a registered third-party detector and a zoo model benched under the real protocol, one entry each,
and the leaderboard over them, its HTML page sorted in a real headless Chromium."""

import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.experiments.bench import BENCH_PROTOCOL, board, read_entries, write_bench_folder
from cfzoo.results import BenchEntry

MODELS = ("bayar2016-jpeg70",)
runner = CliRunner()


class Tiny(torch.nn.Module):
    """A third party's small detector: NCHW 0..255, two logits; tanh keeps finite differences smooth."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, pixels):
        return self.head(torch.tanh(self.conv(pixels / 255.0 - 0.5)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def benched(tmp_path_factory, sample_root):
    """The board folder of `cfzoo bench tiny bayar2016-jpeg70` and the JSON it printed (a user zoo of its own)."""
    folder = tmp_path_factory.mktemp("bench")
    onnx_path = folder / "tiny.onnx"
    with pytest.warns(DeprecationWarning):  # torch's TorchScript exporter, as third parties still use it
        torch.onnx.export(
            Tiny().eval(),
            (torch.rand(2, 3, 128, 128) * 255,),
            str(onnx_path),
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}},
            dynamo=False,
            opset_version=17,
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CFZOO_HOME", str(folder / "home"))
        registered = runner.invoke(app, ["register", str(onnx_path), "--id", "tiny", "--task", "jpeg70"])
        assert registered.exit_code == 0, registered.output
        out = folder / "board"
        result = runner.invoke(
            app,
            ["bench", "tiny", "bayar2016-jpeg70", "--data", str(sample_root), "--out", str(out), "--format", "json"],
        )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_every_model_gets_one_entry_under_the_protocol(models, benched, conforms):
    out, printed = benched
    conforms(printed, "bench")
    assert printed == json.loads((out / "leaderboard.json").read_text())
    assert printed["protocol"] == BENCH_PROTOCOL.to_json() and BENCH_PROTOCOL.patches == 40
    entries = {entry["model"]: entry for entry in printed["entries"]}
    assert set(entries) == {"tiny", "bayar2016-jpeg70"}
    assert sorted(path.name for path in (out / "entries").iterdir()) == ["bayar2016-jpeg70.json", "tiny.json"]
    for model, entry in entries.items():
        conforms(entry, "bench-entry")
        assert entry == json.loads((out / "entries" / f"{model}.json").read_text())
        assert entry["protocol"] == BENCH_PROTOCOL.version and entry["patches"] == 40 and entry["task"] == "jpeg70"
        tpr, fpr = entry["robust_tpr"], entry["robust_fpr"]
        # worst cases are envelopes: hiding never gets easier to resist, framing never harder, as eps grows
        assert entry["clean_tpr"] >= tpr["1"] >= tpr["2"] >= tpr["4"]
        assert entry["clean_fpr"] <= fpr["1"] <= fpr["2"] <= fpr["4"]
        for eps in ("1", "2", "4"):
            low, high = entry["robust_tpr_interval"][eps]
            assert low <= tpr[eps] <= high
        assert entry["robust_balanced_accuracy"] == pytest.approx((tpr["1"] + 100 - fpr["1"]) / 2)
        assert entry["unreliable"] == bool(entry["health"]) and len(entry["health_goals"]) == len(entry["health"])
        assert entry["forward_passes"] > 1 and entry["seconds"] > 0
        assert entry["test_devices"] == printed["entries"][0]["test_devices"]
    assert entries["tiny"]["source"] == "registered" and entries["tiny"]["family"] == "external"
    assert entries["tiny"]["training_devices"] == [] and entries["tiny"]["extra_data"] is None
    zoo = entries["bayar2016-jpeg70"]
    # trained on the camera devices, benched on scikit-image's photos: data beyond the protocol's training devices
    assert zoo["source"] == "zoo" and zoo["training_devices"] and zoo["extra_data"] is True
    # it finds JPEG on clean patches (measured 90%), and a competent attacker hides it at eps 1
    assert zoo["clean_tpr"] >= 85 and zoo["robust_tpr"]["1"] < 10
    ranked = [entry["robust_balanced_accuracy"] for entry in printed["entries"]]
    assert ranked == sorted(ranked, reverse=True)
    markdown = (out / "LEADERBOARD.md").read_text()
    assert markdown.index(f"`{printed['entries'][0]['model']}`") < markdown.index(f"`{printed['entries'][1]['model']}`")


def test_the_leaderboard_page_sorts_by_a_column_in_chromium(models, benched, headless):
    out, printed = benched
    page = out / "leaderboard.html"
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page.read_text()), "the page fetches nothing"

    def models_shown(fragment=""):
        dumped = headless("--dump-dom", page.as_uri() + fragment)
        assert dumped.returncode == 0, dumped.stderr
        return re.findall(r'<td class="text model">([^<]+)</td>', dumped.stdout)

    by_rank = [entry["model"] for entry in printed["entries"]]
    assert models_shown() == by_rank
    clean_fpr = {entry["model"]: entry["clean_fpr"] for entry in printed["entries"]}
    # column 6 is the clean FPR: sorted both ways on load, as a click on its header sorts it
    assert models_shown("#sort=6") == sorted(by_rank, key=lambda model: (clean_fpr[model], by_rank.index(model)))
    descending = models_shown("#sort=-6")
    assert [clean_fpr[model] for model in descending] == sorted(clean_fpr.values(), reverse=True)


def test_reports_that_are_not_the_protocols_are_refused_in_one_line(models, sample_root, tmp_path):
    paths = []
    for goal in ("hide", "frame"):
        result = runner.invoke(
            app,
            [
                *("robustness", "-T", "bayar2016-jpeg70", "--goal", goal, "-a", "fgsm", "--eps", "1"),
                *("--max-patches", "4", "--data", str(sample_root), "--format", "json"),
            ],
        )
        assert result.exit_code == 0, result.output
        paths.append(tmp_path / f"{goal}.json")
        paths[-1].write_text(result.stdout)
    data = ["--data", str(sample_root)]
    elsewhere = runner.invoke(app, ["bench", "--reports", str(paths[0]), "--reports", str(paths[1])])
    assert elsewhere.exit_code == 1 and "measured another data folder than --data" in elsewhere.output
    refused = runner.invoke(app, ["bench", *data, "--reports", str(paths[0]), "--reports", str(paths[1])])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    expected = f"the hide report was not run with benchmark protocol {BENCH_PROTOCOL.version}: patches per task 4"
    assert f"{expected} (protocol: 40)" in refused.output
    # a report whose attacks did not warm-start (protocol 1's) is not protocol 2's
    assert f"warm starts [] (protocol: {BENCH_PROTOCOL.warm_starts})" in refused.output
    unpaired = runner.invoke(app, ["bench", *data, "--reports", str(paths[0])])
    assert "--reports takes pairs" in unpaired.output and unpaired.exit_code == 1
    damaged = tmp_path / "damaged.json"
    damaged.write_text(paths[0].read_text()[:100])
    broken = runner.invoke(app, ["bench", *data, "--reports", str(damaged), "--reports", str(paths[1])])
    assert broken.exit_code == 1 and f"{damaged} is not a cfzoo robustness report" in broken.output


def test_entries_of_another_protocol_are_left_out_of_the_board_and_named(models, benched, tmp_path):
    out, printed = benched
    folder = tmp_path / "board"
    (folder / "entries").mkdir(parents=True)
    old = {**printed["entries"][0], "protocol": 0, "model": "old-model"}
    (folder / "entries" / "old-model.json").write_text(json.dumps(old))
    (folder / "entries" / "notes.json").write_text("{}")
    current = [BenchEntry.model_validate(entry) for entry in printed["entries"]]
    leaderboard, skipped = write_bench_folder(folder, current)
    assert [entry.model for entry in leaderboard.entries] == [entry.model for entry in board(current).entries]
    expected = f"old-model.json: protocol 0, not {BENCH_PROTOCOL.version}; bench the model again"
    assert any(expected in line for line in skipped)
    assert any("notes.json: not a bench entry" in line for line in skipped)
    assert len(read_entries(folder)[0]) == len(current) and np.isfinite(leaderboard.entries[0].forward_passes)
