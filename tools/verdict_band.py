"""How many whole-image verdicts an "uncertain" band moves, and how many wrong ones it removes.

    python tools/verdict_band.py --data ../shared/data/cameras --per-device 12 --out docs/verdict-band.json

On photos of the test devices (seeded split, ``--per-device`` photos of each drawn with the seed), every detector
of every task judges the untouched photo (truth: pristine), and each task's detectors judge the photo after that
task's manipulation (truth: manipulated), as ``cfzoo detect`` does (stride 128, the majority rule). The band was
fixed before this measurement (cfzoo.ops.detect.UNCERTAIN_BAND), not chosen on these devices. Prints markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cfzoo.data import CameraDataset, split_devices
from cfzoo.images import load_image
from cfzoo.manipulations import TASK_IDS, apply_manipulation
from cfzoo.ops.detect import UNCERTAIN_BAND, score_image, select_detectors
from cfzoo.paper import FAMILY_IDS


def measure(dataset: CameraDataset, per_device: int, seed: int) -> list[dict]:
    split = split_devices(dataset.device_names, seed)
    detectors = select_detectors(providers="cpu").detectors
    rng = np.random.default_rng(seed)
    rows = []
    for device in split.test:
        photos = list(dataset.devices[device])
        for index in sorted(rng.choice(len(photos), size=min(per_device, len(photos)), replace=False)):
            pixels = load_image(photos[index]).pixels
            for verdict in score_image(pixels, detectors).verdicts:
                rows.append(
                    {
                        "photo": photos[index].name,
                        "device": device,
                        "task": verdict.task,
                        "family": verdict.family,
                        "truth": "pristine",
                        "share": verdict.flagged_share,
                    }
                )
            for task in TASK_IDS:
                judges = [detector for detector in detectors if detector.entry.task == task]
                for verdict in score_image(apply_manipulation(task, pixels), judges).verdicts:
                    rows.append(
                        {
                            "photo": photos[index].name,
                            "device": device,
                            "task": task,
                            "family": verdict.family,
                            "truth": "manipulated",
                            "share": verdict.flagged_share,
                        }
                    )
            print(f"{device} {photos[index].name}: {len(rows)} verdicts", flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    low, high = UNCERTAIN_BAND
    counts = {}
    for family in [*FAMILY_IDS, "all"]:
        chosen = [row for row in rows if family in ("all", row["family"])]
        if not chosen:
            continue
        wrong = [row for row in chosen if (row["share"] > 0.5) != (row["truth"] == "manipulated")]
        uncertain = [row for row in chosen if low <= row["share"] <= high]
        counts[family] = {
            "verdicts": len(chosen),
            "wrong": len(wrong),
            "uncertain": len(uncertain),
            "wrong_made_uncertain": sum(low <= row["share"] <= high for row in wrong),
            "right_made_uncertain": sum(low <= row["share"] <= high for row in chosen if row not in wrong),
        }
    return counts


def markdown(counts: dict) -> str:
    low, high = UNCERTAIN_BAND
    lines = [
        f"Uncertain band: a share of patches above the threshold from {low:.0%} to {high:.0%}",
        "",
        "| detectors | verdicts | wrong (majority rule) | uncertain | wrong ones made uncertain | right ones made uncertain | wrong left |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for family, count in counts.items():
        left = count["wrong"] - count["wrong_made_uncertain"]
        lines.append(
            f"| {family} | {count['verdicts']} | {count['wrong']} | {count['uncertain']} | {count['wrong_made_uncertain']} | "
            f"{count['right_made_uncertain']} | {left} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--per-device", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    rows = measure(CameraDataset.from_directory(arguments.data), arguments.per_device, arguments.seed)
    counts = summary(rows)
    arguments.out.write_text(
        json.dumps({"band": list(UNCERTAIN_BAND), "counts": counts, "verdicts": rows}, indent=1) + "\n"
    )
    print(markdown(counts))


if __name__ == "__main__":
    main()
