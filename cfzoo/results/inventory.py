"""What the zoo, a data folder and a scan hold: ``cfzoo list``, ``cfzoo data inspect``, scan rows and ``cfzoo scan``."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, RootModel

from cfzoo.results.base import RESULTS_SCHEMA_VERSION, Result, Tabular, absent_when_none


class HubReference(Result):
    repo_id: str
    revision: str | None


class ModelRow(Result):
    kind: Literal["detector", "user", "restorer", "conclusion"] = Field(
        description="detector: cfzoo's; user: registered with cfzoo register; restorer: a GAN restorer; "
        "conclusion: the model over every detector's verdict that names the most likely manipulation"
    )
    id: str
    family: str | None = Field(None, description="the detector family; null for restorers and conclusion models")
    task: str = Field(description="the task; 'all' for a conclusion model, which reads every task's detectors")
    variant: str | None = absent_when_none(
        "a cfzoo detector's: standard, wild (trained on photos laundered as a platform would) or robust "
        "(adversarially trained)"
    )
    registered: bool = Field(description="false for a family x task slot the registry has no model for yet")
    discriminator: str | None = absent_when_none("restorers: the discriminator it was trained against")
    test_acc: float | None = Field(None, description="percent; a conclusion model's: top-1 over its classes")
    available: bool = Field(False, description="its files (and a detector's gradient companion) are here")
    sources: list[str] = Field([], description="where its files are here from, in the order they are used")
    hub: HubReference | None = None
    size_bytes: int | None = None


LIST_COLUMNS = (
    "kind",
    "id",
    "family",
    "task",
    "variant",
    "discriminator",
    "registered",
    "test_acc",
    "available",
    "sources",
    "hub_repo_id",
    "hub_revision",
    "size_bytes",
)


class ModelList(Tabular, RootModel[list[ModelRow]]):
    """``cfzoo list``: every family x task slot, registered external models, then the GAN restorers."""

    model_config = ConfigDict(frozen=True)

    def to_json(self) -> list:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def detectors(self) -> list[ModelRow]:
        return [row for row in self.root if row.kind in ("detector", "user")]

    @property
    def restorers(self) -> list[ModelRow]:
        return [row for row in self.root if row.kind == "restorer"]

    @property
    def conclusions(self) -> list[ModelRow]:
        return [row for row in self.root if row.kind == "conclusion"]

    def csv_columns(self) -> tuple[str, ...]:
        return LIST_COLUMNS

    def csv_rows(self) -> list[dict]:
        """Sources joined by spaces, the Hub source in two columns."""
        return [
            {
                **row.model_dump(exclude={"hub"}),
                "sources": " ".join(row.sources),
                "hub_repo_id": None if row.hub is None else row.hub.repo_id,
                "hub_revision": None if row.hub is None else row.hub.revision,
            }
            for row in self.root
        ]


class DeviceSurvey(Result):
    device: str
    images: int
    sizes: dict[str, int] = Field(description="image count by size, 'WxH'")
    too_small: list[str] = Field(description="files below the patch size (skipped)")
    unreadable: list[str] = Field(description="one line per file whose header cannot be read")
    digital_zoom: list[str] = Field(description="files the camera upsampled (EXIF DigitalZoomRatio > 1)")


class SplitSurvey(Result):
    seed: int
    train: list[str]
    test: list[str]


INSPECT_COLUMNS = ("device", "images", "sizes", "too_small", "unreadable", "digital_zoom", "split")


class DatasetSurvey(Tabular, Result):
    """``cfzoo data inspect``: devices, image counts and sizes (headers only), and the split a build would use."""

    root: str
    devices: list[DeviceSurvey]
    images: int
    split: SplitSurvey

    def split_of(self, device: str) -> str:
        return "test" if device in self.split.test else "train"

    def csv_columns(self) -> tuple[str, ...]:
        return INSPECT_COLUMNS

    def csv_rows(self) -> list[dict]:
        """One line per device: counts of distinct sizes, of files too small, unreadable and digitally zoomed."""
        return [
            {
                "device": device.device,
                "images": device.images,
                "sizes": len(device.sizes),
                "too_small": len(device.too_small),
                "unreadable": len(device.unreadable),
                "digital_zoom": len(device.digital_zoom),
                "split": self.split_of(device.device),
            }
            for device in self.devices
        ]


class ScanRow(Result):
    """One image x detector of a scan (its Parquet columns, in order); an input that could not be analysed has the
    one-line ``error`` and no scores."""

    # bytes in JSON as base64: a file name may hold any bytes but NUL and /
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    path: str = Field(
        description="the path as text: its UTF-8 reading, with bytes that are not UTF-8 and control characters "
        "escaped (\\xNN, \\n); path_bytes holds it exactly"
    )
    path_bytes: bytes = Field(description="the path's bytes as the file system has them: the row's key")
    sha256: str | None = Field(description="of the image file's bytes")
    width: int | None
    height: int | None
    task: str
    model: str
    family: str
    model_sha256: str = Field(description="of the detector's ONNX file: its version")
    flagged_share: float | None
    mean_probability: float | None
    verdict: Literal["manipulated", "pristine", "uncertain"] | None
    notes: list[str] = Field(description="what reading the image noted, as cfzoo detect prints it")
    error: str | None
    cfzoo_version: str


class ScanSummary(Result):
    """``cfzoo scan --json``: what one run did."""

    schema_version: int = Field(RESULTS_SCHEMA_VERSION, alias="schema")
    out: str = Field(description="the parts folder")
    engine: str
    images: int = Field(description="inputs")
    scanned: int = Field(description="inputs scanned by this run (the others were held by the output already)")
    rows_written: int
    failed_images: int
    models: list[str]
    skipped: list[str] = Field(description="families without models here, as cfzoo detect reports them")
