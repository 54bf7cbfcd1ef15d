"""Hugging Face model cards, one per detector family, generated from the zoo registry (no torch).

A card is a ``README.md`` for a Hub model repository: YAML front matter (licence, tags, ``library_name: onnx``,
``pipeline_tag``, and a ``model-index`` with each task's test ACC / FPR / TPR, built with huggingface_hub's own
:class:`~huggingface_hub.ModelCardData`) and a body written from the registry entries' metrics and training
records, the paper's Table I (:mod:`cfzoo.paper`) and every manipulation parameter
(:func:`cfzoo.manipulations.parameter_table`). The same registry always gives the same bytes: nothing in a
card depends on the time, the machine that writes it or dictionary order.

- :func:`family_card` ``(family, registry)`` -> :class:`FamilyCard` (text, models present, tasks missing)
- :func:`write_family_cards` ``(out_dir, families, registry)``: ``<out_dir>/<family>.md``, each written atomically
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cfzoo.cards.card_text import devices_text, distinct, machine_text, split_of, value_text
from cfzoo.errors import CfzooError
from cfzoo.export.onnx_export import CLASS_NAMES, GRADIENT_DEFINITION, detector_file_names
from cfzoo.families import get_family
from cfzoo.files import write_atomically
from cfzoo.manipulations import MANIPULATIONS, TASK_IDS, parameter_table
from cfzoo.paper import FAMILY_TITLES, table1
from cfzoo.patches import PATCH_SIZE
from cfzoo.reports import table1_markdown
from cfzoo.zoo.registry import FAMILY_IDS, ModelEntry, Registry, load_registry

DEFAULT_CARD_DIR = "model_cards"
PAPER_URL = "https://arxiv.org/abs/1808.08426"
PAPER_CITATION = """@inproceedings{gragnaniello2018adversarial,
  title     = {Analysis of Adversarial Attacks against {CNN}-based Image Forgery Detectors},
  author    = {Gragnaniello, Diego and Marra, Francesco and Poggi, Giovanni and Verdoliva, Luisa},
  booktitle = {26th European Signal Processing Conference (EUSIPCO)},
  year      = {2018},
  eprint    = {1808.08426},
  archivePrefix = {arXiv}
}"""
#: FPR above this on the test devices is reported as a limit (percent).
HIGH_FPR = 5.0
#: Accuracy more than this many points below the paper's is reported as a limit.
ACCURACY_GAP = 2.0


@dataclass(frozen=True)
class CameraDevice:
    source: str
    licence: str


#: The photo set cfzoo's published models are trained on (``cameras``: 7 devices, 165 photos). It is not
#: redistributed with cfzoo; its MANIFEST.csv lists every file's source, licence and sha256.
CAMERA_DEVICES = {
    "Apple_iPhone11": CameraDevice("Tech4Tracing/CartridgeOCR (imagesForTesting/)", "MIT"),
    "Google_Pixel5": CameraDevice("Tech4Tracing/CartridgeOCR (imagesForTesting/)", "MIT"),
    "Apple_iPhoneX": CameraDevice("City100 in ngchc/CameraSR (photographs of printed postcards)", "MIT"),
    "Nikon_D5500": CameraDevice("City100 in ngchc/CameraSR (photographs of printed postcards)", "MIT"),
    "Nikon_D200": CameraDevice("Dresden Image Database test data shipped in polimi-ispl/prnu-python", "MIT"),
    "Nikon_D70": CameraDevice("Dresden Image Database test data shipped in polimi-ispl/prnu-python", "MIT"),
    "Nikon_D70s": CameraDevice("Dresden Image Database test data shipped in polimi-ispl/prnu-python", "MIT"),
}


@dataclass(frozen=True)
class FamilyCard:
    family: str
    models: tuple[str, ...]  # ids in the card
    missing_tasks: tuple[str, ...]  # tasks of the family with no registry entry
    text: str

    @property
    def file_name(self) -> str:
        return f"{self.family}.md"


def family_card(family: str, registry: Registry | None = None) -> FamilyCard:
    """The model card of one family, from the registry's entries of that family (default: :func:`load_registry`)."""
    registry = load_registry() if registry is None else registry
    entries = registry.select([family])
    if not entries:
        raise CfzooError(
            f"no {family} models in the registry; train and export some (cfzoo train DATA -f {family} --all, then cfzoo export)"
        )
    present = {entry.task for entry in entries}
    missing = tuple(task for task in TASK_IDS if task not in present)
    text = "---\n" + _front_matter(family, entries) + "\n---\n\n" + _body(family, entries, missing, registry)
    return FamilyCard(family, tuple(entry.id for entry in entries), missing, text)


def write_family_cards(
    out_dir: str | os.PathLike[str], families: Iterable[str] | None = None, registry: Registry | None = None
) -> list[tuple[FamilyCard, Path]]:
    """Write ``<out_dir>/<family>.md`` for each family with models (all families by default, skipping those with
    none; a family named explicitly must have models). Each file appears whole or not at all."""
    registry = load_registry() if registry is None else registry
    families = registry_families(registry) if families is None else list(dict.fromkeys(families))
    cards = [family_card(family, registry) for family in families]  # all of them before writing any
    if not cards:
        raise CfzooError("the registry lists no models; export some with `cfzoo export` first")
    written = []
    for card in cards:
        path = write_atomically(Path(out_dir) / card.file_name, lambda temporary, card=card: temporary.write_bytes(card.text.encode()))
        written.append((card, path))
    return written


def registry_families(registry: Registry) -> list[str]:
    """The families that have at least one model in ``registry``, in the canonical order."""
    present = {entry.family for entry in registry}
    return [family for family in FAMILY_IDS if family in present]


# --- front matter -----------------------------------------------------------------------------------------


def _front_matter(family: str, entries: list[ModelEntry]) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    results = []
    for entry in entries:
        test = entry.metrics.get("test")
        if not test:
            continue
        common = {
            "task_type": "image-classification",
            "task_name": f"Manipulation detection: {MANIPULATIONS[entry.task].title}",
            "dataset_type": "cfzoo-camera-patches",
            "dataset_name": f"{PATCH_SIZE}x{PATCH_SIZE} patches of photos from the test devices ({devices_text(entry, 'test')})",
            "dataset_config": entry.task,
            "dataset_split": "test",
        }
        for metric, name in (
            ("accuracy", "Test accuracy (%)"),
            ("fpr", "False positive rate (%): pristine patches called manipulated"),
            ("tpr", "True positive rate (%): manipulated patches called manipulated"),
        ):
            value = test.get("acc" if metric == "accuracy" else metric)
            if value is not None:
                results.append(EvalResult(**common, metric_type=metric, metric_name=name, metric_value=round(float(value), 2)))
    data = ModelCardData(
        license="mit",
        library_name="onnx",
        pipeline_tag="image-classification",
        tags=["image-forensics", "manipulation-detection", "counter-forensics", "onnx", "cfzoo", family,
              *(f"task-{entry.task}" for entry in entries)],
        metrics=["accuracy"],
        model_name=f"cfzoo-{family}",
        eval_results=results or None,
    )
    return data.to_yaml()


# --- body -------------------------------------------------------------------------------------------------


def _body(family: str, entries: list[ModelEntry], missing: tuple[str, ...], registry: Registry) -> str:
    title = FAMILY_TITLES[family]
    sections = [
        f"# cfzoo {title}: detectors of global image manipulations",
        _introduction(family, entries, missing),
        "## Models\n\n" + _models_table(entries),
        "## What the detector is\n\n" + _architecture(family, entries),
        "## Model contract\n\n" + _contract(family, entries),
        "## Training data\n\n" + _training_data(entries),
        "## Split\n\n" + _split(entries),
        "## Manipulations\n\n" + _manipulations(entries),
        "## Hyper-parameters\n\n" + _hyperparameters(entries),
        "## Table I: measured beside the paper\n\n" + _table1(family, entries),
        "## How the models were trained\n\n" + _training(entries, registry),
        "## Limits\n\n" + _limits(family, entries),
        "## How to use\n\n" + _usage(family, entries),
        "## Files\n\n" + _files(entries),
        "## Licence\n\n" + _licence(entries),
        "## Citation\n\n```bibtex\n" + PAPER_CITATION + "\n```",
    ]
    return "\n\n".join(sections) + "\n"


def _introduction(family: str, entries: list[ModelEntry], missing: tuple[str, ...]) -> str:
    lines = [
        (
            f"{FAMILY_TITLES[family]}: {get_family(family).card.method}. One binary detector per manipulation task: it tells "
            f"{PATCH_SIZE}x{PATCH_SIZE} RGB patches that underwent the manipulation (class 1, `{CLASS_NAMES[1]}`) from "
            f"untouched ones (class 0, `{CLASS_NAMES[0]}`)."
        ),
        "",
        (
            "Trained and exported to ONNX by cfzoo (`pip install cfzoo`), a counter-forensics model zoo that reproduces "
            "Gragnaniello, Marra, Poggi and Verdoliva, [*Analysis of Adversarial Attacks against CNN-based Image Forgery "
            f"Detectors*]({PAPER_URL}) (EUSIPCO 2018). Each detector comes with a gradient companion for adversarial attacks."
        ),
        "",
        f"This card covers {len(entries)} of the {len(TASK_IDS)} tasks.",
    ]
    if missing:
        lines[-1] += (
            f" Not in the registry, so not described here: {', '.join(f'`{task}`' for task in missing)}. "
            f"To add one, train and export it: `cfzoo train DATA -f {family} -t TASK`, then `cfzoo export {family}-TASK`."
        )
    return "\n".join(lines)


def _models_table(entries: list[ModelEntry]) -> str:
    rows = [
        "| model | task | manipulation | group | test ACC % | FPR % | TPR % | TPR % under attack, eps 1 (worst case) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        test, robustness = entry.metrics.get("test", {}), entry.metrics.get(ROBUSTNESS_METRICS, {})
        manipulation = MANIPULATIONS[entry.task]
        rows.append(
            f"| `{entry.id}` | `{entry.task}` | {manipulation.title} | {manipulation.difficulty} | "
            f"{_percent(test.get('acc'))} | {_percent(test.get('fpr'))} | {_percent(test.get('tpr'))} | {_percent(robustness.get('worst_case_tpr'))} |"
        )
    rows.append("")
    rows.append(
        "Percentages on patches of the test devices only (devices never seen in training); FPR counts pristine "
        "patches called manipulated, TPR manipulated patches called manipulated."
    )
    measured = [entry.metrics[ROBUSTNESS_METRICS] for entry in entries if ROBUSTNESS_METRICS in entry.metrics]
    if measured:
        settings = {(int(figures["patches"]), int(figures.get("square_queries", 0))) for figures in measured}
        patches, queries = next(iter(settings)) if len(settings) == 1 else (None, None)
        how = (
            f"on {patches} manipulated test patches per task, Square with {queries} queries" if patches is not None
            else "on the patches and with the Square budget each registry entry records (metrics.robustness_eps1)"
        )
        rows.append("")
        rows.append(
            f"Under attack: the TPR ({how}) once every attack of the battery (FGSM, PGD, APGD-CE, Square) has tried "
            "each patch at eps = 1 gray level: a patch counts as detected only if the detector still calls it "
            "manipulated after every attack (`cfzoo robustness`, docs/robustness.md)."
        )
    return "\n".join(rows)


#: The registry metrics key of the robustness figures (``tools/record_robustness.py`` writes them).
ROBUSTNESS_METRICS = "robustness_eps1"


def _architecture(family: str, entries: list[ModelEntry]) -> str:
    description = get_family(family).card
    architectures = distinct(entry.training.get("hyperparameters", {}).get("architecture") for entry in entries)
    if not architectures and description.architecture:
        architectures = [description.architecture]
    lines = [f"Original method: {description.reference}.", ""]
    if len(architectures) == 1:
        lines.append(f"Architecture as trained here: {architectures[0]}.")
    elif architectures:
        lines.append("Architectures (they differ between models):")
        for architecture in architectures:
            ids = [entry.id for entry in entries if entry.training.get("hyperparameters", {}).get("architecture") == architecture]
            lines.append(f"- {', '.join(f'`{i}`' for i in ids)}: {architecture}")
    else:
        lines.append("The training records do not describe the architecture.")
    return "\n".join(lines)


def _contract(family: str, entries: list[ModelEntry]) -> str:
    scores = distinct(f"{entry.score} > {entry.threshold:g}" for entry in entries)
    decision, companion_note = get_family(family).decision_text(scores), get_family(family).companion_note
    name, gradient_name = detector_file_names("<id>")
    shape = f"[N,3,{PATCH_SIZE},{PATCH_SIZE}]"
    return "\n".join([
        (
            f"- Detector `{name}`: input `image` float32 {shape}, RGB, values 0..255 (not normalised; gray conversion, "
            "scaling and feature extraction are inside the graph); output `logits` float32 [N,2], "
            f"class 0 `{CLASS_NAMES[0]}`, class 1 `{CLASS_NAMES[1]}`. N is dynamic."
        ),
        f"- Decision: {decision} Each model's threshold is in the Files table and in the ONNX `metadata_props`.",
        (
            f"- Gradient companion `{gradient_name}`: inputs `image` (as above) and `label` int64 [N]; outputs `logits` "
            f"and `grad` = {GRADIENT_DEFINITION}, float32 {shape}.{companion_note}"
        ),
        (
            "- Both files carry `metadata_props`: model id, family, task, patch size, threshold, score, class names, "
            "cfzoo version and the training-data digest."
        ),
        f"- Larger images: cut {PATCH_SIZE}x{PATCH_SIZE} patches and combine the patch decisions (`cfzoo detect` does both).",
    ])


def _training_data(entries: list[ModelEntry]) -> str:
    devices = sorted({device for entry in entries for device in split_of(entry).get("train", []) + split_of(entry).get("test", [])})
    known = [device for device in devices if device in CAMERA_DEVICES]
    unknown = [device for device in devices if device not in CAMERA_DEVICES]
    lines = []
    if known:
        lines.append(
            "Pristine photos straight from camera devices (the cameras' own JPEG files, cropped losslessly, or the source "
            "data set's original PNG files); manipulated patches are made from them by cfzoo. By device:"
        )
        lines.append("")
        lines.append("| device | source | licence |")
        lines.append("|---|---|---|")
        for device in known:
            lines.append(f"| {device} | {CAMERA_DEVICES[device].source} | {CAMERA_DEVICES[device].licence} |")
        lines.append("")
        lines.append(
            "The photo set is not redistributed with cfzoo; its `MANIFEST.csv` lists every file with its source "
            "repository and path, licence, size, estimated JPEG quality and sha256. The models here are trained on "
            "those photos."
        )
    if unknown:
        lines.append(
            f"cfzoo does not know the source of the photos of {', '.join(unknown)}; their licences are those of the "
            "data set they come from (see its manifest)."
        )
    digests = distinct(entry.training.get("training_data_sha256") for entry in entries)
    if digests:
        lines.append("")
        lines.append(
            "Training-data digest (sha256 of the concatenated, sorted sha256 of the training photos; also in each ONNX file's "
            "metadata): " + ", ".join(f"`{digest}`" for digest in digests) + "."
        )
    return "\n".join(lines)


def _split(entries: list[ModelEntry]) -> str:
    lines = []
    splits = distinct(json.dumps(split_of(entry), sort_keys=True) for entry in entries)
    for payload in splits:
        split = json.loads(payload)
        ids = [entry.id for entry in entries if json.dumps(split_of(entry), sort_keys=True) == payload]
        scope = "All models" if len(splits) == 1 else ", ".join(f"`{i}`" for i in ids)
        seed = f" (seed {split['seed']})" if "seed" in split else ""
        lines.append(
            f"{scope}: devices are split, not photos{seed}. Train devices: {', '.join(split.get('train', [])) or 'not recorded'}; "
            f"test devices: {', '.join(split.get('test', [])) or 'not recorded'}."
        )
    lines.append("")
    lines.append(
        f"Patches: {PATCH_SIZE}x{PATCH_SIZE}, drawn per photo on an 8-pixel lattice (aligned with the JPEG block grid); "
        "each manipulation is applied to the whole photo, then the pristine and manipulated patches are cut at the same positions."
    )
    lines.append("")
    lines.append("| model | train patches | test patches | test pristine | test manipulated |")
    lines.append("|---|---|---|---|---|")
    for entry in entries:
        test = entry.metrics.get("test", {})
        lines.append(
            f"| `{entry.id}` | {_count(entry.training.get('train_patches'))} | {_count(entry.training.get('test_patches'))} | "
            f"{_count(test.get('pristine'))} | {_count(test.get('manipulated'))} |"
        )
    return "\n".join(lines)


def _manipulations(entries: list[ModelEntry]) -> str:
    rows = {row["task"]: row for row in parameter_table()}
    lines = ["Every free parameter of the manipulations, as cfzoo applies them (`cfzoo.manipulations.parameter_table()`):", ""]
    for entry in entries:
        row = rows[entry.task]
        parameters = {key: value for key, value in row.items() if key not in ("task", "manipulation", "difficulty")}
        details = "; ".join(f"{key.replace('_', ' ')}: {value_text(value)}" for key, value in parameters.items())
        lines.append(f"- `{entry.task}`, {row['manipulation']} ({row['difficulty']}): {details}.")
    return "\n".join(lines)


def _hyperparameters(entries: list[ModelEntry]) -> str:
    groups = distinct(json.dumps(_hyper_without_architecture(entry), sort_keys=True) for entry in entries)
    lines = []
    for payload in groups:
        hyper = json.loads(payload)
        ids = [entry.id for entry in entries if json.dumps(_hyper_without_architecture(entry), sort_keys=True) == payload]
        scope = "All models" if len(groups) == 1 else ", ".join(f"`{i}`" for i in ids)
        lines.append(f"{scope}:" if hyper else f"{scope}: not recorded.")
        lines.extend(f"- {key.replace('_', ' ')}: {value_text(value)}" for key, value in hyper.items())
        lines.append("")
    seeds = distinct(str(entry.training["seed"]) for entry in entries if "seed" in entry.training)
    if seeds:
        lines.append(f"Seed: {', '.join(seeds)} (patch positions, the split, initialisation and batch order).")
    return "\n".join(lines).rstrip()


def _table1(family: str, entries: list[ModelEntry]) -> str:
    rows = [{"family": family, "task": entry.task, **entry.metrics["test"]} for entry in entries if entry.metrics.get("test")]
    if not rows:
        return "No test metrics are recorded for these models."
    note = (
        "The paper cut its patches from 200 photos of each of 9 devices; the numbers here come from far fewer photos "
        "and devices (see Split), so they show whether the paper's findings hold, not a like-for-like comparison."
    )
    return table1_markdown(rows, [family]) + "\n\n" + note


def _training(entries: list[ModelEntry], registry: Registry) -> str:
    lines = ["| model | machine | torch | seconds | loss first -> last | train patches used |", "|---|---|---|---|---|---|"]
    reduced = []
    for entry in entries:
        machine = entry.training.get("machine", {})
        loss = entry.training.get("loss", {})
        losses = f"{loss['first']:.3f} -> {loss['last']:.3f}" if "first" in loss and "last" in loss else "-"
        used = entry.training.get("train_patches")
        full = _full_training_set(entry, registry)
        if used is not None and full is not None and used < full:
            reduced.append(entry)
            share = f"{used:,} of {full:,}"
        else:
            share = _count(used)
        seconds = entry.training.get("training_seconds")
        lines.append(
            f"| `{entry.id}` | {machine_text(machine)} | {machine.get('torch', '-')} | "
            f"{'-' if seconds is None else f'{seconds:g}'} | {losses} | {share} |"
        )
    devices = distinct(machine_text(entry.training.get("machine", {})) for entry in entries)
    lines.append("")
    if devices:
        no_gpu = ", no GPU" if all(device.startswith("CPU") for device in devices) else ""
        lines.append(f"Machine: {'; '.join(devices)}{no_gpu}.")
    transported = [entry for entry in entries if entry.training.get("weights_transport")]
    if transported:
        lines.append(
            f"{', '.join(f'`{entry.id}`' for entry in transported)}: the weights came back from the training machine as "
            f"{transported[0].training['weights_transport']}; the published graphs are of those weights, and their "
            "metrics above were measured on them."
        )
    if reduced:
        lines.append(
            f"{', '.join(f'`{entry.id}`' for entry in reduced)} trained on a reduced set: a seeded, class-balanced "
            "subset of the training patches other models of the same task and photos used in full, to fit the "
            "machine's time budget; expect lower accuracy than with the full set."
        )
    total = sum(entry.training.get("training_seconds", 0) for entry in entries)
    lines.append(f"Training time, all models: {total / 60:.1f} minutes. Scores on the test devices were measured once, after training.")
    return "\n".join(lines)


def _limits(family: str, entries: list[ModelEntry]) -> str:
    high_fpr = [entry for entry in entries if entry.metrics.get("test", {}).get("fpr", 0) > HIGH_FPR]
    below_paper = []
    for entry in entries:
        ours, paper = entry.metrics.get("test", {}).get("acc"), table1(entry.task, family)
        if ours is not None and paper and paper["acc"] - ours > ACCURACY_GAP:
            below_paper.append(f"`{entry.task}` ({ours:.2f} against {paper['acc']:.2f})")
    lines = [
        (
            "- Device shift: train and test devices are disjoint, and the figures above are measured on the test devices; "
            "cameras, processing pipelines and scene content unlike all of these will change them."
        )
    ]
    if high_fpr:
        lines.append(
            f"- False alarms: FPR above {HIGH_FPR:g} % on the test devices for "
            + ", ".join(f"`{entry.task}` ({entry.metrics['test']['fpr']:.2f} %)" for entry in high_fpr)
            + "; these detectors call many untouched patches of unseen cameras manipulated."
        )
    if below_paper:
        lines.append(
            f"- Below the paper: test accuracy more than {ACCURACY_GAP:g} points under the paper's for " + ", ".join(below_paper) + "."
        )
    tasks = {entry.task for entry in entries}
    if "jpeg90" in tasks:
        lines.append(
            "- JPEG Q90: pristine camera photos are usually JPEGs already (in this photo set, estimated qualities from "
            "about 27 to 99), so compressing once more at Q90 changes them little; expect false positives on JPEG input."
        )
    noise_trained = [entry for entry in entries if entry.training.get("hyperparameters", {}).get("pristine_noise")]
    if noise_trained:
        lines.append(
            "- Noise: " + ", ".join(f"`{entry.id}`" for entry in noise_trained) + " learned from pristine patches with "
            "added noise that noise is not a manipulation, so they do not call noisy photos manipulated; the flip side is "
            "that noise added after a manipulation (a few gray levels) can hide it from them."
        )
    if tasks & {"resize1.5", "resize1.01"}:
        zoom_trained = [f"`{entry.id}`" for entry in entries if entry.training.get("zoomed_train_photos")]
        kept = (
            " (only from the test sets for " + ", ".join(zoom_trained) + ": their train sets kept them, as pristine and "
            "as resized, to teach the task's own resampling rather than resampling in general)"
        ) if zoom_trained else ""
        lines.append(
            "- Resizing: photos the camera had already upsampled (EXIF DigitalZoomRatio > 1) were left out of the resize "
            f"patch sets{kept}; such photos look resampled to these detectors."
        )
    lines += [
        (
            "- Scope: each model detects one global manipulation with the exact parameters listed above, on "
            f"{PATCH_SIZE}x{PATCH_SIZE} patches; other strengths, chains of manipulations and local edits (splicing, "
            "copy-move) are outside what it was trained on."
        ),
        (
            "- Adversarial noise: the paper shows that FGSM noise with epsilon = 1 (PSNR 48 dB) makes CNN detectors miss "
            "most manipulations; the gradient companions exist to measure exactly that (`cfzoo attack`). Do not treat a "
            "`pristine` answer as proof against a deliberate attacker."
        ),
    ]
    return "\n".join(lines)


def _usage(family: str, entries: list[ModelEntry]) -> str:
    example = entries[0]
    pulled = [entry for entry in entries if not entry.embedded and entry.hub is not None]
    commands = [('pip install "cfzoo[cpu]"', 'or "cfzoo[gpu]" for CUDA')]
    if pulled:
        commands.append((f"cfzoo pull {pulled[0].id}", "download the files and check their sha256"))
    commands += [
        (f"cfzoo list --family {family}", "the models, their accuracy and where their files are"),
        (f"cfzoo detect photo.jpg -f {family}", "this family's detectors on a photo: manipulated or not, per task"),
    ]
    width = max(len(command) for command, _ in commands) + 2
    lines = ["```bash", *(f"{command:<{width}}# {comment}" for command, comment in commands)]
    lines += [
        "```",
        "",
        "In Python (onnxruntime, no torch):",
        "",
        "```python",
        "import numpy as np",
        "from cfzoo.zoo import load_detector",
        "",
        f'detector = load_detector("{example.id}")  # CUDA when available, else the CPU',
        f"patches = np.zeros((4, 3, {PATCH_SIZE}, {PATCH_SIZE}), np.float32)  # RGB 0..255, [N,3,{PATCH_SIZE},{PATCH_SIZE}]",
        "manipulated = detector.probability(patches) > detector.threshold",
        "```",
        "",
        "Or with onnxruntime alone: `onnxruntime.InferenceSession(\"" + detector_file_names(example.id)[0]
        + "\").run([\"logits\"], {\"image\": patches})`.",
    ]
    embedded = [entry.id for entry in entries if entry.embedded]
    if embedded:
        lines.append("")
        lines.append(f"Shipped inside the cfzoo package (no download): {', '.join(f'`{i}`' for i in embedded)}.")
    return "\n".join(lines)


def _files(entries: list[ModelEntry]) -> str:
    lines = ["| model | file | bytes | sha256 | threshold on score |", "|---|---|---|---|---|"]
    for entry in entries:
        for kind in sorted(entry.files, key=lambda kind: (kind != "detector", kind)):
            file = entry.files[kind]
            threshold = f"{entry.threshold:g} on {entry.score}" if kind == "detector" else "-"
            lines.append(f"| `{entry.id}` | `{file.path_in_zoo}` | {file.size:,} | `{file.sha256}` | {threshold} |")
    hubs = distinct(f"`{entry.hub.repo_id}` at revision `{entry.hub.revision}`" for entry in entries if entry.hub)
    lines.append("")
    if hubs:
        lines.append(f"Hugging Face Hub: {'; '.join(hubs)}, same layout (`registry.json`, `models/`).")
    lines.append("cfzoo checks every file against these sha256 before loading it.")
    return "\n".join(lines)


def _licence(entries: list[ModelEntry]) -> str:
    devices = {device for entry in entries for device in split_of(entry).get("train", [])}
    photo_licences = distinct(CAMERA_DEVICES[device].licence for device in sorted(devices) if device in CAMERA_DEVICES)
    text = "cfzoo's code and these model files: MIT."
    if photo_licences and devices <= set(CAMERA_DEVICES):
        text += (
            f" The models are trained on the photos listed above, whose licences ({', '.join(photo_licences)}) are "
            "recorded per file in the photo set's MANIFEST.csv."
        )
    else:
        text += " The models are trained on photos whose licences are those of their data set (see its manifest)."
    return text


# --- helpers ----------------------------------------------------------------------------------------------


def _hyper_without_architecture(entry: ModelEntry) -> dict:
    return {key: value for key, value in entry.training.get("hyperparameters", {}).items() if key != "architecture"}


def _full_training_set(entry: ModelEntry, registry: Registry) -> int | None:
    """The most training patches any model of the same task and photos used: the full set, as far as the registry knows."""
    digest = entry.training.get("training_data_sha256")
    if not digest:
        return None
    same_photos = [other for other in registry if other.task == entry.task and other.training.get("training_data_sha256") == digest]
    counts = [other.training["train_patches"] for other in same_photos if "train_patches" in other.training]
    return max(counts) if counts else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
