"""The Hugging Face model card of the GAN restorers (the paper's Table V), generated from a restorer registry (no torch).

One card covers every restorer of the registry: YAML front matter (licence, tags, ``library_name: onnx``,
``pipeline_tag`` and a ``model-index`` with each restorer's test PSNR and SSIM, restored and filtered, built with
huggingface_hub's :class:`~huggingface_hub.ModelCardData`) and a body written from the entries' metrics and
training records. Restorers missing from the registry (of :data:`RESTORATION_TASKS` x :data:`DISCRIMINATORS`)
are named. As for the detector cards (:mod:`cfzoo.cards.model_cards`), the same registry always gives the same bytes.

- :func:`restorer_card` ``(registry)`` -> :class:`RestorerCard` (text, restorers present, restorers missing)
- :func:`write_restorer_card` ``(out_dir, card)``: ``<out_dir>/restorers.md``, written atomically
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from cfzoo.cards.card_text import devices_text, distinct, machine_text, render_card, split_of, value_text
from cfzoo.cards.model_cards import CAMERA_DEVICES, PAPER_CITATION, PAPER_URL
from cfzoo.errors import CfzooError
from cfzoo.files import write_atomically
from cfzoo.manipulations import MANIPULATIONS
from cfzoo.patches import PATCH_SIZE
from cfzoo.zoo.registry import MODELS_FOLDER
from cfzoo.zoo.restorers import (
    DEFAULT_TILE,
    DISCRIMINATOR_TITLES,
    DISCRIMINATORS,
    IMAGE_INPUT,
    RESTORATION_TASKS,
    RESTORED_OUTPUT,
    RestorerEntry,
    RestorerRegistry,
    how_to_get,
    load_restorer_registry,
    restorer_id,
)

RESTORER_CARD_NAME = "restorers.md"
KIM2018 = "Kim et al., Median filtered image restoration and anti-forensics using adversarial networks, IEEE Signal Processing Letters 25(2), 2018"


@dataclass(frozen=True)
class RestorerCard:
    models: tuple[str, ...]  # ids in the card
    missing: tuple[str, ...]  # ids of RESTORATION_TASKS x DISCRIMINATORS with no registry entry
    text: str


def restorer_card(registry: RestorerRegistry | None = None) -> RestorerCard:
    """The model card of every restorer in ``registry`` (default: :func:`load_restorer_registry`)."""
    registry = load_restorer_registry() if registry is None else registry
    entries = list(registry)
    if not entries:
        raise CfzooError(
            "no restorers in the registry; train and export some (cfzoo train-restorer DATA --all, then cfzoo export-restorer)"
        )
    missing = tuple(
        restorer_id(task, kind)
        for task in RESTORATION_TASKS
        for kind in DISCRIMINATORS
        if restorer_id(task, kind) not in registry
    )
    text = render_card("restorers.md.j2", _card_data(entries), **_fields(entries, missing))
    return RestorerCard(tuple(entry.id for entry in entries), missing, text)


def write_restorer_card(out_dir: str | os.PathLike[str], card: RestorerCard) -> Path:
    """Write ``<out_dir>/restorers.md``; it appears whole or not at all."""
    return write_atomically(
        Path(out_dir) / RESTORER_CARD_NAME, lambda temporary: temporary.write_bytes(card.text.encode())
    )


# --- front matter -----------------------------------------------------------------------------------------


def _card_data(entries: list[RestorerEntry]) -> ModelCardData:
    results = []
    for entry in entries:
        test = entry.metrics.get("test")
        if not test:
            continue
        common = {
            "task_type": "image-to-image",
            "task_name": f"Restoration of {MANIPULATIONS[entry.task].title.lower()}, {DISCRIMINATOR_TITLES[entry.discriminator]} ({entry.id})",
            "dataset_type": "cfzoo-camera-patches",
            "dataset_name": (
                f"{_count(test.get('pairs'))}median-filtered {PATCH_SIZE}x{PATCH_SIZE} patches of photos from the test devices "
                f"({devices_text(entry, 'test')}) and their pristine originals"
            ),
            "dataset_config": entry.id,  # results are grouped by dataset config: one group per restorer
            "dataset_split": "test",
        }
        for stage, config, what in (
            ("restored", "restored", "restored patches"),
            ("input", "filtered", "filtered input, before restoration"),
        ):
            quality = test.get(stage, {})
            for metric, key, name, digits in (("psnr", "psnr_db", "PSNR (dB)", 2), ("ssim", "ssim", "SSIM", 4)):
                if quality.get(key) is not None:  # a PSNR of None is infinite: no finite value to report
                    results.append(
                        EvalResult(
                            **common,
                            metric_type=metric,
                            metric_config=config,
                            metric_name=f"{name} against the pristine patches: {what}",
                            metric_value=round(float(quality[key]), digits),
                        )
                    )
    return ModelCardData(
        license="mit",
        library_name="onnx",
        pipeline_tag="image-to-image",
        tags=[
            "image-forensics",
            "counter-forensics",
            "image-restoration",
            "median-filtering",
            "onnx",
            "cfzoo",
            *distinct(f"task-{entry.task}" for entry in entries),
        ],
        metrics=["psnr", "ssim"],
        model_name="cfzoo-restorers",
        eval_results=results or None,
    )


# --- the template's fields ---------------------------------------------------------------------------------


def _fields(entries: list[RestorerEntry], missing: tuple[str, ...]) -> dict:
    """What ``templates/restorers.md.j2`` shows, computed from the registry entries."""
    example = entries[-1]  # in Table V order: restorer-median3-vgg when every restorer is here
    commands = [
        ('pip install "cfzoo[cpu]"', 'or "cfzoo[gpu]" for CUDA'),
        (
            f"cfzoo restore filtered.png --task {example.task} --discriminator {example.discriminator} --out restored.png",
            "one image, tile by tile; lossless PNG",
        ),
        ("cfzoo restore --evaluate --data DIR", "Table V: every detector's TPR before and after, PSNR / SSIM"),
    ]
    seconds = [entry.training["training_seconds"] for entry in entries if "training_seconds" in entry.training]
    return {
        "paper_url": PAPER_URL,
        "citation": PAPER_CITATION,
        "kim2018": KIM2018,
        "patch": PATCH_SIZE,
        "tasks": [f"`{task}` ({_window(task)} median filter)" for task in RESTORATION_TASKS],
        "kinds": [f"`{kind}` ({DISCRIMINATOR_TITLES[kind]})" for kind in DISCRIMINATORS],
        "restorer_count": len(RESTORATION_TASKS) * len(DISCRIMINATORS),
        "missing": missing,
        "missing_how": [
            (restorer_id(task, kind), how_to_get(task, kind))
            for task in RESTORATION_TASKS
            for kind in DISCRIMINATORS
            if restorer_id(task, kind) in missing
        ],
        "restorers": [_restorer_row(entry) for entry in entries],
        "generator": _shared(
            entries,
            (
                ("architecture", lambda entry: _hyper(entry).get("generator")),
                ("width (channels)", lambda entry: _hyper(entry).get("generator_width")),
                ("residual blocks", lambda entry: _hyper(entry).get("generator_blocks")),
                ("parameters", lambda entry: _hyper(entry).get("generator_parameters")),
            ),
        ),
        "discriminators": _discriminators(entries),
        "models_folder": MODELS_FOLDER,
        "image_input": IMAGE_INPUT,
        "restored_output": RESTORED_OUTPUT,
        "radii": distinct(entry.receptive_radius for entry in entries),
        "default_tile": DEFAULT_TILE,
        "windows": [f"`{task}` for a {_window(task)} window" for task in RESTORATION_TASKS],
        "training_facts": _shared(
            entries,
            (
                (
                    "split",
                    lambda entry: (
                        (
                            f"by device, not by photo (seed {split_of(entry).get('seed', '-')}); train devices: {devices_text(entry, 'train')}; "
                            f"test devices: {devices_text(entry, 'test')}"
                        )
                        if split_of(entry)
                        else None
                    ),
                ),
                ("data", lambda entry: _pairs(entry)),
                ("steps", lambda entry: _hyper(entry).get("steps")),
                ("batch", lambda entry: _batch(entry)),
                ("loss", lambda entry: _loss_weights(entry)),
                ("perceptual features", lambda entry: _hyper(entry).get("perceptual_features")),
                ("optimiser", lambda entry: _optimiser(entry)),
                ("seed", lambda entry: entry.training.get("seed")),
                (
                    "training-data digest (sha256 of the sorted sha256 of the training photos)",
                    lambda entry: _code(entry.training.get("training_data_sha256")),
                ),
            ),
        ),
        "training": [_training_run(entry) for entry in entries],
        "machines": distinct(machine_text(entry.training.get("machine", {})) for entry in entries),
        "cpu_only": _cpu_only(entries),
        "training_minutes": sum(seconds) / 60 if seconds else None,
        "commands": commands,
        "command_width": max(len(command) for command, _ in commands) + 2,
        "example": {"task": example.task, "discriminator": example.discriminator, "file": example.file.name},
        "embedded": [entry.id for entry in entries if entry.embedded],
        "budgets": distinct(_budget(entry) for entry in entries),
        **_photo_licences(entries),
    }


def _restorer_row(entry: RestorerEntry) -> dict:
    test = entry.metrics.get("test", {})
    return {
        "id": entry.id,
        "task": entry.task,
        "discriminator": entry.discriminator,
        "path": f"{MODELS_FOLDER}/{entry.file.name}",
        "size": entry.file.size,
        "sha256": entry.file.sha256,
        "radius": entry.receptive_radius,
        "pairs": test.get("pairs", "-"),
        "psnr": _quality(test, "psnr_db", 2),
        "ssim": _quality(test, "ssim", 4),
    }


def _discriminators(entries: list[RestorerEntry]) -> list[dict]:
    described = []
    for kind in DISCRIMINATORS:
        users = [entry for entry in entries if entry.discriminator == kind]
        if not users:
            continue
        descriptions = distinct(
            _hyper(entry).get("discriminator", "").removeprefix(f"{kind}: ") or None for entry in users
        )
        described.append(
            {
                "kind": kind,
                "title": DISCRIMINATOR_TITLES[kind],
                "ids": [entry.id for entry in users],
                "described": "; ".join(descriptions) if descriptions else "not described in the training records",
                "widths": distinct(
                    "-".join(map(str, _hyper(entry)["discriminator_widths"]))
                    for entry in users
                    if "discriminator_widths" in _hyper(entry)
                ),
            }
        )
    return described


def _training_run(entry: RestorerEntry) -> dict:
    machine = entry.training.get("machine", {})
    seconds = entry.training.get("training_seconds")
    return {
        "id": entry.id,
        "machine": machine_text(machine),
        "torch": machine.get("torch", "-"),
        "threads": machine.get("torch_threads", "-"),
        "seconds": "-" if seconds is None else f"{seconds:g}",
        "generator": _loss(entry, "generator"),
        "pixel": _loss(entry, "pixel"),
        "discriminator": _loss(entry, "discriminator"),
    }


def _photo_licences(entries: list[RestorerEntry]) -> dict:
    """The sources and licences of the training photos when cfzoo knows every training device's source, else none."""
    devices = sorted({device for entry in entries for device in split_of(entry).get("train", [])})
    licences = distinct(CAMERA_DEVICES[device].licence for device in devices if device in CAMERA_DEVICES)
    if not licences or not set(devices) <= set(CAMERA_DEVICES):
        return {"photo_sources": [], "photo_licences": []}
    return {"photo_sources": distinct(CAMERA_DEVICES[device].source for device in devices), "photo_licences": licences}


# --- helpers ----------------------------------------------------------------------------------------------


def _shared(
    entries: list[RestorerEntry], facts: tuple[tuple[str, Callable[[RestorerEntry], object]], ...]
) -> list[str]:
    """A bullet per fact: its value once when every restorer has the same, else each restorer's. Unrecorded facts are left out."""
    lines = []
    for label, fact in facts:
        values = {entry.id: fact(entry) for entry in entries}
        if all(value is None for value in values.values()):
            continue
        texts = distinct(_text(value) for value in values.values())
        if len(texts) == 1 and None not in values.values():
            lines.append(f"- {label}: {texts[0]}")
        else:
            lines.append(f"- {label}: " + "; ".join(f"`{i}` {_text(value)}" for i, value in values.items()))
    return lines


def _hyper(entry: RestorerEntry) -> dict:
    return entry.training.get("hyperparameters", {})


def _pairs(entry: RestorerEntry) -> str | None:
    pairs, per_image = entry.training.get("train_pairs"), _hyper(entry).get("patches_per_image")
    if pairs is None:
        return None
    cap = _hyper(entry).get("max_images_per_device")
    drawn = f", {per_image} patch positions per photo" if per_image is not None else ""
    photos = f", at most {cap} photos per device" if cap is not None else ""
    return (
        f"{pairs:,} aligned pairs of {PATCH_SIZE}x{PATCH_SIZE} patches from the train devices (the median-filtered patch "
        f"and the pristine one at the same position of the same photo){drawn}{photos}"
    )


def _batch(entry: RestorerEntry) -> str | None:
    batch, crop = _hyper(entry).get("batch_size"), _hyper(entry).get("crop")
    if batch is None:
        return None
    window = (
        f" random {crop}x{crop} crops, the same window in the filtered and the pristine patch"
        if crop is not None
        else " crops"
    )
    return f"{batch}{window}"


def _loss_weights(entry: RestorerEntry) -> str | None:
    weights = _hyper(entry).get("loss_weights")
    if not weights:
        return None
    terms = " + ".join(
        f"{weights[term]:g} x {term}" for term in ("pixel", "perceptual", "adversarial") if term in weights
    )
    ramp = weights.get("ramp_fraction")
    ramped = (
        f"; the perceptual and adversarial weights ramp up linearly over the first {ramp:.0%} of the steps"
        if ramp
        else ""
    )
    return terms + ramped


def _optimiser(entry: RestorerEntry) -> str | None:
    hyper = _hyper(entry)
    if "optimiser" not in hyper:
        return None
    details = [
        f"learning rate {hyper['learning_rate']:g}" if "learning_rate" in hyper else None,
        f"warmup_steps {hyper['warmup_steps']}" if "warmup_steps" in hyper else None,
    ]
    return "; ".join([hyper["optimiser"], *(detail for detail in details if detail)])


def _budget(entry: RestorerEntry) -> str | None:
    hyper, machine = _hyper(entry), entry.training.get("machine", {})
    if "steps" not in hyper or "batch_size" not in hyper:
        return None
    crop = f" {hyper['crop']}x{hyper['crop']}" if "crop" in hyper else ""
    return f"{hyper['steps']:,} steps of {hyper['batch_size']}{crop} crops on {machine_text(machine)}"


def _loss(entry: RestorerEntry, name: str) -> str:
    loss = entry.training.get("loss", {}).get(name, {})
    return f"{loss['first']:.3f} -> {loss['last']:.3f}" if "first" in loss and "last" in loss else "-"


def _quality(test: dict, key: str, digits: int) -> str:
    """``filtered -> restored``; a PSNR of None is infinite (identical patches)."""
    if "input" not in test or "restored" not in test:
        return "-"
    values = [test[stage].get(key) for stage in ("input", "restored")]
    return " -> ".join("inf" if value is None else f"{value:.{digits}f}" for value in values)


def _count(value: int | None) -> str:
    """``"256 "``, or nothing when not recorded."""
    return "" if value is None else f"{value:,} "


def _cpu_only(entries: list[RestorerEntry]) -> bool:
    return all(machine_text(entry.training.get("machine", {})).startswith("CPU") for entry in entries)


def _window(task: str) -> str:
    window = MANIPULATIONS[task].parameters["window"]
    return f"{window}x{window}"


def _code(value: str | None) -> str | None:
    return None if value is None else f"`{value}`"


def _text(value) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return value if isinstance(value, str) else value_text(value)
