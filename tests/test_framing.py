"""The framing attack: every method of the battery pushes pristine patches towards "manipulated" (--goal frame), and
the robustness report, the one-image attack, the API and the model cards give the FPR it leaves."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

import cfzoo
from cfzoo.cards.model_cards import family_card
from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.experiments.robustness import WORST_CASE
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation
from cfzoo.ops.attacks.battery import run_attack
from cfzoo.ops.attacks.common import AttackSettings, AttackTarget, goal_margin
from cfzoo.ops.attacks.registry import attack_names, get_attack
from cfzoo.ops.scoring import manipulated_margin
from cfzoo.zoo.catalog import open_companion, open_detector
from cfzoo.zoo.registry import Registry, embedded_zoo_dir

MODELS = ("cozzolino2017-median3", "spam-median3", "cozzolino2017-median7")
runner = CliRunner()


def _tiles(image, count):
    return [image[row : row + 128, col : col + 128] for row in range(0, 384, 128) for col in range(0, 384, 128)][:count]


@pytest.fixture(scope="module")
def pairs():
    """(pristine, median3) tiles of three photos, two each, pair by pair the same place."""
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    pristine = np.stack([tile for photo in photos for tile in _tiles(photo, 2)])
    manipulated = np.stack([tile for photo in photos for tile in _tiles(apply_manipulation("median3", photo), 2)])
    return pristine, manipulated


def test_the_framing_margin_is_at_or_below_zero_exactly_where_the_detector_calls_manipulated():
    tiny = np.nextafter(0.0, 1.0)
    decision = np.array([-3.0, -tiny, -0.0, 0.0, tiny, 2.5, np.inf, -np.inf])
    assert np.array_equal(goal_margin(decision, "frame") <= 0, decision > 0)
    assert goal_margin(decision, "hide") is decision
    with pytest.raises(CfzooError, match=r"unknown goal 'expose'; choose hide .* or frame"):
        AttackSettings(1, "pgd", goal="expose")


@pytest.mark.parametrize("method", ["fgsm", "ifgsm", "pgd", "apgd", "deepfool"])
def test_every_gradient_attack_frames_pristine_patches_and_hides_manipulated_ones(models, pairs, method):
    pristine, manipulated = pairs
    model = cfzoo.load_detector("cozzolino2017-median3")
    before = manipulated_margin(model._detector, pristine)
    framed = cfzoo.attack(model, pristine, 2, method=method, goal="frame")
    after = manipulated_margin(model._detector, framed)
    assert np.abs(framed.astype(np.int16) - pristine).max() <= 2
    assert (after > 0).mean() > (before > 0).mean() and (after > 0).all()
    if method == "fgsm":
        return  # one step of 2 overshoots when hiding from this detector (its margin rises; so before this change)
    # the same method with the default goal still hides: the goal, not the method, sets the direction
    hidden = cfzoo.attack(model, manipulated, 2, method=method)
    assert manipulated_margin(model._detector, hidden).mean() < manipulated_margin(model._detector, manipulated).mean()


def test_square_and_the_spam_feature_descents_frame_towards_manipulated(models, pairs):
    pristine, manipulated = pairs
    spam = cfzoo.load_detector("spam-median3")
    before = manipulated_margin(spam._detector, pristine)
    for method, options in (("square", {"queries": 50}), ("spam-close", {}), ("spam-prist", {"partners": manipulated})):
        framed = cfzoo.attack(spam, pristine, 2, method=method, goal="frame", **options)
        after = manipulated_margin(spam._detector, framed)
        assert np.abs(framed.astype(np.int16) - pristine).max() <= 2, method
        # no patch the detector flagged is unflagged, and the margins rise towards "manipulated"
        assert ((after > 0) >= (before > 0)).all() and after.sum() > before.sum(), method
    # spam-prist frames towards each pristine patch's manipulated partner: more of them flagged than before
    assert (after > 0).mean() > (before > 0).mean()


def _robustness(*arguments):
    return runner.invoke(app, ["robustness", *arguments])


@pytest.fixture(scope="module")
def framing_report(tmp_path_factory, sample_root):
    out = tmp_path_factory.mktemp("framing") / "report"
    result = _robustness(
        *("-T", "cozzolino2017", "-t", "median7", "--goal", "frame", "--eps", "1", "--eps", "2"),
        *("-a", "fgsm", "-a", "pgd", "-a", "square", "--queries", "12", "--max-patches", "8", "--recompress", "90"),
        *("--data", str(sample_root), "--out", str(out), "--format", "json"),
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_a_framing_report_gives_the_fpr_after_each_attack_and_in_the_worst_case(framing_report, conforms):
    out, report = framing_report
    conforms(report, "robustness")
    assert report["goal"] == "frame"
    rows = {(row["eps"], row["attack"]): row for row in report["rows"]}
    unattacked = rows[0, "none"]["flagged_after"]
    for eps in (1, 2):
        worst = rows[eps, WORST_CASE]["flagged_after"]
        # framing raises the FPR: the worst case is the highest, every attack's envelope at least the unattacked
        assert worst >= max(rows[eps, attack]["flagged_after"] for attack in ("fgsm", "pgd", "square")) >= unattacked
        low, high = rows[eps, WORST_CASE]["flagged_after_interval"]
        assert low <= worst <= high
    assert rows[2, WORST_CASE]["flagged_after"] >= rows[1, WORST_CASE]["flagged_after"] > unattacked
    # the ranking puts the attacked pristine patches against as many manipulated ones: framing lowers the AUC
    assert rows[1, WORST_CASE]["compared"] == rows[1, WORST_CASE]["patches"] == 8
    assert rows[1, WORST_CASE]["ranking"]["auc"] < rows[0, "none"]["ranking"]["auc"]
    markdown = (out / "ROBUSTNESS.md").read_text()
    assert "(frame): FPR (percent) on pristine test patches" in markdown
    assert "attacked pristine patches against as many manipulated test patches" in markdown
    csv_header = (out / "robustness.csv").read_text().splitlines()[0].split(",")
    assert csv_header[:2] == ["goal", "task"] and "flagged_jpeg90" in csv_header


def test_the_framing_figures_go_into_the_model_card_beside_the_hiding_ones(framing_report, tmp_path):
    out, report = framing_report
    registry_path = tmp_path / "registry.json"
    registry_path.write_text((embedded_zoo_dir() / "registry.json").read_text())
    tool = Path(__file__).resolve().parent.parent / "tools" / "record_robustness.py"
    done = subprocess.run(
        [sys.executable, str(tool), str(out / "robustness.json"), "--registry", str(registry_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    registry = Registry.read(registry_path)
    recorded = registry.get("cozzolino2017-median7").metrics
    worst = next(row for row in report["rows"] if row["eps"] == 1 and row["attack"] == WORST_CASE)
    assert recorded["framing_eps1"]["worst_case_fpr"] == worst["flagged_after"]
    # the hiding figures recorded before stay as they were
    embedded = Registry.read(embedded_zoo_dir() / "registry.json").get("cozzolino2017-median7").metrics
    assert recorded["robustness_eps1"] == embedded["robustness_eps1"]
    line = next(
        line for line in family_card("cozzolino2017", registry).text.splitlines() if "`cozzolino2017-median7` |" in line
    )
    assert line.split(" | ")[8] == f"{worst['flagged_after']:.2f} |"


def test_attack_image_frames_an_untouched_photo(models, tmp_path, conforms):
    photo = data.astronaut()[:200, :256]
    Image.fromarray(photo).save(tmp_path / "untouched.png")
    out = tmp_path / "framed.png"
    result = runner.invoke(
        app,
        [
            "attack",
            str(tmp_path / "untouched.png"),
            *("--goal", "frame", "--target", "cozzolino2017", "--task", "median3", "--method", "pgd", "--eps", "2"),
            *("--out", str(out), "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    conforms(summary, "attack-image")
    shares = summary["detect_grid_called_manipulated"]["cozzolino2017"]
    assert summary["goal"] == "frame" and shares["after"] > shares["before"] and shares["after"] == 100.0
    assert np.abs(read_rgb(out).astype(np.int16) - photo).max() == 2


def test_framing_over_a_dataset_points_to_robustness(sample_root):
    result = runner.invoke(
        app, ["attack", "--target", "cozzolino2017", "-t", "median3", "--goal", "frame", "--data", str(sample_root)]
    )
    assert result.exit_code == 1
    assert "cfzoo robustness --goal frame" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("method", attack_names(warm_starts=True))
def test_a_warm_started_attack_at_a_larger_eps_is_never_worse_than_its_start(models, pairs, method):
    """Framing blurred-looking patches from a random start at eps 4 fails where eps 1 succeeded (docs/robustness.md);
    started from eps 1's result, every attack that declares warm starts keeps it or does better, inside eps 4."""
    pristine, _ = pairs
    target = AttackTarget.of(open_detector("cozzolino2017-median3"), open_companion("cozzolino2017-median3"))
    budget = {"queries": 20} if "queries" in get_attack(method).options else {}
    settings = AttackSettings(1, method, goal="frame", batch_size=4, **budget)
    first = run_attack(settings, target, pristine)
    framing = replace(target, goal="frame")
    at_start = framing.margin(first.patches)
    larger = run_attack(replace(settings, eps=4), target, pristine, start=first.patches)
    after = framing.margin(larger.patches)
    assert np.all(after <= at_start), (at_start, after)
    assert np.abs(larger.patches.astype(np.int16) - pristine).max() <= 4
