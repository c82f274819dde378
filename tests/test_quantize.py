"""Tests for hwgen.quantize: accuracy, QDQ structure, BatchNorm folding, op coverage."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from float_models import make_cnn, make_conv_bn, make_digits_mlp, make_residual
from onnx import TensorProto, helper, numpy_helper

from hwgen.quantize import accuracy, float_outputs, quantize_model

CALIB_SAMPLES = 256
MAX_ACCURACY_DROP_POINTS = 1.5


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output model in onnxruntime with graph optimizations disabled."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = session.get_inputs()[0].shape[0]
    if isinstance(batch, int):  # fixed batch size: run sample groups one by one
        return np.concatenate([session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])
    return session.run(None, {name: x.astype(np.float32)})[0]


def inits_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def producers_of(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def check_qdq_structure(model: onnx.ModelProto, weight_bits: int = 8, act_bits: int = 8) -> None:
    """Structural invariants of the QDQ format written by quantize_model."""
    onnx.checker.check_model(model, full_check=True)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 13
    inits = inits_of(model)
    producers = producers_of(model)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            scale, zero_point = inits[node.input[1]], inits[node.input[2]]
            assert scale.dtype == np.float32 and np.all(scale > 0), node.name
            assert scale.shape == zero_point.shape, node.name
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # constant: weight or bias
            codes, zero_point = inits[node.input[0]], inits[node.input[2]]
            assert not np.any(zero_point), node.name
            consumer = next(n for n in model.graph.node if node.output[0] in n.input)
            slot = list(consumer.input).index(node.output[0])
            if slot == 2 or consumer.op_type == "Add":  # bias of Gemm/Conv, or of MatMul via Add
                assert codes.dtype == np.int32 and zero_point.dtype == np.int32, node.name
                layer = producers[consumer.input[1 - slot]] if consumer.op_type == "Add" else consumer
                input_dq, weight_dq = producers[layer.input[0]], producers[layer.input[1]]
                expected = inits[input_dq.input[1]] * inits[weight_dq.input[1]]  # float32 product
                np.testing.assert_array_equal(inits[node.input[1]], expected)
            else:
                assert codes.dtype == np.int8 and zero_point.dtype == np.int8, node.name
                assert np.abs(codes.astype(np.int32)).max() <= 2 ** (weight_bits - 1) - 1, node.name
        elif node.op_type == "QuantizeLinear":  # -> [Clip on codes if act_bits < 8 (QCDQ)] -> DequantizeLinear
            assert inits[node.input[2]].dtype in (np.uint8, np.int8), node.name
            (consumer,) = [n for n in model.graph.node if node.output[0] in n.input]
            if act_bits < 8:
                assert consumer.op_type == "Clip", node.name
                lo, hi = int(inits[consumer.input[1]]), int(inits[consumer.input[2]])
                assert (lo, hi) in ((0, 2**act_bits - 1), (1 - 2 ** (act_bits - 1), 2 ** (act_bits - 1) - 1))
                (consumer,) = [n for n in model.graph.node if consumer.output[0] in n.input]
            assert consumer.op_type == "DequantizeLinear" and consumer.input[1:] == node.input[1:], node.name
        if node.op_type in ("Gemm", "MatMul", "Conv"):
            for name in node.input:
                if name:
                    assert producers[name].op_type == "DequantizeLinear", f"{node.name} input {name}"
        elif node.op_type not in ("QuantizeLinear", "Clip", "DequantizeLinear"):
            # every other op reads dequantized tensors too, except inside a fused layer:
            # Relu after its Conv/Gemm/MatMul+Add, and the bias Add after its MatMul (plus Reshape's shape)
            for name in node.input:
                source = producers[name].op_type if name in producers else None
                fused = (node.op_type == "Relu" and source in ("Conv", "Gemm", "Add")) or (
                    node.op_type == "Add" and source == "MatMul"
                )
                assert source == "DequantizeLinear" or fused or name in inits, f"{node.name} input {name}"
    for output in model.graph.output:
        assert producers[output.name].op_type == "DequantizeLinear", output.name


@pytest.mark.parametrize("linear", ["gemm", "matmul"])
def test_digits_mlp_accuracy(linear: str) -> None:
    model, x_train, _, x_test, y_test = make_digits_mlp(linear)
    qmodel, report = quantize_model(model, x_train[:CALIB_SAMPLES])
    float_acc = 100 * accuracy(lambda x: run_ort(model, x), x_test, y_test)
    int8_acc = 100 * accuracy(lambda x: run_ort(qmodel, x), x_test, y_test)
    print(f"digits MLP ({linear}): float {float_acc:.2f}%  int8 QDQ {int8_acc:.2f}%  (n={len(y_test)})")
    assert float_acc > 95.0
    assert float_acc - int8_acc <= MAX_ACCURACY_DROP_POINTS
    check_qdq_structure(qmodel)
    kinds = [entry["kind"] for entry in report.layers]
    assert kinds.count("weight") == 3 and kinds.count("bias") == 3 and kinds.count("activation") == 4


@pytest.mark.parametrize(
    "options",
    [
        {"method": "percentile", "per_channel": False},
        {"symmetric_activations": True},
        {"weight_bits": 4, "act_bits": 4},
    ],
    ids=["percentile-per-tensor", "symmetric-act", "w4a4"],
)
def test_digits_mlp_variants(options: dict) -> None:
    model, x_train, _, x_test, y_test = make_digits_mlp("gemm")
    qmodel, _ = quantize_model(model, x_train[:CALIB_SAMPLES], **options)
    float_acc = 100 * accuracy(lambda x: run_ort(model, x), x_test, y_test)
    q_acc = 100 * accuracy(lambda x: run_ort(qmodel, x), x_test, y_test)
    print(f"digits MLP {options}: float {float_acc:.2f}%  quantized {q_acc:.2f}%")
    check_qdq_structure(qmodel, options.get("weight_bits", 8), options.get("act_bits", 8))
    assert float_acc - q_acc <= (5.0 if options.get("act_bits") == 4 else 2.0)


def test_weight_and_activation_conventions() -> None:
    model, x_train, _, _, _ = make_digits_mlp("gemm")
    qmodel, report = quantize_model(model, x_train[:CALIB_SAMPLES])
    inits = inits_of(qmodel)
    dq = {n.output[0]: n for n in qmodel.graph.node if n.op_type == "DequantizeLinear"}
    gemms = {n.name: n for n in qmodel.graph.node if n.op_type == "Gemm"}
    # fc0 has transB=1: weight (out, in) -> axis 0; fc1/fc2 have transB=0: weight (in, out) -> axis 1
    for name, axis in (("fc0", 0), ("fc1", 1), ("fc2", 1)):
        weight_dq = dq[gemms[name].input[1]]
        attrs = {a.name: helper.get_attribute_value(a) for a in weight_dq.attribute}
        assert attrs["axis"] == axis
        codes, scale = inits[weight_dq.input[0]], inits[weight_dq.input[1]]
        assert scale.shape == (codes.shape[axis],)
        bias_dq = dq[gemms[name].input[2]]
        assert {a.name: helper.get_attribute_value(a) for a in bias_dq.attribute}["axis"] == 0
        # symmetric: each channel's absmax maps to code 127, unless the weight scale was enlarged so that
        # the bias (scale = input scale * weight scale) fits int32 -- then the bias code is near the int32 limit
        full_range = np.abs(codes.astype(np.int32)).max(axis=1 - axis) == 127
        bias_limited = np.abs(inits[bias_dq.input[0]].astype(np.int64)) > 2**31 * 0.99
        assert np.all(full_range | bias_limited)
        assert np.mean(full_range) > 0.9
    by_name = {entry["name"]: entry for entry in report.layers}
    assert by_name["x"]["zero_point"] == 0 and not by_name["x"]["signed"]  # inputs in [0, 1]
    for relu_out in ("h0", "h1"):
        assert by_name[relu_out]["zero_point"] == 0 and not by_name[relu_out]["signed"]
        assert by_name[relu_out]["bits"] == 8
    assert not by_name["y"]["signed"] and 0 < by_name["y"]["zero_point"] < 255  # asymmetric logits
    assert isinstance(by_name["fc1.weight"]["scale"], list) and by_name["fc1.weight"]["axis"] == 1
    # the Relu stays explicit; its input (the Gemm pre-activation) is not quantized
    relu = next(n for n in qmodel.graph.node if n.name == "relu0")
    assert producers_of(qmodel)[relu.input[0]].op_type == "Gemm"


@pytest.mark.parametrize("batch", ["N", 1])
def test_float_outputs_match_onnxruntime(batch: int | str) -> None:
    model = make_cnn(batch=batch)
    x = np.random.default_rng(5).uniform(0, 1, size=(6, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(float_outputs(model, x), run_ort(model, x), rtol=1e-5, atol=1e-5)


def test_symmetric_activations_use_int8_zero_point_zero() -> None:
    model, x_train, _, _, _ = make_digits_mlp("gemm")
    _, report = quantize_model(model, x_train[:CALIB_SAMPLES], symmetric_activations=True)
    acts = {e["name"]: e for e in report.layers if e["kind"] == "activation"}
    assert acts["y"]["signed"] and acts["y"]["zero_point"] == 0
    assert not acts["h0"]["signed"] and acts["h0"]["zero_point"] == 0  # Relu outputs stay unsigned


def test_weight_rounding_is_half_to_even() -> None:
    # row 0 has absmax 127 -> scale 1.0, so the codes are exactly round(w) with ties to even
    w = np.array([[127.0, 2.5, 3.5, -2.5, -0.5, 0.5, 1.5, -126.5]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    qmodel, _ = quantize_model(model, np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32))
    codes = next(v for k, v in inits_of(qmodel).items() if k.startswith("w_quantized"))
    np.testing.assert_array_equal(codes, [[127, 2, 4, -2, 0, 0, 2, -126]])


def test_batchnorm_folding() -> None:
    model = make_conv_bn()
    # evaluated on the calibration inputs so that no tensor leaves its calibrated range (no clipping):
    # the remaining error is rounding noise of a few output steps; a wrong fold would be far off
    x = np.random.default_rng(1).uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32)
    qmodel, report = quantize_model(model, x)
    assert not any(n.op_type == "BatchNormalization" for n in qmodel.graph.node)
    check_qdq_structure(qmodel)
    expected, got = run_ort(model, x), run_ort(qmodel, x)
    out_scale = next(e["scale"] for e in report.layers if e["name"] == "y")
    err = np.abs(got - expected)
    print(
        f"Conv+BN: max |err| = {err.max():.4f} = {err.max() / out_scale:.2f} output steps, "
        f"output span {float(expected.max() - expected.min()):.3f}"
    )
    assert err.max() <= 5 * out_scale


def test_unsupported_op_is_rejected() -> None:
    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["s"], name="weird"), helper.make_node("Relu", ["s"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(ValueError, match=r"weird.*Sin"):
        quantize_model(model, np.zeros((2, 4), np.float32))


def test_batchnorm_without_conv_is_rejected() -> None:
    model = make_conv_bn()  # exposing the Conv output as a graph output prevents folding bn1 into it
    model.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 6, 8, 8]))
    with pytest.raises(ValueError, match=r"bn1.*BatchNormalization"):
        quantize_model(model, np.zeros((2, 1, 8, 8), np.float32))


@pytest.mark.parametrize("batch", ["N", 1])
def test_cnn_quantizes_and_runs(batch: int | str) -> None:
    model = make_cnn(batch=batch)
    x = np.random.default_rng(2).uniform(0, 1, size=(32, 1, 8, 8)).astype(np.float32)
    qmodel, report = quantize_model(model, x)
    check_qdq_structure(qmodel)
    expected, got = run_ort(model, x), run_ort(qmodel, x)
    assert got.shape == (32, 10)
    out_scale = next(e["scale"] for e in report.layers if e["name"] == "y")
    assert np.abs(got - expected).max() <= 5 * out_scale
    acts = {e["name"]: e for e in report.layers if e["kind"] == "activation"}
    assert acts["p1"]["scale"] == acts["r1"]["scale"]  # MaxPool shares its input's parameters
    assert acts["f"]["scale"] == acts["g"]["scale"]  # so does Flatten
    conv_weights = [e for e in report.layers if e["kind"] == "weight" and e["name"].startswith("conv")]
    assert [len(e["scale"]) for e in conv_weights] == [4, 8] and all(e["axis"] == 0 for e in conv_weights)


def test_residual_model() -> None:
    model = make_residual()
    x = np.random.default_rng(3).normal(size=(32, 2, 8, 8)).astype(np.float32)
    qmodel, report = quantize_model(model, x)
    check_qdq_structure(qmodel)
    ops = [n.op_type for n in qmodel.graph.node]
    assert "Constant" not in ops and ops.count("Add") == 2
    expected, got = run_ort(model, x), run_ort(qmodel, x)
    out_scale = next(e["scale"] for e in report.layers if e["name"] == "y")
    assert np.abs(got - expected).max() <= 5 * out_scale
    acts = {e["name"]: e for e in report.layers if e["kind"] == "activation"}
    assert "m" not in acts  # MatMul + Add(bias) is one layer: the accumulator is not quantized
    assert {"c2", "r1", "s"} <= set(acts)  # both residual operands and the sum are quantized


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_matches_onnxruntime_quantize_static(which: str, tmp_path) -> None:
    """Same initializer names and values as onnxruntime's QDQ quantize_static with uint8 activations.

    Differences allowed: float rounding of the float model evaluation (onnxruntime vs the onnx reference
    evaluator) and of onnxruntime's float32 arithmetic when it enlarges a weight scale for an int32 bias.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if which == "mlp":
        model, x_train, _, _, _ = make_digits_mlp("gemm")
        calib = x_train[:CALIB_SAMPLES]
    else:
        model = make_cnn()
        calib = np.random.default_rng(4).uniform(0, 1, size=(32, 1, 8, 8)).astype(np.float32)

    class OneBatch(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calib}])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    onnx.save(model, tmp_path / "float.onnx")
    quantize_static(
        tmp_path / "float.onnx",
        tmp_path / "ort.onnx",
        OneBatch(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    reference = inits_of(onnx.load(tmp_path / "ort.onnx"))
    ours = inits_of(quantize_model(model, calib)[0])
    assert set(ours) == set(reference)
    for name, value in ours.items():
        assert value.dtype == reference[name].dtype and value.shape == reference[name].shape, name
        np.testing.assert_allclose(
            value.astype(np.float64), reference[name].astype(np.float64), rtol=1e-6, atol=0, err_msg=name
        )


def test_cli_quantize_end_to_end(tmp_path) -> None:
    """`hwgen quantize` → the QDQ model imports into hwgen, its golden model is bit-exact with onnxruntime, and the
    int8 accuracy drop measured by hwgen's own golden model is at most 1.5 points."""
    import subprocess
    import sys

    import hwgen

    model, x_train, _, x_test, y_test = make_digits_mlp()
    paths = {name: tmp_path / f"{name}.npy" for name in ("calib", "x", "y")}
    np.save(paths["calib"], x_train[:CALIB_SAMPLES].astype(np.float32))
    np.save(paths["x"], x_test.astype(np.float32))
    np.save(paths["y"], y_test)
    onnx.save(model, tmp_path / "float.onnx")
    result = subprocess.run([sys.executable, "-m", "hwgen", "quantize", str(tmp_path / "float.onnx"),
                             "--calib", str(paths["calib"]), "-o", str(tmp_path / "q.onnx"),
                             "--labels", str(paths["y"]), "--eval", str(paths["x"])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = next(li for li in result.stdout.splitlines() if li.startswith("accuracy:"))
    drop = float(line.split("drop")[1].split()[0])
    assert drop <= MAX_ACCURACY_DROP_POINTS, line
    quantized = hwgen.load(tmp_path / "q.onnx")
    golden = quantized.run(x_test.astype(np.float32))
    np.testing.assert_array_equal(golden, run_ort(onnx.load(tmp_path / "q.onnx"), x_test.astype(np.float32)))
    float_acc = np.mean(float_outputs(model, x_test.astype(np.float32)).argmax(1) == y_test)
    assert line.startswith(f"accuracy: float {100 * float_acc:.2f}%")
    assert 100 * (float_acc - np.mean(golden.argmax(1) == y_test)) == pytest.approx(drop, abs=0.006)
