"""Write the eps = 1 figures of `cfzoo robustness` reports into a zoo registry, for the model cards.

    python tools/record_robustness.py /tmp/robustness-bayar2016/robustness.json ... [--registry cfzoo/zoo/embedded/registry.json]

For every single-model row set at eps 1, the model's entry gets ``metrics["robustness_eps1"]`` from a hiding
report (the patches, the TPR before, after each attack and in the worst case, Square's query budget), or
``metrics["framing_eps1"]`` from a framing one (the same with the FPR). A hiding report also gives
``metrics["robustness_summary"]``: the worst-case TPR at each of its eps, and the TPR after each JPEG
recompression of the report, without an attack and after the eps-1 worst case (the cards' comparison of variants).
Then regenerate the cards: ``cfzoo cards --zoo cfzoo/zoo/embedded``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from cfzoo.cards.model_cards import FRAMING_METRICS, ROBUSTNESS_METRICS, ROBUSTNESS_SUMMARY
from cfzoo.results import RobustnessReport
from cfzoo.zoo.registry import Registry, embedded_zoo_dir

EPS = 1


def robustness_metrics(report: RobustnessReport) -> dict[str, dict[str, float]]:
    """{model id: its eps-1 figures} for the single-model rows of a robustness report (TPR when it hides, FPR when
    it frames)."""
    if EPS not in report.eps:
        raise SystemExit(f"the report has no eps {EPS} rows")
    rate = "tpr" if report.goal == "hide" else "fpr"
    figures: dict[str, dict[str, float]] = {}
    for row in report.rows:
        if row.eps != EPS or "+" in row.model:
            continue
        found = figures.setdefault(
            row.model, {"eps": EPS, "patches": row.patches, f"{rate}_before": row.flagged_before}
        )
        key = f"worst_case_{rate}" if row.attack == "worst-case" else f"{row.attack}_{rate}"
        found[key] = row.flagged_after
    queries = report.parameters["square"].queries if "square" in report.parameters else None
    if queries is not None:
        for found in figures.values():
            found["square_queries"] = queries
    return figures


def summary_metrics(report: RobustnessReport) -> dict[str, dict[str, float]]:
    """{model id: ``worst_case_tpr_eps<E>`` for each eps, ``recompressed_tpr_q<Q>`` (no attack) and
    ``attacked_recompressed_tpr_q<Q>`` (after the eps-1 worst case) for each quality} for the single-model rows of
    a hiding report."""
    figures: dict[str, dict[str, float]] = {}
    for row in report.rows:
        if "+" in row.model:
            continue
        found = figures.setdefault(row.model, {"patches": row.patches})
        if row.attack == "worst-case":
            found[f"worst_case_tpr_eps{row.eps}"] = row.flagged_after
            if row.eps == EPS:
                found.update({f"attacked_recompressed_tpr_q{q}": tpr for q, tpr in row.recompressed.items()})
        elif row.eps == 0:
            found["tpr"] = row.flagged_before
            found.update({f"recompressed_tpr_q{quality}": tpr for quality, tpr in row.recompressed.items()})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--registry", type=Path, default=embedded_zoo_dir() / "registry.json")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="write robustness_summary only, leaving the eps-1 figures the cards and docs already quote",
    )
    arguments = parser.parse_args()
    registry = Registry.read(arguments.registry)
    figures: dict[str, dict[str, dict]] = {}  # by model id, by metrics key
    for path in arguments.reports:
        report = RobustnessReport.model_validate_json(path.read_text())
        key = ROBUSTNESS_METRICS if report.goal == "hide" else FRAMING_METRICS
        for model, found in ({} if arguments.summary_only else robustness_metrics(report)).items():
            figures.setdefault(model, {})[key] = found
        if report.goal == "hide":
            for model, found in summary_metrics(report).items():
                figures.setdefault(model, {})[ROBUSTNESS_SUMMARY] = found
    unknown = sorted(set(figures) - set(registry.entries))
    if unknown:
        raise SystemExit(f"not in {arguments.registry}: {', '.join(unknown)}")
    entries = [
        replace(entry, metrics={**entry.metrics, **figures[entry.id]}) if entry.id in figures else entry
        for entry in registry
    ]
    Registry(entries).write(arguments.registry)
    keys = sorted({key for found in figures.values() for key in found})
    print(f"{len(figures)} models: {', '.join(keys)} written into {arguments.registry}")


if __name__ == "__main__":
    main()
