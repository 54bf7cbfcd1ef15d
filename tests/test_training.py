"""Training: each family learns on scikit-image photos; Cozzolino2017's hard network is SPAM exactly."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cfzoo.data import CameraDataset, PatchSetSpec, build_patch_set, split_devices  # noqa: E402
from cfzoo.errors import CfzooError  # noqa: E402
from cfzoo.families import get_family, load_checkpoint, train_detector  # noqa: E402
from cfzoo.training.adversarial import AdversarialTraining  # noqa: E402
from cfzoo.training.cozzolino import Cozzolino2017  # noqa: E402
from cfzoo.training.loop import (  # noqa: E402
    NetworkSchedule,
    Snapshots,
    dihedral_variants,
    manipulated_probability,
    to_tensor,
    train_network,
    with_pristine_noise,
)
from cfzoo.training.models import Bayar2016, ConstrainedConv2d  # noqa: E402
from cfzoo.training.run import TrainingPlan  # noqa: E402
from cfzoo.training.spam import spam_features  # noqa: E402
from cfzoo.training.svm import fit_linear_svm  # noqa: E402


@pytest.fixture(scope="module")
def blur_patches(sample_dataset, tmp_path_factory):
    """A small real patch set: Gaussian blur sigma 1.1 on scikit-image's photos, 8 positions per image."""
    split = split_devices(sample_dataset.device_names, seed=0)
    spec = PatchSetSpec(task="blur1.1", split="train", patches_per_image=8)
    return build_patch_set(sample_dataset, spec, split, tmp_path_factory.mktemp("cache"), workers=1)


def early_and_late(losses, window=5):
    return float(np.mean(losses[:window])), float(np.mean(losses[-window:]))


def test_constrained_layer_holds_eq_1_at_construction_and_after_projection():
    layer = ConstrainedConv2d(1, 3, 5)
    assert layer.constraint_error() < 1e-5  # float32 rounding of the rescaled weights
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))
    assert layer.constraint_error() > 1e-2
    layer.project()
    assert layer.constraint_error() < 1e-5  # float32 rounding of the rescaled weights
    centre = layer.weight[:, :, 2, 2]
    assert torch.allclose(centre, torch.full_like(centre, -1.0))
    # a prediction-error filter: a constant image gives zero response away from the border
    flat = layer(torch.full((1, 1, 16, 16), 77.0))[:, :, 2:-2, 2:-2]
    assert flat.abs().max() < 1e-3


def test_bayar_learns_and_keeps_its_constraint(blur_patches):
    torch.manual_seed(0)
    model = Bayar2016()
    schedule = NetworkSchedule(steps=30, batch_size=16, learning_rate=1e-3, warmup_steps=3)
    rows = np.arange(len(blur_patches))[:64]
    losses = train_network(model, blur_patches.patches[rows], blur_patches.labels[rows], schedule, seed=0)
    early, late = early_and_late(losses)
    assert late < 0.8 * early, losses
    assert model.constrained.constraint_error() < 1e-5
    probabilities = manipulated_probability(model, blur_patches.patches[:8], batch_size=3)
    assert probabilities.shape == (8,) and ((0 <= probabilities) & (probabilities <= 1)).all()


def test_training_is_deterministic_for_a_seed(blur_patches):
    schedule = NetworkSchedule(steps=4, batch_size=8, warmup_steps=1)
    rows = np.arange(32)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(train_network(Bayar2016(), blur_patches.patches[rows], blur_patches.labels[rows], schedule, seed=3))
    assert runs[0] == runs[1]


def test_dihedral_variants_are_seeded_symmetries_of_each_patch():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4).repeat(20, 1, 1, 1)
    variants = dihedral_variants(images, np.random.default_rng(5))
    assert torch.equal(variants, dihedral_variants(images, np.random.default_rng(5)))
    seen = set()
    for image, variant in zip(images, variants):
        symmetries = [torch.rot90(image, turn, dims=(1, 2)) for turn in range(4)]
        symmetries += [torch.flip(symmetry, dims=(2,)) for symmetry in symmetries]
        matches = [index for index, symmetry in enumerate(symmetries) if torch.equal(variant, symmetry)]
        assert len(matches) == 1  # one of the 8 symmetries, channels kept together
        seen.add(matches[0])
    assert len(seen) >= 6  # 40 draws cover (nearly) all 8


def test_pristine_noise_touches_only_pristine_patches_and_keeps_integers():
    images = torch.full((200, 3, 16, 16), 128.0)
    images[:, :, 0, 0] = 0.0  # noise must not leave 0..255
    labels = np.arange(200) % 2
    noisy = with_pristine_noise(images, labels, 2.0, np.random.default_rng(4))
    assert torch.equal(noisy, with_pristine_noise(images, labels, 2.0, np.random.default_rng(4)))
    assert torch.equal(noisy[1::2], images[1::2])  # manipulated patches untouched
    change = noisy[0::2] - images[0::2]
    assert torch.equal(noisy, noisy.round()) and float(noisy.min()) >= 0
    deviations = change[:, :, 1:, 1:].std(dim=(1, 2, 3))
    # one deviation per patch, drawn from 0..2: some patches barely change, others by about 2 gray levels
    assert float(deviations.min()) < 0.4 and 1.6 < float(deviations.max()) < 2.3


@pytest.mark.parametrize("option", ["dihedral_augmentation", "pristine_noise"])
def test_augmented_training_is_deterministic_and_differs_from_plain(blur_patches, option):
    rows = np.arange(32)
    runs = {}
    for augment in (True, True, False):
        value = augment if option == "dihedral_augmentation" else 2.0 * augment
        schedule = NetworkSchedule(steps=4, batch_size=8, warmup_steps=1, **{option: value})
        torch.manual_seed(3)
        losses = train_network(Bayar2016(), blur_patches.patches[rows], blur_patches.labels[rows], schedule, seed=3)
        runs.setdefault(augment, []).append(losses)
    assert runs[True][0] == runs[True][1]
    assert runs[True][0] != runs[False][0]


def test_an_averaged_run_returns_the_moving_average_of_the_weights_it_went_through(blur_patches):
    rows = np.arange(16)
    decay, steps = 0.9, 5

    def run(weight_average, visited=None):
        def on_step(step, total, loss):
            if visited is not None:
                visited.append({name: value.clone() for name, value in model.state_dict().items()})

        torch.manual_seed(3)
        model = Bayar2016()
        start = {name: value.clone() for name, value in model.state_dict().items()}
        schedule = NetworkSchedule(steps=steps, batch_size=8, warmup_steps=1, weight_average=weight_average)
        losses = train_network(model, blur_patches.patches[rows], blur_patches.labels[rows], schedule, 3, on_step)
        return losses, start, model.state_dict()

    visited: list[dict] = []
    plain_losses, start, _ = run(0.0, visited)
    averaged_losses, _, averaged = run(decay)
    assert averaged_losses == plain_losses  # the average does not change the optimisation
    expected = {name: value.clone() for name, value in start.items() if value.is_floating_point()}
    for step, weights in enumerate(visited):
        factor = min(decay, (1 + step) / (10 + step))
        for name in expected:
            expected[name] = factor * expected[name] + (1 - factor) * weights[name]
    for name, value in expected.items():
        assert torch.allclose(averaged[name], value, atol=1e-6), name
    assert not torch.allclose(averaged["constrained.weight"], visited[-1]["constrained.weight"])
    assert torch.equal(averaged["features.1.num_batches_tracked"], visited[-1]["features.1.num_batches_tracked"])


class Stop(Exception):
    """Stands for a run killed between two steps."""


@pytest.mark.parametrize(
    ("adversary", "weight_average"),
    [(None, 0.0), (AdversarialTraining(), 0.0), (AdversarialTraining(trades_beta=6.0), 0.0), (None, 0.9)],
    ids=["standard", "madry", "trades", "averaged"],
)
def test_a_run_stopped_and_resumed_equals_an_uninterrupted_one(blur_patches, tmp_path, adversary, weight_average):
    rows = np.arange(32)
    schedule = NetworkSchedule(
        steps=7,
        batch_size=8,
        warmup_steps=2,
        dihedral_augmentation=True,
        pristine_noise=2.0,
        weight_average=weight_average,
    )

    def run(snapshots=None, stop_at=None):
        def on_step(step, total, loss):
            if step == stop_at:
                raise Stop

        torch.manual_seed(3)
        model = Bayar2016()
        curves: dict[str, list[float]] = {}
        losses = train_network(
            model,
            blur_patches.patches[rows],
            blur_patches.labels[rows],
            schedule,
            3,
            on_step,
            snapshots,
            adversary,
            curves,
        )
        return losses, model.state_dict(), curves

    whole_losses, whole_weights, whole_curves = run()
    path = tmp_path / "run.snapshot.safetensors"
    with pytest.raises(Stop):
        run(Snapshots(path, every=2), stop_at=5)  # snapshot at step 4, killed after step 5
    assert path.exists()
    resumed_losses, resumed_weights, resumed_curves = run(Snapshots(path, every=2, resume=True))
    assert resumed_losses == whole_losses and resumed_curves == whole_curves
    assert all(torch.equal(whole_weights[name], resumed_weights[name]) for name in whole_weights)

    changed = NetworkSchedule(steps=7, batch_size=4, warmup_steps=2)
    with pytest.raises(CfzooError, match="other settings \\(schedule\\)"):
        train_network(
            Bayar2016(),
            blur_patches.patches[rows],
            blur_patches.labels[rows],
            changed,
            3,
            None,
            Snapshots(path, resume=True),
        )
    path.write_bytes(b"not a snapshot")
    with pytest.raises(CfzooError, match="cannot be read.*delete it"):
        train_network(
            Bayar2016(),
            blur_patches.patches[rows],
            blur_patches.labels[rows],
            schedule,
            3,
            None,
            Snapshots(path, resume=True),
        )


def test_hard_cozzolino_network_reproduces_spam_features(blur_patches):
    patches = np.asarray(blur_patches.patches[::7])
    with torch.no_grad():
        hard = Cozzolino2017(hard=True).features(to_tensor(patches)).double().numpy()
        soft = Cozzolino2017().features(to_tensor(patches)).double().numpy()
    reference = spam_features(patches)
    np.testing.assert_allclose(hard, reference, atol=1e-6)  # float32 sums of exact counts
    assert 0 < np.abs(soft - reference).mean() < 2e-3  # the relaxation stays close (features sum to 4)


def test_cozzolino_starts_as_the_linear_svm_and_fine_tunes(blur_patches):
    features = spam_features(np.asarray(blur_patches.patches))
    svm = fit_linear_svm(features, blur_patches.labels, regularisation=1.0, seed=0)
    decisions = svm.decision_function(features)
    assert ((decisions > 0) == blur_patches.labels.astype(bool)).mean() > 0.9
    hard = Cozzolino2017.from_linear_svm(svm, hard=True)
    with torch.no_grad():
        logits = hard(to_tensor(np.asarray(blur_patches.patches))).double().numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], decisions, atol=1e-3)

    soft = Cozzolino2017.from_linear_svm(svm)
    schedule = NetworkSchedule(steps=20, batch_size=16, learning_rate=3e-3, warmup_steps=2)
    losses = train_network(soft, blur_patches.patches, blur_patches.labels, schedule, seed=0)
    early, late = early_and_late(losses)
    assert late < early, losses


def test_cozzolino_checkpoints_that_stored_the_constants_still_load(tmp_path):
    """Checkpoints written before the constants became non-persistent hold them, and the dense membership matrix."""
    from safetensors.torch import save_file

    from cfzoo.families import load_checkpoint

    model = Cozzolino2017()
    torch.nn.init.normal_(model.classifier.weight)
    constants = {
        name: model.get_buffer(name) for name in ("luma", "horizontal_kernel", "vertical_kernel", "bin_centres")
    }
    stored = {**model.state_dict(), **constants, "membership": torch.zeros(625, 169)}
    (tmp_path / "old.json").write_text(json.dumps({"family": "cozzolino2017"}))
    save_file(stored, str(tmp_path / "old.safetensors"))
    _, loaded = load_checkpoint(tmp_path, "old")
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)
    assert torch.equal(loaded.symmetry_class, model.symmetry_class)

    del stored["classifier.weight"]
    save_file(stored, str(tmp_path / "old.safetensors"))
    with pytest.raises(RuntimeError, match="classifier.weight"):
        load_checkpoint(tmp_path, "old")


def test_xception_learns_a_few_steps(blur_patches):
    from cfzoo.training.models import Xception

    torch.manual_seed(0)
    model = Xception()
    rows = np.concatenate([np.flatnonzero(blur_patches.labels == label)[:4] for label in (0, 1)])
    schedule = NetworkSchedule(steps=12, batch_size=8, learning_rate=1e-3, warmup_steps=1)
    losses = train_network(
        model, blur_patches.patches[np.sort(rows)], blur_patches.labels[np.sort(rows)], schedule, seed=0
    )
    early, late = early_and_late(losses, window=3)
    assert late < early, losses


def test_checkpoints_rebuild_the_design_their_record_describes():
    from cfzoo.training.models import KV_KERNEL, Xception

    assert get_family("bayar2016").new_network({}).residual_clip is None  # records from before the clipping
    assert get_family("bayar2016").new_network(Bayar2016().describe()).residual_clip == Bayar2016.RESIDUAL_CLIP
    assert get_family("xception").new_network({}).input_filter is None  # records from before the high-pass input
    current = Xception()
    assert current.input_filter == "kv" and get_family("xception").new_network(current.describe()).input_filter == "kv"
    assert (
        get_family("xception").new_network({"input_filter": "kv"}).residual_clip == 8.0
    )  # records from before the clip was recorded
    assert get_family("xception").new_network(Xception(residual_clip=2.0).describe()).residual_clip == 2.0
    assert set(current.state_dict()) == set(Xception(input_filter=None).state_dict())  # same weights either way
    # a prediction error: blind to the image's level, so the network sees traces, not brightness
    assert abs(float(KV_KERNEL.sum())) < 1e-6 and float(KV_KERNEL[2, 2]) == -1.0


@pytest.mark.parametrize("family", ["spam", "bayar2016", "cozzolino2017"])
def test_train_detector_writes_safetensors_and_a_record(sample_dataset, tmp_path, family):
    from safetensors import safe_open

    plan = TrainingPlan(
        family=family, task="jpeg70", steps=3, batch_size=8, max_train_patches=400, max_test_patches=100
    )
    stages = set()
    record = train_detector(plan, sample_dataset, tmp_path / "out", tmp_path / "cache", lambda s, d, t: stages.add(s))
    saved = json.loads((tmp_path / "out" / f"{family}-jpeg70.json").read_text())
    assert saved == record
    assert record["train_patches"] == 400 and record["test_patches"] == 100
    assert set(record["split"]["train"]).isdisjoint(record["split"]["test"])
    assert len(record["training_data_sha256"]) == 64
    if family != "spam":  # the family's default, recorded
        assert record["hyperparameters"]["dihedral_augmentation"] is (family != "cozzolino2017")
        assert record["hyperparameters"]["pristine_noise"] == 0.0
    test = record["metrics"]["test"]
    assert test["pristine"] == test["manipulated"] == 50 and 0 <= test["acc"] <= 100
    with safe_open(tmp_path / "out" / f"{family}-jpeg70.safetensors", framework="numpy") as weights:
        names = set(weights.keys())
    expected = {"spam": "coef", "bayar2016": "constrained.weight", "cozzolino2017": "classifier.weight"}[family]
    assert expected in names
    if family == "cozzolino2017":
        assert names == {"classifier.weight", "classifier.bias"}  # the SPAM constants are not stored
    assert "patches train" in stages and "patches test" in stages
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_cli_resume_finishes_a_stopped_training_run_as_if_never_stopped(sample_root, sample_dataset, tmp_path):
    from typer.testing import CliRunner

    from cfzoo.cli import app
    from cfzoo.families.checkpoints import load_checkpoint, snapshot_path

    dataset = sample_dataset
    plan = TrainingPlan(
        family="bayar2016", task="median3", steps=6, batch_size=8, max_train_patches=200, max_test_patches=60
    )
    whole = train_detector(plan, dataset, tmp_path / "whole", tmp_path / "cache")

    def stop_after_step_five(stage, done, total):
        if stage == "train" and done == 5:
            raise Stop

    with pytest.raises(Stop):
        train_detector(plan, dataset, tmp_path / "stopped", tmp_path / "cache", stop_after_step_five, snapshot_every=2)
    assert snapshot_path(tmp_path / "stopped", plan.model_id).exists()
    assert not (tmp_path / "stopped" / "bayar2016-median3.json").exists()

    command = [
        "train",
        str(sample_root),
        "-f",
        "bayar2016",
        "-t",
        "median3",
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--max-train-patches",
        "200",
        "--max-test-patches",
        "60",
        "--checkpoints",
        str(tmp_path / "stopped"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--snapshot-every",
        "2",
        "--resume",
        "--json",
    ]
    resumed = CliRunner().invoke(app, command)
    assert resumed.exit_code == 0, resumed.output
    record = json.loads(resumed.stdout)[0]
    assert record["loss"] == whole["loss"] and record["metrics"] == whole["metrics"]
    assert not snapshot_path(tmp_path / "stopped", plan.model_id).exists()
    weights = [load_checkpoint(tmp_path / folder, plan.model_id)[1].state_dict() for folder in ("whole", "stopped")]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])

    again = CliRunner().invoke(app, command)  # finished: left alone, no second line in the log
    assert again.exit_code == 0 and json.loads(again.stdout)[0] == record
    assert (tmp_path / "stopped" / "train.log").read_text().count("\n") == 1


def test_zoomed_train_photos_change_the_train_set_only(sample_root, tmp_path, mark_digitally_zoomed):
    root = tmp_path / "data"
    shutil.copytree(sample_root, root)
    split = split_devices(CameraDataset.from_directory(root).device_names, seed=0)
    for device in (split.train[0], split.test[0]):
        mark_digitally_zoomed(sorted((root / device).iterdir())[0])
    dataset = CameraDataset.from_directory(root)
    records = {}
    for keep in (None, True):  # spam's default: off
        plan = TrainingPlan(
            family="spam", task="resize1.5", zoomed_train_photos=keep, max_train_patches=200, max_test_patches=100
        )
        records[bool(keep)] = train_detector(plan, dataset, tmp_path / f"out-{keep}", tmp_path / "cache")
    assert records[True]["zoomed_train_photos"] is True and records[False]["zoomed_train_photos"] is False
    assert records[True]["patch_sets"]["test"] == records[False]["patch_sets"]["test"]  # test sets never keep them
    assert records[True]["training_data_sha256"] != records[False]["training_data_sha256"]
    train_set = next(
        (tmp_path / "cache" / "patches").glob("resize1.5-train-" + records[True]["patch_sets"]["train"][:16])
    )
    kept = [image for image in json.loads((train_set / "meta.json").read_text())["images"] if image["digital_zoom"] > 1]
    assert [image["device"] for image in kept] == [split.train[0]]
    bayar = TrainingPlan(
        family="bayar2016", task="resize1.5", steps=2, batch_size=8, max_train_patches=200, max_test_patches=100
    )
    bayar_record = train_detector(bayar, dataset, tmp_path / "bayar", tmp_path / "cache")  # bayar2016's default: on
    assert bayar_record["zoomed_train_photos"] is True and bayar_record["patch_sets"] == records[True]["patch_sets"]
    jpeg = TrainingPlan(
        family="spam", task="jpeg70", zoomed_train_photos=True, max_train_patches=200, max_test_patches=100
    )
    assert (
        train_detector(jpeg, dataset, tmp_path / "jpeg", tmp_path / "cache")["zoomed_train_photos"] is False
    )  # no resizing: the option is void


def test_cli_train_then_evaluate_reproduces_the_recorded_metrics(sample_root, tmp_path):
    from typer.testing import CliRunner

    from cfzoo.cli import app

    runner = CliRunner()
    common = ["--cache-dir", str(tmp_path / "cache"), "--max-test-patches", "120"]
    trained = runner.invoke(
        app,
        [
            "train",
            str(sample_root),
            "-f",
            "spam",
            "-f",
            "bayar2016",
            "-t",
            "median3",
            "--steps",
            "4",
            "--batch-size",
            "8",
            "--max-train-patches",
            "300",
            "--checkpoints",
            str(tmp_path / "ck"),
            "--json",
            *common,
        ],
    )
    assert trained.exit_code == 0, trained.output
    records = {record["id"]: record for record in json.loads(trained.stdout)}
    assert set(records) == {"spam-median3", "bayar2016-median3"}
    assert (tmp_path / "ck" / "train.log").read_text().count("\n") == 2

    scored = runner.invoke(
        app, ["evaluate", str(sample_root), "--checkpoints", str(tmp_path / "ck"), "--json", *common]
    )
    assert scored.exit_code == 0, scored.output
    table = json.loads(scored.stdout)
    assert table["schema_version"] == 3
    for row in table["rows"]:
        recorded = records[f"{row['family']}-{row['task']}"]["metrics"]["test"]
        assert (row["fpr"], row["tpr"], row["acc"]) == (recorded["fpr"], recorded["tpr"], recorded["acc"])
        # the per-device rates add up to the overall ones
        devices = row["by_device"]
        assert sorted(devices) == sorted(row["test_devices"])
        pristine = sum(rates["pristine"] for rates in devices.values())
        manipulated = sum(rates["manipulated"] for rates in devices.values())
        assert (pristine, manipulated) == (recorded["pristine"], recorded["manipulated"])
        false_alarms = sum(rates["fpr"] * rates["pristine"] for rates in devices.values() if rates["pristine"]) / 100
        hits = sum(rates["tpr"] * rates["manipulated"] for rates in devices.values() if rates["manipulated"]) / 100
        assert (
            abs(100 * false_alarms / pristine - row["fpr"]) < 1e-9 and abs(100 * hits / manipulated - row["tpr"]) < 1e-9
        )

    per_device = runner.invoke(
        app, ["evaluate", str(sample_root), "--checkpoints", str(tmp_path / "ck"), "--per-device", *common]
    )
    assert per_device.exit_code == 0, per_device.output
    assert "per test device" in per_device.stdout and "spam-median3" in per_device.stdout
    refused = runner.invoke(app, ["evaluate", "--checkpoints", str(tmp_path / "ck"), "--recorded", "--per-device"])
    assert refused.exit_code == 1 and "leave out --recorded" in refused.stderr

    markdown = runner.invoke(app, ["evaluate", "--checkpoints", str(tmp_path / "ck"), "--recorded", "--markdown"])
    assert markdown.exit_code == 0, markdown.output
    assert (
        "Median filtering, 3x3 (challenging)" in markdown.stdout and "(99.87)" in markdown.stdout
    )  # the paper's SPAM ACC

    missing = runner.invoke(app, ["evaluate", "--checkpoints", str(tmp_path / "none"), "--recorded"])
    assert missing.exit_code == 1 and "no trained checkpoints" in missing.stderr


def test_train_only_without_the_test_photos_then_save_metrics_equals_train_and_evaluate(sample_root, tmp_path):
    """A GPU machine may hold only the train devices' photos: training there and scoring here must give the
    checkpoint and the record that one run with every photo gives."""
    from typer.testing import CliRunner

    from cfzoo.cli import app

    runner = CliRunner()
    test_device = split_devices(CameraDataset.from_directory(sample_root).device_names, seed=0).test[0]
    train_photos = tmp_path / "train-photos"
    shutil.copytree(sample_root, train_photos, ignore=shutil.ignore_patterns(test_device))
    assert not (train_photos / test_device).exists()
    common = [
        "-f",
        "bayar2016",
        "-t",
        "median3",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--max-train-patches",
        "200",
        "--max-test-patches",
        "120",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]

    unnamed = runner.invoke(app, ["train", str(train_photos), "--no-evaluate", "--out", str(tmp_path / "x"), *common])
    assert unnamed.exit_code == 1 and "--test-device" in unnamed.stderr

    only = runner.invoke(
        app,
        [
            "train",
            str(train_photos),
            "--no-evaluate",
            "--test-device",
            test_device,
            "--out",
            str(tmp_path / "only"),
            *common,
        ],
    )
    assert only.exit_code == 0, only.output
    assert "not evaluated" in (tmp_path / "only" / "train.log").read_text()
    unscored = runner.invoke(app, ["evaluate", "--checkpoints", str(tmp_path / "only"), "--recorded"])
    assert (
        unscored.exit_code == 1
        and "--save-metrics" in unscored.stderr
        and len(unscored.stderr.strip().splitlines()) == 1
    )

    both = runner.invoke(app, ["train", str(sample_root), "--out", str(tmp_path / "both"), "--json", *common])
    assert both.exit_code == 0, both.output
    saved = runner.invoke(
        app,
        [
            "evaluate",
            str(sample_root),
            "--checkpoints",
            str(tmp_path / "only"),
            "--save-metrics",
            "--max-test-patches",
            "120",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert saved.exit_code == 0, saved.output
    after = json.loads((tmp_path / "only" / "bayar2016-median3.json").read_text())
    reference = json.loads(both.stdout)[0]
    assert after["split"] == reference["split"] and after["patch_sets"] == reference["patch_sets"]
    assert (
        after["metrics"]["test"] == reference["metrics"]["test"]
        and after["test_patches"] == reference["test_patches"] == 120
    )
    weights = [(tmp_path / name / "bayar2016-median3.safetensors").read_bytes() for name in ("only", "both")]
    assert weights[0] == weights[1]


def test_a_wild_variant_trains_on_laundered_photos_and_is_tested_both_ways(sample_root, tmp_path):
    from typer.testing import CliRunner

    from cfzoo.cli import app

    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["train", str(sample_root), "-f", "spam", "-t", "blur1.1", "--out", str(out), "--cache-dir", str(cache)]
    common += ["--max-train-patches", "300", "--max-test-patches", "100", "--json"]
    runs = {variant: CliRunner().invoke(app, [*common, "--variant", variant]) for variant in ("standard", "wild")}
    assert all(run.exit_code == 0 for run in runs.values()), [run.output for run in runs.values()]
    standard, wild = (json.loads((out / f"spam-blur1.1{suffix}.json").read_text()) for suffix in ("", "-wild"))
    assert (standard["id"], standard["variant"], wild["id"], wild["variant"]) == (
        "spam-blur1.1",
        "standard",
        "spam-blur1.1-wild",
        "wild",
    )
    assert set(standard["metrics"]) == {"test"} and set(wild["metrics"]) == {"test", "test_wild"}
    assert wild["patch_sets"]["test"] == standard["patch_sets"]["test"]  # the same clean test set
    assert len({wild["patch_sets"]["train"], standard["patch_sets"]["train"], wild["patch_sets"]["test_wild"]}) == 3
    assert wild["laundering"]["name"] == "wild" and wild["laundering"]["jpeg_quality"] == [65, 100]
    assert "laundering" not in standard
    assert wild["metrics"]["test_wild"]["pristine"] == 50 and 0 <= wild["metrics"]["test_wild"]["acc"] <= 100
    assert wild["metrics"]["test"] != wild["metrics"]["test_wild"]

    refused = CliRunner().invoke(app, [*common, "--variant", "tame"])
    assert (
        refused.exit_code != 0 and "cfzoo train makes the variants standard, wild, robust, not 'tame'" in refused.output
    )
    refused = CliRunner().invoke(app, [*common, "--variant", "robust"])
    assert (
        refused.exit_code == 1
        and "spam is not trained by gradient descent, so it has no robust variant" in refused.output
    )

    # exported into the user zoo, the variant is listed, and detect, attack and the API select it by --variant
    exported = CliRunner().invoke(app, ["export", "spam-blur1.1-wild", "--checkpoints", str(out), "--json"])
    assert exported.exit_code == 0, exported.output
    listed = json.loads(CliRunner().invoke(app, ["list", "-f", "spam", "-t", "blur1.1", "--json"]).stdout)
    assert [(row["id"], row["variant"]) for row in listed] == [
        ("spam-blur1.1", "standard"),
        ("spam-blur1.1-wild", "wild"),
    ]
    # the user zoo's model of an id comes first, also over the embedded spam-blur1.1-wild
    assert listed[1]["test_acc"] == wild["metrics"]["test"]["acc"] and listed[1]["sources"][0] == "user"
    only_wild = json.loads(CliRunner().invoke(app, ["list", "--variant", "wild", "--json"]).stdout)
    detectors = [row for row in only_wild if row["kind"] == "detector"]
    assert "spam-blur1.1-wild" in [row["id"] for row in detectors] and {row["variant"] for row in detectors} == {"wild"}
    photo = next(sample_root.glob("*/*"))
    detected = CliRunner().invoke(
        app, ["detect", str(photo), "-f", "spam", "-t", "blur1.1", "--variant", "wild", "--json"]
    )
    document = json.loads(detected.stdout)
    assert [detector["model"] for detector in document["detectors"]] == ["spam-blur1.1-wild"]
    assert document["settings"]["variant"] == "wild"
    import cfzoo

    verdicts = cfzoo.detect(photo, families=["spam"], tasks=["blur1.1"], variant="wild")
    assert [verdict.model for verdict in verdicts] == ["spam-blur1.1-wild"]
    assert verdicts[0].flagged_share == document["images"][0]["results"][0]["flagged_share"]
    attacked = CliRunner().invoke(
        app,
        ["attack", str(photo), "-T", "spam", "-t", "blur1.1", "--variant", "wild", "--method", "square"]
        + ["--queries", "5", "--out", str(tmp_path / "attacked.png"), "--json"],
    )
    assert attacked.exit_code == 0, attacked.output
    assert json.loads(attacked.stdout)["target"] == "spam-blur1.1-wild"
    scanned = CliRunner().invoke(
        app,
        ["scan", str(photo), "--out", str(tmp_path / "scan.parquet"), "-f", "spam", "-t", "blur1.1"]
        + ["--variant", "wild", "--json"],
    )
    assert scanned.exit_code == 0, scanned.output
    assert json.loads(scanned.stdout)["models"] == ["spam-blur1.1-wild"]
    measured = CliRunner().invoke(
        app,
        ["robustness", "-T", "spam", "--variant", "wild", "-t", "blur1.1", "-a", "fgsm", "--eps", "1"]
        + ["--max-patches", "4", "--data", str(sample_root), "--cache-dir", str(cache), "--format", "json"],
    )
    assert measured.exit_code == 0, measured.output
    report = json.loads(measured.stdout)
    assert report["target"] == "spam-wild" and {row["model"] for row in report["rows"]} == {"spam-blur1.1-wild"}
    missing = CliRunner().invoke(app, ["detect", str(photo), "-f", "spam", "--variant", "robust"])
    assert missing.exit_code == 1 and "no detector is available" in missing.output
    unknown = CliRunner().invoke(app, ["detect", str(photo), "--variant", "tame"])
    assert unknown.exit_code == 1 and "unknown variant 'tame'; choose one of: standard, wild, robust" in unknown.output


# --- adversarial training (robust variants) ----------------------------------------------------------------------


def briefly_trained_bayar(blur_patches):
    """(a Bayar2016 trained 6 steps on 32 patches, those patches as a tensor, their labels)."""
    torch.manual_seed(0)
    model = Bayar2016()
    rows = np.arange(32)
    train_network(
        model, blur_patches.patches[rows], blur_patches.labels[rows], NetworkSchedule(steps=6, batch_size=8), 0
    )
    images = to_tensor(blur_patches.patches[rows])
    targets = torch.from_numpy(blur_patches.labels[rows].astype(np.int64))
    return model, images, targets


def test_integer_pgd_stays_in_the_integer_ball_and_raises_the_loss(blur_patches):
    from cfzoo.training.adversarial import cross_entropy_of, integer_pgd

    model, images, targets = briefly_trained_bayar(blur_patches)
    radius = torch.tensor([1.0, 2.0] * 16)
    objective = cross_entropy_of(targets)
    attacked = integer_pgd(model, images, objective, radius, 3, np.random.default_rng(5))
    again = integer_pgd(model, images, objective, radius, 3, np.random.default_rng(5))
    start = integer_pgd(model, images, objective, radius, 0, np.random.default_rng(5))  # no step: the random start
    assert torch.equal(attacked, again)  # seeded
    assert torch.equal(attacked, attacked.round()) and attacked.min() >= 0 and attacked.max() <= 255
    distance = (attacked - images).abs().amax(dim=(1, 2, 3))
    assert torch.all(distance <= radius) and torch.any(distance == 2)
    with torch.no_grad():
        clean_loss = torch.nn.functional.cross_entropy(model(images), targets)
        attacked_loss = torch.nn.functional.cross_entropy(model(attacked), targets)
        per_patch = [
            torch.nn.functional.cross_entropy(model(batch), targets, reduction="none") for batch in (attacked, start)
        ]
    assert attacked_loss > clean_loss
    assert torch.all(per_patch[0] >= per_patch[1])  # each patch keeps its highest-loss iterate, the start included
    assert not model.training  # left as it was (train_network ends in eval mode)


def test_trades_attacks_the_divergence_from_the_clean_prediction_and_weighs_it_by_beta(blur_patches):
    from cfzoo.training.adversarial import adversarial_batch, divergence_from, integer_pgd

    model, images, targets = briefly_trained_bayar(blur_patches)
    with torch.no_grad():
        objective = divergence_from(model(images))
        assert torch.allclose(objective(model(images)), torch.zeros(32), atol=1e-6)  # no change, no divergence
    radius = torch.full((32,), 2.0)
    attacked = integer_pgd(model, images, objective, radius, 3, np.random.default_rng(1))
    start = integer_pgd(model, images, objective, radius, 0, np.random.default_rng(1))
    with torch.no_grad():
        assert torch.all(objective(model(attacked)) >= objective(model(start)))
        assert objective(model(attacked)).mean() > objective(model(start)).mean()

    def batch_and_loss(beta):
        settings = AdversarialTraining(share=0.25, trades_beta=beta)
        batch = adversarial_batch(model, images, targets, settings, np.random.default_rng(2))
        model.eval()  # it leaves the network training; a forward pass in training mode would move its statistics
        with torch.no_grad():
            return batch, batch.loss(model(batch.images), targets)

    (light, light_loss), (heavy, heavy_loss) = batch_and_loss(1.0), batch_and_loss(6.0)
    assert len(light.rows) == 8 and light.images.shape == (40, *images.shape[1:])  # the clean batch, then 8 examples
    assert torch.equal(light.images[:32], images) and torch.equal(light.images, heavy.images)
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(model(images), targets)
        assert torch.allclose(heavy_loss - clean, 6 * (light_loss - clean), rtol=1e-4) and light_loss > clean
        assert light.clean_correct(model(light.images), targets).shape == (32,)  # every clean row is trained on
    madry = adversarial_batch(model, images, targets, AdversarialTraining(share=0.25), np.random.default_rng(2))
    assert madry.images.shape == images.shape and len(madry.rows) == 8  # the examples replace their rows
    assert AdversarialTraining().identity() == {"eps": (1, 2), "steps": 5, "share": 0.5}  # as earlier snapshots hold it


def test_collapse_flags_name_a_chance_level_network_and_an_attack_that_stops_finding_examples():
    from cfzoo.training.adversarial import collapse_flags

    steps = 100
    sound = collapse_flags([0.5] * 50 + [0.2] * 50, [0.9] * steps)
    collapsed = collapse_flags([0.5] * 50 + [0.2] * 50, [0.9] * 50 + [0.52] * 50)
    stalled = collapse_flags([0.3] * 50 + [0.0] * 50, [0.95] * steps)
    stuck = collapse_flags([0.5] * steps, [1.0] * steps)
    assert sound == [] and len(collapsed) == len(stalled) == len(stuck) == 1
    assert collapsed[0].startswith("collapsed: clean accuracy on the training batches fell to 52.0%")
    assert "stopped finding examples (30.0% -> 0.0% succeed)" in stalled[0]
    assert stuck[0].startswith("no headway: the attack in training succeeds about as often at the end as at the start")


def test_a_robust_variant_fine_tunes_the_standard_model_adversarially_and_records_its_curves(sample_dataset, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = dict(family="cozzolino2017", task="median7", max_train_patches=200, max_test_patches=100)
    standard = train_detector(TrainingPlan(**common, steps=3, batch_size=8), sample_dataset, out, cache)
    plan = TrainingPlan(**common, steps=6, batch_size=8, variant="robust")
    robust = train_detector(plan, sample_dataset, out, cache, snapshot_every=2)
    assert robust["id"] == "cozzolino2017-median7-robust" and robust["variant"] == "robust"
    assert robust["hyperparameters"]["initialisation"].startswith("fine-tuned from cozzolino2017-median7 (safetensors")
    assert robust["hyperparameters"]["adversarial_training"]["eps"] == [1, 2]
    assert (robust["hyperparameters"]["steps"], robust["hyperparameters"]["batch_size"]) == (6, 8)  # its own schedule
    curves = robust["adversarial_training"]
    assert len(curves["attack_success"]["curve"]) == len(curves["clean_accuracy"]["curve"]) == 6
    assert all(0 <= value <= 1 for value in curves["attack_success"]["curve"] + curves["clean_accuracy"]["curve"])
    assert isinstance(curves["flags"], list)
    assert robust["patch_sets"] == standard["patch_sets"]  # the same photos, attacked in training
    _, standard_model = load_checkpoint(out, "cozzolino2017-median7")
    _, robust_model = load_checkpoint(out, "cozzolino2017-median7-robust")
    assert not torch.equal(standard_model.classifier.weight, robust_model.classifier.weight)
    wild = train_detector(
        TrainingPlan(**common, steps=2, batch_size=8, variant="wild", start_from=str(out)), sample_dataset, out, cache
    )
    assert wild["hyperparameters"]["initialisation"] == robust["hyperparameters"]["initialisation"]
    assert "adversarial_training" not in wild and set(wild["metrics"]) == {"test", "test_wild"}
    with pytest.raises(CfzooError, match="only the networks' wild and robust variants fine-tune a standard model"):
        train_detector(TrainingPlan(**common, start_from=str(out)), sample_dataset, out, cache)
    with pytest.raises(CfzooError, match="spam is not trained by gradient descent, so it has no robust variant"):
        train_detector(TrainingPlan(family="spam", task="median7", variant="robust"), sample_dataset, out, cache)
    with pytest.raises(CfzooError, match="no checkpoint bayar2016-median7 in"):
        train_detector(TrainingPlan(**{**common, "family": "bayar2016"}, variant="robust"), sample_dataset, out, cache)
    assert robust["hyperparameters"]["adversarial_training"]["objective"].startswith("Madry")
    scratch_plan = TrainingPlan(
        **{**common, "family": "bayar2016"},
        steps=2,
        batch_size=8,
        variant="robust",
        from_scratch=True,
        trades_beta=3,
        adversary_eps=(1,),
        network_width=2,
    )
    scratch = train_detector(scratch_plan, sample_dataset, out, cache)  # no standard bayar2016-median7 needed
    assert scratch["hyperparameters"]["initialisation"].startswith("a new network, trained adversarially")
    assert scratch["hyperparameters"]["adversarial_training"]["trades_beta"] == 3
    assert scratch["hyperparameters"]["adversarial_training"]["eps"] == [1]
    assert scratch["hyperparameters"]["width"] == 2 and "128@5x5" in scratch["hyperparameters"]["architecture"]
    _, widened = load_checkpoint(out, "bayar2016-median7-robust")  # rebuilt at its recorded width
    assert widened.classifier[2].weight.shape == (128, 128)
    assert scratch["hyperparameters"]["adversarial_training"]["objective"].startswith("TRADES, beta 3")
    assert (scratch["hyperparameters"]["steps"], scratch["hyperparameters"]["learning_rate"]) == (2, 1e-3)
    assert len(scratch["adversarial_training"]["attack_success"]["curve"]) == 2
    with pytest.raises(CfzooError, match="only a robust variant trains from scratch instead of fine-tuning"):
        train_detector(TrainingPlan(**common, variant="wild", from_scratch=True), sample_dataset, out, cache)
    for refused_plan in (TrainingPlan(**common, variant="wild", trades_beta=6), replace(scratch_plan, trades_beta=0)):
        with pytest.raises(CfzooError, match="give --trades-beta a number above 0 with --variant robust"):
            train_detector(refused_plan, sample_dataset, out, cache)
    for refused_plan in (
        TrainingPlan(**common, variant="wild", adversary_eps=(1,)),
        replace(scratch_plan, adversary_eps=(0, 1)),
    ):
        with pytest.raises(CfzooError, match="give --adversary-eps 1 or more"):
            train_detector(refused_plan, sample_dataset, out, cache)
    with pytest.raises(CfzooError, match="cozzolino2017 has no --width; only bayar2016 can be widened"):
        train_detector(TrainingPlan(**common, network_width=2), sample_dataset, out, cache)
    with pytest.raises(CfzooError, match="a wider network starts from its initialisation"):
        train_detector(replace(scratch_plan, from_scratch=False, trades_beta=None), sample_dataset, out, cache)
    with pytest.raises(CfzooError, match="decay in \\[0, 1\\), got 1"):
        train_detector(replace(scratch_plan, weight_average=1.0), sample_dataset, out, cache)
    with pytest.raises(CfzooError, match="spam is not trained by gradient descent, so it has no weights to average"):
        train_detector(TrainingPlan(family="spam", task="median7", weight_average=0.99), sample_dataset, out, cache)
