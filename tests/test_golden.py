"""The golden model reproduces every zoo model exactly: integer codes of every quantized activation equal the
reference's (qonnx execute_onnx / onnxruntime with optimizations off), outputs equal to float32 rounding with the
same argmax, and the streamlined (threshold) graph equals the imported one bit for bit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import hwgen
from modelzoo import NAMES, build
from reference import run_reference


def covered_by_clip(model: onnx.ModelProto) -> set[str]:
    """QuantizeLinear outputs read only by a Clip: their codes are checked at the Clip's output."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"
            and [u.op_type for u in users.get(n.output[0], [])] == ["Clip"]}


@pytest.mark.parametrize("name", NAMES)
def test_bit_exact_with_reference(name: str, zoo_dir: Path) -> None:
    zoo = build(name, zoo_dir)
    ref = run_reference(zoo)
    model = hwgen.load(zoo.path)
    outputs = model.run(zoo.inputs)
    codes = model.codes(zoo.inputs)

    expected = set(ref.codes) - covered_by_clip(onnx.load(zoo.path))
    assert expected <= set(codes), f"golden lacks codes of {sorted(expected - set(codes))}"
    for tensor in expected:
        np.testing.assert_array_equal(codes[tensor], ref.codes[tensor].reshape(codes[tensor].shape),
                                      err_msg=f"codes of {tensor}")
    reference = ref.outputs.reshape(outputs.shape)
    np.testing.assert_allclose(outputs, reference, rtol=2e-6, atol=2e-7 * float(np.abs(reference).max()))
    flat_out, flat_ref = outputs.reshape(len(outputs), -1), reference.reshape(len(reference), -1)
    assert np.array_equal(flat_out.argmax(1), flat_ref.argmax(1))


@pytest.mark.parametrize("name", NAMES)
def test_streamlining_is_bit_exact(name: str, zoo_dir: Path) -> None:
    """Imported graph (float32 requantizer chains) == streamlined graph (integer thresholds), bit for bit, also on
    inputs far outside the calibration range (every clamp and threshold edge exercised)."""
    zoo = build(name, zoo_dir)
    model = hwgen.load(zoo.path)
    rng = np.random.default_rng(1)
    wide = (zoo.inputs * rng.uniform(0, 8, size=zoo.inputs.shape)).astype(np.float32)
    for x in (zoo.inputs, wide):
        before = model.codes(x, model.imported)
        after = model.codes(x)
        assert before.keys() == after.keys()
        for tensor in before:
            np.testing.assert_array_equal(before[tensor], after[tensor], err_msg=tensor)
        np.testing.assert_array_equal(hwgen.golden.run(model.imported, x)[model.graph.outputs[0]], model.run(x))
    assert not any(n.op == "Requant" and n.attrs["quantizer"].dtype.bits <= 10 for n in model.graph.nodes)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.75])
def test_dense_residual_bit_exact(ratio: float, tmp_path: Path) -> None:
    """A dense residual Add whose branches have equal, power-of-two-related and unrelated scales.

    With equal or power-of-two-related scales the reference's float sum is exact and the codes are equal. With
    unrelated scales (0.2 and 0.15) the reference adds two rounded float32 values; hwgen rounds the exact sum.
    The codes may then differ, but only where the exact value lies within float32 error of a rounding boundary:
    the test proves every difference is such a case.
    """
    from fractions import Fraction

    from modelzoo import ZooModel
    from onnx_helpers import residual_mlp

    path = tmp_path / "residual.onnx"
    onnx.save(residual_mlp(skip_scale_ratio=ratio), path)
    x = np.random.default_rng(4).normal(size=(32, 8)).astype(np.float32)
    ref = run_reference(ZooModel("residual", path, "qonnx", x))
    model = hwgen.load(path)
    codes = model.codes(x)
    scales = {i.name: Fraction(float(onnx.numpy_helper.to_array(i))) for i in onnx.load(path).graph.initializer
              if i.name in ("s_y", "s_h", "s_z")}
    differing_samples = set()
    for tensor in ref.codes:
        expected = ref.codes[tensor].reshape(codes[tensor].shape)
        if ratio in (1.0, 2.0) or tensor != "z":
            np.testing.assert_array_equal(codes[tensor], expected, err_msg=tensor)
            continue
        for index in zip(*np.nonzero(codes[tensor] != expected)):
            exact = (scales["s_y"] * int(codes["y"][index]) + scales["s_h"] * int(codes["h"][index])) / scales["s_z"]
            distance = abs(exact - (exact.numerator // exact.denominator) - Fraction(1, 2))
            assert distance <= 4 * Fraction(1, 2 ** 24) * abs(exact), (index, float(exact))
            differing_samples.add(int(index[0]))
    same = [i for i in range(len(x)) if i not in differing_samples]
    assert len(same) >= len(x) - 2
    np.testing.assert_allclose(model.run(x)[same], ref.outputs[same], rtol=2e-6, atol=1e-6)
