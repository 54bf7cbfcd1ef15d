"""Train every Xception and Bayar2016 detector at once on one GPU machine lent for minutes.

The machine is reached through transfers with size limits (64 MiB up and 64 MiB back per call, files of at
most 16 MiB), so this tool splits the work as the transfers allow:

- ``bench``: every model of the run in its own process on random patches, to size the schedule to the lease;
- ``train``: builds the train patch sets from the train devices' photos, trains every model in its own
  process, all on the one GPU, with ``evaluate=False`` (the test devices' photos stay here; score them with
  ``cfzoo evaluate --save-metrics``), then packs the checkpoints for the trip back: Xception's convolution
  and linear weights as int8 with one float32 scale per output channel (21 MB per model instead of 83 MB),
  everything else as float32, in chunks of 16 MB. It reports how often the unpacked network's verdict
  differs from the trained one's on train patches, so the cost of the packing is measured, not assumed;
- ``unpack`` (here): joins the chunks and writes ordinary float32 checkpoints (``.safetensors`` and
  ``.json``) that ``cfzoo evaluate`` and ``cfzoo export`` take; each record says how its weights travelled.

Example, on the GPU machine: python tools/gpu_train.py train --data /tmp/cameras --test-device Google_Pixel5
--test-device Nikon_D5500 --work /tmp/work --xception-steps 1000 --xception-batch 128 --deadline 420

Measured on one H200 with 16 cores (2026-11-30): the ten train patch sets of the eight tasks take 130 s
(median7 alone 67 s). With 8 Xception and 16 Bayar2016 workers at once, Xception ran at 4-6 steps of 128
patches per second (the bench on random patches said 7) and Bayar2016 at 15-65 steps of 64; the CPU, one
core per worker, is the limit. Three Xception workers alone ran 1000 steps in 118 s (8.5 steps/s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from cfzoo.manipulations import TASK_IDS  # noqa: E402

CHUNK_BYTES = 16_000_000
PACK_NAME = "pack.tar"
QUANTISED_FAMILIES = ("xception",)


def plans(args) -> list[dict]:
    """One job per model: Xception with the GPU schedule, and each Bayar2016 variant named in --bayar."""
    jobs = [
        {
            "family": "xception",
            "task": task,
            "steps": args.xception_steps,
            "batch_size": args.xception_batch,
            "variant": "xception",
            "pristine_noise": None,
        }
        for task in args.tasks
    ]
    for variant in args.bayar:  # name:noise, e.g. long:0 or noise2:2
        name, noise = variant.split(":")
        jobs += [
            {
                "family": "bayar2016",
                "task": task,
                "steps": args.bayar_steps,
                "batch_size": args.bayar_batch,
                "variant": f"bayar2016-{name}",
                "pristine_noise": float(noise),
            }
            for task in args.tasks
        ]
    return jobs


def training_plan(job: dict, args):
    from cfzoo.training.run import TrainingPlan

    return TrainingPlan(
        family=job["family"],
        task=job["task"],
        seed=args.seed,
        steps=job["steps"],
        batch_size=job["batch_size"],
        pristine_noise=job["pristine_noise"],
        test_devices=tuple(args.test_device),
        evaluate=False,
    )


def launch(jobs: list[dict], args, command: str, logs: Path, deadline: float | None = None) -> list[dict]:
    """Run one worker process per job, all at once; print each one's last line every 30 s until all end, or
    until ``deadline`` (a time.time() value), when the unfinished ones are stopped. Returns the jobs that
    finished, so that what is done still travels back when a lease runs short."""
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    for job in jobs:
        name = f"{job['variant']}-{job['task']}"
        worker_args = [sys.executable, __file__, command, "--job", json.dumps(job), *sys.argv[2:]]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(logs / f"{name}.log", "w") as stream:  # the worker keeps its own copy of the descriptor
            process = subprocess.Popen(worker_args, stdout=stream, stderr=subprocess.STDOUT, env=environment)
        processes.append((job, name, process, logs / f"{name}.log"))
    started = reported = time.time()
    while any(process.poll() is None for _, _, process, _ in processes):
        if deadline is not None and time.time() > deadline:
            for _, name, process, _ in processes:
                if process.poll() is None:
                    process.kill()
                    print(f"{name}: stopped at the deadline", flush=True)
            break
        time.sleep(2)
        if time.time() - reported < 30:
            continue
        reported = time.time()
        lines = []
        for _, name, _, log in processes:
            text = log.read_text().strip().splitlines()
            lines.append(f"{name}: {text[-1] if text else '...'}")
        print(f"[{time.time() - started:.0f} s]\n  " + "\n  ".join(lines), flush=True)
    for _, _, process, _ in processes:
        process.wait()
    for _, name, process, log in processes:
        if process.returncode not in (0, -9):
            print(f"--- {name} failed:\n{log.read_text()[-3000:]}", flush=True)
    return [job for job, _, process, _ in processes if process.returncode == 0]


# --- bench --------------------------------------------------------------------------------------


def bench_worker(job: dict, args) -> None:
    import torch

    from cfzoo.families import get_family
    from cfzoo.training.loop import NetworkSchedule, train_network, training_device

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(4096, 128, 128, 3), dtype=np.uint8)
    labels = np.arange(4096) % 2
    model = get_family(job["family"]).new_network().to(training_device())
    stamps = []
    schedule = NetworkSchedule(
        steps=args.bench_steps,
        batch_size=job["batch_size"],
        dihedral_augmentation=True,
        pristine_noise=job["pristine_noise"] if job["pristine_noise"] is not None else 2.0,
    )
    train_network(
        model, patches, labels, schedule, 0, on_step=lambda step, total, loss: stamps.append(time.perf_counter())
    )
    settled = stamps[len(stamps) // 3 :]
    rate = (len(settled) - 1) / (settled[-1] - settled[0])
    print(
        json.dumps(
            {
                "variant": job["variant"],
                "task": job["task"],
                "steps_per_second": round(rate, 2),
                "patches_per_second": round(rate * job["batch_size"], 1),
            }
        ),
        flush=True,
    )


# --- train --------------------------------------------------------------------------------------


def build_patch_sets(jobs: list[dict], args) -> None:
    """Every distinct train patch set once, before the workers start (they would race to build them)."""
    from cfzoo.data import CameraDataset, build_patch_set
    from cfzoo.families.checkpoints import patch_set_spec
    from cfzoo.training.run import plan_split

    dataset = CameraDataset.from_directory(args.data)
    built = set()
    for job in jobs:
        plan = training_plan(job, args)
        spec = patch_set_spec(plan, "train")
        if spec in built:
            continue
        started = time.perf_counter()
        patch_set = build_patch_set(dataset, spec, plan_split(plan, dataset), args.work / "cache")
        built.add(spec)
        print(
            f"patch set {spec.task} (zoomed photos kept: {spec.keep_zoomed_photos}): {len(patch_set)} patches, "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )


def train_worker(job: dict, args) -> None:
    import torch

    from cfzoo.data import CameraDataset
    from cfzoo.families import train_detector

    torch.set_num_threads(1)
    last = [0.0]

    def on_status(stage: str, done: int, total: int) -> None:
        if time.time() - last[0] > 20 or done == total:
            last[0] = time.time()
            print(f"{stage} {done}/{total}", flush=True)

    record = train_detector(
        training_plan(job, args),
        CameraDataset.from_directory(args.data),
        args.work / job["variant"],
        args.work / "cache",
        on_status,
    )
    print(
        f"done in {record['training_seconds']} s, loss {record['loss']['first']:.3f} -> {record['loss']['last']:.3f}",
        flush=True,
    )


def quantise(state: dict) -> dict:
    """Weights of rank >= 2 as int8 with a float32 scale per output channel; other tensors unchanged."""
    import torch

    packed = {}
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.ndim >= 2:
            rows = tensor.float().reshape(tensor.shape[0], -1)
            scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            packed[f"{name}.int8"] = torch.round(rows / scale[:, None]).to(torch.int8).reshape(tensor.shape)
            packed[f"{name}.scale"] = scale
        else:
            packed[name] = tensor
    return packed


def dequantise(packed: dict) -> dict:
    state = {}
    for name, tensor in packed.items():
        if name.endswith(".scale"):
            continue
        if name.endswith(".int8"):
            base = name[: -len(".int8")]
            scale = packed[f"{base}.scale"]
            state[base] = tensor.float() * scale.view(-1, *([1] * (tensor.ndim - 1)))
        else:
            state[name] = tensor
    return state


def packing_cost(variant_dir: Path, model_id: str, packed: dict, args) -> dict:
    """Verdicts of the trained and the unpacked network on a seeded, balanced subset of train patches."""
    from cfzoo.data import balanced_subset
    from cfzoo.families import get_family, load_checkpoint
    from cfzoo.training.loop import manipulated_probability, training_device

    record, trained = load_checkpoint(variant_dir, model_id)
    unpacked = get_family(record["family"]).new_network(record["hyperparameters"])
    unpacked.load_state_dict(dequantise(packed))
    patch_dir = next(
        (args.work / "cache" / "patches").glob(f"{record['task']}-train-{record['patch_sets']['train'][:16]}")
    )
    patches = np.load(patch_dir / "patches.npy", mmap_mode="r")
    labels = np.load(patch_dir / "labels.npy")
    rows = balanced_subset(labels, args.check_patches, args.seed + 2)
    sample = patches[rows]
    before = manipulated_probability(trained.to(training_device()), sample, batch_size=256)
    after = manipulated_probability(unpacked.to(training_device()), sample, batch_size=256)
    return {
        "patches": len(rows),
        "train_acc_trained": round(float(((before > 0.5) == labels[rows]).mean()) * 100, 2),
        "train_acc_unpacked": round(float(((after > 0.5) == labels[rows]).mean()) * 100, 2),
        "verdicts_changed": int(((before > 0.5) != (after > 0.5)).sum()),
        "largest_probability_change": round(float(np.abs(before - after).max()), 5),
    }


def pack(jobs: list[dict], args) -> None:
    from safetensors.torch import load_file, save_file

    staging = args.work / "pack"
    staging.mkdir(parents=True, exist_ok=True)
    report = {}
    for job in jobs:
        model_id = f"{job['family']}-{job['task']}"
        variant_dir = args.work / job["variant"]
        state = load_file(str(variant_dir / f"{model_id}.safetensors"))
        record = json.loads((variant_dir / f"{model_id}.json").read_text())
        name = f"{job['variant']}-{job['task']}"
        if job["family"] in QUANTISED_FAMILIES:
            packed = quantise(state)
            save_file(packed, str(staging / f"{name}.q8.safetensors"))
            report[name] = packing_cost(variant_dir, model_id, packed, args)
            record["weights_transport"] = (
                "int8 per output channel for rank >= 2 weights, float32 otherwise (tools/gpu_train.py)"
            )
        else:
            save_file({key: value.contiguous() for key, value in state.items()}, str(staging / f"{name}.safetensors"))
        (staging / f"{name}.json").write_text(json.dumps(record, indent=2))
        print(f"packed {name}: {report.get(name, 'float32')}", flush=True)
    (staging / "report.json").write_text(json.dumps(report, indent=2))
    with tarfile.open(args.work / PACK_NAME, "w") as archive:
        for path in sorted(staging.iterdir()):
            archive.add(path, arcname=path.name)
    chunks = args.work / "chunks"
    chunks.mkdir(exist_ok=True)
    data = (args.work / PACK_NAME).read_bytes()
    for index, start in enumerate(range(0, len(data), CHUNK_BYTES)):
        (chunks / f"{PACK_NAME}.{index:02d}").write_bytes(data[start : start + CHUNK_BYTES])
    print(f"{len(data) / 1e6:.1f} MB in {index + 1} chunks of {CHUNK_BYTES / 1e6:.0f} MB", flush=True)


def train(args) -> None:
    jobs = plans(args)
    started = time.perf_counter()
    deadline = time.time() + args.deadline if args.deadline else None
    build_patch_sets(jobs, args)
    print(f"patch sets ready after {time.perf_counter() - started:.0f} s", flush=True)
    finished = launch(jobs, args, "train-worker", args.work / "logs", deadline)
    print(
        f"training done after {time.perf_counter() - started:.0f} s: {len(finished)} of {len(jobs)} models", flush=True
    )
    if not finished:
        raise SystemExit("no model finished; nothing to pack")
    pack(finished, args)
    print(f"packed after {time.perf_counter() - started:.0f} s", flush=True)


# --- unpack (here) ------------------------------------------------------------------------------


def unpack(args) -> None:
    import io

    from safetensors.torch import load_file, save_file

    data = b"".join(path.read_bytes() for path in sorted(args.chunks, key=lambda path: path.name))
    args.out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {member.name: archive.extractfile(member).read() for member in archive.getmembers()}
    for name, blob in sorted(members.items()):
        if not name.endswith(".json") or name == "report.json":
            continue
        record = json.loads(blob)
        variant = name[: -len(f"-{record['task']}.json")]
        target = args.out / variant
        target.mkdir(parents=True, exist_ok=True)
        stem = name[: -len(".json")]
        scratch = target / f".{stem}.partial"
        if f"{stem}.q8.safetensors" in members:
            scratch.write_bytes(members[f"{stem}.q8.safetensors"])
            save_file(dequantise(load_file(str(scratch))), str(scratch))
        else:
            scratch.write_bytes(members[f"{stem}.safetensors"])
        scratch.replace(target / f"{record['id']}.safetensors")
        (target / f"{record['id']}.json").write_text(json.dumps(record, indent=2))
        print(f"{target / record['id']}", flush=True)
    if "report.json" in members:
        (args.out / "packing_report.json").write_bytes(members["report.json"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("bench", "bench-worker", "train", "train-worker", "unpack"))
    parser.add_argument("--job", type=json.loads, help="(internal) one worker's job")
    parser.add_argument("--data", type=Path, help="camera photos, one folder per device (the train devices suffice)")
    parser.add_argument("--test-device", action="append", default=[], help="held-out device; repeat")
    parser.add_argument("--tasks", nargs="+", default=list(TASK_IDS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/cfzoo-gpu"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--xception-steps", type=int, default=1600)
    parser.add_argument("--xception-batch", type=int, default=128)
    parser.add_argument("--bayar", nargs="*", default=[], help="Bayar2016 variants as NAME:PRISTINE_NOISE")
    parser.add_argument("--bayar-steps", type=int, default=6000)
    parser.add_argument("--bayar-batch", type=int, default=64)
    parser.add_argument("--bench-steps", type=int, default=60)
    parser.add_argument(
        "--deadline",
        type=float,
        help="seconds after which unfinished workers stop and the finished models are packed; "
        "leave the pack and the trip back time inside the call's limit",
    )
    parser.add_argument("--check-patches", type=int, default=4096)
    parser.add_argument("--chunks", type=Path, nargs="*", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.command == "bench":
        if not launch(plans(args), args, "bench-worker", args.work / "bench-logs"):
            raise SystemExit("every bench worker failed")
        for log in sorted((args.work / "bench-logs").glob("*.log")):
            print(log.read_text().strip().splitlines()[-1])
    elif args.command == "bench-worker":
        bench_worker(args.job, args)
    elif args.command == "train":
        train(args)
    elif args.command == "train-worker":
        train_worker(args.job, args)
    else:
        unpack(args)


if __name__ == "__main__":
    main()
