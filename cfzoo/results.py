"""Typed results: what cfzoo's measurements return in Python and write as JSON.

Each document is a pydantic model; its JSON is :meth:`Result.to_json` and carries a schema version. Fields
declared with :func:`absent_when_none` (such as the parameters another attack method would have) are left out of
the JSON when they are None. The JSON Schema of every document
is generated from these types into ``docs/schemas/`` (``python tools/json_schemas.py``; a test checks the files
are current and that real outputs validate against them). The documents with rows are also :class:`Tabular`:
:meth:`Tabular.to_csv` writes one flat line per row (per row and detector where a row holds several).

- :class:`DetectionDocument`: ``cfzoo detect --json``
- :class:`AttackReport`: Tables II-IV, ``cfzoo attack --json``, a row (:class:`AttackRow`) per task
- :class:`DetectionTable`: Table I measured with the zoo's detectors, a row (:class:`DetectionRow`) per model;
  :class:`CheckpointTable`: Table I from training checkpoints, ``cfzoo evaluate --json``, a row (:class:`CheckpointRow`) per model
- :class:`RestorationReport`: Table V, ``cfzoo restore --evaluate --json``, a row (:class:`RestorationRow`) per restorer
- :class:`RobustnessReport`: ``cfzoo robustness``, a row (:class:`RobustnessRow`) per task, eps and attack
- :class:`ReproduceDocument`: ``reproduce.json`` of ``cfzoo reproduce``, Tables I-V together
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

#: The version of every document's layout; raise it when a field changes meaning or goes away.
RESULTS_SCHEMA_VERSION = 2  # 2: typed documents; a verdict may be "uncertain"
_ABSENT_WHEN_NONE = "absent_when_none"


def absent_when_none(description: str | None = None):
    """A field that is None by default and then left out of the JSON (its schema says so)."""
    return Field(None, description=description, json_schema_extra={_ABSENT_WHEN_NONE: True})


def _absent_fields_not_required(schema: dict, model: type[BaseModel]) -> None:
    """Every field is required in the JSON Schema (serialized defaults included) except those left out when None."""
    absent = {
        field.alias or name
        for name, field in model.model_fields.items()
        if (field.json_schema_extra or {}).get(_ABSENT_WHEN_NONE)
    }
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name not in absent]


class Result(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_absent_fields_not_required,
    )

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, serialize):
        data = serialize(self)
        for name, field in type(self).model_fields.items():
            if getattr(self, name) is None and (field.json_schema_extra or {}).get(_ABSENT_WHEN_NONE):
                data.pop(field.alias or name, None)
        return data

    def to_json(self) -> dict:
        """The JSON-ready dict: aliases as keys, absent fields left out, NaN and infinities as null."""
        return self.model_dump(mode="json", by_alias=True)


class Tabular:
    """A document that is also a table: ``csv_columns`` and ``csv_rows`` (flat dicts), written by :meth:`to_csv`."""

    def csv_columns(self) -> tuple[str, ...]:
        raise NotImplementedError

    def csv_rows(self) -> list[dict]:
        raise NotImplementedError

    def to_csv(self) -> str:
        return csv_text(self.csv_columns(), self.csv_rows())


def csv_text(columns: Sequence[str], rows: Iterable[dict]) -> str:
    """``rows`` as CSV with a header line of ``columns``; None as an empty cell."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return text.getvalue()


def _tpr_rows(head: dict, tpr: dict[str, TprChange], tail: dict | None = None) -> list[dict]:
    """One flat row per detector column of a ``tpr`` mapping, ``head``'s fields first."""
    return [
        {
            **head,
            "family": family,
            "model": rates.model,
            **(tail or {}),
            "tpr_before": rates.before,
            "tpr_after": rates.after,
            "paper_tpr_after": rates.paper,
        }
        for family, rates in tpr.items()
    ]


# --- detection -----------------------------------------------------------------------------------


class DetectionSettings(Result):
    patch_size: int
    stride: int
    batch_size: int
    providers: list[str]
    rule: str = Field(description="how patch probabilities become the image's verdict")


class DetectorInfo(Result):
    model: str
    family: str
    task: str
    threshold: float = Field(description="on the patch probability")
    source: str = Field(description="where the model file came from: embedded, user, hub cache or a path")


class VerdictResult(Result):
    model: str
    family: str
    task: str
    threshold: float
    mean_probability: float
    flagged_share: float = Field(description="share of patches whose probability is above the threshold")
    verdict: Literal["manipulated", "pristine", "uncertain"] = Field(
        description="manipulated above 75% of patches, pristine below 25%, uncertain in between (cfzoo.ops.detect.UNCERTAIN_BAND)"
    )
    heatmap: str | None = Field(description="the PNG written for this detector, if any")


class ImageResult(Result):
    path: str
    ok: bool
    error: str | None = Field(description="one line saying why the image was not read, when ok is false")
    width: int | None
    height: int | None
    patches: int
    notes: list[str]
    results: list[VerdictResult]


_DETECTION_COLUMNS = ("path", "width", "height", "patches", *VerdictResult.model_fields, "error")


class DetectionDocument(Tabular, Result):
    schema_version: int = Field(RESULTS_SCHEMA_VERSION, alias="schema")
    settings: DetectionSettings
    detectors: list[DetectorInfo]
    skipped: list[str] = Field(description="families with no model for a task, each with how to get one")
    images: list[ImageResult]
    failed: int = Field(description="images that could not be read")

    def csv_columns(self) -> tuple[str, ...]:
        return _DETECTION_COLUMNS

    def csv_rows(self) -> list[dict]:
        """One row per image and detector; an image that could not be read is one row with its error."""
        rows = []
        for image in self.images:
            head = {"path": image.path, "width": image.width, "height": image.height, "patches": image.patches}
            if not image.ok:
                rows.append({**head, "error": image.error})
            rows += [{**head, **result.model_dump()} for result in image.results]
        return rows


# --- Tables II-IV: attacks -----------------------------------------------------------------------


class TprChange(Result):
    """One detector's TPR (percent) on the manipulated patches before and after (an attack, a restoration)."""

    model: str
    before: float
    after: float
    paper: float | None = Field(description="the paper's TPR after, where it reports this setting")


class AttackRow(Result):
    task: str
    target: str = Field(description="the attacked model's id; an ensemble's ids joined by +")
    test_devices: list[str]
    patches: int
    manipulated_in_split: int
    psnr_db: float | None = Field(
        description="PSNR of the attacked against the original patches; null where nothing changed"
    )
    mse: float
    zero_gradient_patches: int
    mean_iterations: float
    mean_queries: float | None = absent_when_none("detector runs per patch (all methods but fgsm and ifgsm)")
    seconds: float
    tpr: dict[str, TprChange] = Field(description="by detector column: the family, or an external model's id")


class AttackParameters(Result):
    """What an attack's settings resolve to, defaults filled in."""

    iterations: int | None = absent_when_none("iterations per patch, at most (the attacks that iterate)")
    step: float | None = Field(
        None, description="gray levels per iteration; null where the method adapts it or has none"
    )
    restarts: int | None = absent_when_none("random restarts (the attacks that restart)")
    queries: int | None = absent_when_none("the budget of detector runs per patch (black-box attacks)")
    p_init: float | None = absent_when_none("square's initial share of pixels changed")
    survive_jpeg: int | None = absent_when_none("the JPEG quality the attack aims to survive")
    survive_resize: float | None = absent_when_none("the downscale factor the attack aims to survive (image attacks)")


class _AttackHead(Result):
    schema_version: int = RESULTS_SCHEMA_VERSION
    target: str = Field(description="the target's columns joined by +")
    method: str
    eps: int


# pydantic orders fields from the last base to the first: the head, then the parameters, then these
class AttackReport(Tabular, AttackParameters, _AttackHead):
    seed: int
    dataset: str
    test_devices: list[str]
    target_trained_on_test_devices: list[str] = Field(
        description="test devices the target was trained on: not a test figure there"
    )
    rows: list[AttackRow]
    paper_table: Literal["II", "III", "IV"] | None = Field(
        None, description="the paper's table of this setting (FGSM eps 1 against its target)"
    )

    def csv_columns(self) -> tuple[str, ...]:
        return ("task", "target", "family", "model", "patches", "psnr_db", "tpr_before", "tpr_after", "paper_tpr_after")

    def csv_rows(self) -> list[dict]:
        """One row per task and detector column."""
        return [
            row_of_detector
            for row in self.rows
            for row_of_detector in _tpr_rows(
                {"task": row.task, "target": row.target}, row.tpr, {"patches": row.patches, "psnr_db": row.psnr_db}
            )
        ]


# --- robustness: the battery at several eps ----------------------------------------------------------


class RobustnessRow(Result):
    task: str
    model: str = Field(description="the attacked model's id; an ensemble's ids joined by +")
    patches: int
    tpr_before: float
    eps: int = Field(description="0 for the row of the unattacked patches (attack none)")
    attack: str = Field(description="an attack of the battery, worst-case, or none")
    tpr_after: float
    psnr_db: float | None
    mean_queries: float | None = Field(description="detector runs per patch; null for the worst-case and none rows")
    seconds: float
    recompressed: dict[str, float] = Field(description="TPR after storing the patches as JPEG, by quality")


_ROBUSTNESS_COLUMNS = (
    "task",
    "model",
    "eps",
    "attack",
    "patches",
    "tpr_before",
    "tpr_after",
    "psnr_db",
    "mean_queries",
    "seconds",
)


class RobustnessReport(Tabular, Result):
    """``cfzoo robustness --format json`` and ``robustness.json``."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    target: str
    attacks: list[str]
    parameters: dict[str, AttackParameters]
    eps: list[int]
    recompress: list[int]
    seed: int
    max_patches: int | None
    dataset: str
    test_devices: list[str]
    rows: list[RobustnessRow]

    def csv_columns(self) -> tuple[str, ...]:
        return (*_ROBUSTNESS_COLUMNS, *(f"tpr_jpeg{quality}" for quality in self.recompress))

    def csv_rows(self) -> list[dict]:
        """One row per task, eps and attack; the recompressed TPRs as columns tpr_jpeg<Q>."""
        return [
            {
                **{column: getattr(row, column) for column in _ROBUSTNESS_COLUMNS},
                **{f"tpr_jpeg{quality}": row.recompressed[str(quality)] for quality in self.recompress},
            }
            for row in self.rows
        ]


# --- Table I: detection ----------------------------------------------------------------------------


class Table1Cell(Result):
    """One family's FPR, TPR and ACC (percent) on one task: a cell of Table I."""

    family: str
    task: str
    fpr: float | None
    tpr: float | None
    acc: float | None


class PaperRates(Result):
    fpr: float
    tpr: float
    acc: float


class DetectionRow(Result):
    task: str
    family: str
    model: str
    pristine: int
    manipulated: int
    fpr: float | None
    tpr: float | None
    acc: float | None
    paper: PaperRates | None
    trained_on_test_devices: list[str]


class DetectionTable(Tabular, Result):
    schema_version: int = RESULTS_SCHEMA_VERSION
    test_devices: list[str]
    rows: list[DetectionRow]

    def csv_columns(self) -> tuple[str, ...]:
        return (
            "task",
            "family",
            "model",
            "pristine",
            "manipulated",
            "fpr",
            "tpr",
            "acc",
            "paper_fpr",
            "paper_tpr",
            "paper_acc",
        )

    def csv_rows(self) -> list[dict]:
        return [
            {
                **row.model_dump(include={"task", "family", "model", "pristine", "manipulated", "fpr", "tpr", "acc"}),
                **{
                    f"paper_{rate}": None if row.paper is None else getattr(row.paper, rate)
                    for rate in ("fpr", "tpr", "acc")
                },
            }
            for row in self.rows
        ]


class Rates(Result):
    fpr: float | None
    tpr: float | None
    acc: float | None
    pristine: int
    manipulated: int


class CheckpointRow(Result):
    family: str
    task: str
    fpr: float | None
    tpr: float | None
    acc: float | None
    test_patches: int
    test_devices: list[str]
    train_patches: int
    machine: str
    by_device: dict[str, Rates] | None = absent_when_none(
        "the rates on each test device (when measured again, not recorded)"
    )


class CheckpointTable(Tabular, Result):
    """``cfzoo evaluate --json``: Table I from training checkpoints."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    rows: list[CheckpointRow]

    def csv_columns(self) -> tuple[str, ...]:
        return ("family", "task", "device", "fpr", "tpr", "acc", "test_patches", "train_patches", "machine")

    def csv_rows(self) -> list[dict]:
        """One row per model on all its test devices (device empty), then, where measured, one per test device."""
        rows = []
        for row in self.rows:
            head = {"family": row.family, "task": row.task}
            rows.append(
                {
                    **head,
                    "device": None,
                    **row.model_dump(include={"fpr", "tpr", "acc", "test_patches", "train_patches", "machine"}),
                }
            )
            for device, rates in (row.by_device or {}).items():
                rows.append(
                    {
                        **head,
                        "device": device,
                        "fpr": rates.fpr,
                        "tpr": rates.tpr,
                        "acc": rates.acc,
                        "test_patches": rates.pristine + rates.manipulated,
                    }
                )
        return rows


# --- Table V: restoration --------------------------------------------------------------------------


class Quality(Result):
    psnr_db: float | None
    ssim: float


class RestorationQuality(Result):
    input: Quality = Field(description="the filtered patches against their pristine partners")
    restored: Quality


class RestorationRow(Result):
    task: str
    discriminator: str
    restorer: str
    patches: int
    quality: RestorationQuality
    restore_seconds: float
    tpr: dict[str, TprChange] = Field(
        description="by family: TPR on the filtered (before) and restored (after) patches"
    )


class RestorationReport(Tabular, Result):
    schema_version: int = RESULTS_SCHEMA_VERSION
    seed: int
    dataset: str
    test_devices: list[str]
    max_patches: int | None
    missing: list[str] = Field(description="restorers of the chosen tasks that are not here")
    rows: list[RestorationRow]
    note: str | None = Field(None, description="why Table V was not run (cfzoo reproduce)")

    def csv_columns(self) -> tuple[str, ...]:
        return (
            "task",
            "discriminator",
            "restorer",
            "family",
            "model",
            "patches",
            "psnr_db_filtered",
            "psnr_db_restored",
            "ssim_filtered",
            "ssim_restored",
            "tpr_before",
            "tpr_after",
            "paper_tpr_after",
        )

    def csv_rows(self) -> list[dict]:
        """One row per restorer and family."""
        return [
            detector_row
            for row in self.rows
            for detector_row in _tpr_rows(
                {"task": row.task, "discriminator": row.discriminator, "restorer": row.restorer},
                row.tpr,
                {
                    "patches": row.patches,
                    "psnr_db_filtered": row.quality.input.psnr_db,
                    "psnr_db_restored": row.quality.restored.psnr_db,
                    "ssim_filtered": row.quality.input.ssim,
                    "ssim_restored": row.quality.restored.ssim,
                },
            )
        ]


# --- all tables at once: cfzoo reproduce ----------------------------------------------------------


class ReproduceSettings(Result):
    tasks: list[str]
    eps: int
    method: Literal["fgsm"]
    seed: int
    max_patches: int | None
    providers: str
    batch_size: int


class DataDescription(Result):
    path: str
    description: str | None
    images: int
    devices: list[str]
    train_devices: list[str]
    test_devices: list[str]


class MachineDescription(Result):
    platform: str
    processor: str
    cpu_count: int | None
    python: str
    onnxruntime: str
    providers: list[str]


class StageSeconds(Result):
    table1: float
    attacks: float
    restoration: float
    total: float


class ReportFiles(Result):
    report: str
    json_file: str = Field(alias="json")
    csv: list[str]
    png: list[str]


class ReproduceDocument(Result):
    """``reproduce.json``: the settings, the data, the machine, and Tables I-V beside the paper's."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    cfzoo_version: str
    created: str
    settings: ReproduceSettings
    data: DataDescription
    machine: MachineDescription
    seconds: StageSeconds
    table1: DetectionTable
    attacks: list[AttackReport] = Field(
        description="Tables II-IV: one report per target family with gradient companions here"
    )
    restoration: RestorationReport
    differences: dict[str, list[str]] = Field(
        description="by table: where ours and the paper differ by more than 5 points"
    )
    files: ReportFiles | None = absent_when_none("the files of the report folder")


#: The documents whose JSON Schema is published in docs/schemas/<name>.schema.json.
DOCUMENTS: dict[str, type[Result]] = {
    "detection": DetectionDocument,
    "attack": AttackReport,
    "detection-table": DetectionTable,
    "checkpoint-table": CheckpointTable,
    "restoration": RestorationReport,
    "robustness": RobustnessReport,
    "reproduce": ReproduceDocument,
}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(name: str) -> dict:
    """The JSON Schema (draft 2020-12) of the document called ``name`` in :data:`DOCUMENTS`, as its JSON is written."""
    return {"$schema": SCHEMA_DIALECT, **DOCUMENTS[name].model_json_schema(mode="serialization", by_alias=True)}
