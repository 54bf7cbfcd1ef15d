"""The Hugging Face model card of a conclusion model (:mod:`cfzoo.zoo.conclusions`), generated from its registry
entry (no torch): YAML front matter with a ``model-index`` (test top-1 accuracy and expected calibration error, on
the test devices as they are and re-saved as JPEG) and a body with the confusion matrix, per-class precision and
recall, the naive rule beside it, the detectors it reads and when it gives no answer. The same entry always gives
the same bytes."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from cfzoo.cards.card_text import render_card
from cfzoo.cards.model_cards import PAPER_URL
from cfzoo.files import write_atomically
from cfzoo.manipulations import MANIPULATIONS
from cfzoo.zoo.conclusions import DISTANCE_OUTPUT, EVIDENCE_INPUT, PROBABILITIES_OUTPUT, ConclusionEntry
from cfzoo.zoo.registry import MODELS_FOLDER

#: The measurements a card shows, in order: metrics key -> what it was measured on.
MEASURED_ON = {
    "test": "test devices, images as made",
    "test_jpeg90": "test devices, images re-saved as JPEG Q 90 afterwards",
    "train": "train devices (the rows it was fitted on)",
}


def conclusion_card(entry: ConclusionEntry) -> str:
    return render_card("conclusion.md.j2", _card_data(entry), **_fields(entry))


def write_conclusion_card(out_dir: str | os.PathLike[str], entry: ConclusionEntry) -> Path:
    """Write ``<out_dir>/<id>.md``; it appears whole or not at all."""
    text = conclusion_card(entry)
    return write_atomically(Path(out_dir) / f"{entry.id}.md", lambda temporary: temporary.write_bytes(text.encode()))


def _title(name: str) -> str:
    return "none of the eight" if name == "none" else MANIPULATIONS[name].title


def _card_data(entry: ConclusionEntry) -> ModelCardData:
    results = []
    for key, what in MEASURED_ON.items():
        measured = entry.metrics.get(key)
        if not measured or key == "train":
            continue
        common = {
            "task_type": "image-classification",
            "task_name": "Which global manipulation was applied to an image (nine classes)",
            "dataset_type": "cfzoo-camera-images",
            "dataset_name": f"{measured['images']} images from {measured['photos']} photos of {', '.join(measured['devices'])}: {what}",
            "dataset_config": key,
            "dataset_split": "test",
        }
        results.append(
            EvalResult(
                **common,
                metric_type="accuracy",
                metric_name="top-1 accuracy",
                metric_value=round(measured["accuracy"], 4),
            )
        )
        results.append(
            EvalResult(
                **common,
                metric_type="ece",
                metric_name="expected calibration error (top label, 10 bins)",
                metric_value=round(measured["expected_calibration_error"], 4),
            )
        )
    return ModelCardData(
        license="mit",
        library_name="onnx",
        pipeline_tag="tabular-classification",
        tags=["image-forensics", "calibration", "onnx", "cfzoo", "scikit-learn"],
        metrics=["accuracy", "ece"],
        model_name=entry.id,
        eval_results=results or None,
    )


def _fields(entry: ConclusionEntry) -> dict:
    measured = []
    for key, what in MEASURED_ON.items():
        found = entry.metrics.get(key)
        if not found:
            continue
        measured.append(
            {
                "key": key,
                "what": what,
                "images": found["images"],
                "photos": found["photos"],
                "accuracy": f"{found['accuracy']:.1%}",
                "naive": f"{found['naive_rule']['accuracy']:.1%}",
                "ece": f"{found['expected_calibration_error']:.1%}",
                "unfamiliar": f"{found['unfamiliar_share']:.1%}",
                "uncertain": f"{found['uncertain_share']:.1%}",
                "confident_accuracy": "-"
                if found["confident_accuracy"] is None
                else f"{found['confident_accuracy']:.1%}",
                "confusion": found["confusion"],
                "per_class": [
                    {
                        "name": name,
                        "precision": "-" if found["precision"][name] is None else f"{found['precision'][name]:.0%}",
                        "recall": "-" if found["recall"][name] is None else f"{found['recall'][name]:.0%}",
                    }
                    for name in entry.classes
                ],
            }
        )
    training = entry.training
    return {
        "entry": entry,
        "paper_url": PAPER_URL,
        "classes": [{"name": name, "title": _title(name)} for name in entry.classes],
        "models": list(entry.models.items()),
        "measured": measured,
        "training": training,
        "path": f"{MODELS_FOLDER}/{entry.file.name}",
        "evidence_input": EVIDENCE_INPUT,
        "probabilities_output": PROBABILITIES_OUTPUT,
        "distance_output": DISTANCE_OUTPUT,
        "feature_count": entry.feature_count,
    }
