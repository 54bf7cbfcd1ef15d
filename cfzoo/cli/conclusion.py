"""``cfzoo train-conclusion``: fit, measure and export the model that draws detect's one conclusion per image
(needs the ``train`` extra)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import handle_errors, note, stage_bars, stdout
from cfzoo.cli.data import DATA_DIR, SEED, TEST_DEVICES, open_dataset
from cfzoo.cli.render import chosen_format, format_option, json_flag, print_json
from cfzoo.data import split_devices
from cfzoo.experiments.conclusion import EvidenceSpec, build_evidence, confusion_figure, evaluate_conclusion
from cfzoo.ops.conclusion import CLASSES, STATISTICS, evidence_models
from cfzoo.ops.detect import model_sha256
from cfzoo.training import require_training_extra
from cfzoo.zoo.catalog import open_detector
from cfzoo.zoo.conclusions import DEFAULT_CONCLUSION, ConclusionModel
from cfzoo.zoo.registry import user_zoo_dir

#: The platform re-save the conclusion is also measured after.
RECOMPRESS_QUALITY = 90


@handle_errors
def train_conclusion(
    data: Path | None = DATA_DIR,
    seed: int = SEED,
    test_device: list[str] | None = TEST_DEVICES,
    crop: int = typer.Option(
        512,
        "--crop",
        min=128,
        help="Side of the square each photo is analysed in, a multiple of 16 (16 patches at 512).",
    ),
    max_images: int | None = typer.Option(
        None, "--max-images-per-device", min=1, help="A seeded subset of each device's photos (default: all)."
    ),
    zoo: Path | None = typer.Option(
        None, "--zoo", help="The zoo folder to write the model into (default: the user zoo, $CFZOO_HOME/zoo)."
    ),
    version: int = typer.Option(1, "--version", min=1, help="The model's version number in the registry."),
    figure: Path | None = typer.Option(
        None, "--figure", help="Also write the test confusion matrices (clean and JPEG Q 90) as this PNG."
    ),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Where evidence is kept (default $CFZOO_CACHE)."),
    output_format: str = format_option("table", "json"),
    as_json: bool = json_flag(),
) -> None:
    """Fit the conclusion model that `cfzoo detect` prints first: a probability for each of the eight manipulations and for "none", from every detector's verdict on the image.

    Every photo of the train devices (but those the camera digitally zoomed) is cut to a --crop square and given each of the nine classes; the 24 detectors of spam, bayar2016 and cozzolino2017 read it as detect does, and a logistic regression (scikit-learn, regularisation chosen by leave-one-device-out cross-validation) learns the class from their flagged shares and mean probabilities. It is then measured on the test devices, as they are and re-saved as JPEG Q 90: top-1 accuracy, confusion matrix, per-class precision and recall, expected calibration error, against the naive rule (the task whose detectors flag most). The evidence is cached; the detectors read about 16 patches per image and class at --crop 512.

    Examples:
      cfzoo train-conclusion ../shared/data/cameras --figure confusion.png
      cfzoo train-conclusion ../shared/data/cameras --zoo cfzoo/zoo/embedded   (the model the package ships)
    """
    output_format = chosen_format(output_format, ("table", "json"), as_json)
    require_training_extra("fitting a conclusion model", ("sklearn", "skl2onnx", "onnx"))
    import onnx

    from cfzoo.export.conclusion import build_conclusion_model, conclusion_entry, export_conclusion
    from cfzoo.training.conclusion import fit_conclusion

    spec = EvidenceSpec(crop=crop, seed=seed, max_images_per_device=max_images)
    dataset = open_dataset(data, cache_dir)
    split = split_devices(dataset.device_names, seed, test_device or None)
    detectors = [open_detector(model_id, providers="cpu") for model_id in evidence_models()]
    laundered = EvidenceSpec(crop=crop, seed=seed, max_images_per_device=max_images, recompress=RECOMPRESS_QUALITY)
    with stage_bars() as on_status:
        tables = {
            name: build_evidence(
                dataset,
                devices,
                detectors,
                which,
                cache_dir,
                lambda done, total, name=name: on_status(name, done, total),
            )
            for name, devices, which in (
                ("evidence: train devices", split.train, spec),
                ("evidence: test devices", split.test, spec),
                (f"evidence: test devices, JPEG Q {RECOMPRESS_QUALITY}", split.test, laundered),
            )
        }
    train, test, test_laundered = tables.values()
    fitted = fit_conclusion(train.features, train.labels, train.devices, len(CLASSES))
    model = build_conclusion_model(
        fitted,
        train.features,
        model_id=DEFAULT_CONCLUSION,
        version=version,
        models={detector.entry.id: model_sha256(detector) for detector in detectors},
        statistics=list(STATISTICS),
        classes=list(CLASSES),
    )
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / "conclusion.onnx"
        onnx.save_model(model, str(staged))
        measured = ConclusionModel(
            conclusion_entry(staged, fitted, metadata, {}, {}, False), staged, ("CPUExecutionProvider",)
        )
        metrics = {
            "test": evaluate_conclusion(measured, test),
            f"test_jpeg{RECOMPRESS_QUALITY}": evaluate_conclusion(measured, test_laundered),
            "train": evaluate_conclusion(measured, train),
        }
    training = {
        "seed": seed,
        "split": {"train": list(split.train), "test": list(split.test)},
        "evidence": {
            "crop": spec.crop,
            "margin": spec.margin,
            "stride": spec.stride,
            "left_out": "digitally zoomed photos",
        },
        "train_images": len(train),
        "train_photos": int(len(set(train.images.tolist()))),
    }
    entry = export_conclusion(model, fitted, metrics, training, zoo or user_zoo_dir())
    if figure is not None:
        panels = {
            "test devices": metrics["test"],
            f"test devices, JPEG Q {RECOMPRESS_QUALITY}": metrics[f"test_jpeg{RECOMPRESS_QUALITY}"],
        }
        confusion_figure(panels, CLASSES, figure)
        note(f"figure: {figure}")
    if output_format == "json":
        print_json(entry.to_json())
        return
    summary = Table(title=f"{entry.id} v{entry.version} (C = {fitted.regularisation:g}), {len(train)} train images")
    for column in ("measured on", "images", "top-1", "naive rule", "ECE", "unfamiliar", "uncertain"):
        summary.add_column(column)
    for name, found in metrics.items():
        summary.add_row(
            name,
            str(found["images"]),
            f"{found['accuracy']:.1%}",
            f"{found['naive_rule']['accuracy']:.1%}",
            f"{found['expected_calibration_error']:.1%}",
            f"{found['unfamiliar_share']:.1%}",
            f"{found['uncertain_share']:.1%}",
        )
    stdout.print(summary)
    note(f"written: {entry.file.name} into {zoo or user_zoo_dir()}")
