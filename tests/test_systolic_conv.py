"""Convolutions on the systolic array with implicit im2col, in Amaranth's simulator: random conv chains (kernel,
stride, padding, groups, channels), on both dataflows, bit-exact with the numpy model of the array's layers and
with the golden model's conv, the cycle counter equal to the prediction, and the input image written as exactly
C·H·W values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_systolic_sim import check

from hwgen import kernels
from hwgen.arch.systolic.compile import (
    Conv,
    GemmLayer,
    compile_layers,
    default_config,
    run_layers,
)
from hwgen.errors import HwgenError


def conv_layer(rng: np.random.Generator, name: str, source: str, output: str, in_shape: tuple[int, int, int],
               out_channels: int, kernel: tuple[int, int], strides: tuple[int, int], pads: tuple[int, ...],
               groups: int, in_bits: int, w_bits: int, out_bits: int | None) -> list[GemmLayer]:
    """One GemmLayer per group of a conv with random weights, zero point and (if ``out_bits``) thresholds."""
    c = in_shape[0]
    cg, ng = c // groups, out_channels // groups
    kh, kw = kernel
    lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    weight = rng.integers(lo, hi + 1, size=(kh * kw * cg, out_channels))
    zx = int(rng.integers(0, 3))
    a_hi = (1 << in_bits) - 1
    bound = int(np.abs(weight).sum(axis=0).max()) * max(zx, a_hi - zx)
    layers = []
    per_channel = bool(rng.integers(0, 2))
    if out_bits is not None:
        spread = max(1, int(np.sqrt(kh * kw * cg)) * 8 * max(1, a_hi // 4))
        table = np.sort(rng.integers(-spread, spread + 1, size=(out_channels if per_channel else 1,
                                                                 (1 << out_bits) - 1)), axis=1)
        negate = rng.random(table.shape[0]) < 0.3
    for g in range(groups):
        geometry = Conv(in_shape, kernel, strides, pads, groups, g)
        cols = slice(g * ng, (g + 1) * ng)
        if out_bits is None:
            layers.append(GemmLayer(f"{name}#{g}", weight[:, cols], zx, None, None, 0, 1, (-bound, bound),
                                    in_bits + 1, (2 * bound).bit_length() + 1, None, (source,), (kh * kw * cg,),
                                    output, geometry))
        else:
            t = table[cols] if per_channel else table
            n = negate[cols] if per_channel else negate
            layers.append(GemmLayer(f"{name}#{g}", weight[:, cols], zx, t, n, 0, 1, (-bound, bound), in_bits + 1,
                                    out_bits + 1, f"rq_{name}", (source,), (kh * kw * cg,), output, geometry))
    return layers


def golden_conv(layer_group: list[GemmLayer], x: np.ndarray) -> np.ndarray:
    """The golden model's grouped conv (kernels.conv2d) on the accumulators of one conv's layers."""
    conv = layer_group[0].conv
    kh, kw = conv.kernel
    weight = np.concatenate([layer.weight for layer in layer_group], axis=1)       # (KH·KW·Cg, M)
    weight = weight.reshape(kh, kw, conv.cg, -1).transpose(3, 2, 0, 1)
    return kernels.conv2d(x - layer_group[0].zx, weight, conv.strides, conv.pads, (1, 1), conv.groups, 1 << 60)


def pads_for(draw, kernel: int) -> tuple[int, int]:
    lo = draw(st.integers(0, kernel - 1))
    return lo, draw(st.integers(0, kernel - 1 - lo))


def draw_conv(draw) -> tuple[int, int, int, int, tuple]:
    """A random conv: input channels, height, width, output channels and ``conv_layer``'s (kernel, strides, pads,
    groups); dense, grouped or depthwise, padded and strided."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = groups > 1 and draw(st.booleans())
    c_in = groups * draw(st.integers(1, 2))
    c_out = c_in if depthwise else groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(kh, 6)), draw(st.integers(kw, 6))
    pt, pb = pads_for(draw, kh)
    pl, pr = pads_for(draw, kw)
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    groups = 1 if depthwise and c_in == 1 else (c_in if depthwise else groups)
    return c_in, h, w, c_out, ((kh, kw), strides, (pt, pl, pb, pr), groups)


@given(rows=st.integers(1, 4), cols=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       dataflow=st.sampled_from(["os", "ws"]), data=st.data())
def test_random_convs_bit_exact_with_exact_cycles(rows, cols, seed, dataflow, data) -> None:
    draw = data.draw
    rng = np.random.default_rng(seed)
    c_in, h, w, c_out, geometry = draw_conv(draw)
    in_bits = draw(st.integers(1, 4))
    first = conv_layer(rng, "conv0", "x", "t1", (c_in, h, w), c_out, *geometry, in_bits, draw(st.integers(2, 4)), 3)
    geometry = first[0].conv
    oh, ow = geometry.out_hw
    tail = draw(st.sampled_from(["none", "conv", "dense"]))
    layers = list(first)
    if tail == "conv":                        # a second conv (last, raw accumulators) on the strided grid
        k2 = draw(st.integers(1, min(2, oh, ow)))
        layers += conv_layer(rng, "conv1", "t1", "t2", (c_out, oh, ow), draw(st.integers(1, 3)), (k2, k2), (1, 1),
                             (0, 0, 0, 0), 1, 3, 3, None)
    elif tail == "dense":                     # flatten + MatMul: a conv whose kernel covers the image
        n = draw(st.integers(1, 4))
        weight = rng.integers(-3, 4, size=(c_out * oh * ow, n))
        bound = int(np.abs(weight).sum(axis=0).max()) * 7
        flat = weight.reshape(c_out, oh, ow, n).transpose(1, 2, 0, 3).reshape(-1, n)
        layers.append(GemmLayer("fc", flat, 0, None, None, 0, 1, (-bound, bound), 4, (2 * bound).bit_length() + 1,
                                None, ("t1",), (c_out * oh * ow,), "t2", Conv((c_out, oh, ow), (oh, ow),
                                                                             flat_out=True)))
    else:
        layers[-1:] = layers[-1:]
    samples = draw(st.integers(1, 3))
    codes = rng.integers(0, 1 << in_bits, size=(samples, c_in * h * w))
    # the array's numpy model agrees with the golden model's conv on the first layer's accumulators
    acc = golden_conv(first, codes.reshape(samples, c_in, h, w))
    no_thresholds = [GemmLayer(layer.name, layer.weight, layer.zx, None, None, 0, 1, layer.acc_range, layer.in_bits,
                               64, None, layer.inputs, layer.splits, layer.output, layer.conv) for layer in first]
    np.testing.assert_array_equal(run_layers(no_thresholds, codes), acc.reshape(samples, -1))
    cfg = default_config(layers, rows=rows, cols=cols, dataflow=dataflow, batch=samples)
    program = compile_layers(layers, cfg)
    assert len(program.input_rows(codes)) == codes.size          # exactly C·H·W values per image, no im2col copy
    check(layers, cfg, codes)


def test_ws_fold_reading_two_words_of_a_bank_pads_the_channels() -> None:
    """On 4×2 a 3×3 conv over 3 channels would read, in one fold, word 1 of kernel position 0 and word 0 of position
    1 from one bank; the compiler gives each position 4 rows instead (one fold each), still bit-exact."""
    from hwgen.arch.systolic.compile import plan, ws_conflict

    rng = np.random.default_rng(5)
    layers = conv_layer(rng, "conv0", "x", "t1", (3, 5, 5), 2, (3, 3), (1, 1), (1, 1, 1, 1), 1, 3, 3, None)
    planned = plan(layers, 4, 2, "ws")
    feed, pitch = planned.feeds[0], planned.layouts["x"].pitch
    assert ws_conflict(feed, pitch, 3, 4, 2) and not ws_conflict(feed, pitch, 4, 4, 2)
    assert planned.channel_rows == (4,) and planned.kp == (36,)
    cfg = default_config(layers, rows=4, cols=2, dataflow="ws", batch=2)
    check(layers, cfg, rng.integers(0, 8, size=(2, 75)))


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_only_output_pixels_are_computed(dataflow: str) -> None:
    """An unpadded 3×3 conv over 10×12 on 4×4: the rows the array computes are exactly the 8×10 output pixels of
    every sample (the input's pitch and slots are picked for it), and OS kp is K itself (no padding to C)."""
    rng = np.random.default_rng(2)
    layers = conv_layer(rng, "conv0", "x", "t1", (3, 10, 12), 4, (3, 3), (1, 1), (0, 0, 0, 0), 1, 3, 3, None)
    program = compile_layers(layers, default_config(layers, rows=4, cols=4, dataflow=dataflow, batch=3))
    [instr] = program.instructions(3)
    assert instr["samples"] == 3 * 8 * 10
    assert instr["kp"] == (27 if dataflow == "os" else 28)


def test_image_inputs_are_not_streamed() -> None:
    rng = np.random.default_rng(2)
    layers = conv_layer(rng, "conv0", "x", "t1", (1, 4, 4), 2, (3, 3), (1, 1), (0, 0, 0, 0), 1, 3, 3, None)
    program = compile_layers(layers, default_config(layers, rows=2, cols=2, batch=2))
    with pytest.raises(HwgenError, match=r"inputs that are images \(a convolution's input or output\) are "
                                         r"preloaded and read back, not streamed; run at most 2 samples"):
        program.instructions(5, stream=True)
