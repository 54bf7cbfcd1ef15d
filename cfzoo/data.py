"""Camera datasets, device-disjoint splits and cached patch sets.

A dataset is a directory with one sub-folder per camera device, holding that device's photos.
Following the paper, devices (not images) are split into train and test: a third of them, at least
one, chosen at random with a seed, are test devices (the paper: 6 train / 3 test of 9 devices).

A patch set, for one task and one split, holds from every image of the split's devices the same
sampled positions twice: label 0 patches cut from the untouched image and label 1 patches cut from
the whole image after the task's manipulation. Where the manipulation keeps the size, the two sets of
positions are the same, so pristine patch i and manipulated patch i show the same pixels before and
after. Patch sets are cached as uint8 ``.npy`` arrays in a directory named by a digest of everything
that determines them (file digests, task parameters, split, seed, patch parameters, Pillow version).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import PIL

from cfzoo._version import __version__
from cfzoo.callbacks import ProgressCallback
from cfzoo.errors import DataError, ImageReadError, option
from cfzoo.files import file_sha256
from cfzoo.images import list_images, read_header, read_rgb
from cfzoo.manipulations import Laundering, draw_laundering, get_manipulation
from cfzoo.patches import (
    PATCH_SIZE,
    PATCHES_PER_IMAGE,
    SAMPLING_STEP,
    cut_patches,
    grid_positions,
    sample_positions,
)
from cfzoo.paths import default_cache_dir
from cfzoo.results import DatasetSurvey, DeviceSurvey, SplitSurvey

SPLITS = ("train", "test")
TEST_DEVICE_FRACTION = 3 / 9  # the paper's 3 test devices out of 9
PATCH_SET_FORMAT = 1


@dataclass(frozen=True)
class ImageRecord:
    """One photo of the dataset: where it is, whose it is, its content digest and upright size."""

    relative_path: str
    device: str
    sha256: str
    height: int
    width: int
    digital_zoom: float = 1.0  # EXIF DigitalZoomRatio; > 1: upsampled in camera


@dataclass(frozen=True)
class CameraDataset:
    root: Path
    devices: Mapping[str, tuple[Path, ...]]

    @classmethod
    def from_directory(cls, root: str | os.PathLike[str]) -> CameraDataset:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: not a directory; pass a folder with one sub-folder of photos per camera device")
        devices = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = tuple(list_images(folder))
            if images:
                devices[folder.name] = images
        if not devices:
            raise DataError(f"{root}: no device sub-folders with images found; expected {root}/<device>/<photo>.jpg")
        return cls(root=root, devices=devices)

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(self.devices)

    def image_count(self) -> int:
        return sum(len(images) for images in self.devices.values())


@dataclass(frozen=True)
class DeviceSplit:
    train: tuple[str, ...]
    test: tuple[str, ...]
    seed: int

    def devices(self, split: str) -> tuple[str, ...]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        return self.train if split == "train" else self.test


def split_devices(devices: Sequence[str], seed: int = 0, test_devices: Iterable[str] | None = None) -> DeviceSplit:
    """Device-disjoint split: ``test_devices`` if given, else round(n/3) devices (at least 1) drawn with ``seed``."""
    devices = sorted(devices)
    if len(devices) < 2:
        raise DataError(
            f"a device-disjoint split needs at least 2 devices, found {len(devices)}: {', '.join(devices) or 'none'}"
        )
    if test_devices is not None:
        test = sorted(set(test_devices))
        unknown = [name for name in test if name not in devices]
        if unknown:
            raise DataError(f"unknown test device(s) {', '.join(unknown)}; the dataset has: {', '.join(devices)}")
        if not test or len(test) == len(devices):
            raise DataError("choose at least one test device and leave at least one for training")
    else:
        count = max(1, round(len(devices) * TEST_DEVICE_FRACTION))
        order = np.random.default_rng(seed).permutation(len(devices))
        test = sorted(devices[index] for index in order[:count])
    train = [name for name in devices if name not in test]
    return DeviceSplit(train=tuple(train), test=tuple(test), seed=seed)


def held_out_split(devices: Sequence[str], test_devices: Iterable[str], seed: int = 0) -> DeviceSplit:
    """Train on every device in ``devices`` but the named test devices, which need not be among them: for a
    machine that holds only the train photos (training there, evaluation with ``cfzoo evaluate`` elsewhere)."""
    test = tuple(sorted(set(test_devices)))
    if not test:
        raise DataError(
            f"name the held-out test devices ({option('test_devices', '--test-device')}), so that the record says what the model never saw"
        )
    train = tuple(name for name in sorted(devices) if name not in test)
    if not train:
        raise DataError(f"no train devices left once {', '.join(test)} are held out")
    return DeviceSplit(train=train, test=test, seed=seed)


def describe_dataset(dataset: CameraDataset, seed: int = 0, test_devices: Iterable[str] | None = None) -> DatasetSurvey:
    """Devices, image counts and sizes, and the split a build would use (headers only, no decoding).

    Files whose header cannot be read are listed under ``unreadable`` rather than stopping the survey."""
    devices = []
    for name, paths in dataset.devices.items():
        sizes: dict[str, int] = {}
        too_small, unreadable, zoomed = [], [], []
        for path in paths:
            try:
                header = read_header(path)
            except ImageReadError as error:
                unreadable.append(str(error))
                continue
            if header.upsampled_in_camera:
                zoomed.append(path.name)
            size = f"{header.width}x{header.height}"
            sizes[size] = sizes.get(size, 0) + 1
            if min(header.height, header.width) < PATCH_SIZE:
                too_small.append(path.name)
        devices.append(
            DeviceSurvey(
                device=name,
                images=len(paths),
                sizes=sizes,
                too_small=too_small,
                unreadable=unreadable,
                digital_zoom=zoomed,
            )
        )
    split = split_devices(dataset.device_names, seed, test_devices)
    return DatasetSurvey(
        root=str(dataset.root),
        devices=devices,
        images=dataset.image_count(),
        split=SplitSurvey(seed=seed, train=list(split.train), test=list(split.test)),
    )


@dataclass(frozen=True)
class PatchSetSpec:
    """Everything besides the photos that determines a patch set."""

    task: str
    split: str
    seed: int = 0
    patch_size: int = PATCH_SIZE
    patches_per_image: int = PATCHES_PER_IMAGE
    sampling_step: int = SAMPLING_STEP
    max_images_per_device: int | None = None
    # Resize tasks leave out photos the camera upsampled itself (EXIF DigitalZoomRatio > 1); True keeps
    # them, as both classes. Meant for train sets: camera-resampled pristine patches teach a resize
    # detector the task's own resampling rather than resampling in general.
    keep_zoomed_photos: bool = False
    #: A name of :data:`cfzoo.manipulations.LAUNDERINGS`: each photo, after the manipulation and in its pristine
    #: version alike, goes through one laundering drawn for it (seeded by the spec's seed and the file's content);
    #: None: none. The draws are in the set's ``meta.json`` under ``laundering``.
    laundering: str | None = None


class PatchSet:
    """A built patch set, memory-mapped: ``patches`` [N, P, P, 3] uint8, ``labels`` [N] (1 = manipulated),
    ``sources`` [N] index into ``images``, ``positions`` [N, 2] top-left (row, col) in the source image
    (manipulated patches: in the manipulated image)."""

    def __init__(self, directory: Path, reused: bool = False):
        self.directory = Path(directory)
        self.reused = reused  # True when found in the cache rather than built now
        try:
            self.meta = json.loads((self.directory / "meta.json").read_text())
            self.patches = np.load(self.directory / "patches.npy", mmap_mode="r")
            self.labels = np.load(self.directory / "labels.npy")
            self.sources = np.load(self.directory / "sources.npy")
            self.positions = np.load(self.directory / "positions.npy")
        except (OSError, ValueError) as error:
            raise DataError(f"{self.directory}: unreadable patch set ({error}); delete it and build again") from None
        self.images = [ImageRecord(**record) for record in self.meta["images"]]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def task(self) -> str:
        return self.meta["spec"]["task"]

    @property
    def split(self) -> str:
        return self.meta["spec"]["split"]

    def counts(self) -> dict[str, int]:
        return {"pristine": int((self.labels == 0).sum()), "manipulated": int((self.labels == 1).sum())}

    def devices_of(self, rows: np.ndarray) -> np.ndarray:
        """The camera device each of ``rows`` was cut from."""
        return np.array([self.images[source].device for source in self.sources[rows]])


def select_images(dataset: CameraDataset, spec: PatchSetSpec, split: DeviceSplit) -> list[tuple[str, Path]]:
    """(device, path) of the images a patch set uses, in a fixed order."""
    chosen = []
    for device in split.devices(spec.split):
        paths = dataset.devices[device]
        if spec.max_images_per_device is not None and len(paths) > spec.max_images_per_device:
            rng = np.random.default_rng([spec.seed, _stable_int(device)])
            keep = np.sort(rng.choice(len(paths), size=spec.max_images_per_device, replace=False))
            paths = tuple(paths[index] for index in keep)
        chosen.extend((device, path) for path in paths)
    return chosen


def build_patch_set(
    dataset: CameraDataset,
    spec: PatchSetSpec,
    split: DeviceSplit,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
    rebuild: bool = False,
) -> PatchSet:
    """Build (or find in the cache) the patch set of ``spec``; returns it memory-mapped.

    The set is written to a temporary directory and renamed into place when complete, so an
    interrupted build leaves nothing that looks finished.
    """
    manipulation = get_manipulation(spec.task)
    if spec.patches_per_image < 1 or spec.sampling_step < 1:
        raise DataError("patches per image and sampling step must be at least 1")
    images = select_images(dataset, spec, split)
    records = [image_record(dataset.root, device, path) for device, path in images]
    too_small = [
        record
        for record in records
        if min(photo_laundering(spec, record.sha256).output_size(record.height, record.width)) < spec.patch_size
    ]
    zoomed = [
        record
        for record in records
        if manipulation.needs_unresampled_photos and not spec.keep_zoomed_photos and record.digital_zoom > 1
    ]
    usable = [record for record in records if record not in too_small and record not in zoomed]
    if not usable:
        raise DataError(
            f"no image of the {spec.split} devices ({', '.join(split.devices(spec.split))}) holds a {spec.patch_size}-pixel patch"
        )

    key = patch_set_key(spec, split, usable)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / "patches" / f"{spec.task}-{spec.split}-{key[:16]}"
    if final.exists() and not rebuild:
        if on_progress is not None:
            on_progress(len(usable), len(usable))
        return PatchSet(final, reused=True)

    counts = [_patch_counts(record, spec, manipulation.output_size) for record in usable]
    launderings = [photo_laundering(spec, record.sha256) for record in usable]
    total = sum(pristine + manipulated for pristine, manipulated in counts)
    staging = root / "patches" / f".building-{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.perf_counter()
    try:
        patches = np.lib.format.open_memmap(
            staging / "patches.npy", mode="w+", dtype=np.uint8, shape=(total, spec.patch_size, spec.patch_size, 3)
        )
        labels = np.empty(total, dtype=np.uint8)
        sources = np.empty(total, dtype=np.int32)
        positions = np.empty((total, 2), dtype=np.int32)
        jobs = [(dataset.root / record.relative_path, record.sha256, spec) for record in usable]
        offset = 0
        for index, (pristine, manipulated, pristine_at, manipulated_at) in enumerate(_run(_cut_image, jobs, workers)):
            if (len(pristine), len(manipulated)) != counts[index]:
                raise DataError(
                    f"{usable[index].relative_path}: decoded size differs from its header; re-export the file"
                )
            for block, where, label in ((pristine, pristine_at, 0), (manipulated, manipulated_at, 1)):
                end = offset + len(block)
                patches[offset:end] = block
                labels[offset:end] = label
                sources[offset:end] = index
                positions[offset:end] = where
                offset = end
            if on_progress is not None:
                on_progress(index + 1, len(jobs))
        patches.flush()
        del patches
        np.save(staging / "labels.npy", labels)
        np.save(staging / "sources.npy", sources)
        np.save(staging / "positions.npy", positions)
        meta = {
            "format": PATCH_SET_FORMAT,
            "key": key,
            "cfzoo_version": __version__,
            "pillow_version": PIL.__version__,
            "spec": asdict(spec),
            "manipulation": {"title": manipulation.title, **manipulation.parameters},
            "devices": list(split.devices(spec.split)),
            "split": {"train": list(split.train), "test": list(split.test), "seed": split.seed},
            "dataset_root": str(dataset.root),
            "images": [asdict(record) for record in usable],
            **(
                {"laundering": {"name": spec.laundering, "per_image": [step.as_dict() for step in launderings]}}
                if spec.laundering
                else {}
            ),
            "skipped_too_small": [record.relative_path for record in too_small],
            "skipped_digital_zoom": [record.relative_path for record in zoomed],
            "counts": {"pristine": int((labels == 0).sum()), "manipulated": int((labels == 1).sum())},
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        if final.exists():  # rebuild: replace the old set only now that the new one is complete
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PatchSet(final)


def image_record(root: Path, device: str, path: Path) -> ImageRecord:
    """A photo's record: its path under ``root``, device, sha256, upright size and digital zoom (headers only)."""
    header = read_header(path)
    return ImageRecord(
        str(path.relative_to(root)), device, file_sha256(path), header.height, header.width, header.digital_zoom
    )


def patch_set_key(spec: PatchSetSpec, split: DeviceSplit, records: Sequence[ImageRecord]) -> str:
    manipulation = get_manipulation(spec.task)
    spec_material = asdict(spec)
    for option_added_later in ("keep_zoomed_photos", "laundering"):
        if not spec_material[option_added_later]:  # absent when off, so that keys from before the option stay valid
            del spec_material[option_added_later]
    material = {
        "format": PATCH_SET_FORMAT,
        "pillow": PIL.__version__,
        "spec": spec_material,
        "manipulation": {key: str(value) for key, value in manipulation.parameters.items()},
        "devices": list(split.devices(spec.split)),
        "images": sorted(record.sha256 for record in records),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def image_seed(spec: PatchSetSpec, sha256: str, role: int) -> list[int]:
    """Seed material for one image's positions: the spec's seed, the file's content and the role
    (0 = pristine positions, 1 = manipulated positions where the size changed)."""
    return [spec.seed, int(sha256[:16], 16), role]


def photo_laundering(spec: PatchSetSpec, sha256: str) -> Laundering:
    """The laundering the photo with content digest ``sha256`` goes through in ``spec``'s patch set (none without one)."""
    if not spec.laundering:
        return Laundering()
    return draw_laundering(spec.laundering, np.random.default_rng([spec.seed, int(sha256[:16], 16), 2]))


def _patch_counts(
    record: ImageRecord, spec: PatchSetSpec, output_size: Callable[[int, int], tuple[int, int]]
) -> tuple[int, int]:
    laundering = photo_laundering(spec, record.sha256)

    def count(height: int, width: int) -> int:
        height, width = laundering.output_size(height, width)
        return min(spec.patches_per_image, len(grid_positions(height, width, spec.patch_size, spec.sampling_step)))

    return count(record.height, record.width), count(*output_size(record.height, record.width))


def _cut_image(job: tuple[Path, str, PatchSetSpec]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    path, sha256, spec = job
    laundering = photo_laundering(spec, sha256)
    original = read_rgb(path)
    pristine, manipulated = laundering(original), laundering(get_manipulation(spec.task)(original))
    sampling = dict(count=spec.patches_per_image, patch_size=spec.patch_size, step=spec.sampling_step)
    pristine_at = sample_positions(*pristine.shape[:2], seed=image_seed(spec, sha256, 0), **sampling)
    if manipulated.shape == pristine.shape:
        manipulated_at = pristine_at
    else:
        manipulated_at = sample_positions(*manipulated.shape[:2], seed=image_seed(spec, sha256, 1), **sampling)
    return (
        cut_patches(pristine, pristine_at, spec.patch_size),
        cut_patches(manipulated, manipulated_at, spec.patch_size),
        pristine_at,
        manipulated_at,
    )


def _run(function, jobs: list, workers: int | None):
    """Map in order, in worker processes when more than one worker is asked for."""
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        yield from map(function, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(function, jobs)


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16)


def balanced_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """All rows, or a seeded class-balanced subset of ``limit`` rows, in ascending order."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    per_class = limit // 2
    chosen = [
        rng.choice(np.flatnonzero(labels == label), size=min(per_class, int((labels == label).sum())), replace=False)
        for label in (0, 1)
    ]
    return np.sort(np.concatenate(chosen))


def manipulated_rows(patch_set: PatchSet, limit: int | None, seed: int) -> np.ndarray:
    """Rows of the manipulated patches: all of them, or ``limit`` drawn with ``seed`` as evenly as possible
    from each device (a device with fewer gives all it has, the others make up the rest), ascending."""
    return class_rows(patch_set, 1, limit, seed)


def pristine_sample(patch_set: PatchSet, limit: int | None, seed: int) -> np.ndarray:
    """Rows of the pristine patches, drawn as :func:`manipulated_rows` draws the manipulated ones: the patches an
    attacked detector's scores are ranked against."""
    return class_rows(patch_set, 0, limit, seed)


def class_rows(patch_set: PatchSet, label: int, limit: int | None, seed: int) -> np.ndarray:
    """Rows of one class (1 manipulated, 0 pristine): all of them, or ``limit`` drawn with ``seed`` evenly over the
    devices, ascending."""
    rows = np.flatnonzero(patch_set.labels == label)
    if limit is not None and limit < 1:
        raise DataError(f"the number of patches must be at least 1, got {limit}")
    if limit is None or limit >= len(rows):
        return rows
    devices = patch_set.devices_of(rows)
    groups = [rows[devices == name] for name in sorted(set(devices))]
    quotas = _even_quotas([len(group) for group in groups], limit)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(group, size=quota, replace=False) for group, quota in zip(groups, quotas)]
    return np.sort(np.concatenate(chosen))


def _even_quotas(sizes: list[int], total: int) -> list[int]:
    """Split ``total`` over groups as evenly as their sizes allow (water-filling), smallest groups first."""
    quotas = [0] * len(sizes)
    remaining = total
    for rank, group in enumerate(sorted(range(len(sizes)), key=lambda g: sizes[g])):
        share = remaining // (len(sizes) - rank)
        quotas[group] = min(sizes[group], share)
        remaining -= quotas[group]
    # integer division may leave a few patches; give them to groups with room, in order
    for group in range(len(sizes)):
        extra = min(remaining, sizes[group] - quotas[group])
        quotas[group] += extra
        remaining -= extra
    return quotas


def aligned_pairs(patch_set: PatchSet) -> tuple[np.ndarray, np.ndarray]:
    """(pristine rows, manipulated rows), pair by pair: same source image, same position, so the two patches
    show the same pixels before and after the manipulation. Ascending by manipulated row."""
    manipulated = np.flatnonzero(patch_set.labels == 1)
    return partner_rows(patch_set, manipulated), manipulated


def partner_rows(patch_set: PatchSet, rows: np.ndarray) -> np.ndarray:
    """The partner of each row in ``rows``: the row of the other class from the same source image at the same
    position (a manipulated patch's pristine original, a pristine patch's manipulated copy), or a DataError where
    one has none (tasks that change the size: resize)."""
    rows = np.asarray(rows, dtype=np.int64)
    where = {
        (int(patch_set.labels[row]), int(patch_set.sources[row]), *map(int, patch_set.positions[row])): row
        for row in range(len(patch_set.labels))
    }
    partners = [
        where.get((1 - int(patch_set.labels[row]), int(patch_set.sources[row]), *map(int, patch_set.positions[row])))
        for row in rows
    ]
    if any(partner is None for partner in partners):
        raise DataError(
            f"the {patch_set.task} patch set has patches without a partner of the other class (same photo, same place); "
            "only tasks that keep the image size have them"
        )
    return np.asarray(partners, dtype=np.int64)
