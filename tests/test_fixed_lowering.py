"""Lowering fixed-point casts to hardware stages: simplification and segmentation keep every code (property tests
over exhaustive input ranges), and ReuseFactors become foldings with that initiation interval."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwgen import HwgenError
from hwgen.arch.dataflow.compile import fold_config
from hwgen.arch.dataflow.config import CodeType, LayerConfig
from hwgen.arch.fixed import FixedStage
from hwgen.arch.requant import fixed_segments
from hwgen.ir import Node
from hwgen.ir.fixed import OVERFLOW, ROUNDING, FixedStep, FixedType, apply_steps, simplify_steps

CHANNELS = 3


@st.composite
def steps(draw, multiply: bool = False) -> tuple[FixedStep, ...]:
    """1–4 casts: random widths, fractions (left and right shifts), modes, per-channel biases, ReLUs and (with
    ``multiply``) per-channel multiplies."""
    result, frac = [], draw(st.integers(0, 4))
    for _ in range(draw(st.integers(1, 4))):
        width = draw(st.integers(2, 12))
        to = FixedType(width, width - draw(st.integers(-2, 8)), draw(st.booleans()), draw(st.sampled_from(ROUNDING)),
                       draw(st.sampled_from(OVERFLOW)))
        bias = np.array(draw(st.lists(st.integers(-40, 40), min_size=CHANNELS, max_size=CHANNELS)), np.int64)
        bias = bias if draw(st.booleans()) else np.array(0, np.int64)
        mult = np.array(draw(st.lists(st.integers(-5, 5), min_size=CHANNELS, max_size=CHANNELS)), np.int64) \
            if multiply and draw(st.booleans()) else np.array(1, np.int64)
        result.append(FixedStep(frac, to, mult, bias, draw(st.booleans())))
        frac = to.frac
    return tuple(result)


def exhaustive(lo: int, hi: int) -> np.ndarray:
    """Every input in [lo, hi] on every channel: (values, channels)."""
    return np.repeat(np.arange(lo, hi + 1)[:, None], CHANNELS, axis=1)


@given(steps(multiply=True), st.integers(-300, 0), st.integers(0, 300))
def test_simplify_steps_keeps_every_code(chain, lo: int, hi: int) -> None:
    x = exhaustive(lo, hi)
    simplified = simplify_steps(chain, np.array(lo), np.array(hi))
    assert len(simplified) <= len(chain)
    np.testing.assert_array_equal(apply_steps(simplified, x, 1), apply_steps(chain, x, 1))


def test_simplify_merges_exact_left_shifts() -> None:
    """hls4ml's 'auto' result types: a 16-bit accumulator cast exactly into ap_fixed<37,17> (a left shift by 10),
    then the ReLU's cast back to 16 bits, is one cast."""
    acc = FixedStep(10, FixedType(16, 6), bias=np.array([3, -4, 5]))
    auto = FixedStep(10, FixedType(37, 17))
    relu = FixedStep(20, FixedType(16, 6), relu=True)
    lo, hi = np.array(-1000), np.array(1000)                  # the wrap of the 16-bit accumulator cannot happen
    simplified = simplify_steps((acc, auto, relu), lo, hi)
    assert len(simplified) == 1 and simplified[0].relu and simplified[0].frac - simplified[0].to.frac == 0
    x = exhaustive(-1000, 1000)
    np.testing.assert_array_equal(apply_steps(simplified, x, 1), apply_steps((acc, auto, relu), x, 1))


def _cast_node(name: str, index: int, chain) -> Node:
    return Node("FixedCast", name, (f"t{index}",), (f"t{index + 1}",), {"steps": chain, "axis": 1})


@given(st.lists(steps(multiply=True), min_size=1, max_size=3), st.integers(-60, 0), st.integers(0, 60))
def test_segments_compose_to_the_casts(chains, lo: int, hi: int) -> None:
    """A run of casts on stored codes = its segments: each a diagonal multiply, then multiply-free stages."""
    nodes = [_cast_node(f"n{i}", i, chain) for i, chain in enumerate(chains)]
    segments = fixed_segments(nodes, (np.array(lo), np.array(hi)), "t0", mult_first=True)
    x = exhaustive(lo, hi)
    value = x
    for segment in segments:
        assert all(np.all(np.asarray(step.mult) == 1) for step in segment.steps)
        assert all(FixedStage.of(step) for step in segment.steps)
        mult = 1 if segment.mult is None else segment.mult
        value = apply_steps(segment.steps, value * mult, 1)
    all_steps = tuple(step for chain in chains for step in chain)
    np.testing.assert_array_equal(value, apply_steps(all_steps, x, 1))
    assert segments[-1].output == nodes[-1].outputs[0]


def test_stage_bias_width_is_signed() -> None:
    """Biases are stored two's complement: non-negative ones need a sign bit too (480 → 10 bits, not 9)."""
    stage = FixedStage.of(FixedStep(10, FixedType(11, 1), bias=np.array([0, 352, 480])))
    assert stage.bias_bits == 10
    assert FixedStage.of(FixedStep(4, FixedType(8, 4), bias=np.array([-256, 3]))).bias_bits == 9
    assert FixedStage.of(FixedStep(4, FixedType(8, 4))).bias_bits == 0


def test_multiply_after_rounded_products_is_refused() -> None:
    bn = FixedStep(4, FixedType(8, 4), np.array([2, 3, -1]))
    with pytest.raises(HwgenError, match="per-channel multiply right after a GEMM"):
        fixed_segments([_cast_node("bn", 0, (bn,))], (np.array(-8), np.array(8)), "acc")


def test_reuse_factor_folding() -> None:
    """ReuseFactor R: the cheapest folding with SF·NF = R exactly; layers without one meet the largest R."""
    dense = LayerConfig(mw=6, mh=5, pe=1, simd=1, in_type=CodeType(8, True), thresholds=1)
    other = LayerConfig(mw=5, mh=5, pe=1, simd=1, in_type=CodeType(1, False), thresholds=1)
    folded = fold_config([dense, other], ["d", "bn"], reuse={"d": 10}).layers
    assert folded[0].cycles == 10 and folded[0].pe * folded[0].simd == 3
    assert folded[1].cycles <= 10
    assert fold_config([dense], ["d"], reuse={"d": 1}).layers[0].fold == dense.fold.__class__(5, 6)
    with pytest.raises(HwgenError, match=r"'d' \(6×5\): ReuseFactor 4 is not"):
        fold_config([dense], ["d"], reuse={"d": 4})
