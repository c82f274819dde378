"""Small float32 ONNX models for quantization tests (built with onnx.helper, no downloads).

All models use opset 13 and IR version 8, input name ``"x"``, output name ``"y"``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
DIGITS_HIDDEN = (64, 32)  # 64 inputs -> 64 -> 32 -> 10 classes


def _model(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    x_shape: list[int | str],
    y_shape: list[int | str],
    name: str,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.asarray(v, np.float32) if v.dtype.kind == "f" else v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


@functools.lru_cache(maxsize=1)
def _digits_classifier() -> tuple:
    """Train (once per process) the MLP on sklearn's bundled digits; inputs scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    clf = MLPClassifier(hidden_layer_sizes=DIGITS_HIDDEN, activation="relu", max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    return clf, x_train, y_train, x_test, y_test


def make_digits_mlp(
    linear: Literal["gemm", "matmul"] = "gemm",
) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Float MLP 64-64-32-10 trained on sklearn's digits, as ONNX.

    ``linear="gemm"``: Gemm+Relu layers; the first Gemm stores its weight as
    (out, in) with ``transB=1`` (PyTorch layout), the others as (in, out)
    with ``transB=0``.  ``linear="matmul"``: MatMul + Add(bias) + Relu.
    The input is ``x`` of shape (N, 64) with values in [0, 1]; the output
    ``y`` holds the 10 logits (no softmax).

    Returns ``(model, x_train, y_train, x_test, y_test)`` (float32 inputs, int labels).
    """
    clf, x_train, y_train, x_test, y_test = _digits_classifier()
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}
    h = "x"
    n_layers = len(clf.coefs_)
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):  # w: (in, out)
        last = i == n_layers - 1
        out = "y" if last else f"h{i}"
        pre = out if last else f"fc{i}_out"
        inits[f"fc{i}.bias"] = b
        if linear == "gemm":
            trans_b = int(i == 0)
            inits[f"fc{i}.weight"] = w.T if trans_b else w
            nodes.append(
                helper.make_node("Gemm", [h, f"fc{i}.weight", f"fc{i}.bias"], [pre], name=f"fc{i}", transB=trans_b)
            )
        else:
            inits[f"fc{i}.weight"] = w
            nodes.append(helper.make_node("MatMul", [h, f"fc{i}.weight"], [f"fc{i}_mm"], name=f"fc{i}_matmul"))
            nodes.append(helper.make_node("Add", [f"fc{i}_mm", f"fc{i}.bias"], [pre], name=f"fc{i}_bias"))
        if not last:
            nodes.append(helper.make_node("Relu", [pre], [out], name=f"relu{i}"))
        h = out
    model = _model(nodes, inits, ["N", 64], ["N", 10], f"digits_mlp_{linear}")
    return model, x_train, y_train, x_test, y_test


def _he(rng: np.random.Generator, *shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def make_cnn(seed: int = 0, batch: int | str = "N") -> onnx.ModelProto:
    """Random-weight CNN for (batch, 1, 8, 8) inputs with 10 outputs.

    Conv(1->4, 3x3, pad 1)+Relu -> MaxPool 2x2 -> Conv(4->8, 3x3, pad 1)+Relu
    -> GlobalAveragePool -> Flatten -> Gemm(8->10, transB=1).
    """
    rng = np.random.default_rng(seed)
    inits = {
        "conv1.weight": _he(rng, 4, 1, 3, 3),
        "conv1.bias": rng.normal(0, 0.1, 4),
        "conv2.weight": _he(rng, 8, 4, 3, 3),
        "conv2.bias": rng.normal(0, 0.1, 8),
        "fc.weight": _he(rng, 10, 8),
        "fc.bias": rng.normal(0, 0.1, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1),
    ]
    return _model(nodes, inits, [batch, 1, 8, 8], [batch, 10], "cnn")


def make_conv_bn(seed: int = 0) -> onnx.ModelProto:
    """Conv(1->6, no bias)+BatchNorm+Relu -> Flatten -> Gemm(transB=0)+BatchNorm, for (N, 1, 8, 8) inputs.

    The BatchNorm statistics are deliberately far from identity so that a
    wrong fold changes the output a lot.
    """
    rng = np.random.default_rng(seed)

    def bn_params(prefix: str, c: int) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.gamma": rng.uniform(0.5, 2.0, c),
            f"{prefix}.beta": rng.normal(0, 0.5, c),
            f"{prefix}.mean": rng.normal(0, 0.5, c),
            f"{prefix}.var": rng.uniform(0.2, 3.0, c),
        }

    inits = {
        "conv.weight": _he(rng, 6, 1, 3, 3),
        **bn_params("bn1", 6),
        "fc.weight": _he(rng, 6 * 8 * 8, 5),
        "fc.bias": rng.normal(0, 0.1, 5),
        **bn_params("bn2", 5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "bn1.gamma", "bn1.beta", "bn1.mean", "bn1.var"], ["b"], name="bn1", epsilon=1e-3
        ),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["g"], name="fc"),
        helper.make_node(
            "BatchNormalization", ["g", "bn2.gamma", "bn2.beta", "bn2.mean", "bn2.var"], ["y"], name="bn2"
        ),
    ]
    return _model(nodes, inits, ["N", 1, 8, 8], ["N", 5], "conv_bn")


def make_residual(seed: int = 0) -> onnx.ModelProto:
    """Residual block with the remaining supported ops, for (N, 2, 8, 8) inputs and 3 outputs.

    Conv(2->4)+Relu -> Conv(4->4) + skip Add -> Relu -> AveragePool 2x2 ->
    Reshape (shape from a Constant node) -> MatMul + Add(bias).
    """
    rng = np.random.default_rng(seed)
    inits = {
        "conv1.weight": _he(rng, 4, 2, 3, 3),
        "conv1.bias": rng.normal(0, 0.1, 4),
        "conv2.weight": _he(rng, 4, 4, 3, 3),
        "conv2.bias": rng.normal(0, 0.1, 4),
        "fc.weight": _he(rng, 3, 64).T,
        "fc.bias": rng.normal(0, 0.1, 3),  # MatMul weight is (in, out)
    }
    shape = numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="skip"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("AveragePool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Constant", [], ["shape"], name="shape_const", value=shape),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "fc.weight"], ["m"], name="fc_matmul"),
        helper.make_node("Add", ["m", "fc.bias"], ["y"], name="fc_bias"),
    ]
    return _model(nodes, inits, ["N", 2, 8, 8], ["N", 3], "residual")
