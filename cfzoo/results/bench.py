"""``cfzoo bench``: one entry per model under a fixed, versioned protocol, and the leaderboard over the entries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cfzoo.results.attacks import HealthFlag
from cfzoo.results.base import Result, Tabular


class BenchProtocol(Result):
    """What every entry of one protocol version was measured with (docs/bench.md)."""

    version: int
    seed: int = Field(description="draws the device split, the patches and the attacks' random starts")
    patches: int = Field(description="attacked test patches per task and goal (and as many of the other class)")
    eps: list[int]
    attacks: list[str]
    warm_starts: list[str] = Field(
        description="the attacks that start each eps after the first from their best result of the smaller eps"
    )
    square_queries: int
    recompress: list[int]
    goals: list[Literal["hide", "frame"]]


class BenchEntry(Result):
    """One model's record, after RobustBench's model_info: the figures, how much the attacks used, the data
    the model saw, and whether the evaluation looked reliable."""

    protocol: int = Field(description="the BenchProtocol version it was measured under")
    model: str
    family: str
    task: str
    source: str = Field(description="zoo (shipped or pulled), registered (cfzoo register) or a file path")
    cfzoo_version: str
    measured: str = Field(description="UTC date and time of the measurement, ISO 8601")
    dataset: str
    test_devices: list[str]
    training_devices: list[str] = Field(description="devices its training record names; empty when unknown")
    trained_on_test_devices: list[str] = Field(description="test devices it was trained on: then no test figure")
    extra_data: bool | None = Field(
        description="trained on devices beyond the protocol's training devices (the data folder's devices less the "
        "test devices); null when its record names none"
    )
    patches: int
    clean_tpr: float
    clean_fpr: float
    clean_auc: float | None
    robust_tpr: dict[str, float] = Field(description="worst-case TPR (percent) when hiding, by eps")
    robust_tpr_interval: dict[str, list[float | None]] = Field(description="95% Wilson interval, by eps")
    robust_fpr: dict[str, float] = Field(description="worst-case FPR (percent) when framing, by eps")
    robust_fpr_interval: dict[str, list[float | None]] = Field(description="95% Wilson interval, by eps")
    robust_auc: dict[str, float | None] = Field(
        description="AUC of the hiding worst case's attacked manipulated patches against pristine ones, by eps"
    )
    robust_balanced_accuracy: float = Field(
        description="the headline: (worst-case TPR when hiding + 100 - worst-case FPR when framing) / 2 at the "
        "protocol's smallest eps"
    )
    forward_passes: float = Field(
        description="model runs (detector and companion) per attacked patch over every attack and eps, mean of the goals"
    )
    health: list[HealthFlag]
    health_goals: list[Literal["hide", "frame"]] = Field(description="the goal of each health flag, in order")
    unreliable: bool = Field(description="a health flag was raised: the figures may overstate robustness")
    seconds: float | None = Field(description="time of both goals' batteries; null when built from reports")


#: An entry's CSV columns before and after its figures by eps.
_LEADING_COLUMNS = (
    "model",
    "family",
    "task",
    "source",
    "robust_balanced_accuracy",
    "clean_tpr",
    "clean_fpr",
    "clean_auc",
)
_TRAILING_COLUMNS = ("forward_passes", "unreliable", "extra_data", "protocol")


class BenchBoard(Tabular, Result):
    """``cfzoo bench --format json`` and ``leaderboard.json``: the entries of one protocol, best first."""

    protocol: BenchProtocol
    entries: list[BenchEntry]

    def csv_columns(self) -> tuple[str, ...]:
        eps = [str(value) for value in self.protocol.eps]
        return (
            "rank",
            *_LEADING_COLUMNS,
            *(f"robust_tpr_eps{value}" for value in eps),
            *(f"robust_fpr_eps{value}" for value in eps),
            *_TRAILING_COLUMNS,
        )

    def csv_rows(self) -> list[dict]:
        return [
            {
                "rank": rank,
                **{column: getattr(entry, column) for column in (*_LEADING_COLUMNS, *_TRAILING_COLUMNS)},
                **{f"robust_tpr_eps{eps}": value for eps, value in entry.robust_tpr.items()},
                **{f"robust_fpr_eps{eps}": value for eps, value in entry.robust_fpr.items()},
            }
            for rank, entry in enumerate(self.entries, start=1)
        ]
