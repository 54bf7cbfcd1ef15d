"""Table I (detection, measured with the zoo or from checkpoints) and Table V (restoration)."""

from __future__ import annotations

from pydantic import Field

from cfzoo.results.attacks import TPR_COLUMNS, RankingMetrics, TprChange, tpr_rows
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


class ReliabilityBin(Result):
    """One equal-width bin of the probability of "manipulated": a point of the reliability diagram."""

    low: float
    high: float
    samples: int
    mean_probability: float | None = Field(description="null for an empty bin")
    manipulated_share: float | None = Field(description="share of the bin's samples that are manipulated (0..1)")


class BinaryMetrics(RankingMetrics):
    """One detector on labelled patches: the ranking metrics, calibration, and 95% Wilson intervals of the rates at
    the model's threshold."""

    balanced_accuracy: float | None = Field(description="mean of TPR and TNR at the model's threshold, percent")
    fpr_interval: list[float | None] = Field(description="95% Wilson interval of the FPR at the model's threshold")
    tpr_interval: list[float | None] = Field(description="95% Wilson interval of the TPR at the model's threshold")
    acc_interval: list[float | None] = Field(description="95% Wilson interval of the accuracy")
    ece: float | None = Field(description="expected calibration error, percent, over ece_bins equal-width bins")
    ece_bins: int
    brier: float | None = Field(description="mean squared error of the probability of manipulated (0..1)")
    reliability: list[ReliabilityBin] = Field(description="the reliability diagram: one point per ECE bin")


class Rates(Result):
    fpr: float | None
    tpr: float | None
    acc: float | None
    pristine: int
    manipulated: int


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
    binary: BinaryMetrics | None = absent_when_none("ranking, low-FPR and calibration metrics with intervals")
    by_device: dict[str, Rates] | None = absent_when_none("the rates on each test device (`--per-device`)")


_BINARY_COLUMNS = (
    "auc",
    "auc_low",
    "auc_high",
    "average_precision",
    "eer",
    "eer_low",
    "eer_high",
    "tpr_at_fpr_1",
    "tpr_at_fpr_5",
    "balanced_accuracy",
    "fpr_low",
    "fpr_high",
    "tpr_low",
    "tpr_high",
    "acc_low",
    "acc_high",
    "ece",
    "ece_bins",
    "brier",
)


def _binary_cells(metrics: BinaryMetrics | None) -> dict:
    """A :class:`BinaryMetrics` as flat CSV cells, each interval as two (``_low``, ``_high``)."""
    if metrics is None:
        return {}
    cells = metrics.model_dump(exclude={"reliability"})
    for name in ("auc", "eer", "fpr", "tpr", "acc"):
        cells[f"{name}_low"], cells[f"{name}_high"] = cells.pop(f"{name}_interval")
    return cells


class DetectionTable(Tabular, Result):
    schema_version: int = RESULTS_SCHEMA_VERSION
    test_devices: list[str]
    rows: list[DetectionRow]

    def _per_device(self) -> bool:
        return any(row.by_device for row in self.rows)

    def csv_columns(self) -> tuple[str, ...]:
        """With per-device rates, a ``device`` column: empty on a model's line, then a line per test device."""
        return (
            "task",
            "family",
            "model",
            *(("device",) if self._per_device() else ()),
            "pristine",
            "manipulated",
            "fpr",
            "tpr",
            "acc",
            "paper_fpr",
            "paper_tpr",
            "paper_acc",
            *_BINARY_COLUMNS,
        )

    def csv_rows(self) -> list[dict]:
        rows = []
        for row in self.rows:
            head = row.model_dump(include={"task", "family", "model"})
            rows.append(
                {
                    **head,
                    **row.model_dump(include={"pristine", "manipulated", "fpr", "tpr", "acc"}),
                    **{
                        f"paper_{rate}": None if row.paper is None else getattr(row.paper, rate)
                        for rate in ("fpr", "tpr", "acc")
                    },
                    **_binary_cells(row.binary),
                }
            )
            rows.extend(
                {**head, "device": device, **rates.model_dump()} for device, rates in (row.by_device or {}).items()
            )
        return rows


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
            *TPR_COLUMNS,
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
