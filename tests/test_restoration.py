"""GAN restoration of median filtering (Table V): the generator's size rules, both discriminators, training on
scikit-image's photos, ONNX export against torch, the restorer registry, tiled restoration and the CLI.

A tiny restorer (8 channels, 1 residual block) is trained once per module and exported into a temporary zoo,
which each test that needs it copies into its own empty user zoo ($CFZOO_HOME/zoo). Without torch these
tests skip; the detectors scored are the embedded spam/bayar2016/cozzolino2017-median3.
"""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from test_zoo import run_cli_without_torch
from typer.testing import CliRunner

from cfzoo.errors import CfzooError
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation
from cfzoo.paper import paper_tables
from cfzoo.zoo.registry import user_zoo_dir
from cfzoo.zoo.restorers import RestorerRegistry

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from cfzoo.cli import app
from cfzoo.data import aligned_pairs
from cfzoo.metrics import pair_quality
from cfzoo.ops.restore import load_restorer, restore_image
from cfzoo.training.restoration import (
    KimDiscriminator,
    KimGenerator,
    LossWeights,
    PairCrops,
    RestorerPlan,
    VGGDiscriminator,
    load_generator,
    median3x3,
    train_networks,
)
from cfzoo.training.restoration import (
    train_restorer as train_restorer_function,
)

MODELS = ("spam-median3", "bayar2016-median3", "cozzolino2017-median3")
TINY = {
    "generator_width": 8,
    "generator_blocks": 1,
    "discriminator_width": 8,
    "crop": 32,
    "warmup_steps": 1,
    "learning_rate": 3e-3,
    "weights": LossWeights(ramp_fraction=0.0),
    "patches_per_image": 8,
    "evaluation_pairs": 8,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks: on a busy 2-core machine, two threads' synchronisation costs more than it brings (20x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("restoration-cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_dataset, cache):
    """(checkpoint dir, record, zoo dir) of a tiny median3 restorer trained against the kim discriminator."""
    checkpoints = tmp_path_factory.mktemp("restorer-checkpoints")
    record = train_restorer_function(
        "median3", "kim", sample_dataset, checkpoints, steps=30, batch_size=4, cache_dir=cache, **TINY
    )
    from cfzoo.export.restorers import export_restorer as export_one

    zoo = tmp_path_factory.mktemp("restorer-zoo")
    export_one(checkpoints, "median3", "kim", zoo)
    return checkpoints, record, zoo


@pytest.fixture
def user_zoo(trained, tmp_path, monkeypatch):
    """The tiny restorer in this test's (empty) user zoo, and no restorer in the package's zoo, whatever ships."""
    monkeypatch.setattr(RestorerRegistry, "load", classmethod(lambda cls: cls.in_zoo(user_zoo_dir(), lenient=True)))
    shutil.copytree(trained[2], user_zoo_dir(), dirs_exist_ok=True)
    return user_zoo_dir()


@pytest.fixture
def runner():
    return CliRunner()


def test_generator_starts_as_the_identity_on_any_size():
    generator = KimGenerator().eval()
    assert sum(p.numel() for p in generator.parameters()) == 168_915  # < 1 MB of float32
    assert generator.receptive_radius == 10
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 1, 1), (2, 3, 5, 7), (1, 3, 128, 96)):
        image = torch.from_numpy(rng.integers(0, 256, shape).astype(np.float32))
        with torch.no_grad():
            assert torch.equal(generator(image), image)


def test_an_output_pixel_sees_only_its_receptive_radius():
    torch.manual_seed(0)
    generator = KimGenerator(width=8, blocks=2).eval()
    torch.nn.init.normal_(generator.tail.weight, std=0.1)
    image = torch.full((1, 3, 40, 40), 128.0)
    changed = image.clone()
    changed[0, :, 20, 20] = 0.0
    with torch.no_grad():
        difference = (generator(changed) - generator(image)).abs().sum(dim=1)[0]
    rows, cols = torch.nonzero(difference > 0, as_tuple=True)
    radius = generator.receptive_radius
    assert radius == 6 and rows.min() == 20 - radius and rows.max() == 20 + radius
    assert cols.min() == 20 - radius and cols.max() == 20 + radius
    torch.nn.init.constant_(generator.tail.bias, 50.0)  # a residual far beyond the range is clamped
    with torch.no_grad():
        assert torch.equal(generator(torch.tensor([[[[0.0]], [[255.0]], [[250.0]]]])), torch.full((1, 3, 1, 1), 255.0))


def test_the_kim_discriminator_residual_uses_the_median3_manipulation(photo):
    crop = photo[100:164, 200:280]
    expected = apply_manipulation("median3", crop).astype(np.float32)
    computed = median3x3(torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(computed, expected)


@pytest.mark.parametrize("kind, layers", [(KimDiscriminator, 4), (VGGDiscriminator, 8)])
def test_discriminators_give_one_logit_per_crop_at_any_crop_size(kind, layers):
    discriminator = kind(width=8)
    for size in (32, 48, 64):
        images = torch.rand(3, 3, size, size) * 255
        assert discriminator(images).shape == (3,)
        assert len(discriminator.features(images)) == layers


@pytest.fixture(scope="module")
def pairs(sample_dataset, cache):
    from cfzoo.data import PatchSetSpec, build_patch_set, split_devices

    split = split_devices(sample_dataset.device_names, 0)
    patch_set = build_patch_set(sample_dataset, PatchSetSpec("median3", "train", 0, patches_per_image=8), split, cache)
    return patch_set, *aligned_pairs(patch_set)


def test_pairs_show_the_same_place_before_and_after_filtering(pairs):
    patch_set, pristine, manipulated = pairs
    assert len(pristine) == len(manipulated) == (patch_set.labels == 1).sum() > 0
    np.testing.assert_array_equal(patch_set.sources[pristine], patch_set.sources[manipulated])
    np.testing.assert_array_equal(patch_set.positions[pristine], patch_set.positions[manipulated])
    # filtering the pristine patch reproduces the filtered one away from the patch border
    again = apply_manipulation("median3", np.asarray(patch_set.patches[pristine[0]]))
    np.testing.assert_array_equal(again[1:-1, 1:-1], patch_set.patches[manipulated[0]][1:-1, 1:-1])
    crops = PairCrops(patch_set, pristine, manipulated, crop=32, seed=0)
    filtered, clean = crops.next_batch(5)
    assert filtered.shape == clean.shape == (5, 32, 32, 3)
    for before, after in zip(clean, filtered):  # the same window of both patches
        np.testing.assert_array_equal(apply_manipulation("median3", before)[1:-1, 1:-1], after[1:-1, 1:-1])
    assert pair_quality(clean, clean) == {"psnr_db": None, "ssim": 1.0}
    assert pair_quality(clean, filtered)["psnr_db"] < 60


@pytest.mark.parametrize("discriminator", ["kim", "vgg"])
def test_training_lowers_the_generator_loss_and_moves_the_discriminator(pairs, discriminator):
    patch_set, pristine, manipulated = pairs
    plan = RestorerPlan("median3", discriminator, steps=30, batch_size=8, **TINY)
    _, _, losses = train_networks(plan, PairCrops(patch_set, pristine, manipulated, plan.crop, plan.seed))
    assert np.mean(losses["generator"][-8:]) < np.mean(losses["generator"][:8]) - 0.01
    assert np.mean(losses["pixel"][-8:]) < 0.95  # closer to the pristine patches than the filtered input
    assert np.ptp(losses["discriminator"]) > 1e-4
    _, _, again = train_networks(plan, PairCrops(patch_set, pristine, manipulated, plan.crop, plan.seed))
    assert again == losses  # seeded and deterministic


def test_train_restorer_writes_weights_and_a_record(trained):
    checkpoints, record, _ = trained
    assert sorted(path.name for path in checkpoints.iterdir()) == [
        "restorer-median3-kim.json",
        "restorer-median3-kim.safetensors",
    ]
    assert json.loads((checkpoints / "restorer-median3-kim.json").read_text()) == record
    assert record["id"] == "restorer-median3-kim" and record["discriminator"] == "kim" and record["train_pairs"] > 0
    assert (
        record["hyperparameters"]["generator_width"] == 8 and record["hyperparameters"]["loss_weights"]["pixel"] == 1.0
    )
    assert set(record["loss"]) == {"generator", "pixel", "perceptual", "adversarial", "discriminator"}
    test = record["metrics"]["test"]
    assert test["pairs"] == 8 and test["input"]["psnr_db"] > 20 and 0 < test["restored"]["ssim"] <= 1
    assert record["training_seconds"] > 0 and record["crops_per_second"] > 0 and "device" in record["machine"]
    _, generator = load_generator(checkpoints, "restorer-median3-kim")
    assert generator.tail.weight.abs().sum() > 0  # trained away from the identity


def test_onnx_export_matches_torch(trained):
    import onnxruntime

    checkpoints, _, zoo = trained
    _, generator = load_generator(checkpoints, "restorer-median3-kim")
    registry = json.loads((zoo / "restorers.json").read_text())
    entry = registry["restorers"][0]
    assert registry["schema"] == 1 and entry["receptive_radius"] == 4 and not entry["embedded"]
    path = zoo / "models" / "restorer-median3-kim.onnx"
    assert entry["file"]["size"] == path.stat().st_size < 1_000_000
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == [
        "restored"
    ]
    rng = np.random.default_rng(3)
    for shape in ((1, 3, 1, 1), (2, 3, 37, 53), (1, 3, 128, 128)):
        image = rng.integers(0, 256, shape).astype(np.float32)
        with torch.no_grad():
            expected = generator(torch.from_numpy(image)).numpy()
        np.testing.assert_allclose(session.run(["restored"], {"image": image})[0], expected, atol=1e-3)


def test_the_default_generator_exports_under_one_megabyte(tmp_path):
    from cfzoo.export.restorers import export_generator

    path = export_generator(
        KimGenerator(),
        {"id": "restorer-median3-vgg", "task": "median3", "discriminator": "vgg", "training_data_sha256": "0" * 64},
        tmp_path / "g.onnx",
    )
    assert 600_000 < path.stat().st_size < 1_000_000


def test_tiled_restoration_equals_one_pass_and_a_tampered_file_is_refused(user_zoo, photo):
    image = apply_manipulation("median3", photo[:150, :210])
    whole = restore_image(image, "median3", "kim", "cpu", tile=1024)
    assert whole.dtype == np.uint8 and whole.shape == image.shape and not np.array_equal(whole, image)
    tiled = restore_image(image, "median3", "kim", "cpu", tile=64)
    difference = tiled.astype(np.int16) - whole  # float sums may differ in the last bits, flipping a rounding
    assert np.abs(difference).max() <= 1 and np.count_nonzero(difference) <= 5
    model = user_zoo / "models" / "restorer-median3-kim.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    with pytest.raises(CfzooError, match="does not match the restorer registry's sha256") as error:
        load_restorer("median3", "kim")
    assert "\n" not in str(error.value) and "export-restorer" in str(error.value)


def test_a_missing_restorer_says_how_to_get_it(user_zoo):
    for task, kind in (("median7", "kim"), ("median3", "vgg")):
        with pytest.raises(
            CfzooError,
            match=f"restorer-{task}-{kind} is not in any zoo here; train and export it: cfzoo train-restorer",
        ) as error:
            load_restorer(task, kind)
        assert "\n" not in str(error.value)
    with pytest.raises(CfzooError, match="not 'jpeg70'"):
        load_restorer("jpeg70", "kim")


def test_cli_restore_writes_a_png_and_never_its_input(user_zoo, runner, photo, tmp_path, conforms):
    source = tmp_path / "filtered.png"
    Image.fromarray(apply_manipulation("median3", photo[:200, :256])).save(source)
    out = tmp_path / "restored.png"
    result = runner.invoke(
        app,
        [
            "restore",
            str(source),
            "--task",
            "median3",
            "--discriminator",
            "kim",
            "--out",
            str(out),
            "--json",
            "--providers",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    conforms(json.loads(result.stdout), "restore-image")
    [summary] = json.loads(result.stdout)  # always a list, one restoration per discriminator
    assert summary["restorer"] == "restorer-median3-kim" and summary["width"] == 256 and summary["height"] == 200
    assert set(summary["detect_grid_called_manipulated"]) == {"spam", "bayar2016", "cozzolino2017"}
    restored = read_rgb(out)
    assert restored.shape == (200, 256, 3) and not np.array_equal(restored, read_rgb(source))
    before = source.read_bytes()
    result = runner.invoke(
        app, ["restore", str(source), "--task", "median3", "--discriminator", "kim", "--out", str(source)]
    )
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "is the input image" in result.stderr and source.read_bytes() == before
    # two discriminators, the second's restorer missing: no PNG at all, not the first one's alone
    both = runner.invoke(
        app,
        ["restore", str(source), "--task", "median3", "--discriminator", "kim", "--discriminator", "vgg"]
        + ["--out", str(tmp_path / "pair.png")],
    )
    assert both.exit_code == 1 and "restorer-median3-vgg is not in any zoo here" in both.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["filtered.png", "restored.png"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{bad}", "--task", "median3", "--out", "{out}"], "corrupt or truncated image"),
        (["{missing}", "--task", "median3", "--out", "{out}"], "no such file"),
        (["{good}", "--task", "median3", "--out", "{jpg}"], "must end in .png"),
        (
            ["{good}", "--task", "median3", "--discriminator", "vgg", "--out", "{out}"],
            "restorer-median3-vgg is not in any zoo here",
        ),
        (["{good}", "--out", "{out}"], "exactly one --task"),
        ([], "give an IMAGE to restore"),
    ],
)
def test_cli_restore_bad_input_is_one_line(user_zoo, runner, photo, tmp_path, arguments, message):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.fromarray(photo[:130, :130]).save(good)
    bad.write_bytes(good.read_bytes()[:200])
    names = {
        "bad": bad,
        "good": good,
        "missing": tmp_path / "none.png",
        "out": tmp_path / "out.png",
        "jpg": tmp_path / "out.jpg",
    }
    result = runner.invoke(app, ["restore", *(argument.format(**names) for argument in arguments)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.jpg").exists()


def test_cli_evaluate_json_is_table_v(models, user_zoo, runner, sample_root, cache):
    result = runner.invoke(
        app,
        [
            "restore",
            "--evaluate",
            "--data",
            str(sample_root),
            "--max-patches",
            "8",
            "--json",
            "--cache-dir",
            str(cache),
            "--providers",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {
        "schema_version",
        "seed",
        "dataset",
        "test_devices",
        "max_patches",
        "missing",
        "rows",
        "note",
    }
    assert report["missing"] == ["restorer-median7-kim", "restorer-median7-vgg", "restorer-median3-vgg"]
    (row,) = report["rows"]
    assert set(row) == {"task", "discriminator", "restorer", "patches", "quality", "restore_seconds", "tpr"}
    assert row["task"] == "median3" and row["discriminator"] == "kim" and row["patches"] == 8
    for name in ("input", "restored"):
        assert 20 < row["quality"][name]["psnr_db"] < 80 and 0 < row["quality"][name]["ssim"] <= 1
    assert set(row["tpr"]) == {"spam", "bayar2016", "cozzolino2017"}
    paper = paper_tables()["table5_gan_restoration_median"]["by_discriminator"]["kim"]["median3"]
    for family, rates in row["tpr"].items():
        assert rates["model"] == f"{family}-median3" and rates["paper"] == paper[family]
        assert 0 <= rates["before"] <= 100 and 0 <= rates["after"] <= 100
    markdown = runner.invoke(
        app,
        [
            "restore",
            "--evaluate",
            "--data",
            str(sample_root),
            "--max-patches",
            "8",
            "--markdown",
            "--cache-dir",
            str(cache),
        ],
    )
    assert markdown.exit_code == 0 and "| median3 | kim | 8 |" in markdown.stdout and "(19.30)" in markdown.stdout
    for selection in (["--task", "median7"], ["--task", "median3", "--discriminator", "kim", "--discriminator", "vgg"]):
        missing = runner.invoke(app, ["restore", "--evaluate", *selection, "--data", str(sample_root)])
        assert missing.exit_code == 1 and missing.stderr.count("\n") == 1, missing.output
        assert (
            f"restorer-{selection[1]}-{'kim' if selection[1] == 'median7' else 'vgg'} is not available here; train and export it"
            in missing.stderr
        )


def test_restoring_runs_without_torch(user_zoo, photo, tmp_path):
    source, out = tmp_path / "filtered.png", tmp_path / "restored.png"
    Image.fromarray(apply_manipulation("median3", photo[:140, :150])).save(source)
    run_cli_without_torch(
        ["restore", str(source), "-t", "median3", "-d", "kim", "--out", str(out), "--providers", "cpu"], user_zoo.parent
    )
    assert read_rgb(out).shape == (140, 150, 3)
