"""Post-training static quantization of float ONNX models into ONNX QDQ form.

The input is a float32 ONNX model with one activation input; the output is
the same network in the QDQ ("fake-quantized") format that onnxruntime's
``quantize_static(..., quant_format=QuantFormat.QDQ)`` writes, so one
importer reads both.  Only numpy and onnx are used: the float model is run
for calibration with :class:`onnx.reference.ReferenceEvaluator`.

Conventions
-----------
* Affine quantization ``real = scale * (code - zero_point)``; ``scale`` is a
  float32 value in the unit of the tensor (e.g. the unit of the model input),
  ``zero_point`` an integer code of the tensor's storage type.
* Rounding is round-half-to-even everywhere, as ``QuantizeLinear`` does.
* Weights (Gemm ``B``, MatMul ``B``, Conv ``W``): symmetric, narrow range
  ``[-(2**(weight_bits-1) - 1), 2**(weight_bits-1) - 1]`` (so |code| <= 127 at
  8 bits), zero point 0, stored as int8 initializers -> ``DequantizeLinear``.
  Per output channel when ``per_channel`` (``axis`` = 0 for Conv and for Gemm
  with ``transB=1``, 1 for Gemm with ``transB=0`` and for MatMul), otherwise
  per tensor.  ``weight_bits`` < 8 keeps the int8 container with a narrower
  code range.
* Biases (Gemm ``C``, Conv ``B``, and the constant operand of an ``Add`` that
  directly follows a MatMul): int32, zero point 0,
  ``scale = input_scale * weight_scale`` (float32 product, per channel when
  the weight is per channel).  MatMul + Add(constant) is treated as one
  linear layer: the MatMul result is an accumulator and is not quantized.
* Activations: every float activation tensor gets ``QuantizeLinear`` ->
  ``DequantizeLinear`` (so every op reads dequantized inputs), except the
  pre-activation of a compute layer (Conv/Gemm/MatMul[+bias Add]) whose only
  consumer is a Relu: the Relu belongs to the layer.  Scales come from
  calibration, per tensor:

  - default: asymmetric unsigned (``uint8`` at 8 bits; ``zero_point`` != 0
    allowed), range ``[min(lo, 0), max(hi, 0)]`` over ``[0, 2**act_bits - 1]``;
  - ``symmetric_activations=True``: signed, zero point 0, the calibrated
    range mapped onto ``+-(2**(act_bits-1) - 1)`` (at 8 bits QuantizeLinear
    can still emit -128 for a value below that range; below 8 bits the Clip
    enforces the narrow range);
  - Relu outputs are always unsigned with zero point 0 (``scale = hi / qmax``).

  MaxPool, AveragePool, Flatten and Reshape outputs reuse their input's
  scale/zero point initializers (exact, no requantization), as onnxruntime
  does; GlobalAveragePool and residual Add outputs are calibrated themselves.
* Graph outputs stay float: onnxruntime's ``quantize_static`` default also
  quantizes the last layer's output, so the graph output tensor is written by
  a ``DequantizeLinear`` (``producer -> <y>_QuantizeLinear_Input -> Q -> DQ
  -> y``), and this module does the same.
* Tensor and node names follow onnxruntime (``<t>_scale``, ``<t>_zero_point``,
  ``<t>_QuantizeLinear_Output``, ``<t>_DequantizeLinear_Output``,
  ``<w>_quantized``, ``<b>_quantized_scale``...); the bias DequantizeLinear
  writes the original bias name.

Differences from onnxruntime's defaults (both are read by the same importer):
recent onnxruntime uses *int8* asymmetric activations by default (this module
uses uint8, or int8 with ``symmetric_activations``) and deletes a Relu that
follows a Conv/Gemm, relying on the clamp of the following QuantizeLinear
(this module keeps the Relu node explicit).

BatchNormalization directly after a Conv or Gemm is folded into that layer's
weights and bias before calibration, and ``Constant`` nodes become
initializers.  Unsupported operators raise :class:`ValueError` naming the
node and its op type.  As in onnxruntime, a weight scale is enlarged when the
int32 bias codes would otherwise overflow (e.g. a dead channel with tiny
weights but a sizeable bias).

Activations narrower than 8 bits keep the uint8/int8 storage type and get a
``Clip`` on the codes between ``QuantizeLinear`` and ``DequantizeLinear``
("QCDQ", as Brevitas exports it), e.g. ``Clip(0, 15)`` for 4-bit unsigned.
Models below opset 13 are converted to opset 13.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter
from onnx.reference import ReferenceEvaluator

__all__ = ["SUPPORTED_OPS", "QuantizeReport", "accuracy", "float_outputs", "quantize_model"]

_LOG = logging.getLogger(__name__)

_COMPUTE_OPS = frozenset({"Gemm", "MatMul", "Conv"})
# Ops whose output reuses the quantization parameters of their (only) activation input.
_SHARED_PARAM_OPS = frozenset({"MaxPool", "AveragePool", "Flatten", "Reshape"})
SUPPORTED_OPS = (
    _COMPUTE_OPS | _SHARED_PARAM_OPS | frozenset({"Relu", "GlobalAveragePool", "Add", "BatchNormalization", "Constant"})
)
_METHODS = ("minmax", "percentile")
_CALIB_CHUNK = 256  # samples per ReferenceEvaluator run when the batch dimension is free
_MIN_OPSET = 13  # per-axis DequantizeLinear, Clip on integer codes
_BITS = range(2, 9)  # weight and activation code widths (int8/uint8 storage)


@dataclass(frozen=True)
class QuantizeReport:
    """Quantization parameters chosen by :func:`quantize_model`, in graph order.

    ``layers`` holds one dict per quantized tensor with keys ``name`` (tensor
    name in the float model), ``kind`` (``"weight"``, ``"activation"`` or
    ``"bias"``), ``bits`` (code width), ``signed`` (bool), ``scale`` (float
    for per-tensor, list of floats for per-channel), ``zero_point`` (int, or
    list of ints matching ``scale``) and ``axis`` (channel axis of a
    per-channel tensor, else ``None``).
    """

    layers: list[dict[str, Any]]


def float_outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """First graph output of the float ``model`` for inputs ``x`` (batch on axis 0), via ReferenceEvaluator.

    A model with a fixed batch size ``b`` is run ``b`` samples at a time (``len(x)`` must be a multiple of ``b``).
    """
    graph = _Graph(model.graph)
    evaluator = ReferenceEvaluator(model)
    x = np.asarray(x, np.float32)
    return np.concatenate([evaluator.run(None, {graph.input.name: batch})[0] for batch in _batches(graph, x)])


def accuracy(model_runner: Callable[[np.ndarray], np.ndarray], x: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy as a fraction in [0, 1].

    ``model_runner`` maps a batch ``x`` of shape ``(N, ...)`` to class scores
    of shape ``(N, classes)``; ``labels`` holds the ``N`` integer class ids.
    """
    scores = np.asarray(model_runner(x))
    return float(np.mean(np.argmax(scores, axis=-1) == np.asarray(labels)))


@dataclass(frozen=True)
class _QType:
    """An integer code type: ONNX storage type, code width and inclusive code range."""

    onnx_type: int
    bits: int
    signed: bool
    qmin: int
    qmax: int


@dataclass(frozen=True)
class _ActParams:
    """Per-tensor activation quantization; ``source`` owns the scale/zero point initializers."""

    qtype: _QType
    scale: np.float32
    zero_point: int
    source: str


@dataclass
class _Layer:
    """A compute layer: Gemm/MatMul/Conv with constant weight, optional bias, optional fused Relu."""

    node: onnx.NodeProto
    weight: str
    axis: int  # output-channel axis of the weight
    bias: str | None = None
    bias_add: onnx.NodeProto | None = None  # the Add carrying a MatMul's bias

    @property
    def output(self) -> str:
        """The layer's pre-activation tensor (after the bias)."""
        return (self.bias_add or self.node).output[0]


def _node_label(node: onnx.NodeProto) -> str:
    return f"node '{node.name or '<unnamed>'}' (op type {node.op_type})"


class _Graph:
    """Mutable working copy of a float graph with a single activation input."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.inits: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.inits]
        if len(inputs) != 1:
            raise ValueError(f"expected exactly one activation graph input, got {[i.name for i in inputs]}")
        self.input = onnx.ValueInfoProto()
        self.input.CopyFrom(inputs[0])
        if self.input.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise ValueError(f"graph input '{self.input.name}' must be float32")
        self.nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            self.nodes.append(copy)
        self.outputs: list[onnx.ValueInfoProto] = list(graph.output)
        self.output_names = {o.name for o in graph.output}

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if tensor in n.input]

    def sole_consumer(self, tensor: str, op_type: str) -> onnx.NodeProto | None:
        """The only consumer of ``tensor`` if it has type ``op_type`` and ``tensor`` is no graph output."""
        users = self.consumers(tensor)
        if len(users) == 1 and users[0].op_type == op_type and tensor not in self.output_names:
            return users[0]
        return None

    def const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        """The initializer feeding input ``index`` of ``node``; ValueError if it is not constant."""
        if index >= len(node.input) or node.input[index] not in self.inits:
            raise ValueError(f"{_node_label(node)}: {what} must be a constant initializer")
        return self.inits[node.input[index]]

    def to_model(self, template: onnx.ModelProto, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        """A float model of the current graph state with the given graph outputs."""
        graph = helper.make_graph(
            self.nodes,
            template.graph.name,
            [self.input],
            outputs,
            [numpy_helper.from_array(v, k) for k, v in self.inits.items()],
        )
        return helper.make_model(graph, opset_imports=template.opset_import, ir_version=template.ir_version)


class _Names:
    """Allocates tensor/node names that do not clash with those of ``graph``."""

    def __init__(self, graph: _Graph) -> None:
        self._used = set(graph.inits) | {graph.input.name} | graph.output_names
        for node in graph.nodes:
            self._used.update(node.input)
            self._used.update(node.output)
            self._used.add(node.name)

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name


def quantize_model(
    model: onnx.ModelProto,
    calib: np.ndarray,
    *,
    weight_bits: int = 8,
    act_bits: int = 8,
    per_channel: bool = True,
    method: Literal["minmax", "percentile"] = "minmax",
    symmetric_activations: bool = False,
    percentile: float = 99.99,
) -> tuple[onnx.ModelProto, QuantizeReport]:
    """Quantize a float ONNX model to QDQ form from calibration data.

    Args:
        model: float32 model with exactly one activation input (not modified).
        calib: calibration inputs, shape ``(num_samples, *input_shape[1:])``;
            axis 0 is the model's batch axis.  If the model fixes the batch
            size to ``b``, ``num_samples`` must be a multiple of ``b``.
        weight_bits: weight code width, 2..8 (int8 storage, narrow range).
        act_bits: activation code width, 2..8 (uint8/int8 storage; below 8
            bits a Clip on the codes sits between Quantize- and DequantizeLinear).
        per_channel: per-output-channel weight scales (else per tensor).
        method: activation range estimator: ``"minmax"`` (observed extremes)
            or ``"percentile"`` (the ``100 - percentile`` and ``percentile``
            percentiles of all observed values of the tensor; keeps every
            value in memory).
        symmetric_activations: signed, zero-point-0 activations (Relu outputs
            stay unsigned).
        percentile: percentile in (50, 100] used by ``method="percentile"``.

    Returns:
        The QDQ model (float32 graph input and outputs) and a report of all
        chosen quantization parameters.

    Raises:
        ValueError: unsupported operator or pattern (message names the node
            and op type), bad arguments or calibration data.
    """
    for what, bits in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if bits not in _BITS:
            raise ValueError(f"{what} must be in 2..8, got {bits}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    calib = np.asarray(calib, dtype=np.float32)
    if calib.ndim == 0 or calib.shape[0] == 0 or not np.all(np.isfinite(calib)):
        raise ValueError("calib must be a non-empty array of finite values")

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            raise ValueError(f"unsupported operator: {_node_label(node)}")
    model = _with_opset(model, _MIN_OPSET)

    graph = _Graph(model.graph)
    _constants_to_initializers(graph)
    layers = _find_layers(graph)
    _fold_batchnorms(graph, layers)
    _check_patterns(graph, layers)

    plan = _plan_activations(graph, layers)
    own = [t for t, src in plan.items() if src == t and t != graph.input.name]
    ranges = _calibrate(graph, model, own, calib, method, percentile)
    ranges[graph.input.name] = _value_range(calib, method, percentile)
    relu_outputs = {n.output[0] for n in graph.nodes if n.op_type == "Relu"}
    act: dict[str, _ActParams] = {}
    for tensor, src in plan.items():  # plan is in topological order: sources come first
        if src != tensor:
            act[tensor] = act[src]
            continue
        unsigned_zero = tensor in relu_outputs
        act[tensor] = _activation_params(tensor, *ranges[tensor], act_bits, symmetric_activations, unsigned_zero)

    qmodel, report = _emit(model, graph, layers, act, weight_bits, per_channel)
    _LOG.info(
        "quantized %d layers (w%d/a%d, %s, %s): %d activation tensors",
        len(layers),
        weight_bits,
        act_bits,
        "per-channel" if per_channel else "per-tensor",
        method,
        len(act),
    )
    return qmodel, report


# --------------------------------------------------------------------------- preprocessing


def _with_opset(model: onnx.ModelProto, min_opset: int) -> onnx.ModelProto:
    """A copy of ``model`` whose default-domain opset is at least ``min_opset``."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= min_opset:
        converted = onnx.ModelProto()
        converted.CopyFrom(model)
    else:
        _LOG.info("converting model from opset %d to %d", opset, min_opset)
        converted = version_converter.convert_version(model, min_opset)
    return converted


def _constants_to_initializers(graph: _Graph) -> None:
    """Replace ``Constant`` nodes (``value`` attribute) by initializers."""
    for node in [n for n in graph.nodes if n.op_type == "Constant"]:
        attrs = {a.name: a for a in node.attribute}
        if set(attrs) != {"value"}:
            raise ValueError(f"{_node_label(node)}: only the 'value' attribute is supported")
        graph.inits[node.output[0]] = numpy_helper.to_array(attrs["value"].t)
        graph.nodes.remove(node)


def _fresh_init_name(graph: _Graph, base: str) -> str:
    name, k = base, 1
    while name in graph.inits:
        name, k = f"{base}_{k}", k + 1
    return name


def _private_init(graph: _Graph, node: onnx.NodeProto, index: int) -> str:
    """Give ``node`` its own copy of the initializer at input ``index`` if it is shared; return its name."""
    name = node.input[index]
    if sum(list(n.input).count(name) for n in graph.nodes) > 1:
        copy = _fresh_init_name(graph, f"{name}_{node.name or 'copy'}")
        graph.inits[copy] = graph.inits[name].copy()
        node.input[index] = copy
    return node.input[index]


def _has_input(node: onnx.NodeProto, index: int) -> bool:
    return len(node.input) > index and bool(node.input[index])


def _find_layers(graph: _Graph) -> list[_Layer]:
    """Identify compute layers, normalizing Gemm (alpha/beta folded, bias as a vector)."""
    layers = []
    for node in graph.nodes:
        if node.op_type not in _COMPUTE_OPS:
            continue
        weight = graph.const(node, 1, "the weight")
        _private_init(graph, node, 1)
        if node.op_type == "Conv":
            layer = _Layer(node, node.input[1], axis=0)
            if _has_input(node, 2):
                graph.const(node, 2, "the bias")
                layer.bias = _private_init(graph, node, 2)
        elif node.op_type == "Gemm":
            layer = _normalize_gemm(graph, node, weight)
        else:  # MatMul
            if weight.ndim != 2:
                raise ValueError(f"{_node_label(node)}: the weight must be 2-D, got shape {weight.shape}")
            layer = _Layer(node, node.input[1], axis=1)
            add = graph.sole_consumer(node.output[0], "Add")
            if add is not None:
                other = 1 if add.input[0] == node.output[0] else 0
                bias = graph.inits.get(add.input[other])
                if bias is not None and bias.size == weight.shape[1] and bias.shape[-1:] == (bias.size,):
                    layer.bias, layer.bias_add = _private_init(graph, add, other), add
                    graph.inits[layer.bias] = bias.reshape(-1)
        layers.append(layer)
    return layers


def _normalize_gemm(graph: _Graph, node: onnx.NodeProto, weight: np.ndarray) -> _Layer:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0):
        raise ValueError(f"{_node_label(node)}: transA=1 is not supported")
    trans_b = int(attrs.get("transB", 0))
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    out_axis = 0 if trans_b else 1
    n_out = weight.shape[out_axis]
    graph.inits[node.input[1]] = (weight * np.float32(alpha)).astype(np.float32)
    bias_name = None
    if _has_input(node, 2):
        bias = graph.const(node, 2, "the bias C")
        if bias.size not in (1, n_out) or (bias.size == n_out and bias.shape[-1:] != (n_out,)):
            raise ValueError(f"{_node_label(node)}: bias C of shape {bias.shape} is not a per-output vector")
        bias_name = _private_init(graph, node, 2)
        graph.inits[bias_name] = np.broadcast_to(bias.reshape(-1) * np.float32(beta), (n_out,)).astype(np.float32)
    for attr in [a for a in node.attribute if a.name in ("alpha", "beta")]:
        node.attribute.remove(attr)
    return _Layer(node, node.input[1], axis=out_axis, bias=bias_name)


def _fold_batchnorms(graph: _Graph, layers: list[_Layer]) -> None:
    """Fold BatchNormalization nodes that alone consume a Conv/Gemm output into that layer."""
    for layer in layers:
        if layer.node.op_type == "MatMul":
            continue
        bn = graph.sole_consumer(layer.node.output[0], "BatchNormalization")
        if bn is None:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
        if attrs.get("training_mode", 0) or len([o for o in bn.output if o]) != 1:
            raise ValueError(f"{_node_label(bn)}: only inference-mode BatchNormalization can be folded")
        gamma, beta, mean, var = (
            graph.const(bn, i, what).astype(np.float64) for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
        )
        k = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        weight = graph.inits[layer.weight].astype(np.float64)
        shape = [1] * weight.ndim
        shape[layer.axis] = -1
        graph.inits[layer.weight] = (weight * k.reshape(shape)).astype(np.float32)
        bias = graph.inits[layer.bias].astype(np.float64) if layer.bias else np.zeros_like(k)
        if layer.bias is None:
            layer.bias = _fresh_init_name(graph, f"{layer.weight}_bias")
            while len(layer.node.input) < 3:
                layer.node.input.append("")
            layer.node.input[2] = layer.bias
        graph.inits[layer.bias] = ((bias - mean) * k + beta).astype(np.float32)
        layer.node.output[0] = bn.output[0]
        graph.nodes.remove(bn)
        _LOG.debug("folded %s into %s", bn.name, layer.node.name)
    used = {name for n in graph.nodes for name in n.input}
    graph.inits = {k: v for k, v in graph.inits.items() if k in used}


def _check_patterns(graph: _Graph, layers: list[_Layer]) -> None:
    """Reject supported op types used in unsupported ways (after BatchNorm folding)."""
    bias_adds = {id(layer.bias_add) for layer in layers if layer.bias_add is not None}
    for node in graph.nodes:
        label = _node_label(node)
        if node.op_type == "BatchNormalization":
            raise ValueError(
                f"{label}: BatchNormalization is only supported directly after a Conv or Gemm "
                "whose output it alone consumes"
            )
        if len([o for o in node.output if o]) != 1:
            raise ValueError(f"{label}: only single-output nodes are supported")
        if id(node) in bias_adds:
            continue
        if node.op_type == "Reshape":
            graph.const(node, 1, "the shape")
        if node.op_type in _COMPUTE_OPS or node.op_type == "Reshape":
            data = node.input[:1]
        else:
            data = node.input
            if len(data) != (2 if node.op_type == "Add" else 1):
                raise ValueError(f"{label}: unexpected number of inputs ({len(data)})")
        if any(name in graph.inits for name in data):
            raise ValueError(
                f"{label}: constant data operands are only supported as weights and biases of "
                "Gemm, Conv and MatMul (+ Add)"
            )


# --------------------------------------------------------------------------- calibration


def _plan_activations(graph: _Graph, layers: list[_Layer]) -> dict[str, str]:
    """Map every activation tensor to quantize onto the tensor owning its parameters (itself if calibrated).

    Insertion order is topological.
    """
    fused = {layer.output for layer in layers if graph.sole_consumer(layer.output, "Relu") is not None}
    fused |= {layer.node.output[0] for layer in layers if layer.bias_add is not None}
    plan = {graph.input.name: graph.input.name}
    for node in graph.nodes:
        out = node.output[0]
        if out in fused:
            continue
        plan[out] = plan[node.input[0]] if node.op_type in _SHARED_PARAM_OPS else out
    return plan


def _value_range(values: np.ndarray, method: str, percentile: float) -> tuple[float, float]:
    if method == "minmax":
        return float(values.min()), float(values.max())
    lo, hi = np.percentile(values, [100.0 - percentile, percentile])
    return float(lo), float(hi)


def _batches(graph: _Graph, calib: np.ndarray) -> Iterator[np.ndarray]:
    """Split ``calib`` (samples on axis 0) into batches the model input accepts."""
    if not graph.input.type.tensor_type.HasField("shape"):  # unknown shape: batch size is free
        yield from (calib[i : i + _CALIB_CHUNK] for i in range(0, calib.shape[0], _CALIB_CHUNK))
        return
    dims = graph.input.type.tensor_type.shape.dim
    if len(dims) != calib.ndim:
        raise ValueError(f"calib has rank {calib.ndim}, model input '{graph.input.name}' has rank {len(dims)}")
    for i, d in enumerate(dims[1:], start=1):
        if d.HasField("dim_value") and d.dim_value != calib.shape[i]:
            raise ValueError(f"calib shape {calib.shape} does not match model input dim {i} = {d.dim_value}")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else _CALIB_CHUNK
    if dims[0].HasField("dim_value") and calib.shape[0] % batch:
        raise ValueError(f"model batch size is fixed to {batch}; calib has {calib.shape[0]} samples")
    for start in range(0, calib.shape[0], batch):
        yield calib[start : start + batch]


def _calibrate(
    graph: _Graph, model: onnx.ModelProto, tensors: list[str], calib: np.ndarray, method: str, percentile: float
) -> dict[str, tuple[float, float]]:
    """Observed ``(lo, hi)`` range of each tensor over ``calib`` (float model, all tensors as outputs)."""
    outputs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors]
    evaluator = ReferenceEvaluator(graph.to_model(model, outputs))
    seen: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    ranges: dict[str, tuple[float, float]] = {}
    for batch in _batches(graph, calib):
        values = evaluator.run(None, {graph.input.name: batch})
        for tensor, value in zip(tensors, values, strict=True):
            value = np.asarray(value)
            if method == "minmax":
                lo, hi = ranges.get(tensor, (np.inf, -np.inf))
                ranges[tensor] = (min(lo, float(value.min())), max(hi, float(value.max())))
            else:
                seen[tensor].append(value.ravel())
    if method == "percentile":
        ranges = {t: _value_range(np.concatenate(v), method, percentile) for t, v in seen.items()}
    return ranges


def _act_type(bits: int, signed: bool) -> _QType:
    """Activation code type; signed types use the narrow (symmetric) range."""
    if signed:
        return _QType(TensorProto.INT8, bits, True, -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    return _QType(TensorProto.UINT8, bits, False, 0, 2**bits - 1)


def _activation_params(
    tensor: str, lo: float, hi: float, bits: int, symmetric: bool, unsigned_zero: bool
) -> _ActParams:
    """Per-tensor scale/zero point for the range ``[lo, hi]`` (onnxruntime's ``compute_scale_zp``)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if unsigned_zero:
        qtype, lo = _act_type(bits, signed=False), 0.0
    elif symmetric:
        qtype = _act_type(bits, signed=True)
        hi = max(-lo, hi)
        lo = -hi
    else:
        qtype = _act_type(bits, signed=False)
    scale = (hi - lo) / (qtype.qmax - qtype.qmin)
    if scale < np.finfo(np.float32).tiny:
        return _ActParams(qtype, np.float32(1.0), 0, tensor)
    if symmetric or unsigned_zero:
        zero_point = 0
    else:  # float64 scale before the float32 cast, like onnxruntime
        zero_point = int(np.clip(np.rint(qtype.qmin - lo / scale), qtype.qmin, qtype.qmax))
    return _ActParams(qtype, np.float32(scale), zero_point, tensor)


# --------------------------------------------------------------------------- emission


def _weight_scales(weight: np.ndarray, axis: int | None, qmax: int) -> np.ndarray:
    """Symmetric float32 scales (per ``axis`` channel, or a scalar if ``axis`` is None)."""
    if axis is None:
        absmax = np.abs(weight.astype(np.float64)).max(initial=0.0)
    else:
        other = tuple(i for i in range(weight.ndim) if i != axis)
        absmax = np.abs(weight.astype(np.float64)).max(axis=other, initial=0.0)
    scale = np.asarray(absmax / qmax)
    return np.where(scale < np.finfo(np.float32).tiny, 1.0, scale).astype(np.float32)


def _fit_bias_in_int32(w_scale: np.ndarray, in_scale: np.float32, bias: np.ndarray, layer: _Layer) -> np.ndarray:
    """Enlarge weight scales whose bias scale ``in_scale * w_scale`` would overflow int32 bias codes.

    Same rule as onnxruntime: the bias scale must be at least
    ``1.0001 * 2 * |bias| / (2**32 - 2)`` (per channel, or with ``max |bias|`` per tensor).
    """
    int32 = np.iinfo(np.int32)
    absmax = np.abs(bias.astype(np.float64)).max(initial=0.0) if w_scale.ndim == 0 else np.abs(bias.astype(np.float64))
    smallest = 1.0001 * (2.0 * absmax) / (float(int32.max) - float(int32.min + 1))
    candidate = float(in_scale) * w_scale.astype(np.float64)
    too_small = candidate < smallest
    if not np.any(too_small):
        return w_scale
    _LOG.info(
        "%s: enlarging %d weight scale(s) of '%s' so that bias '%s' fits int32",
        _node_label(layer.node),
        int(np.sum(too_small)),
        layer.weight,
        layer.bias,
    )
    return np.where(too_small, w_scale * (smallest / candidate), w_scale).astype(np.float32)


def _channel_view(scale: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    """Reshape per-channel ``scale`` to broadcast along ``axis`` of an ``ndim``-D tensor."""
    if axis is None:
        return scale
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


def _report_entry(
    name: str, kind: str, qtype: _QType, scale: np.ndarray, zero_point: np.ndarray, axis: int | None
) -> dict[str, Any]:
    """One :attr:`QuantizeReport.layers` entry (scalars for per-tensor, lists for per-channel)."""
    return {
        "name": name,
        "kind": kind,
        "bits": qtype.bits,
        "signed": qtype.signed,
        "scale": scale.tolist(),
        "zero_point": zero_point.tolist(),
        "axis": axis,
    }


def _emit(
    model: onnx.ModelProto,
    graph: _Graph,
    layers: list[_Layer],
    act: dict[str, _ActParams],
    weight_bits: int,
    per_channel: bool,
) -> tuple[onnx.ModelProto, QuantizeReport]:
    """Build the QDQ model and the report."""
    names = _Names(graph)
    inits: list[onnx.TensorProto] = []
    param_nodes: list[onnx.NodeProto] = []
    layer_entries: dict[int, list[dict[str, Any]]] = {}  # report entries by id() of the compute node
    act_entries: dict[str, dict[str, Any]] = {}  # report entry by activation tensor
    renames: dict[str, str] = {}  # graph output -> new name of its producer's output
    wmax = 2 ** (weight_bits - 1) - 1
    wtype = _QType(TensorProto.INT8, weight_bits, True, -wmax, wmax)

    def dequantize(name: str, out: str, axis: int | None, arrays: dict[str, np.ndarray]) -> None:
        """Store codes, scale and zero point (``arrays``, keyed by name suffix); add ``DequantizeLinear -> out``."""
        tensors = [numpy_helper.from_array(a, names.fresh(name + suffix)) for suffix, a in arrays.items()]
        inits.extend(tensors)
        attrs = {} if axis is None else {"axis": axis}
        dq_name = names.fresh(f"{name}_DequantizeLinear")
        param_nodes.append(helper.make_node("DequantizeLinear", [t.name for t in tensors], [out], dq_name, **attrs))

    int32 = np.iinfo(np.int32)
    btype = _QType(TensorProto.INT32, 32, True, int(int32.min), int(int32.max))
    for layer in layers:
        weight = graph.inits[layer.weight]
        axis = layer.axis if per_channel else None
        w_scale = _weight_scales(weight, axis, wtype.qmax)
        if layer.bias is not None:
            w_scale = _fit_bias_in_int32(w_scale, act[layer.node.input[0]].scale, graph.inits[layer.bias], layer)
        w_codes = np.clip(np.rint(weight / _channel_view(w_scale, weight.ndim, axis)), wtype.qmin, wtype.qmax)
        w_zp = np.zeros(w_scale.shape, np.int8)
        layer.node.input[1] = names.fresh(f"{layer.weight}_DequantizeLinear_Output")
        parts = {"_quantized": w_codes.astype(np.int8), "_scale": w_scale, "_zero_point": w_zp}
        dequantize(layer.weight, layer.node.input[1], axis, parts)
        bucket = layer_entries.setdefault(id(layer.node), [])
        bucket.append(_report_entry(layer.weight, "weight", wtype, w_scale, w_zp, axis))
        if layer.bias is None:
            continue
        b_axis = None if axis is None else 0
        b_scale = (act[layer.node.input[0]].scale * w_scale).astype(np.float32)
        b_codes = np.rint(graph.inits[layer.bias].astype(np.float64) / b_scale.astype(np.float64))
        b_zp = np.zeros(b_scale.shape, np.int32)
        parts = {
            "_quantized": np.clip(b_codes, btype.qmin, btype.qmax).astype(np.int32),
            "_quantized_scale": b_scale,
            "_quantized_zero_point": b_zp,
        }
        dequantize(layer.bias, layer.bias, b_axis, parts)  # the DequantizeLinear writes the float bias name
        bucket.append(_report_entry(layer.bias, "bias", btype, b_scale, b_zp, b_axis))

    param_names: dict[str, list[str]] = {}  # source tensor -> scale, zero point (, clip min, clip max) names
    qdq: dict[str, list[onnx.NodeProto]] = {}  # float tensor -> its Q (, Clip) and DQ nodes
    for tensor, p in act.items():
        if p.source not in param_names:
            np_type = np.int8 if p.qtype.signed else np.uint8
            params = {"_scale": np.asarray(p.scale, np.float32), "_zero_point": np.asarray(p.zero_point, np_type)}
            if p.qtype.bits < 8:
                params |= {
                    "_clip_min": np.asarray(p.qtype.qmin, np_type),
                    "_clip_max": np.asarray(p.qtype.qmax, np_type),
                }
            tensors = [numpy_helper.from_array(a, names.fresh(tensor + suffix)) for suffix, a in params.items()]
            inits.extend(tensors)
            param_names[p.source] = [t.name for t in tensors]
        scale_name, zp_name, *clip_names = param_names[p.source]
        q_in = tensor
        if tensor in graph.output_names:  # the DQ writes the graph output, the producer a new name
            q_in = renames[tensor] = names.fresh(f"{tensor}_QuantizeLinear_Input")
            dq_out = tensor
        else:
            dq_out = names.fresh(f"{tensor}_DequantizeLinear_Output")
        codes = names.fresh(f"{tensor}_QuantizeLinear_Output")
        qdq[tensor] = [
            helper.make_node(
                "QuantizeLinear", [q_in, scale_name, zp_name], [codes], names.fresh(f"{tensor}_QuantizeLinear")
            )
        ]
        if clip_names:  # narrow the codes to act_bits
            clipped = names.fresh(f"{tensor}_Clip_Output")
            qdq[tensor].append(helper.make_node("Clip", [codes, *clip_names], [clipped], names.fresh(f"{tensor}_Clip")))
            codes = clipped
        qdq[tensor].append(
            helper.make_node(
                "DequantizeLinear", [codes, scale_name, zp_name], [dq_out], names.fresh(f"{tensor}_DequantizeLinear")
            )
        )
        act_entries[tensor] = _report_entry(
            tensor, "activation", p.qtype, np.asarray(p.scale), np.asarray(p.zero_point), None
        )

    consumer_names = {t: nodes[-1].output[0] for t, nodes in qdq.items()}
    body: list[onnx.NodeProto] = list(qdq[graph.input.name])
    report = [act_entries[graph.input.name]]
    for node in graph.nodes:
        report.extend(layer_entries.get(id(node), []))
        if node.output[0] in act_entries:
            report.append(act_entries[node.output[0]])
        for i, name in enumerate(node.input):
            if name in consumer_names:
                node.input[i] = consumer_names[name]
        out = node.output[0]
        node.output[0] = renames.get(out, out)
        body.append(node)
        body.extend(qdq.get(out, []))

    quantized_floats = {layer.weight for layer in layers} | {layer.bias for layer in layers if layer.bias}
    inits.extend(numpy_helper.from_array(v, k) for k, v in graph.inits.items() if k not in quantized_floats)
    live = {n for node in body + param_nodes for n in (*node.input, *node.output)}
    qgraph = helper.make_graph(
        param_nodes + body,
        model.graph.name,
        [graph.input],
        graph.outputs,
        inits,
        value_info=[v for v in model.graph.value_info if v.name in live],
    )
    qmodel = onnx.ModelProto()
    qmodel.CopyFrom(model)
    qmodel.graph.CopyFrom(qgraph)
    return qmodel, QuantizeReport(report)
