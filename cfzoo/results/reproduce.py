"""``cfzoo reproduce``: Tables I-V together, with the data, machine and times."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cfzoo.results.attacks import AttackReport
from cfzoo.results.base import RESULTS_SCHEMA_VERSION, Result, absent_when_none
from cfzoo.results.tables import DetectionTable, RestorationReport

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
