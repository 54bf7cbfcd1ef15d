"""``cfzoo bench``: every model under one fixed, versioned protocol, one entry each, and a leaderboard over them.

The protocol (:data:`BENCH_PROTOCOL`, docs/bench.md) is ``cfzoo robustness`` with its defaults, run twice per
model: hiding (manipulated test patches pushed towards pristine: the worst-case TPR) and framing (pristine test
patches pushed towards manipulated: the worst-case FPR). An entry gives both at each eps, the clean figures, the
model runs the attacks used, the data the model was trained on, and the health flags; a flag makes the entry
``unreliable``, as RobustBench marks an evaluation it does not trust. The headline is the robust balanced accuracy
at the smallest eps: the mean of the worst-case TPR and 100 minus the worst-case FPR.

Entries are also built from robustness reports run with the protocol's settings (:func:`entries_from_reports`), so
a report measured once serves both. A folder of entries (``entries/<model>.json``) is the benchmark; its
leaderboard (markdown, a sortable self-contained HTML page, JSON) is rebuilt from every entry of the current
protocol in it, so models benched on different days, the zoo's and users' own, share one board.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from cfzoo._version import __version__
from cfzoo.errors import CfzooError
from cfzoo.experiments.context import ExperimentContext
from cfzoo.experiments.robustness import (
    DEFAULT_ATTACKS,
    DEFAULT_EPS,
    DEFAULT_MAX_PATCHES,
    DEFAULT_RECOMPRESS,
    NO_ATTACK,
    WORST_CASE,
    RobustnessSettings,
    robustness,
)
from cfzoo.files import write_atomically
from cfzoo.ops.attacks.common import GOALS
from cfzoo.ops.attacks.registry import get_attack
from cfzoo.ops.attacks.square import DEFAULT_QUERIES
from cfzoo.reports import column_title, html_templates
from cfzoo.results import BenchBoard, BenchEntry, BenchProtocol, RobustnessReport
from cfzoo.zoo.catalog import find_entry
from cfzoo.zoo.registry import EXTERNAL_FAMILY, ModelEntry

BENCH_PROTOCOL = BenchProtocol(
    # 2: PGD, APGD and Square warm-start each eps from the smaller eps's best
    version=2,
    seed=0,
    patches=DEFAULT_MAX_PATCHES,
    eps=list(DEFAULT_EPS),
    attacks=list(DEFAULT_ATTACKS),
    warm_starts=[attack for attack in DEFAULT_ATTACKS if get_attack(attack).warm_starts],
    square_queries=DEFAULT_QUERIES,
    recompress=list(DEFAULT_RECOMPRESS),
    goals=list(GOALS),
)
ENTRIES_DIR, MARKDOWN_NAME, HTML_NAME, JSON_NAME = "entries", "LEADERBOARD.md", "leaderboard.html", "leaderboard.json"


def protocol_settings(target: str, goal: str) -> RobustnessSettings:
    """The robustness run of the protocol against ``target`` (a family, a model id or an .onnx path) for ``goal``."""
    return RobustnessSettings(
        target,
        eps=tuple(BENCH_PROTOCOL.eps),
        attacks=tuple(BENCH_PROTOCOL.attacks),
        queries=BENCH_PROTOCOL.square_queries,
        recompress=tuple(BENCH_PROTOCOL.recompress),
        goal=goal,
    )


def check_context(context: ExperimentContext) -> None:
    """A one-line CfzooError unless ``context`` draws what the protocol draws (its seed and patches per task)."""
    if (context.seed, context.max_patches) != (BENCH_PROTOCOL.seed, BENCH_PROTOCOL.patches):
        raise CfzooError(
            f"benchmark protocol {BENCH_PROTOCOL.version} runs with seed {BENCH_PROTOCOL.seed} and "
            f"{BENCH_PROTOCOL.patches} patches per task; for other settings use cfzoo robustness"
        )


def bench(context: ExperimentContext, targets: Sequence[str]) -> list[BenchEntry]:
    """The entries of every model ``targets`` name (families, model ids, .onnx paths), each target's battery
    run for both goals under the protocol on the context's data."""
    check_context(context)
    for target in targets:  # every model is found, and every attack fits it, before any data work
        for goal in GOALS:
            protocol_settings(target, goal).targets(context)
    entries = []
    for target in targets:
        started = time.perf_counter()
        reports = [robustness(context.staged(f"{target} {goal}"), protocol_settings(target, goal)) for goal in GOALS]
        entries += entries_from_reports(*reports, context.dataset.device_names, seconds=time.perf_counter() - started)
    return entries


def entries_from_reports(
    hide: RobustnessReport, frame: RobustnessReport, devices: Sequence[str], seconds: float | None = None
) -> list[BenchEntry]:
    """An entry per model of a hiding and a framing report run with the protocol's settings on a data folder with
    ``devices``, or a one-line CfzooError naming what differs."""
    for report, goal in ((hide, "hide"), (frame, "frame")):
        check_report(report, goal)
    if (hide.dataset, hide.test_devices) != (frame.dataset, frame.test_devices):
        raise CfzooError("the hiding and the framing report were measured on different data; run both on one --data")
    models = list(dict.fromkeys(row.model for row in hide.rows))
    if models != list(dict.fromkeys(row.model for row in frame.rows)):
        raise CfzooError("the hiding and the framing report cover different models; run both against one --target")
    measured = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    share = None if seconds is None else round(seconds / len(models), 2)
    protocol_training = sorted(set(devices) - set(hide.test_devices))
    return [_entry(model, hide, frame, protocol_training, measured, share) for model in models]


def check_report(report: RobustnessReport, goal: str) -> None:
    """A one-line CfzooError unless ``report`` is the protocol's run for ``goal``."""
    square = report.parameters.get("square")
    found = {
        "goal": report.goal,
        "seed": report.seed,
        "patches per task": report.max_patches,
        "eps": report.eps,
        "attacks": report.attacks,
        "warm starts": [attack for attack, parameters in report.parameters.items() if parameters.warm_start],
        "Square queries": None if square is None else square.queries,
        "recompress": report.recompress,
        "surviving JPEG": next(
            (found.survive_jpeg for found in report.parameters.values() if found.survive_jpeg), None
        ),
    }
    wanted = {
        "goal": goal,
        "seed": BENCH_PROTOCOL.seed,
        "patches per task": BENCH_PROTOCOL.patches,
        "eps": BENCH_PROTOCOL.eps,
        "attacks": BENCH_PROTOCOL.attacks,
        "warm starts": BENCH_PROTOCOL.warm_starts,
        "Square queries": BENCH_PROTOCOL.square_queries,
        "recompress": BENCH_PROTOCOL.recompress,
        "surviving JPEG": None,
    }
    differ = [f"{name} {found[name]} (protocol: {wanted[name]})" for name in wanted if found[name] != wanted[name]]
    if differ:
        raise CfzooError(
            f"the {goal} report was not run with benchmark protocol {BENCH_PROTOCOL.version}: {'; '.join(differ)}; "
            f"run cfzoo robustness with its defaults and --goal {goal}"
        )


def _entry(
    model: str, hide: RobustnessReport, frame: RobustnessReport, protocol_training: list[str], measured: str, seconds
) -> BenchEntry:
    hidden = [row for row in hide.rows if row.model == model]
    framed = [row for row in frame.rows if row.model == model]
    worst_hidden = {row.eps: row for row in hidden if row.attack == WORST_CASE}
    worst_framed = {row.eps: row for row in framed if row.attack == WORST_CASE}
    unattacked = next(row for row in hidden if row.attack == NO_ATTACK)
    task = unattacked.task
    first = BENCH_PROTOCOL.eps[0]
    registered = find_entry(model)
    training = [] if registered is None else list(registered.training.get("split", {}).get("train", []))
    health = [flag for flag in hide.health if flag.task == task] + [flag for flag in frame.health if flag.task == task]
    return BenchEntry(
        protocol=BENCH_PROTOCOL.version,
        model=model,
        family=EXTERNAL_FAMILY if registered is None else registered.family,
        task=task,
        source=_source(registered),
        cfzoo_version=__version__,
        measured=measured,
        dataset=Path(hide.dataset).name,
        test_devices=hide.test_devices,
        training_devices=training,
        trained_on_test_devices=sorted(set(training) & set(hide.test_devices)),
        extra_data=bool(set(training) - set(protocol_training)) if training else None,
        patches=unattacked.patches,
        clean_tpr=unattacked.flagged_before,
        clean_fpr=next(row for row in framed if row.attack == NO_ATTACK).flagged_before,
        clean_auc=unattacked.ranking.auc,
        robust_tpr={str(eps): row.flagged_after for eps, row in worst_hidden.items()},
        robust_tpr_interval={str(eps): row.flagged_after_interval for eps, row in worst_hidden.items()},
        robust_fpr={str(eps): row.flagged_after for eps, row in worst_framed.items()},
        robust_fpr_interval={str(eps): row.flagged_after_interval for eps, row in worst_framed.items()},
        robust_auc={str(eps): row.ranking.auc for eps, row in worst_hidden.items()},
        robust_balanced_accuracy=round(
            (worst_hidden[first].flagged_after + 100.0 - worst_framed[first].flagged_after) / 2, 4
        ),
        forward_passes=round(
            sum(row.mean_queries for row in [*hidden, *framed] if row.mean_queries is not None) / 2, 2
        ),
        health=health,
        health_goals=["hide"] * sum(flag.task == task for flag in hide.health)
        + ["frame"] * sum(flag.task == task for flag in frame.health),
        unreliable=bool(health),
        seconds=seconds,
    )


def _source(entry: ModelEntry | None) -> str:
    if entry is None:
        return "file"
    return "registered" if entry.family == EXTERNAL_FAMILY else "zoo"


def board(entries: Sequence[BenchEntry]) -> BenchBoard:
    """The leaderboard of ``entries`` (the current protocol's only): best robust balanced accuracy first, then
    the lower worst-case FPR, then the model id."""
    current = [entry for entry in entries if entry.protocol == BENCH_PROTOCOL.version]
    first = str(BENCH_PROTOCOL.eps[0])
    ranked = sorted(current, key=lambda entry: (-entry.robust_balanced_accuracy, entry.robust_fpr[first], entry.model))
    return BenchBoard(protocol=BENCH_PROTOCOL, entries=ranked)


def read_entries(folder: str | os.PathLike[str]) -> tuple[list[BenchEntry], list[str]]:
    """(the entries in ``folder``/entries, one line per file that is not an entry of the current protocol)."""
    entries, skipped = [], []
    for path in sorted((Path(folder) / ENTRIES_DIR).glob("*.json")):
        try:
            entry = BenchEntry.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            skipped.append(f"{path}: not a bench entry ({str(error).splitlines()[0]})")
            continue
        if entry.protocol != BENCH_PROTOCOL.version:
            skipped.append(f"{path}: protocol {entry.protocol}, not {BENCH_PROTOCOL.version}; bench the model again")
            continue
        entries.append(entry)
    return entries, skipped


def write_bench_folder(folder: str | os.PathLike[str], entries: Sequence[BenchEntry]) -> tuple[BenchBoard, list[str]]:
    """Add (or replace) ``entries`` in ``folder``/entries, then rewrite the leaderboard over every current entry
    there; each file is written whole or not at all. Returns the board and the files left out of it."""
    folder = Path(folder)
    (folder / ENTRIES_DIR).mkdir(parents=True, exist_ok=True)
    for entry in entries:
        text = json.dumps(entry.to_json(), indent=2, allow_nan=False) + "\n"
        write_atomically(
            folder / ENTRIES_DIR / entry_file_name(entry.model), lambda temporary, text=text: temporary.write_text(text)
        )
    found, skipped = read_entries(folder)
    leaderboard = board(found)
    for name, text in (
        (JSON_NAME, json.dumps(leaderboard.to_json(), indent=2, allow_nan=False) + "\n"),
        (MARKDOWN_NAME, leaderboard_markdown(leaderboard)),
        (HTML_NAME, leaderboard_html(leaderboard)),
    ):
        write_atomically(folder / name, lambda temporary, text=text: temporary.write_text(text, encoding="utf-8"))
    return leaderboard, skipped


def entry_file_name(model: str) -> str:
    """``<model>.json``, the id made safe as one file name (a path's separators and dots become dashes)."""
    safe = "".join(character if character.isalnum() or character in "-_." else "-" for character in model)
    return safe.strip(".") + ".json"


def leaderboard_markdown(leaderboard: BenchBoard) -> str:
    """The leaderboard as a markdown table, with the protocol in one line above it."""
    protocol = leaderboard.protocol
    eps = [str(value) for value in protocol.eps]
    lines = [
        f"# cfzoo bench, protocol {protocol.version}",
        "",
        _protocol_line(protocol),
        "",
        "| rank | model | task | robust bal. ACC % (eps "
        + eps[0]
        + ") | clean TPR / FPR % | AUC | "
        + " | ".join(f"TPR % hidden, eps {value}" for value in eps)
        + " | "
        + " | ".join(f"FPR % framed, eps {value}" for value in eps)
        + " | model runs per patch | flags |",
        "|---:|---|---|---:|---:|---:|" + "---:|" * (2 * len(eps)) + "---:|---|",
    ]
    for rank, entry in enumerate(leaderboard.entries, start=1):
        flags = ", ".join(dict.fromkeys(flag.flag for flag in entry.health)) or "-"
        lines.append(
            f"| {rank} | `{entry.model}` | {entry.task} | **{entry.robust_balanced_accuracy:.1f}** | "
            f"{entry.clean_tpr:.1f} / {entry.clean_fpr:.1f} | {_number(entry.clean_auc, 3)} | "
            + " | ".join(f"{entry.robust_tpr[value]:.1f}" for value in eps)
            + " | "
            + " | ".join(f"{entry.robust_fpr[value]:.1f}" for value in eps)
            + f" | {entry.forward_passes:.0f} | {('**unreliable**: ' + flags) if entry.unreliable else flags} |"
        )
    return "\n".join(lines) + "\n"


def leaderboard_html(leaderboard: BenchBoard) -> str:
    """The leaderboard as one self-contained HTML page whose columns sort on a click (inline script, no fetch)."""
    protocol = leaderboard.protocol
    return (
        html_templates("cfzoo.experiments")
        .get_template("leaderboard.html.j2")
        .render(
            protocol=protocol,
            protocol_line=_protocol_line(protocol),
            eps=[str(value) for value in protocol.eps],
            entries=leaderboard.entries,
            title=column_title,
        )
    )


def _protocol_line(protocol: BenchProtocol) -> str:
    return (
        f"Protocol {protocol.version}: seed {protocol.seed}, {protocol.patches} test patches per task and goal, "
        f"eps {', '.join(map(str, protocol.eps))}, attacks {', '.join(protocol.attacks)} (Square {protocol.square_queries} "
        f"queries), goals {' and '.join(protocol.goals)}; the worst case over the attacks, envelopes over eps "
        "(docs/bench.md). Robust balanced accuracy = (worst-case TPR hidden + 100 - worst-case FPR framed) / 2."
    )


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
