"""Detectors cfzoo did not make: fit a third-party ONNX graph to the model contract and give it a gradient companion.

The contract (docs/contract.md): input ``image`` float32 [N,3,128,128], RGB 0..255; output ``logits`` float32
[N,2], class 1 = manipulated. A graph that holds its input or output another way declares it in an
:class:`Adapter`, and :func:`adapt_graph` wraps the graph in the few ONNX nodes that translate: a transpose for
NHWC, a scale for inputs in 0..1, and for the output a reordering of two logits or, for one logit ``z``, the pair
``(0, z)`` (so softmax's class-1 probability is sigmoid(z)). The wrapped graph is an ordinary zoo detector.

Its gradient companion: the wrapped graph converted to torch by onnx2torch, differentiated by autograd and
exported like cfzoo's own companions (:func:`cfzoo.export.onnx_export.export_gradient`), then checked against
central finite differences of the detector graph itself. Making it needs the ``train`` extra; using it does not.

A graph is untrusted input: it may loop for ever (a Loop of 10^15 iterations) or take hours to convert. So
everything that loads, runs or converts it happens in a child process with a time limit (``timeout``, default
:data:`REGISTER_TIMEOUT` seconds); past it, or on SIGTERM or Ctrl-C, the child is killed, the refusal is one line
and the zoo is as it was.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cfzoo.errors import CfzooError, first_line, option
from cfzoo.export.converted import fold_shape_arithmetic, plain_reshapes, static_shapes
from cfzoo.export.onnx_export import (
    BATCH,
    CLASS_NAMES,
    GRAD,
    IMAGE,
    LABEL,
    LOGITS,
    describe_model,
    export_gradient,
    require_export_extra,
    save_model,
)
from cfzoo.files import file_sha256
from cfzoo.manipulations import TASK_IDS
from cfzoo.metrics import cross_entropy
from cfzoo.paper import FAMILY_IDS
from cfzoo.patches import PATCH_SIZE
from cfzoo.zoo.registry import (
    EXTERNAL_FAMILY,
    ModelEntry,
    Registry,
    embedded_registry,
    user_zoo_dir,
)
from cfzoo.zoo.writer import REGISTER_TIMEOUT, ZooWriter

MANIPULATED = CLASS_NAMES.index("manipulated")
LAYOUTS = ("NCHW", "NHWC")
INPUT_RANGES = (255, 1)
OUTPUTS = ("two-logits", "one-logit")
_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: Finite-difference check of a companion: the steps in gray levels, and the largest relative disagreement allowed.
#: The detector runs in float32, so differences of logits over a step of 0.5 carry about 1e-3 relative error, and
#: 30x that at 1/32; but a step of ±0.5 on every pixel flips ReLUs and moves normalisation statistics, so a correct
#: gradient of a deep or normalised network can miss the difference by 18% there (a GroupNorm CNN) and agree at
#: 1/32. The check takes the step that agrees best: a wrong gradient agrees at none.
FD_STEPS = (0.5, 1 / 8, 1 / 32, 1 / 128)
#: The newest ONNX opset onnx2torch converts; newer graphs are brought down to it first.
ONNX2TORCH_OPSET = 17
FD_TOLERANCE = 0.05


@dataclass(frozen=True)
class Adapter:
    """How a third-party graph departs from the contract: its input ``layout`` (NCHW or NHWC), the
    ``input_range`` it expects (255: 0..255, 1: 0..1), its ``outputs`` (two logits, or one logit) and which
    class means manipulated (for one logit: 1 if a positive logit means manipulated, 0 if it means pristine)."""

    layout: str = "NCHW"
    input_range: int = 255
    outputs: str = "two-logits"
    manipulated_class: int = 1

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("layout", self.layout, LAYOUTS),
            ("input range", self.input_range, INPUT_RANGES),
            ("outputs", self.outputs, OUTPUTS),
            ("manipulated class", self.manipulated_class, (0, 1)),
        ):
            if value not in allowed:
                raise CfzooError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, allowed))}")


def adapt_graph(model, adapter: Adapter, source: str):
    """``model`` (an onnx ModelProto) wrapped so that it takes ``image`` and gives ``logits`` as the contract says.

    Refused in one line: more than one input, an input that is not 4-D with 3 channels where ``adapter.layout``
    puts them, spatial sizes other than 128, and (checked by running it) outputs that do not match
    ``adapter.outputs`` or a graph that takes a fixed batch."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    initialisers = {initialiser.name for initialiser in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initialisers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise CfzooError(
            f"{source} has {len(inputs)} inputs and {len(graph.output)} outputs; a detector takes one image batch and gives one "
            "output (export the graph with a single input and a single output)"
        )
    dims = _dims(inputs[0])
    channel_axis = 1 if adapter.layout == "NCHW" else 3
    spatial = [dims[axis] for axis in ((2, 3) if adapter.layout == "NCHW" else (1, 2))] if len(dims) == 4 else []
    if len(dims) != 4 or dims[channel_axis] not in (3, None) or any(size not in (PATCH_SIZE, None) for size in spatial):
        other = "NHWC" if adapter.layout == "NCHW" else "NCHW"
        raise CfzooError(
            f"{source}: input {inputs[0].name!r} has shape {_shape_text(dims)}, not {adapter.layout} with 3 channels and "
            f"{PATCH_SIZE}x{PATCH_SIZE} pixels; if it is {other}, say --layout {other}"
        )
    _check_raw_outputs(model, adapter, source, dims)

    prefixed = onnx.compose.add_prefix(model, "third_party/")
    inner_input, inner_output = prefixed.graph.input[0].name, prefixed.graph.output[0].name
    input_type = inputs[0].type.tensor_type.elem_type
    nodes, constants = [], []
    current = IMAGE
    if adapter.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [current], ["adapter/nhwc"], perm=[0, 2, 3, 1]))
        current = "adapter/nhwc"
    if adapter.input_range == 1:
        constants.append(helper.make_tensor("adapter/inverse_255", TensorProto.FLOAT, [], [1.0 / 255.0]))
        nodes.append(helper.make_node("Mul", [current, "adapter/inverse_255"], ["adapter/scaled"]))
        current = "adapter/scaled"
    # Cast only where the types differ: onnx2torch, which makes the companion, lacks the newer opsets' Cast
    nodes.append(
        helper.make_node("Cast", [current], [inner_input], to=input_type)
        if input_type != TensorProto.FLOAT
        else helper.make_node("Identity", [current], [inner_input])
    )
    nodes.extend(prefixed.graph.node)
    output_type = prefixed.graph.output[0].type.tensor_type.elem_type
    nodes.append(
        helper.make_node("Cast", [inner_output], ["adapter/float"], to=TensorProto.FLOAT)
        if output_type != TensorProto.FLOAT
        else helper.make_node("Identity", [inner_output], ["adapter/float"])
    )
    nodes.append(helper.make_node("Flatten", ["adapter/float"], ["adapter/columns"], axis=1))
    if adapter.outputs == "one-logit":
        manipulated = "adapter/columns"
        if adapter.manipulated_class == 0:
            nodes.append(helper.make_node("Neg", ["adapter/columns"], ["adapter/negated"]))
            manipulated = "adapter/negated"
        nodes.append(helper.make_node("Sub", [manipulated, manipulated], ["adapter/zero"]))
        nodes.append(helper.make_node("Concat", ["adapter/zero", manipulated], [LOGITS], axis=1))
    elif adapter.manipulated_class == 0:
        constants.append(helper.make_tensor("adapter/swap", TensorProto.INT64, [2], [1, 0]))
        nodes.append(helper.make_node("Gather", ["adapter/columns", "adapter/swap"], [LOGITS], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["adapter/columns"], [LOGITS]))
    adapted_graph = helper.make_graph(
        nodes,
        "cfzoo_adapted",
        [helper.make_tensor_value_info(IMAGE, TensorProto.FLOAT, [BATCH, 3, PATCH_SIZE, PATCH_SIZE])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [BATCH, 2])],
        initializer=list(prefixed.graph.initializer) + constants,
    )
    adapted = helper.make_model(adapted_graph, opset_imports=list(model.opset_import), producer_name="cfzoo")
    adapted.ir_version = model.ir_version
    adapted.functions.extend(prefixed.functions)
    try:
        onnx.checker.check_model(adapted)
    except onnx.checker.ValidationError as error:
        raise CfzooError(f"{source}: the adapted graph is not valid ONNX ({str(error).splitlines()[0]})") from None
    return adapted


def make_companion(adapted, source: str):
    """The gradient companion (ModelProto) of an adapted detector graph, via onnx2torch and autograd, and the
    converted network it differentiates.

    The graph's shape arithmetic is folded into constants first, and the converted network's reshapes and slices get
    integer operands (:mod:`cfzoo.export.converted`: torch exports GroupNorm as a ``Reshape`` to the runtime
    ``Shape`` of a tensor, and attention's sizes through dozens of such nodes, which a symbolic trace cannot
    follow), and it must give the graph's logits in onnxruntime before it is differentiated. Each step that fails
    says why."""
    require_export_extra()
    try:
        from onnx2torch import convert
    except ImportError:
        raise CfzooError(
            "a gradient companion for a third-party graph needs onnx2torch; pip install 'cfzoo[train]'"
        ) from None
    adapted = _prepared_for_onnx2torch(_opset_for_onnx2torch(adapted, source))
    adapted = plain_reshapes(fold_shape_arithmetic(adapted, IMAGE, (1, 3, PATCH_SIZE, PATCH_SIZE)))
    fallback = (
        f"register it with {option('companion', '--no-companion', 'companion=False')} and attack it with the "
        "gradient-free square, whose result is only an upper bound on its robustness"
    )
    try:
        network = convert(adapted)
    except Exception as error:  # onnx2torch raises NotImplementedError and others for operators it lacks
        missing = _unconvertible_operators(adapted)
        reason = f"it has no converter for {', '.join(missing)}" if missing else first_line(error)
        raise CfzooError(
            f"{source}: onnx2torch cannot convert it for a gradient companion ({reason}); {fallback}"
        ) from None
    network.eval()  # onnx2torch's modules start in training mode: BatchNorm would use each batch's statistics
    static_shapes(network, (1, 3, PATCH_SIZE, PATCH_SIZE))
    disagreement = _converted_disagreement(network, adapted)
    if disagreement is not None:
        raise CfzooError(
            f"{source}: its torch conversion's logits differ from onnxruntime's by {disagreement:.2g} (relative), so its "
            f"gradient would not be the detector's; {fallback}"
        )
    try:
        return export_gradient(network), network
    except Exception as error:  # tracing or export of an operator torch cannot differentiate or export
        where = _converted_operator(error)
        raise CfzooError(
            f"{source}: its gradient could not be traced or exported"
            f"{f' through the {where} operator as onnx2torch converts it' if where else ''} ({first_line(error)}); {fallback}"
        ) from None


def _unconvertible_operators(model) -> list[str]:
    """Every operator of ``model`` that onnx2torch has no converter for at the graph's opset, as "Name (opset N)"."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    missing = set()
    for node in model.graph.node:
        domain = node.domain or "ai.onnx"
        try:
            get_converter(node.op_type, opsets.get(domain, 1), "" if domain == "ai.onnx" else domain)
        except NotImplementedError:
            missing.add(f"{node.op_type} (opset {opsets.get(domain, 1)})")
    return sorted(missing)


def _converted_operator(error: BaseException) -> str | None:
    """The ONNX operator whose onnx2torch module raised ``error`` (the innermost in its traceback), if one did."""
    found, trace = None, error.__traceback__
    while trace is not None:
        parts = Path(trace.tb_frame.f_code.co_filename).parts
        if "onnx2torch" in parts and "node_converters" in parts:
            found = Path(parts[-1]).stem
        trace = trace.tb_next
    return None if found is None else found.replace("_", " ").title().replace(" ", "")


def _converted_disagreement(network, graph) -> float | None:
    """The largest difference between the converted network's logits and onnxruntime's on the adapted graph, over two
    patches (a gradient and noise), relative to their scale; None when they agree (within float32 rounding)."""
    import torch

    from cfzoo.zoo.runtime import onnxruntime_module

    ramp = np.linspace(0, 255, PATCH_SIZE, dtype=np.float32)
    noise = np.random.default_rng(1).uniform(0, 255, (3, PATCH_SIZE, PATCH_SIZE)).astype(np.float32)
    images = np.stack([np.broadcast_to(ramp, (3, PATCH_SIZE, PATCH_SIZE)), noise]).astype(np.float32)
    session = onnxruntime_module().InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run([LOGITS], {IMAGE: images})[0]
    with torch.no_grad():
        found = network(torch.from_numpy(images)).numpy()
    worst = float(np.abs(found - expected).max() / (1.0 + np.abs(expected).max()))
    return worst if not worst <= 1e-3 else None


def _prepared_for_onnx2torch(model):
    """``model`` with every ``Identity`` of an initializer replaced by an initializer of its own, and omitted optional
    inputs at the end of a node's inputs dropped: torch's exporter shares equal weights through ``Identity`` (76 of
    them in timm's xception41), and onnx2torch reads a convolution's weight and bias from the initializers only; it
    exports ``clamp_min`` as a ``Clip`` with an empty max, which onnx2torch looks up as a constant named ""."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # the caller's graph stays as it was
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    outputs = {value.name for value in graph.output}
    kept = []
    for node in graph.node:
        while node.input and not node.input[-1]:
            node.input.pop()
        if (
            node.op_type == "Identity"
            and node.input[0] in initializers
            and node.output[0] not in (*initializers, *outputs)
        ):
            copy = onnx.TensorProto.FromString(initializers[node.input[0]].SerializeToString())
            copy.name = node.output[0]
            graph.initializer.append(copy)
            initializers[copy.name] = copy
        else:
            kept.append(node)
    if len(kept) < len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return model


def _opset_for_onnx2torch(model, source: str):
    """``model`` brought down to :data:`ONNX2TORCH_OPSET` if its default-domain opset is newer."""
    from onnx import version_converter

    opset = max(
        (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=ONNX2TORCH_OPSET
    )
    if opset <= ONNX2TORCH_OPSET:
        return model
    try:
        converted = version_converter.convert_version(model, ONNX2TORCH_OPSET)
    except Exception as error:  # the converter's C++ assertions surface as RuntimeError and others
        raise CfzooError(
            f"{source}: uses opset {opset}, and onnx2torch, which makes the gradient companion, reads opset {ONNX2TORCH_OPSET} at most "
            f"({first_line(error)}); export it with opset_version={ONNX2TORCH_OPSET}, or register it with {option('companion', '--no-companion', 'companion=False')}"
        ) from None
    _drop_default_attributes_of_newer_opsets(converted, opset)
    return converted


def _drop_default_attributes_of_newer_opsets(model, opset: int) -> None:
    """Remove, in place, each attribute that :data:`ONNX2TORCH_OPSET` does not know and that holds the default of
    ``opset``, where it came from: onnx's version converter leaves them (torch's default exporter writes
    ``ReduceMean(noop_with_empty_axes=0)`` at opset 18 and on), and onnxruntime refuses a graph with them."""
    from onnx import defs, helper

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            known = defs.get_schema(node.op_type, ONNX2TORCH_OPSET).attributes
            newer = defs.get_schema(node.op_type, opset).attributes
        except defs.SchemaError:
            continue
        dropped = [
            attribute
            for attribute in node.attribute
            if attribute.name not in known
            and attribute.name in newer
            and newer[attribute.name].default_value.name  # it has a default, which the attribute holds
            and helper.get_attribute_value(attribute) == helper.get_attribute_value(newer[attribute.name].default_value)
        ]
        for attribute in dropped:
            node.attribute.remove(attribute)


def check_companion(detector_path: Path, companion_path: Path, seed: int = 0, reference=None) -> float:
    """The largest relative disagreement between the companion's gradient and central finite differences of the
    detector graph, along three random directions of four random patches, at the step of :data:`FD_STEPS` where it
    is smallest; a CfzooError above FD_TOLERANCE.

    ``reference``: the detector as a torch module (the converted network, checked against the graph's logits). When
    no float32 step agrees, its finite differences are also taken in float64 at a step of 1e-4 gray levels, below
    every kink and far above rounding, for networks whose float32 differences are too coarse at every step
    (normalisation layers). Only then: torch's float64 convolutions have no fast kernels, and on timm's xception41
    they took 440 of its 490 seconds of registration."""
    from cfzoo.zoo.runtime import onnxruntime_module

    onnxruntime = onnxruntime_module()
    detector = onnxruntime.InferenceSession(str(detector_path), providers=["CPUExecutionProvider"])
    companion = onnxruntime.InferenceSession(str(companion_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    images = rng.uniform(32, 224, (4, 3, PATCH_SIZE, PATCH_SIZE)).astype(np.float32)
    labels = np.full(len(images), MANIPULATED, dtype=np.int64)
    logits, gradient = companion.run([LOGITS, GRAD], {IMAGE: images, LABEL: labels})
    directions = [rng.choice(np.array([-1.0, 1.0], dtype=np.float32), images.shape) for _ in range(3)]
    by_step = []
    for step in FD_STEPS:
        worst = 0.0
        for direction in directions:
            losses = [
                cross_entropy(detector.run([LOGITS], {IMAGE: images + sign * step * direction})[0], MANIPULATED)
                for sign in (1, -1)
            ]
            numeric = (losses[0] - losses[1]) / (2 * step)
            analytic = (gradient.astype(np.float64) * direction).reshape(len(images), -1).sum(axis=1)
            scale = np.maximum(np.abs(numeric), np.abs(analytic)).max() + 1e-6
            worst = max(worst, float(np.abs(numeric - analytic).max() / scale))
        by_step.append(worst)
    if reference is not None and min(by_step) > FD_TOLERANCE:  # only then: float64 runs are slow
        by_step.append(_float64_disagreement(reference, images, directions, gradient))
    worst = min(by_step)
    if worst > FD_TOLERANCE:
        raise CfzooError(
            f"the gradient companion made for {detector_path.name} disagrees with finite differences of the detector by "
            f"{worst:.0%} (at most {FD_TOLERANCE:.0%} allowed); register it with {option('companion', '--no-companion', 'companion=False')} and use gradient-free attacks"
        )
    return worst


def _float64_disagreement(reference, images: np.ndarray, directions: list, gradient: np.ndarray) -> float:
    """The companion's directional derivatives against central differences of ``reference`` in float64."""
    import copy

    import torch

    network, step, worst = copy.deepcopy(reference).double().eval(), 1e-4, 0.0
    labels = torch.full((len(images),), MANIPULATED, dtype=torch.long)
    with torch.no_grad():
        for direction in directions:
            losses = [
                torch.nn.functional.cross_entropy(
                    network(torch.from_numpy(images.astype(np.float64) + sign * step * direction)),
                    labels,
                    reduction="none",
                ).numpy()
                for sign in (1, -1)
            ]
            numeric = (losses[0] - losses[1]) / (2 * step)
            analytic = (gradient.astype(np.float64) * direction).reshape(len(images), -1).sum(axis=1)
            scale = np.maximum(np.abs(numeric), np.abs(analytic)).max() + 1e-6
            worst = max(worst, float(np.abs(numeric - analytic).max() / scale))
    return worst


@dataclass(frozen=True)
class Registration:
    entry: ModelEntry
    companion_error: float | None  # finite-difference disagreement of the companion; None without one


def register_model(
    path: str | os.PathLike[str],
    model_id: str,
    task: str,
    adapter: Adapter = Adapter(),
    threshold: float = 0.5,
    companion: bool = True,
    zoo_dir: str | os.PathLike[str] | None = None,
    timeout: float = REGISTER_TIMEOUT,
) -> Registration:
    """Put a third-party ONNX detector into the user zoo (``$CFZOO_HOME/zoo``) as ``model_id``: the adapted
    graph, its gradient companion (unless ``companion`` is False) and a registry entry with both sha256. The graph
    is loaded, run and converted in a child process given ``timeout`` seconds."""
    require_export_extra()
    path = Path(path)
    if not _MODEL_ID.fullmatch(model_id):
        raise CfzooError(
            f"model id {model_id!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if model_id in embedded_registry() or model_id.split("-")[0] in FAMILY_IDS:
        raise CfzooError(
            f"model id {model_id!r} is taken by cfzoo's own models (<family>-<task>); choose another {option('model_id', '--id')}"
        )
    if task not in TASK_IDS:
        raise CfzooError(f"unknown task {task!r}; choose one of: {', '.join(TASK_IDS)}")
    if not 0.0 < threshold < 1.0:
        raise CfzooError(f"threshold {threshold} is a probability of 'manipulated': give a number between 0 and 1")
    if not timeout > 0:
        raise CfzooError(f"{option('timeout')} {timeout}: give a number of seconds above 0")
    if not path.is_file():
        raise CfzooError(f"{path}: no such file; give the path of an .onnx detector")
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else user_zoo_dir()
    source_sha256 = file_sha256(path)
    with tempfile.TemporaryDirectory(prefix="cfzoo-register-") as staging:
        made = _in_child(
            _make_graphs, (str(path), model_id, task, adapter, companion, source_sha256, staging), timeout, path
        )
        # written only once everything is made and checked, and all or nothing (cfzoo.zoo.writer): a refused graph
        # or a crash leaves the zoo as it was
        with ZooWriter(zoo_dir) as writer:
            files = {
                kind: writer.add(
                    model_id,
                    ".grad.onnx" if kind == "gradient" else ".onnx",
                    lambda staged, made_file=Path(staging) / name: shutil.copyfile(made_file, staged),
                )
                for kind, name in made["files"].items()
            }
            entry = ModelEntry(
                id=model_id,
                family=EXTERNAL_FAMILY,
                task=task,
                files=files,
                threshold=float(threshold),
                score="probability",
                training={"registered_from": path.name, "source_sha256": source_sha256, "adapter": asdict(adapter)},
            )
            registry = Registry.in_zoo(zoo_dir, lenient=True)
            writer.commit(Registry([other for other in registry if other.id != model_id] + [entry]))
    return Registration(entry, made["companion_error"])


def register_module(module, model_id: str, task: str, adapter: Adapter = Adapter(), **options) -> Registration:
    """Register a ``torch.nn.Module`` detector as :func:`register_model` registers an ONNX file: exported first by
    torch at opset 17 with a dynamic batch, its input laid out as ``adapter`` says (patches of 128 x 128)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise CfzooError(f"expected a torch.nn.Module detector, got {type(module).__name__}")
    shape = (2, 3, PATCH_SIZE, PATCH_SIZE) if adapter.layout == "NCHW" else (2, PATCH_SIZE, PATCH_SIZE, 3)
    example = torch.rand(*shape) * adapter.input_range
    with tempfile.TemporaryDirectory(prefix="cfzoo-torch-") as folder:
        path = Path(folder) / f"{type(module).__name__}.onnx"
        try:
            torch.onnx.export(
                module.eval(),
                (example,),
                str(path),
                input_names=["pixels"],
                output_names=["score"],
                dynamic_axes={"pixels": {0: "batch"}, "score": {0: "batch"}},
                opset_version=ONNX2TORCH_OPSET,
                dynamo=False,
            )
        except Exception as error:  # torch's exporter raises many kinds
            raise CfzooError(
                f"{type(module).__name__} could not be exported to ONNX ({first_line(error)}); check that it runs on a "
                f"batch of {list(shape)} ({adapter.layout}, 0..{adapter.input_range})"
            ) from None
        return register_model(path, model_id, task, adapter, **options)


def load_factory(spec: str):
    """The module ``FILE.py:FACTORY`` makes: the file is run as a module and ``FACTORY()`` called (the user's code,
    as a plugin is)."""
    import importlib.util

    file, _, name = spec.rpartition(":")
    if not file or not name or not file.endswith(".py"):
        raise CfzooError(
            f"{option('torch_factory', '--torch')} {spec}: give FILE.py:FACTORY, a function that returns the module"
        )
    if not Path(file).is_file():
        raise CfzooError(f"{option('torch_factory', '--torch')} {spec}: {file}: no such file")
    loader = importlib.util.spec_from_file_location(Path(file).stem, file)
    code = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(code)
        factory = getattr(code, name)
    except AttributeError:
        raise CfzooError(f"{option('torch_factory', '--torch')} {spec}: {file} defines no {name}") from None
    except Exception as error:  # the user's module failed to run
        raise CfzooError(f"{file} failed to run ({type(error).__name__}: {first_line(error)})") from None
    try:
        return factory()
    except Exception as error:
        raise CfzooError(f"{name}() in {file} failed ({type(error).__name__}: {first_line(error)})") from None


def _make_graphs(
    path: str, model_id: str, task: str, adapter: Adapter, companion: bool, source_sha256: str, staging: str
) -> dict:
    """Load, adapt and check the graph, make and check its companion, and save them in ``staging``: everything that
    runs the untrusted graph (in the child process of :func:`register_model`). Returns the files made, by kind, and
    the companion's finite-difference error (None without one)."""
    import onnx

    try:
        model = onnx.load(path)
    except Exception as error:  # protobuf's DecodeError and onnx's own errors
        raise CfzooError(
            f"{path} is not an ONNX model ({first_line(error)}); export your detector with torch.onnx.export or tf2onnx"
        ) from None
    adapted = adapt_graph(model, adapter, path)
    _describe(adapted, model_id, "detector", adapter, source_sha256)
    detector_path, gradient_path = Path(staging) / "detector.onnx", Path(staging) / "gradient.onnx"
    files, error = {"detector": save_model(adapted, detector_path).name}, None
    if companion:
        gradient, network = make_companion(adapted, path)
        _describe(gradient, model_id, "gradient", adapter, source_sha256)
        files["gradient"] = save_model(gradient, gradient_path).name
        error = check_companion(detector_path, gradient_path, reference=network)
    _conforms(detector_path, gradient_path if companion else None, model_id, task, path)
    return {"files": files, "companion_error": error}


def _conforms(detector_path: Path, gradient_path: Path | None, model_id: str, task: str, source: str) -> None:
    """`cfzoo check` on the graphs made, before anything is written: a CfzooError naming every check that fails. The
    companion's gradient is left to :func:`check_companion`, which differentiates the detector graph itself."""
    from cfzoo.zoo.conformance import check_pair
    from cfzoo.zoo.resolve import ResolvedFile
    from cfzoo.zoo.runtime import Detector, GradientModel

    entry = ModelEntry(id=model_id, family=EXTERNAL_FAMILY, task=task, files={}, threshold=0.5, score="probability")
    providers = ("CPUExecutionProvider",)
    detector = Detector(entry, ResolvedFile(detector_path, "path"), providers)
    companion = None if gradient_path is None else GradientModel(entry, ResolvedFile(gradient_path, "path"), providers)
    report = check_pair(detector, companion, gradient=False)
    failed = [f"{item.name} ({item.detail})" for item in report.checks if item.status == "fail"]
    if failed:
        raise CfzooError(
            f"{source} does not conform to the model contract: {'; '.join(failed)}; nothing was registered"
        )


#: Seconds a child that has sent its result gets to exit before it is killed.
CHILD_EXIT_SECONDS = 30


def _in_child(work, arguments: tuple, timeout: float, source: Path):
    """``work(*arguments)`` in a fresh child process, within ``timeout`` seconds: its result, or its CfzooError
    raised here. The child is killed when time is up, when it crashes, and when this process is interrupted
    (Ctrl-C, or SIGTERM, which cfzoo's CLI turns into an exit that runs this cleanup)."""
    context = multiprocessing.get_context("spawn")  # not fork: the parent's onnxruntime and torch threads
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_run_child, args=(sending, work, arguments), daemon=True)
    child.start()
    sending.close()
    try:
        if not receiving.poll(timeout):
            raise CfzooError(
                f"{source}: checking the graph and making its companion took more than {timeout:g} s (a loop that "
                f"does not end, or a graph too large to check here); give it more with {option('timeout')}, or "
                f"register it with {option('companion', '--no-companion', 'companion=False')} if the companion is the slow part"
            )
        try:
            kind, value = receiving.recv()
            child.join(CHILD_EXIT_SECONDS)  # let it exit on its own: killed, it would leave its semaphores behind
        except EOFError:
            child.join()
            raise CfzooError(
                f"{source}: checking the graph crashed the process that ran it (exit code {child.exitcode}); check that "
                "it runs in onnxruntime"
            ) from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiving.close()
    if kind == "refused":
        raise CfzooError(value)
    return value


def _run_child(sending, work, arguments: tuple) -> None:
    """The child's side of :func:`_in_child`: the result, or the raw text of a CfzooError (its argument markers
    kept, so the parent names options as its caller does)."""
    try:
        sending.send(("made", work(*arguments)))
    except CfzooError as error:
        sending.send(("refused", error.args[0]))
    except Exception as error:  # a converter's or onnxruntime's own error, on a graph nobody here has checked
        sending.send(("refused", f"checking the graph failed ({type(error).__name__}: {first_line(error)})"))
    finally:
        sending.close()


def _check_raw_outputs(model, adapter: Adapter, source: str, dims: list[int | None]) -> None:
    """Run the unwrapped graph on a batch of two and check its output against ``adapter.outputs``."""
    from cfzoo.zoo.runtime import onnxruntime_module

    onnxruntime = onnxruntime_module()
    shape = [2, 3, PATCH_SIZE, PATCH_SIZE] if adapter.layout == "NCHW" else [2, PATCH_SIZE, PATCH_SIZE, 3]
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        element = session.get_inputs()[0].type  # e.g. tensor(float)
        dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}.get(element)
        if dtype is None:
            raise CfzooError(f"{source}: its input is {element}; a detector takes floating-point images")
        # a black and a noisy patch, each in the input's range
        noise = np.random.default_rng(0).uniform(0, adapter.input_range, shape[1:])
        batch = np.stack([np.zeros(shape[1:]), noise]).astype(dtype)
        (output,) = session.run(None, {session.get_inputs()[0].name: batch})
    except CfzooError:
        raise
    except Exception as error:  # onnxruntime's own exception types
        fixed = dims[0] not in (None,) and dims[0] != 2
        hint = (
            f"it takes a fixed batch of {dims[0]}; export it with a dynamic batch dimension"
            if fixed
            else "check that it runs in onnxruntime"
        )
        raise CfzooError(f"{source}: a batch of 2 patches fails ({first_line(error)}); {hint}") from None
    expected = {"two-logits": ((2, 2),), "one-logit": ((2,), (2, 1))}[adapter.outputs]
    if output.shape not in expected:
        other = "one-logit" if adapter.outputs == "two-logits" else "two-logits"
        raise CfzooError(
            f"{source}: its output has shape {list(output.shape)} for a batch of 2, but --outputs {adapter.outputs} expects "
            f"{' or '.join(str(list(shape)) for shape in expected)}; if it gives {other.replace('-', ' ')}, say --outputs {other}"
        )
    if not np.isfinite(output).all():
        raise CfzooError(
            f"{source}: its output is NaN or infinite on a black and on a noisy patch; a detector must give finite "
            "scores (check its graph for a division by zero or a log of 0)"
        )


def _describe(model, model_id: str, kind: str, adapter: Adapter, source_sha256: str) -> None:
    from cfzoo._version import __version__

    describe_model(
        model,
        {
            "model_id": model_id,
            "kind": kind,
            "family": EXTERNAL_FAMILY,
            "source_sha256": source_sha256,
            "adapter": f"layout={adapter.layout} input_range=0..{adapter.input_range} outputs={adapter.outputs} "
            f"manipulated_class={adapter.manipulated_class}",
            "cfzoo_version": __version__,
        },
    )


def _dims(value_info) -> list[int | None]:
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in value_info.type.tensor_type.shape.dim]


def _shape_text(dims: list[int | None]) -> str:
    return "[" + ",".join("?" if dim is None else str(dim) for dim in dims) + "]"
