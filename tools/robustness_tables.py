"""The tables of docs/robustness.md from the robustness.json of several families, side by side.

    cfzoo robustness --target spam --data ../shared/data/cameras --out R/spam   # and bayar2016, cozzolino2017
    python tools/robustness_tables.py R/spam/robustness.json R/bayar2016/robustness.json R/cozzolino2017/robustness.json

Prints markdown: the worst case (with 95% intervals), FGSM alone, Square alone, the ranking under attack (AUC of the
worst case against the other class), after recompression, and the health flags by kind. The reports share a goal:
hiding (TPR on manipulated patches) or framing (``--goal frame``: FPR on pristine patches).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

TITLES = {"spam": "SPAM+SVM", "bayar2016": "Bayar2016", "cozzolino2017": "Cozzolino2017"}


def rows_of(report: dict, attack: str) -> dict[tuple[str, int], dict]:
    return {(row["task"], row["eps"]): row for row in report["rows"] if row["attack"] == attack}


def tpr_table(reports: list[dict], attack: str, interval: bool = False) -> list[str]:
    eps = reports[0]["eps"]
    head = "| task | " + " | ".join(
        f"{TITLES[report['target']]} before | " + " | ".join(f"eps {value}" for value in eps) for report in reports
    )
    lines = [head + " |", "|---|" + "---:|" * (len(reports) * (1 + len(eps)))]
    for task in dict.fromkeys(row["task"] for row in reports[0]["rows"]):
        cells = []
        for report in reports:
            found = rows_of(report, attack)
            cells.append(f"{found[task, eps[0]]['flagged_before']:.1f}")
            for value in eps:
                row = found[task, value]
                text = f"{row['flagged_after']:.1f}"
                if interval:
                    text += f" [{row['flagged_after_interval'][0]:.0f}, {row['flagged_after_interval'][1]:.0f}]"
                cells.append(text)
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def ranking_table(reports: list[dict]) -> list[str]:
    eps = [0, *reports[0]["eps"]]
    head = "| task | " + " | ".join(
        " | ".join(f"{TITLES[report['target']]} {'clean' if value == 0 else f'eps {value}'}" for value in eps)
        for report in reports
    )
    lines = [head + " |", "|---|" + "---:|" * (len(reports) * len(eps))]
    for task in dict.fromkeys(row["task"] for row in reports[0]["rows"]):
        cells = []
        for report in reports:
            clean, worst = rows_of(report, "none"), rows_of(report, "worst-case")
            for value in eps:
                row = clean[task, 0] if value == 0 else worst[task, value]
                cells.append(f"{row['ranking']['auc']:.3f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def recompressed_table(reports: list[dict]) -> list[str]:
    qualities = [str(quality) for quality in reports[0]["recompress"]]
    first = reports[0]["eps"][0]
    names = " / ".join(f"Q{quality}" for quality in qualities)
    head = "| task | " + " | ".join(f"{TITLES[report['target']]} none {names} | worst {names}" for report in reports)
    lines = [head + " |", "|---|" + "---|" * (2 * len(reports))]
    for task in dict.fromkeys(row["task"] for row in reports[0]["rows"]):
        cells = []
        for report in reports:
            clean, worst = rows_of(report, "none")[task, 0], rows_of(report, "worst-case")[task, first]
            for row in (clean, worst):
                cells.append(" / ".join(f"{row['recompressed'][quality]:.0f}" for quality in qualities))
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def health_lines(reports: list[dict]) -> list[str]:
    lines = []
    for report in reports:
        counts = Counter(flag["flag"] for flag in report["health"])
        kinds = ", ".join(f"{flag} {count}" for flag, count in counts.items()) or "none"
        lines.append(f"- {TITLES[report['target']]}: {kinds}")
    return lines


def main(paths: list[str]) -> None:
    reports = [json.loads(Path(path).read_text()) for path in paths]
    goals = {report["goal"] for report in reports}
    if len(goals) != 1:
        raise SystemExit("give reports of one goal: all hiding or all framing")
    hiding = goals.pop() == "hide"
    rate, held, other = ("TPR", "detected", "pristine") if hiding else ("FPR", "called pristine", "manipulated")
    sections = [
        (
            f"**Worst case over the battery** ({rate} %, a patch {held} only if every attack fails on it; 95% Wilson "
            "interval in brackets):",
            tpr_table(reports, "worst-case", interval=True),
        ),
        (f"**FGSM alone** (the paper's attack; envelopes over eps), {rate} %:", tpr_table(reports, "fgsm")),
        (
            f"**Square alone** (black-box, 300 queries, detector graph only; envelopes over eps), {rate} %:",
            tpr_table(reports, "square"),
        ),
        (
            "**Ranking under attack**: AUC of the target's score on the worst case's attacked patches against as many "
            f"{other} test patches (clean: the unattacked ones; 0.5 is a coin, below it the two classes' scores are "
            "swapped):",
            ranking_table(reports),
        ),
        (
            f"**After recompression** ({rate} % at eps {reports[0]['eps'][0]}; 'none': the unattacked patches "
            "recompressed; 'worst': the worst case over the battery, then recompressed):",
            recompressed_table(reports),
        ),
        ("**Health flags** raised, by kind (each run's details in its report):", health_lines(reports)),
    ]
    for title, lines in sections:
        print(title, "", *lines, "", sep="\n")


if __name__ == "__main__":
    main(sys.argv[1:])
