"""The base of every typed document: :class:`Result` (JSON with a schema version, absent fields left out) and
:class:`Tabular` (one CSV line per row)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_serializer

#: The version of every document's layout; raise it when a field changes meaning or goes away.
RESULTS_SCHEMA_VERSION = (
    3  # 2: typed documents; a verdict may be "uncertain". 3: robustness rows give flagged_* (TPR or FPR, by goal)
)
_ABSENT_WHEN_NONE = "absent_when_none"


def absent_when_none(description: str | None = None):
    """A field that is None by default and then left out of the JSON (its schema says so)."""
    return Field(None, description=description, json_schema_extra={_ABSENT_WHEN_NONE: True})


def _absent_fields_not_required(schema: dict, model: type[BaseModel]) -> None:
    """Every field is required in the JSON Schema (serialized defaults included) except those left out when None."""
    absent = {
        field.alias or name
        for name, field in model.model_fields.items()
        if (field.json_schema_extra or {}).get(_ABSENT_WHEN_NONE)
    }
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name not in absent]


class Result(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_absent_fields_not_required,
    )

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, serialize):
        data = serialize(self)
        for name, field in type(self).model_fields.items():
            if getattr(self, name) is None and (field.json_schema_extra or {}).get(_ABSENT_WHEN_NONE):
                data.pop(field.alias or name, None)
        return data

    def to_json(self) -> dict:
        """The JSON-ready dict: aliases as keys, absent fields left out, NaN and infinities as null."""
        return self.model_dump(mode="json", by_alias=True)


class Tabular:
    """A document that is also a table: ``csv_columns`` and ``csv_rows`` (flat dicts), written by :meth:`to_csv`."""

    def csv_columns(self) -> tuple[str, ...]:
        raise NotImplementedError

    def csv_rows(self) -> list[dict]:
        raise NotImplementedError

    def to_csv(self) -> str:
        return csv_text(self.csv_columns(), self.csv_rows())


#: A text cell that starts with one of these is a formula to a spreadsheet (OWASP's CSV injection list).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_text(columns: Sequence[str], rows: Iterable[dict]) -> str:
    """``rows`` as CSV with a header line of ``columns``; None as an empty cell. A text cell that a spreadsheet would
    run as a formula gets a leading ``'`` (OWASP's advice; strip it to read the value back), and a row with a
    carriage return in a cell is written fully quoted, since the csv module quotes only the line terminator's
    characters and a bare ``\r`` would split the row for most readers."""
    text = io.StringIO()
    plain = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    quoted = csv.DictWriter(text, fieldnames=columns, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writeheader()
    for row in rows:
        cells = {key: _csv_cell(value) for key, value in row.items()}
        carriage_return = any(isinstance(value, str) and "\r" in value for value in cells.values())
        (quoted if carriage_return else plain).writerow(cells)
    return text.getvalue()


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
