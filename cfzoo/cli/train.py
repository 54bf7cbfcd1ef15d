"""``cfzoo train``: train detectors on a camera dataset (needs the ``train`` extra)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from cfzoo.cli.common import handle_errors, new_progress, stdout
from cfzoo.cli.data import DATA_DIR, SEED, TEST_DEVICES, open_dataset
from cfzoo.cli.render import print_json
from cfzoo.errors import CfzooError
from cfzoo.families import FAMILIES
from cfzoo.manipulations import TASK_IDS, get_manipulation
from cfzoo.paths import default_checkpoint_dir
from cfzoo.training import require_training_extra


@handle_errors
def train(
    data: Path | None = DATA_DIR,
    family: list[str] = typer.Option(
        [], "--family", "-f", help=f"Detector family; repeat for several: {', '.join(FAMILIES)}."
    ),
    task: list[str] = typer.Option([], "--task", "-t", help=f"Task id; repeat for several: {', '.join(TASK_IDS)}."),
    all_models: bool = typer.Option(
        False, "--all", help="Every family (or those given) for every task (or those given)."
    ),
    out: Path | None = typer.Option(
        None,
        "--checkpoints",
        "--out",
        help="Checkpoint folder to write (default $CFZOO_HOME/checkpoints, ~/.cfzoo/checkpoints), the one evaluate and export read.",
    ),
    seed: int = SEED,
    test_device: list[str] | None = TEST_DEVICES,
    steps: int | None = typer.Option(None, "--steps", help="Optimiser steps (networks); default per family."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Patches per step (networks); default per family."
    ),
    learning_rate: float | None = typer.Option(None, "--lr", help="Peak learning rate (networks); default per family."),
    augment: bool | None = typer.Option(
        None,
        "--augment/--no-augment",
        help="Random 90-degree rotations and flips of training patches (networks); default per family: on for "
        "bayar2016 and xception, off for cozzolino2017.",
    ),
    pristine_noise: float | None = typer.Option(
        None,
        "--pristine-noise",
        min=0.0,
        metavar="SIGMA",
        help="Add rounded Gaussian noise, deviation drawn from 0..SIGMA gray levels, to every pristine training patch "
        "(networks), so that noise alone does not read as a manipulation; 0: off. Default per family: 2 for xception, 0 otherwise.",
    ),
    zoomed_train_photos: bool | None = typer.Option(
        None,
        "--zoomed-train-photos/--no-zoomed-train-photos",
        help="Resize tasks: keep the photos the camera upsampled itself (EXIF digital zoom) in the train set, as both "
        "classes, so that the detector learns the task's resampling rather than any resampling; test sets always leave "
        "them out. Default per family: on for bayar2016, off otherwise.",
    ),
    variant: str = typer.Option(
        "standard",
        "--variant",
        help="standard: the photos as they are. wild: every photo (pristine and manipulated alike, after the "
        "manipulation) goes through a random platform laundering drawn for it: none, a JPEG re-save (Q 65-100, 4:2:0 "
        "or 4:4:4), a bicubic downscale (0.5-1.0) or both; the model is <family>-<task>-wild and is tested on the "
        "test devices as they are (test) and laundered alike (test_wild). robust: the standard model fine-tuned "
        "(or, with --from-scratch, a new network trained) adversarially (integer PGD at eps 1-2, or --adversary-eps, "
        "on half of every batch, both classes; networks only), "
        "<family>-<task>-robust; its record holds the training curves and flags a collapse.",
    ),
    start_from: Path | None = typer.Option(
        None,
        "--start-from",
        help="Networks' wild and robust variants: fine-tune the standard <family>-<task> of this checkpoint folder "
        "(600 steps at lr 1e-4 unless --steps and --lr say otherwise). robust fine-tunes the one in --checkpoints "
        "without it (or none: --from-scratch); wild trains from scratch without it.",
    ),
    from_scratch: bool = typer.Option(
        False,
        "--from-scratch",
        help="robust: train adversarially from the network's initialisation on the family's full schedule "
        "(bayar2016: 1200 steps of 32 at lr 1e-3; --steps, --batch-size and --lr change it) instead of fine-tuning "
        "the standard model.",
    ),
    trades_beta: float | None = typer.Option(
        None,
        "--trades-beta",
        metavar="BETA",
        help="robust: train with TRADES instead of Madry's objective: cross-entropy on every clean patch plus BETA "
        "times the KL divergence between the clean and attacked predictions (the attack raises that divergence). "
        "Larger BETA: more robust, less clean accuracy; the TRADES paper used 6.",
    ),
    adversary_eps: list[int] = typer.Option(
        [],
        "--adversary-eps",
        metavar="EPS",
        help="robust: the eps (whole gray levels) the attack in training draws from for each patch; repeat for "
        "several (default 1 and 2). docs/robustness.md compares 1 alone with the default on median7.",
    ),
    weight_average: float = typer.Option(
        0.0,
        "--weight-average",
        metavar="DECAY",
        help="Networks: keep an exponential moving average of the weights with this decay per step (for example "
        "0.995: about the last 200 steps) and make it the trained model; 0: the last step's weights.",
    ),
    width: int = typer.Option(
        1,
        "--width",
        min=1,
        metavar="N",
        help="bayar2016: multiply the widths of its convolutions and FC layers by N (a new network, not fine-tuned), "
        "to measure what capacity buys; the shipped models have width 1.",
    ),
    max_train_patches: int | None = typer.Option(
        None, "--max-train-patches", help="Train on a seeded, balanced subset."
    ),
    max_test_patches: int | None = typer.Option(
        None, "--max-test-patches", help="Evaluate on a seeded, balanced subset."
    ),
    evaluate: bool = typer.Option(
        True,
        "--evaluate/--no-evaluate",
        help="Score the test devices after training. --no-evaluate trains only, on a machine that may hold only the "
        "train devices' photos (name the held-out ones with --test-device); cfzoo evaluate --save-metrics scores them later.",
    ),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave models whose checkpoint exists alone."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a stopped run: each network continues from its last snapshot (same numbers as an uninterrupted "
        "run), and models whose checkpoint is written are finished and left alone. Give the same settings as the stopped run.",
    ),
    snapshot_every: int = typer.Option(
        100,
        "--snapshot-every",
        min=1,
        metavar="STEPS",
        help="Networks save <id>.snapshot.safetensors in --checkpoints every STEPS steps (removed when the model is done).",
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Where patch sets are kept (default $CFZOO_CACHE)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the training records as JSON."),
) -> None:
    """Train detectors and evaluate them on the held-out test devices.

    Each model writes <family>-<task>.safetensors and <family>-<task>.json (hyper-parameters, split,
    test FPR/TPR/ACC) to --checkpoints, and a line per finished model to train.log there. Stop a run at any time
    and continue it with --resume.

    Examples: cfzoo train ../shared/data/cameras -f bayar2016 -t jpeg70;
    cfzoo train ../shared/data/cameras --all -f spam -f bayar2016 -f cozzolino2017;
    cfzoo train ../shared/data/cameras --all -f bayar2016 --steps 4000 --batch-size 64 --resume
    """
    require_training_extra()
    from cfzoo.families import train_detector
    from cfzoo.families.checkpoints import snapshot_path
    from cfzoo.training.run import TRAINED_VARIANTS, TrainingPlan

    families = list(dict.fromkeys(family)) or (list(FAMILIES) if all_models else [])
    tasks = list(dict.fromkeys(task)) or (list(TASK_IDS) if all_models else [])
    if not families or not tasks:
        raise CfzooError("say what to train: --family F --task T (repeatable), or --all")
    for name in families:
        if name not in FAMILIES:
            raise CfzooError(f"unknown family {name!r}; choose one of: {', '.join(FAMILIES)}")
    for task_id in tasks:
        get_manipulation(task_id)
    if variant not in TRAINED_VARIANTS:
        raise CfzooError(f"cfzoo train makes the variants {', '.join(TRAINED_VARIANTS)}, not {variant!r}")
    dataset = open_dataset(data, cache_dir)
    out = out or default_checkpoint_dir()
    records = []
    for family_name in families:
        for task_id in tasks:
            plan = TrainingPlan(
                family=family_name,
                task=task_id,
                seed=seed,
                steps=steps,
                batch_size=batch_size,
                learning_rate=learning_rate,
                dihedral_augmentation=augment,
                pristine_noise=pristine_noise,
                zoomed_train_photos=zoomed_train_photos,
                max_train_patches=max_train_patches,
                max_test_patches=max_test_patches,
                test_devices=tuple(test_device) if test_device else None,
                evaluate=evaluate,
                variant=variant,
                start_from=None if start_from is None else str(start_from),
                from_scratch=from_scratch,
                trades_beta=trades_beta,
                adversary_eps=tuple(adversary_eps) or None,
                weight_average=weight_average,
                network_width=width,
            )
            finished = (out / f"{plan.model_id}.json").exists() and not snapshot_path(out, plan.model_id).exists()
            if (skip_existing and (out / f"{plan.model_id}.json").exists()) or (resume and finished):
                records.append(json.loads((out / f"{plan.model_id}.json").read_text()))
                continue
            with new_progress() as progress:
                bars: dict[str, int] = {}

                def on_status(stage: str, done: int, total: int) -> None:
                    if stage not in bars:
                        bars[stage] = progress.add_task(f"{plan.model_id} {stage}", total=total)
                    progress.update(bars[stage], completed=done, total=total)

                record = train_detector(plan, dataset, out, cache_dir, on_status, resume, snapshot_every)
            records.append(record)
            _log(out, record)
    if as_json:
        print_json(records)
        return
    table = Table(title=f"test devices: {', '.join(records[0]['split']['test'])}")
    for column in ("model", "train patches", "FPR %", "TPR %", "ACC %", "seconds"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for record in records:
        test = record["metrics"].get("test")
        rates = [f"{test[name]:.2f}" for name in ("fpr", "tpr", "acc")] if test else ["-", "-", "-"]
        table.add_row(record["id"], str(record["train_patches"]), *rates, f"{record['training_seconds']:.0f}")
    stdout.print(table)
    stdout.print(f"checkpoints: {out}", soft_wrap=True)


def _log(out: Path, record: dict) -> None:
    test = record["metrics"].get("test")
    rates = f"fpr={test['fpr']:.2f} tpr={test['tpr']:.2f} acc={test['acc']:.2f}" if test else "not evaluated"
    line = (
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {record['id']} seed={record['seed']} train_patches={record['train_patches']} "
        f"seconds={record['training_seconds']} {rates}\n"
    )
    with open(out / "train.log", "a") as log:
        log.write(line)
