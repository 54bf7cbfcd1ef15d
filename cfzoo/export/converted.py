"""Networks converted from ONNX by onnx2torch, made traceable for their gradient companion.

onnx2torch reads a ``Reshape`` or ``Expand`` target, a ``Slice``'s bounds and a ``Squeeze``'s axes as tensors;
to a symbolic trace (:mod:`cfzoo.export.gradients`) a tensor's values are data, and a reshape or slice by them
cannot be traced ("Could not guard on data-dependent expression Eq(u0, 1)"). torch's exporter writes such operands
wherever a layer asks for a tensor's size: GroupNorm reshapes to a constant and back to the input's ``Shape``;
multi-head attention computes its head sizes, slice bounds and scale from ``Shape`` through dozens of integer
nodes; an L2 normalisation expands its norms to the ``Shape`` of its input. Two passes give them numbers the trace
can use:

- :func:`fold_shape_arithmetic`, on the ONNX graph: every value computed from shapes and constants alone is
  evaluated at several batch sizes; a value that does not change becomes a constant, and a reshape target whose one
  changing entry is the batch's becomes that constant with ``-1`` (or ``0``, "the input's") there;
- :func:`static_shapes`, on the converted network: reshapes, expands, slices and squeezes whose operands are
  constants, or another tensor's whole shape, become ones by integers.

The network computes the same numbers as the graph, which :func:`cfzoo.export.third_party.make_companion` checks
against onnxruntime.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cfzoo.export.gradients import clamped_bounds

#: Batch sizes at which :func:`fold_shape_arithmetic` evaluates shape arithmetic: a value equal at all of them is
#: taken for a constant of the patch size (the contract fixes every other dimension).
FOLDING_BATCHES = (2, 3, 5)
#: Operators whose output shape depends on the data, or whose values are random: graphs with them are not folded.
_UNFOLDABLE = frozenset(
    "NonZero Unique Compress Loop If Scan NonMaxSuppression TopK Bernoulli Multinomial "
    "RandomNormal RandomNormalLike RandomUniform RandomUniformLike".split()
)


def fold_shape_arithmetic(model, input_name: str, sample_shape: tuple[int, ...]):
    """``model`` (an onnx ModelProto, not changed) with its shape arithmetic folded into constants: a value computed
    only from ``Shape``/``Size`` outputs, initializers and constants, where it meets the data path, becomes a
    ``Constant`` if it is the same at every batch of :data:`FOLDING_BATCHES` (``sample_shape`` without its first
    axis gives the rest of ``input_name``'s shape); a ``Reshape`` target that differs in one entry only gets ``-1``
    there. Values that change otherwise stay computed. The graph is returned as it was when nothing folds."""
    import onnx
    from onnx import helper, numpy_helper

    from cfzoo.zoo.runtime import onnxruntime_module

    graph = model.graph
    if any(node.op_type in _UNFOLDABLE or node.domain not in ("", "ai.onnx") for node in graph.node):
        return model
    derived = {tensor.name for tensor in graph.initializer}
    computed = set()  # shape-derived values that nodes compute (initializers are constants already)
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type in ("Shape", "Size") or all(name in derived for name in inputs):
            derived.update(node.output)
            computed.update(node.output)
    consumers = [
        (node, index, name)
        for node in graph.node
        if not set(node.output) <= derived
        for index, name in enumerate(node.input)
    ]
    frontier = sorted(
        {name for _, _, name in consumers if name in computed}
        | {out.name for out in graph.output if out.name in computed}
    )
    if not frontier:
        return model
    outputs = [value.name for value in graph.output]
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in frontier if name not in outputs)
    rng = np.random.default_rng(0)
    # a batch none of the folding runs uses, where the folded graph must give the same outputs, or nothing folds
    check = {input_name: rng.uniform(0, 1, (4, *sample_shape[1:])).astype(np.float32)}
    try:
        session = onnxruntime_module().InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        runs = [
            session.run(frontier, {input_name: rng.uniform(0, 1, (batch, *sample_shape[1:])).astype(np.float32)})
            for batch in FOLDING_BATCHES
        ]
        expected = session.run(outputs, check)
    except Exception:  # onnxruntime's own errors: a graph that runs at one batch size only is refused later, by name
        return model
    reshape_targets = {name: node for node, index, name in consumers if node.op_type == "Reshape" and index == 1}
    folded = {}
    for position, name in enumerate(frontier):
        values = [np.asarray(run[position]) for run in runs]
        if all(value.shape == values[0].shape and np.array_equal(value, values[0]) for value in values[1:]):
            folded[name] = values[0]
        elif name in reshape_targets and all(value.shape == values[0].shape and value.ndim == 1 for value in values):
            changing = np.flatnonzero(np.any([value != values[0] for value in values[1:]], axis=0))
            target = values[0].copy()
            if len(changing) == 1 and -1 not in values[0]:
                target[changing[0]] = -1
                folded[name] = target
            elif (
                list(changing) == [0]
                and [int(value[0]) for value in values] == list(FOLDING_BATCHES)
                and not _allows_zero(reshape_targets[name])
            ):
                target[0] = 0  # the batch, copied from the data's first axis (flatten's "N, C, -1")
                folded[name] = target
    for node in graph.node:  # a node with several outputs goes only if all of them fold
        if not set(node.output) <= set(folded):
            for name in node.output:
                folded.pop(name, None)
    if not folded:
        return model
    result = onnx.ModelProto.FromString(model.SerializeToString())
    # integers (sizes, axes, bounds) as Constant nodes, which static_shapes reads; anything else as initializers,
    # where onnx2torch looks for a convolution's weights
    integers = {name: value for name, value in folded.items() if value.dtype.kind in "iub"}
    nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
        for name, value in integers.items()
    ]
    nodes += [node for node in result.graph.node if not set(node.output) & set(folded)]
    del result.graph.node[:]
    result.graph.node.extend(_live(nodes, {out.name for out in result.graph.output}))
    used = {name for node in result.graph.node for name in node.input}
    kept = [tensor for tensor in result.graph.initializer if tensor.name in used]
    kept += [numpy_helper.from_array(value, name) for name, value in folded.items() if name not in integers]
    del result.graph.initializer[:]
    result.graph.initializer.extend(kept)
    try:
        found = (
            onnxruntime_module()
            .InferenceSession(result.SerializeToString(), providers=["CPUExecutionProvider"])
            .run(outputs, check)
        )
    except Exception:  # onnxruntime's own errors
        return model
    if not all(np.allclose(before, after, rtol=1e-4, atol=1e-5) for before, after in zip(expected, found)):
        return model
    return result


def plain_reshapes(model):
    """``model`` (changed in place, and returned) without ``allowzero=1`` on reshapes to a constant that has no 0, where
    it changes nothing: torch's default exporter writes it, and onnx2torch refuses it."""
    from onnx import numpy_helper

    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for node in model.graph.node:
        target = constants.get(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
        if target is not None and _allows_zero(node) and 0 not in target:
            for attribute in [attribute for attribute in node.attribute if attribute.name == "allowzero"]:
                node.attribute.remove(attribute)
    return model


def _allows_zero(node) -> bool:
    return any(attribute.name == "allowzero" and attribute.i for attribute in node.attribute)


def _live(nodes: list, outputs: set[str]) -> list:
    """``nodes`` (in a valid order) without those whose outputs nothing uses."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if set(node.output) & needed:
            kept.append(node)
            needed.update(name for name in node.input if name)
    return kept[::-1]


class _StaticReshape(nn.Module):
    """A reshape to a shape known when the graph is converted (0: the input's size on that axis, as ONNX says).

    ``batch_term``: for the one size that grows with the batch (ONNX's -1), ``(axis, a, b)``, that size being
    ``a * N + b`` for a network input of N patches, which it then takes as a second argument. Given so, rather than
    inferred from -1, it stays a plain multiple of the trace's batch symbol: torch's inference of -1 from symbolic
    sizes nests a division per reshape, and multi-head attention's reshapes took sympy many minutes to simplify."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = shape
        self.batch_term: tuple[int, int, int] | None = None

    def forward(self, tensor, network_input=None):
        sizes = [tensor.shape[axis] if size == 0 else size for axis, size in enumerate(self.shape)]
        if self.batch_term is not None:
            axis, a, b = self.batch_term
            sizes[axis] = a * network_input.shape[0] + b
        return tensor.reshape(sizes)


class _ExpandLike(nn.Module):
    """ONNX's ``Expand`` (a two-way broadcast) to another tensor's shape, read as sizes."""

    def forward(self, tensor, other):
        return tensor.expand(torch.broadcast_shapes(tensor.shape, other.shape))


class _ReshapeLike(nn.Module):
    """A reshape to another tensor's shape, read as sizes rather than as the tensor ``Shape`` makes of them."""

    def forward(self, tensor, other):
        return tensor.reshape(other.shape)


class _StaticSlice(nn.Module):
    """A slice by bounds known when the graph is converted (ONNX's ``Slice`` with positive steps: per axis a start,
    an end and a step, negative bounds counted from the end, clamped to the axis)."""

    def __init__(self, starts: list[int], ends: list[int], axes: list[int], steps: list[int]):
        super().__init__()
        self.bounds = list(zip(axes, starts, ends, steps))

    def forward(self, tensor):
        for axis, start, end, step in self.bounds:
            start, end = clamped_bounds(start, end, tensor.shape[axis])
            tensor = tensor[(slice(None),) * (axis % tensor.dim()) + (slice(start, end, step),)]
        return tensor


def static_shapes(network: torch.fx.GraphModule, sample_shape: tuple[int, ...]) -> int:
    """Rewrite the converted network's reshapes and expands to a constant, or to another tensor's whole shape, and its
    slices and squeezes by constant bounds or axes, into ones by integer sizes: onnx2torch reads a ``Reshape`` or
    ``Expand`` target, ``Slice`` bounds and ``Squeeze`` axes (opset 13 on) as tensors, and a tensor's values are
    data to a symbolic trace (the guard "Eq(u0, 1)"). A size given as -1 is then measured as a function of the
    batch, for the network's input of ``sample_shape`` (any batch). Returns how many were rewritten."""
    from onnx2torch.node_converters.constant import OnnxConstant
    from onnx2torch.node_converters.expand import OnnxExpand
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.shape import OnnxShape
    from onnx2torch.node_converters.slice import OnnxSlice
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes, OnnxSqueezeStaticAxes

    modules = dict(network.named_modules())

    def made_by(argument) -> nn.Module | None:
        """The module whose output ``argument`` is."""
        is_module_output = isinstance(argument, torch.fx.Node) and argument.op == "call_module"
        return modules.get(argument.target) if is_module_output else None

    def constant(argument) -> list[int] | None:
        """The integers of a ``Constant`` node's or an initializer's value."""
        source = made_by(argument)
        if isinstance(source, OnnxConstant) and isinstance(source.value, torch.Tensor):
            value = source.value
        elif isinstance(argument, torch.fx.Node) and argument.op == "get_attr":
            value = network.get_buffer(argument.target)
        else:
            return None
        if value.is_floating_point() or value.is_complex():
            return None
        return [int(entry) for entry in value.reshape(-1).tolist()]

    def whole_shape(argument) -> torch.fx.Node | None:
        """The tensor whose whole ``Shape`` ``argument`` is, if it is one."""
        source = made_by(argument)
        if isinstance(source, OnnxShape) and source._start == 0 and source._end is None:
            return argument.args[0]
        return None

    rewritten = 0
    for node in list(network.graph.nodes):
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, OnnxReshape):
            data, target = node.args
            if constant(target) is not None:
                replacement, arguments = _StaticReshape(constant(target)), (data,)
            elif whole_shape(target) is not None:
                replacement, arguments = _ReshapeLike(), (data, whole_shape(target))
            else:
                continue
        elif isinstance(module, OnnxSlice):
            data, *operands = node.args
            bounds = [constant(operand) for operand in operands]
            if any(bound is None for bound in bounds) or node.kwargs:
                continue
            starts, ends, *rest = bounds
            axes = rest[0] if rest else list(range(len(starts)))
            steps = rest[1] if len(rest) > 1 else [1] * len(starts)
            if min(steps) < 1:  # a reversed slice: left to onnx2torch
                continue
            replacement, arguments = _StaticSlice(starts, ends, axes, steps), (data,)
        elif isinstance(module, OnnxExpand) and whole_shape(node.args[1]) is not None:
            replacement, arguments = _ExpandLike(), (node.args[0], whole_shape(node.args[1]))
        elif isinstance(module, OnnxSqueezeDynamicAxes) and len(node.args) == 2 and constant(node.args[1]) is not None:
            replacement, arguments = OnnxSqueezeStaticAxes(constant(node.args[1])), node.args[:1]
        else:
            continue
        network.set_submodule(node.target, replacement)
        node.args = arguments
        rewritten += 1
    if rewritten:
        network.graph.eliminate_dead_code()
        network.recompile()
        _batch_terms(network, sample_shape)
    return rewritten


def _batch_terms(network: torch.fx.GraphModule, sample_shape: tuple[int, ...]) -> None:
    """Give each static reshape with a -1 the affine size in the batch that -1 stands for (``batch_term``), measured
    by running the network at the batches of :data:`FOLDING_BATCHES`; a size that is not affine in the batch stays
    -1."""
    modules = dict(network.named_modules())
    inferred = {
        node: modules[node.target]
        for node in network.graph.nodes
        if node.op == "call_module"
        and isinstance(modules[node.target], _StaticReshape)
        and -1 in modules[node.target].shape
    }
    if not inferred:
        return
    sizes = {node: [] for node in inferred}
    hooks = [
        module.register_forward_hook(lambda _, __, output, node=node: sizes[node].append(tuple(output.shape)))
        for node, module in inferred.items()
    ]
    try:
        with torch.no_grad():
            for batch in FOLDING_BATCHES:
                network(torch.zeros(batch, *sample_shape[1:]))
    finally:
        for hook in hooks:
            hook.remove()
    network_input = next(node for node in network.graph.nodes if node.op == "placeholder")
    for node, module in inferred.items():
        axis = module.shape.index(-1)
        at = [shape[axis] for shape in sizes[node]]
        if len(at) != len(FOLDING_BATCHES):
            continue
        a = (at[1] - at[0]) // (FOLDING_BATCHES[1] - FOLDING_BATCHES[0])
        b = at[0] - a * FOLDING_BATCHES[0]
        if all(size == a * batch + b for size, batch in zip(at, FOLDING_BATCHES)):
            module.batch_term = (axis, a, b)
            node.args = (*node.args, network_input)
    network.recompile()
