import json
import shutil

import numpy as np
import pytest

from cfzoo.data import (
    CameraDataset,
    PatchSet,
    PatchSetSpec,
    build_patch_set,
    describe_dataset,
    select_images,
    split_devices,
)
from cfzoo.errors import CfzooError, DataError, ImageReadError
from cfzoo.images import read_rgb, save_png
from cfzoo.manipulations import Laundering, apply_manipulation, draw_laundering
from cfzoo.sample_data import SAMPLE_DEVICES

DEVICES = [f"camera_{index}" for index in range(9)]


# --- splits -----------------------------------------------------------------------------------


def test_split_is_device_disjoint_a_third_for_test_and_seeded():
    split = split_devices(DEVICES, seed=5)
    assert len(split.test) == 3 and len(split.train) == 6  # the paper's 6 / 3
    assert set(split.train).isdisjoint(split.test) and set(split.train) | set(split.test) == set(DEVICES)
    assert split == split_devices(list(reversed(DEVICES)), seed=5)  # input order does not matter
    draws = {split_devices(DEVICES, seed=seed).test for seed in range(10)}
    assert len(draws) > 5  # the seed really chooses
    assert len(split_devices(DEVICES[:7], seed=0).test) == 2
    assert len(split_devices(DEVICES[:2], seed=0).test) == 1


def test_explicit_test_devices_and_bad_splits():
    split = split_devices(DEVICES, test_devices=["camera_8", "camera_0"])
    assert split.test == ("camera_0", "camera_8") and "camera_0" not in split.train
    with pytest.raises(DataError, match="unknown test device"):
        split_devices(DEVICES, test_devices=["camera_x"])
    with pytest.raises(DataError, match="at least one for training"):
        split_devices(DEVICES[:2], test_devices=DEVICES[:2])
    with pytest.raises(DataError, match="at least 2 devices"):
        split_devices(["only"])
    with pytest.raises(DataError, match="unknown split"):
        split.devices("validation")


# --- datasets ---------------------------------------------------------------------------------


def test_dataset_from_directory_finds_devices_and_images(sample_dataset, sample_root):
    assert sample_dataset.device_names == tuple(sorted(SAMPLE_DEVICES))
    assert sample_dataset.image_count() == sum(len(names) for names in SAMPLE_DEVICES.values())
    summary = describe_dataset(sample_dataset, seed=0)
    assert [d.device for d in summary.devices] == sorted(SAMPLE_DEVICES)
    portraits = next(d for d in summary.devices if d.device == "skimage_portraits")
    assert portraits.sizes == {"512x512": 1, "451x300": 1, "600x400": 1}
    assert set(summary.split.test) | set(summary.split.train) == set(SAMPLE_DEVICES)


def test_dataset_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        CameraDataset.from_directory(tmp_path / "nowhere")
    (tmp_path / "loose.png").write_bytes(b"")
    (tmp_path / "empty_device").mkdir()
    with pytest.raises(DataError, match="no device sub-folders with images"):
        CameraDataset.from_directory(tmp_path)


# --- patch sets -------------------------------------------------------------------------------


def build(dataset, tmp_path, task="jpeg70", split_name="train", workers=1, seed=0, per_image=6, **kwargs):
    split = split_devices(dataset.device_names, seed=seed)
    spec = PatchSetSpec(task=task, split=split_name, seed=seed, patches_per_image=per_image, **kwargs)
    return build_patch_set(dataset, spec, split, cache_dir=tmp_path, workers=workers)


def test_patch_set_holds_pristine_and_whole_image_manipulated_patches(sample_dataset, tmp_path):
    calls = []
    split = split_devices(sample_dataset.device_names, seed=0)
    spec = PatchSetSpec(task="jpeg70", split="train", patches_per_image=6)
    patch_set = build_patch_set(
        sample_dataset, spec, split, tmp_path, workers=1, on_progress=lambda d, t: calls.append((d, t))
    )
    train_images = sum(len(sample_dataset.devices[d]) for d in split.train)
    assert len(patch_set) == 2 * 6 * train_images
    assert patch_set.counts() == {"pristine": 6 * train_images, "manipulated": 6 * train_images}
    assert patch_set.patches.shape == (len(patch_set), 128, 128, 3) and patch_set.patches.dtype == np.uint8
    assert calls[-1] == (train_images, train_images)
    assert {record.device for record in patch_set.images} == set(split.train)  # device-disjoint

    for index in (0, len(patch_set.images) - 1):
        record = patch_set.images[index]
        original = read_rgb(sample_dataset.root / record.relative_path)
        manipulated = apply_manipulation("jpeg70", original)  # on the whole image, then cut
        mine = np.flatnonzero(patch_set.sources == index)
        pristine, altered = mine[patch_set.labels[mine] == 0], mine[patch_set.labels[mine] == 1]
        np.testing.assert_array_equal(patch_set.positions[pristine], patch_set.positions[altered])
        for row in pristine:
            top, left = patch_set.positions[row]
            np.testing.assert_array_equal(patch_set.patches[row], original[top : top + 128, left : left + 128])
        for row in altered:
            top, left = patch_set.positions[row]
            np.testing.assert_array_equal(patch_set.patches[row], manipulated[top : top + 128, left : left + 128])


def test_patch_sets_are_cached_by_their_inputs(sample_dataset, tmp_path):
    first = build(sample_dataset, tmp_path)
    assert not first.reused
    again = build(sample_dataset, tmp_path)
    assert again.reused and again.directory == first.directory
    other_seed = build(sample_dataset, tmp_path, seed=1)
    other_task = build(sample_dataset, tmp_path, task="jpeg90")
    other_split = build(sample_dataset, tmp_path, split_name="test")
    directories = {p.directory for p in (first, other_seed, other_task, other_split)}
    assert len(directories) == 4
    meta = json.loads((first.directory / "meta.json").read_text())
    assert meta["spec"]["task"] == "jpeg70" and meta["manipulation"]["quality"] == 70
    assert all(len(image["sha256"]) == 64 for image in meta["images"])
    assert not [p for p in (tmp_path / "patches").iterdir() if p.name.startswith(".")]  # no leftovers


def test_changed_file_content_changes_the_key(sample_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sample_root, root)
    dataset = CameraDataset.from_directory(root)
    before = build(dataset, tmp_path / "cache")
    split = split_devices(dataset.device_names, seed=0)
    target = dataset.devices[split.train[0]][0]
    pixels = read_rgb(target)
    pixels[0, 0] ^= 1
    save_png(pixels, target)
    after = build(CameraDataset.from_directory(root), tmp_path / "cache")
    assert after.directory != before.directory and not after.reused


def test_builds_are_deterministic_and_workers_do_not_change_the_result(sample_dataset, tmp_path):
    one = build(sample_dataset, tmp_path / "a", task="median3", workers=1)
    two = build(sample_dataset, tmp_path / "b", task="median3", workers=2)
    assert one.directory.name == two.directory.name
    for name in ("patches", "labels", "sources", "positions"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))


def test_resize_samples_positions_inside_the_larger_image(sample_dataset, tmp_path):
    patch_set = build(sample_dataset, tmp_path, task="resize1.5", split_name="test")
    for index, record in enumerate(patch_set.images):
        mine = (patch_set.sources == index) & (patch_set.labels == 1)
        limit = np.array([round(record.height * 1.5), round(record.width * 1.5)]) - 128
        assert (patch_set.positions[mine] <= limit).all()
        assert (patch_set.positions[mine] % 8 == 0).all()
    record = patch_set.images[0]
    resized = apply_manipulation("resize1.5", read_rgb(sample_dataset.root / record.relative_path))
    row = np.flatnonzero((patch_set.sources == 0) & (patch_set.labels == 1))[0]
    top, left = patch_set.positions[row]
    np.testing.assert_array_equal(patch_set.patches[row], resized[top : top + 128, left : left + 128])


def test_max_images_per_device_is_a_seeded_choice(sample_dataset, tmp_path):
    spec = PatchSetSpec(task="blur1.1", split="train", patches_per_image=2, max_images_per_device=2)
    split = split_devices(sample_dataset.device_names, seed=0)
    chosen = select_images(sample_dataset, spec, split)
    assert chosen == select_images(sample_dataset, spec, split)
    assert len(chosen) == 2 * len(split.train)
    patch_set = build_patch_set(sample_dataset, spec, split, tmp_path, workers=1)
    assert len(patch_set) == 2 * 2 * len(chosen)


def test_a_corrupt_photo_fails_the_build_and_leaves_nothing(sample_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sample_root, root)
    dataset = CameraDataset.from_directory(root)
    split = split_devices(dataset.device_names, seed=0)
    victim = dataset.devices[split.test[0]][-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    with pytest.raises(ImageReadError, match="truncated"):
        build(dataset, tmp_path / "cache", split_name="test")
    leftovers = list((tmp_path / "cache" / "patches").iterdir())
    assert leftovers == []


def test_an_unreadable_patch_set_is_a_data_error(tmp_path):
    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(DataError, match="delete it and build again"):
        PatchSet(tmp_path)


def test_digitally_zoomed_photos_are_left_out_of_resize_tasks_only(sample_root, tmp_path, mark_digitally_zoomed):
    from cfzoo.images import read_header

    root = tmp_path / "data"
    shutil.copytree(sample_root, root)
    dataset = CameraDataset.from_directory(root)
    split = split_devices(dataset.device_names, seed=0)
    zoomed = mark_digitally_zoomed(dataset.devices[split.test[0]][0])
    dataset = CameraDataset.from_directory(root)
    zoomed_name = str(zoomed.relative_to(root))
    assert read_header(root / zoomed_name).digital_zoom == 2.0 and read_header(root / zoomed_name).upsampled_in_camera
    assert read_header(dataset.devices[split.test[0]][-1]).digital_zoom == 1.0

    resized = build(dataset, tmp_path / "cache", task="resize1.01", split_name="test")
    assert resized.meta["skipped_digital_zoom"] == [zoomed_name]
    assert zoomed_name not in [image.relative_path for image in resized.images]
    compressed = build(dataset, tmp_path / "cache", task="jpeg90", split_name="test")
    assert zoomed_name in [image.relative_path for image in compressed.images]

    kept = build(dataset, tmp_path / "cache", task="resize1.01", split_name="test", keep_zoomed_photos=True)
    assert kept.meta["skipped_digital_zoom"] == [] and kept.meta["key"] != resized.meta["key"]
    zoomed_index = [image.relative_path for image in kept.images].index(zoomed_name)
    assert kept.images[zoomed_index].digital_zoom == 2.0
    assert sorted(set(kept.labels[kept.sources == zoomed_index])) == [0, 1]  # both classes
    assert len(kept) > len(resized)
    device = next(d for d in describe_dataset(dataset).devices if d.device == split.test[0])
    assert device.digital_zoom == [zoomed.name]


# --- laundering (wild variants) ----------------------------------------------------------------


def test_laundered_patch_sets_launder_both_versions_of_each_photo_as_recorded(sample_dataset, tmp_path):
    laundered = build(sample_dataset, tmp_path, task="median3", per_image=4, laundering="wild")
    plain = build(sample_dataset, tmp_path, task="median3", per_image=4)
    assert laundered.meta["key"] != plain.meta["key"] and "laundering" not in plain.meta
    draws = laundered.meta["laundering"]["per_image"]
    assert laundered.meta["laundering"]["name"] == "wild" and len(draws) == len(laundered.images)
    assert (
        build(sample_dataset, tmp_path / "again", task="median3", per_image=4, laundering="wild").meta["laundering"]
        == laundered.meta["laundering"]
    )  # seeded by the spec's seed and each photo's content
    downscaled = [index for index, draw in enumerate(draws) if draw["downscale"] is not None]
    for index in {0, len(draws) - 1, *downscaled[:1]}:
        draw = draws[index]
        laundering = Laundering(draw["downscale"], draw["jpeg_quality"], draw["chroma_subsampling"] or "4:2:0")
        original = read_rgb(sample_dataset.root / laundered.images[index].relative_path)
        versions = (laundering(original), laundering(apply_manipulation("median3", original)))
        assert versions[0].shape[:2] == laundering.output_size(*original.shape[:2])
        for label, version in enumerate(versions):
            rows = np.flatnonzero((laundered.sources == index) & (laundered.labels == label))
            assert len(rows) == 4
            for row in rows:
                top, left = laundered.positions[row]
                np.testing.assert_array_equal(laundered.patches[row], version[top : top + 128, left : left + 128])


def test_wild_laundering_draws_every_step_over_its_whole_ranges():
    rng = np.random.default_rng(0)
    draws = [draw_laundering("wild", rng) for _ in range(2000)]
    steps = {(draw.scale is not None, draw.quality is not None) for draw in draws}
    assert steps == {(False, False), (False, True), (True, False), (True, True)}
    qualities = [draw.quality for draw in draws if draw.quality is not None]
    scales = [draw.scale for draw in draws if draw.scale is not None]
    assert min(qualities) == 65 and max(qualities) == 100
    assert 0.5 <= min(scales) < 0.52 and 0.98 < max(scales) <= 1.0
    assert {draw.subsampling for draw in draws if draw.quality is not None} == {"4:2:0", "4:4:4"}
    with pytest.raises(CfzooError, match="unknown laundering 'tame'; choose one of: wild"):
        draw_laundering("tame", rng)
