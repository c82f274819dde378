"""The dataflow top in Amaranth's simulator: loaded through the host port, fed through AXI-Stream; outputs bit-exact
with the numpy model of its layers, and — with the input always valid and the output always ready — the measured
initiation interval and latency equal to the analytic prediction, over random MLPs × random legal foldings and the
bundled example at several foldings. Also: random backpressure, the Verilog port names, and the refusals."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import pytest
from amaranth.back import verilog
from hypothesis import given
from hypothesis import strategies as st
from stream_helpers import Clock, Ends, receive, send, simulate
from test_systolic_sim import random_layers

import hwgen
from hwgen.arch.dataflow import (
    CodeType,
    DataflowProgram,
    DataflowTop,
    LayerFold,
    compile_dataflow,
)
from hwgen.arch.dataflow.folding import divisors
from hwgen.arch.systolic.compile import GemmLayer, gemm_layers, run_layers
from hwgen.errors import HwgenError

EXAMPLE = "examples/digits_mlp/digits_mlp.onnx"


@dataclass
class Run:
    outputs: np.ndarray          # output codes, samples × MH_last
    last: list[bool]             # m_axis_tlast of every output beat
    first_in: list[int]          # cycle of each sample's first input transfer
    last_out: list[int]          # cycle of each sample's last output transfer


def run_top(program: DataflowProgram, codes: np.ndarray, seed: int = 0, p_valid: float = 1.0,
            p_ready: float = 1.0, top: DataflowTop | None = None, load: bool = True) -> Run:
    """Load the program through ``load``, pulse ``start``, stream ``codes`` in and collect every output beat."""
    cfg = program.config
    top = top or DataflowTop(cfg)
    beats, last = program.pack_inputs(codes)
    samples = len(codes)
    result = {}

    async def host(ctx):
        clock = Clock()
        for target, bank, addr, lane, value in program.load_rows if load else []:
            ctx.set(top.load.payload, {"target": target, "bank": bank, "addr": addr, "lane": lane, "data": value})
            ctx.set(top.load.valid, 1)
            await clock.tick(ctx)
        ctx.set(top.load.valid, 0)
        ctx.set(top.start, 1)
        await clock.tick(ctx)
        ctx.set(top.start, 0)
        ends = Ends(top.s_axis_tvalid, top.s_axis_tready, (top.s_axis_tdata, top.s_axis_tlast))
        result["sent"] = await send(ctx, ends, list(zip(beats, last)), clock, np.random.default_rng(seed), p_valid)

    async def sink(ctx):
        ends = Ends(top.m_axis_tvalid, top.m_axis_tready, (top.m_axis_tdata, top.m_axis_tlast))
        result["got"] = await receive(ctx, ends, samples * cfg.out_beats, Clock(),
                                      np.random.default_rng(seed + 1), p_ready)

    simulate(top, host, sink)
    sent, got = result["sent"], result["got"]
    return Run(program.unpack_outputs([beat for beat, _ in got.beats]), [bool(t) for _, t in got.beats],
               sent.cycles[::cfg.in_beats], got.cycles[cfg.out_beats - 1::cfg.out_beats])


def check(program: DataflowProgram, codes: np.ndarray, rom: bool = False) -> Run:
    """Bit-exact outputs and tlast; II and latency exactly as predicted. ``rom``: memories initialized with the
    program instead of loaded (saves simulating one cycle per weight)."""
    top = DataflowTop(program.config, program.memory_init()) if rom else None
    run = run_top(program, codes, top=top, load=not rom)
    np.testing.assert_array_equal(run.outputs, run_layers(program.layers, codes))
    assert run.last == [(i + 1) % program.config.out_beats == 0 for i in range(len(run.last))]
    assert run.last_out[0] - run.first_in[0] == program.predicted_latency_cycles
    assert np.diff(run.last_out).tolist() == [program.predicted_ii_cycles] * (len(codes) - 1)
    return run


def mlp_layers(rng: np.random.Generator, dims: list[int], in_bits: int, w_bits: int, out_bits: list[int],
               thresholded_last: bool) -> list[GemmLayer]:
    """``random_layers`` with every zero point a code of its input type (bipolar inputs: 0) and the accumulator
    ranges recomputed for it."""
    lo, hi = 0, (1 << in_bits) - 1
    layers = []
    for layer in random_layers(rng, dims, in_bits, w_bits, list(out_bits), thresholded_last):
        zx = 0 if (lo, hi) == (-1, 1) else min(layer.zx, hi)
        bound = int(np.abs(layer.weight).sum(axis=0).max()) * max(zx - lo, hi - zx)
        layers.append(replace(layer, zx=zx, acc_range=(-bound, bound)))
        if layer.thresholds is not None:
            lo, hi = sorted((layer.base, layer.base + layer.step * layer.thresholds.shape[1]))
    return layers


@given(depth=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_mlps_and_foldings_bit_exact_with_exact_cycles(depth: int, seed: int, data) -> None:
    rng = np.random.default_rng(seed)
    dims = [data.draw(st.integers(1, 8)) for _ in range(depth + 1)]
    out_bits = [data.draw(st.integers(1, 3)) for _ in range(depth)]
    in_bits = data.draw(st.integers(1, 4))
    layers = mlp_layers(rng, dims, in_bits, data.draw(st.integers(2, 4)), out_bits, data.draw(st.booleans()))
    fold = [LayerFold(data.draw(st.sampled_from(divisors(n))), data.draw(st.sampled_from(divisors(k))))
            for k, n in pairwise(dims)]
    program = compile_dataflow(layers, fold=fold)
    check(program, rng.integers(0, 1 << in_bits, size=(data.draw(st.integers(2, 3)), dims[0])))


@pytest.mark.parametrize("fold", [
    [(1, 1), (1, 1), (1, 1)],                  # fully folded: every layer PE = SIMD = 1
    [(4, 2), (8, 4), (2, 8)],                  # mixed up- and downsizing converters
    [(16, 64), (1, 1), (2, 32)],               # a downsizer slower than its producer (SF = 1 < ratio 16)
    "unrolled",                                # PE = MH, SIMD = MW: one cycle per layer
], ids=["folded", "mixed", "downsize", "unrolled"])
def test_example_model_at_several_foldings(fold) -> None:
    model = hwgen.load(EXAMPLE)
    layers = gemm_layers(model.graph)
    if fold == "unrolled":
        fold = [(layer.n, layer.k) for layer in layers]
    program = compile_dataflow(model, fold=[{"pe": pe, "simd": simd} for pe, simd in fold])
    x = np.load("examples/digits_mlp/test_x.npy")[:3]
    codes = hwgen.golden.run(model.graph, x, keep=True)[layers[0].inputs[0]]
    np.testing.assert_array_equal(run_layers(layers, codes), model.run_codes(x))
    run = check(program, codes, rom=fold != [(1, 1)] * 3)
    assert program.predicted_ii_cycles == max(layer.cycles for layer in program.config.layers)
    assert program.config.in_type.bits == 8 and not program.config.in_type.signed
    assert run.last_out[1] - run.last_out[0] == program.predicted_ii_cycles


class ProbedTop(DataflowTop):
    """The top with its MVAUs reachable after elaboration, to watch their output handshakes."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        self.units = [m.submodules[f"layer{i}"] for i in range(len(self.cfg.layers))]
        return m


def output_stalls(program: DataflowProgram, codes: np.ndarray) -> list[int]:
    """Cycles each layer's output beat waited (valid, not ready), ``s_axis`` always valid, ``m_axis`` always
    ready; also checks the run (:func:`check`'s assertions)."""
    top = ProbedTop(program.config, program.memory_init())
    stalls = [0] * len(program.config.layers)
    watching = {"on": True}

    async def watch(ctx):
        while watching["on"]:
            for index, unit in enumerate(top.units):
                stalls[index] += ctx.get(unit.o.valid) and not ctx.get(unit.o.ready)
            await ctx.tick()

    async def host(ctx):
        clock = Clock()
        ctx.set(top.start, 1)
        await clock.tick(ctx)
        ctx.set(top.start, 0)
        beats, last = program.pack_inputs(codes)
        await send(ctx, Ends(top.s_axis_tvalid, top.s_axis_tready, (top.s_axis_tdata, top.s_axis_tlast)),
                   list(zip(beats, last)), clock)

    async def sink(ctx):
        got = await receive(ctx, Ends(top.m_axis_tvalid, top.m_axis_tready, (top.m_axis_tdata, top.m_axis_tlast)),
                            len(codes) * program.config.out_beats, Clock())
        watching["on"] = False
        np.testing.assert_array_equal(program.unpack_outputs([beat for beat, _ in got.beats]),
                                      run_layers(program.layers, codes))

    simulate(top, host, sink, watch)
    return stalls


@pytest.mark.parametrize("dims, fold", [
    ([2, 2, 4, 1], [(1, 1), (2, 2), (1, 1)]),  # the hypothesis case: PE 2, SF 1 → SIMD 1 (II was 5, predicted 4)
    ([3, 8, 4], [(8, 3), (1, 1)]),             # one 8-code word per cycle → a downsizer by 8
    ([4, 6, 6, 2], [(3, 2), (2, 3), (1, 2)]),  # through the lcm width (3 → 6 → 2 ... 2 → 6 → 3)
])
def test_no_producer_waits_on_a_downsizer(dims, fold) -> None:
    """Regression: the FIFO used to sit after the downsizer, which takes a word only every ``down`` cycles; a
    producer emitting faster stalled on its output, and as the MVAU is rigid that froze the next vector's steps
    already issued, so every sample but the first came late (measured II 5 vs 4 for the first case). The FIFO now
    sits before the downsizer: with ``m_axis`` always ready no layer's output ever waits during a few samples (the
    FIFOs never fill), and samples leave exactly II apart from the first on, also over a longer run."""
    rng = np.random.default_rng(0)
    layers = mlp_layers(rng, dims, 1, 2, [1] * (len(dims) - 1), False)
    program = compile_dataflow(layers, fold=[LayerFold(pe, simd) for pe, simd in fold])
    codes = rng.integers(0, 2, size=(8, dims[0]))
    assert output_stalls(program, codes[:2]) == [0] * len(layers)
    check(program, codes, rom=True)


def test_throttled_producer_keeps_the_bottleneck_busy() -> None:
    """A fast layer in front of a slow one: over many samples its FIFO fills and it waits (its output stalls),
    yet the slow layer never starves — samples leave exactly II apart."""
    rng = np.random.default_rng(4)
    layers = mlp_layers(rng, [6, 8, 4, 3], 2, 3, [2, 2], False)
    program = compile_dataflow(layers, fold=[LayerFold(8, 6), LayerFold(1, 1), LayerFold(3, 2)])
    codes = rng.integers(0, 4, size=(10, 6))
    assert program.config.layers[0].cycles < program.predicted_ii_cycles
    assert output_stalls(program, codes)[0] > 0
    check(program, codes, rom=True)


@pytest.mark.parametrize("fold", [
    [(3, 3), (2, 2), (4, 5)],                  # PE 3 → SIMD 2 and PE 2 → SIMD 5: through the lcm width
    [(6, 1), (1, 1), (2, 10)],                 # one beat of 6 codes → 6 beats of 1, producer SF = 1
    [(1, 3), (10, 6), (1, 2)],                 # upsizers 1 → 6 and 10 → ... → 2
])
def test_width_converters_in_the_pipeline(fold) -> None:
    rng = np.random.default_rng(len(fold) + fold[0][0])
    layers = mlp_layers(rng, [3, 6, 10, 4], 3, 3, [2, 3, 2], bool(fold[0][0] % 2))
    check(compile_dataflow(layers, fold=[LayerFold(pe, simd) for pe, simd in fold]),
          rng.integers(0, 8, size=(3, 3)))


@pytest.mark.parametrize("target", [16, 100, 1000])
def test_auto_fold_meets_the_target_at_least_cost(target: int) -> None:
    model = hwgen.load(EXAMPLE)
    program = compile_dataflow(model, target_cycles=target)
    report = program.fold_report()
    assert all(row["cycles"] <= target for row in report)
    assert program.predicted_ii_cycles <= target
    for row, layer in zip(report, program.config.layers):       # no cheaper legal folding meets the target
        for pe in divisors(layer.mh):
            for simd in divisors(layer.mw):
                other = replace(layer, pe=pe, simd=simd)
                assert other.cycles > target or round(other.cost, 1) >= row["cost_lut"]
    if target == 100:
        x = np.load("examples/digits_mlp/test_x.npy")[:2]
        check(program, hwgen.golden.run(model.graph, x, keep=True)[program.layers[0].inputs[0]])


@pytest.mark.parametrize("p_valid, p_ready", [(0.5, 0.5), (0.9, 0.2), (0.3, 0.9)])
def test_random_backpressure_stays_bit_exact(p_valid: float, p_ready: float) -> None:
    rng = np.random.default_rng(11)
    layers = mlp_layers(rng, [7, 6, 4, 5], 3, 3, [2, 1, 3], True)
    program = compile_dataflow(layers, fold=[LayerFold(3, 7), LayerFold(2, 3), LayerFold(5, 2)])
    codes = rng.integers(0, 8, size=(5, 7))
    run = run_top(program, codes, seed=3, p_valid=p_valid, p_ready=p_ready)
    np.testing.assert_array_equal(run.outputs, run_layers(layers, codes))


def bnn_program(rng: np.random.Generator, fold: list[LayerFold]) -> DataflowProgram:
    """A BNN 12-8-6: bipolar input, XNOR-popcount layers with bipolar thresholds, an integer last layer."""
    dims = [12, 8, 6]
    layers = []
    for index, (k, n) in enumerate(pairwise(dims)):
        weight = rng.choice([-1, 1], size=(k, n))
        thresholds = np.sort(rng.integers(-k, k + 1, size=(n, 1)), axis=1)
        layers.append(GemmLayer(f"bnn{index}", weight, 0, thresholds, rng.random(n) < 0.3, -1, 2, (-k, k), 2, 2,
                                f"rq{index}", (f"t{index}",), (k,), f"t{index + 1}"))
    program = compile_dataflow(layers, fold=fold, input_type=CodeType(1, bipolar=True))
    assert all(layer.bipolar for layer in program.config.layers)
    return program


def test_bipolar_network() -> None:
    rng = np.random.default_rng(2)
    check(bnn_program(rng, [LayerFold(2, 4), LayerFold(3, 2)]), rng.choice([-1, 1], size=(3, 12)))


def test_rom_style_design_needs_no_loads() -> None:
    rng = np.random.default_rng(5)
    layers = mlp_layers(rng, [5, 4, 3], 3, 3, [2, 2], False)
    program = compile_dataflow(layers, fold=[LayerFold(2, 5), LayerFold(1, 2)])
    codes = rng.integers(0, 8, size=(3, 5))
    run = run_top(program, codes, top=DataflowTop(program.config, program.memory_init()), load=False)
    np.testing.assert_array_equal(run.outputs, run_layers(layers, codes))


def test_verilog_ports_and_no_zero_width_signals() -> None:
    model = hwgen.load(EXAMPLE)
    program = compile_dataflow(model, fold=[{"pe": 1, "simd": 1}, {"pe": 32, "simd": 64}, {"pe": 10, "simd": 2}])
    text = verilog.convert(DataflowTop(program.config), name="hwgen_dataflow")
    top = text[text.index("module hwgen_dataflow("):]
    ports = {name: int(msb) + 1 if msb else 1
             for msb, name in re.findall(r"^\s*(?:input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                         top[:top.index("endmodule")], re.MULTILINE)}
    cfg = program.config
    assert ports["s_axis_tdata"] == cfg.in_lanes * cfg.in_type.bits
    assert ports["m_axis_tdata"] == cfg.out_lanes * cfg.out_type.bits
    for name in ("s_axis_tvalid", "s_axis_tready", "s_axis_tlast", "m_axis_tvalid", "m_axis_tready",
                 "m_axis_tlast", "start", "busy", "done", "load__valid", "load__ready", "read__valid",
                 "rdata__valid"):
        assert ports[name] == 1, name
    assert ports["cycles"] == 32 and ports["load__payload"] == 63 and ports["read__payload"] == 31
    assert not re.search(r"\[-1:0\]", text)


@pytest.mark.parametrize("kind", ["integer", "bipolar"])
def test_lint_and_yosys_clean(kind: str) -> None:
    """Small designs — 1-wide layers, both converter kinds and every memory kind; XNOR-popcount layers with
    per-channel bipolar thresholds, fully unrolled and fully folded: Verilator ``-Wall`` (with the project's
    documented waivers for Amaranth idioms) and Yosys ``check -assert`` find nothing."""
    from hwgen import verilator

    rng = np.random.default_rng(1)
    if kind == "integer":
        layers = mlp_layers(rng, [1, 1, 6, 4], 3, 3, [1, 2, 2], False)
        program = compile_dataflow(layers, fold=[LayerFold(1, 1), LayerFold(3, 1), LayerFold(2, 3)])
    else:
        program = bnn_program(rng, [LayerFold(8, 12), LayerFold(1, 1)])
    text = verilog.convert(DataflowTop(program.config), name="hwgen_dataflow")
    assert verilator.lint_problems(text, "hwgen_dataflow") == []
    assert verilator.yosys_check(text, "hwgen_dataflow") == []


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_residual_mlp(ratio: float) -> None:
    """A dense residual block (the skip rescaled by 2 in the second case): duplicate, skip FIFO and add unit,
    bit-exact with exact latency and II."""
    from onnx_helpers import residual_mlp

    model = hwgen.Model(residual_mlp(skip_scale_ratio=ratio))
    program = compile_dataflow(model)
    assert program.config.sources == ((-1,), (0,), (1, 0), (2,))
    codes = np.random.default_rng(1).integers(-128, 128, size=(3, 8))
    run = run_top(program, codes)
    np.testing.assert_array_equal(run.outputs, run_layers(gemm_layers(model.graph), codes))
    assert run.last_out[0] - run.first_in[0] == program.predicted_latency_cycles
    assert np.diff(run.last_out).tolist() == [program.predicted_ii_cycles] * 2


def test_refusals_name_the_node() -> None:
    model = hwgen.load(EXAMPLE)
    name = gemm_layers(model.graph)[0].name
    with pytest.raises(HwgenError, match=f"fold of '{re.escape(name)}' .*pe must divide mh=64, got pe=3"):
        compile_dataflow(model, fold=[{"pe": 3, "simd": 1}] + [{"pe": 1, "simd": 1}] * 2)
    with pytest.raises(HwgenError, match="fold: expected 3 entries"):
        compile_dataflow(model, fold=[{"pe": 1, "simd": 1}])
    with pytest.raises(HwgenError, match="no entry for"):
        compile_dataflow(model, fold={name: {"pe": 1, "simd": 1}})
    with pytest.raises(HwgenError, match=f"'{re.escape(name)}' \\(64×64\\) cannot run in 100 cycles per inference "
                       "with at most 8 MAC lanes; the best achievable is 512 cycles"):
        compile_dataflow(model, target_cycles=100, max_lanes=8)
    with pytest.raises(HwgenError, match="target cycles must be a positive integer"):
        compile_dataflow(model, target_cycles=0)
    with pytest.raises(HwgenError, match="either a fold or a target"):
        compile_dataflow(model, fold=[], target_cycles=4)
