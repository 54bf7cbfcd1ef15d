"""Table I (detection, measured with the zoo or from checkpoints) and Table V (restoration)."""

from __future__ import annotations

from pydantic import Field

from cfzoo.results.attacks import TprChange, tpr_rows
from cfzoo.results.base import RESULTS_SCHEMA_VERSION, Result, Tabular, absent_when_none

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
            for detector_row in tpr_rows(
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
