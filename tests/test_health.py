"""Health flags of a robustness evaluation: each raised where its cause is real, and silent where it is not."""

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.experiments.health import battery_flags, check_target, run_flags, stuck_patches, zero_gradient_flags
from cfzoo.images import save_png
from cfzoo.ops.attacks import registry
from cfzoo.ops.attacks.common import AttackResult, AttackTarget
from cfzoo.ops.attacks.registry import get_attack
from cfzoo.results import HEALTH_FLAGS, RankingMetrics, RobustnessRow
from cfzoo.zoo.catalog import open_companion, open_detector
from cfzoo.zoo.resolve import ResolvedFile
from cfzoo.zoo.runtime import GradientModel

runner = CliRunner()
MODELS = ["spam-jpeg70", "bayar2016-jpeg70"]


def _lazy(settings, target, patches, call):
    """A planted broken attack: PGD at eps 1, and at a larger eps nothing at all."""
    if settings.eps == 1:
        return get_attack("pgd").run(settings, target, patches, call)
    ones = np.ones(len(patches), dtype=np.int64)
    return AttackResult(patches.copy(), ones, np.zeros(len(patches), dtype=bool), ones)


def test_an_attack_that_does_worse_at_a_larger_eps_is_flagged_and_its_rows_stay_envelopes(
    models, sample_root, monkeypatch
):
    """A planted attack that gives up above eps 1 is flagged, and its row keeps eps 1's best; FGSM, whose one step
    of 4 overshoots where a step of 1 fooled SPAM+SVM, is not an attack that searches and is not flagged."""
    pgd = get_attack("pgd")
    monkeypatch.setitem(registry._ATTACKS, "lazy", replace(pgd, name="lazy", run=_lazy, options={}))
    battery = ["robustness", "-T", "spam", "-t", "jpeg70", "-a", "lazy", "-a", "fgsm", "--eps", "1", "--eps", "4"]
    battery += ["--max-patches", "12", "--recompress", "90", "--data", str(sample_root)]
    result = runner.invoke(app, [*battery, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    flags = [flag for flag in report["health"] if flag["flag"] == "not-monotone"]
    assert [(flag["attack"], flag["eps"], flag["task"]) for flag in flags] == [("lazy", 4, "jpeg70")]
    for attack in ("lazy", "fgsm"):
        by_eps = {row["eps"]: row for row in report["rows"] if row["attack"] == attack}
        assert by_eps[4]["flagged_after"] <= by_eps[1]["flagged_after"] < by_eps[1]["flagged_before"]
    for row in report["rows"]:
        low, high = row["flagged_after_interval"]
        assert low <= row["flagged_after"] <= high and row["compared"] == row["patches"] == 12
        assert 0 <= row["ranking"]["auc"] <= 1
    clean = next(row for row in report["rows"] if row["attack"] == "none")
    lazy_eps1 = next(row for row in report["rows"] if row["attack"] == "lazy" and row["eps"] == 1)
    assert clean["ranking"]["auc"] >= lazy_eps1["ranking"]["auc"]  # attacking hurts the ranking too
    table = runner.invoke(app, battery)
    assert table.exit_code == 0 and table.stdout.startswith("FLAGGED: this evaluation may be unreliable (not-monotone")
    assert "not-monotone: jpeg70, eps 4, lazy:" in table.stdout


def _row(attack: str, eps: int, detected: int, patches: int = 40) -> RobustnessRow:
    from cfzoo.metrics import wilson_interval

    share = 100.0 * detected / patches
    return RobustnessRow(
        task="jpeg70",
        model="m",
        patches=patches,
        flagged_before=100.0,
        flagged_before_interval=[91.2, 100.0],
        eps=eps,
        attack=attack,
        flagged_after=share,
        flagged_after_interval=list(wilson_interval(detected, patches)),
        compared=patches,
        ranking=RankingMetrics(
            auc=0.5,
            auc_interval=[0.4, 0.6],
            average_precision=0.5,
            eer=50.0,
            eer_interval=[40.0, 60.0],
            tpr_at_fpr_1=1.0,
            tpr_at_fpr_5=5.0,
        ),
        psnr_db=None,
        mean_queries=None,
        seconds=0.0,
        recompressed={},
    )


def test_a_gradient_free_attack_beating_every_gradient_attack_is_flagged_only_beyond_the_intervals():
    masked = [_row("pgd", 1, 20), _row("fgsm", 1, 30), _row("square", 1, 0), _row("worst-case", 1, 0)]
    [flag] = battery_flags("jpeg70", masked)
    assert flag.flag == "gradient-free-beats-gradient" and flag.attack == "square" and "pgd" in flag.detail
    close = [_row("pgd", 1, 3), _row("square", 1, 1)]  # 2.5% against 7.5% of 40: within the intervals
    assert battery_flags("jpeg70", close) == []


def test_zero_gradients_are_flagged_only_where_every_gradient_attack_was_stuck():
    def stuck(*rows: int) -> np.ndarray:
        mask = np.zeros(40, dtype=bool)
        mask[list(rows)] = True
        return mask

    assert zero_gradient_flags("median7", 1, {"pgd": stuck(0, 1)}) == []  # two of 40: a few
    [flag] = zero_gradient_flags("median7", 1, {"fgsm": stuck(*range(5)), "square": stuck()})
    assert (flag.flag, flag.eps, flag.attack) == ("zero-gradients", 1, "fgsm") and flag.detail.startswith("5 of 40")
    # FGSM stuck where PGD's random start found a gradient: the battery attacked those patches
    assert zero_gradient_flags("median7", 1, {"fgsm": stuck(*range(13)), "pgd": stuck(3)}) == []
    [flag] = zero_gradient_flags("median7", 2, {"fgsm": stuck(*range(13)), "pgd": stuck(*range(2, 9))})
    assert flag.detail.startswith("7 of 40") and "(fgsm, pgd)" in flag.detail and flag.attack is None
    assert zero_gradient_flags("median7", 1, {"square": stuck(*range(40))}) == []  # no gradient, no flag
    margins = np.array([1.0, np.nan, -1.0])
    result = AttackResult(np.zeros((3, 1, 1, 3), np.uint8), np.ones(3), np.array([False, False, True]), np.ones(3))
    assert stuck_patches(margins, result).tolist() == [False, True, True]


def test_an_attack_that_searches_and_leaves_more_patches_held_at_a_larger_eps_is_flagged():
    detected = np.r_[np.ones(11), -np.ones(29)]  # 11 held at this eps
    assert run_flags("median7", 2, "square", detected, 11) == []
    assert run_flags("median7", 2, "square", detected, 9) == []  # two more: a random start's wobble
    [flag] = run_flags("median7", 2, "square", detected, 8)
    assert flag.flag == "not-monotone" and flag.eps == 2 and "3 more than at a smaller eps" in flag.detail
    assert run_flags("median7", 2, "fgsm", detected, 0) == []  # a fixed step, not a search
    assert run_flags("median7", 1, "square", detected, None) == []  # nothing smaller to compare with


def _graph(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


IMAGE = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 128, 128])
LOGITS = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])


def _mean_score_nodes(sign: float, noise: bool = False):
    """logits = [0, sign * (mean brightness / 255 - 0.5) * 20], plus uniform noise when asked."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["mean", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["raw"]),
    ]
    initializers = [
        helper.make_tensor("half", TensorProto.FLOAT, [], [127.5]),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [sign * 20.0 / 255.0]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    if noise:
        nodes += [
            helper.make_node("RandomUniformLike", ["raw"], ["jitter"]),
            helper.make_node("Add", ["raw", "jitter"], ["score"]),
        ]
    else:
        nodes += [helper.make_node("Identity", ["raw"], ["score"])]
    nodes += [
        helper.make_node("Mul", ["score", "zero"], ["nothing"]),
        helper.make_node("Unsqueeze", ["nothing", "axis"], ["first"]),
        helper.make_node("Unsqueeze", ["score", "axis"], ["second"]),
        helper.make_node("Concat", ["first", "second"], ["logits"], axis=1),
    ]
    initializers.append(helper.make_tensor("axis", TensorProto.INT64, [1], [1]))
    return nodes, initializers


@pytest.fixture
def brightness_patches():
    return np.stack([np.full((128, 128, 3), level, np.uint8) for level in np.linspace(20, 235, 8).astype(int)])


def test_a_detector_that_is_not_deterministic_is_flagged(tmp_path, brightness_patches):
    nodes, initializers = _mean_score_nodes(1.0, noise=True)
    _graph(tmp_path / "noisy.onnx", nodes, [IMAGE], [LOGITS], initializers)
    target = AttackTarget.of(open_detector(tmp_path / "noisy.onnx", task="jpeg70", providers="cpu"))
    flags = check_target("jpeg70", target, brightness_patches, target.margin(brightness_patches), ["square"])
    assert [flag.flag for flag in flags] == ["not-deterministic"]
    steady_nodes, steady_initializers = _mean_score_nodes(1.0)
    _graph(tmp_path / "steady.onnx", steady_nodes, [IMAGE], [LOGITS], steady_initializers)
    steady = AttackTarget.of(open_detector(tmp_path / "steady.onnx", task="jpeg70", providers="cpu"))
    assert check_target("jpeg70", steady, brightness_patches, steady.margin(brightness_patches), ["square"]) == []


def test_a_companion_whose_scores_do_not_follow_the_detector_is_flagged(tmp_path, brightness_patches):
    nodes, initializers = _mean_score_nodes(1.0)
    _graph(tmp_path / "bright.onnx", nodes, [IMAGE], [LOGITS], initializers)
    detector = open_detector(tmp_path / "bright.onnx", task="jpeg70", providers="cpu")
    # a "companion" that scores the opposite way (its gradient output is the image itself: any tensor will do)
    flipped, flipped_initializers = _mean_score_nodes(-1.0)
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])
    grad = helper.make_tensor_value_info("grad", TensorProto.FLOAT, ["batch", 3, 128, 128])
    flipped.append(helper.make_node("Identity", ["image"], ["grad"]))
    flipped.append(helper.make_node("Cast", ["label"], ["unused"], to=TensorProto.FLOAT))
    _graph(tmp_path / "wrong.grad.onnx", flipped, [IMAGE, label], [LOGITS, grad], flipped_initializers)
    wrong = GradientModel(detector.entry, ResolvedFile(tmp_path / "wrong.grad.onnx", "path"), ("CPUExecutionProvider",))
    target = AttackTarget((detector,), (wrong,))
    [flag] = check_target("jpeg70", target, brightness_patches, target.margin(brightness_patches), ["pgd"])
    assert flag.flag == "companion-disagrees" and "-1.00" in flag.detail
    assert flag.flag in HEALTH_FLAGS
    # a shipped detector and its own companion agree
    shipped = AttackTarget.of(
        open_detector("bayar2016-jpeg70", providers="cpu"), open_companion("bayar2016-jpeg70", providers="cpu")
    )
    assert check_target("jpeg70", shipped, brightness_patches, shipped.margin(brightness_patches), ["pgd"]) == []


def test_a_detector_whose_score_is_not_a_number_is_refused_at_registration_and_never_judges(
    tmp_path, brightness_patches
):
    """A graph whose output is NaN (a log of a negative number) used to register and call everything pristine."""
    nodes, initializers = _mean_score_nodes(1.0)
    nodes[-1:] = [
        helper.make_node("Sub", ["nothing", "one"], ["negative"]),  # -1 everywhere
        helper.make_node("Log", ["negative"], ["nan"]),
        helper.make_node("Unsqueeze", ["nan", "axis"], ["broken"]),
        helper.make_node("Concat", ["first", "broken"], ["logits"], axis=1),
    ]
    initializers.append(helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]))
    _graph(tmp_path / "nan.onnx", nodes, [IMAGE], [LOGITS], initializers)
    registered = runner.invoke(app, ["register", str(tmp_path / "nan.onnx"), "--id", "nan", "--task", "jpeg70"])
    assert registered.exit_code == 1 and "its output is NaN or infinite" in registered.output
    assert "Traceback" not in registered.output
    detector = open_detector(tmp_path / "nan.onnx", task="jpeg70", providers="cpu")  # as a file, unregistered
    with pytest.raises(CfzooError, match=r"nan gave a score that is not a number .* on 8 of 8 patches"):
        detector.probability(brightness_patches.transpose(0, 3, 1, 2).astype(np.float32))
    image = tmp_path / "gray.png"
    save_png(brightness_patches[3], image)
    detected = runner.invoke(app, ["detect", str(image), "--model", str(tmp_path / "nan.onnx"), "-t", "jpeg70"])
    assert detected.exit_code == 1 and "not a number" in detected.output and "pristine" not in detected.output


def test_a_companion_beside_a_detector_that_does_not_say_whose_it_is_must_give_its_logits(tmp_path):
    """Without cfzoo's metadata, x.grad.onnx beside x.onnx is checked numerically: another model's companion (here
    one that scores the opposite way) is refused in one line; the detector's own is taken."""
    nodes, initializers = _mean_score_nodes(1.0)
    _graph(tmp_path / "bright.onnx", nodes, [IMAGE], [LOGITS], initializers)
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])
    grad = helper.make_tensor_value_info("grad", TensorProto.FLOAT, ["batch", 3, 128, 128])
    for sign, name in ((-1.0, "other"), (1.0, "own")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "bright.onnx").write_bytes((tmp_path / "bright.onnx").read_bytes())
        companion, companion_initializers = _mean_score_nodes(sign)
        companion.append(helper.make_node("Identity", ["image"], ["grad"]))
        companion.append(helper.make_node("Cast", ["label"], ["unused"], to=TensorProto.FLOAT))
        _graph(folder / "bright.grad.onnx", companion, [IMAGE, label], [LOGITS, grad], companion_initializers)
    with pytest.raises(CfzooError, match=r"does not say whose companion it is, and its logits are not bright.onnx's"):
        open_companion(open_detector(tmp_path / "other" / "bright.onnx", task="jpeg70", providers="cpu"))
    refused = runner.invoke(
        app, ["attack", "--target", str(tmp_path / "other" / "bright.onnx"), "--task", "jpeg70", "--method", "pgd"]
    )
    assert refused.exit_code == 1 and "its logits are not bright.onnx's" in refused.output
    assert open_companion(
        open_detector(tmp_path / "own" / "bright.onnx", task="jpeg70", providers="cpu")
    ).path.name == ("bright.grad.onnx")
