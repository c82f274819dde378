"""Reference execution of zoo models, exposing the integer codes of every quantized activation.

* QONNX models run through ``qonnx.core.onnx_exec.execute_onnx``; the codes of each ``Quant`` /
  ``BipolarQuant`` / ``Trunc`` output are recovered from its dequantized value as
  ``round(y / scale + zero_point)`` (``BipolarQuant``: ``y / scale``, i.e. +-1).
* QCDQ / QDQ models run through onnxruntime with all graph optimizations disabled (the default
  optimizations are not bit-exact); the outputs of ``QuantizeLinear`` nodes, and of a ``Clip``
  directly consuming one, are exposed as extra graph outputs and are the codes themselves.

Only *activation* quantizers are reported: nodes whose data input does not derive solely from
initializers / ``Constant`` nodes. Models with a static batch dimension are run in chunks of
that size (usually sample by sample) and the results are concatenated along the batch axis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from modelzoo import ZooModel

QONNX_DOMAIN = "qonnx.custom_op.general"
QONNX_QUANT_OPS = ("Quant", "BipolarQuant", "Trunc")


@dataclass(frozen=True)
class Reference:
    """Reference results of a model on its N sample inputs."""

    outputs: np.ndarray
    """Float32 graph output, shape (N, ...)."""
    codes: dict[str, np.ndarray]
    """ONNX tensor name of each quantized activation -> its int64 codes, shape (N, ...)."""


@dataclass(frozen=True)
class CodeRange:
    """The integers a quantized activation tensor can take."""

    lo: int
    hi: int
    bipolar: bool = False
    """Codes are -1 or +1 (``BipolarQuant``, or a 1-bit signed ``Quant``), never 0."""

    def contains(self, codes: np.ndarray) -> bool:
        """Whether all ``codes`` are valid values of this range."""
        if self.bipolar:
            return bool(np.isin(codes, (-1, 1)).all())
        return bool(((codes >= self.lo) & (codes <= self.hi)).all())


def _constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Names of the tensors that only depend on initializers and ``Constant`` nodes."""
    const = {init.name for init in graph.initializer}
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type == "Constant" or (node.input and all(i in const or not i for i in node.input)):
            const.update(node.output)
    return const


def _initializer(graph: onnx.GraphProto, name: str) -> np.ndarray:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise ValueError(f"quantizer parameter {name!r} is not an initializer")


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(onnx.helper.get_attribute_value(attr))
    return default


def _opset(model: onnx.ModelProto, domain: str) -> int:
    return next(o.version for o in model.opset_import if o.domain == domain)


def _qonnx_range(node: onnx.NodeProto, model: onnx.ModelProto) -> CodeRange:
    """Integer range of a QONNX quantizer output, with qonnx' attribute defaults and limits."""
    from qonnx.custom_op.general.quant import max_int, min_int
    from qonnx.custom_op.registry import getCustomOp

    if node.op_type == "BipolarQuant":
        return CodeRange(-1, 1, bipolar=True)
    op = getCustomOp(node, _opset(model, node.domain))
    signed, narrow = bool(op.get_nodeattr("signed")), bool(op.get_nodeattr("narrow"))
    bits = int(_initializer(model.graph, node.input[5 if node.op_type == "Trunc" else 3]))
    if node.op_type == "Quant" and bits == 1 and signed:  # qonnx executes it as bipolar
        return CodeRange(-1, 1, bipolar=True)
    return CodeRange(int(min_int(signed, narrow, bits)), int(max_int(signed, narrow, bits)))


def _qonnx_quantizers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Output name -> node, for every QONNX activation quantizer."""
    graph = model.graph
    const = _constant_tensors(graph)
    found = {}
    for node in graph.node:
        if node.domain == QONNX_DOMAIN and node.op_type in QONNX_QUANT_OPS and node.input[0] not in const:
            if node.op_type == "Trunc" and _opset(model, node.domain) < 2:
                raise NotImplementedError("Trunc v1 (qonnx opset 1) is not supported")
            found[node.output[0]] = node
    return found


def _qdq_quantizers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Output name -> node, for every activation QuantizeLinear and any Clip right after one."""
    graph = model.graph
    const = _constant_tensors(graph)
    found = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in const:
            found[node.output[0]] = node
        elif node.op_type == "Clip" and node.input[0] in found:
            found[node.output[0]] = node
    return found


def _qdq_range(node: onnx.NodeProto, graph: onnx.GraphProto) -> CodeRange:
    """Integer range of a QuantizeLinear output (its integer type) or of a Clip (its bounds)."""
    if node.op_type == "Clip":
        lo, hi = (int(_initializer(graph, i)) for i in node.input[1:3])
        return CodeRange(lo, hi)
    if _attr(node, "output_dtype", 0):  # opset >= 21
        dtype = onnx.helper.tensor_dtype_to_np_dtype(_attr(node, "output_dtype", 0))
    elif len(node.input) > 2 and node.input[2]:
        dtype = _initializer(graph, node.input[2]).dtype
    else:  # no zero point: uint8
        dtype = np.dtype(np.uint8)
    info = np.iinfo(dtype)
    return CodeRange(int(info.min), int(info.max))


def code_ranges(zoo: ZooModel) -> dict[str, CodeRange]:
    """The valid integer range of every quantized activation tensor listed in :class:`Reference`."""
    model = onnx.load(zoo.path)
    if zoo.dialect == "qonnx":
        return {name: _qonnx_range(node, model) for name, node in _qonnx_quantizers(model).items()}
    return {name: _qdq_range(node, model.graph) for name, node in _qdq_quantizers(model).items()}


def _data_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    """The one graph input without an initializer (exporters may list initializers as inputs)."""
    inits = {init.name for init in graph.initializer}
    (data,) = [i for i in graph.input if i.name not in inits]
    return data


def _chunks(model: onnx.ModelProto, inputs: np.ndarray) -> Iterator[np.ndarray]:
    """Split ``inputs`` into batches matching the model's static batch size, if it has one."""
    batch = _data_input(model.graph).type.tensor_type.shape.dim[0].dim_value
    if not batch:
        yield inputs
        return
    assert len(inputs) % batch == 0, f"{len(inputs)} samples do not split into batches of {batch}"
    yield from np.split(inputs, len(inputs) // batch)


def _concatenate(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]]) -> Reference:
    """Join per-batch (outputs, codes) results along the batch axis."""
    return Reference(
        outputs=np.concatenate([outputs for outputs, _ in parts]).astype(np.float32),
        codes={name: np.concatenate([codes[name] for _, codes in parts]) for name in parts[0][1]},
    )


def _run_qonnx(zoo: ZooModel) -> Reference:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(zoo.path)).transform(InferShapes())
    quantizers = _qonnx_quantizers(model.model)
    in_name = _data_input(model.graph).name
    (out_name,) = [o.name for o in model.graph.output]
    parts = []
    for batch in _chunks(model.model, zoo.inputs):
        ctx = execute_onnx(model, {in_name: batch}, return_full_exec_context=True)
        codes = {}
        for name, node in quantizers.items():
            y, scale = ctx[name], ctx[node.input[1]]
            if node.op_type == "BipolarQuant":
                real = y / scale
            elif node.op_type == "Quant":
                real = y / scale + ctx[node.input[2]]
            else:  # Trunc v2: output grid is output_scale, zero point rescaled by the shift
                out_scale = ctx[node.input[4]]
                shift = 2.0 ** np.round(np.log2(out_scale / scale))
                real = y / out_scale + ctx[node.input[2]] / shift
            codes[name] = np.round(real).astype(np.int64)
        parts.append((ctx[out_name], codes))
    return _concatenate(parts)


def _run_onnxruntime(zoo: ZooModel) -> Reference:
    import onnxruntime as ort

    model = onnx.load(zoo.path)
    quantizers = _qdq_quantizers(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    (out_name,) = [o.name for o in model.graph.output]
    for name in quantizers.keys() - {out_name}:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # exporters list initializers as graph inputs: ORT warns
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    in_name = _data_input(model.graph).name
    names = [out_name, *quantizers]
    parts = []
    for batch in _chunks(model, zoo.inputs):
        outputs, *codes = session.run(names, {in_name: batch})
        parts.append((outputs, {name: c.astype(np.int64) for name, c in zip(quantizers, codes)}))
    return _concatenate(parts)


def run_reference(zoo: ZooModel) -> Reference:
    """Execute ``zoo`` on its sample inputs with the dialect's reference runtime."""
    if zoo.dialect == "qonnx":
        return _run_qonnx(zoo)
    return _run_onnxruntime(zoo)
