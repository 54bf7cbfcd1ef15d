"""Typed results: what cfzoo's measurements return in Python and write as JSON.

Each document is a pydantic model; its JSON is :meth:`Result.to_json` and carries a schema version. Fields
declared with :func:`absent_when_none` (such as the parameters another attack method would have) are left out of
the JSON when they are None. The JSON Schema of every document
is generated from these types into ``docs/schemas/`` (``python tools/json_schemas.py``; a test checks the files
are current and that real outputs validate against them). The documents with rows are also :class:`Tabular`:
:meth:`Tabular.to_csv` writes one flat line per row (per row and detector where a row holds several).

- :class:`DetectionDocument`: ``cfzoo detect --json``
- :class:`AttackReport`: Tables II-IV, ``cfzoo attack --json``, a row (:class:`AttackRow`) per task
- :class:`DetectionTable`: Table I measured with the zoo's detectors, a row (:class:`DetectionRow`) per model;
  :class:`CheckpointTable`: Table I from training checkpoints, ``cfzoo evaluate --json``, a row (:class:`CheckpointRow`) per model
- :class:`RestorationReport`: Table V, ``cfzoo restore --evaluate --json``, a row (:class:`RestorationRow`) per restorer
- :class:`RobustnessReport`: ``cfzoo robustness``, a row (:class:`RobustnessRow`) per task, eps and attack
- :class:`ReproduceDocument`: ``reproduce.json`` of ``cfzoo reproduce``, Tables I-V together
- :class:`ModelList`: ``cfzoo list``; :class:`DatasetSurvey`: ``cfzoo data inspect``
- :class:`ImageAttackSummary`: ``cfzoo attack IMAGE``; :class:`ImageRestorations`: ``cfzoo restore IMAGE``
- :class:`ScanRow`: a row of a scan's Parquet parts; :class:`ScanSummary`: ``cfzoo scan --json``
- :class:`BenchBoard`: ``cfzoo bench``, an entry (:class:`BenchEntry`) per model under a :class:`BenchProtocol`
"""

from pydantic import BaseModel

from cfzoo.results.attacks import (
    HEALTH_FLAGS,
    LOW_FPR_RULE,
    AttackParameters,
    AttackReport,
    AttackRow,
    HealthFlag,
    RankingMetrics,
    RobustnessReport,
    RobustnessRow,
    TprChange,
    tpr_rows,
)
from cfzoo.results.base import (
    RESULTS_SCHEMA_VERSION,
    Result,
    Tabular,
    absent_when_none,
    csv_text,
)
from cfzoo.results.bench import BenchBoard, BenchEntry, BenchProtocol
from cfzoo.results.check import CheckItem, CheckReport
from cfzoo.results.detection import (
    ClassProbability,
    Conclusion,
    ConclusionModelInfo,
    DetectionDocument,
    DetectionSettings,
    DetectorInfo,
    DetectorVerdict,
    ImageResult,
)
from cfzoo.results.images import (
    GridShares,
    ImageAttackSummary,
    ImageRestoration,
    ImageRestorations,
    OtherTaskFlag,
)
from cfzoo.results.inventory import (
    INSPECT_COLUMNS,
    LIST_COLUMNS,
    DatasetSurvey,
    DeviceSurvey,
    HubReference,
    ModelList,
    ModelRow,
    ScanRow,
    ScanSummary,
    SplitSurvey,
)
from cfzoo.results.reproduce import (
    DataDescription,
    MachineDescription,
    ReportFiles,
    ReproduceDocument,
    ReproduceSettings,
    StageSeconds,
)
from cfzoo.results.tables import (
    BinaryMetrics,
    CheckpointRow,
    CheckpointTable,
    DetectionRow,
    DetectionTable,
    PaperRates,
    Quality,
    Rates,
    ReliabilityBin,
    RestorationQuality,
    RestorationReport,
    RestorationRow,
    Table1Cell,
)

#: The documents whose JSON Schema is published in docs/schemas/<name>.schema.json.
DOCUMENTS: dict[str, type[BaseModel]] = {
    "detection": DetectionDocument,
    "attack": AttackReport,
    "detection-table": DetectionTable,
    "checkpoint-table": CheckpointTable,
    "restoration": RestorationReport,
    "robustness": RobustnessReport,
    "reproduce": ReproduceDocument,
    "list": ModelList,
    "data-inspect": DatasetSurvey,
    "attack-image": ImageAttackSummary,
    "restore-image": ImageRestorations,
    "scan": ScanSummary,
    "scan-row": ScanRow,
    "bench": BenchBoard,
    "bench-entry": BenchEntry,
    "check": CheckReport,
}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(name: str) -> dict:
    """The JSON Schema (draft 2020-12) of the document called ``name`` in :data:`DOCUMENTS`, as its JSON is written."""
    return {"$schema": SCHEMA_DIALECT, **DOCUMENTS[name].model_json_schema(mode="serialization", by_alias=True)}


__all__ = [
    "CheckItem",
    "CheckReport",
    "BenchBoard",
    "BenchEntry",
    "BenchProtocol",
    "ReliabilityBin",
    "HEALTH_FLAGS",
    "HealthFlag",
    "RankingMetrics",
    "LOW_FPR_RULE",
    "BinaryMetrics",
    "GridShares",
    "ImageAttackSummary",
    "ImageRestoration",
    "ImageRestorations",
    "OtherTaskFlag",
    "INSPECT_COLUMNS",
    "LIST_COLUMNS",
    "DatasetSurvey",
    "SplitSurvey",
    "DeviceSurvey",
    "HubReference",
    "ModelList",
    "ModelRow",
    "ScanRow",
    "ScanSummary",
    "Result",
    "Tabular",
    "absent_when_none",
    "csv_text",
    "RESULTS_SCHEMA_VERSION",
    "DetectionSettings",
    "DetectorInfo",
    "ClassProbability",
    "Conclusion",
    "ConclusionModelInfo",
    "DetectorVerdict",
    "ImageResult",
    "DetectionDocument",
    "TprChange",
    "AttackRow",
    "AttackParameters",
    "AttackReport",
    "RobustnessRow",
    "RobustnessReport",
    "tpr_rows",
    "Table1Cell",
    "PaperRates",
    "DetectionRow",
    "DetectionTable",
    "Rates",
    "CheckpointRow",
    "CheckpointTable",
    "Quality",
    "RestorationQuality",
    "RestorationRow",
    "RestorationReport",
    "ReproduceSettings",
    "DataDescription",
    "MachineDescription",
    "StageSeconds",
    "ReportFiles",
    "ReproduceDocument",
    "DOCUMENTS",
    "SCHEMA_DIALECT",
    "json_schema",
]
