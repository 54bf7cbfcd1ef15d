"""The price of robustness: standard, wild and robust variants of one family side by side (docs/robustness.md).

    cfzoo robustness --target spam --data ../shared/data/cameras --max-patches 64 --out R/spam
    cfzoo robustness --target spam --variant wild --data ../shared/data/cameras --max-patches 64 --out R/spam-wild
    python tools/price_of_robustness.py R/spam/robustness.json R/spam-wild/robustness.json \
        --checkpoints checkpoints/cameras-seed0 --figure docs/robustness/price-spam.png

Prints a markdown table, one row per task and variant: clean ACC and FPR on the test devices and ACC on the same
photos laundered (from the training records), the worst-case TPR at each eps of the reports, the TPR after each
JPEG recompression without an attack and after the eps-1 worst case, and the training time (a robust variant's
includes only its fine-tuning). The figure plots clean ACC against the worst-case TPR at eps 1 and against the
TPR after JPEG at the lowest quality: the Pareto fronts of the two kinds of robustness, per variant. ``--curves``
draws each robust model's adversarial training: the share of PGD examples that fooled it and its clean accuracy
on the batches, step by step, with the flags its record raised (collapse to chance, an attack that stopped
finding examples).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cfzoo.manipulations import TASK_IDS
from cfzoo.results import RobustnessReport

VARIANT_ORDER = ("standard", "wild", "robust")
VARIANT_COLOURS = {"standard": "#4c72b0", "wild": "#dd8452", "robust": "#55a868"}


def record_of(model_id: str, checkpoints: list[Path]) -> dict:
    """The training record of ``model_id``: from the first checkpoint folder that holds it with its weights, else
    from the first that holds it. Models that are not shipped keep their record without weights
    (checkpoints/README.md), so where two folders hold an id the one with weights is the shipped model's."""
    holding = [folder for folder in checkpoints if (folder / f"{model_id}.json").exists()]
    if not holding:
        raise SystemExit(f"no training record of {model_id} in {', '.join(map(str, checkpoints))}")
    with_weights = [folder for folder in holding if (folder / f"{model_id}.safetensors").exists()]
    return json.loads(((with_weights or holding)[0] / f"{model_id}.json").read_text())


def figures(reports: list[RobustnessReport], checkpoints: list[Path], laundered: dict[str, float]) -> list[dict]:
    """One dict per model of the reports: its record's figures (``laundered``: ACC on the laundered test photos of
    models whose record has none, by id) and the reports' worst cases and recompressions."""
    found = {}
    for report in reports:
        for row in report.rows:
            if "+" in row.model:
                continue
            if row.model not in found:
                record = record_of(row.model, checkpoints)
                found[row.model] = {
                    "id": row.model,
                    "task": record["task"],
                    "variant": record.get("variant", "standard"),
                    "acc": record["metrics"]["test"]["acc"],
                    "fpr": record["metrics"]["test"]["fpr"],
                    "laundered_acc": record["metrics"].get("test_wild", {}).get("acc", laundered.get(row.model)),
                    "minutes": record["training_seconds"] / 60,
                    "worst_case": {},
                }
            model = found[row.model]
            if row.attack == "none":
                model["recompressed"] = row.recompressed
            elif row.attack == "worst-case":
                model["worst_case"][row.eps] = row.flagged_after
                if row.eps == 1:
                    model["attacked_recompressed"] = row.recompressed
    return sorted(
        found.values(), key=lambda model: (TASK_IDS.index(model["task"]), VARIANT_ORDER.index(model["variant"]))
    )


def markdown(models: list[dict], eps: list[int], qualities: list[str]) -> str:
    def number(value) -> str:
        return "-" if value is None else f"{value:.1f}"

    head = (
        ["task", "variant", "clean ACC", "FPR", "laundered ACC"]
        + [f"worst case eps {value}" for value in eps]
        + [f"JPEG Q{quality}" for quality in qualities]
        + [f"eps 1 then Q{quality}" for quality in qualities]
        + ["training min"]
    )
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for model in models:
        cells = [
            model["task"],
            model["variant"],
            number(model["acc"]),
            number(model["fpr"]),
            number(model["laundered_acc"]),
            *(number(model["worst_case"].get(value)) for value in eps),
            *(number(model.get("recompressed", {}).get(quality)) for quality in qualities),
            *(number(model.get("attacked_recompressed", {}).get(quality)) for quality in qualities),
            f"{model['minutes']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(models: list[dict], title: str, lowest_quality: str, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), dpi=110)
    axes = figure.subplots(1, 2, sharey=True)
    for axis, key, label in (
        (axes[0], lambda model: model["worst_case"].get(1), "worst-case TPR % under attack, eps 1"),
        (
            axes[1],
            lambda model: model.get("recompressed", {}).get(lowest_quality),
            f"TPR % after JPEG Q{lowest_quality}",
        ),
    ):
        for variant in VARIANT_ORDER:
            chosen = [model for model in models if model["variant"] == variant and key(model) is not None]
            if not chosen:
                continue
            axis.scatter(
                [key(model) for model in chosen],
                [model["acc"] for model in chosen],
                color=VARIANT_COLOURS[variant],
                label=variant,
                s=36,
            )
            for model in chosen:
                axis.annotate(
                    model["task"], (key(model), model["acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        for model in models:  # an arrow from each task's standard model to its variants
            standard = next(
                (other for other in models if other["task"] == model["task"] and other["variant"] == "standard"), None
            )
            if model["variant"] == "standard" or standard is None or None in (key(model), key(standard)):
                continue
            axis.annotate(
                "",
                xy=(key(model), model["acc"]),
                xytext=(key(standard), standard["acc"]),
                arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 0.8},
            )
        axis.set_xlabel(label)
        axis.set_xlim(-3, 103)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("clean ACC % on the test devices")
    axes[0].legend(loc="lower right", fontsize=8)
    figure.suptitle(f"{title}: what robustness costs (up and right is better)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def draw_curves(models: list[dict], checkpoints: list[Path], path: Path) -> None:
    from matplotlib.figure import Figure

    robust = [model for model in models if model["variant"] == "robust"]
    if not robust:
        raise SystemExit("--curves draws robust models' training; the reports hold none")
    figure = Figure(figsize=(4.2 * min(4, len(robust)), 3.4 * ((len(robust) + 3) // 4)), dpi=100)
    grid = figure.subplots((len(robust) + 3) // 4, min(4, len(robust)), squeeze=False)
    for axis, model in zip(grid.ravel(), robust):
        record = record_of(model["id"], checkpoints)
        training = record["adversarial_training"]
        steps = record["hyperparameters"]["steps"]
        for key, colour in (("attack_success", "#c44e52"), ("clean_accuracy", "#4c72b0")):
            curve = training[key]["curve"]
            axis.plot(
                [(index + 0.5) * steps / len(curve) for index in range(len(curve))], curve, color=colour, label=key
            )
        axis.set_ylim(-0.03, 1.03)
        axis.set_title(
            model["id"]
            + ("\n" + "; ".join(flag.split(":")[0] for flag in training["flags"]) if training["flags"] else ""),
            fontsize=8,
        )
        axis.set_xlabel("step", fontsize=8)
        axis.grid(alpha=0.3)
    for axis in grid.ravel()[len(robust) :]:
        axis.set_visible(False)
    grid[0][0].legend(fontsize=7, loc="center right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument(
        "--checkpoints",
        type=Path,
        action="append",
        help="checkpoint folders holding the models' training records, searched in order (repeatable; default "
        "checkpoints/cameras-seed0)",
    )
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--laundered",
        type=Path,
        action="append",
        default=[],
        help="`cfzoo evaluate --laundering wild --json` output: the standard models' ACC on the laundered test photos",
    )
    parser.add_argument("--curves", type=Path, help="PNG of the robust models' adversarial training curves")
    arguments = parser.parse_args()
    reports = [RobustnessReport.model_validate_json(path.read_text()) for path in arguments.reports]
    if any(report.goal != "hide" for report in reports):
        raise SystemExit("the price of robustness compares hiding reports (TPR); leave out --goal frame reports")
    laundered = {}
    for path in arguments.laundered:
        for row in json.loads(path.read_text())["rows"]:
            laundered[f"{row['family']}-{row['task']}"] = row["acc"]
    checkpoints = arguments.checkpoints or [Path("checkpoints/cameras-seed0")]
    models = figures(reports, checkpoints, laundered)
    eps = sorted({value for model in models for value in model["worst_case"]})
    qualities = [str(quality) for quality in reports[0].recompress]
    print(markdown(models, eps, qualities))
    if arguments.figure is not None:
        title = arguments.title or reports[0].target.split("-")[0]
        draw(models, title, qualities[-1], arguments.figure)
        print(f"\nfigure: {arguments.figure}")
    if arguments.curves is not None:
        draw_curves(models, checkpoints, arguments.curves)
        print(f"curves: {arguments.curves}")


if __name__ == "__main__":
    main()
