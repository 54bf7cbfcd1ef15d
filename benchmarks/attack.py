"""FGSM speed: the ONNX gradient companion on onnxruntime against torch autograd on the same model, timed in one run.

    CFZOO_HOME=... python benchmarks/attack.py [--model bayar2016-jpeg70] [--checkpoints checkpoints/cameras-seed0]

All three attack the same 64 JPEG Q=70 patches of scikit-image's photos (one batch), on the CPU, from uint8
[N,128,128,3] patches to uint8 adversarial patches, eps = 1:

- cfzoo: :func:`cfzoo.ops.attacks.fgsm` on the model's ``.grad.onnx`` from the zoo (onnxruntime);
- torch eager: the checkpoint loaded with :func:`cfzoo.families.load_checkpoint`, sum of cross-entropy,
  ``torch.autograd.grad``, sign, clip;
- torchattacks.FGSM (if installed) on the same network, wrapped to take images in 0..1 (eps = 1/255).

It checks that the three agree before it prints patches/second and the ratios. Needs the `train` extra.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from pgd import BATCH, UnitRange, manipulated_patches  # benchmarks/pgd.py: the same 64 patches of scikit-image's photos

from cfzoo.families import load_checkpoint
from cfzoo.ops.attacks.common import AttackTarget
from cfzoo.ops.attacks.fgsm import fgsm
from cfzoo.zoo.catalog import open_companion, open_detector

EPS = 1
REPEATS = 7


def torch_fgsm(network: torch.nn.Module, patches: np.ndarray, eps: int) -> np.ndarray:
    images = torch.from_numpy(patches).permute(0, 3, 1, 2).float().requires_grad_(True)
    labels = torch.ones(len(patches), dtype=torch.long)
    loss = torch.nn.functional.cross_entropy(network(images), labels, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, images)
    adversarial = (images.detach() + eps * gradient.sign()).clamp(0, 255)
    return adversarial.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def torchattacks_fgsm(attack, patches: np.ndarray) -> np.ndarray:
    images = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255.0
    adversarial = attack(images, torch.ones(len(patches), dtype=torch.long))
    return (adversarial * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def timed(function, repeats: int = REPEATS) -> tuple[float, np.ndarray]:
    """Median seconds of ``repeats`` calls after one warm-up, and the last result."""
    result = function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bayar2016-jpeg70", help="zoo model id (its .grad.onnx) and checkpoint name")
    parser.add_argument(
        "--checkpoints", default="checkpoints/cameras-seed0", help="folder with the model's torch checkpoint"
    )
    arguments = parser.parse_args()
    task = arguments.model.split("-", 1)[1]
    patches = manipulated_patches(task)
    companion = AttackTarget.of(
        open_detector(arguments.model, providers="cpu"), open_companion(arguments.model, providers="cpu")
    )
    _, network = load_checkpoint(arguments.checkpoints, arguments.model)
    if not isinstance(network, torch.nn.Module):
        raise SystemExit(f"{arguments.model} is not a torch network; choose a CNN model")
    network.eval()

    results = {}
    onnx_seconds, onnx_out = timed(lambda: fgsm(companion, patches, EPS, batch_size=BATCH).patches)
    results["cfzoo onnxruntime companion"] = onnx_seconds
    torch_seconds, torch_out = timed(lambda: torch_fgsm(network, patches, EPS))
    results["torch eager autograd"] = torch_seconds
    outputs = {"torch eager autograd": torch_out}
    try:
        import torchattacks
    except ImportError:
        print("torchattacks is not installed (pip install --no-deps torchattacks): skipped")
    else:
        attack = torchattacks.FGSM(UnitRange(network).eval(), eps=EPS / 255.0)
        seconds, outputs["torchattacks FGSM"] = timed(lambda: torchattacks_fgsm(attack, patches))
        results["torchattacks FGSM"] = seconds

    for name, out in outputs.items():
        agree = float((out == onnx_out).mean())
        print(f"{name}: {100 * agree:.3f} % of pixels identical to the companion's attack")
        if agree < 0.99:  # float32 gradients near zero may flip sign between backends; more would be a bug
            raise SystemExit(f"{name} disagrees with the ONNX companion on {100 * (1 - agree):.2f} % of pixels")

    print(
        f"\nFGSM eps={EPS}, {arguments.model}, batch {BATCH}, CPU, torch threads {torch.get_num_threads()}, median of {REPEATS}"
    )
    for name, seconds in results.items():
        print(f"{name:>28}: {BATCH / seconds:8.1f} patches/s ({seconds * 1000:.0f} ms per batch)")
    for name, seconds in results.items():
        if name != "cfzoo onnxruntime companion":
            print(f"companion / {name}: {seconds / onnx_seconds:.2f}x")


if __name__ == "__main__":
    main()
