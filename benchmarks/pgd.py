"""PGD speed: cfzoo's PGD through the ONNX companion against the Adversarial Robustness Toolbox's PGD and a plain
torch eager PGD loop on the same network and patches, CPU, timed side by side in one run.

    CFZOO_HOME=... python benchmarks/pgd.py [--model cozzolino2017-median7] [--checkpoints checkpoints/cameras-seed0]

All attack the same 64 patches (scikit-image photos through the model's manipulation) at eps = 1 with 10 steps of
2.5 eps / 10 from a random start, after a warm-up on the whole batch. cfzoo judges every step's stored (rounded)
patches with the detector graph and stops a patch once it is fooled; ART and the torch loop take every step and
judge nothing. So cfzoo runs twice:

- as it ships (early stop): the wall time to the same outcome, and gradient steps (patches x steps taken) per second;
- with the success bar out of reach (:class:`Unfoolable`), so that every patch takes every step as in the other
  loops: the same work, plus cfzoo's judging, so its time ratio is the price of one step.

torchattacks' PGD runs too when it is installed (``pip install --no-deps torchattacks``: its pinned requests 2.25
would break huggingface_hub). Each line gives the TPR after the attack (judged by the same ONNX detector; the
others' results rounded to uint8). Needs the `train` and `dev` extras.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch

import cfzoo
from cfzoo.families import load_checkpoint
from cfzoo.images import read_rgb
from cfzoo.manipulations import apply_manipulation
from cfzoo.ops.attacks.common import AttackTarget
from cfzoo.ops.attacks.pgd import pgd
from cfzoo.patches import cut_patches, sample_positions
from cfzoo.sample_data import skimage_data_dir
from cfzoo.zoo.catalog import open_companion, open_detector

BATCH, EPS, STEPS = 64, 1, 10
PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "camera.png",
    "retina.jpg",
    "brick.png",
)


def manipulated_patches(task: str) -> np.ndarray:
    patches = []
    for index, name in enumerate(PHOTOS):
        manipulated = apply_manipulation(task, read_rgb(skimage_data_dir() / name))
        patches.append(
            cut_patches(
                manipulated, sample_positions(*manipulated.shape[:2], seed=[0, index], count=BATCH // len(PHOTOS))
            )
        )
    return np.concatenate(patches)


class Unfoolable(AttackTarget):
    """The target with its success bar out of reach: no patch is ever fooled, so PGD takes every step."""

    def margin(self, patches: np.ndarray) -> np.ndarray:
        return super().margin(patches) + 1e6


def torch_pgd(network: torch.nn.Module, patches: np.ndarray, seed: int = 0, steps: int = STEPS) -> np.ndarray:
    """Madry's PGD in torch eager: random start, ``steps`` signed steps of 2.5 eps / STEPS, projection, then rounding."""
    generator = torch.Generator().manual_seed(seed)
    original = torch.from_numpy(patches).permute(0, 3, 1, 2).float()
    low, high = (original - EPS).clamp(0, 255), (original + EPS).clamp(0, 255)
    images = (original + torch.randint(-EPS, EPS + 1, original.shape, generator=generator)).clamp(low, high)
    labels = torch.ones(len(patches), dtype=torch.long)
    for _ in range(steps):
        images.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(network(images), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, images)
        images = torch.min(torch.max(images.detach() + 2.5 * EPS / STEPS * gradient.sign(), low), high)
    return images.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class UnitRange(torch.nn.Module):
    """The network on images in 0..1, as ART and torchattacks hold them (the contract's 0..255 inside)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images * 255.0)


def torchattacks_pgd(network: torch.nn.Module, patches: np.ndarray) -> np.ndarray:
    import torchattacks

    torch.manual_seed(0)  # its random start
    attack = torchattacks.PGD(
        UnitRange(network).eval(), eps=EPS / 255, alpha=2.5 * EPS / STEPS / 255, steps=STEPS, random_start=True
    )
    adversarial = attack(
        torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255.0, torch.ones(len(patches), dtype=torch.long)
    )
    return (adversarial * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def art_pgd(network: torch.nn.Module, patches: np.ndarray) -> np.ndarray:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        UnitRange(network), torch.nn.CrossEntropyLoss(), input_shape=(3, 128, 128), nb_classes=2, clip_values=(0.0, 1.0)
    )
    attack = ProjectedGradientDescent(
        classifier,
        norm=np.inf,
        eps=EPS / 255,
        eps_step=2.5 * EPS / STEPS / 255,
        max_iter=STEPS,
        num_random_init=1,
        batch_size=BATCH,
        verbose=False,
    )
    adversarial = attack.generate(
        patches.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, np.ones(len(patches), dtype=np.int64)
    )
    return np.clip(np.rint(adversarial * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="cozzolino2017-median7", help="zoo model id (its .grad.onnx) and checkpoint name"
    )
    parser.add_argument(
        "--checkpoints", default="checkpoints/cameras-seed0", help="folder with the model's torch checkpoint"
    )
    arguments = parser.parse_args()
    patches = manipulated_patches(arguments.model.split("-", 1)[1])
    target = AttackTarget.of(
        open_detector(arguments.model, providers="cpu"), open_companion(arguments.model, providers="cpu")
    )
    _, network = load_checkpoint(arguments.checkpoints, arguments.model)
    if not isinstance(network, torch.nn.Module):
        raise SystemExit(f"{arguments.model} is not a torch network; choose a CNN model")
    network.eval()
    judge = cfzoo.load_detector(arguments.model, providers="cpu")

    every_step = Unfoolable(target.detectors, target.companions)
    pgd(target, patches, EPS, iterations=1)  # warm-up on the whole batch: sessions and memory arenas
    torch_pgd(network, patches, steps=1)
    rows = []
    for name, attack_target in (("cfzoo PGD, early stop", target), ("cfzoo PGD, every step", every_step)):
        started = time.perf_counter()
        result = pgd(attack_target, patches, EPS, iterations=STEPS, batch_size=BATCH)
        rows.append((name, time.perf_counter() - started, int(result.iterations.sum()), result.patches))
    baselines = [
        ("torch eager PGD loop", lambda: torch_pgd(network, patches)),
        ("ART ProjectedGradientDescent", lambda: art_pgd(network, patches)),
    ]
    if importlib.util.find_spec("torchattacks"):
        baselines.insert(1, ("torchattacks PGD", lambda: torchattacks_pgd(network, patches)))
    else:
        print("torchattacks is not installed (pip install --no-deps torchattacks): skipped")
    for name, attack in baselines:
        started = time.perf_counter()
        out = attack()
        rows.append((name, time.perf_counter() - started, len(patches) * STEPS, out))

    print(
        f"PGD eps={EPS}, {STEPS} steps, {arguments.model}, {len(patches)} patches, CPU, torch threads {torch.get_num_threads()}"
    )
    print(f"TPR before: {100 * judge.predict(patches).mean():.1f} %")
    for name, seconds, steps, out in rows:
        assert np.abs(out.astype(int) - patches).max() <= EPS
        print(
            f"{name:>30}: {seconds:6.2f} s, {steps:5d} gradient steps, {steps / seconds:7.1f} steps/s, TPR after {100 * judge.predict(out).mean():5.1f} %"
        )
    (_, early, early_steps, _), (_, every, _, _) = rows[:2]
    for name, seconds, steps, _ in rows[2:]:
        print(
            f"against {name}: the same work (every step) {seconds / every:.2f}x faster; "
            f"early stop {seconds / early:.2f}x faster in wall time, {early_steps / early / (steps / seconds):.2f}x in steps per second"
        )


if __name__ == "__main__":
    main()
