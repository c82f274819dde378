"""ONNX (QONNX, QCDQ, onnxruntime QDQ) → hwgen integer IR.

The importer interprets the ONNX graph abstractly, in topological order. Every ONNX tensor becomes one of:

- :class:`Const` — a constant (initializer, Constant node, or anything computed only from constants);
- :class:`QConst` — quantized constant codes with scale and zero point (weights, quantized biases);
- :class:`FloatIn` — the float graph input with the host-side float ops applied to it so far;
- :class:`IntVal` — an integer IR tensor plus the :class:`~hwgen.ir.Chain` of float32 ops that says what real
  value it stands for (the chain is empty right after a quantizer: the tensor holds plain codes);
- :class:`Codes` — a ``QuantizeLinear`` output waiting for its ``Clip``/``DequantizeLinear``.

Quantizers on the float input become the host ``Quantize`` node; linear ops on codes become exact integer
``MatMul``/``Conv``/``SumPool``/``AddScaled`` nodes; float elementwise ops extend the chain; a quantizer on an
``IntVal`` becomes a ``Requant`` node (later turned into thresholds). Every unsupported node is collected and
reported at once.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import HwgenError, NodeIssue, UnsupportedModelError
from ..ir import FLOAT32, BipolarType, Chain, FloatOp, Graph, IntType, Node, Quantizer, Tensor, quant_type
from ..ir.numerics import F32
from ..passes.analysis import Bounds, dtype_of, node_bounds
from .read import data_inputs, input_shape, topological_order

log = logging.getLogger(__name__)

MAX_ACT_BITS = 16
MAX_CONST_BITS = 32


class Unsupported(Exception):
    """Raised by an op handler: the node cannot be imported (``why``), and what to do about it (``hint``)."""

    def __init__(self, why: str, hint: str = ""):
        super().__init__(why)
        self.why, self.hint = why, hint


# ---------------------------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclass(frozen=True)
class QConst:
    codes: np.ndarray          # int64
    scale: np.ndarray          # float32, broadcastable to codes
    zero_point: np.ndarray     # float32, broadcastable to codes
    dtype: object
    axis: int | None           # axis of per-channel scale/zero point, None if per tensor
    bipolar: bool = False      # BipolarQuant: value = code * scale

    def dequantized(self) -> np.ndarray:
        if self.bipolar:
            return (self.codes.astype(F32) * self.scale).astype(F32)
        return ((self.codes.astype(F32) - self.zero_point).astype(F32) * self.scale).astype(F32)


@dataclass(frozen=True)
class FloatIn:
    tensor: str
    shape: tuple[int, ...]
    ops: tuple[FloatOp, ...] = ()


@dataclass(frozen=True)
class IntVal:
    tensor: str
    shape: tuple[int, ...]
    chain: Chain
    axis: int | None
    bounds: Bounds

    @property
    def pure(self) -> bool:
        return not self.chain.ops


@dataclass(frozen=True)
class Codes:
    source: FloatIn | IntVal
    quantizer: Quantizer
    axis: int | None
    names: tuple[str, ...]     # the ONNX tensors holding these codes (QuantizeLinear output, Clip output)


class Poison:
    """Output of a node that could not be imported; downstream nodes are skipped silently."""


POISON = Poison()
Value = Const | QConst | FloatIn | IntVal | Codes | Poison


# ---------------------------------------------------------------------------------------------------- helpers
def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _const(value: Value, what: str) -> np.ndarray:
    if isinstance(value, Const):
        return value.value
    if isinstance(value, QConst):
        return value.dequantized()
    raise Unsupported(f"{what} must be a constant")


def _channel_axis(param: np.ndarray, ndim: int, what: str, default_axis: int | None = None) -> int | None:
    """The axis a broadcastable per-channel parameter varies along (None if it is per tensor)."""
    param = np.asarray(param)
    if param.size == 1:
        return None
    if param.ndim == 1 and default_axis is not None:
        return default_axis
    if param.ndim == 1:
        return ndim - 1
    axes = [i for i, d in enumerate(param.shape) if d != 1]
    if len(axes) != 1:
        raise Unsupported(f"{what} of shape {param.shape} varies along more than one axis",
                          "use per-tensor or per-channel parameters")
    return axes[0] + (ndim - param.ndim)


def _flat(param: np.ndarray) -> np.ndarray:
    """Per-tensor parameter → shape (); per-channel → shape (C,)."""
    param = np.asarray(param)
    return param.reshape(()) if param.size == 1 else param.reshape(-1)


def _is_pow2(value: np.ndarray) -> bool:
    value = np.asarray(value, np.float64)
    if np.any(value == 0) or not np.all(np.isfinite(value)):
        return False
    mantissa, _ = np.frexp(np.abs(value))
    return bool(np.all(mantissa == 0.5))


def _check_scale(scale: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(scale)):
        raise Unsupported(f"{what} has a NaN or infinite scale", "re-export the model with finite scales")
    if np.any(scale <= 0):
        raise Unsupported(f"{what} has a zero or negative scale ({float(np.min(scale)):g})",
                          "scales must be positive")


def _check_zero_point(zp: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(zp)) or not np.all(zp == np.round(zp)):
        raise Unsupported(f"{what} has a non-integer zero point", "zero points must be integers")


def _bits(value: np.ndarray, limit: int, what: str) -> int:
    bits = np.asarray(value, np.float64).reshape(-1)
    if bits.size != 1 or not np.isfinite(bits[0]) or bits[0] != round(bits[0]) or not 1 <= bits[0] <= limit:
        shown = bits[0] if bits.size == 1 else bits.tolist()
        raise Unsupported(f"{what} bit width {shown:g} is out of range 1..{limit}" if bits.size == 1
                          else f"{what} bit width {shown} is not a scalar", f"use 1..{limit} bits")
    return int(bits[0])


def _axis_after_reshape(old: tuple[int, ...], new: tuple[int, ...], axis: int | None) -> int | None:
    if axis is None:
        return None
    prefix, channels = math.prod(old[:axis]), old[axis]
    for b in range(len(new)):
        if math.prod(new[:b]) == prefix and new[b] == channels:
            return b
    raise Unsupported(f"reshape {old} → {new} splits or merges the per-channel axis {axis}",
                      "reshape only after the last per-channel operation")


def _pair(values, default: int) -> tuple[int, int]:
    values = list(values) if values is not None else [default, default]
    if len(values) != 2:
        raise Unsupported(f"only 2-D spatial ops are supported (got {len(values)}-D)")
    return int(values[0]), int(values[1])


# ---------------------------------------------------------------------------------------------------- importer
@dataclass
class Importer:
    model: onnx.ModelProto
    nodes: list[Node] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    issues: list[NodeIssue] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)
    _node: onnx.NodeProto | None = None

    def run(self) -> Graph:
        graph = self.model.graph
        inits = {i.name: Const(numpy_helper.to_array(i)) for i in graph.initializer}
        self.values.update(inits)
        inputs = data_inputs(graph)
        if len(inputs) != 1:
            raise HwgenError(f"model has {len(inputs)} data inputs ({', '.join(i.name for i in inputs)}); "
                             "hwgen takes exactly one")
        inp = inputs[0]
        shape = input_shape(inp)
        self.tensors[inp.name] = Tensor(inp.name, shape, FLOAT32, source=inp.name)
        self.values[inp.name] = FloatIn(inp.name, shape)
        reported = self._precheck(graph)
        order = topological_order(graph)
        assert order is not None  # read.validate refused cycles
        for index in order:
            node = graph.node[index]
            if index in reported:
                continue
            self._node = node
            ins = [self.values[n] if n else None for n in node.input]
            if any(isinstance(v, Poison) for v in ins):
                outs: list[Value] = [POISON] * len(node.output)
            else:
                try:
                    outs = self._import_node(node, ins)
                except Unsupported as exc:
                    self.issues.append(NodeIssue(node.name or f"#{index}", node.op_type, exc.why, exc.hint))
                    outs = [POISON] * len(node.output)
            for name, value in zip(node.output, outs):
                self.values[name] = value
        outputs = [self._output(o.name) for o in graph.output]
        if self.issues:
            raise UnsupportedModelError(self.issues)
        return Graph(inputs=(inp.name,), outputs=tuple(outputs), nodes=tuple(self.nodes), tensors=self.tensors,
                     name=graph.name or "model")

    def _precheck(self, graph: onnx.GraphProto) -> set[int]:
        """Report unknown op types even where an earlier problem poisons their inputs; their indices."""
        reported = set()
        for index, node in enumerate(graph.node):
            if node.op_type not in HANDLERS and node.op_type not in FOLDABLE:
                self.issues.append(NodeIssue(node.name or f"#{index}", node.op_type, "op type is not supported",
                                             f"supported: {', '.join(sorted(HANDLERS))}"))
                self.values.update({o: POISON for o in node.output})
                reported.add(index)
        return reported

    # -------------------------------------------------------------------------------------------- emission
    @property
    def node_name(self) -> str:
        return self._node.name if self._node is not None and self._node.name else "node"

    def fresh(self, hint: str) -> str:
        base = f"{self.node_name}:{hint}"
        name, k = base, 1
        while name in self.tensors or name in self.values:
            k += 1
            name = f"{base}#{k}"
        return name

    def emit(self, op: str, inputs: list[str], attrs: dict, shape: tuple[int, ...], axis: int | None,
             in_bounds: list[Bounds], hint: str, source: str | None = None, dtype=None) -> tuple[str, Bounds]:
        out = self.fresh(hint)
        node = Node(op, self.node_name, tuple(inputs), (out,), attrs, (self._node.op_type,) if self._node else ())
        bounds = node_bounds(node, in_bounds, dtype)
        self.tensors[out] = Tensor(out, shape, dtype if dtype is not None else dtype_of(bounds), axis, source)
        self.nodes.append(node)
        return out, bounds

    def quantize(self, src: FloatIn | IntVal, q: Quantizer, axis: int | None, names: tuple[str, ...]) -> IntVal:
        """Host quantizer on the float input, or a requantizer on an integer tensor."""
        value_axis = axis if axis is not None else src.axis if isinstance(src, IntVal) else None
        if q.channels > 1 and value_axis is None:
            raise Unsupported("per-channel quantizer on a tensor without a channel axis")
        source = names[-1]
        if isinstance(src, FloatIn):
            out, bounds = self.emit("Quantize", [src.tensor], {"pre": src.ops, "quantizer": q, "axis": value_axis,
                                                                "shape": src.shape},
                                    src.shape, value_axis, [], "q", source, q.dtype)
        else:
            if src.chain.channels > 1 and src.axis != value_axis:
                raise Unsupported("quantizer axis differs from the tensor's channel axis")
            out, bounds = self.emit("Requant", [src.tensor], {"chain": src.chain, "quantizer": q,
                                                               "axis": value_axis}, src.shape, value_axis,
                                    [src.bounds], "rq", source, q.dtype)
        scale = np.asarray(q.value_scale, np.float64)
        zp = np.asarray(q.value_zero_point)
        if not np.all(zp == np.round(zp)):
            raise Unsupported("output zero point is not an integer")
        zp_int = np.asarray(np.round(zp), np.int64)
        chain = Chain(_flat(scale), zero_point=_flat(zp_int))
        return IntVal(out, src.shape, chain, value_axis, bounds)

    def codes_of(self, value: Value, what: str, per_tensor: bool = True) -> IntVal:
        """An integer tensor of plain codes, as an exact integer op needs its operand."""
        if isinstance(value, Codes):
            raise Unsupported(f"{what} is a QuantizeLinear output without DequantizeLinear")
        if not isinstance(value, IntVal):
            raise Unsupported(f"{what} is not quantized",
                              "put a quantizer (brevitas QuantIdentity / QuantizeLinear) in front of it")
        chain = value.chain
        ops = list(chain.ops)
        scale = np.asarray(chain.scale, np.float64)
        while ops and ops[0].kind in ("mul", "div") and _is_pow2(ops[0].params[0]) and \
                np.asarray(ops[0].params[0]).size == 1:
            factor = float(np.asarray(ops[0].params[0]).reshape(()))
            scale = scale * factor if ops[0].kind == "mul" else scale / factor
            ops.pop(0)
        if ops:
            raise Unsupported(f"{what} is not quantized: float ops ({', '.join(o.kind for o in ops)}) follow its "
                              "last quantizer", "add a quantizer (e.g. QuantIdentity) before this node")
        if per_tensor and scale.size > 1:
            raise Unsupported(f"{what} has per-channel scales, which cannot be factored out of a sum",
                              "quantize activations per tensor")
        zp = np.asarray(chain.zero_point)
        if per_tensor and zp.size > 1:
            raise Unsupported(f"{what} has per-channel zero points", "quantize activations per tensor")
        if np.any(scale <= 0):
            raise Unsupported(f"{what} has a non-positive scale")
        return replace(value, chain=Chain(_flat(scale), _flat(zp)))

    # -------------------------------------------------------------------------------------------- outputs
    def _output(self, name: str) -> str:
        value = self.values.get(name)
        if isinstance(value, Poison):
            return name
        if isinstance(value, Codes):
            value = self.quantize(value.source, value.quantizer, value.axis, value.names)
        if not isinstance(value, IntVal):
            kind = "a constant" if isinstance(value, (Const, QConst)) else "not quantized"
            self.issues.append(NodeIssue(name, "output", f"graph output is {kind}",
                                         "hwgen needs at least one quantized layer between input and output"))
            return name
        self._node = None
        node = Node("Dequantize", f"output:{name}", (value.tensor,), (name,),
                    {"chain": value.chain, "axis": value.axis}, ("output",))
        self.tensors[name] = Tensor(name, value.shape, FLOAT32, value.axis, name)
        self.nodes.append(node)
        return name

    # -------------------------------------------------------------------------------------------- dispatch
    def _import_node(self, node: onnx.NodeProto, ins: list[Value | None]) -> list[Value]:
        handler = HANDLERS.get(node.op_type)
        real = [v for v in ins if v is not None]
        all_const = all(isinstance(v, Const) for v in real)
        if node.op_type in FOLDABLE and all_const:
            return self._fold(node, ins)
        if handler is None:
            raise Unsupported("op type is not supported on non-constant inputs")
        return handler(self, node, ins, _attrs(node))

    def _fold(self, node: onnx.NodeProto, ins: list[Value | None]) -> list[Value]:
        from onnx.reference import ReferenceEvaluator

        feeds = {n: v.value for n, v in zip(node.input, ins) if isinstance(v, Const)}
        graph = onnx.helper.make_graph(
            [node], "fold", [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(
                feeds[n].dtype), feeds[n].shape) for n in feeds],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output])
        opsets = [o for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        model = onnx.helper.make_model(graph, opset_imports=opsets or [onnx.helper.make_opsetid("", 17)])
        try:
            results = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:
            raise Unsupported(f"could not evaluate on constants ({str(exc).splitlines()[0][:120]})") from exc
        return [Const(np.asarray(r)) for r in results]


Handler = Callable[[Importer, onnx.NodeProto, list, dict], list]
HANDLERS: dict[str, Handler] = {}
# Standard ops evaluated at import time when every input is constant (shape arithmetic, weight transforms).
FOLDABLE = {"Constant", "Identity", "Cast", "Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Reshape",
            "Transpose", "Flatten", "Mul", "Div", "Add", "Sub", "Neg", "Clip", "Slice", "Sqrt", "Pow", "Reciprocal",
            "ConstantOfShape", "Range", "Expand", "Max", "Min", "Abs", "Exp", "Log", "Floor", "Ceil", "Round"}


def handles(*ops: str):
    def register(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return register


# ---------------------------------------------------------------------------------------------------- quantizers
def _quant_target(imp: Importer, x: Value, q: Quantizer, axis: int | None, names: tuple[str, ...]) -> Value:
    if isinstance(x, Const):
        value = np.asarray(x.value, F32)
        codes = q.quantize(value, axis)
        shape_axis = axis
        scale = np.asarray(q.value_scale) if shape_axis is None else \
            np.asarray(q.value_scale).reshape([-1 if i == shape_axis else 1 for i in range(value.ndim)])
        zp = np.asarray(q.value_zero_point) if shape_axis is None else \
            np.asarray(q.value_zero_point).reshape([-1 if i == shape_axis else 1 for i in range(value.ndim)])
        return QConst(codes, scale.astype(F32), zp.astype(F32), q.dtype, axis,
                      bipolar=q.style == "bipolar" and not q.divide)
    if isinstance(x, (FloatIn, IntVal)):
        return imp.quantize(x, q, axis, names)
    if isinstance(x, QConst):
        return _quant_target(imp, Const(x.dequantized()), q, axis, names)
    raise Unsupported("quantizer input is a QuantizeLinear output without DequantizeLinear")


def _ndim(x: Value) -> int:
    return len(_shape_of(x))


@handles("Quant", "IntQuant")
def _quant(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    scale = np.asarray(_const(ins[1], "scale"), F32)
    zp = np.asarray(_const(ins[2], "zero point"), F32)
    what = "Quant"
    _check_scale(scale, what)
    _check_zero_point(zp, what)
    is_const = isinstance(x, (Const, QConst))
    bits = _bits(_const(ins[3], "bit width"), MAX_CONST_BITS if is_const else MAX_ACT_BITS,
                 "weight" if is_const else "activation")
    signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
    rounding = attrs.get("rounding_mode", b"ROUND")
    rounding = rounding.decode() if isinstance(rounding, bytes) else rounding
    ndim = _ndim(x)
    axis = _channel_axis(np.broadcast_to(scale, np.broadcast_shapes(scale.shape, zp.shape)) if zp.size > 1
                         else scale, ndim, "Quant scale")
    dtype = quant_type(bits, signed, narrow)
    style = "bipolar" if isinstance(dtype, BipolarType) else "qonnx"
    q = Quantizer(style, _flat(scale), _flat(zp), dtype, rounding.upper())
    return [_quant_target(imp, x, q, axis, (node.output[0],))]


@handles("BipolarQuant")
def _bipolar_quant(imp: Importer, node, ins, attrs) -> list[Value]:
    scale = np.asarray(_const(ins[1], "scale"), F32)
    _check_scale(scale, "BipolarQuant")
    axis = _channel_axis(scale, _ndim(ins[0]), "BipolarQuant scale")
    q = Quantizer("bipolar", _flat(scale), np.zeros((), F32), BipolarType(), divide=False)
    return [_quant_target(imp, ins[0], q, axis, (node.output[0],))]


@handles("Trunc")
def _trunc(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    if not isinstance(x, IntVal):
        raise Unsupported("Trunc input must be an integer tensor (an accumulator or pool sum)")
    scale = np.asarray(_const(ins[1], "scale"), F32)
    zp = np.asarray(_const(ins[2], "zero point"), F32)
    _check_scale(scale, "Trunc")
    _check_zero_point(zp, "Trunc")
    in_bits = _bits(_const(ins[3], "input bit width"), 64, "Trunc input")
    rounding = attrs.get("rounding_mode", b"FLOOR")
    rounding = (rounding.decode() if isinstance(rounding, bytes) else rounding).upper()
    signed = bool(np.min(x.bounds[0]) < 0)
    if len(node.input) >= 6:      # Trunc v2: explicit output scale, clamped
        out_scale = np.asarray(_const(ins[4], "output scale"), F32)
        _check_scale(out_scale, "Trunc output")
        out_bits = _bits(_const(ins[5], "output bit width"), MAX_ACT_BITS, "activation")
        signed = bool(attrs.get("signed", int(signed)))
        div = float(2.0 ** np.round(np.log2(np.float64(out_scale.reshape(-1)[0]) / np.float64(scale.reshape(-1)[0]))))
        dtype = quant_type(out_bits, signed, bool(attrs.get("narrow", 0)))
        q = Quantizer("trunc", _flat(scale), _flat(zp), dtype, rounding, trunc_div=div, clamp=True,
                      out_scale=_flat(out_scale), out_zero_point=_flat((zp / F32(div)).astype(F32)))
    else:
        out_bits = _bits(_const(ins[4], "output bit width"), MAX_ACT_BITS, "activation")
        div = float(2 ** (in_bits - out_bits))
        q = Quantizer("trunc", _flat(scale), _flat(zp), IntType(out_bits, signed), rounding, trunc_div=div,
                      clamp=False)
    axis = _channel_axis(scale, len(x.shape), "Trunc scale")
    return [imp.quantize(x, q, axis, (node.output[0],))]


def _qdq_params(ins, attrs, ndim: int, what: str) -> tuple[np.ndarray, np.ndarray, object, int | None]:
    scale = np.asarray(_const(ins[1], f"{what} scale"), F32)
    _check_scale(scale, what)
    if len(ins) > 2 and ins[2] is not None:
        zp_raw = np.asarray(_const(ins[2], f"{what} zero point"))
    else:
        zp_raw = np.zeros((), np.uint8)
    if zp_raw.dtype.kind not in "iu":
        raise Unsupported(f"{what} zero point has type {zp_raw.dtype}, expected an integer type")
    info = np.iinfo(zp_raw.dtype)
    dtype = IntType(info.bits, info.min < 0)
    axis = None
    if scale.size > 1:
        axis = int(attrs.get("axis", 1))
        axis = axis + ndim if axis < 0 else axis
    return _flat(scale), _flat(zp_raw.astype(F32)), dtype, axis


@handles("QuantizeLinear")
def _quantize_linear(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    scale, zp, dtype, axis = _qdq_params(ins, attrs, _ndim(x), "QuantizeLinear")
    q = Quantizer("qdq", scale, zp, dtype)
    if isinstance(x, (Const, QConst)):
        value = x.value if isinstance(x, Const) else x.dequantized()
        return [Const(q.quantize(np.asarray(value, F32), axis))]
    if isinstance(x, (FloatIn, IntVal)):
        return [Codes(x, q, axis, (node.output[0],))]
    raise Unsupported("QuantizeLinear input is already quantized codes")


@handles("DequantizeLinear")
def _dequantize_linear(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    scale, zp, dtype, axis = _qdq_params(ins, attrs, _ndim(x), "DequantizeLinear")
    if isinstance(x, Const):
        codes = np.asarray(x.value)
        if codes.dtype.kind not in "iu":
            raise Unsupported("DequantizeLinear of a float constant")
        shape = [-1 if i == axis else 1 for i in range(codes.ndim)]
        info = np.iinfo(codes.dtype)
        return [QConst(codes.astype(np.int64), scale.reshape(shape if axis is not None else ()),
                       zp.reshape(shape if axis is not None else ()), IntType(info.bits, info.min < 0), axis)]
    if isinstance(x, Codes):
        q = x.quantizer
        if not (np.array_equal(q.scale, scale) and np.array_equal(q.zero_point, zp)):
            raise Unsupported("DequantizeLinear scale or zero point differs from its QuantizeLinear",
                              "use matching QuantizeLinear/DequantizeLinear pairs")
        return [imp.quantize(x.source, q, x.axis, x.names)]
    raise Unsupported("DequantizeLinear input must be a QuantizeLinear output or an integer constant")


# ---------------------------------------------------------------------------------------------------- linear ops
def _weight(value: Value, what: str) -> QConst:
    if isinstance(value, QConst):
        if value.bipolar:
            return replace(value, zero_point=np.zeros((), F32), bipolar=False)
        return value
    if isinstance(value, Const):
        raise Unsupported(f"{what} are not quantized", "quantize weights (brevitas QuantLinear/QuantConv2d, "
                                                       "or hwgen quantize)")
    raise Unsupported(f"{what} must be constant (dynamic weights are not supported)")


def _matmul_node(imp: Importer, x: IntVal, w: QConst, out_axis_channels: int, what: str,
                 weight_channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights (codes minus zero point) and the float64 per-output-channel scale sx*sw."""
    if w.axis is not None and w.axis != weight_channel_axis:
        raise Unsupported(f"{what} are quantized per channel along the reduction axis",
                          "quantize weights per output channel")
    zp = np.asarray(w.zero_point)
    _check_zero_point(zp, f"{what}")
    weight = w.codes - np.round(zp).astype(np.int64)
    scale = np.float64(np.asarray(x.chain.scale)) * np.asarray(w.scale, np.float64).reshape(-1)
    return weight, _flat(scale)


@handles("Gemm")
def _gemm(imp: Importer, node, ins, attrs) -> list[Value]:
    if attrs.get("transA", 0):
        raise Unsupported("transA=1 is not supported")
    x = imp.codes_of(ins[0], "Gemm input A")
    w = _weight(ins[1], "Gemm weights (input B)")
    if len(x.shape) != 2 or w.codes.ndim != 2:
        raise Unsupported(f"Gemm needs 2-D operands, got {x.shape} and {w.codes.shape}")
    if attrs.get("transB", 0):
        w = replace(w, codes=w.codes.T, scale=np.asarray(w.scale).T, zero_point=np.asarray(w.zero_point).T,
                    axis=None if w.axis is None else 1 - w.axis)
    if w.codes.shape[0] != x.shape[1]:
        raise Unsupported(f"Gemm shapes do not match: {x.shape} × {w.codes.shape}")
    weight, scale = _matmul_node(imp, x, w, w.codes.shape[1], "Gemm weights", 1)
    shape = (x.shape[0], weight.shape[1])
    out, bounds = imp.emit("MatMul", [x.tensor], {"weight": weight, "x_zero_point": int(x.chain.zero_point)},
                           shape, 1, [x.bounds], "acc")
    val = IntVal(out, shape, Chain(scale), 1, bounds)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if alpha != 1.0:
        val = replace(val, chain=val.chain.then(FloatOp("mul", (np.asarray(alpha, F32),))))
    if len(ins) > 2 and ins[2] is not None:
        bias = np.asarray(_const(ins[2], "Gemm bias C"), F32)
        if beta != 1.0:
            bias = (bias * F32(beta)).astype(F32)
        val = _add_const(val, bias, "Gemm bias")
    return [val]


@handles("MatMul")
def _matmul(imp: Importer, node, ins, attrs) -> list[Value]:
    x = imp.codes_of(ins[0], "MatMul input A")
    w = _weight(ins[1], "MatMul weights (input B)")
    if w.codes.ndim != 2 or w.codes.shape[0] != x.shape[-1]:
        raise Unsupported(f"MatMul needs a 2-D weight matching the input's last axis, got {x.shape} × "
                          f"{w.codes.shape}")
    weight, scale = _matmul_node(imp, x, w, w.codes.shape[1], "MatMul weights", 1)
    shape = x.shape[:-1] + (weight.shape[1],)
    out, bounds = imp.emit("MatMul", [x.tensor], {"weight": weight, "x_zero_point": int(x.chain.zero_point)},
                           shape, len(shape) - 1, [x.bounds], "acc")
    return [IntVal(out, shape, Chain(scale), len(shape) - 1, bounds)]


@handles("Conv")
def _conv(imp: Importer, node, ins, attrs) -> list[Value]:
    x = imp.codes_of(ins[0], "Conv input")
    w = _weight(ins[1], "Conv weights")
    if len(x.shape) != 4 or w.codes.ndim != 4:
        raise Unsupported(f"only 2-D convolution (NCHW) is supported, got input {x.shape}")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise Unsupported("auto_pad is not supported", "export with explicit pads")
    groups = int(attrs.get("group", 1))
    m, cg, kh, kw = w.codes.shape
    if x.shape[1] != cg * groups or m % groups:
        raise Unsupported(f"Conv channels do not match: input {x.shape[1]}, weight {w.codes.shape}, "
                          f"group {groups}")
    strides = _pair(attrs.get("strides"), 1)
    dilations = _pair(attrs.get("dilations"), 1)
    pads = tuple(int(p) for p in attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4:
        raise Unsupported("only 2-D padding is supported")
    weight, scale = _matmul_node(imp, x, w, m, "Conv weights", 0)
    oh = (x.shape[2] + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (x.shape[3] + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    shape = (x.shape[0], m, oh, ow)
    out, bounds = imp.emit("Conv", [x.tensor], {"weight": weight, "x_zero_point": int(x.chain.zero_point),
                                                 "strides": strides, "pads": pads, "dilations": dilations,
                                                 "groups": groups}, shape, 1, [x.bounds], "acc")
    val = IntVal(out, shape, Chain(scale), 1, bounds)
    if len(ins) > 2 and ins[2] is not None:
        val = _add_const(val, np.asarray(_const(ins[2], "Conv bias"), F32).reshape(-1), "Conv bias", axis=1)
    return [val]


# ---------------------------------------------------------------------------------------------------- elementwise
def _per_channel_param(value: IntVal | FloatIn, param: np.ndarray, what: str,
                       axis: int | None = None) -> tuple[np.ndarray, int | None]:
    """A constant operand as a per-tensor or per-channel parameter of ``value``; the resulting channel axis."""
    param = np.asarray(param, F32)
    if param.size == 1:
        return param.reshape(()), value.axis if isinstance(value, IntVal) else None
    ndim = len(value.shape)
    if param.ndim > ndim:
        raise Unsupported(f"{what} of shape {param.shape} broadcasts beyond the tensor {value.shape}")
    p_axis = axis if axis is not None else _channel_axis(param, ndim, what)
    if param.size != value.shape[p_axis]:
        raise Unsupported(f"{what} of shape {param.shape} does not match axis {p_axis} of {value.shape}")
    current = value.axis if isinstance(value, IntVal) else None
    chain_channels = value.chain.channels if isinstance(value, IntVal) else 1
    if isinstance(value, FloatIn):
        raise Unsupported(f"per-channel {what} on the float input", "normalize inputs per tensor")
    if chain_channels > 1 and current != p_axis:
        raise Unsupported(f"{what} varies along axis {p_axis} but the tensor's channels are on axis {current}")
    return param.reshape(-1), p_axis


def _add_const(val: IntVal, const: np.ndarray, what: str, axis: int | None = None) -> IntVal:
    param, p_axis = _per_channel_param(val, const, what, axis)
    return replace(val, chain=val.chain.then(FloatOp("add", (param,))), axis=p_axis)


def _float_op(x: Value, op_kind: str, params: tuple[np.ndarray, ...], what: str) -> Value:
    if isinstance(x, FloatIn):
        if any(np.asarray(p).size > 1 for p in params):
            raise Unsupported(f"per-channel {what} on the float input", "normalize inputs per tensor")
        return replace(x, ops=x.ops + (FloatOp(op_kind, tuple(np.asarray(p, F32).reshape(()) for p in params)),))
    if isinstance(x, IntVal):
        flat, axis = [], x.axis
        for p in params:
            param, p_axis = _per_channel_param(x, p, what)
            flat.append(param)
            axis = p_axis if param.size > 1 else axis
        return replace(x, chain=x.chain.then(FloatOp(op_kind, tuple(flat))), axis=axis)
    raise Unsupported(f"{what} on a {type(x).__name__} operand is not supported")


@handles("Relu")
def _relu(imp: Importer, node, ins, attrs) -> list[Value]:
    return [_float_op(ins[0], "relu", (), "Relu")]


@handles("Clip")
def _clip(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    lo = np.asarray(_const(ins[1], "Clip min"), F32) if len(ins) > 1 and ins[1] is not None else \
        np.asarray(attrs.get("min", -np.inf), F32)
    hi = np.asarray(_const(ins[2], "Clip max"), F32) if len(ins) > 2 and ins[2] is not None else \
        np.asarray(attrs.get("max", np.inf), F32)
    if isinstance(x, Codes):
        dtype = x.quantizer.dtype
        new_lo, new_hi = max(dtype.min, int(np.ceil(lo))), min(dtype.max, int(np.floor(hi)))
        narrowed = IntType(dtype.bits, dtype.signed, new_lo, new_hi)
        return [Codes(x.source, replace(x.quantizer, dtype=narrowed), x.axis, x.names + (node.output[0],))]
    return [_float_op(x, "clip", (lo, hi), "Clip")]


def _binary_const(ins) -> tuple[Value, np.ndarray, bool]:
    """(dynamic operand, constant operand, constant-is-first)."""
    a, b = ins[0], ins[1]
    if isinstance(b, (Const, QConst)):
        return a, _const(b, "operand"), False
    if isinstance(a, (Const, QConst)):
        return b, _const(a, "operand"), True
    raise Unsupported("both operands are dynamic")


@handles("Add")
def _add(imp: Importer, node, ins, attrs) -> list[Value]:
    a, b = ins[0], ins[1]
    if isinstance(a, (IntVal, Codes)) and isinstance(b, (IntVal, Codes)):
        return [_add_tensors(imp, imp.codes_of(a, "Add input A"), imp.codes_of(b, "Add input B"))]
    x, c, _ = _binary_const(ins)
    return [_float_op(x, "add", (c,), "Add constant")]


@handles("Sub")
def _sub(imp: Importer, node, ins, attrs) -> list[Value]:
    x, c, const_first = _binary_const(ins)
    if const_first:       # c - x == (-x) + c exactly in float32
        return [_float_op(_float_op(x, "mul", (np.asarray(-1, F32),), "Sub"), "add", (c,), "Sub constant")]
    return [_float_op(x, "add", (-np.asarray(c, F32),), "Sub constant")]


@handles("Mul")
def _mul(imp: Importer, node, ins, attrs) -> list[Value]:
    x, c, _ = _binary_const(ins)
    return [_float_op(x, "mul", (c,), "Mul constant")]


@handles("Div")
def _div(imp: Importer, node, ins, attrs) -> list[Value]:
    x, c, const_first = _binary_const(ins)
    if const_first:
        raise Unsupported("division of a constant by a tensor is not supported")
    return [_float_op(x, "div", (c,), "Div constant")]


@handles("BatchNormalization")
def _batchnorm(imp: Importer, node, ins, attrs) -> list[Value]:
    if len(node.output) > 1 and any(node.output[1:]) or attrs.get("training_mode", 0):
        raise Unsupported("training-mode BatchNormalization", "export the model in eval mode")
    x = ins[0]
    params = [np.asarray(_const(v, "BatchNormalization parameter"), F32).reshape(-1) for v in ins[1:5]]
    eps = np.asarray(attrs.get("epsilon", 1e-5), F32)
    if not isinstance(x, IntVal):
        raise Unsupported("BatchNormalization input is not an integer tensor")
    if x.chain.channels > 1 and x.axis != 1:
        raise Unsupported("BatchNormalization channels (axis 1) differ from the tensor's channel axis")
    if params[0].size != x.shape[1]:
        raise Unsupported(f"BatchNormalization has {params[0].size} channels, tensor {x.shape}")
    return [replace(x, chain=x.chain.then(FloatOp("batchnorm", (*params, eps))), axis=1)]


def _add_tensors(imp: Importer, a: IntVal, b: IntVal) -> IntVal:
    """Exact sum of two code tensors with different scales: ka*(a-za) + kb*(b-zb) on the common scale."""
    if a.shape != b.shape:
        raise Unsupported(f"Add of tensors with shapes {a.shape} and {b.shape} (broadcasting) is not supported")
    fa, fb = Fraction(float(a.chain.scale)), Fraction(float(b.chain.scale))
    ratio = fa / fb
    ka, kb = ratio.numerator, ratio.denominator          # fa/ka == fb/kb
    common = fa / ka
    if float(common) != common:
        raise Unsupported("the two Add inputs' scales have no exact common scale")
    attrs = {"ka": ka, "kb": kb, "za": int(a.chain.zero_point), "zb": int(b.chain.zero_point)}
    out, bounds = imp.emit("AddScaled", [a.tensor, b.tensor], attrs, a.shape, a.axis, [a.bounds, b.bounds], "sum")
    return IntVal(out, a.shape, Chain(np.asarray(float(common))), a.axis, bounds)


# ---------------------------------------------------------------------------------------------------- pooling
def _pool_attrs(attrs, ndim: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...], tuple[int, int], bool]:
    if ndim != 4:
        raise Unsupported("only 2-D pooling (NCHW) is supported")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise Unsupported("auto_pad is not supported", "export with explicit pads")
    kernel = _pair(attrs.get("kernel_shape"), 1)
    strides = _pair(attrs.get("strides"), 1)
    pads = tuple(int(p) for p in attrs.get("pads", [0, 0, 0, 0]))
    dilations = _pair(attrs.get("dilations"), 1)
    return kernel, strides, pads, dilations, bool(attrs.get("ceil_mode", 0))


def _pool_shape(shape, kernel, strides, pads, dilations, ceil_mode) -> tuple[int, ...]:
    from ..kernels import pool_geometry

    dims = [pool_geometry(shape[2 + a], kernel[a], strides[a], pads[a], pads[a + 2], dilations[a], ceil_mode)[0]
            for a in (0, 1)]
    return (shape[0], shape[1], *dims)


@handles("MaxPool")
def _maxpool(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("MaxPool indices output is not supported")
    if isinstance(x, Codes):
        x = imp.quantize(x.source, x.quantizer, x.axis, x.names)
    if not isinstance(x, IntVal):
        raise Unsupported("MaxPool input is not quantized", "quantize before pooling")
    if not np.all(x.chain.increasing()):
        raise Unsupported("MaxPool after a decreasing float op (negative scale) cannot run on integers",
                          "pool after the quantizer")
    if x.chain.channels > 1 and x.axis != 1:
        raise Unsupported("MaxPool of a tensor whose channel axis is not 1")
    kernel, strides, pads, dilations, ceil_mode = _pool_attrs(attrs, len(x.shape))
    shape = _pool_shape(x.shape, kernel, strides, pads, dilations, ceil_mode)
    out, bounds = imp.emit("MaxPool", [x.tensor], {"kernel": kernel, "strides": strides, "pads": pads,
                                                    "dilations": dilations, "ceil_mode": ceil_mode},
                           shape, x.axis, [x.bounds], "max")
    return [replace(x, tensor=out, shape=shape, bounds=bounds)]


def _sum_pool(imp: Importer, x: IntVal, kernel, strides, pads, ceil_mode, global_: bool) -> IntVal:
    window = kernel[0] * kernel[1]
    shape = (x.shape[0], x.shape[1], 1, 1) if global_ else _pool_shape(x.shape, kernel, strides, pads, (1, 1),
                                                                        ceil_mode)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads, "ceil_mode": ceil_mode, "global": global_,
             "window": window, "x_zero_point": int(x.chain.zero_point)}
    out, bounds = imp.emit("SumPool", [x.tensor], attrs, shape, 1, [x.bounds], "sum")
    chain = Chain(x.chain.scale).then(FloatOp("div", (np.asarray(window, F32),)))
    return IntVal(out, shape, chain, 1, bounds)


@handles("AveragePool")
def _avgpool(imp: Importer, node, ins, attrs) -> list[Value]:
    x = imp.codes_of(ins[0], "AveragePool input")
    kernel, strides, pads, dilations, ceil_mode = _pool_attrs(attrs, len(x.shape))
    if dilations != (1, 1):
        raise Unsupported("dilated AveragePool is not supported")
    if (any(pads) or ceil_mode) and not attrs.get("count_include_pad", 0):
        raise Unsupported("padded AveragePool with count_include_pad=0 divides border windows by fewer elements",
                          "use count_include_pad=1 or no padding")
    return [_sum_pool(imp, x, kernel, strides, pads, ceil_mode, False)]


@handles("GlobalAveragePool")
def _global_avgpool(imp: Importer, node, ins, attrs) -> list[Value]:
    x = imp.codes_of(ins[0], "GlobalAveragePool input")
    if len(x.shape) != 4:
        raise Unsupported("only 2-D pooling (NCHW) is supported")
    return [_sum_pool(imp, x, (x.shape[2], x.shape[3]), (1, 1), (0, 0, 0, 0), False, True)]


@handles("ReduceMean")
def _reduce_mean(imp: Importer, node, ins, attrs) -> list[Value]:
    x = imp.codes_of(ins[0], "ReduceMean input")
    axes = attrs.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in np.asarray(_const(ins[1], "ReduceMean axes")).reshape(-1)]
    rank = len(x.shape)
    if rank != 4 or axes is None or sorted(a % rank for a in axes) != [2, 3]:
        raise Unsupported(f"ReduceMean over axes {axes} of a rank-{rank} tensor; only the spatial mean (axes 2, 3 "
                          "of NCHW, a global average pool) is supported")
    pooled = _sum_pool(imp, x, (x.shape[2], x.shape[3]), (1, 1), (0, 0, 0, 0), False, True)
    if attrs.get("keepdims", 1):
        return [pooled]
    return [_reshape_value(imp, pooled, pooled.shape[:2], "ReduceMean")]


@handles("GlobalMaxPool")
def _global_maxpool(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    shape = x.shape if isinstance(x, IntVal) else ()
    if len(shape) != 4:
        raise Unsupported("GlobalMaxPool needs a quantized NCHW tensor")
    return _maxpool(imp, node, ins, {"kernel_shape": [shape[2], shape[3]]})


# ---------------------------------------------------------------------------------------------------- shapes
def _reshape_value(imp: Importer, x: Value, new_shape: tuple[int, ...], op: str) -> Value:
    if isinstance(x, QConst):
        axis = _axis_after_reshape(x.codes.shape, new_shape, x.axis)
        scale = np.asarray(x.scale).reshape(-1) if x.axis is not None else np.asarray(x.scale)
        zp = np.asarray(x.zero_point).reshape(-1) if x.axis is not None else np.asarray(x.zero_point)
        view = [-1 if i == axis else 1 for i in range(len(new_shape))]
        return replace(x, codes=x.codes.reshape(new_shape), axis=axis,
                       scale=scale.reshape(view) if axis is not None else scale,
                       zero_point=zp.reshape(view) if axis is not None else zp)
    if isinstance(x, Codes):
        x = imp.quantize(x.source, x.quantizer, x.axis, x.names)
    if not isinstance(x, (IntVal, FloatIn)):
        raise Unsupported(f"{op} of a tensor that is not quantized", "reshape after the input quantizer")
    if new_shape[0] != x.shape[0] or math.prod(new_shape) != math.prod(x.shape):
        raise Unsupported(f"{op} {x.shape} → {new_shape} mixes the batch axis into the data",
                          "keep the batch axis first")
    if isinstance(x, FloatIn):         # host side: the input quantizer reshapes its input
        return replace(x, shape=new_shape)
    if new_shape == x.shape:
        return x
    try:
        axis = _axis_after_reshape(x.shape, new_shape, x.axis)
    except Unsupported:
        if x.chain.channels > 1:        # per-channel parameters need their axis; per-tensor ones do not
            raise
        axis = None
    out, bounds = imp.emit("Reshape", [x.tensor], {"shape": new_shape}, new_shape, axis, [x.bounds], "reshape")
    return replace(x, tensor=out, shape=new_shape, axis=axis, bounds=bounds)


def _target_shape(shape: tuple[int, ...], spec: np.ndarray, allowzero: bool) -> tuple[int, ...]:
    spec = [int(s) for s in np.asarray(spec).reshape(-1)]
    out = [shape[i] if s == 0 and not allowzero else s for i, s in enumerate(spec)]
    if out.count(-1) > 1:
        raise Unsupported(f"reshape target {spec} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(shape) // known if known else 0
    return tuple(out)


def _shape_of(x: Value) -> tuple[int, ...]:
    if isinstance(x, Const):
        return np.asarray(x.value).shape
    if isinstance(x, QConst):
        return x.codes.shape
    if isinstance(x, Codes):
        return x.source.shape
    if isinstance(x, (IntVal, FloatIn)):
        return x.shape
    raise Unsupported("shape of an unsupported operand")


@handles("Reshape")
def _reshape(imp: Importer, node, ins, attrs) -> list[Value]:
    shape = _shape_of(ins[0])
    return [_reshape_value(imp, ins[0], _target_shape(shape, _const(ins[1], "Reshape shape"),
                                                      bool(attrs.get("allowzero", 0))), "Reshape")]


@handles("Flatten")
def _flatten(imp: Importer, node, ins, attrs) -> list[Value]:
    shape = _shape_of(ins[0])
    axis = int(attrs.get("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    return [_reshape_value(imp, ins[0], (math.prod(shape[:axis]), math.prod(shape[axis:])), "Flatten")]


@handles("Squeeze", "Unsqueeze")
def _squeeze(imp: Importer, node, ins, attrs) -> list[Value]:
    shape = list(_shape_of(ins[0]))
    axes = attrs.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in np.asarray(_const(ins[1], "axes")).reshape(-1)]
    if node.op_type == "Squeeze":
        axes = [a % len(shape) for a in axes] if axes is not None else [i for i, d in enumerate(shape) if d == 1]
        new = tuple(d for i, d in enumerate(shape) if i not in axes)
    else:
        rank = len(shape) + len(axes)
        for a in sorted(x % rank for x in axes):
            shape.insert(a, 1)
        new = tuple(shape)
    return [_reshape_value(imp, ins[0], new, node.op_type)]


@handles("Transpose")
def _transpose(imp: Importer, node, ins, attrs) -> list[Value]:
    x = ins[0]
    shape = _shape_of(x)
    perm = tuple(int(p) for p in attrs.get("perm", list(range(len(shape)))[::-1]))
    if isinstance(x, QConst):
        axis = None if x.axis is None else perm.index(x.axis)
        scale = np.asarray(x.scale).transpose(perm) if np.asarray(x.scale).ndim == len(perm) else x.scale
        zp = np.asarray(x.zero_point).transpose(perm) if np.asarray(x.zero_point).ndim == len(perm) else x.zero_point
        return [replace(x, codes=x.codes.transpose(perm), axis=axis, scale=scale, zero_point=zp)]
    if isinstance(x, Codes):
        x = imp.quantize(x.source, x.quantizer, x.axis, x.names)
    if not isinstance(x, IntVal):
        raise Unsupported("Transpose of a tensor that is not quantized")
    if perm[0] != 0:
        raise Unsupported(f"Transpose perm {perm} moves the batch axis", "keep the batch axis first")
    if perm == tuple(range(len(perm))):
        return [x]
    new_shape = tuple(shape[p] for p in perm)
    axis = None if x.axis is None else perm.index(x.axis)
    out, bounds = imp.emit("Transpose", [x.tensor], {"perm": perm}, new_shape, axis, [x.bounds], "transpose")
    return [replace(x, tensor=out, shape=new_shape, axis=axis, bounds=bounds)]


@handles("Identity", "Dropout")
def _identity(imp: Importer, node, ins, attrs) -> list[Value]:
    return [ins[0]] + [POISON] * (len(node.output) - 1)


def import_model(model: onnx.ModelProto) -> Graph:
    """The integer IR of a validated ONNX model (see :func:`hwgen.frontend.read.read_model`)."""
    return Importer(model).run()


__all__ = ["Importer", "import_model"]
