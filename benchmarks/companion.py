"""Gradient companion cost: one batch through the detector, through the companion cfzoo traces today, and through
the companion torch's stock decompositions give, side by side in one run, on the CPU.

    python benchmarks/companion.py [--model bayar2016-median7 --model cozzolino2017-median7] [--checkpoints checkpoints/cameras-seed0]

The companion computes the logits and the gradient of the summed cross-entropy, so its time over the detector's is
the price of one gradient; autograd's multiply-adds alone would make it about 3 (forward, then backward at about
twice the forward). The stock companion is traced from the same checkpoint with cfzoo's three speed decompositions
taken out (:mod:`cfzoo.export.gradients`: max-pooling's backward through its indices, ReLU's through ``Where``,
cropping's through ``slice_scatter``). Both are checked against torch autograd before they are timed. Batch 64,
one onnxruntime thread, median of 7 runs after a warm-up. Needs the `train` extra.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import numpy as np
import onnxruntime
import torch
from pgd import BATCH, manipulated_patches  # benchmarks/pgd.py: the same 64 patches of scikit-image's photos

from cfzoo.export import gradients
from cfzoo.export.onnx_export import export_gradient, export_module
from cfzoo.families import load_checkpoint

REPEATS = 7
aten = torch.ops.aten


@contextmanager
def stock_decompositions():
    """Trace as before cfzoo's speed decompositions: max-pooling's backward scatters at the forward's indices."""
    saved = dict(gradients.GRADIENT_DECOMPOSITIONS)
    for operator in (aten.threshold_backward.default, aten.slice_backward.default):
        del gradients.GRADIENT_DECOMPOSITIONS[operator]
    gradients.GRADIENT_DECOMPOSITIONS[aten.max_pool2d_with_indices_backward.default] = (
        lambda grad_output, input, *options: gradients._scatter_at_indices(grad_output, input, options[-1])
    )
    try:
        yield
    finally:
        gradients.GRADIENT_DECOMPOSITIONS.clear()
        gradients.GRADIENT_DECOMPOSITIONS.update(saved)


def session(model) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def median_seconds(function) -> float:
    function()
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(model_id: str, checkpoints: str) -> None:
    _, network = load_checkpoint(checkpoints, model_id)
    if not isinstance(network, torch.nn.Module):
        raise SystemExit(f"{model_id} is not a torch network; choose a CNN model")
    images = manipulated_patches(model_id.split("-", 1)[1]).transpose(0, 3, 1, 2).astype(np.float32)
    labels = np.ones(len(images), dtype=np.int64)
    _, expected = gradients.LogitsAndGradient(network)(torch.from_numpy(images), torch.from_numpy(labels))
    detector = session(export_module(network))
    companions = {"cfzoo": session(export_gradient(network))}
    with stock_decompositions():
        companions["stock"] = session(export_gradient(network))
    forward = median_seconds(lambda: detector.run(None, {"image": images}))
    print(f"\n{model_id}, batch {BATCH}, 1 thread: detector {forward * 1000:.0f} ms")
    for name, companion in companions.items():
        _, grad = companion.run(None, {"image": images, "label": labels})
        distance = float(np.linalg.norm(grad - expected.numpy()) / np.linalg.norm(expected.numpy()))
        if not distance < 1e-4:
            raise SystemExit(f"the {name} companion of {model_id} is {distance:.2g} away from autograd")
        seconds = median_seconds(lambda: companion.run(None, {"image": images, "label": labels}))
        print(
            f"  {name:>5} companion: {seconds * 1000:5.0f} ms = {seconds / forward:.2f}x the detector ({distance:.1e} from autograd)"
        )
        companions[name] = seconds
    print(f"  cfzoo / stock: {companions['stock'] / companions['cfzoo']:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        help="checkpoint ids (repeatable); default bayar2016-median7 and cozzolino2017-median7",
    )
    parser.add_argument(
        "--checkpoints", default="checkpoints/cameras-seed0", help="folder with the models' torch checkpoints"
    )
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    for model_id in arguments.model or ["bayar2016-median7", "cozzolino2017-median7"]:
        measure(model_id, arguments.checkpoints)


if __name__ == "__main__":
    main()
