"""Networks converted from ONNX by onnx2torch, made traceable for their gradient companion.

onnx2torch reads a ``Reshape`` target as a tensor; to a symbolic trace (:mod:`cfzoo.export.gradients`) a tensor's
values are data, and a reshape to them cannot be traced ("Could not guard on data-dependent expression Eq(u0, 1)").
torch exports GroupNorm (and LayerNorm over some axes) exactly so: a ``Reshape`` to a constant, and one back to
the ``Shape`` of the input. :func:`static_reshapes` gives those reshapes integer sizes; the network computes the
same numbers, which :func:`cfzoo.export.third_party.make_companion` checks against onnxruntime.
"""

from __future__ import annotations

import torch
from torch import nn


class _StaticReshape(nn.Module):
    """A reshape to a shape known when the graph is converted (0: the input's size on that axis, as ONNX says)."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = shape

    def forward(self, tensor):
        return tensor.reshape([tensor.shape[axis] if size == 0 else size for axis, size in enumerate(self.shape)])


class _ReshapeLike(nn.Module):
    """A reshape to another tensor's shape, read as sizes rather than as the tensor ``Shape`` makes of them."""

    def forward(self, tensor, other):
        return tensor.reshape(other.shape)


def static_reshapes(network: torch.fx.GraphModule) -> int:
    """Rewrite the converted network's reshapes whose target is a constant, or another tensor's whole shape, into
    reshapes to integer sizes: onnx2torch reads a ``Reshape`` target as a tensor, and a tensor's values are data to
    a symbolic trace (the guard "Eq(u0, 1)"). Returns how many were rewritten."""
    from onnx2torch.node_converters.constant import OnnxConstant
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.shape import OnnxShape

    modules = dict(network.named_modules())
    rewritten = 0
    for node in list(network.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], OnnxReshape):
            continue
        data, target = node.args
        source = modules.get(target.target) if target.op == "call_module" else None
        if isinstance(source, OnnxConstant) and isinstance(source.value, torch.Tensor):
            replacement, arguments = _StaticReshape([int(size) for size in source.value.tolist()]), (data,)
        elif isinstance(source, OnnxShape) and source._start == 0 and source._end is None:
            replacement, arguments = _ReshapeLike(), (data, target.args[0])
        else:
            continue
        network.set_submodule(node.target, replacement)
        node.args = arguments
        rewritten += 1
    if rewritten:
        network.graph.eliminate_dead_code()
        network.recompile()
    return rewritten
