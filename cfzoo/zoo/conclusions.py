"""The conclusion registry: models that read every zoo detector's verdict on an image and answer "what was done
to it" with a probability per manipulation and for "none" (no torch, no scikit-learn: an ONNX graph).

Conclusion models are entries of one more kind (:class:`ConclusionEntry`, kind ``conclusion``), read by the same
:class:`~cfzoo.zoo.registry.EntryRegistry` code and found by the same resolver as detectors and restorers, in
their own file of any zoo folder::

    conclusions.json
    models/<id>.onnx

ONNX contract: input ``evidence`` float32 [N, 2 x len(models)]: for each model in the entry's order its flagged
share and mean probability on the image (``cfzoo detect``'s numbers); outputs ``probabilities`` float32 [N, C]
(the entry's classes, summing to 1) and ``distance`` float32 [N, K]: the standardised evidence's distances to
its K nearest training rows, which say how far the image lies from anything the model was fitted on.

An entry names the sha256 of every detector it was fitted on: another version of a detector gives other
evidence, so the conclusion is only drawn from the very detectors it learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from cfzoo.zoo.registry import EntryRegistry, ModelFile

CONCLUSION_REGISTRY_NAME = "conclusions.json"
CONCLUSION_SCHEMA_VERSION = 1
#: The conclusion model cfzoo ships and `cfzoo detect` uses.
DEFAULT_CONCLUSION = "conclusion-zoo"
EVIDENCE_INPUT, PROBABILITIES_OUTPUT, DISTANCE_OUTPUT = "evidence", "probabilities", "distance"
HOW_TO_GET = "fit it: cfzoo train-conclusion DATA (the camera dataset the detectors were trained on)"


@dataclass(frozen=True)
class ConclusionEntry:
    """One conclusion model: its ONNX file, the detectors (id -> sha256, in evidence order) and classes it reads
    and names, when it gives no answer (``distance_threshold``, ``uncertain_below``), its test metrics and its
    training record."""

    id: str
    version: Annotated[int, Field(ge=1)]
    file: ModelFile
    models: dict[str, str]
    statistics: list[str]
    classes: list[str]
    #: Mean distance to the nearest training rows beyond which the evidence is "unlike anything seen in training".
    distance_threshold: Annotated[float, Field(gt=0)]
    #: Below this probability for the most likely class, the answer is "uncertain" between the leading classes.
    uncertain_below: Annotated[float, Field(gt=0, lt=1)]
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    embedded: bool = False

    kind: ClassVar[str] = "conclusion"
    listed_in: ClassVar[str] = "conclusion registry"
    hub: ClassVar[None] = None  # conclusion models ship in the package or come from train-conclusion

    def __post_init__(self) -> None:
        if not self.models or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError("a conclusion model reads at least one detector and names distinct classes")

    @property
    def files(self) -> dict[str, ModelFile]:
        return {self.kind: self.file}

    @property
    def feature_count(self) -> int:
        return len(self.models) * len(self.statistics)

    def describe(self, kind: str) -> str:
        return f"conclusion model {self.id}"

    def how_to_get(self) -> str:
        return HOW_TO_GET

    def how_to_repair(self) -> str:
        return f"delete it and {HOW_TO_GET}"

    def to_json(self) -> dict:
        return asdict(self)


class ConclusionRegistry(EntryRegistry):
    """Conclusion models by id (the default first)."""

    entry_type, key, schema, what, file_name = (
        ConclusionEntry,
        "conclusions",
        CONCLUSION_SCHEMA_VERSION,
        "conclusion registry",
        CONCLUSION_REGISTRY_NAME,
    )

    @staticmethod
    def order(entry: ConclusionEntry) -> tuple:
        return entry.id != DEFAULT_CONCLUSION, entry.id

    def unknown(self, model_id: str) -> str:
        return f"conclusion model {model_id} is not in any zoo here; {HOW_TO_GET}"


class ConclusionModel:
    """A conclusion model's ONNX session: evidence rows in, (probabilities [N, C], mean distance [N]) out."""

    def __init__(self, entry: ConclusionEntry, path, providers: tuple[str, ...]):
        from cfzoo.zoo.runtime import new_session

        self.entry = entry
        self.path = path
        self.session = new_session(path, providers, row_parallel=False)

    def predict(self, evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        evidence = np.asarray(evidence, dtype=np.float32).reshape(-1, self.entry.feature_count)
        probabilities, distances = self.session.run([PROBABILITIES_OUTPUT, DISTANCE_OUTPUT], {EVIDENCE_INPUT: evidence})
        return probabilities.astype(np.float64), distances.astype(np.float64).mean(axis=1)


def load_conclusion(model_id: str = DEFAULT_CONCLUSION, providers: str = "cpu") -> ConclusionModel:
    """The conclusion model ``model_id`` from the user zoo or the package, its file checked against the registry."""
    from cfzoo.zoo.resolve import resolve
    from cfzoo.zoo.runtime import execution_providers

    entry = ConclusionRegistry.load().get(model_id)
    return ConclusionModel(entry, resolve(entry, entry.kind).path, execution_providers(providers))
