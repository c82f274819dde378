"""Bad input: exit 2, one short message naming the problem and the place, no traceback, nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hwgen import HwgenError, UnsupportedModelError, load
from onnx_helpers import mlp, set_init


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwgen", *args], capture_output=True, text=True, timeout=120)


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def refused(path: Path, tmp_path: Path) -> str:
    """Run `hwgen golden` on a bad model; assert the refusal contract and return the message."""
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 8), np.float32))
    out = tmp_path / "y.npy"
    result = run_cli("golden", str(path), "--inputs", str(x), "--output", str(out))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3
    assert not out.exists() and not list(tmp_path.glob(".y.npy*"))
    return result.stderr.strip()


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert refused(path, tmp_path) == f"error: {path}: empty file, not an ONNX model"


def test_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "text.onnx"
    path.write_text("this is not a protobuf \x00\xff" * 10)
    message = refused(path, tmp_path)
    assert message.startswith(f"error: {path}: not a valid ONNX model (protobuf:") or \
        message == f"error: {path}: not an ONNX model or an empty graph (no nodes)"


def test_truncated(tmp_path: Path) -> None:
    data = mlp().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert refused(path, tmp_path).startswith(f"error: {path}: not a valid ONNX model (protobuf:")


def test_missing_initializer(tmp_path: Path) -> None:
    model = mlp()
    del model.graph.initializer[[i.name for i in model.graph.initializer].index("s_w")]
    assert refused(save(model, tmp_path / "m.onnx"), tmp_path) == \
        "error: node 'quant_w' (Quant): input 's_w' is missing (no node, initializer or graph input produces it)"


def test_cycle(tmp_path: Path) -> None:
    model = mlp()
    nodes = list(model.graph.node)
    relu = next(n for n in nodes if n.name == "relu")
    relu.input[0] = "loop"
    model.graph.node.append(helper.make_node("Identity", ["r"], ["loop"], name="back"))
    assert refused(save(model, tmp_path / "m.onnx"), tmp_path) == \
        "error: graph has a cycle through nodes 'relu' (Relu), 'quant_out' (Quant), 'back' (Identity)"


def test_dynamic_non_batch_dimension(tmp_path: Path) -> None:
    model = mlp(input_dims=["N", "K"])
    assert refused(save(model, tmp_path / "m.onnx"), tmp_path) == \
        "error: graph input 'x': dimension 1 is dynamic ('K'); only the batch axis (0) may be dynamic"


@pytest.mark.parametrize("value, why", [(float("nan"), "has a NaN or infinite scale"),
                                        (float("inf"), "has a NaN or infinite scale"),
                                        (0.0, "has a zero or negative scale (0)")])
def test_bad_scales(tmp_path: Path, value: float, why: str) -> None:
    model = set_init(mlp(), "s_out", value)
    hint = "re-export the model with finite scales" if "NaN" in why else "scales must be positive"
    assert refused(save(model, tmp_path / "m.onnx"), tmp_path) == \
        f"error: 1 unsupported node: node 'quant_out' (Quant): Quant {why}; {hint}"


@pytest.mark.parametrize("name, bits, message", [
    ("b_in", 17, "activation bit width 17 is out of range 1..16; use 1..16 bits"),
    ("b_in", 0, "activation bit width 0 is out of range 1..16; use 1..16 bits"),
    ("b_w", 40, "weight bit width 40 is out of range 1..32; use 1..32 bits"),
    ("b_in", 3.5, "activation bit width 3.5 is out of range 1..16; use 1..16 bits")])
def test_bit_width_out_of_range(tmp_path: Path, name: str, bits: float, message: str) -> None:
    node = {"b_in": "quant_in", "b_w": "quant_w"}[name]
    model = set_init(mlp(), name, bits)
    assert refused(save(model, tmp_path / "m.onnx"), tmp_path) == \
        f"error: 1 unsupported node: node '{node}' (Quant): {message}"


def test_unknown_domain(tmp_path: Path) -> None:
    model = mlp()
    model.graph.node[3].domain = "com.example.secret"
    model.opset_import.append(helper.make_opsetid("com.example.secret", 1))
    assert refused(save(model, tmp_path / "m.onnx"), tmp_path) == \
        "error: node 'relu' (Relu): op in unknown domain 'com.example.secret'; hwgen reads standard ONNX and " \
        "QONNX (qonnx.custom_op.general)"


def test_every_unsupported_node_listed_at_once(tmp_path: Path) -> None:
    model = mlp()
    relu = model.graph.node[3]
    relu.op_type = "Sin"
    model.graph.node.insert(3, helper.make_node("Softmax", ["acc"], ["sm"], name="soft"))
    model.graph.output.append(helper.make_tensor_value_info("sm", TensorProto.FLOAT, [1, 4]))
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedModelError) as info:
        load(path)
    assert [(i.node, i.op_type, i.why) for i in info.value.issues] == [
        ("soft", "Softmax", "op type is not supported"), ("relu", "Sin", "op type is not supported")]
    result = run_cli("check", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "2 unsupported node(s)" in result.stderr
    assert "soft" in result.stderr and "Sin" in result.stderr and "Softmax" in result.stderr


def test_huge_declared_shape(tmp_path: Path) -> None:
    model = mlp()
    w = next(i for i in model.graph.initializer if i.name == "w")
    del w.dims[:]
    w.dims.extend([100000, 100000])
    assert refused(save(model, tmp_path / "m.onnx"), tmp_path) == \
        "error: initializer 'w': declared shape (100000, 100000) (10000000000 elements) but it holds 32 elements " \
        "of data"


def test_unquantized_weights(tmp_path: Path) -> None:
    model = mlp()
    gemm = next(n for n in model.graph.node if n.name == "fc")
    gemm.input[1] = "w"
    with pytest.raises(UnsupportedModelError) as info:
        load(save(model, tmp_path / "m.onnx"))
    assert str(info.value) == ("1 unsupported node: node 'fc' (Gemm): Gemm weights (input B) are not quantized; "
                               "quantize weights (brevitas QuantLinear/QuantConv2d, or hwgen quantize)")


def test_bad_inputs_file(tmp_path: Path) -> None:
    path = save(mlp(), tmp_path / "m.onnx")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 9), np.float32))
    out = tmp_path / "y.npy"
    result = run_cli("golden", str(path), "--inputs", str(x), "--output", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: input 'x' must have shape (N, 8), got (2, 9)"
    assert not out.exists()


def test_api_raises_hwgen_error(tmp_path: Path) -> None:
    with pytest.raises(HwgenError, match="no such file"):
        load(tmp_path / "missing.onnx")
