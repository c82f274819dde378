"""Convolutions and pooling on the dataflow pipeline in Amaranth's simulator: random shapes (kernel, stride,
padding, groups, depthwise), random pools (max, average, global average) and random legal foldings, each followed
by nothing, a conv or a dense layer; outputs bit-exact with the numpy model of the layers (``run_layers``, itself
checked against the golden conv/pool kernels in the systolic tests) and the measured latency and II equal to the
timing model's. Hypothesis: ``ci`` 25 examples per test, ``nightly`` 200."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_dataflow_top import run_top
from test_systolic_conv import conv_layer, draw_conv
from test_systolic_pool import draw_pool, sumpool_layer

from hwgen.arch.dataflow import compile_dataflow
from hwgen.arch.dataflow.compile import unfolded
from hwgen.arch.dataflow.config import CodeType
from hwgen.arch.dataflow.folding import legal_folds
from hwgen.arch.systolic.compile import Conv, GemmLayer, maxpool_layer, run_layers
from hwgen.errors import HwgenError
from hwgen.ir.fixed import FixedStep, FixedType


def random_fold(draw, layers: list[GemmLayer], in_type: CodeType) -> list[dict]:
    configs = unfolded(layers, in_type).configs
    return [draw(st.sampled_from([{"pe": c.pe, "simd": c.simd} for c in legal_folds(layer)])) for layer in configs]


def fit(layers: list[GemmLayer], lo: int, hi: int) -> list[GemmLayer]:
    """``layers`` (one conv's groups) for input codes in [lo, hi]: the zero point a code, the accumulator range
    the worst case."""
    zx = min(max(layers[0].zx, lo), hi)
    bound = max(int(np.abs(layer.weight).sum(axis=0).max()) for layer in layers) * max(zx - lo, hi - zx)
    return [replace(layer, zx=zx, acc_range=(-bound, bound)) for layer in layers]


def check(layers: list[GemmLayer], codes: np.ndarray, fold, in_type: CodeType) -> None:
    """Bit-exact with ``run_layers`` on the per-group layers; latency and II exactly the timing model's."""
    program = compile_dataflow(layers, fold=fold, input_type=in_type)
    run = run_top(program, codes)
    np.testing.assert_array_equal(run.outputs, run_layers(layers, codes))
    assert run.last_out[0] - run.first_in[0] == program.predicted_latency_cycles
    assert run.last_out[-1] - run.first_in[0] == program.config.predicted_cycles(len(codes))


def dense_tail(rng, c: int, oh: int, ow: int, lo: int, hi: int, source: str) -> GemmLayer:
    """Flatten + MatMul (a conv whose kernel covers the image), raw accumulators out."""
    n = int(rng.integers(1, 5))
    weight = rng.integers(-3, 4, size=(c * oh * ow, n))
    bound = int(np.abs(weight).sum(axis=0).max()) * max(abs(lo), abs(hi))
    flat = weight.reshape(c, oh, ow, n).transpose(1, 2, 0, 3).reshape(-1, n)
    return GemmLayer("fc", flat, 0, None, None, 0, 1, (-bound, bound), 6, (2 * bound).bit_length() + 1, None,
                     (source,), (c * oh * ow,), "t2", Conv((c, oh, ow), (oh, ow), flat_out=True))


@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_convs_and_foldings(seed, data) -> None:
    draw = data.draw
    rng = np.random.default_rng(seed)
    c_in, h, w, c_out, geometry = draw_conv(draw)
    in_bits = draw(st.integers(1, 4))
    layers = fit(conv_layer(rng, "conv0", "x", "t1", (c_in, h, w), c_out, *geometry, in_bits,
                            draw(st.integers(2, 4)), 3), 0, (1 << in_bits) - 1)
    oh, ow = layers[0].conv.out_hw
    tail = draw(st.sampled_from(["none", "conv", "dense"]))
    if tail == "conv":
        k2 = draw(st.integers(1, min(2, oh, ow)))
        layers += fit(conv_layer(rng, "conv1", "t1", "t2", (c_out, oh, ow), draw(st.integers(1, 3)), (k2, k2),
                                 (1, 1), (0, 0, 0, 0), 1, 3, 3, None), 0, 7)
    elif tail == "dense":
        layers.append(dense_tail(rng, c_out, oh, ow, 0, 7, "t1"))
    in_type = CodeType(in_bits + 1, True)
    codes = rng.integers(0, 1 << in_bits, size=(draw(st.integers(2, 3)), c_in * h * w))
    check(layers, codes, random_fold(draw, layers, in_type), in_type)


@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_pools_and_foldings(seed, data) -> None:
    draw = data.draw
    rng = np.random.default_rng(seed)
    kind, conv, lo, hi = draw_pool(draw)
    c, h, w = conv.in_shape
    if kind == "max":
        pool, out_lo, out_hi = maxpool_layer("maxpool", conv, lo, hi, "x", "t1"), lo, hi
    else:
        out_bits = draw(st.integers(1, 3))
        pool = sumpool_layer(rng, conv, draw(st.integers(lo, hi)), lo, hi, out_bits, "x", "t1")
        out_lo, out_hi = 0, (1 << out_bits) - 1
    oh, ow = conv.out_hw
    layers = [pool]
    tail = draw(st.sampled_from(["none", "conv", "dense"]))
    if tail == "conv":
        k2 = draw(st.integers(1, min(2, oh, ow)))
        layers += fit(conv_layer(rng, "conv1", "t1", "t2", (c, oh, ow), draw(st.integers(1, 3)), (k2, k2), (1, 1),
                                 (0, 0, 0, 0), 1, 3, 3, None), out_lo, out_hi)
    elif tail == "dense":
        layers.append(dense_tail(rng, c, oh, ow, out_lo, out_hi, "t1"))
    in_type = CodeType.of_range(lo, hi)
    codes = rng.integers(lo, hi + 1, size=(draw(st.integers(2, 3)), c * h * w))
    check(layers, codes, random_fold(draw, layers, in_type), in_type)


def test_grouped_fixed_point_convs_are_refused() -> None:
    rng = np.random.default_rng(0)
    layers = conv_layer(rng, "conv0", "x", "t1", (4, 4, 4), 4, (3, 3), (1, 1), (1, 1, 1, 1), 2, 3, 3, 2)
    step = FixedStep(0, FixedType(4, 4))
    layers = [replace(layer, thresholds=None, negate=None, steps=(step,)) for layer in layers]
    with pytest.raises(HwgenError, match="node 'conv0': the dataflow architecture runs grouped convolutions with "
                                         "threshold requantization only"):
        compile_dataflow(layers)


def add_layer(rng, channels: int, ka: int, kb: int, inputs: tuple[str, str], hi: int, out_bits: int) -> GemmLayer:
    """A residual Add of two code tensors (codes in [0, hi]) requantized by random thresholds."""
    eye = np.eye(channels, dtype=np.int64)
    bound = (abs(ka) + abs(kb)) * hi
    table = np.sort(rng.integers(-bound, bound + 2, size=(channels, (1 << out_bits) - 1)), axis=1)
    return GemmLayer("add", np.vstack([ka * eye, kb * eye]), 0, table, np.zeros(channels, bool), 0, 1,
                     (-bound, bound), 8, out_bits + 1, "rq_add", inputs, (channels, channels), "t3")


@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_residual_blocks_and_foldings(seed, data) -> None:
    """x → conv0 → t1 → conv1 (the branch) → t2; t3 = thresholds(ka·t2 + kb·t1) (the skip: t1 duplicated), then
    optionally a dense layer: the duplicate, the skip FIFO and the add unit."""
    draw = data.draw
    rng = np.random.default_rng(seed)
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.integers(2, 5))
    bits = draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    layers = fit(conv_layer(rng, "conv0", "x", "t1", (c, h, w), c, (k, k), (1, 1), (k // 2,) * 4, 1, 2, 3, bits),
                 0, 3)
    layers += fit(conv_layer(rng, "conv1", "t1", "t2", (c, h, w), c, (3, 3), (1, 1), (1, 1, 1, 1), 1, bits, 3, bits),
                  0, (1 << bits) - 1)
    oh, ow = layers[0].conv.out_hw
    if (oh, ow) != (h, w):                      # even kernels shrink the image: the branch conv keeps its size
        layers[-1:] = fit(conv_layer(rng, "conv1", "t1", "t2", (c, oh, ow), c, (1, 1), (1, 1), (0,) * 4, 1, bits, 3,
                                     bits), 0, (1 << bits) - 1)
    out_bits = draw(st.integers(1, 3))
    layers.append(add_layer(rng, c, draw(st.integers(-3, 3)), draw(st.integers(1, 3)), ("t2", "t1"),
                            (1 << bits) - 1, out_bits))
    if draw(st.booleans()):
        layers.append(dense_tail(rng, c, oh, ow, 0, (1 << out_bits) - 1, "t3"))
    in_type = CodeType(3, True)
    codes = rng.integers(0, 4, size=(draw(st.integers(2, 3)), c * h * w))
    check(layers, codes, random_fold(draw, layers, in_type), in_type)
