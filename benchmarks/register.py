"""Registering a large third-party detector: seconds for `cfzoo register` on an Xception-sized CNN.

    python benchmarks/register.py [--model xception41] [--timeout 1800]

Builds timm's ``xception41`` (about 25 million parameters with two classes; random weights: registration does not
depend on them), exports it as a third party would (torch's TorchScript exporter, opset 17, dynamic batch,
NCHW in 0..1 with two logits), then times :func:`cfzoo.export.third_party.register_model` into a temporary user
zoo: loading and adapting the graph, making its gradient companion (onnx2torch, autograd, export), checking the
companion against finite differences and the conformance checks, and writing the zoo. It prints the seconds,
the parameter count and the file sizes. Needs the `train` extra.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch


class Scaled(torch.nn.Module):
    """The network on 0..1 pixels, as a third party's would take them."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, pixels):
        return self.network(pixels * 2.0 - 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="xception41")
    parser.add_argument("--timeout", type=float, default=1800.0)
    arguments = parser.parse_args()
    import timm

    torch.manual_seed(0)
    network = Scaled(timm.create_model(arguments.model, pretrained=False, num_classes=2)).eval()
    parameters = sum(parameter.numel() for parameter in network.parameters())
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CFZOO_HOME"] = str(Path(folder) / "home")
        from cfzoo.export.third_party import Adapter, register_model

        path = Path(folder) / f"{arguments.model}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network,
                (torch.rand(2, 3, 128, 128),),
                str(path),
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}},
                dynamo=False,
                opset_version=17,
            )
        start = time.perf_counter()
        registration = register_model(path, "large", "jpeg70", Adapter(input_range=1), timeout=arguments.timeout)
        seconds = time.perf_counter() - start
        sizes = {kind: f"{file.size / 1e6:.1f} MB" for kind, file in registration.entry.files.items()}
        print(
            f"{arguments.model}: {parameters / 1e6:.1f} M parameters, source {path.stat().st_size / 1e6:.1f} MB; "
            f"registered in {seconds:.1f} s on {os.cpu_count()} cores (companion within "
            f"{registration.companion_error:.2%} of finite differences); files {sizes}"
        )


if __name__ == "__main__":
    main()
