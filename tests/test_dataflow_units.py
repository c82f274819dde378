"""Dataflow stream blocks in Amaranth's simulator, each with random backpressure on both sides: FIFO, width
converters, the standalone threshold unit and the MVAU (integer, bipolar XNOR, passthrough), bit-exact with numpy /
``golden.multithreshold``; with no stalls, their latencies are the documented ones the cycle model uses."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth import signed, unsigned
from stream_helpers import Clock, pack, receive, send, simulate, stream_ends, unpack
from test_systolic_sim import random_layers

from hwgen.arch.dataflow import CodeType, LayerConfig, compile_dataflow
from hwgen.arch.dataflow.compile import threshold_image, weight_image
from hwgen.arch.dataflow.dwc import WidthConverter
from hwgen.arch.dataflow.fifo import LATENCY as FIFO_LATENCY
from hwgen.arch.dataflow.fifo import StreamFIFO
from hwgen.arch.dataflow.mvau import MVAU, latency
from hwgen.arch.dataflow.thresholds import LATENCY as THRESHOLD_LATENCY
from hwgen.arch.dataflow.thresholds import Thresholds
from hwgen.arch.systolic.compile import GemmLayer, run_layers
from hwgen.golden import multithreshold

STALLS = [(1.0, 1.0), (0.5, 0.7), (0.9, 0.3)]          # (p_valid, p_ready)


def run_stream(dut, beats: list[int], count: int, seed: int, p_valid: float, p_ready: float, setup=None):
    """Send raw ``beats`` into ``dut.i``, collect ``count`` raw beats from ``dut.o``; returns (sent, got)."""
    rng = np.random.default_rng(seed)
    result = {}

    async def producer(ctx):
        clock = Clock()
        if setup is not None:
            await setup(ctx, clock)
        result["sent"] = await send(ctx, stream_ends(dut.i), [(b,) for b in beats], clock, rng, p_valid)

    async def consumer(ctx):
        result["got"] = await receive(ctx, stream_ends(dut.o), count, Clock(), np.random.default_rng(seed + 1),
                                      p_ready)

    simulate(dut, producer, consumer)
    return result["sent"], result["got"]


@pytest.mark.parametrize("p_valid, p_ready", STALLS)
@pytest.mark.parametrize("depth", [3, 5])
def test_fifo_passes_every_beat_in_order(depth: int, p_valid: float, p_ready: float) -> None:
    beats = list(np.random.default_rng(depth).integers(0, 256, size=40))
    sent, got = run_stream(StreamFIFO(unsigned(8), depth), beats, len(beats), depth, p_valid, p_ready)
    assert [b for b, in got.beats] == beats
    if p_valid == p_ready == 1.0:
        assert got.cycles[0] == sent.cycles[0] + FIFO_LATENCY
        assert got.cycles == list(range(got.cycles[0], got.cycles[0] + len(beats)))


@pytest.mark.parametrize("p_valid, p_ready", STALLS)
@pytest.mark.parametrize("lanes_in, lanes_out", [(1, 3), (4, 2), (3, 3), (2, 3), (6, 4), (5, 2)])
def test_width_converter_keeps_code_order(lanes_in: int, lanes_out: int, p_valid: float, p_ready: float) -> None:
    bits = 3
    codes = np.random.default_rng(lanes_in * 7 + lanes_out).integers(-4, 4, size=lanes_in * lanes_out * 4)
    beats = [pack(row, bits) for row in codes.reshape(-1, lanes_in)]
    dut = WidthConverter(signed(bits), lanes_in, lanes_out)
    _, got = run_stream(dut, beats, len(codes) // lanes_out, lanes_in, p_valid, p_ready)
    out = [v for b, in got.beats for v in unpack(b, bits, lanes_out, True)]
    assert out == codes.tolist()


async def write_memories(ctx, port, image: np.ndarray, clock: Clock) -> None:
    """Write every element of a (rows, words, lanes) memory image through a ``write_signature`` port."""
    for row, word, lane in np.ndindex(*image.shape):
        for name, value in (("row", row), ("word", word), ("lane", lane), ("data", int(image[row, word, lane]))):
            ctx.set(getattr(port, name), value & ((1 << len(getattr(port, name))) - 1))
        ctx.set(port.en, 1)
        await clock.tick(ctx)
    ctx.set(port.en, 0)


def threshold_layer(rng, mh: int, pe: int, levels: int, per_channel: bool, base: int, step: int) -> GemmLayer:
    rows = mh if per_channel else 1
    thresholds = np.sort(rng.integers(-60, 61, size=(rows, levels)), axis=1)
    negate = rng.random(rows) < 0.4
    weight = np.zeros((4, mh), np.int64)
    return GemmLayer("t", weight, 0, thresholds, negate, base, step, (-100, 100), 5, 5, "rq", ("x",), (4,), "y")


@pytest.mark.parametrize("p_valid, p_ready", STALLS)
@pytest.mark.parametrize("mh, pe, levels, per_channel, base, step", [
    (6, 2, 3, True, 0, 1),          # 2-bit unsigned codes
    (4, 4, 15, False, -8, 1),       # signed 4-bit, one shared row
    (6, 3, 1, True, -1, 2),         # bipolar output
    (5, 1, 6, True, 0, 1),          # narrow range
])
def test_threshold_unit_matches_golden(mh, pe, levels, per_channel, base, step, p_valid, p_ready) -> None:
    rng = np.random.default_rng(mh * 31 + levels)
    gemm = threshold_layer(rng, mh, pe, levels, per_channel, base, step)
    layer = LayerConfig(mw=4, mh=mh, pe=pe, simd=1, in_type=CodeType(4, True), weight_bits=4, thresholds=levels,
                        per_channel=per_channel, base=base, step=step)
    bound = layer.acc_bound
    acc = rng.integers(-70, 71, size=(5, mh))
    acc[0, :] = bound
    acc[1, :] = -bound
    dut = Thresholds(layer)

    async def setup(ctx, clock):
        await write_memories(ctx, dut.thresholds, threshold_image(layer, gemm), clock)

    beats = [pack(row, layer.acc_bits) for row in acc.reshape(-1, pe)]
    sent, got = run_stream(dut, beats, len(beats), mh, p_valid, p_ready, setup)
    out_type = layer.out_type
    out = out_type.decode(np.array([unpack(b, out_type.bits, pe, False) for b, in got.beats])).reshape(acc.shape)
    signed_acc = np.where(np.broadcast_to(gemm.negate, (mh,)), -acc, acc)
    expected = multithreshold(signed_acc, gemm.thresholds, np.zeros(gemm.thresholds.shape[0], bool), base, step,
                              1 if per_channel else None)
    np.testing.assert_array_equal(out, expected)
    if p_valid == p_ready == 1.0:
        assert got.cycles[0] == sent.cycles[0] + THRESHOLD_LATENCY


def mvau_program(gemm: GemmLayer, pe: int, simd: int, in_type: CodeType | None = None):
    program = compile_dataflow([gemm], fold=[{"pe": pe, "simd": simd}], input_type=in_type)
    return program, program.config.layers[0]


def run_mvau(gemm: GemmLayer, codes: np.ndarray, pe: int, simd: int, seed: int, p_valid: float, p_ready: float,
             in_type: CodeType | None = None):
    """One layer's MVAU on ``codes`` (samples × MW); returns (output codes, sent, got)."""
    program, layer = mvau_program(gemm, pe, simd, in_type)
    dut = MVAU(layer)

    async def setup(ctx, clock):
        if not layer.bipolar:
            ctx.set(dut.zero_point, gemm.zx)
        await write_memories(ctx, dut.weights, weight_image(layer, gemm), clock)
        if layer.thresholds:
            await write_memories(ctx, dut.thresholds, threshold_image(layer, gemm), clock)

    beats, _ = program.pack_inputs(codes)
    sent, got = run_stream(dut, beats, len(codes) * layer.nf, seed, p_valid, p_ready, setup)
    return program.unpack_outputs([b for b, in got.beats]), sent, got, layer


@pytest.mark.parametrize("p_valid, p_ready", STALLS)
@pytest.mark.parametrize("pe, simd", [(1, 1), (2, 3), (4, 6), (1, 6), (4, 1)])
@pytest.mark.parametrize("thresholded", [False, True])
def test_mvau_matches_numpy(pe: int, simd: int, thresholded: bool, p_valid: float, p_ready: float) -> None:
    rng = np.random.default_rng(pe * 10 + simd)
    gemm, = random_layers(rng, [6, 4], 4, 4, [3], thresholded)
    codes = rng.integers(0, 16, size=(3, 6))
    codes[0] = 15                                       # extreme codes
    out, sent, got, layer = run_mvau(gemm, codes, pe, simd, pe + simd, p_valid, p_ready)
    np.testing.assert_array_equal(out, run_layers([gemm], codes))
    if p_valid == p_ready == 1.0:                       # no bubbles: one step per cycle, fixed latency
        start = sent.cycles[0]
        assert sent.cycles == [start + v * layer.cycles + j for v in range(len(codes)) for j in range(layer.sf)]
        assert got.cycles[0] == sent.cycles[layer.sf - 1] + latency(layer)
        assert np.all(np.diff(got.cycles) == layer.sf)


@pytest.mark.parametrize("p_valid, p_ready", STALLS)
@pytest.mark.parametrize("pe, simd, thresholded", [(1, 1, True), (3, 4, False), (2, 8, True), (6, 2, False)])
def test_bipolar_mvau_uses_xnor_popcount(pe: int, simd: int, thresholded: bool, p_valid, p_ready) -> None:
    """±1 weights and activations (BinaryConnect/FINN BNN layers): XNOR-popcount, no multiplier."""
    rng = np.random.default_rng(pe * 3 + simd)
    k, n = 8, 6
    weight = rng.choice([-1, 1], size=(k, n))
    thresholds = np.sort(rng.integers(-k, k + 1, size=(n, 1)), axis=1) if thresholded else None
    negate = rng.random(n) < 0.3 if thresholded else None
    gemm = GemmLayer("xnor", weight, 0, thresholds, negate, -1, 2, (-k, k), 2, 2 if thresholded else 5,
                     "rq" if thresholded else None, ("x",), (k,), "y")
    codes = rng.choice([-1, 1], size=(4, k))
    out, _, _, layer = run_mvau(gemm, codes, pe, simd, pe, p_valid, p_ready, CodeType(1, bipolar=True))
    assert layer.bipolar and layer.weight_shape.width == 1 and layer.acc_bits == 5
    np.testing.assert_array_equal(out, run_layers([gemm], codes))


def test_bipolar_inputs_with_integer_weights_multiply() -> None:
    """Bipolar codes feeding an integer-weight layer decode to ±1 and go through the multipliers."""
    rng = np.random.default_rng(4)
    gemm, = random_layers(rng, [5, 3], 2, 3, [2], True)
    bound = int(np.abs(gemm.weight).sum(axis=0).max()) * 2
    gemm = replace(gemm, zx=1, acc_range=(-bound, bound))
    codes = rng.choice([-1, 1], size=(3, 5))
    out, _, _, layer = run_mvau(gemm, codes, 3, 5, 0, 1.0, 1.0, CodeType(1, bipolar=True))
    assert not layer.bipolar
    np.testing.assert_array_equal(out, run_layers([gemm], codes))
