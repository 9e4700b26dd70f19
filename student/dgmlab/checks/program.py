"""A data-only program format for a student's model: the sandbox exports it, the grader runs it.

The grader never runs student Python, so it cannot unpickle a model or call ``torch.export.load``
(both run arbitrary code). Instead :func:`export_program` traces the model with ``torch.export``
in the sandbox and writes the graph as plain data: nested dicts, lists, numbers, strings and plain
tensors, which ``torch.load(..., weights_only=True)`` reads back without running code. The grader's
:func:`load_program` validates every field, resolves each op name only through :data:`ALLOWED_OPS`
(functional core ATen ops) and returns a callable :class:`Program`.

Payload (format ``dgm-program/1``)::

    {"format": "dgm-program/1",
     "inputs": [{"name": "x", "dtype": "float32", "shape": [32, 784], "dynamic_dims": [0]}],
     "nodes": [{"op": "aten.addmm.default", "args": [{"tensor": "0.bias"}, {"input": 0},
                {"ref": 0}], "kwargs": {}}, ...],
     "tensors": {"0.weight": tensor, ...}, "parameters": ["0.weight", ...],
     "output": {"tuple": [{"ref": 7}, {"ref": 8}]}, "batch": "dynamic"}

A value in ``args``/``kwargs`` is None, a bool, int, float, a string (only where the op's schema
takes one), a list of values, or a one-key tag: ``{"ref": k}`` (node k's result, k earlier),
``{"input": i}``, ``{"tensor": name}``, ``{"dtype": "float32"}``, ``{"device": "cpu"}``,
``{"layout": "strided"}`` or ``{"memory_format": "contiguous_format"}``. Devices in the graph are
replaced by the program's device. Besides ATen ops, nodes may be ``operator.getitem`` (a result of
a multi-output op) and int arithmetic on symbolic sizes (``operator.add`` ...).

Before a program first runs on an input shape it runs once on meta tensors (no data, no memory):
every op must accept its arguments and no result may exceed ``max_activation`` elements, so a
hostile size cannot allocate. "Empty" tensors are zeros, and batch norm's per-channel tensors are
checked against the input, since its kernel would read past short ones.

Not supported: data-dependent shapes (nonzero, boolean masks), control flow operators, in-place
or out= ops, complex and quantized dtypes, non-tensor inputs, dict outputs, float arithmetic on
sizes (sym_float). Tensors a plain function captures from a closure export as constants, not
parameters (pass the module or its bound method). An example batch of 1 exports statically.
State updates the graph makes (BatchNorm running statistics in train mode, in-place writes to
inputs) are dropped: a program never changes its tensors or its inputs.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.export import Dim, ExportedProgram, ShapesCollection
from torch.export.graph_signature import InputKind, OutputKind

FORMAT = "dgm-program/1"
# Stored tensors (parameters, buffers, constants) in all; 50M float32 is 200 MB.
MAX_STORED_ELEMENTS = 50_000_000
# Any one tensor a program computes; 2**28 float32 is 1 GiB, and a 10k-image MNIST batch through
# 32 channels at 28x28 (250M) still fits.
MAX_ACTIVATION_ELEMENTS = 1 << 28
MAX_NODES = 50_000
MAX_INPUTS = 64
MAX_DIMS = 16
MAX_DEPTH = 8
MAX_NAME = 200
# Symbolic size arithmetic stays in int64, so squaring a size over and over cannot build a huge int.
MAX_INT = 1 << 62
# Distinct input shapes whose sizes were checked; beyond that the cache starts again.
MAX_CHECKED_SHAPES = 256

_FIELDS = ("format", "inputs", "nodes", "tensors", "parameters", "output", "batch")
_INPUT_FIELDS = ("name", "dtype", "shape", "dynamic_dims")
_NODE_FIELDS = ("op", "args", "kwargs")

# Op overloads by family. Each is functional (no mutation, no out=), and none touches files,
# prints, or leaves the aten namespace (there are no save/load ops in aten; torch.save is Python).
# _build_allowlist refuses a mutable schema and anything in FORBIDDEN_OPS.
_ALLOWED_NAMES = (
    # Linear layers and convolutions (ConvTranspose is convolution with transposed=True).
    "aten.addmm.default", "aten.mm.default", "aten.bmm.default", "aten.convolution.default",
    # BatchNorm in eval and train mode, InstanceNorm, LayerNorm, GroupNorm.
    "aten._native_batch_norm_legit_no_training.default",
    "aten._native_batch_norm_legit_functional.default", "aten._native_batch_norm_legit.no_stats",
    "aten.native_layer_norm.default", "aten.native_group_norm.default",
    # Pooling and resampling.
    "aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default",
    "aten._adaptive_avg_pool2d.default", "aten.upsample_nearest2d.vec",
    "aten.upsample_bilinear2d.vec",
    # Activations and softmax (most others decompose into the elementwise ops below).
    "aten.relu.default", "aten.leaky_relu.default", "aten.sigmoid.default", "aten.tanh.default",
    "aten.elu.default", "aten.gelu.default", "aten.hardtanh.default", "aten._softmax.default",
    "aten._log_softmax.default", "aten.clamp.default", "aten.clamp.Tensor",
    # Dropout and random draws (they use torch's global generator, which the grader seeds).
    "aten.native_dropout.default", "aten.bernoulli.default", "aten.bernoulli.p",
    "aten.randn_like.default", "aten.rand_like.default", "aten.randn.default", "aten.rand.default",
    "aten.normal.Tensor_Tensor", "aten.normal.Tensor_float", "aten.normal.float_Tensor",
    "aten.normal.float_float", "aten.normal_functional.default", "aten.uniform.default",
    # Creation; the empty ones run as zeros (see _SUBSTITUTES).
    "aten.full.default", "aten.full_like.default", "aten.scalar_tensor.default",
    "aten.arange.start_step", "aten.empty.memory_format", "aten.empty_permuted.default",
    "aten.empty_strided.default",
    # Elementwise arithmetic.
    "aten.add.Tensor", "aten.add.Scalar", "aten.sub.Tensor", "aten.sub.Scalar",
    "aten.rsub.Scalar", "aten.mul.Tensor", "aten.mul.Scalar", "aten.div.Tensor",
    "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode", "aten.pow.Tensor_Scalar",
    "aten.pow.Tensor_Tensor", "aten.pow.Scalar", "aten.neg.default", "aten.abs.default",
    "aten.sign.default", "aten.reciprocal.default", "aten.sqrt.default", "aten.rsqrt.default",
    "aten.exp.default", "aten.exp2.default", "aten.expm1.default", "aten.log.default",
    "aten.log1p.default", "aten.log2.default", "aten.log10.default", "aten.sin.default",
    "aten.cos.default", "aten.tan.default", "aten.atan.default", "aten.atan2.default",
    "aten.sinh.default", "aten.cosh.default", "aten.erf.default", "aten.erfinv.default",
    "aten.lgamma.default", "aten.digamma.default", "aten.floor.default", "aten.ceil.default",
    "aten.round.default", "aten.trunc.default", "aten.fmod.Tensor", "aten.fmod.Scalar",
    "aten.remainder.Tensor", "aten.remainder.Scalar", "aten.maximum.default",
    "aten.minimum.default", "aten.hypot.default", "aten.where.self",
    # Comparisons and logic.
    "aten.eq.Tensor", "aten.eq.Scalar", "aten.ne.Tensor", "aten.ne.Scalar", "aten.lt.Tensor",
    "aten.lt.Scalar", "aten.le.Tensor", "aten.le.Scalar", "aten.gt.Tensor", "aten.gt.Scalar",
    "aten.ge.Tensor", "aten.ge.Scalar", "aten.logical_and.default", "aten.logical_or.default",
    "aten.logical_not.default", "aten.logical_xor.default", "aten.bitwise_and.Tensor",
    "aten.bitwise_or.Tensor", "aten.bitwise_xor.Tensor", "aten.bitwise_not.default",
    "aten.isnan.default", "aten.isinf.default",
    # Reductions.
    "aten.sum.default", "aten.sum.dim_IntList", "aten.mean.default", "aten.mean.dim",
    "aten.prod.default", "aten.prod.dim_int", "aten.amax.default", "aten.amin.default",
    "aten.max.default", "aten.max.dim", "aten.min.default", "aten.min.dim",
    "aten.argmax.default", "aten.argmin.default", "aten.var.correction",
    "aten.var_mean.correction", "aten.any.default", "aten.any.dim", "aten.any.dims",
    "aten.all.default", "aten.all.dim", "aten._is_all_true.default", "aten.cumsum.default",
    "aten.cumprod.default",
    "aten.topk.default", "aten.sort.default",
    # Shapes, views, copies and indexing (bounds-checked; as_strided is absent on purpose).
    "aten.view.default", "aten._unsafe_view.default", "aten.permute.default",
    "aten.expand.default", "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims",
    "aten.slice.Tensor", "aten.select.int", "aten.cat.default", "aten.split_with_sizes.default",
    "aten.split.Tensor", "aten.unbind.int", "aten.flip.default", "aten.roll.default",
    "aten.constant_pad_nd.default", "aten.index_select.default", "aten.gather.default",
    "aten.index.Tensor", "aten.scatter.value", "aten.scatter.src", "aten.scatter_add.default",
    "aten.repeat.default", "aten.unfold.default", "aten.clone.default", "aten.alias.default",
    "aten._to_copy.default",
    # Symbolic sizes and the checks export inserts (they only raise).
    "aten.sym_size.int", "aten.sym_numel.default", "aten._assert_tensor_metadata.default",
    "aten._assert_async.msg",
)  # fmt: skip

# Never allowed, whatever the allowlist says: file access, printing, unchecked memory views,
# storage swaps and resizes, and data-dependent scalars. _build_allowlist refuses them.
FORBIDDEN_OPS = frozenset(
    {
        "aten.from_file.default",
        "aten._print.default",
        "aten.as_strided.default",
        "aten.as_strided_scatter.default",
        "aten.set_.source_Storage",
        "aten.resize_.default",
        "aten.item.default",
        "aten._local_scalar_dense.default",
        "aten.nonzero.default",
    }
)

GETITEM = "operator.getitem"
# Python ints only: the sizes a dynamic batch turns into arithmetic.
_INT_OPS: dict[str, Callable[[int, int], int]] = {
    "operator.add": operator.add,
    "operator.sub": operator.sub,
    "operator.mul": operator.mul,
    "operator.floordiv": operator.floordiv,
    "operator.mod": operator.mod,
}
_PYTHON_NAMES: dict[Any, str] = {operator.getitem: GETITEM} | {
    fn: name for name, fn in _INT_OPS.items()
}

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "bool": torch.bool,
}  # fmt: skip
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_LAYOUTS: dict[str, torch.layout] = {"strided": torch.strided}
_MEMORY_FORMATS: dict[str, torch.memory_format] = {
    "contiguous_format": torch.contiguous_format,
    "preserve_format": torch.preserve_format,
    "channels_last": torch.channels_last,
    "channels_last_3d": torch.channels_last_3d,
}
_MEMORY_FORMAT_NAMES = {fmt: name for name, fmt in _MEMORY_FORMATS.items()}
_DEVICE_RE = re.compile(r"(cpu|cuda|mps)(:[0-9]{1,2})?")
_REF_TAGS = ("ref", "input", "tensor")
_SCALARS = (type(None), bool, int, float, str)


class ProgramError(ValueError):
    """A model the format cannot export, or a payload that is invalid or unsafe to run."""


def _build_allowlist(names: Sequence[str]) -> Mapping[str, torch._ops.OpOverload]:
    """Map each allowlisted name to its aten overload, refusing any mutable schema."""
    ops = {}
    for name in names:
        namespace, packet, overload = name.split(".")
        # The names are this module's constants, never payload text.
        op = getattr(getattr(torch.ops.aten, packet), overload)
        bad = name in FORBIDDEN_OPS or namespace != "aten" or str(op) != name
        if bad or op._schema.is_mutable:
            raise RuntimeError(f"allowlist entry {name} is not a functional aten op")
        ops[name] = op
    return MappingProxyType(ops)


ALLOWED_OPS: Mapping[str, torch._ops.OpOverload] = _build_allowlist(_ALLOWED_NAMES)


def _zeros(size: list[int], *_: Any, dtype: torch.dtype | None = None, **kwargs: Any) -> Any:
    """An "empty" tensor filled with zeros, so a program never reads uninitialized memory."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return torch.zeros(size, dtype=dtype, device=kwargs.get("device"))


_PER_CHANNEL = ("weight", "bias", "running_mean", "running_var")


def _checked_batch_norm(op: torch._ops.OpOverload) -> Callable[..., Any]:
    """A batch norm op that first checks its per-channel tensors against the input's channels."""
    names = [a.name for a in op._schema.arguments]

    def run(*args: Any, **kwargs: Any) -> Any:
        bound = dict(zip(names, args, strict=False)) | kwargs
        x = bound.get("input")
        channels = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() > 1 else None
        for name in _PER_CHANNEL:
            t = bound.get(name)
            # The kernel reads one value per channel without checking: a short tensor leaks memory.
            if isinstance(t, torch.Tensor) and (channels is None or t.shape != (channels,)):
                raise ProgramError(f"{name} should have shape ({channels},), got {tuple(t.shape)}")
        return op(*args, **kwargs)

    return run


_BATCH_NORMS = (
    "aten._native_batch_norm_legit_no_training.default",
    "aten._native_batch_norm_legit_functional.default",
    "aten._native_batch_norm_legit.no_stats",
)
_SUBSTITUTES: dict[str, Callable[..., Any]] = {
    "aten.empty.memory_format": _zeros,
    "aten.empty_permuted.default": _zeros,
    "aten.empty_strided.default": _zeros,
} | {name: _checked_batch_norm(ALLOWED_OPS[name]) for name in _BATCH_NORMS}


# ---------------------------------------------------------------------------------------------
# Export (sandbox side)
# ---------------------------------------------------------------------------------------------


class _Callable(nn.Module):
    """Wrap a tensor function so torch.export can trace it; a bound method's module is kept."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        owner = getattr(fn, "__self__", None)
        # Registered, a bound method's parameters export as parameters, not as constants.
        self.m = owner if isinstance(owner, nn.Module) else None

    def forward(self, *args: torch.Tensor) -> Any:
        return self.fn(*args)


def export_program(
    fn: nn.Module | Callable[..., Any],
    example_inputs: tuple[torch.Tensor, ...],
    dynamic_batch: bool = True,
) -> dict[str, Any]:
    """Export a module or tensor function to a data-only payload that load_program runs."""
    inputs = tuple(example_inputs)
    if not inputs or not all(type(t) is torch.Tensor for t in inputs):
        raise ProgramError("example_inputs must be a non-empty tuple of plain tensors")
    module = fn if isinstance(fn, nn.Module) else _Callable(fn)
    prefix = "" if isinstance(fn, nn.Module) else "m."
    ep, batch = _trace(module, inputs, dynamic_batch)
    payload = _encode(ep, inputs, batch, prefix)
    # Loading here makes an unsupported model fail in the sandbox, where the student sees why.
    load_program(payload)
    return payload


def _trace(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], dynamic_batch: bool
) -> tuple[ExportedProgram, str]:
    """Export with a dynamic dim 0 where possible, else with static shapes; decompose to core ATen."""
    if dynamic_batch:
        # Copies, because a failed dynamic export leaves its dynamic marks on the tensors it saw.
        trial = tuple(t.detach().clone() for t in inputs)
        shapes = ShapesCollection()
        for t in trial:
            if t.dim() > 0:
                shapes[t] = {0: Dim.DYNAMIC}
        try:
            dynamic = shapes.dynamic_shapes(module, trial)
            ep = torch.export.export(module, trial, dynamic_shapes=dynamic, strict=False)
            return ep.run_decompositions(), "dynamic"
        except Exception:
            pass  # why: a model that fixes its batch size (or specializes it) exports statically
    try:
        ep = torch.export.export(module, inputs, strict=False)
        return ep.run_decompositions(), "static"
    except Exception as e:
        raise ProgramError(f"torch.export could not trace the model: {e}") from e


def _encode(
    ep: ExportedProgram, inputs: tuple[torch.Tensor, ...], batch: str, prefix: str
) -> dict[str, Any]:
    """The payload of an exported program: its inputs, tensors, nodes and output structure."""
    refs: dict[str, dict[str, Any]] = {}
    tensors, parameters = _encode_inputs(ep, refs, prefix)
    nodes, flat_output = _encode_nodes(ep, refs)
    user = [
        arg
        for arg, spec in zip(flat_output, ep.graph_signature.output_specs, strict=True)
        if spec.kind == OutputKind.USER_OUTPUT
    ]
    leaves = iter(user)
    output = _encode_tree(ep.call_spec.out_spec, leaves, refs)
    return {
        "format": FORMAT,
        "inputs": _describe_inputs(ep, inputs),
        "nodes": nodes,
        "tensors": tensors,
        "parameters": parameters,
        "output": output,
        "batch": batch,
    }


def _encode_inputs(
    ep: ExportedProgram, refs: dict[str, dict[str, Any]], prefix: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map each placeholder to an input or a stored tensor; copy the tensors to plain CPU ones."""
    tensors: dict[str, torch.Tensor] = {}
    parameters: list[str] = []
    n_user = 0
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            refs[spec.arg.name] = {"input": n_user}
            n_user += 1
            continue
        if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            raise ProgramError(f"cannot export a graph input of kind {spec.kind.name}")
        name = spec.target.removeprefix(prefix)
        if name in tensors:
            raise ProgramError(f"two graph tensors are both named {name!r}")
        tensors[name] = _plain_copy(_graph_tensor(ep, spec.target), name)
        refs[spec.arg.name] = {"tensor": name}
        if spec.kind == InputKind.PARAMETER:
            parameters.append(name)
    return tensors, parameters


def _graph_tensor(ep: ExportedProgram, target: str) -> Any:
    """A parameter, buffer or constant of the exported program, by its target name."""
    if target in ep.state_dict:
        return ep.state_dict[target]
    if target in ep.constants:
        return ep.constants[target]
    raise ProgramError(f"the exported program has no tensor {target!r}")


def _plain_copy(value: Any, name: str) -> torch.Tensor:
    """A detached, contiguous CPU copy of a tensor, as a plain torch.Tensor."""
    if not isinstance(value, torch.Tensor):
        raise ProgramError(f"graph constant {name!r} is a {type(value).__name__}, not a tensor")
    copy = value.detach().cpu().clone(memory_format=torch.contiguous_format)
    if type(copy) is not torch.Tensor or copy.layout != torch.strided:
        raise ProgramError(
            f"tensor {name!r} is a {type(value).__name__}: only dense tensors export"
        )
    return copy


def _describe_inputs(ep: ExportedProgram, inputs: tuple[torch.Tensor, ...]) -> list[dict]:
    """Name, dtype, example shape and dynamic dims of each user input."""
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    described = []
    for name, example in zip(names, inputs, strict=True):
        if example.dtype not in _DTYPE_NAMES:
            raise ProgramError(f"input {name!r} has unsupported dtype {example.dtype}")
        fake = nodes[name].meta["val"]
        dynamic = [i for i, d in enumerate(fake.shape) if isinstance(d, torch.SymInt)]
        dtype, shape = _DTYPE_NAMES[example.dtype], list(example.shape)
        described.append({"name": name, "dtype": dtype, "shape": shape, "dynamic_dims": dynamic})
    return described


def _encode_nodes(
    ep: ExportedProgram, refs: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], Sequence[Any]]:
    """Encode each call_function node in order; return them with the graph's flat outputs."""
    nodes: list[dict[str, Any]] = []
    flat_output: Sequence[Any] = ()
    for node in ep.graph.nodes:
        if node.op == "call_function":
            args = [_encode_value(a, refs) for a in node.args]
            kwargs = {k: _encode_value(v, refs) for k, v in node.kwargs.items()}
            nodes.append({"op": _op_name(node.target), "args": args, "kwargs": kwargs})
            refs[node.name] = {"ref": len(nodes) - 1}
        elif node.op == "output":
            flat_output = node.args[0]
        elif node.op != "placeholder":
            raise ProgramError(f"cannot export graph node {node.name!r} of kind {node.op}")
    return nodes, flat_output


def _op_name(target: Any) -> str:
    """The payload name of a node's target: 'aten.<op>.<overload>' or 'operator.<fn>'."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    if target in _PYTHON_NAMES:
        return _PYTHON_NAMES[target]
    raise ProgramError(f"cannot export the operation {target!r}: the format runs ATen ops only")


def _encode_value(value: Any, refs: dict[str, dict[str, Any]]) -> Any:
    """Encode one node argument: a ref, a scalar, a list or a tagged dtype/device/layout/format."""
    if isinstance(value, torch.fx.Node):
        return dict(refs[value.name])
    if type(value) is int and abs(value) > MAX_INT:
        # only an open slice end (x[:, a:] exports end = 2**63 - 1) is this large: any bound
        # beyond every size slices the same
        return MAX_INT if value > 0 else -MAX_INT
    if type(value) in _SCALARS:
        return value
    if isinstance(value, (list, tuple)):
        return [_encode_value(v, refs) for v in value]
    if isinstance(value, torch.dtype) and value in _DTYPE_NAMES:
        return {"dtype": _DTYPE_NAMES[value]}
    if isinstance(value, torch.device):
        return {"device": value.type}
    if isinstance(value, torch.layout) and value == torch.strided:
        return {"layout": "strided"}
    if isinstance(value, torch.memory_format) and value in _MEMORY_FORMAT_NAMES:
        return {"memory_format": _MEMORY_FORMAT_NAMES[value]}
    raise ProgramError(f"cannot export the argument {value!r} ({type(value).__name__})")


def _encode_tree(spec: Any, leaves: Any, refs: dict[str, dict[str, Any]]) -> Any:
    """Encode the output structure: tensors in (nested) tuples and lists."""
    if spec.type is type(None):
        return None
    if spec.is_leaf():
        leaf = next(leaves)
        if leaf is None:
            return None
        if not isinstance(leaf, torch.fx.Node):
            raise ProgramError(f"outputs must be tensors, got {leaf!r}")
        return dict(refs[leaf.name])
    if not issubclass(spec.type, (tuple, list)):
        raise ProgramError(f"outputs must be tensors in tuples or lists, not {spec.type.__name__}")
    kind = "tuple" if issubclass(spec.type, tuple) else "list"
    return {kind: [_encode_tree(child, leaves, refs) for child in spec.children()]}


# ---------------------------------------------------------------------------------------------
# Validation and loading (grader side: nothing here runs code from the payload)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ref:
    """A validated reference to a node result ('ref'), a user input or a stored tensor."""

    kind: str
    key: int | str


class _Device:
    """Stands for the device the program runs on, wherever the graph named a device."""


_DEVICE = _Device()


@dataclass(frozen=True)
class _Input:
    """A declared input: dtype, example shape and the dims that may vary."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    dynamic_dims: frozenset[int]


@dataclass(frozen=True)
class _Node:
    """A validated node: its op name, the function that runs it, decoded args and kwargs."""

    op: str
    fn: Callable[..., Any]
    args: list[Any]
    kwargs: dict[str, Any]


def load_program(
    payload: Any,
    device: torch.device | str | None = None,
    max_elements: int = MAX_STORED_ELEMENTS,
    max_activation: int = MAX_ACTIVATION_ELEMENTS,
) -> Program:
    """Validate a payload and return the Program it describes; raise ProgramError if invalid."""
    fields = _check_fields(payload, _FIELDS, "payload")
    if type(fields["format"]) is not str or fields["format"] != FORMAT:
        raise ProgramError(f"payload format should be {FORMAT!r}, got {fields['format']!r}")
    if type(fields["batch"]) is not str or fields["batch"] not in ("dynamic", "static"):
        raise ProgramError(
            f"payload batch should be 'dynamic' or 'static', got {fields['batch']!r}"
        )
    tensors = _load_tensors(fields["tensors"], max_elements)
    parameters = _load_parameters(fields["parameters"], tensors)
    inputs = _load_inputs(fields["inputs"], max_activation)
    context = _Context(len(inputs), frozenset(tensors))
    nodes = [_load_node(raw, k, context) for k, raw in enumerate(_check_list(fields["nodes"]))]
    output = _load_output(fields["output"], _Context(len(inputs), context.tensors, len(nodes)))
    program = Program(inputs, nodes, tensors, parameters, output, fields["batch"], max_activation)
    program.check_shapes(tuple(i.shape for i in inputs))
    return program.to(device) if device is not None else program


def _check_fields(raw: Any, fields: Sequence[str], what: str) -> dict[str, Any]:
    """A dict with exactly the given string keys."""
    if type(raw) is not dict or not all(type(k) is str for k in raw):
        raise ProgramError(f"{what} must be a dict with string keys, got {type(raw).__name__}")
    missing = [f for f in fields if f not in raw]
    if missing:
        raise ProgramError(f"{what} is missing field {missing[0]!r}")
    extra = [k for k in raw if k not in fields]
    if extra:
        raise ProgramError(f"{what} has unknown field {extra[0]!r}")
    return raw


def _check_list(raw: Any, what: str = "nodes", limit: int = MAX_NODES) -> list[Any]:
    """A list of at most limit items."""
    if type(raw) is not list:
        raise ProgramError(f"{what} must be a list, got {type(raw).__name__}")
    if len(raw) > limit:
        raise ProgramError(f"{what} has {len(raw)} entries, more than {limit}")
    return raw


def _check_name(raw: Any, what: str) -> str:
    """A non-empty string of bounded length."""
    if type(raw) is not str or not 0 < len(raw) <= MAX_NAME:
        raise ProgramError(f"{what} must be a non-empty string of at most {MAX_NAME} characters")
    return raw


def _check_int(raw: Any, what: str, low: int = 0, high: int = MAX_INT) -> int:
    """An int (not a bool) in [low, high]."""
    if type(raw) is not int or not low <= raw <= high:
        raise ProgramError(f"{what} must be an int in [{low}, {high}], got {raw!r}")
    return raw


def _load_tensors(raw: Any, max_elements: int) -> dict[str, torch.Tensor]:
    """Validated private copies of the stored tensors, within the element budget."""
    if type(raw) is not dict:
        raise ProgramError(f"tensors must be a dict, got {type(raw).__name__}")
    tensors, total = {}, 0
    for name, value in raw.items():
        _check_name(name, "a tensor name")
        tensor = _check_tensor(value, name)
        total += tensor.numel()
        if total > max_elements:
            raise ProgramError(f"stored tensors exceed {max_elements} elements (at {name!r})")
        # A private contiguous copy: nothing the payload aliases can change it later.
        tensors[name] = tensor.detach().clone(memory_format=torch.contiguous_format)
    return tensors


def _check_tensor(value: Any, name: str) -> torch.Tensor:
    """A plain dense tensor of an allowed dtype whose sizes and strides fit its storage."""
    if type(value) is nn.Parameter:
        value = value.detach()
    if type(value) is not torch.Tensor:
        raise ProgramError(
            f"tensor {name!r} is a {type(value).__name__}: only plain torch.Tensor (no subclass)"
        )
    if value.layout != torch.strided or value.is_nested or value.device.type not in ("cpu", "cuda"):
        raise ProgramError(f"tensor {name!r} must be a dense strided CPU or CUDA tensor")
    if value.dtype not in _DTYPE_NAMES:
        raise ProgramError(f"tensor {name!r} has unsupported dtype {value.dtype}")
    if value.numel() and any(s < 0 for s in value.stride()):
        raise ProgramError(f"tensor {name!r} has a negative stride")
    last = value.storage_offset() + sum(
        (n - 1) * s for n, s in zip(value.shape, value.stride(), strict=True)
    )
    if value.numel() and (last + 1) * value.element_size() > value.untyped_storage().nbytes():
        raise ProgramError(f"tensor {name!r} reaches past the end of its storage")
    return value


def _load_parameters(raw: Any, tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the stored tensors that are the model's parameters."""
    names = _check_list(raw, "parameters", len(tensors))
    for name in names:
        if type(name) is not str or name not in tensors:
            raise ProgramError(f"parameter {name!r} is not a stored tensor")
    if len(set(names)) != len(names):
        raise ProgramError("parameters lists a tensor twice")
    return list(names)


def _load_inputs(raw: Any, max_activation: int) -> list[_Input]:
    """The declared inputs: names, dtypes, example shapes within the budget, dynamic dims."""
    inputs = []
    for i, entry in enumerate(_check_list(raw, "inputs", MAX_INPUTS)):
        fields = _check_fields(entry, _INPUT_FIELDS, f"input {i}")
        name = _check_name(fields["name"], f"input {i} name")
        if type(fields["dtype"]) is not str or fields["dtype"] not in _DTYPES:
            raise ProgramError(f"input {i} has unsupported dtype {fields['dtype']!r}")
        shape = _check_list(fields["shape"], f"input {i} shape", MAX_DIMS)
        shape = tuple(_check_int(d, f"input {i} size") for d in shape)
        if _numel(shape) > max_activation:
            raise ProgramError(
                f"input {i} declares {_numel(shape)} elements, over {max_activation}"
            )
        dims = _check_list(fields["dynamic_dims"], f"input {i} dynamic_dims", len(shape))
        dims = [_check_int(d, f"input {i} dynamic dim", 0, len(shape) - 1) for d in dims]
        dtype = _DTYPES[fields["dtype"]]
        inputs.append(_Input(name, dtype, shape, frozenset(dims)))
    return inputs


def _numel(shape: Sequence[int]) -> int:
    """The element count of a shape."""
    count = 1
    for size in shape:
        count *= size
    return count


@dataclass(frozen=True)
class _Context:
    """What a value may refer to: the inputs, the stored tensors, the nodes before this one."""

    n_inputs: int
    tensors: frozenset[str]
    n_nodes: int = 0


def _load_node(raw: Any, index: int, context: _Context) -> _Node:
    """Validate one node: an allowlisted op, refs to earlier nodes only, schema-fitting args."""
    fields = _check_fields(raw, _NODE_FIELDS, f"node {index}")
    op = fields["op"]
    if type(op) is not str or not (op in ALLOWED_OPS or op in _INT_OPS or op == GETITEM):
        raise ProgramError(f"node {index}: operation {op!r} is not allowed")
    here = _Context(context.n_inputs, context.tensors, index)
    args = [_load_value(a, here, f"node {index}") for a in _check_list(fields["args"], "args", 64)]
    if type(fields["kwargs"]) is not dict:
        raise ProgramError(f"node {index}: kwargs must be a dict")
    kwargs = {
        _check_name(k, f"node {index} kwarg name"): _load_value(v, here, f"node {index}")
        for k, v in fields["kwargs"].items()
    }
    if op in ALLOWED_OPS:
        _check_schema(ALLOWED_OPS[op], args, kwargs, f"node {index} ({op})")
        _pin_device(ALLOWED_OPS[op], args, kwargs)
        return _Node(op, _SUBSTITUTES.get(op, ALLOWED_OPS[op]), args, kwargs)
    _check_python_op(op, args, kwargs, f"node {index} ({op})")
    return _Node(op, _getitem if op == GETITEM else _int_op(_INT_OPS[op]), args, kwargs)


def _load_value(raw: Any, context: _Context, where: str, depth: int = 0) -> Any:
    """Decode one argument: a scalar, a list of values, or a one-key tag."""
    if depth > MAX_DEPTH:
        raise ProgramError(f"{where}: arguments nest deeper than {MAX_DEPTH}")
    if type(raw) is int and abs(raw) > MAX_INT:
        raise ProgramError(f"{where}: int {raw:.3g} is out of range")
    if type(raw) in _SCALARS:
        return raw
    if type(raw) is list:
        return [_load_value(v, context, where, depth + 1) for v in raw]
    if type(raw) is dict and len(raw) == 1:
        return _load_tag(*next(iter(raw.items())), context, where)
    raise ProgramError(f"{where}: {type(raw).__name__} value {raw!r:.80} is not allowed")


def _load_tag(tag: Any, value: Any, context: _Context, where: str) -> Any:
    """Decode a tagged value; a reference must point at something that exists before it."""
    if type(tag) is not str:
        raise ProgramError(f"{where}: a tag must be a string, got {type(tag).__name__}")
    if tag in _REF_TAGS:
        return _load_ref(tag, value, context, where)
    if tag == "dtype" and type(value) is str and value in _DTYPES:
        return _DTYPES[value]
    if tag == "device" and type(value) is str and _DEVICE_RE.fullmatch(value):
        return _DEVICE
    if tag == "layout" and type(value) is str and value in _LAYOUTS:
        return _LAYOUTS[value]
    if tag == "memory_format" and type(value) is str and value in _MEMORY_FORMATS:
        return _MEMORY_FORMATS[value]
    raise ProgramError(f"{where}: tag {{{tag!r:.40}: {value!r:.40}}} is not allowed")


def _load_ref(tag: str, value: Any, context: _Context, where: str) -> _Ref:
    """A reference to an earlier node, a declared input or a stored tensor."""
    if tag == "ref" and not (type(value) is int and 0 <= value < context.n_nodes):
        raise ProgramError(f"{where}: ref {value!r} does not point to an earlier node")
    if tag == "input" and not (type(value) is int and 0 <= value < context.n_inputs):
        raise ProgramError(f"{where}: input {value!r} is not a declared input")
    if tag == "tensor" and not (type(value) is str and value in context.tensors):
        raise ProgramError(f"{where}: tensor {value!r:.80} is not a stored tensor")
    return _Ref(tag, value)


def _check_schema(op: torch._ops.OpOverload, args: list, kwargs: dict, where: str) -> None:
    """Arguments fit the op's schema: positions and names exist, strings only where it takes one."""
    schema = op._schema.arguments
    positional = [a for a in schema if not a.kwarg_only]
    if len(args) > len(positional):
        raise ProgramError(f"{where}: {len(args)} positional arguments, at most {len(positional)}")
    named = {a.name: a for a in schema}
    taken = {a.name for a in positional[: len(args)]}
    for key in kwargs:
        if key not in named or key in taken:
            raise ProgramError(f"{where}: unexpected keyword argument {key!r:.40}")
    pairs = list(zip(positional, args, strict=False)) + [(named[k], v) for k, v in kwargs.items()]
    for argument, value in pairs:
        # A string elsewhere could pass for a device or a file name; schemas say where it is text.
        if _has_str(value) and str(argument.type) not in ("str", "Optional[str]"):
            raise ProgramError(f"{where}: argument {argument.name!r} does not take a string")


def _pin_device(op: torch._ops.OpOverload, args: list, kwargs: dict) -> None:
    """Give an op that takes a device the program's device wherever the node names none."""
    for position, argument in enumerate(op._schema.arguments):
        # Unpinned, a factory would allocate on the CPU even in the dry run on meta tensors.
        absent = argument.name not in kwargs and (argument.kwarg_only or position >= len(args))
        if "Device" in str(argument.type) and absent:
            kwargs[argument.name] = _DEVICE


def _has_str(value: Any) -> bool:
    """Whether a decoded value is or contains a string."""
    return isinstance(value, str) or (isinstance(value, list) and any(map(_has_str, value)))


def _check_python_op(op: str, args: list, kwargs: dict, where: str) -> None:
    """getitem takes (earlier node, int); int arithmetic takes two ints or refs."""
    if kwargs or len(args) != 2:
        raise ProgramError(f"{where}: takes exactly two positional arguments")
    if op == GETITEM:
        if not (isinstance(args[0], _Ref) and args[0].kind == "ref" and type(args[1]) is int):
            raise ProgramError(f"{where}: takes a node ref and an int index")
        return
    for arg in args:
        if not (type(arg) is int or (isinstance(arg, _Ref) and arg.kind == "ref")):
            raise ProgramError(f"{where}: operands must be ints or node refs")


def _load_output(raw: Any, context: _Context, depth: int = 0) -> Any:
    """Decode the output structure: refs or None in nested {'tuple': [...]}/{'list': [...]}."""
    if depth > MAX_DEPTH:
        raise ProgramError(f"output nests deeper than {MAX_DEPTH}")
    if raw is None:
        return None
    if type(raw) is dict and len(raw) == 1 and type(next(iter(raw))) is str:
        tag, value = next(iter(raw.items()))
        if tag in ("tuple", "list"):
            items = [_load_output(v, context, depth + 1) for v in _check_list(value, "output")]
            return tuple(items) if tag == "tuple" else items
        if tag in _REF_TAGS:
            return _load_ref(tag, value, context, "output")
    raise ProgramError(f"output {raw!r:.80} is not a ref, None, or a tuple/list of them")


def _getitem(container: Any, index: int) -> Any:
    """One result of a multi-output op."""
    if not isinstance(container, (tuple, list)) or not -len(container) <= index < len(container):
        raise ProgramError(f"getitem {index} of a {type(container).__name__}")
    return container[index]


def _int_op(fn: Callable[[int, int], int]) -> Callable[[int, int], int]:
    """Size arithmetic on Python ints, its result kept within int64."""

    def run(a: int, b: int) -> int:
        if type(a) is not int or type(b) is not int:
            raise ProgramError(f"size arithmetic on {type(a).__name__} and {type(b).__name__}")
        result = fn(a, b)
        if abs(result) > MAX_INT:
            raise ProgramError(f"size arithmetic overflowed: {result:.3g}")
        return result

    return run


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


class Program:
    """A validated program: call it on tensors; it runs only allowlisted ATen ops, in order."""

    def __init__(
        self,
        inputs: list[_Input],
        nodes: list[_Node],
        tensors: dict[str, torch.Tensor],
        parameters: list[str],
        output: Any,
        batch: str,
        max_activation: int = MAX_ACTIVATION_ELEMENTS,
    ) -> None:
        self.inputs, self.nodes, self.output, self.batch = inputs, nodes, output, batch
        self.tensors, self.parameter_names = tensors, parameters
        self.max_activation = max_activation
        self.device = torch.device("cpu")
        self._release = _release_plan(nodes, output)
        self._checked: set[tuple] = set()

    @property
    def num_parameters(self) -> int:
        """The element count of the parameter tensors."""
        return sum(self.tensors[name].numel() for name in self.parameter_names)

    @property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each parameter's name and shape."""
        return {name: tuple(self.tensors[name].shape) for name in self.parameter_names}

    def named_parameters(self) -> dict[str, torch.Tensor]:
        """The parameter tensors by name (leaves: set requires_grad_ to get their gradients)."""
        return {name: self.tensors[name] for name in self.parameter_names}

    def requires_grad_(self, requires_grad: bool = True) -> Program:
        """Make the floating-point parameters leaves that collect gradients (or stop that)."""
        for tensor in self.named_parameters().values():
            if tensor.is_floating_point():
                tensor.requires_grad_(requires_grad)
        return self

    def to(self, device: torch.device | str) -> Program:
        """Move the stored tensors to a device; later calls run there."""
        self.device = torch.device(device)
        self.tensors = {
            k: t.detach().to(self.device).requires_grad_(t.requires_grad)
            for k, t in self.tensors.items()
        }
        return self

    def __call__(self, *inputs: torch.Tensor) -> Any:
        """Run the program on inputs matching the declared dtypes and shapes."""
        self._check_inputs(inputs)
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        if key not in self._checked:
            self.check_shapes(tuple(k[0] for k in key))
        moved = tuple(t.to(self.device) for t in inputs)
        return self._execute(moved, self.tensors, self.device, check=False)

    def check_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        """Run the program on meta tensors of these input shapes: every op fits, no tensor is huge."""
        meta = torch.device("meta")
        inputs = tuple(
            torch.empty(shape, dtype=i.dtype, device=meta)
            for shape, i in zip(shapes, self.inputs, strict=True)
        )
        tensors = {k: torch.empty_like(t, device=meta) for k, t in self.tensors.items()}
        with torch.no_grad():
            self._execute(inputs, tensors, meta, check=True)
        if len(self._checked) >= MAX_CHECKED_SHAPES:
            self._checked.clear()
        self._checked.add(tuple((s, i.dtype) for s, i in zip(shapes, self.inputs, strict=True)))

    def _check_inputs(self, inputs: tuple[torch.Tensor, ...]) -> None:
        """As many tensors as declared, each of its declared dtype and (non-dynamic) sizes."""
        if len(inputs) != len(self.inputs):
            raise ProgramError(f"the program takes {len(self.inputs)} inputs, got {len(inputs)}")
        for t, spec in zip(inputs, self.inputs, strict=True):
            if not isinstance(t, torch.Tensor):
                raise ProgramError(f"input {spec.name!r} must be a tensor, got {type(t).__name__}")
            shape = ["*" if d in spec.dynamic_dims else n for d, n in enumerate(spec.shape)]
            fits = t.dim() == len(spec.shape) and all(
                n == "*" or n == m for n, m in zip(shape, t.shape, strict=True)
            )
            if t.dtype != spec.dtype or not fits:
                raise ProgramError(
                    f"input {spec.name!r} should be {spec.dtype} of shape {shape}, got "
                    f"{t.dtype} of shape {list(t.shape)}"
                )

    def _execute(
        self, inputs: tuple, tensors: dict[str, torch.Tensor], device: torch.device, check: bool
    ) -> Any:
        """Run the nodes in order; with check, refuse any result over the activation budget."""
        values: list[Any] = [None] * len(self.nodes)

        def resolve(value: Any) -> Any:
            if isinstance(value, _Ref):
                source = (
                    values if value.kind == "ref" else inputs if value.kind == "input" else tensors
                )
                return source[value.key]
            if value is _DEVICE:
                return device
            if type(value) is list:
                return [resolve(v) for v in value]
            return value

        for k, node in enumerate(self.nodes):
            values[k] = _run_node(node, k, resolve)
            if check:
                _check_result(values[k], k, node.op, self.max_activation)
            for j in self._release[k]:
                values[j] = None  # why: free activations early on large evaluation batches
        return _build_output(self.output, resolve)


def _run_node(node: _Node, index: int, resolve: Callable[[Any], Any]) -> Any:
    """Call a node's function on its resolved arguments, naming the node in any error."""
    args = [resolve(a) for a in node.args]
    kwargs = {k: resolve(v) for k, v in node.kwargs.items()}
    try:
        return node.fn(*args, **kwargs)
    except ProgramError as e:
        raise ProgramError(f"node {index} ({node.op}): {e}") from None
    except (ArithmeticError, LookupError, NotImplementedError, RuntimeError, TypeError) as e:
        raise ProgramError(f"node {index} ({node.op}) failed: {e}") from e


def _check_result(value: Any, index: int, op: str, limit: int) -> None:
    """A node result is a tensor within the budget, an int, None, or a tuple/list of those."""
    if isinstance(value, torch.Tensor):
        if value.numel() > limit:
            raise ProgramError(f"node {index} ({op}) makes {value.numel()} elements, over {limit}")
    elif isinstance(value, (tuple, list)):
        for item in value:
            _check_result(item, index, op, limit)
    elif value is not None and type(value) is not int:
        raise ProgramError(f"node {index} ({op}) returned a {type(value).__name__}")


def _release_plan(nodes: list[_Node], output: Any) -> list[list[int]]:
    """For each node, the earlier results it is the last to use (never those the output needs)."""
    last = {k: k for k in range(len(nodes))}  # why: a result nothing uses goes at once
    for k, node in enumerate(nodes):
        for ref in _refs(node.args) + _refs(list(node.kwargs.values())):
            last[ref] = k
    kept = set(_refs(output))
    plan: list[list[int]] = [[] for _ in nodes]
    for ref, k in last.items():
        if ref not in kept:
            plan[k].append(ref)
    return plan


def _refs(value: Any) -> list[int]:
    """The node indices a decoded value refers to."""
    if isinstance(value, _Ref):
        return [value.key] if value.kind == "ref" else []
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _refs(v)]
    return []


def _build_output(structure: Any, resolve: Callable[[Any], Any]) -> Any:
    """The program's result in its declared nesting of tuples and lists."""
    if isinstance(structure, tuple):
        return tuple(_build_output(s, resolve) for s in structure)
    if isinstance(structure, list):
        return [_build_output(s, resolve) for s in structure]
    return resolve(structure)
