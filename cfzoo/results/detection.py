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
    variant: str = Field(
        "standard", description="which of each family x task's detectors ran: standard, wild or robust (cfzoo list)"
    )


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


class ClassProbability(Result):
    name: str = Field(description="'none' or a task id")
    title: str = Field(description="what it means, e.g. 'Median filtering, 7x7'")
    probability: float


class Conclusion(Result):
    """One calibrated answer to "what was done to this image", from a conclusion model over every detector's
    verdict (cfzoo.zoo.conclusions)."""

    model: str = Field(description="the conclusion model's id")
    status: Literal["confident", "uncertain", "unfamiliar"] = Field(
        description="confident: one class is likely; uncertain: no class reaches the model's uncertain_below; "
        "unfamiliar: the evidence is unlike any the model was fitted on, so it names no class"
    )
    text: str = Field(description="the conclusion in one line, as detect prints it")
    most_likely: str | None = Field(description="'none' or a task id; null when unfamiliar")
    probability: float | None = Field(description="of the most likely class; null when unfamiliar")
    probabilities: list[ClassProbability] = Field(description="every class, most likely first")
    distance: float = Field(description="mean distance of the evidence to its nearest training rows")
    distance_threshold: float = Field(description="beyond it the evidence is unfamiliar")


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
    conclusion: Conclusion | None = Field(
        None, description="what was most likely done to the image; null when not drawn"
    )
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
    "conclusion",
    "conclusion_probability",
    *(name for name, field in DetectorVerdict.model_fields.items() if not field.exclude),
    "model_sha256",
    "error",
)


class ConclusionModelInfo(Result):
    model: str
    version: int
    source: str = Field(description="where the model file came from: embedded or user")
    sha256: str = Field(description="of the conclusion model's ONNX file")


class DetectionDocument(Tabular, Result):
    schema_version: int = Field(RESULTS_SCHEMA_VERSION, alias="schema")
    settings: DetectionSettings
    detectors: list[DetectorInfo]
    conclusion_model: ConclusionModelInfo | None = Field(
        None, description="the model that drew each image's conclusion; null when none was drawn (see skipped)"
    )
    skipped: list[str] = Field(
        description="what was not run, each with why and what to do: families with no model for a task, the conclusion"
    )
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
            if image.conclusion is not None:  # the class named, or "uncertain: <leading class>", or "unfamiliar"
                found = image.conclusion
                head["conclusion"] = found.most_likely if found.status == "confident" else found.status
                if found.status == "uncertain":
                    head["conclusion"] += f": {found.most_likely}"
                head["conclusion_probability"] = found.probability
            if not image.ok:
                rows.append({**head, "error": image.error})
            rows += [
                {**head, **result.model_dump(), "model_sha256": model_sha256.get(result.model)}
                for result in image.results
            ]
        return rows
