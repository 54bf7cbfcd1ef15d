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

from cfzoo.cards.card_text import devices_text, distinct, machine_text, split_of, value_text
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
        raise CfzooError("no restorers in the registry; train and export some (cfzoo train-restorer DATA --all, then cfzoo export-restorer)")
    missing = tuple(restorer_id(task, kind) for task in RESTORATION_TASKS for kind in DISCRIMINATORS if restorer_id(task, kind) not in registry)
    text = "---\n" + _front_matter(entries) + "\n---\n\n" + _body(entries, missing)
    return RestorerCard(tuple(entry.id for entry in entries), missing, text)


def write_restorer_card(out_dir: str | os.PathLike[str], card: RestorerCard) -> Path:
    """Write ``<out_dir>/restorers.md``; it appears whole or not at all."""
    return write_atomically(Path(out_dir) / RESTORER_CARD_NAME, lambda temporary: temporary.write_bytes(card.text.encode()))


# --- front matter -----------------------------------------------------------------------------------------


def _front_matter(entries: list[RestorerEntry]) -> str:
    from huggingface_hub import EvalResult, ModelCardData

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
        for stage, config, what in (("restored", "restored", "restored patches"), ("input", "filtered", "filtered input, before restoration")):
            quality = test.get(stage, {})
            for metric, key, name, digits in (("psnr", "psnr_db", "PSNR (dB)", 2), ("ssim", "ssim", "SSIM", 4)):
                if quality.get(key) is not None:  # a PSNR of None is infinite: no finite value to report
                    results.append(EvalResult(
                        **common, metric_type=metric, metric_config=config, metric_name=f"{name} against the pristine patches: {what}",
                        metric_value=round(float(quality[key]), digits),
                    ))
    data = ModelCardData(
        license="mit",
        library_name="onnx",
        pipeline_tag="image-to-image",
        tags=["image-forensics", "counter-forensics", "image-restoration", "median-filtering", "onnx", "cfzoo",
              *distinct(f"task-{entry.task}" for entry in entries)],
        metrics=["psnr", "ssim"],
        model_name="cfzoo-restorers",
        eval_results=results or None,
    )
    return data.to_yaml()


# --- body -------------------------------------------------------------------------------------------------


def _body(entries: list[RestorerEntry], missing: tuple[str, ...]) -> str:
    sections = [
        "# cfzoo GAN restorers: hiding median filtering from forensic detectors",
        _introduction(entries, missing),
        "## Models\n\n" + _models_table(entries),
        "## What the restorer is\n\n" + _architecture(entries),
        "## Model contract\n\n" + _contract(entries),
        "## Training\n\n" + _training(entries),
        "## How to use\n\n" + _usage(entries),
        "## Limits\n\n" + _limits(entries),
        "## Files\n\n" + _files(entries),
        "## Licence\n\n" + _licence(entries),
        "## Citation\n\n" + f"Generator after {KIM2018}. Reproduced as part of:\n\n```bibtex\n{PAPER_CITATION}\n```",
    ]
    return "\n\n".join(sections) + "\n"


def _introduction(entries: list[RestorerEntry], missing: tuple[str, ...]) -> str:
    tasks = " and ".join(f"`{task}` ({_window(task)} median filter)" for task in RESTORATION_TASKS)
    kinds = " and ".join(f"`{kind}` ({DISCRIMINATOR_TITLES[kind]})" for kind in DISCRIMINATORS)
    lines = [
        (
            "GAN generators after Kim et al. 2018: each takes a median-filtered RGB image and adds back the fine structure "
            "the filter removed, to hide the filtering from forensic detectors (counter-forensics) while bringing the image "
            f"closer to the pristine one. One restorer per task, {tasks}, and per discriminator it was trained against, {kinds}."
        ),
        "",
        (
            "Trained and exported to ONNX by cfzoo (`pip install cfzoo`), a counter-forensics model zoo that reproduces "
            "Gragnaniello, Marra, Poggi and Verdoliva, [*Analysis of Adversarial Attacks against CNN-based Image Forgery "
            f"Detectors*]({PAPER_URL}) (EUSIPCO 2018); these generators are its Section III-C and Table V."
        ),
        "",
        f"This card covers {len(entries)} of the {len(RESTORATION_TASKS) * len(DISCRIMINATORS)} restorers.",
    ]
    if missing:
        lines[-1] += f" Not in the registry, so not described here: {', '.join(f'`{i}`' for i in missing)}."
        lines += ["", *(
            f"- To add `{restorer_id(task, kind)}`, {how_to_get(task, kind)}."
            for task in RESTORATION_TASKS for kind in DISCRIMINATORS if restorer_id(task, kind) in missing
        )]
    return "\n".join(lines)


def _models_table(entries: list[RestorerEntry]) -> str:
    rows = [
        "| restorer | task | discriminator | file | MB | receptive radius (px) | test pairs | PSNR dB filtered -> restored | SSIM filtered -> restored |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        test = entry.metrics.get("test", {})
        rows.append(
            f"| `{entry.id}` | `{entry.task}` | `{entry.discriminator}` | `{MODELS_FOLDER}/{entry.file.name}` | "
            f"{entry.file.size / 1e6:.2f} | {entry.receptive_radius} | {test.get('pairs', '-')} | "
            f"{_quality(test, 'psnr_db', 2)} | {_quality(test, 'ssim', 4)} |"
        )
    rows.append("")
    rows.append(
        f"PSNR and SSIM against the pristine patches, on {PATCH_SIZE}x{PATCH_SIZE} median-filtered patches of the test "
        "devices only (devices never seen in training), each paired with the pristine patch at the same position of the "
        "same photo: filtered is the input, restored the generator's output rounded to uint8."
    )
    return "\n".join(rows)


def _architecture(entries: list[RestorerEntry]) -> str:
    lines = [
        f"Original method: {KIM2018}. The generator's loss has three terms: pixel fidelity to the pristine image, a "
        "perceptual term and an adversarial term against a discriminator that tells pristine patches from restored ones.",
        "",
        "Generator:",
        *_shared(entries, (
            ("architecture", lambda entry: _hyper(entry).get("generator")),
            ("width (channels)", lambda entry: _hyper(entry).get("generator_width")),
            ("residual blocks", lambda entry: _hyper(entry).get("generator_blocks")),
            ("parameters", lambda entry: _hyper(entry).get("generator_parameters")),
        )),
        "",
        "Discriminators (used in training only; not shipped):",
    ]
    for kind in DISCRIMINATORS:
        users = [entry for entry in entries if entry.discriminator == kind]
        if not users:
            continue
        descriptions = distinct(_hyper(entry).get("discriminator", "").removeprefix(f"{kind}: ") or None for entry in users)
        widths = distinct("-".join(map(str, _hyper(entry)["discriminator_widths"])) for entry in users if "discriminator_widths" in _hyper(entry))
        described = "; ".join(descriptions) if descriptions else "not described in the training records"
        width_text = f"; channels {' or '.join(widths)}" if widths else ""
        lines.append(
            f"- `{kind}`, {DISCRIMINATOR_TITLES[kind]} ({', '.join(f'`{entry.id}`' for entry in users)}): {described}{width_text}."
        )
    return "\n".join(lines)


def _contract(entries: list[RestorerEntry]) -> str:
    radii = distinct(entry.receptive_radius for entry in entries)
    return "\n".join([
        (
            f"- `{MODELS_FOLDER}/restorer-<task>-<discriminator>.onnx`: input `{IMAGE_INPUT}` float32 [N,3,H,W], RGB, values "
            f"0..255 (the median-filtered image, not normalised); output `{RESTORED_OUTPUT}` float32 [N,3,H,W], 0..255 "
            "(round to uint8 to store). N, H and W are dynamic, H and W >= 1; the output has the input's size."
        ),
        (
            f"- Receptive radius: an output pixel depends on the input within {' or '.join(str(r) for r in radii)} pixels "
            "(per restorer in the Models table). Tiled processing uses it as the tiles' overlap: `cfzoo restore` runs "
            f"{DEFAULT_TILE}-pixel tiles (`--tile`) with that many pixels of context on every side, so the tiled result "
            "equals the whole-image result and memory stays bounded."
        ),
        "- Pick the restorer of the median filter the image went through: "
        + ", ".join(f"`{task}` for a {_window(task)} window" for task in RESTORATION_TASKS) + ".",
        (
            "- Each file carries `metadata_props`: model id, task, discriminator, receptive radius, input and output, "
            "training-data digest and cfzoo version."
        ),
    ])


def _training(entries: list[RestorerEntry]) -> str:
    lines = _shared(entries, (
        ("split", lambda entry: (
            f"by device, not by photo (seed {split_of(entry).get('seed', '-')}); train devices: {devices_text(entry, 'train')}; "
            f"test devices: {devices_text(entry, 'test')}"
        ) if split_of(entry) else None),
        ("data", lambda entry: _pairs(entry)),
        ("steps", lambda entry: _hyper(entry).get("steps")),
        ("batch", lambda entry: _batch(entry)),
        ("loss", lambda entry: _loss_weights(entry)),
        ("perceptual features", lambda entry: _hyper(entry).get("perceptual_features")),
        ("optimiser", lambda entry: _optimiser(entry)),
        ("seed", lambda entry: entry.training.get("seed")),
        ("training-data digest (sha256 of the sorted sha256 of the training photos)", lambda entry: _code(entry.training.get("training_data_sha256"))),
    ))
    lines += [
        *([""] if lines else []),
        "| restorer | machine | torch | torch threads | seconds | generator loss first -> last | pixel term first -> last | discriminator loss first -> last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        machine = entry.training.get("machine", {})
        seconds = entry.training.get("training_seconds")
        lines.append(
            f"| `{entry.id}` | {machine_text(machine)} | {machine.get('torch', '-')} | {machine.get('torch_threads', '-')} | "
            f"{'-' if seconds is None else f'{seconds:g}'} | {_loss(entry, 'generator')} | {_loss(entry, 'pixel')} | "
            f"{_loss(entry, 'discriminator')} |"
        )
    devices = distinct(machine_text(entry.training.get("machine", {})) for entry in entries)
    seconds = [entry.training["training_seconds"] for entry in entries if "training_seconds" in entry.training]
    summary = f"Machine: {'; '.join(devices)}{', no GPU' if _cpu_only(entries) else ''}."
    if seconds:
        summary += f" Training time, all restorers: {sum(seconds) / 60:.1f} minutes."
    summary += " The pixel term is MSE(restored, pristine) / MSE(filtered, pristine) on the training crops: 1 means no gain."
    return "\n".join([*lines, "", summary])


def _usage(entries: list[RestorerEntry]) -> str:
    example = entries[-1]  # in Table V order: restorer-median3-vgg when every restorer is here
    task, kind = example.task, example.discriminator
    commands = [
        ('pip install "cfzoo[cpu]"', 'or "cfzoo[gpu]" for CUDA'),
        (f"cfzoo restore filtered.png --task {task} --discriminator {kind} --out restored.png", "one image, tile by tile; lossless PNG"),
        ("cfzoo restore --evaluate --data DIR", "Table V: every detector's TPR before and after, PSNR / SSIM"),
    ]
    width = max(len(command) for command, _ in commands) + 2
    lines = ["```bash", *(f"{command:<{width}}# {comment}" for command, comment in commands), "```", ""]
    lines += [
        "`DIR` is a camera dataset folder (one sub-folder per device); `--evaluate` restores its test devices' patches.",
        "",
        "In Python (onnxruntime, no torch):",
        "",
        "```python",
        "from cfzoo.images import read_rgb",
        "from cfzoo.ops.restore import restore_image",
        "",
        f'restored = restore_image(read_rgb("filtered.png"), "{task}", "{kind}")  # H x W x 3 uint8, CUDA when available',
        "```",
        "",
        f"Or with onnxruntime alone: `onnxruntime.InferenceSession(\"{example.file.name}\").run([\"{RESTORED_OUTPUT}\"], "
        f"{{\"{IMAGE_INPUT}\": image}})` with `image` float32 [N,3,H,W] RGB 0..255.",
    ]
    embedded = [entry.id for entry in entries if entry.embedded]
    if embedded:
        lines += ["", f"Shipped inside the cfzoo package (no download): {', '.join(f'`{i}`' for i in embedded)}."]
    return "\n".join(lines)


def _limits(entries: list[RestorerEntry]) -> str:
    budgets = distinct(_budget(entry) for entry in entries)
    budget = [f"- Trained on a {'CPU' if _cpu_only(entries) else 'small'} budget: {'; '.join(budgets)}."] if budgets else []
    return "\n".join([
        *budget,
        (
            "- The numbers above are image quality only. How far restoration hides median filtering from each detector "
            "(the paper's Table V) is measured with `cfzoo restore --evaluate`; the figures measured so far, beside the "
            "paper's, are in docs/restoration.md of the cfzoo repository."
        ),
        (
            "- Detectors: each generator was trained against its own discriminator only, never against a cfzoo detector; "
            "how far it fools a given detector must be measured, and detectors trained on restored images were not tried."
        ),
        (
            "- Device shift: PSNR and SSIM are measured on the test devices' patches only; other cameras and scene "
            "content will change them."
        ),
        (
            "- Scope: each restorer was trained on images median-filtered with its task's window only; other input "
            "(unfiltered, other filters, other windows, JPEG after filtering) is outside what it was trained on."
        ),
    ])


def _files(entries: list[RestorerEntry]) -> str:
    lines = ["| restorer | file | bytes | sha256 |", "|---|---|---|---|"]
    for entry in entries:
        lines.append(f"| `{entry.id}` | `{MODELS_FOLDER}/{entry.file.name}` | {entry.file.size:,} | `{entry.file.sha256}` |")
    lines += [
        "",
        "Registry: `restorers.json` beside the detectors' `registry.json` in a zoo folder. cfzoo checks every file "
        "against these sha256 before loading it.",
    ]
    return "\n".join(lines)


def _licence(entries: list[RestorerEntry]) -> str:
    devices = sorted({device for entry in entries for device in split_of(entry).get("train", [])})
    photo_licences = distinct(CAMERA_DEVICES[device].licence for device in devices if device in CAMERA_DEVICES)
    text = "cfzoo's code and these model files: MIT."
    if photo_licences and set(devices) <= set(CAMERA_DEVICES):
        sources = distinct(CAMERA_DEVICES[device].source for device in devices)
        text += (
            f" The restorers are trained on photos from {'; '.join(sources)}, whose licences ({', '.join(photo_licences)}) "
            "are recorded per file in the photo set's MANIFEST.csv."
        )
    else:
        text += " The restorers are trained on photos whose licences are those of their data set (see its manifest)."
    return text


# --- helpers ----------------------------------------------------------------------------------------------


def _shared(entries: list[RestorerEntry], facts: tuple[tuple[str, Callable[[RestorerEntry], object]], ...]) -> list[str]:
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
    window = f" random {crop}x{crop} crops, the same window in the filtered and the pristine patch" if crop is not None else " crops"
    return f"{batch}{window}"


def _loss_weights(entry: RestorerEntry) -> str | None:
    weights = _hyper(entry).get("loss_weights")
    if not weights:
        return None
    terms = " + ".join(f"{weights[term]:g} x {term}" for term in ("pixel", "perceptual", "adversarial") if term in weights)
    ramp = weights.get("ramp_fraction")
    ramped = f"; the perceptual and adversarial weights ramp up linearly over the first {ramp:.0%} of the steps" if ramp else ""
    return terms + ramped


def _optimiser(entry: RestorerEntry) -> str | None:
    hyper = _hyper(entry)
    if "optimiser" not in hyper:
        return None
    details = [f"learning rate {hyper['learning_rate']:g}" if "learning_rate" in hyper else None,
               f"warmup_steps {hyper['warmup_steps']}" if "warmup_steps" in hyper else None]
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
