"""Reading and validating an ONNX file before anything is built from it.

Every check here runs on the protobuf without materializing tensors, so hostile files (truncated, cyclic, huge
declared shapes with little data) are refused in seconds with one message naming the problem and the place.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from ..errors import HwgenError

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
KNOWN_DOMAINS = ("", "ai.onnx", *QONNX_DOMAINS)
MAX_ELEMENTS = 1 << 31     # refuse any single tensor declaring more elements than this

_ITEMSIZE = {TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8, TensorProto.FLOAT16: 2, TensorProto.INT8: 1,
             TensorProto.UINT8: 1, TensorProto.INT16: 2, TensorProto.UINT16: 2, TensorProto.INT32: 4,
             TensorProto.UINT32: 4, TensorProto.INT64: 8, TensorProto.UINT64: 8, TensorProto.BOOL: 1}
_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


def read_model(path: str | Path) -> onnx.ModelProto:
    """Load and validate ``path``; raise :class:`HwgenError` naming the first problem found."""
    path = Path(path)
    if not path.is_file():
        raise HwgenError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise HwgenError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise HwgenError(f"{path}: not a valid ONNX model (protobuf: {_first_line(exc)})") from exc
    if not model.graph.node:
        raise HwgenError(f"{path}: not an ONNX model or an empty graph (no nodes)")
    validate(model)
    return model


def validate(model: onnx.ModelProto) -> None:
    """Structural checks: domains, tensor data sizes, dangling inputs, cycles, input shapes, then onnx.checker."""
    graph = model.graph
    for node in graph.node:
        if node.domain not in KNOWN_DOMAINS:
            raise HwgenError(f"node '{node.name}' ({node.op_type}): op in unknown domain '{node.domain}'; "
                             f"hwgen reads standard ONNX and QONNX ({QONNX_DOMAINS[0]})")
    for init in graph.initializer:
        check_tensor_data(init, f"initializer '{init.name}'")
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                check_tensor_data(attr.t, f"node '{node.name}' ({node.op_type}) attribute '{attr.name}'")
    _check_connectivity(graph)
    for inp in data_inputs(graph):
        _check_input(inp)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise HwgenError(f"model fails onnx.checker: {_first_line(exc)}") from exc


def data_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (brevitas lists initializers among inputs)."""
    inits = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def check_tensor_data(tensor: TensorProto, where: str) -> None:
    """Refuse tensors whose declared shape does not match the data they hold (before allocating anything)."""
    if any(d < 0 for d in tensor.dims):
        raise HwgenError(f"{where}: negative dimension in shape {tuple(tensor.dims)}")
    declared = int(np.prod([int(d) for d in tensor.dims], dtype=object)) if tensor.dims else 1
    if tensor.data_location == TensorProto.EXTERNAL:
        raise HwgenError(f"{where}: stored in an external data file; save the model with its weights inside")
    if tensor.HasField("raw_data"):
        itemsize = _ITEMSIZE.get(tensor.data_type)
        if itemsize is None:
            raise HwgenError(f"{where}: unsupported data type {TensorProto.DataType.Name(tensor.data_type)}")
        held = len(tensor.raw_data) // itemsize
    else:
        held = max(len(getattr(tensor, f)) for f in _TYPED_FIELDS)
        if tensor.data_type in (TensorProto.FLOAT16, TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16,
                                TensorProto.UINT16, TensorProto.BOOL) and tensor.int32_data:
            held = len(tensor.int32_data)
    if held != declared:
        raise HwgenError(f"{where}: declared shape {tuple(tensor.dims)} ({declared} elements) but it holds "
                         f"{held} elements of data")
    if declared > MAX_ELEMENTS:
        raise HwgenError(f"{where}: declared shape {tuple(tensor.dims)} has {declared} elements, beyond hwgen's "
                         f"limit of {MAX_ELEMENTS}")


def _check_connectivity(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producers: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            if out in producers or out in available:
                raise HwgenError(f"node '{node.name}' ({node.op_type}): output '{out}' is produced twice")
            producers[out] = index
    for node in graph.node:
        for name in node.input:
            if name not in available and name not in producers:
                raise HwgenError(f"node '{node.name}' ({node.op_type}): input '{name}' is missing (no node, "
                                 "initializer or graph input produces it)")
    for out in graph.output:
        if out.name not in available and out.name not in producers:
            raise HwgenError(f"graph output '{out.name}' is produced by no node")
    order = topological_order(graph)
    if order is None:
        stuck = [graph.node[i] for i in _cycle_nodes(graph)]
        names = ", ".join(f"'{n.name}' ({n.op_type})" for n in stuck[:4])
        raise HwgenError(f"graph has a cycle through nodes {names}")


def topological_order(graph: onnx.GraphProto) -> list[int] | None:
    """Node indices in dependency order, or None if the graph has a cycle."""
    order = _kahn(graph)
    return order if len(order) == len(graph.node) else None


def _cycle_nodes(graph: onnx.GraphProto) -> list[int]:
    ordered = set(_kahn(graph))
    return [i for i in range(len(graph.node)) if i not in ordered]


def _kahn(graph: onnx.GraphProto) -> list[int]:
    """Kahn's algorithm: the nodes that can be ordered (all of them unless there is a cycle)."""
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output}
    deps = [{producers[n] for n in node.input if n in producers} for node in graph.node]
    users: dict[int, list[int]] = {i: [] for i in range(len(deps))}
    for i, ds in enumerate(deps):
        for d in ds:
            users[d].append(i)
    remaining = [len(ds) for ds in deps]
    ready = [i for i, r in enumerate(remaining) if r == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    return order


def _check_input(inp: onnx.ValueInfoProto) -> None:
    ttype = inp.type.tensor_type
    if not inp.type.HasField("tensor_type"):
        raise HwgenError(f"graph input '{inp.name}': not a tensor")
    if ttype.elem_type != TensorProto.FLOAT:
        raise HwgenError(f"graph input '{inp.name}': element type "
                         f"{TensorProto.DataType.Name(ttype.elem_type)}, hwgen takes float32 inputs")
    if not ttype.HasField("shape") or len(ttype.shape.dim) < 2:
        raise HwgenError(f"graph input '{inp.name}': needs a static shape with a batch axis, e.g. (1, 64)")
    for axis, dim in enumerate(ttype.shape.dim):
        if axis > 0 and not (dim.HasField("dim_value") and dim.dim_value > 0):
            label = dim.dim_param or "?"
            raise HwgenError(f"graph input '{inp.name}': dimension {axis} is dynamic ('{label}'); only the batch "
                             "axis (0) may be dynamic")


def input_shape(inp: onnx.ValueInfoProto) -> tuple[int, ...]:
    """Static shape of a data input with the batch axis set to 1."""
    return (1,) + tuple(int(d.dim_value) for d in inp.type.tensor_type.shape.dim[1:])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
