"""Input gradients as an ONNX graph: trace forward + backward with ``make_fx``, then export the trace.

``torch.onnx.export`` cannot export a module that calls ``torch.autograd.grad`` (torch.export finds the
backward pass untraceable). So the forward pass, the loss and ``torch.autograd.grad`` are traced together
by :func:`torch.fx.experimental.proxy_tensor.make_fx` into one plain graph of ATen operators, with
symbolic shapes so that the batch size stays a variable. Most backward operators decompose through
torch's core ATen decompositions; the two that the ONNX exporter cannot translate get ours
(:data:`GRADIENT_DECOMPOSITIONS`):

- ``convolution_backward`` (input gradient only): a transposed convolution with the same weights,
  stride, padding, dilation and groups, and the output padding that restores the input's size;
- ``max_pool2d_with_indices_backward``: the output gradient routed back to each window's first maximum;
- ``avg_pool2d_backward`` (no padding): the output gradient spread evenly over each window, a transposed
  convolution with a uniform kernel per channel.

Three are written for speed, where the obvious form (or torch's own decomposition) translates into slow
onnxruntime kernels (measured with its profiler on the companions at batch 64, one thread):

- max-pooling: the translation of the indices the forward pass returns runs onnxruntime's MaxPool with an
  indices output, 13x slower than without, plus a second one to make them per plane. So the backward ignores
  the indices and finds each window's first maximum again: the windows as channels (a grouped convolution
  with one-hot kernels), ``argmax``, and the routed gradients put back by the transposed convolution;
- ``threshold_backward`` (ReLU): a product with the mask rather than ``Where``;
- ``slice_backward`` (cropping, ``narrow``): ``Pad`` with zeros rather than ``slice_scatter``, which exports
  as ``ScatterND`` between transposes of the whole tensor (37% of the Cozzolino2017 companion's time).

Measured by benchmarks/companion.py (docs/attacks.md), a companion now costs 3.8 detector passes instead of 5.0
for Bayar2016 and 2.7 instead of 4.7 for Cozzolino2017; its gradients are autograd's (tests/test_export.py).

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
    restore = _output_padding(input.shape[2:], grad_output.shape[2:], weight.shape[2:], stride, padding, dilation)
    grad_input = aten.convolution.default(grad_output, weight, None, stride, padding, dilation, True, restore, groups)
    return grad_input, None, None


def _output_padding(input_size, output_size, kernel, stride, padding, dilation) -> list:
    """Per spatial axis, the rows or columns of the input that a strided window never reached: the output padding
    a transposed convolution needs to give back the input's size."""
    return [
        input_size[axis]
        - ((output_size[axis] - 1) * stride[axis] - 2 * padding[axis] + dilation[axis] * (kernel[axis] - 1) + 1)
        for axis in range(len(kernel))
    ]


def _max_pool2d_with_indices_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    """The output gradient routed to each window's first maximum (in row-major order, as torch's indices),
    found again from ``input`` instead of read from ``indices``."""
    if ceil_mode:
        return _scatter_at_indices(grad_output, input, indices)
    stride = list(stride or kernel_size)
    count, channels, height, width = input.shape
    taps = kernel_size[0] * kernel_size[1]
    padded = input
    if any(padding):  # with the lowest finite value, not -inf: the one-hot kernels multiply the padding by 0
        padded = aten.constant_pad_nd.default(
            input, [padding[1], padding[1], padding[0], padding[0]], torch.finfo(input.dtype).min
        )
    one_hot = torch.eye(taps, dtype=input.dtype).reshape(taps, 1, *kernel_size).repeat(channels, 1, 1, 1)
    windows = aten.convolution.default(padded, one_hot, None, stride, [0, 0], dilation, False, [0, 0], channels)
    out_height, out_width = windows.shape[2:]
    winner = windows.reshape(count, channels, taps, out_height, out_width).argmax(dim=2, keepdim=True)
    routed = (winner == torch.arange(taps).view(1, 1, taps, 1, 1)).to(grad_output.dtype) * grad_output.unsqueeze(2)
    restore = _output_padding((height, width), (out_height, out_width), kernel_size, stride, padding, dilation)
    grad_padded = aten.convolution.default(
        routed.reshape(count, channels * taps, out_height, out_width),
        one_hot,
        None,
        stride,
        [0, 0],
        dilation,
        True,
        restore,
        channels,
    )
    if any(padding):
        return grad_padded[:, :, padding[0] : padding[0] + height, padding[1] : padding[1] + width]
    return grad_padded


def _scatter_at_indices(grad_output, input, indices):
    """Scatter-add the output gradient at the argmax indices (flat per [N, C] plane, as torch returns them)."""
    count, channels = input.shape[:2]
    grad_input = torch.zeros_like(input).reshape(count, channels, -1)
    grad_input = grad_input.scatter_add(
        2, indices.reshape(count, channels, -1), grad_output.reshape(count, channels, -1)
    )
    return grad_input.reshape(input.shape)


def _avg_pool2d_backward(
    grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    """The output gradient spread evenly over each window: a transposed convolution with a uniform kernel, per
    channel (no padding: a padded window's divisor depends on where it lies)."""
    if any(padding):
        return NotImplemented
    stride = list(stride or kernel_size)
    channels = input.shape[1]
    taps = kernel_size[0] * kernel_size[1]
    kernel = torch.full((channels, 1, *kernel_size), 1.0 / (divisor_override or taps), dtype=grad_output.dtype)
    restore = _output_padding(input.shape[2:], grad_output.shape[2:], kernel_size, stride, [0, 0], [1, 1])
    if min(restore) < 0:  # ceil_mode's last, partial window
        return NotImplemented
    return aten.convolution.default(grad_output, kernel, None, stride, [0, 0], [1, 1], True, restore, channels)


def _threshold_backward(grad_output, input, threshold):
    return grad_output * (input > threshold).to(grad_output.dtype)


def clamped_bounds(start: int, end: int, size: int) -> tuple[int, int]:
    """A slice's [start, end) on an axis of ``size``, as torch and ONNX read them: negative bounds count from the end,
    and both are clamped to the axis (an end before the start gives an empty slice)."""
    start = min(max(start + size if start < 0 else start, 0), size)
    return start, min(max(end + size if end < 0 else end, start), size)


def _slice_backward(grad_output, input_sizes, dim, start, end, step):
    """The gradient of a crop: zeros padded around it."""
    if step != 1:
        return NotImplemented
    size = input_sizes[dim]
    start, end = clamped_bounds(start, end, size)
    widths = [0, 0] * (len(input_sizes) - 1 - dim) + [start, size - end]  # Pad's order: last axis first
    return aten.constant_pad_nd.default(grad_output, widths, 0.0)


#: The backward operators that the ONNX exporter cannot translate or translates into slow kernels, in operators it runs fast.
GRADIENT_DECOMPOSITIONS = {
    aten.convolution_backward.default: _convolution_backward,
    aten.max_pool2d_with_indices_backward.default: _max_pool2d_with_indices_backward,
    aten.avg_pool2d_backward.default: _avg_pool2d_backward,
    aten.threshold_backward.default: _threshold_backward,
    aten.slice_backward.default: _slice_backward,
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
