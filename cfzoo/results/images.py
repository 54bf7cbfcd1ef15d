"""One image attacked (``cfzoo attack IMAGE``) or restored (``cfzoo restore IMAGE``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, RootModel

from cfzoo.results.base import Result


class GridShares(Result):
    """The share (percent) of the `cfzoo detect` grid's patches one detector calls manipulated, before and after."""

    model: str
    before: float
    after: float


class OtherTaskFlag(Result):
    """A detector of another task whose verdict on the image grew worse after restoring."""

    model: str
    task: str
    before: float
    after: float
    verdict_before: Literal["manipulated", "pristine", "uncertain"]
    verdict_after: Literal["manipulated", "pristine", "uncertain"]


class ImageAttackSummary(Result):
    """``cfzoo attack IMAGE --json``."""

    image: str
    out: str = Field(description="the attacked image, a lossless PNG")
    width: int
    height: int
    notes: list[str] = Field(description="what reading the image noted")
    target: str = Field(description="the model ids attacked, joined by +")
    goal: Literal["hide", "frame"] = Field(
        description="hide: a manipulated image made to look pristine; frame: an untouched one made to look manipulated"
    )
    method: str
    eps: int
    tiles: int = Field(description="attacked 128 x 128 tiles")
    detect_grid_patches: int
    psnr_db: float | None = Field(description="of the attacked image against the input; null when identical")
    zero_gradient_tiles: int
    detect_grid_called_manipulated: dict[str, GridShares] = Field(description="by report column")
    still_flagged_by_other_tasks: list[OtherTaskFlag] = Field(
        description="the other tasks' detectors that call the attacked image uncertain or manipulated; empty with "
        "--no-other-tasks"
    )
    judged_after_resize: float | None = Field(description="the downscale factor the judges saw, if any")


class ImageRestoration(Result):
    image: str
    out: str = Field(description="the restored image, a lossless PNG")
    width: int
    height: int
    notes: list[str]
    restorer: str
    tile: int
    psnr_db_vs_input: float | None
    detect_grid_patches: int
    detect_grid_called_manipulated: dict[str, GridShares] = Field(description="the task's own detectors, by family")
    flagged_by_other_tasks: list[OtherTaskFlag]


class ImageRestorations(RootModel[list[ImageRestoration]]):
    """``cfzoo restore IMAGE --json``: one restoration per discriminator kind, always a list."""

    model_config = ConfigDict(frozen=True)

    def to_json(self) -> list:
        return self.model_dump(mode="json", by_alias=True)
