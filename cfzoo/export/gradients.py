"""Input gradients as an ONNX graph: trace forward + backward with ``make_fx``, then export the trace.

``torch.onnx.export`` cannot export a module that calls ``torch.autograd.grad`` (torch.export finds the
backward pass untraceable). So the forward pass, the loss and ``torch.autograd.grad`` are traced together
by :func:`torch.fx.experimental.proxy_tensor.make_fx` into one plain graph of ATen operators, with
symbolic shapes so that the batch size stays a variable. Most backward operators decompose through
torch's core ATen decompositions; the two that the ONNX exporter cannot translate get ours
(:data:`GRADIENT_DECOMPOSITIONS`):

- ``convolution_backward`` (input gradient only): a transposed convolution with the same weights,
  stride, padding, dilation and groups, and the output padding that restores the input's size;
- ``max_pool2d_with_indices_backward``: the output gradient scatter-added (``ScatterElements``,
  reduction ``add``: pooling windows overlap) at the argmax indices that the forward max-pooling returns.

The traced graph module is then exported like any module with ``torch.onnx.export(..., dynamo=True)``.

The loss is ``sum_n CrossEntropy(logits_n, label_n)``: the SUM over the batch, not the mean, so each
sample's gradient does not depend on the batch it travels in.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

aten = torch.ops.aten

#: Example batch size for tracing: 1 would be specialised away as a constant by symbolic tracing.
TRACE_BATCH = 2


def _convolution_backward(
    grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, output_mask
):
    """The input gradient of a convolution as a transposed convolution (weights are constants here)."""
    if transposed or output_mask[1] or output_mask[2]:
        return NotImplemented  # weight or bias gradients: not needed for input gradients
    kernel = weight.shape[2:]
    restore = []
    for axis in range(len(kernel)):
        covered = (grad_output.shape[2 + axis] - 1) * stride[axis] - 2 * padding[axis] + dilation[axis] * (kernel[axis] - 1) + 1
        restore.append(input.shape[2 + axis] - covered)  # rows or columns the strided forward pass never reached
    grad_input = aten.convolution.default(grad_output, weight, None, stride, padding, dilation, True, restore, groups)
    return grad_input, None, None


def _max_pool2d_with_indices_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    """Scatter-add the output gradient at the argmax positions (flat per [N, C] plane, as torch returns them)."""
    count, channels = input.shape[:2]
    grad_input = torch.zeros_like(input).reshape(count, channels, -1)
    grad_input = grad_input.scatter_add(2, indices.reshape(count, channels, -1), grad_output.reshape(count, channels, -1))
    return grad_input.reshape(input.shape)


#: The backward operators that the ONNX exporter cannot translate, expressed in operators it can.
GRADIENT_DECOMPOSITIONS = {
    aten.convolution_backward.default: _convolution_backward,
    aten.max_pool2d_with_indices_backward.default: _max_pool2d_with_indices_backward,
}


def decomposition_table() -> dict:
    """torch's core ATen decompositions (they cover the other backward operators) plus ours."""
    from torch._decomp import core_aten_decompositions

    table = dict(core_aten_decompositions())
    table.update(GRADIENT_DECOMPOSITIONS)
    return table


def frozen_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy whose parameters need no gradient, so backward computes input gradients only."""
    module = copy.deepcopy(module).cpu().eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


class LogitsAndGradient(nn.Module):
    """(image, label) -> (logits, d sum_n CrossEntropy(logits_n, label_n) / d image), computed by autograd.

    This eager module is the reference the exported companion is checked against.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = frozen_copy(module)

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            image = image.detach().requires_grad_(True)
            logits = self.module(image)
            loss = F.cross_entropy(logits, label, reduction="sum")
            (grad,) = torch.autograd.grad(loss, image)
        return logits.detach(), grad


def trace_gradient(module: nn.Module, patch_size: int) -> torch.fx.GraphModule:
    """Forward + cross-entropy + backward of ``module`` as one ATen graph, batch size symbolic."""
    reference = LogitsAndGradient(module)
    image = torch.zeros(TRACE_BATCH, 3, patch_size, patch_size)
    label = torch.zeros(TRACE_BATCH, dtype=torch.int64)
    return trace_function(lambda image, label: reference(image, label), (image, label))


def trace_function(function, example_inputs: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    """``function`` (which may call ``torch.autograd.grad``) as one ATen graph, shapes symbolic: the example
    inputs need a batch of TRACE_BATCH, which symbolic tracing keeps a variable."""
    from torch.fx.experimental.proxy_tensor import make_fx

    # the weights are real tensors, not inputs: symbolic tracing has to be told to accept them as constants
    return make_fx(
        function, decomposition_table=decomposition_table(), tracing_mode="symbolic", _allow_non_fake_inputs=True
    )(*example_inputs)
