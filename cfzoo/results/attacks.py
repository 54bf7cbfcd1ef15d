"""Tables II-IV (``cfzoo attack``) and ``cfzoo robustness``: TPR before and after attacks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cfzoo.results.base import RESULTS_SCHEMA_VERSION, Result, Tabular, absent_when_none

# --- Tables II-IV: attacks -----------------------------------------------------------------------

#: How the low-FPR operating points of :class:`RankingMetrics` are set.
LOW_FPR_RULE = (
    "threshold taken on the pristine patches: the smallest score above which at most that share of them score"
)


class RankingMetrics(Result):
    """How well a detector's score separates manipulated from pristine patches, whatever its threshold: threshold-free
    metrics and operating points at a low false positive rate, with 95% intervals (a stratified bootstrap drawn with
    the report's seed)."""

    auc: float | None = Field(description="area under the ROC curve (0..1), ties counting half")
    auc_interval: list[float | None] = Field(description="95% bootstrap interval [low, high]")
    average_precision: float | None = Field(description="precision averaged over recall steps (0..1)")
    eer: float | None = Field(description="equal error rate, percent: where FPR equals FNR")
    eer_interval: list[float | None] = Field(description="95% bootstrap interval [low, high], percent")
    tpr_at_fpr_1: float | None = Field(description=f"TPR percent at FPR 1%; {LOW_FPR_RULE}")
    tpr_at_fpr_5: float | None = Field(description=f"TPR percent at FPR 5%; {LOW_FPR_RULE}")


class TprChange(Result):
    """One detector's TPR (percent) on the manipulated patches before and after (an attack, a restoration)."""

    model: str
    before: float
    before_interval: list[float | None] = Field(description="95% Wilson interval [low, high]")
    after: float
    after_interval: list[float | None] = Field(description="95% Wilson interval [low, high]")
    paper: float | None = Field(description="the paper's TPR after, where it reports this setting")
    ranking_before: RankingMetrics | None = absent_when_none(
        "the detector's score on the manipulated patches before, ranked against as many pristine test patches"
    )
    ranking_after: RankingMetrics | None = absent_when_none(
        "the same after (attacked or restored manipulated patches against the same pristine ones)"
    )


#: The CSV columns :func:`tpr_rows` fills for each detector, in order.
TPR_COLUMNS = (
    "tpr_before",
    "tpr_after",
    "tpr_after_low",
    "tpr_after_high",
    "paper_tpr_after",
    "auc_before",
    "auc_after",
)


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
            "tpr_after_low": rates.after_interval[0],
            "tpr_after_high": rates.after_interval[1],
            "paper_tpr_after": rates.paper,
            "auc_before": None if rates.ranking_before is None else rates.ranking_before.auc,
            "auc_after": None if rates.ranking_after is None else rates.ranking_after.auc,
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
    warm_start: bool | None = absent_when_none(
        "robustness reports: from the second eps on, the attack started from its best result of the smaller eps"
    )


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
        return (
            "task",
            "target",
            "family",
            "model",
            "patches",
            "psnr_db",
            *TPR_COLUMNS,
        )

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

#: What a health flag can say about a robustness evaluation (docs/robustness.md, "Health flags").
HEALTH_FLAGS = (
    "not-monotone",
    "gradient-free-beats-gradient",
    "zero-gradients",
    "not-deterministic",
    "companion-disagrees",
)


class HealthFlag(Result):
    """A sign that an evaluation is unreliable, with where it was seen and one line saying what it means."""

    flag: Literal[HEALTH_FLAGS]
    task: str
    eps: int | None = Field(description="where the flag concerns one eps")
    attack: str | None = Field(description="where the flag concerns one attack")
    detail: str


class RobustnessRow(Result):
    """One task, eps and attack of a robustness report. ``flagged_*``: percent of the attacked patches the target
    calls manipulated, the TPR when hiding (manipulated patches), the FPR when framing (pristine patches)."""

    task: str
    model: str = Field(description="the attacked model's id; an ensemble's ids joined by +")
    patches: int
    flagged_before: float = Field(description="TPR (goal hide) or FPR (goal frame), percent, unattacked")
    flagged_before_interval: list[float | None] = Field(description="95% Wilson interval")
    eps: int = Field(description="0 for the row of the unattacked patches (attack none)")
    attack: str = Field(description="an attack of the battery, worst-case, or none")
    flagged_after: float = Field(description="TPR (goal hide) or FPR (goal frame), percent, after the attack")
    flagged_after_interval: list[float | None] = Field(description="95% Wilson interval")
    compared: int = Field(description="test patches of the other class the ranking metrics compare against")
    ranking: RankingMetrics = Field(
        description="the target's score on these (attacked) patches against the other class's, unattacked"
    )
    psnr_db: float | None
    mean_queries: float | None = Field(description="detector runs per patch; null for the worst-case and none rows")
    seconds: float
    recompressed: dict[str, float] = Field(
        description="flagged percent (TPR or FPR) after storing the patches as JPEG, by quality"
    )


_ROBUSTNESS_COLUMNS = (
    "task",
    "model",
    "eps",
    "attack",
    "patches",
    "flagged_before",
    "flagged_after",
    "psnr_db",
    "mean_queries",
    "seconds",
    "compared",
)
_RANKING_COLUMNS = ("auc", "average_precision", "eer", "tpr_at_fpr_1", "tpr_at_fpr_5")


class RobustnessReport(Tabular, Result):
    """``cfzoo robustness --format json`` and ``robustness.json``."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    target: str
    goal: Literal["hide", "frame"] = Field(
        description="hide: manipulated patches pushed towards pristine (rows give TPR); frame: pristine patches "
        "pushed towards manipulated (rows give FPR)"
    )
    attacks: list[str]
    parameters: dict[str, AttackParameters]
    eps: list[int]
    recompress: list[int]
    seed: int
    max_patches: int | None
    dataset: str
    test_devices: list[str]
    rows: list[RobustnessRow]
    health: list[HealthFlag] = Field(description="signs that this evaluation is unreliable; empty when none")

    def csv_columns(self) -> tuple[str, ...]:
        return (
            "goal",
            *_ROBUSTNESS_COLUMNS,
            "flagged_after_low",
            "flagged_after_high",
            *_RANKING_COLUMNS,
            *(f"flagged_jpeg{quality}" for quality in self.recompress),
        )

    def csv_rows(self) -> list[dict]:
        """One row per task, eps and attack: the flagged share's interval, the ranking metrics and the flagged
        shares after recompression as columns flagged_jpeg<Q> (the health flags are in the JSON)."""
        return [
            {
                "goal": self.goal,
                **{column: getattr(row, column) for column in _ROBUSTNESS_COLUMNS},
                "flagged_after_low": row.flagged_after_interval[0],
                "flagged_after_high": row.flagged_after_interval[1],
                **{column: getattr(row.ranking, column) for column in _RANKING_COLUMNS},
                **{f"flagged_jpeg{quality}": row.recompressed[str(quality)] for quality in self.recompress},
            }
            for row in self.rows
        ]
