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
