"""Streamlining passes: each leaves the graph's results unchanged, bit for bit."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper

import hwgen
from hwgen import golden
from hwgen.ir import Chain, FloatOp, IntType, Node, Quantizer, quant_type
from hwgen.passes import CollapseShapeOps, streamline
from hwgen.passes.thresholds import MAX_THRESHOLD_BITS, thresholds_for
from onnx_helpers import mlp, set_init

F32 = np.float32


def requant_node(chain: Chain, quantizer: Quantizer, axis: int | None = 0) -> Node:
    return Node("Requant", "rq", ("acc",), ("out",), {"chain": chain, "quantizer": quantizer, "axis": axis})


finite = st.floats(-4, 4, allow_nan=False, width=32)
positive = st.floats(0.0009765625, 4, allow_nan=False, width=32)


@st.composite
def requantizers(draw):
    """Random per-channel chains (scale, bias, BatchNorm with either sign of gamma, ReLU, clip) and quantizers."""
    channels = draw(st.integers(1, 4))
    vec = lambda s: np.array(draw(st.lists(s, min_size=channels, max_size=channels)), F32)  # noqa: E731
    chain = Chain(np.float64(draw(positive)) * vec(positive).astype(np.float64))
    for kind in draw(st.lists(st.sampled_from(["add", "bn", "relu", "mul", "clip"]), max_size=4)):
        if kind == "add":
            chain = chain.then(FloatOp("add", (vec(finite),)))
        elif kind == "mul":
            chain = chain.then(FloatOp("mul", (vec(positive),)))
        elif kind == "bn":
            gamma = vec(finite)
            chain = chain.then(FloatOp("batchnorm", (gamma, vec(finite), vec(finite), vec(positive), F32(1e-5))))
        elif kind == "relu":
            chain = chain.then(FloatOp("relu"))
        else:
            chain = chain.then(FloatOp("clip", (F32(-draw(positive)), F32(draw(positive)))))
    bits = draw(st.integers(1, 6))
    signed = draw(st.booleans())
    style = draw(st.sampled_from(["qonnx", "qdq"]))
    dtype = quant_type(bits, signed, draw(st.booleans())) if style == "qonnx" else IntType(max(bits, 2), signed)
    zp = F32(0 if signed or style == "qonnx" else draw(st.integers(0, 3)))
    quantizer = Quantizer("bipolar" if bits == 1 and signed and style == "qonnx" else style,
                          np.asarray(draw(positive), F32), np.asarray(zp), dtype,
                          draw(st.sampled_from(["ROUND", "FLOOR", "CEIL", "HALF_UP"])))
    lo = draw(st.integers(-5000, 0))
    return requant_node(chain, quantizer), lo, lo + draw(st.integers(0, 10000))


@given(requantizers())
def test_thresholds_equal_requantizer(case) -> None:
    """Exhaustively over the accumulator range: MultiThreshold == quantizer(chain(acc)), per channel."""
    node, lo, hi = case
    attrs = thresholds_for(node, np.array(lo), np.array(hi))
    channels = attrs["thresholds"].shape[0]
    acc = np.broadcast_to(np.arange(lo, hi + 1), (channels, hi - lo + 1))
    direct = node.attrs["quantizer"].quantize(node.attrs["chain"].evaluate(acc, 0), 0)
    got = golden.multithreshold(acc, attrs["thresholds"], attrs["descending"], attrs["base"], attrs["step"],
                                0 if channels > 1 else None)
    np.testing.assert_array_equal(got, np.broadcast_to(direct, got.shape))


def test_negative_gamma_gives_descending_channel() -> None:
    bn = FloatOp("batchnorm", (np.array([1.0, -1.0], F32), np.zeros(2, F32), np.zeros(2, F32), np.ones(2, F32),
                               F32(0)))
    node = requant_node(Chain(np.array([0.5, 0.5])).then(bn), Quantizer("qonnx", np.asarray(F32(1)),
                                                                          np.asarray(F32(0)), IntType(3, True)))
    attrs = thresholds_for(node, np.array(-20), np.array(20))
    assert attrs["descending"].tolist() == [False, True]
    # acc * 0.5 rounded half to even: -3.5 → -4, -2.5 → -2, ... (and mirrored on the descending channel)
    assert attrs["thresholds"].tolist() == [[-6, -5, -2, -1, 2, 3, 6], [-6, -3, -2, 1, 2, 5, 6]]


def test_wide_requantizer_stays_exact_chain() -> None:
    """Outputs wider than MAX_THRESHOLD_BITS keep the float32 chain form (no 2^bits thresholds)."""
    model = set_init(mlp(act_bits=8), "b_out", 12.0)
    path_model = hwgen.Model(model)
    ops = [n.op for n in path_model.graph.nodes]
    assert ops == ["Quantize", "MatMul", "Requant", "Dequantize"]
    assert path_model.graph.nodes[2].attrs["quantizer"].dtype.bits == 12 > MAX_THRESHOLD_BITS
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(F32)
    assert len(np.unique(path_model.run_codes(x))) > 20


def shape_chain(steps: list[tuple[str, list[int]]], out_shape: list[int]) -> hwgen.Model:
    """The test MLP followed by Reshape (shape) / Transpose (perm) steps."""
    extra, inits, prev = [], [], "y"
    for i, (op, arg) in enumerate(steps):
        out = f"s{i}_out"
        if op == "Reshape":
            inits.append(onnx.numpy_helper.from_array(np.array(arg, np.int64), f"shape{i}"))
            extra.append(helper.make_node("Reshape", [prev, f"shape{i}"], [out], name=f"reshape{i}"))
        else:
            extra.append(helper.make_node("Transpose", [prev], [out], name=f"transpose{i}", perm=arg))
        prev = out
    model = mlp(extra_nodes=extra, output=prev)
    model.graph.initializer.extend(inits)
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(prev, onnx.TensorProto.FLOAT, out_shape))
    return hwgen.Model(model)


def assert_same_results(graph_a, graph_b, model: hwgen.Model) -> None:
    x = np.random.default_rng(2).normal(size=(16, 8)).astype(F32)
    out = model.graph.outputs[0]
    np.testing.assert_array_equal(golden.run(graph_a, x)[out], golden.run(graph_b, x)[out])


def test_collapse_shape_ops_merges() -> None:
    model = shape_chain([("Reshape", [1, 2, 2]), ("Transpose", [0, 2, 1]), ("Reshape", [1, 4]),
                         ("Reshape", [1, 2, 2])], [1, 2, 2])
    assert [n.op for n in model.imported.nodes].count("Reshape") == 3
    collapsed = streamline(model.imported, (CollapseShapeOps(),))
    # the last two reshapes merge into (1,2,2) → (1,2,2), an identity, which then disappears
    assert [n.op for n in collapsed.nodes][3:] == ["Reshape", "Transpose", "Dequantize"]
    assert_same_results(collapsed, model.imported, model)


def test_collapse_shape_ops_removes_identities() -> None:
    """Transposes that cancel and reshapes that end where they started disappear."""
    model = shape_chain([("Reshape", [1, 2, 2]), ("Transpose", [0, 2, 1]), ("Transpose", [0, 2, 1]),
                         ("Reshape", [1, 4])], [1, 4])
    collapsed = streamline(model.imported, (CollapseShapeOps(),))
    assert [n.op for n in collapsed.nodes] == ["Quantize", "MatMul", "Requant", "Dequantize"]
    assert_same_results(collapsed, model.imported, model)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_multithreshold_matches_requant_in_graph(bits: int) -> None:
    model = set_init(mlp(), "b_out", float(bits))
    loaded = hwgen.Model(model)
    assert [n.op for n in loaded.graph.nodes] == ["Quantize", "MatMul", "MultiThreshold", "Dequantize"]
    assert loaded.graph.nodes[2].attrs["thresholds"].shape == (4, 2 ** bits - 1)   # per-channel bias
    x = (np.random.default_rng(bits).normal(size=(256, 8)) * 4).astype(F32)
    np.testing.assert_array_equal(loaded.codes(x, loaded.imported)["y"], loaded.codes(x)["y"])


def test_permutations_fold_into_matmul_weights(zoo_dir) -> None:
    """mlp_ops transposes and reshapes its (4, 16) input before the first MatMul: the pass folds that order into
    the weight rows, leaving one flatten; results are unchanged (bit for bit)."""
    from modelzoo import build

    zoo = build("mlp_ops_qonnx", zoo_dir)
    model = hwgen.load(zoo.path)
    assert "Transpose" in [n.op for n in model.imported.nodes]
    assert [n.op for n in model.graph.nodes] == ["Quantize", "Reshape", "MatMul", "MultiThreshold", "MatMul",
                                                 "MultiThreshold", "MatMul", "Dequantize"]
    out = model.graph.outputs[0]
    np.testing.assert_array_equal(golden.run(model.imported, zoo.inputs)[out], model.run(zoo.inputs))
