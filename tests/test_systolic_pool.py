"""Pooling on the systolic array (MaxPool in the PEs' max mode, SumPool = AveragePool / GlobalAveragePool as a conv
with identity weights, both through the implicit-im2col feed), in Amaranth's simulator: random pools (kernel,
stride, padding, channels, signed and unsigned codes, a conv or dense layer after) bit-exact with the golden
model's pooling and with the numpy model of the array's layers, and the cycle counter equal to the prediction."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_systolic_conv import conv_layer, pads_for
from test_systolic_sim import check

from hwgen import kernels
from hwgen.arch.systolic.compile import (
    Conv,
    GemmLayer,
    compile_layers,
    default_config,
    maxpool_layer,
    pool_weight,
    run_layers,
)


def sumpool_layer(rng: np.random.Generator, conv: Conv, zx: int, lo: int, hi: int, out_bits: int | None,
                  source: str, output: str) -> GemmLayer:
    """A SumPool (window sums of ``code - zx``) with random thresholds (an AveragePool's requantizer) or none."""
    kh, kw = conv.kernel
    window = kh * kw
    acc_lo, acc_hi = window * min(lo - zx, 0), window * max(hi - zx, 0)
    in_bits = max((-min(lo, 0) - 1).bit_length(), max(hi, 0).bit_length()) + 1
    k = conv.cg * window
    if out_bits is None:
        return GemmLayer("sumpool", pool_weight(conv), zx, None, None, 0, 1, (acc_lo, acc_hi), in_bits,
                         max(acc_lo.bit_length(), acc_hi.bit_length()) + 2, None, (source,), (k,), output, conv, "sum")
    table = np.sort(rng.integers(acc_lo, acc_hi + 2, size=(1, (1 << out_bits) - 1)), axis=1)
    return GemmLayer("sumpool", pool_weight(conv), zx, table, np.zeros(1, bool), 0, 1, (acc_lo, acc_hi), in_bits,
                     out_bits + 1, "rq_sumpool", (source,), (k,), output, conv, "sum")


def draw_pool(draw) -> tuple[str, Conv, int, int]:
    """A random pooling ("max", "avg" or "global"), its window geometry and the input codes' range [lo, hi]."""
    kind = draw(st.sampled_from(["max", "avg", "global"]))
    c = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(kh, 6)), draw(st.integers(kw, 6))
    if kind == "global":
        kh, kw, strides, pads = h, w, (1, 1), (0, 0, 0, 0)
    else:
        pt, pb = pads_for(draw, kh)
        pl, pr = pads_for(draw, kw)
        strides, pads = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), (pt, pl, pb, pr)
    lo = draw(st.integers(-4, 0))
    return kind, Conv((c, h, w), (kh, kw), strides, pads), lo, lo + draw(st.integers(1, 12))


@given(rows=st.integers(1, 4), cols=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       dataflow=st.sampled_from(["os", "ws"]), data=st.data())
def test_random_pools_bit_exact_with_exact_cycles(rows, cols, seed, dataflow, data) -> None:
    draw = data.draw
    rng = np.random.default_rng(seed)
    kind, conv, lo, hi = draw_pool(draw)
    c, h, w = conv.in_shape
    kh, kw = conv.kernel
    strides, pads = conv.strides, conv.pads
    samples = draw(st.integers(1, 3))
    codes = rng.integers(lo, hi + 1, size=(samples, c, h, w))
    if kind == "max":
        pool = maxpool_layer("maxpool", conv, lo, hi, "x", "t1")
        expected = kernels.windows(codes, (kh, kw), strides, pads, (1, 1), False, np.iinfo(np.int64).min).max(
            axis=(-2, -1))
        out_lo, out_hi = lo, hi
    else:
        zx = draw(st.integers(lo, hi))
        raw = sumpool_layer(rng, conv, zx, lo, hi, None, "x", "t1")
        expected = kernels.windows(codes - zx, (kh, kw), strides, pads, (1, 1), False, 0).sum(axis=(-2, -1))
        out_bits = draw(st.integers(1, 3))
        pool = sumpool_layer(rng, conv, zx, lo, hi, out_bits, "x", "t1")
        out_lo, out_hi = 0, (1 << out_bits) - 1
        # the array's numpy model of the window sums is the golden SumPool
        np.testing.assert_array_equal(run_layers([raw], codes.reshape(samples, -1)), expected.reshape(samples, -1))
    if kind == "max":      # the array's numpy model of the max-mode conv and identity requantizer is the golden MaxPool
        np.testing.assert_array_equal(run_layers([pool], codes.reshape(samples, -1)), expected.reshape(samples, -1))
    oh, ow = conv.out_hw
    layers = [pool]
    tail = draw(st.sampled_from(["none", "conv", "dense"]))
    if tail == "conv":                     # a conv (last, raw accumulators) on the pooled, possibly spread grid
        k2 = draw(st.integers(1, min(2, oh, ow)))
        layers += conv_layer(rng, "conv1", "t1", "t2", (c, oh, ow), draw(st.integers(1, 3)), (k2, k2), (1, 1),
                             (0, 0, 0, 0), 1, 3, 3, None)
        layers[-1] = replace(layers[-1], in_bits=max(out_hi.bit_length(), (-out_lo).bit_length()) + 2)
    elif tail == "dense":                  # flatten + MatMul: a conv whose kernel covers the pooled image
        n = draw(st.integers(1, 4))
        weight = rng.integers(-3, 4, size=(c * oh * ow, n))
        bound = int(np.abs(weight).sum(axis=0).max()) * max(abs(out_lo), abs(out_hi))
        flat = weight.reshape(c, oh, ow, n).transpose(1, 2, 0, 3).reshape(-1, n)
        layers.append(GemmLayer("fc", flat, 0, None, None, 0, 1, (-bound, bound), 6, (2 * bound).bit_length() + 1,
                                None, ("t1",), (c * oh * ow,), "t2", Conv((c, oh, ow), (oh, ow), flat_out=True)))
    cfg = default_config(layers, rows=rows, cols=cols, dataflow=dataflow, batch=samples)
    program = compile_layers(layers, cfg)
    assert len(program.input_rows(codes.reshape(samples, -1))) == codes.size
    check(layers, cfg, codes.reshape(samples, -1))


def test_unsupported_pools_are_refused_by_name() -> None:
    """ceil_mode's partial windows and dilated pools are refused, naming the node; ceil_mode that adds no partial
    window is accepted."""
    from hwgen.arch.systolic.compile import _pool_conv
    from hwgen.errors import HwgenError
    from hwgen.ir import Node

    attrs = {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "dilations": (1, 1), "ceil_mode": True}
    assert _pool_conv(Node("MaxPool", "p", ("x",), ("y",), attrs), (1, 3, 4, 4)).out_hw == (2, 2)
    with pytest.raises(HwgenError, match=r"node 'p' \(MaxPool\): ceil_mode adds a partial window"):
        _pool_conv(Node("MaxPool", "p", ("x",), ("y",), attrs), (1, 3, 5, 5))
    with pytest.raises(HwgenError, match=r"node 'q' \(MaxPool\): dilation \(2, 2\)"):
        _pool_conv(Node("MaxPool", "q", ("x",), ("y",), {**attrs, "dilations": (2, 2)}), (1, 3, 5, 5))


def test_max_mode_only_in_designs_that_pool_max() -> None:
    """The PEs' max mode is hardware only where a layer needs it: default_config turns it on for a MaxPool, the
    Verilog of a design without one has no comparator path, and a MaxPool on PEs without it is refused by name."""
    from amaranth.back import verilog

    from hwgen.arch.systolic.pe import OutputStationaryPE
    from hwgen.errors import HwgenError

    pool = maxpool_layer("maxpool", Conv((2, 4, 4), (2, 2), (2, 2), (0, 0, 0, 0)), 0, 7, "x", "t1")
    cfg = default_config([pool], rows=2, cols=2, dataflow="os", batch=1)
    assert cfg.max_pool
    with pytest.raises(HwgenError, match=r"^node 'maxpool': MaxPool needs PEs with a max mode; the configuration "
                                         r"has max_pool=False$"):
        compile_layers([pool], replace(cfg, max_pool=False))
    for max_pool in (False, True):
        pe = OutputStationaryPE(replace(cfg, max_pool=max_pool))
        assert ("max_mode" in pe.signature.members) == max_pool
        assert (" > " in verilog.convert(pe, name="pe")) == max_pool
