"""The paper's Fig. 2 claim, measured: f_prist transfers better, f_close converges faster.

    python tools/spam_feature_study.py --data ../shared/data/cameras --out docs/spam-feature.json

On every task that keeps the image size, the same manipulated test patches (``--max-patches``, seeded, spread over
the test devices) are attacked by spam-prist and spam-close against the SPAM+SVM detector at each eps. For each
run: the TPR of the target (SPAM+SVM, hard features) and of the off-target detectors (Cozzolino2017, Bayar2016) on
the attacked patches, and how fast the target fell: the share of patches fooled within 2, 5 and 10 steps, and the
mean step at which a fooled patch was first fooled. Writes JSON and prints markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cfzoo.data import CameraDataset, PatchSetSpec, build_patch_set, manipulated_rows, split_devices
from cfzoo.manipulations import TASK_IDS, get_manipulation
from cfzoo.ops.attacks.battery import attack_patches, partners_for
from cfzoo.ops.attacks.common import AttackSettings, AttackTarget
from cfzoo.ops.attacks.spam_feature import SPAM_FEATURE_ITERATIONS, SPAM_FEATURE_METHODS
from cfzoo.ops.scoring import called_manipulated
from cfzoo.zoo.catalog import open_detector

OFF_TARGET = ("cozzolino2017", "bayar2016")
WITHIN = (2, 5, 10)


def study(dataset: CameraDataset, eps_values: list[int], max_patches: int, seed: int) -> list[dict]:
    split = split_devices(dataset.device_names, seed)
    rows = []
    for task in [task for task in TASK_IDS if get_manipulation(task).keeps_size]:
        patch_set = build_patch_set(dataset, PatchSetSpec(task=task, split="test", seed=seed), split)
        chosen = manipulated_rows(patch_set, max_patches, seed)
        original = np.asarray(patch_set.patches[chosen])
        target = open_detector(f"spam-{task}", providers="cpu")
        judges = {
            "spam": target,
            **{family: open_detector(f"{family}-{task}", providers="cpu") for family in OFF_TARGET},
        }
        before = {family: _percent(called_manipulated(judge, original)[1]) for family, judge in judges.items()}
        for eps in eps_values:
            for method in SPAM_FEATURE_METHODS:
                result = attack_patches(
                    AttackSettings(eps, method, seed=seed),
                    AttackTarget.of(target),
                    original,
                    partners=None
                    if method != "spam-prist"
                    else np.asarray(patch_set.patches[partners_for(method, patch_set, chosen)]),
                )
                fooled = result.iterations < SPAM_FEATURE_ITERATIONS  # steps to the first fooling iterate
                rows.append(
                    {
                        "task": task,
                        "eps": eps,
                        "method": method,
                        "patches": len(original),
                        "tpr_before": before,
                        "tpr_after": {
                            family: _percent(called_manipulated(judge, result.patches)[1])
                            for family, judge in judges.items()
                        },
                        "fooled_within": {str(steps): _percent(result.iterations <= steps) for steps in WITHIN},
                        "mean_first_fooled_step": round(float(result.iterations[fooled].mean()), 2)
                        if fooled.any()
                        else None,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | eps | goal | SPAM+SVM (target) | Cozzolino2017 | Bayar2016 | fooled within 2 / 5 / 10 steps | mean first step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        tpr = row["tpr_after"]
        within = " / ".join(f"{row['fooled_within'][str(steps)]:.0f}" for steps in WITHIN)
        lines.append(
            f"| {row['task']} | {row['eps']} | {row['method'].removeprefix('spam-')} | {tpr['spam']:.1f} | {tpr['cozzolino2017']:.1f} "
            f"| {tpr['bayar2016']:.1f} | {within} | {row['mean_first_fooled_step']} |"
        )
    return "\n".join(lines)


def _percent(flags: np.ndarray) -> float:
    return round(100.0 * float(np.mean(flags)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--max-patches", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    rows = study(CameraDataset.from_directory(arguments.data), arguments.eps, arguments.max_patches, arguments.seed)
    arguments.out.write_text(
        json.dumps({"seed": arguments.seed, "max_patches": arguments.max_patches, "rows": rows}, indent=1) + "\n"
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
