"""Fixed-point stages in hardware (hwgen.arch.fixed) equal the IR's ap_fixed casts (hwgen.ir.fixed) bit for bit:
every quantization × overflow mode, signed and unsigned results, left and right shifts (also shifts past every
bit), biases and ReLU, in Amaranth's simulator; the elaboration-time stage and the run-time stage alike."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.lib import data
from amaranth.sim import Simulator

from hwgen.arch.fixed import FixedStage, encode_stage, identity_fields, stage_const, stage_fields, stage_var
from hwgen.ir.fixed import OVERFLOW, ROUNDING, FixedStep, FixedType

IN_BITS = 6
X = np.arange(-(1 << (IN_BITS - 1)), 1 << (IN_BITS - 1))


def expected(stage: FixedStage, x: np.ndarray, bias: int) -> np.ndarray:
    """The IR's cast: input frac = shift + output frac (any output frac will do: use 0)."""
    to = FixedType(stage.width, stage.width, stage.signed, stage.rounding, stage.overflow)
    return FixedStep(stage.shift, to, bias=np.array(bias), relu=stage.relu).apply(x, None)


def run_comb(m: Module, inputs: dict, outputs: list, vectors: list[dict]) -> list[list[int]]:
    """Settle combinational ``m`` for every vector of input values; the outputs' values per vector."""
    results: list[list[int]] = []

    async def bench(ctx):
        for vector in vectors:
            for name, value in vector.items():
                ctx.set(inputs[name], value)
            results.append([ctx.get(o) for o in outputs])

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("shift,width,is_signed,relu", [
    (-2, 5, True, False), (0, 3, True, True), (1, 4, False, False), (2, 3, True, False), (3, 5, False, True),
    (6, 2, True, False), (9, 3, False, False)])
def test_const_stage_every_mode(shift: int, width: int, is_signed: bool, relu: bool) -> None:
    """One module per structure with every (rounding, overflow) stage in parallel on the same input and bias."""
    m = Module()
    x = Signal(signed(IN_BITS))
    bias = Signal(signed(4))
    stages = [FixedStage(shift, q, width, is_signed, o, relu, 4) for q, o in itertools.product(ROUNDING, OVERFLOW)]
    outs = [stage_const(m, x, stage, bias, f"s{i}") for i, stage in enumerate(stages)]
    biases = (-5, 0, 7)
    vectors = [{"x": int(v), "b": b} for b in biases for v in X]
    got = np.array(run_comb(m, {"x": x, "b": bias}, outs, vectors))
    for i, stage in enumerate(stages):
        want = np.concatenate([expected(stage, X, b) for b in biases])
        np.testing.assert_array_equal(got[:, i], want, err_msg=str(stage))


def test_runtime_stage_every_mode() -> None:
    """One module; shift, modes, width, signedness and ReLU as run-time fields."""
    bits = 10
    m = Module()
    x = Signal(signed(IN_BITS))
    bias = Signal(signed(bits))
    fields = Signal(data.StructLayout(stage_fields()))
    out = stage_var(m, x, bias, fields, bits, "stage")
    cases = [FixedStage(shift, q, width, is_signed, o, relu, 4)
             for shift, width, is_signed, relu in [(-3, 7, True, False), (0, 4, False, True), (1, 5, True, True),
                                                   (2, 3, False, False), (4, 2, True, False), (8, 3, True, True),
                                                   (20, 1, False, False)]
             for q, o in itertools.product(ROUNDING, OVERFLOW)]
    xs = X[::3]
    vectors, want = [], []
    for stage in cases:
        for b in (-6, 0, 5):
            vectors += [{"x": int(v), "b": b, "f": encode_stage(stage)} for v in xs]
            want.append(expected(stage, xs, b))

    async def bench(ctx):
        for vector in vectors:
            ctx.set(x, vector["x"])
            ctx.set(bias, vector["b"])
            for name, value in vector["f"].items():
                ctx.set(getattr(fields, name), value)
            got.append(ctx.get(out))

    got: list[int] = []
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(np.array(got), np.concatenate(want))


def test_identity_fields_leave_values_alone() -> None:
    bits = 8
    m = Module()
    x = Signal(signed(bits))
    fields = Signal(data.StructLayout(stage_fields()))
    out = stage_var(m, x, Signal(signed(bits)), fields, bits, "stage")
    values = list(range(-(1 << (bits - 1)), 1 << (bits - 1), 7))

    async def bench(ctx):
        for name, value in identity_fields(bits).items():
            ctx.set(getattr(fields, name), value)
        for v in values:
            ctx.set(x, v)
            got.append(ctx.get(out))

    got: list[int] = []
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == values
