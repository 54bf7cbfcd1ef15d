"""``cfzoo data``: look at a camera dataset and build cached patch sets from it."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import Command, Group, handle_errors, note, progress_bar, stdout
from cfzoo.cli.render import chosen_format, format_option, json_flag, print_document, print_json
from cfzoo.data import SPLITS, CameraDataset, PatchSetSpec, build_patch_set, describe_dataset, split_devices
from cfzoo.errors import CfzooError
from cfzoo.manipulations import TASK_IDS, get_manipulation
from cfzoo.patches import PATCH_SIZE, PATCHES_PER_IMAGE
from cfzoo.results import DatasetSurvey
from cfzoo.sample_data import DESCRIPTION as SAMPLE_DESCRIPTION
from cfzoo.sample_data import sample_dataset_dir

data_app = typer.Typer(
    help="Camera datasets: one sub-folder of photos per device; device-disjoint train/test splits; patch sets.",
    no_args_is_help=True,
    cls=Group,
)

DATA_DIR = typer.Argument(
    None,
    help="Folder with one sub-folder of photos per camera device, e.g. ../shared/data/cameras. "
    "Without it: scikit-image's bundled photos, grouped as 4 pseudo-devices.",
    show_default=False,
)
SEED = typer.Option(0, "--seed", help="Seed of the device split and of the patch sampling.")
TEST_DEVICES = typer.Option(
    None, "--test-device", help="Use these test devices instead of a seeded draw (repeat the option for several)."
)
JSON = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")


@data_app.command("inspect", cls=Command)
@handle_errors
def inspect(
    data: Path | None = DATA_DIR,
    seed: int = SEED,
    test_device: list[str] | None = TEST_DEVICES,
    output_format: str = format_option("table", "json", "csv"),
    as_json: bool = json_flag(),
) -> None:
    """List the devices, their image counts and sizes, and the train/test split a build would use.

    --format csv: one line per device (images, distinct sizes, images too small, unreadable, digitally zoomed, split)."""
    output_format = chosen_format(output_format, ("table", "json", "csv"), as_json)
    survey = describe_dataset(open_dataset(data), seed, test_device or None)
    print_document(survey, output_format, lambda: _print_survey(survey))


def _print_survey(survey: DatasetSurvey) -> None:
    table = Table(title=f"{survey.root}: {len(survey.devices)} devices, {survey.images} images")
    for column in ("device", "images", "sizes (W x H: count)", "split"):
        table.add_column(column)
    for device in survey.devices:
        sizes = ", ".join(f"{size}: {count}" for size, count in device.sizes.items())
        if device.too_small:
            sizes += f" ({len(device.too_small)} below {PATCH_SIZE} px, skipped)"
        if device.unreadable:
            sizes += f" ({len(device.unreadable)} unreadable)"
        if device.digital_zoom:
            sizes += f" ({len(device.digital_zoom)} digitally zoomed: never in resize test sets; in resize train sets see cfzoo train --zoomed-train-photos)"
        table.add_row(device.device, str(device.images), sizes, survey.split_of(device.device))
    stdout.print(table)
    for device in survey.devices:
        for problem in device.unreadable:
            stdout.print(f"unreadable: {problem}", soft_wrap=True)
    split = survey.split
    stdout.print(
        f"split (seed {split.seed}): train = {', '.join(split.train)}; test = {', '.join(split.test)}", soft_wrap=True
    )


@data_app.command("build", cls=Command)
@handle_errors
def build(
    data: Path | None = DATA_DIR,
    task: list[str] = typer.Option(
        ..., "--task", "-t", help=f"Task id, or 'all'; repeat for several: {', '.join(TASK_IDS)}."
    ),
    split: str = typer.Option("all", "--split", help="train, test or all."),
    seed: int = SEED,
    test_device: list[str] | None = TEST_DEVICES,
    patches_per_image: int = typer.Option(
        PATCHES_PER_IMAGE, "--patches-per-image", help="Sampled patch positions per image (the paper: 192)."
    ),
    max_images_per_device: int | None = typer.Option(
        None, "--max-images-per-device", help="Use at most this many images of each device (a seeded choice)."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE or ~/.cache/cfzoo)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: one per CPU core)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build again even if the cache holds this patch set."),
    as_json: bool = JSON,
) -> None:
    """Build and cache the pristine/manipulated patch sets of a task: 128x128 patches, label 1 = manipulated."""
    tasks = list(TASK_IDS) if "all" in task else list(dict.fromkeys(task))
    for task_id in tasks:
        get_manipulation(task_id)  # fail on an unknown task before any work
    if split not in (*SPLITS, "all"):
        raise CfzooError(f"unknown split {split!r}; choose train, test or all")
    dataset = open_dataset(data, cache_dir)
    device_split = split_devices(dataset.device_names, seed, test_device or None)
    results = []
    for task_id in tasks:
        for split_name in SPLITS if split == "all" else (split,):
            spec = PatchSetSpec(
                task=task_id,
                split=split_name,
                seed=seed,
                patches_per_image=patches_per_image,
                max_images_per_device=max_images_per_device,
            )
            started = time.perf_counter()
            with progress_bar(f"{task_id} {split_name}") as update:
                patch_set = build_patch_set(dataset, spec, device_split, cache_dir, workers, update, rebuild)
            results.append(
                {
                    "task": task_id,
                    "split": split_name,
                    "devices": patch_set.meta["devices"],
                    "images": len(patch_set.images),
                    **patch_set.counts(),
                    "path": str(patch_set.directory),
                    "seconds": round(time.perf_counter() - started, 2),
                    "cached": patch_set.reused,
                }
            )
    if as_json:
        print_json(results)
        return
    table = Table(title="patch sets: 128x128 uint8 patches, label 0 = pristine, 1 = manipulated")
    for column in ("task", "split", "devices", "images", "pristine", "manipulated", "seconds"):
        table.add_column(column)
    for row in results:
        table.add_row(
            row["task"],
            row["split"],
            ", ".join(row["devices"]),
            str(row["images"]),
            str(row["pristine"]),
            str(row["manipulated"]),
            f"{row['seconds']:.1f}" + (" (cached)" if row["cached"] else ""),
        )
    stdout.print(table)
    for row in results:
        stdout.print(f"{row['task']} {row['split']}: {row['path']}", soft_wrap=True)


def open_dataset(data: Path | None, cache_dir: Path | None = None) -> CameraDataset:
    """The dataset at ``data``, or the embedded default (announced on stderr) when none is given."""
    if data is None:
        data = sample_dataset_dir(cache_dir)
        note(f"no data folder given: using {SAMPLE_DESCRIPTION} at {data}")
    return CameraDataset.from_directory(data)
