"""``cfzoo check``: a detector's conformance to the model contract, one item per check (cfzoo.testing)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cfzoo.results.base import RESULTS_SCHEMA_VERSION, Result, Tabular


class CheckItem(Result):
    name: str
    status: Literal["pass", "fail", "skipped"]
    detail: str = Field(description="what was measured, or what is wrong")


class CheckReport(Tabular, Result):
    schema_version: int = Field(RESULTS_SCHEMA_VERSION, alias="schema")
    model: str
    task: str
    source: str = Field(description="where the detector file came from: embedded, user, hub-cache or path")
    checks: list[CheckItem]

    @property
    def passed(self) -> bool:
        return all(item.status != "fail" for item in self.checks)

    def csv_columns(self) -> tuple[str, ...]:
        return ("model", "name", "status", "detail")

    def csv_rows(self) -> list[dict]:
        return [{"model": self.model, **item.model_dump()} for item in self.checks]
