"""The attack battery on the shipped detectors: every result an integer image inside the eps-ball, success as the
detector sees the stored uint8 patches, seeded randomness, and the strong attacks stronger than FGSM."""

import shutil

import numpy as np
import pytest
from PIL import Image
from skimage import data

import cfzoo
from cfzoo.errors import CfzooError
from cfzoo.manipulations import apply_manipulation, jpeg_compress, resize
from cfzoo.ops.attacks.battery import attack_parameters, attack_patches, check_settings
from cfzoo.ops.attacks.common import AttackSettings, AttackTarget, parse_survive, resampling_matrix
from cfzoo.ops.attacks.image import attack_image
from cfzoo.ops.attacks.pgd import apgd_checkpoints, pgd
from cfzoo.ops.attacks.registry import attack_names
from cfzoo.ops.attacks.spam_feature import SPAM_FEATURE_METHODS
from cfzoo.ops.attacks.square import square, square_fraction
from cfzoo.patches import cut_patches, patch_grid
from cfzoo.zoo.catalog import open_companion, open_detector
from cfzoo.zoo.registry import embedded_zoo_dir
from cfzoo.zoo.runtime import to_model_input


def _tiles(image, count):
    height, width = image.shape[:2]
    return [
        image[row : row + 128, col : col + 128]
        for row in range(0, height - 127, 128)
        for col in range(0, width - 127, 128)
    ][:count]


@pytest.fixture(scope="module")
def median7_patches():
    """Median-filtered patches of four photos: the paper's hard case for FGSM."""
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return np.stack([tile for photo in photos for tile in _tiles(apply_manipulation("median7", photo), 6)])


@pytest.fixture(scope="module")
def extreme_patches(median7_patches):
    """Patches with pixels at 0 and 255, where the ball is cut by the 8-bit range."""
    patches = median7_patches[:4].copy()
    patches[:, :40] = 0
    patches[:, 90:] = 255
    return patches


@pytest.mark.parametrize("method", attack_names())
@pytest.mark.parametrize("eps", [1, 3])
@pytest.mark.parametrize("goal", ["hide", "frame"])
def test_every_attack_returns_integer_patches_inside_the_ball(method, eps, goal, extreme_patches):
    options = {"queries": 20} if method == "square" else {}
    if method in SPAM_FEATURE_METHODS:  # they attack SPAM+SVM; spam-prist aims at a partner's feature
        model = cfzoo.load_detector("spam-median7")
        options = {"iterations": 4, **({"partners": extreme_patches[::-1].copy()} if method == "spam-prist" else {})}
    else:
        model = cfzoo.load_detector("cozzolino2017-median7")
    attacked = cfzoo.attack(model, extreme_patches, eps, method=method, goal=goal, **options)
    assert attacked.dtype == np.uint8 and attacked.shape == extreme_patches.shape
    distance = np.abs(attacked.astype(int) - extreme_patches)
    assert distance.max() <= eps
    if method == "square":  # every pixel it moves is the original +- eps, or clipped at 0 or 255
        moved = attacked.astype(int) != extreme_patches
        assert ((distance[moved] == eps) | np.isin(attacked[moved], (0, 255))).all()


def test_pgd_and_apgd_beat_fgsm_where_fgsm_fails(median7_patches):
    """Cozzolino2017 on median7 at eps 1: one signed step leaves most patches detected; the iterative attacks,
    optimising in floats and judged after rounding, do not."""
    model = cfzoo.load_detector("cozzolino2017-median7")
    before = model.predict(median7_patches).mean()
    after = {
        method: model.predict(cfzoo.attack(model, median7_patches, 1, method=method)).mean()
        for method in ("fgsm", "pgd", "apgd")
    }
    assert before > 0.9
    assert after["fgsm"] > 0.5
    assert after["pgd"] <= 0.1 and after["apgd"] <= 0.1


def test_deepfool_needs_less_noise_than_the_ball_allows_and_attacks_one_detector(median7_patches):
    """DeepFool sizes each step from the linearised margin: at eps 1 it fools Cozzolino2017 on median7 where FGSM
    leaves most patches detected, and given eps 4 it still changes pixels by little more than one gray level on
    average, where PGD, which steps by the ball's size, spends about eps/2."""
    model = cfzoo.load_detector("cozzolino2017-median7")
    patches = median7_patches[::2]
    assert model.predict(cfzoo.attack(model, patches, 1, method="deepfool")).mean() <= 0.1
    noise = {}
    for method in ("deepfool", "pgd"):
        attacked = cfzoo.attack(model, patches, 4, method=method)
        assert model.predict(attacked).mean() <= 0.1
        noise[method] = np.abs(attacked.astype(int) - patches).mean()
    assert noise["deepfool"] < 1.5 < noise["pgd"], noise
    assert attack_parameters(AttackSettings(eps=2, method="deepfool")) == {"iterations": 20, "step": None}
    with pytest.raises(CfzooError, match="method deepfool attacks one detector"):
        cfzoo.attack([model, cfzoo.load_detector("bayar2016-median7")], patches, 1, method="deepfool")
    with pytest.raises(CfzooError, match="survive_jpeg works with method fgsm, ifgsm, pgd, apgd, square, not deepfool"):
        AttackSettings(eps=1, method="deepfool", survive_jpeg=90)


def test_a_patch_already_called_pristine_is_returned_unchanged(median7_patches):
    pristine = np.stack(_tiles(data.astronaut(), 4))
    model = cfzoo.load_detector("cozzolino2017-median7")
    assert not model.predict(pristine).any()
    for method in ("ifgsm", "pgd", "apgd", "square"):
        np.testing.assert_array_equal(cfzoo.attack(model, pristine, 2, method=method), pristine)


def test_random_attacks_are_seeded_and_a_set_attacked_in_pieces_draws_as_one_call(median7_patches):
    target = AttackTarget.of(open_detector("bayar2016-median7"), open_companion("bayar2016-median7"))
    patches = median7_patches[:12]
    whole = pgd(target, patches, 2, iterations=3, seed=5, batch_size=4)
    again = pgd(target, patches, 2, iterations=3, seed=5, batch_size=4)
    np.testing.assert_array_equal(whole.patches, again.patches)
    pieces = [
        pgd(target, patches[start : start + 4], 2, iterations=3, seed=5, batch_size=4, first_row=start)
        for start in (0, 4, 8)
    ]
    np.testing.assert_array_equal(whole.patches, np.concatenate([piece.patches for piece in pieces]))
    other = square(target, patches, 2, queries=5, seed=6)
    assert not np.array_equal(square(target, patches, 2, queries=5, seed=5).patches, other.patches)


def test_square_needs_no_companion_and_respects_its_budget(median7_patches, tmp_path):
    """The hard SPAM+SVM, loaded from a file with no companion beside it: gradient attacks are refused, Square runs."""
    shutil.copy(embedded_zoo_dir() / "models" / "spam-median7.onnx", tmp_path / "spam-median7.onnx")
    detector = open_detector(tmp_path / "spam-median7.onnx")
    with pytest.raises(CfzooError, match="no gradient companion beside it"):
        open_companion(detector)
    settings = AttackSettings(eps=4, method="square", queries=30)
    result = attack_patches(settings, AttackTarget.of(detector), median7_patches)
    assert result.queries.max() == 30 and (result.iterations == np.maximum(result.queries - 2, 0)).all()
    model = cfzoo.load_detector(tmp_path / "spam-median7.onnx")
    assert model.predict(result.patches).mean() < model.predict(median7_patches).mean()
    with pytest.raises(CfzooError, match="needs the target's gradient companion; method square needs none"):
        attack_patches(AttackSettings(eps=1, method="pgd"), AttackTarget.of(detector), median7_patches)
    with pytest.raises(CfzooError, match="has no gradient companion beside it"):
        cfzoo.attack(model, median7_patches, 1, method="apgd")


def test_schedules_follow_the_papers():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]  # AutoAttack's checkpoints for 100 iterations
    assert (
        square_fraction(1, 10000) == 0.05
        and square_fraction(11, 10000) == 0.025
        and square_fraction(9000, 10000) == 0.05 / 2**9
    )
    assert square_fraction(30, 300) == square_fraction(1000, 10000)  # the schedule scales with the budget


def test_settings_that_do_not_fit_the_method_are_refused_before_any_work():
    with pytest.raises(CfzooError, match=r"^queries applies to method square only, not pgd$") as refused:
        check_settings(AttackSettings(eps=1, method="pgd", queries=10))
    # from Python the message names parameters; the CLI names its flags
    assert refused.value.for_command_line() == "--queries applies to --method square only, not pgd"
    with pytest.raises(CfzooError, match=r"^restarts applies to method pgd only, not apgd$"):
        check_settings(AttackSettings(eps=1, method="apgd", restarts=3))
    with pytest.raises(CfzooError, match=r"unknown attack method 'cw'"):
        check_settings(AttackSettings(eps=1, method="cw"))
    assert attack_parameters(AttackSettings(eps=2, method="pgd", restarts=2)) == {
        "iterations": 10,
        "step": 0.5,
        "restarts": 2,
    }
    assert attack_parameters(AttackSettings(eps=1, method="fgsm")) == {"iterations": 1, "step": 1}


def test_an_ensemble_attack_fools_every_member_at_once(median7_patches):
    """The paper's hard case: median7, where noise made on one detector leaves the others near 100%. One PGD on
    the three families together brings all of them down on the same patches."""
    models = [cfzoo.load_detector(f"{family}-median7") for family in ("spam", "bayar2016", "cozzolino2017")]
    patches = median7_patches[:12]
    alone = cfzoo.attack(models[1], patches, 1, method="pgd")
    together = cfzoo.attack(models, patches, 1, method="pgd")
    assert models[1].predict(alone).mean() <= 0.1
    assert (
        min(models[0].predict(alone).mean(), models[2].predict(alone).mean()) >= 0.9
    )  # Bayar2016's noise does not transfer
    assert max(model.predict(together).mean() for model in models) <= 0.1
    assert np.abs(together.astype(int) - patches).max() == 1
    # iterative FGSM too, in integer steps, once it goes on until every member is fooled (eps 2)
    assert max(model.predict(cfzoo.attack(models, patches, 2, method="ifgsm")).mean() for model in models) <= 0.1
    assert models[0].predict(cfzoo.attack(models[1], patches, 2, method="ifgsm")).mean() >= 0.9
    with pytest.raises(CfzooError, match="spam-close attacks one detector"):
        cfzoo.attack(models, patches, 1, method="spam-close")


def test_an_attack_made_to_survive_recompression_survives_it():
    """JPEG at Q 90 undoes plain PGD on jpeg70 (the noise is quantised away); aimed at the recompressed patch, with
    the gradient straight through the JPEG, the same budget survives it."""
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    patches = np.stack([tile for photo in photos for tile in _tiles(apply_manipulation("jpeg70", photo), 6)])
    model = cfzoo.load_detector("bayar2016-jpeg70")

    def recompressed(attacked):
        return np.stack([jpeg_compress(patch, 90) for patch in attacked])

    assert model.predict(recompressed(patches)).mean() >= 0.75
    plain = cfzoo.attack(model, patches, 2, method="pgd")
    surviving = cfzoo.attack(model, patches, 2, method="pgd", survive_jpeg=90)
    assert model.predict(plain).mean() == 0 and model.predict(recompressed(plain)).mean() >= 0.5
    assert model.predict(recompressed(surviving)).mean() <= 0.1
    assert np.abs(surviving.astype(int) - patches).max() <= 2
    with pytest.raises(
        CfzooError, match="survive_jpeg works with method fgsm, ifgsm, pgd, apgd, square, not spam-close"
    ):
        cfzoo.attack(model, patches, 2, method="spam-close", survive_jpeg=90)
    with pytest.raises(CfzooError, match="give jpeg:Q"):
        parse_survive("png:90")
    for text in ("resize:1.5", "resize:0.1", "resize:half", "jpeg:101"):
        with pytest.raises(CfzooError, match="or resize:F with a downscale factor F from 0.25 to below 1"):
            parse_survive(text)
    assert parse_survive("resize:0.5") == {"survive_resize": 0.5} and parse_survive("jpeg:90") == {"survive_jpeg": 90}


def test_the_resampling_matrix_is_the_bicubic_downscale():
    """The linear map whose transpose pulls gradients back through a downscale: PIL's float resize exactly, and
    cfzoo's uint8 resize (PIL rounds after each axis) within 3 gray levels."""
    rng = np.random.default_rng(0)
    line = rng.random(300).astype(np.float32)
    pil = np.asarray(
        Image.fromarray(line[None], mode="F").resize((150, 1), resample=Image.Resampling.BICUBIC, reducing_gap=None)
    )[0]
    np.testing.assert_allclose(resampling_matrix(300, 150) @ line, pil, atol=1e-5)
    photo = data.astronaut()[:300, :451]
    linear = np.einsum(
        "ij,jkc,lk->ilc", resampling_matrix(300, 150), photo.astype(np.float64), resampling_matrix(451, 226)
    )
    assert np.abs(np.clip(np.rint(linear), 0, 255) - resize(photo, 0.5)).max() <= 3


def test_an_image_attack_made_to_survive_a_downscale_survives_it():
    """Blur leaves traces a downscale by 0.5 keeps; PGD on the full-size image is partly undone by the downscale,
    while PGD aimed at every patch of the downscaled copy (gradient pulled back through the resampling) leaves
    none detected there. Measured: 5 of 14 patches called blurred after plain PGD, 0 after the surviving one."""
    model_id = "cozzolino2017-blur1.1"
    detector = open_detector(model_id)
    flagged = {"plain": 0, "surviving": 0}
    patches = 0
    for photo in (data.astronaut(), data.chelsea(), data.coffee()):
        blurred = apply_manipulation("blur1.1", photo)
        for name, settings in (
            ("plain", AttackSettings(2, "pgd")),
            ("surviving", AttackSettings(2, "pgd", survive_resize=0.5)),
        ):
            attack = attack_image(blurred, "cozzolino2017", "blur1.1", settings)
            assert attack.pixels.shape == blurred.shape and np.abs(attack.pixels.astype(int) - blurred).max() <= 2
            small = resize(attack.pixels, 0.5)
            calls = (
                detector.probability(to_model_input(cut_patches(small, patch_grid(*small.shape[:2]))))
                > detector.threshold
            )
            if name == "surviving":
                assert (
                    attack.tpr["cozzolino2017"].after == 100.0 * calls.mean()
                )  # the summary judges the downscaled copy
            flagged[name] += int(calls.sum())
        patches += len(calls)
    assert patches == 14 and flagged["plain"] >= 3 and flagged["surviving"] == 0, flagged
    with pytest.raises(CfzooError, match="would be smaller than one 128-pixel patch; use a factor of at least 0.43"):
        attack_image(blurred[:300, :300], "cozzolino2017", "blur1.1", AttackSettings(2, "pgd", survive_resize=0.4))
