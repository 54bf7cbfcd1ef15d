"""``cfzoo detect``: one image's verdicts and the document of a run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cfzoo.results.base import RESULTS_SCHEMA_VERSION, Result, Tabular

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
    sha256: str = Field(description="of the detector's ONNX file: exactly which model judged")


class DetectorVerdict(Result):
    """One detector's reading of one image: the one type that detect, scan, the HTML report and the API share."""

    model: str
    family: str
    task: str
    threshold: float = Field(description="on the patch probability")
    mean_probability: float
    flagged_share: float = Field(description="share of patches whose probability is above the threshold")
    verdict: Literal["manipulated", "pristine", "uncertain"] = Field(
        description="manipulated above 75% of patches, pristine below 25%, uncertain in between (cfzoo.ops.detect.UNCERTAIN_BAND)"
    )
    heatmap: str | None = Field(description="the PNG written for this detector, if any")
    manipulated: bool = Field(
        exclude=True, description="more than half the patches are flagged: what the verdict leans to, uncertain or not"
    )
    column: str = Field(exclude=True, description="the model's column in a report (ModelEntry.column)")

    @property
    def uncertain(self) -> bool:
        return self.verdict == "uncertain"


class ImageResult(Result):
    """What detection found in one input, or why it could not run (``error``, one line)."""

    path: str
    sha256: str | None = Field(description="of the file's bytes; null where it cannot be read as a file")
    ok: bool
    error: str | None = Field(description="one line saying why the image was not read, when ok is false")
    width: int | None
    height: int | None
    patches: int
    notes: list[str]
    results: list[DetectorVerdict]

    @model_validator(mode="after")
    def _ok_means_no_error(self):
        if self.ok != (self.error is None):
            raise ValueError("ok must be true exactly when there is no error")
        return self


_DETECTION_COLUMNS = (
    "path",
    "sha256",
    "width",
    "height",
    "patches",
    *(name for name, field in DetectorVerdict.model_fields.items() if not field.exclude),
    "model_sha256",
    "error",
)


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
        rows, model_sha256 = [], {detector.model: detector.sha256 for detector in self.detectors}
        for image in self.images:
            head = {"path": image.path, "sha256": image.sha256, "width": image.width, "height": image.height}
            head["patches"] = image.patches
            if not image.ok:
                rows.append({**head, "error": image.error})
            rows += [
                {**head, **result.model_dump(), "model_sha256": model_sha256.get(result.model)}
                for result in image.results
            ]
        return rows
