"""Small QONNX graphs written with onnx.helper, for error-path and pass tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX = "qonnx.custom_op.general"


def const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def quant(name: str, x: str, out: str, scale: str, zp: str, bits: str, signed: int = 1, narrow: int = 0):
    return helper.make_node("Quant", [x, scale, zp, bits], [out], name=name, domain=QONNX, signed=signed,
                            narrow=narrow, rounding_mode="ROUND")


def mlp(k: int = 8, n: int = 4, *, act_scale: float = 0.05, act_bits: float = 8, weight_bits: float = 4,
        extra_nodes: list | None = None, output: str = "y", seed: int = 0, input_dims=None) -> onnx.ModelProto:
    """x → Quant → Gemm(quantized W, bias) → Relu → Quant(4 bit, unsigned) → y."""
    rng = np.random.default_rng(seed)
    inits = [const("s_in", act_scale), const("zp", 0.0), const("b_in", act_bits), const("w", rng.normal(size=(n, k))),
             const("s_w", 0.1), const("b_w", weight_bits), const("bias", rng.normal(size=n)),
             const("s_out", 0.1), const("b_out", 4.0)]
    nodes = [quant("quant_in", "x", "xq", "s_in", "zp", "b_in"),
             quant("quant_w", "w", "wq", "s_w", "zp", "b_w", narrow=1),
             helper.make_node("Gemm", ["xq", "wq", "bias"], ["acc"], name="fc", transB=1),
             helper.make_node("Relu", ["acc"], ["r"], name="relu"),
             quant("quant_out", "r", "y", "s_out", "zp", "b_out", signed=0)] + (extra_nodes or [])
    dims = input_dims if input_dims is not None else [1, k]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QONNX, 1)])


def set_init(model: onnx.ModelProto, name: str, value) -> onnx.ModelProto:
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(const(name, value))
            return model
    raise KeyError(name)


def residual_mlp(width: int = 12, *, skip_scale_ratio: float = 1.0, seed: int = 0) -> onnx.ModelProto:
    """A dense residual block: h = Q(relu(x W1)), y = Q(relu(h W2)), z = Q(y + h), out = z W3.

    ``skip_scale_ratio`` scales the quantizer of ``h`` relative to ``y``'s, so the Add rescales one branch.
    """
    rng = np.random.default_rng(seed)
    inits = [const("s_in", 0.05), const("zp", 0.0), const("b8", 8.0), const("b4", 4.0), const("b5", 5.0),
             const("s_w", 0.1), const("s_y", 0.2), const("s_h", 0.2 * skip_scale_ratio), const("s_z", 0.3)]
    nodes = [quant("quant_in", "x", "xq", "s_in", "zp", "b8")]
    for name, shape in (("w1", (width, 8)), ("w2", (width, width)), ("w3", (5, width))):
        inits += [const(name, rng.normal(size=shape)), const(f"{name}_bias", rng.normal(size=shape[0]))]
        nodes.append(quant(f"quant_{name}", name, f"{name}q", "s_w", "zp", "b4", narrow=1))
    nodes += [helper.make_node("Gemm", ["xq", "w1q", "w1_bias"], ["a1"], name="fc1", transB=1),
              helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
              quant("quant_h", "r1", "h", "s_h", "zp", "b4", signed=0),
              helper.make_node("Gemm", ["h", "w2q", "w2_bias"], ["a2"], name="fc2", transB=1),
              helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
              quant("quant_y", "r2", "y", "s_y", "zp", "b4", signed=0),
              helper.make_node("Add", ["y", "h"], ["sum"], name="residual"),
              quant("quant_z", "sum", "z", "s_z", "zp", "b5", signed=0),
              helper.make_node("Gemm", ["z", "w3q", "w3_bias"], ["out"], name="fc3", transB=1)]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QONNX, 1)])
