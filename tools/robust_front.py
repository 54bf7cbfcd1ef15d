"""One task's adversarial training runs against the robust bar: clean ACC against worst-case TPR at eps 1.

Each run is LABEL=REPORT@FOLDER: a hiding report of `cfzoo robustness` (64 patches or more) and the checkpoint folder
holding the training record of the model it attacked (records of models that are not shipped live in their own
folders, so the folder says which run is meant). The bar of docs/robustness.md is drawn as the shaded corner: worst
case at least 50% at eps 1 with clean ACC at most 3 points below the standard model's.

python tools/robust_front.py --standard checkpoints/cameras-seed0/bayar2016-median7.json \\
    "Madry=docs/robustness/reports/bayar2016-embedded-robust-hide.json@checkpoints/robust-scratch-seed0" \\
    --figure docs/robustness/front-bayar2016-median7.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cfzoo.results import RobustnessReport  # noqa: E402

#: The robust bar (issue 30): worst-case TPR at eps 1 of at least this, ...
BAR_TPR = 50.0
#: ... with clean ACC at most this many points below the standard model's.
BAR_ACC_POINTS = 3.0


def run_figures(entry: str, task: str) -> dict:
    """LABEL=REPORT@FOLDER -> the run's clean figures (its record) and worst cases per eps (its report) on ``task``."""
    label, _, rest = entry.partition("=")
    report_path, _, folder = rest.rpartition("@")
    if not (label and report_path and folder):
        raise SystemExit(f"{entry!r}: write each run as LABEL=REPORT@FOLDER")
    report = RobustnessReport.model_validate_json(Path(report_path).read_text())
    if report.goal != "hide":
        raise SystemExit(f"{report_path}: a hiding report is needed (the bar is on TPR), not --goal {report.goal}")
    rows = [row for row in report.rows if row.task == task and row.attack == "worst-case" and "+" not in row.model]
    if not rows:
        raise SystemExit(f"{report_path} has no worst case on {task}")
    record = json.loads((Path(folder) / f"{rows[0].model}.json").read_text())
    test = record["metrics"]["test"]
    return {
        "label": label,
        "acc": test["acc"],
        "fpr": test["fpr"],
        "worst_case": {row.eps: row.flagged_after for row in rows},
        "minutes": record["training_seconds"] / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=REPORT@FOLDER")
    parser.add_argument("--standard", type=Path, required=True, help="the standard model's training record (JSON)")
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()

    standard = json.loads(args.standard.read_text())
    task, standard_acc = standard["task"], standard["metrics"]["test"]["acc"]
    runs = [run_figures(entry, task) for entry in args.runs]
    eps = sorted({value for run in runs for value in run["worst_case"]})
    print(
        f"{task}: standard clean ACC {standard_acc:.2f}; bar: worst case >= {BAR_TPR:g}% at eps 1 and clean ACC >= "
        f"{standard_acc - BAR_ACC_POINTS:.2f}\n"
    )
    print(
        "| run | clean ACC | points below standard | FPR | "
        + " | ".join(f"worst case eps {e}" for e in eps)
        + " | bar |"
    )
    print("|---|---:|---:|---:|" + "---:|" * len(eps) + "---|")
    for run in runs:
        met = run["worst_case"].get(1, 0) >= BAR_TPR and standard_acc - run["acc"] <= BAR_ACC_POINTS
        cells = [f"{run['worst_case'].get(e, float('nan')):.1f}" for e in eps]
        print(
            f"| {run['label']} | {run['acc']:.2f} | {standard_acc - run['acc']:.2f} | {run['fpr']:.1f} | "
            + " | ".join(cells)
            + f" | {'met' if met else 'missed'} |"
        )
    if args.figure is not None:
        draw(runs, task, standard_acc, args.figure)
        print(f"\nfigure: {args.figure}")


def draw(runs: list[dict], task: str, standard_acc: float, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4), dpi=110)
    axis = figure.subplots()
    low = min([run["acc"] for run in runs] + [standard_acc]) - 1.5
    axis.fill_between([BAR_TPR, 100], standard_acc - BAR_ACC_POINTS, 100, color="#55a868", alpha=0.15, label="the bar")
    axis.axhline(standard_acc, color="0.5", lw=0.8, ls="--", label=f"standard model ({standard_acc:.2f})")
    axis.scatter([run["worst_case"].get(1) for run in runs], [run["acc"] for run in runs], color="#c44e52", s=30)
    for run in runs:
        axis.annotate(
            run["label"], (run["worst_case"].get(1), run["acc"]), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    axis.set_xlim(-2, 102)
    axis.set_ylim(low, 100)
    axis.set_xlabel("worst-case TPR % under attack, eps 1 (64 patches)")
    axis.set_ylabel("clean ACC % on the test devices")
    axis.set_title(f"{task}: adversarial training runs against the robust bar", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


if __name__ == "__main__":
    main()
