"""Tables II-IV (``cfzoo attack``) and ``cfzoo robustness``: TPR before and after attacks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cfzoo.results.base import RESULTS_SCHEMA_VERSION, Result, Tabular, absent_when_none

# --- Tables II-IV: attacks -----------------------------------------------------------------------


class TprChange(Result):
    """One detector's TPR (percent) on the manipulated patches before and after (an attack, a restoration)."""

    model: str
    before: float
    after: float
    paper: float | None = Field(description="the paper's TPR after, where it reports this setting")


def tpr_rows(head: dict, tpr: dict[str, TprChange], tail: dict | None = None) -> list[dict]:
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
            for row_of_detector in tpr_rows(
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
