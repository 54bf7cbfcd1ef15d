"""Hugging Face model cards, one per detector family, generated from the zoo registry (no torch).

A card is a ``README.md`` for a Hub model repository: YAML front matter (licence, tags, ``library_name: onnx``,
``pipeline_tag``, and a ``model-index`` with each task's test ACC / FPR / TPR, built with huggingface_hub's own
:class:`~huggingface_hub.ModelCardData`) and a body written from the registry entries' metrics and training
records, the paper's Table I (:mod:`cfzoo.paper`) and every manipulation parameter
(:func:`cfzoo.manipulations.parameter_table`). The same registry always gives the same bytes: nothing in a
card depends on the time, the machine that writes it or dictionary order.

- :func:`family_card` ``(family, registry)`` -> :class:`FamilyCard` (text, models present, tasks missing)
- :func:`write_family_cards` ``(out_dir, families, registry)``: ``<out_dir>/<family>.md``, each written atomically
- :func:`zoo_card` ``(repo_id, entries, family_card_names)``: a published zoo's ``README.md``

The text comes from Jinja templates in ``cfzoo/cards/templates`` (``detector_family.md.j2``, ``zoo_readme.md.j2``)
filled with fields computed here; :func:`cfzoo.cards.card_text.render_card` renders them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from cfzoo.cards.card_text import devices_text, distinct, machine_text, render_card, split_of, value_text
from cfzoo.errors import CfzooError
from cfzoo.export.onnx_export import CLASS_NAMES, GRADIENT_DEFINITION, detector_file_names
from cfzoo.families import get_family
from cfzoo.files import write_atomically
from cfzoo.manipulations import MANIPULATIONS, TASK_IDS, parameter_table
from cfzoo.paper import FAMILY_TITLES, table1
from cfzoo.patches import PATCH_SIZE
from cfzoo.reports import table1_markdown
from cfzoo.results import Table1Cell
from cfzoo.zoo.hub import MODEL_CARDS_FOLDER
from cfzoo.zoo.registry import FAMILY_IDS, STANDARD_VARIANT, ModelEntry, Registry, load_registry

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
    text = render_card(
        "detector_family.md.j2", _card_data(family, entries), **_fields(family, entries, missing, registry)
    )
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
        path = write_atomically(
            Path(out_dir) / card.file_name, lambda temporary, card=card: temporary.write_bytes(card.text.encode())
        )
        written.append((card, path))
    return written


def zoo_card(repo_id: str, entries: list[ModelEntry], family_card_names: list[str]) -> str:
    """The Hub repo's ``README.md`` for a published zoo without a card of its own: its models and links to the family
    cards (``model_cards/<family>.md``); :func:`cfzoo.zoo.hub.publish` takes it as ``zoo_card``."""
    models = []
    for entry in entries:
        test = entry.metrics.get("test", {})
        figures = [
            f"{test[key]:.2f}" if isinstance(test.get(key), (int, float)) else "-" for key in ("acc", "tpr", "fpr")
        ]
        models.append({"id": entry.id, "family": entry.family, "task": entry.task, "figures": figures})
    card_data = ModelCardData(
        license="mit",
        library_name="onnx",
        tags=["image-forensics", "counter-forensics", "manipulation-detection", "onnx", "cfzoo"],
    )
    return render_card(
        "zoo_readme.md.j2",
        card_data,
        repo_id=repo_id,
        paper_url=PAPER_URL,
        patch=PATCH_SIZE,
        models=models,
        card_links=[f"[{name.removesuffix('.md')}]({MODEL_CARDS_FOLDER}/{name})" for name in family_card_names],
        example=entries[0].id,
    )


def registry_families(registry: Registry) -> list[str]:
    """The families that have at least one model in ``registry``, in the canonical order."""
    present = {entry.family for entry in registry}
    return [family for family in FAMILY_IDS if family in present]


# --- front matter -----------------------------------------------------------------------------------------


def _card_data(family: str, entries: list[ModelEntry]) -> ModelCardData:
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
                results.append(
                    EvalResult(**common, metric_type=metric, metric_name=name, metric_value=round(float(value), 2))
                )
    return ModelCardData(
        license="mit",
        library_name="onnx",
        pipeline_tag="image-classification",
        tags=[
            "image-forensics",
            "manipulation-detection",
            "counter-forensics",
            "onnx",
            "cfzoo",
            family,
            *(f"task-{entry.task}" for entry in entries),
        ],
        metrics=["accuracy"],
        model_name=f"cfzoo-{family}",
        eval_results=results or None,
    )


# --- the template's fields ---------------------------------------------------------------------------------

#: The registry metrics keys of the robustness figures, hiding (TPR) and framing (FPR) at eps 1
#: (``tools/record_robustness.py`` writes them).
ROBUSTNESS_METRICS, FRAMING_METRICS = "robustness_eps1", "framing_eps1"
#: The registry metrics key of the worst-case TPR at each eps and the TPR after recompression (the variants' table).
ROBUSTNESS_SUMMARY = "robustness_summary"


def _fields(family: str, entries: list[ModelEntry], missing: tuple[str, ...], registry: Registry) -> dict:
    """What ``templates/detector_family.md.j2`` shows, computed from the registry entries."""
    detector_file, gradient_file = detector_file_names("<id>")
    family_object = get_family(family)
    return {
        "family": family,
        "title": FAMILY_TITLES[family],
        "method": family_object.card.method,
        "reference": family_object.card.reference,
        "patch": PATCH_SIZE,
        "shape": f"[N,3,{PATCH_SIZE},{PATCH_SIZE}]",
        "class_names": CLASS_NAMES,
        "paper_url": PAPER_URL,
        "citation": PAPER_CITATION,
        "task_count": len(TASK_IDS),
        "missing": missing,
        "tasks": {entry.task for entry in entries},
        "models": [_model_row(entry) for entry in entries],
        "robustness": _robustness_setting(entries, ROBUSTNESS_METRICS),
        "framing": _robustness_setting(entries, FRAMING_METRICS),
        "variants": _variants(family, registry),
        "architectures": _architectures(family_object.card.architecture, entries),
        "detector_file": detector_file,
        "gradient_file": gradient_file,
        "gradient_definition": GRADIENT_DEFINITION,
        "decision": family_object.decision_text(distinct(f"{entry.score} > {entry.threshold:g}" for entry in entries)),
        "companion_note": family_object.companion_note,
        **_training_data(entries),
        "splits": _splits(entries),
        "manipulations": _manipulations(entries),
        "hyperparameters": _hyperparameters(entries),
        "seeds": distinct(str(entry.training["seed"]) for entry in entries if "seed" in entry.training),
        "table1": _table1(family, entries),
        **_training(entries, registry),
        **_limits(family, entries),
        **_usage(family, entries),
        "files": _files(entries),
        "hubs": distinct(f"`{entry.hub.repo_id}` at revision `{entry.hub.revision}`" for entry in entries if entry.hub),
        "photo_licences": _photo_licences(entries),
    }


def _model_row(entry: ModelEntry) -> dict:
    test, robustness = entry.metrics.get("test", {}), entry.metrics.get(ROBUSTNESS_METRICS, {})
    framing = entry.metrics.get(FRAMING_METRICS, {})
    manipulation = MANIPULATIONS[entry.task]
    return {
        "id": entry.id,
        "task": entry.task,
        "title": manipulation.title,
        "difficulty": manipulation.difficulty,
        "acc": _percent(test.get("acc")),
        "fpr": _percent(test.get("fpr")),
        "tpr": _percent(test.get("tpr")),
        "worst_case": _percent(robustness.get("worst_case_tpr")),
        "framed": _percent(framing.get("worst_case_fpr")),
        "train_patches": _count(entry.training.get("train_patches")),
        "test_patches": _count(entry.training.get("test_patches")),
        "test_pristine": _count(test.get("pristine")),
        "test_manipulated": _count(test.get("manipulated")),
    }


def _variants(family: str, registry: Registry) -> list[dict]:
    """One row per model of each task that has a variant besides the standard one (standard first): clean figures,
    the laundered test set's ACC, the worst-case TPR by eps and the TPR after recompression (``robustness_summary``)."""
    entries = registry.select([family], variants=None)
    varied = {entry.task for entry in entries if entry.variant != STANDARD_VARIANT}
    rows = []
    for entry in entries:
        if entry.task not in varied:
            continue
        test, summary = entry.metrics.get("test", {}), entry.metrics.get(ROBUSTNESS_SUMMARY, {})
        seconds = entry.training.get("training_seconds")
        rows.append(
            {
                "id": entry.id,
                "task": entry.task,
                "variant": entry.variant,
                "acc": _percent(test.get("acc")),
                "fpr": _percent(test.get("fpr")),
                "laundered_acc": _percent(entry.metrics.get("test_wild", {}).get("acc")),
                "worst_case": [_percent(summary.get(f"worst_case_tpr_eps{eps}")) for eps in (1, 2, 4)],
                "recompressed": [_percent(summary.get(f"recompressed_tpr_q{quality}")) for quality in (95, 90, 80)],
                "attacked_recompressed": _percent(summary.get("attacked_recompressed_tpr_q80")),
                "minutes": "-" if seconds is None else f"{seconds / 60:.1f}",
            }
        )
    return rows


def _robustness_setting(entries: list[ModelEntry], key: str) -> dict | None:
    """The patches and Square budget of the robustness figures recorded under ``key`` (None each where they
    differ); None without any."""
    measured = [entry.metrics[key] for entry in entries if key in entry.metrics]
    if not measured:
        return None
    settings = {(int(figures["patches"]), int(figures.get("square_queries", 0))) for figures in measured}
    patches, queries = next(iter(settings)) if len(settings) == 1 else (None, None)
    return {"patches": patches, "queries": queries}


def _architectures(described: str | None, entries: list[ModelEntry]) -> list[dict]:
    """Each architecture the training records describe, with the models of it (the family's own text if none does)."""
    recorded = distinct(entry.training.get("hyperparameters", {}).get("architecture") for entry in entries)
    if not recorded:
        return [] if described is None else [{"text": described, "ids": [entry.id for entry in entries]}]
    return [
        {
            "text": text,
            "ids": [
                entry.id for entry in entries if entry.training.get("hyperparameters", {}).get("architecture") == text
            ],
        }
        for text in recorded
    ]


def _training_data(entries: list[ModelEntry]) -> dict:
    devices = sorted(
        {device for entry in entries for device in split_of(entry).get("train", []) + split_of(entry).get("test", [])}
    )
    return {
        "known_devices": [
            {"name": device, "source": CAMERA_DEVICES[device].source, "licence": CAMERA_DEVICES[device].licence}
            for device in devices
            if device in CAMERA_DEVICES
        ],
        "unknown_devices": [device for device in devices if device not in CAMERA_DEVICES],
        "digests": distinct(entry.training.get("training_data_sha256") for entry in entries),
    }


def _grouped(entries: list[ModelEntry], fact) -> list[tuple[dict, str]]:
    """The distinct values of ``fact(entry)`` (a dict), each with its scope: "All models" when every entry shares it,
    else the ids of those that do."""
    by_value: dict[str, list[str]] = {}
    for entry in entries:
        by_value.setdefault(json.dumps(fact(entry), sort_keys=True), []).append(entry.id)
    return [
        (json.loads(payload), "All models" if len(by_value) == 1 else ", ".join(f"`{i}`" for i in ids))
        for payload, ids in by_value.items()
    ]


def _splits(entries: list[ModelEntry]) -> list[dict]:
    return [
        {
            "scope": scope,
            "seed": split.get("seed"),
            "train": ", ".join(split.get("train", [])) or "not recorded",
            "test": ", ".join(split.get("test", [])) or "not recorded",
        }
        for split, scope in _grouped(entries, split_of)
    ]


def _manipulations(entries: list[ModelEntry]) -> list[dict]:
    rows = {row["task"]: row for row in parameter_table()}
    described = []
    for entry in entries:
        row = rows[entry.task]
        parameters = {key: value for key, value in row.items() if key not in ("task", "manipulation", "difficulty")}
        details = "; ".join(f"{key.replace('_', ' ')}: {value_text(value)}" for key, value in parameters.items())
        described.append(
            {"task": entry.task, "name": row["manipulation"], "difficulty": row["difficulty"], "details": details}
        )
    return described


def _hyperparameters(entries: list[ModelEntry]) -> list[dict]:
    """Groups of models that share their hyper-parameters (the architecture aside): scope and (name, value) pairs."""
    return [
        {"scope": scope, "settings": [(key.replace("_", " "), value_text(value)) for key, value in hyper.items()]}
        for hyper, scope in _grouped(entries, _hyper_without_architecture)
    ]


def _table1(family: str, entries: list[ModelEntry]) -> str | None:
    rows = [
        Table1Cell(
            family=family,
            task=entry.task,
            **{metric: entry.metrics["test"][metric] for metric in ("fpr", "tpr", "acc")},
        )
        for entry in entries
        if entry.metrics.get("test")
    ]
    return table1_markdown(rows, [family]) if rows else None


def _training(entries: list[ModelEntry], registry: Registry) -> dict:
    runs, reduced = [], []
    for entry in entries:
        machine = entry.training.get("machine", {})
        loss = entry.training.get("loss", {})
        used = entry.training.get("train_patches")
        full = _full_training_set(entry, registry)
        if used is not None and full is not None and used < full:
            reduced.append(entry.id)
            share = f"{used:,} of {full:,}"
        else:
            share = _count(used)
        seconds = entry.training.get("training_seconds")
        runs.append(
            {
                "id": entry.id,
                "machine": machine_text(machine),
                "torch": machine.get("torch", "-"),
                "seconds": "-" if seconds is None else f"{seconds:g}",
                "loss": f"{loss['first']:.3f} -> {loss['last']:.3f}" if "first" in loss and "last" in loss else "-",
                "patches": share,
            }
        )
    machines = distinct(machine_text(entry.training.get("machine", {})) for entry in entries)
    transported = [entry for entry in entries if entry.training.get("weights_transport")]
    return {
        "training": runs,
        "machines": machines,
        "cpu_only": all(machine.startswith("CPU") for machine in machines),
        "transported": [entry.id for entry in transported],
        "transport": transported[0].training["weights_transport"] if transported else None,
        "reduced": reduced,
        "training_minutes": sum(entry.training.get("training_seconds", 0) for entry in entries) / 60,
    }


def _limits(family: str, entries: list[ModelEntry]) -> dict:
    below_paper = []
    for entry in entries:
        ours, paper = entry.metrics.get("test", {}).get("acc"), table1(entry.task, family)
        if ours is not None and paper and paper["acc"] - ours > ACCURACY_GAP:
            below_paper.append(f"`{entry.task}` ({ours:.2f} against {paper['acc']:.2f})")
    return {
        "high_fpr": [
            f"`{entry.task}` ({entry.metrics['test']['fpr']:.2f} %)"
            for entry in entries
            if entry.metrics.get("test", {}).get("fpr", 0) > HIGH_FPR
        ],
        "high_fpr_limit": f"{HIGH_FPR:g}",
        "below_paper": below_paper,
        "accuracy_gap": f"{ACCURACY_GAP:g}",
        "noise_trained": [
            entry.id for entry in entries if entry.training.get("hyperparameters", {}).get("pristine_noise")
        ],
        "zoom_trained": [entry.id for entry in entries if entry.training.get("zoomed_train_photos")],
    }


def _usage(family: str, entries: list[ModelEntry]) -> dict:
    example = entries[0]
    pulled = [entry for entry in entries if not entry.embedded and entry.hub is not None]
    commands = [('pip install "cfzoo[cpu]"', 'or "cfzoo[gpu]" for CUDA')]
    if pulled:
        commands.append((f"cfzoo pull {pulled[0].id}", "download the files and check their sha256"))
    commands += [
        (f"cfzoo list --family {family}", "the models, their accuracy and where their files are"),
        (f"cfzoo detect photo.jpg -f {family}", "this family's detectors on a photo: manipulated or not, per task"),
    ]
    return {
        "commands": commands,
        "command_width": max(len(command) for command, _ in commands) + 2,
        "example": example.id,
        "example_file": detector_file_names(example.id)[0],
        "embedded": [entry.id for entry in entries if entry.embedded],
    }


def _files(entries: list[ModelEntry]) -> list[dict]:
    return [
        {
            "id": entry.id,
            "path": entry.files[kind].path_in_zoo,
            "size": entry.files[kind].size,
            "sha256": entry.files[kind].sha256,
            "threshold": f"{entry.threshold:g} on {entry.score}" if kind == "detector" else "-",
        }
        for entry in entries
        for kind in sorted(entry.files, key=lambda kind: (kind != "detector", kind))
    ]


def _photo_licences(entries: list[ModelEntry]) -> list[str]:
    """The licences of the training photos when cfzoo knows every training device's source, else none."""
    devices = {device for entry in entries for device in split_of(entry).get("train", [])}
    if not devices <= set(CAMERA_DEVICES):
        return []
    return distinct(CAMERA_DEVICES[device].licence for device in sorted(devices))


# --- helpers ----------------------------------------------------------------------------------------------


def _hyper_without_architecture(entry: ModelEntry) -> dict:
    return {key: value for key, value in entry.training.get("hyperparameters", {}).items() if key != "architecture"}


def _full_training_set(entry: ModelEntry, registry: Registry) -> int | None:
    """The most training patches any model of the same task and photos used: the full set, as far as the registry knows."""
    digest = entry.training.get("training_data_sha256")
    if not digest:
        return None
    same_photos = [
        other for other in registry if other.task == entry.task and other.training.get("training_data_sha256") == digest
    ]
    counts = [other.training["train_patches"] for other in same_photos if "train_patches" in other.training]
    return max(counts) if counts else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
