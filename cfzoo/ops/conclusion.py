"""One conclusion per image: a conclusion model (:mod:`cfzoo.zoo.conclusions`) reads every zoo detector's verdict
on the image and names what was most likely done to it, with a probability for each manipulation and for "none".

It says so instead of guessing when it cannot answer: "uncertain" when no class reaches the model's
``uncertain_below``, and "unfamiliar" (no class named) when the evidence lies further from everything it was fitted
on than a camera it never saw usually does: detectors that contradict each other as never in training (after an
adversarial attack, a manipulation outside the zoo's eight, an unusual camera pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cfzoo.manipulations import TASK_IDS, get_manipulation
from cfzoo.results import ClassProbability, Conclusion, ConclusionModelInfo, DetectorVerdict
from cfzoo.zoo.conclusions import DEFAULT_CONCLUSION, ConclusionModel, ConclusionRegistry
from cfzoo.zoo.resolve import resolve
from cfzoo.zoo.runtime import Detector, execution_providers

#: What a conclusion names: no manipulation of the zoo's, or one of them.
NONE = "none"
CLASSES = (NONE, *TASK_IDS)
#: Per detector, the two numbers of its verdict the conclusion reads.
STATISTICS = ("flagged_share", "mean_probability")
#: The families whose detectors give the evidence: those that ship in the package (Xception is trained locally).
EVIDENCE_FAMILIES = ("spam", "bayar2016", "cozzolino2017")
#: Other classes at least this likely are named as "also consistent with".
ALSO_CONSISTENT = 0.05


def evidence_models(families: Sequence[str] = EVIDENCE_FAMILIES, tasks: Sequence[str] = TASK_IDS) -> tuple[str, ...]:
    return tuple(f"{family}-{task}" for family in families for task in tasks)


def evidence_vector(verdicts: Sequence[DetectorVerdict], models: Sequence[str]) -> np.ndarray | None:
    """The evidence row [2 x len(models)] of one image from its verdicts; None when a model's verdict is missing."""
    by_model = {verdict.model: verdict for verdict in verdicts}
    if any(model not in by_model for model in models):
        return None
    return np.array(
        [getattr(by_model[model], statistic) for model in models for statistic in STATISTICS], dtype=np.float32
    )


def class_title(name: str) -> str:
    return "none of the zoo's eight manipulations" if name == NONE else get_manipulation(name).title


def _named(probability: ClassProbability) -> str:
    return f"{probability.title} (p = {probability.probability:.2f})"


@dataclass(frozen=True)
class Concluder:
    """A conclusion model bound to the detectors of a run (those it was fitted on, checked by sha256)."""

    model: ConclusionModel
    sha256: str
    source: str

    def info(self) -> ConclusionModelInfo:
        entry = self.model.entry
        return ConclusionModelInfo(model=entry.id, version=entry.version, source=self.source, sha256=self.sha256)

    def conclude(self, verdicts: Sequence[DetectorVerdict]) -> Conclusion:
        entry = self.model.entry
        evidence = evidence_vector(verdicts, list(entry.models))
        probabilities, distance = self.model.predict(evidence[None])
        return conclusion_of(entry, probabilities[0], float(distance[0]))


def conclusion_of(entry, probabilities: np.ndarray, distance: float) -> Conclusion:
    """The conclusion from one row of the model's outputs (the rule of the module's docstring)."""
    ranked = [
        ClassProbability(
            name=entry.classes[index], title=class_title(entry.classes[index]), probability=float(probabilities[index])
        )
        for index in np.argsort(-probabilities, kind="stable")
    ]
    best = ranked[0]
    others = [probability for probability in ranked[1:] if probability.probability >= ALSO_CONSISTENT]
    if distance > entry.distance_threshold:
        status, most_likely, text = (
            "unfamiliar",
            None,
            f"no conclusion: the detectors' evidence is unlike any this model was fitted on (distance {distance:.1f} > "
            f"{entry.distance_threshold:.1f}), as after an adversarial attack or a manipulation outside the zoo's "
            "eight; read the detectors one by one",
        )
    elif best.probability < entry.uncertain_below:
        leading = [best, *others[:2]]
        status, most_likely, text = "uncertain", best, "uncertain between: " + "; ".join(map(_named, leading))
    else:
        text = f"most likely: {_named(best)}"
        if others:
            text += "; also consistent with: " + "; ".join(map(_named, others))
        status, most_likely = "confident", best
    return Conclusion(
        model=entry.id,
        status=status,
        text=text,
        most_likely=None if most_likely is None else most_likely.name,
        probability=None if most_likely is None else most_likely.probability,
        probabilities=ranked,
        distance=distance,
        distance_threshold=entry.distance_threshold,
    )


def concluder_for(
    detectors: Sequence[Detector], providers: str = "cpu", model_id: str = DEFAULT_CONCLUSION
) -> tuple[Concluder | None, str | None]:
    """The concluder for a run of ``detectors``, or None and the line that says why there is none: a detector it
    reads was not selected, or is another version than the one it was fitted on."""
    from cfzoo.ops.detect import model_sha256  # detect imports this module

    registry = ConclusionRegistry.load()
    if model_id not in registry:
        return None, f"conclusion: no model here; {registry.unknown(model_id).split('; ', 1)[1]}"
    entry = registry.get(model_id)
    run = {detector.entry.id: detector for detector in detectors}
    missing = [model for model in entry.models if model not in run]
    if missing:
        families = sorted({model.rsplit("-", 1)[0] for model in entry.models})
        return None, (
            f"conclusion: not drawn, it reads all {len(entry.models)} detectors of {', '.join(families)} and this run "
            f"left out {len(missing)} ({missing[0]}{', ...' if len(missing) > 1 else ''}); run detect without "
            "--family, --task, --model and --variant for it"
        )
    changed = [model for model, sha256 in entry.models.items() if model_sha256(run[model]) != sha256]
    if changed:
        return None, (
            f"conclusion: not drawn, it was fitted on other versions of {', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}; fit it again on these: cfzoo train-conclusion DATA"
        )
    resolved = resolve(entry, entry.kind)
    model = ConclusionModel(entry, resolved.path, execution_providers(providers))
    return Concluder(model, entry.file.sha256, resolved.source), None
