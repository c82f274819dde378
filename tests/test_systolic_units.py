"""Amaranth-simulator unit tests of the systolic blocks: PE, array skew/drain, requant lane, controller timing."""
from __future__ import annotations

from itertools import pairwise

import numpy as np
from amaranth.sim import Simulator

from hwgen.arch.systolic.array import OutputStationaryArray
from hwgen.arch.systolic.config import SystolicConfig
from hwgen.arch.systolic.pe import OutputStationaryPE
from hwgen.arch.systolic.requant import RequantLane
from hwgen.golden import multithreshold


def run(dut, testbench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


# instruction fields of a program that runs its one layer once, inputs preloaded
ONE_SEGMENT = {"stream_in": 0, "stream_out": 0, "x_words": 1, "y_words": 1, "repeat": 1, "loop_to": 0, "end": 1}

def test_pe_accumulates_captures_and_shifts() -> None:
    cfg = SystolicConfig(rows=1, cols=1, a_bits=4, w_bits=4, k_max=16)
    pe = OutputStationaryPE(cfg)
    rng = np.random.default_rng(0)
    a, w = rng.integers(-16, 16, size=(2, 7)), rng.integers(-8, 8, size=(2, 7))

    async def bench(ctx):
        for tile in range(2):
            for k in range(7):
                ctx.set(pe.a_in, int(a[tile, k]))
                ctx.set(pe.w_in, int(w[tile, k]))
                ctx.set(pe.valid, 1)
                ctx.set(pe.last, k == 6)
                await ctx.tick()
                assert ctx.get(pe.a_out) == a[tile, k] and ctx.get(pe.w_out) == w[tile, k]   # 1-cycle forward
            ctx.set(pe.valid, 0)
            assert ctx.get(pe.last_out) == 1              # the last product is in the product register
            await ctx.tick()
            assert ctx.get(pe.shadow_out) == int(a[tile] @ w[tile])       # captured; next tile starts at 0
        ctx.set(pe.shadow_in, 1234)
        ctx.set(pe.shift, 1)
        await ctx.tick()
        assert ctx.get(pe.shadow_out) == 1234

    run(pe, bench)


def test_array_skew_and_drain_order() -> None:
    """A 3×2 tile: `captured` rises R + C cycles after the last operands, `capturing` (the controller's copy, from a
    chain of its own) the cycle before; the drain gives the top row first."""
    cfg = SystolicConfig(rows=3, cols=2, a_bits=6, w_bits=6, k_max=8)
    array = OutputStationaryArray(cfg)
    rng = np.random.default_rng(1)
    a, w = rng.integers(-20, 20, size=(3, 5)), rng.integers(-20, 20, size=(5, 2))

    async def bench(ctx):
        for k in range(5):
            for i in range(3):
                ctx.set(array.a[i], int(a[i, k]))
            for j in range(2):
                ctx.set(array.w[j], int(w[k, j]))
            ctx.set(array.a0_mul, int(a[0, k]))     # PE(0, 0)'s copies of a[0] and w[0]
            ctx.set(array.w0_mul, int(w[k, 0]))
            ctx.set(array.valid, 1)
            ctx.set(array.last, k == 4)
            await ctx.tick()
        ctx.set(array.valid, 0)
        waited, capturing = 0, []
        while not ctx.get(array.captured):
            capturing.append(ctx.get(array.capturing))
            await ctx.tick()
            waited += 1
        assert (5 + waited) - 4 == 3 + 2              # last operands at cycle 4, `captured` at cycle 5 + waited
        assert capturing == [0] * (waited - 1) + [1]
        ctx.set(array.shift, [1, 1])                  # every column (a copy of the drain's shift each)
        drained = []
        for _ in range(3):
            drained.append([ctx.get(array.drain[j]) for j in range(2)])
            await ctx.tick()
        assert drained == (a @ w).tolist()

    run(array, bench)


def test_requant_lane_thresholds_negation_and_passthrough() -> None:
    cfg = SystolicConfig(rows=1, cols=1, a_bits=4, w_bits=4, k_max=16, out_bits=3, slot_depth=2)
    lane = RequantLane(cfg, meta_bits=4)
    stages, tbits = cfg.search_stages, cfg.threshold_bits
    infinity = (1 << (tbits - 1)) - 1
    rng = np.random.default_rng(2)
    tables = [np.sort(rng.integers(-50, 50, size=7)), np.array([-9, -3, 0, 4, 4, 20, infinity])]
    negate = [False, True]
    values = rng.integers(-60, 60, size=24)

    async def bench(ctx):
        for slot, table in enumerate(tables):
            for b in range(stages):
                for prefix in range(1 << b):
                    index = (prefix << (stages - b)) | (1 << (stages - b - 1))
                    word = int(table[index - 1]) & ((1 << tbits) - 1)
                    if b == 0 and negate[slot]:
                        word |= 1 << tbits
                    ctx.set(lane.wr_stage, b)
                    ctx.set(lane.wr_addr, (slot << b) | prefix)
                    ctx.set(lane.wr_data, word)
                    ctx.set(lane.wr_en, 1)
                    await ctx.tick()
        ctx.set(lane.wr_en, 0)
        for base, step in ((-2, 1), (3, 2)):              # code = base + step · count
            ctx.set(lane.base, base)
            ctx.set(lane.step, step)
            outputs = []
            for cycle in range(len(values) + cfg.lane_latency):
                if cycle < len(values):
                    ctx.set(lane.valid, 1)
                    ctx.set(lane.acc, int(values[cycle]))
                    ctx.set(lane.slot, cycle % 2)
                else:
                    ctx.set(lane.valid, 0)
                ctx.set(lane.meta, (cycle - 1) % 16)          # a value's meta enters a cycle after it
                await ctx.tick()
                if ctx.get(lane.out_valid):
                    outputs.append((ctx.get(lane.out_value), ctx.get(lane.out_meta)))
            assert len(outputs) == len(values)        # one result per cycle, fixed latency
            expected = []
            for cycle, v in enumerate(values):
                slot = cycle % 2
                x = -v if negate[slot] else v
                count = int(multithreshold(np.array([x]), tables[slot][None], np.array([False]), 0, 1, None)[0])
                expected.append((base + step * count, cycle % 16))
            assert outputs == expected
        # passthrough: the accumulator itself, on a slot whose channel negates (the lane carries −acc) and on one
        # that does not, down to the accumulator's extremes
        ctx.set(lane.passthrough, 1)
        lowest, highest = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
        for slot in (0, 1):
            for v in (-123, lowest, highest):
                ctx.set(lane.valid, 1)
                ctx.set(lane.acc, v)
                ctx.set(lane.slot, slot)
                for _ in range(cfg.lane_latency):
                    await ctx.tick()
                    ctx.set(lane.valid, 0)
                assert ctx.get(lane.out_valid) and ctx.get(lane.out_value) == v

    run(lane, bench)


def test_controller_feed_addresses_period_and_drain() -> None:
    """One dense layer of 2×2 tiles (4 samples, K = 6, N = 6 on 2×3): 2R + 1 cycles of row set-up, then the feed reads
    k = 0..kp-1 per tile with the right bank words, starts a tile every `period` cycles, and one `captured` pulse
    drains R rows top-first with their write banks and addresses."""
    from hwgen.arch.systolic.compile import (
        GemmLayer,
        compile_layers,
        default_config,
        pack_instruction,
    )
    from hwgen.arch.systolic.controller import INSTRUCTION, Controller

    layer = GemmLayer("fc", np.ones((6, 6), np.int64), 0, np.zeros((1, 1), np.int64), np.zeros(1, bool), 0, 1,
                      (0, 100), 4, 2, "rq", ("x",), (6,), "y")
    cfg = default_config([layer], rows=2, cols=3, dataflow="os", batch=4)
    program = compile_layers([layer], cfg)
    [instr] = program.instructions(4)
    instr.update(in_base=10, out_base=40, w_base=5, slot_base=1, period=8)
    assert (instr["kp"], instr["m_tiles"], instr["n_tiles"], program.stride) == (6, 2, 2, 2)
    ctrl = Controller(cfg)
    word = pack_instruction(instr)
    reads, drains = [], []

    async def bench(ctx):
        ctx.set(ctrl.prog_data, INSTRUCTION.const(INSTRUCTION.from_bits(word)))
        ctx.set(ctrl.start, 1)
        await ctx.tick()
        ctx.set(ctrl.start, 0)
        slot = None
        for cycle in range(44):
            if ctx.get(ctrl.feed_valid):
                offset = ctx.get(ctrl.bank_offset)
                reads.append((cycle, ctx.get(ctrl.bank_base[0]) + offset, ctx.get(ctrl.bank_base[1]) + offset,
                              ctx.get(ctrl.weight_addr), ctx.get(ctrl.feed_lane), ctx.get(ctrl.feed_last)))
            ctx.set(ctrl.capturing, cycle == 33)             # `captured` at cycle 34
            if slot is not None:                             # a row's meta comes a cycle after it (its slot)
                drains.append((ctx.get(ctrl.lane_meta.row), ctx.get(ctrl.lane_meta.addr), slot,
                               ctx.get(ctrl.lane_meta.write)))
            slot = ctx.get(ctrl.lane_slot) if ctx.get(ctrl.lane_valid) else None
            await ctx.tick()

    run(ctrl, bench)
    starts = [c for c, *_ in reads[::6]]
    assert starts[0] == 3 + 2 * 2 + 1           # fetch, latch, decode, R rows one every other cycle, the feed's start
    assert [b - a for a, b in pairwise(starts)] == [8, 8, 8]                        # period
    tile0 = [(a, b, w, lane, last) for _, a, b, w, lane, last in reads[:6]]
    assert tile0 == [(10, 10, 5, 0, 0), (10, 10, 6, 1, 0), (10, 10, 7, 2, 0), (11, 11, 8, 0, 0),
                     (11, 11, 9, 1, 0), (11, 11, 10, 2, 1)]
    assert [(a, w) for _, a, _, w, _, _ in reads[6:12:3]] == [(10, 11), (11, 14)]  # tile (m 0, n 1): next weights
    assert [a for _, a, *_ in reads[12:24:3]] == [12, 13, 12, 13]                   # m_tile 1: next sample group
    assert drains == [(0, 40, 1, 1), (1, 40, 1, 1)]                                 # top row first, tile (0, 0)


def test_scratchpads_round_trip_through_the_host_protocol() -> None:
    """Every activation lane of every bank written through `load` reads back through `read`/`rdata`."""
    from amaranth_host import simulate_run

    from hwgen.arch.systolic.compile import pack_instruction
    from hwgen.arch.systolic.controller import INSTRUCTION_CHUNKS
    from hwgen.arch.systolic.top import ACTIVATIONS, PROGRAM, SystolicTop

    cfg = SystolicConfig(rows=2, cols=3, a_bits=5, w_bits=4, k_max=6, act_depth=4, out_bits=2)
    rng = np.random.default_rng(3)
    values = rng.integers(-32, 32, size=(2, 4, 3))
    loads = [(ACTIVATIONS, b, a, lane, int(values[b, a, lane])) for b in range(2) for a in range(4) for lane in range(3)]
    # an empty program (one layer, passthrough, one tile) so that `start` completes
    instr = {"m_tiles": 1, "n_tiles": 1, "kp": 3, "period": 7, "samples": 1, "k_tiles": 1, "in_base": 0,
             "kp_words": 1, "out_base": 0, "out_words": 1, "w_base": 0, "slot_base": 0, "zx": 0, "base": 0,
             "step": 1, "passthrough": 1, "last_layer": 1, "kh": 1, "kw": 1, "cg": 3, "cgp": 3, "walk_w": 1,
             "walk_s": 1, "lat_sx": 1, "lat_sy": 1, **ONE_SEGMENT}
    word = pack_instruction(instr)
    loads += [(PROGRAM, 0, 0, c, (word >> (32 * c)) & 0xFFFFFFFF) for c in range(INSTRUCTION_CHUNKS)]
    reads = [(ACTIVATIONS, b, a, lane) for b in range(2) for a in range(4) for lane in range(3)]
    got = simulate_run(SystolicTop(cfg), loads, reads).values
    np.testing.assert_array_equal(got.reshape(values.shape), values)


def test_collision_check_replaces_a_word_read_as_it_is_written() -> None:
    """The Amaranth host's check for ``no_rw_check`` memories: a read of the word written in the same cycle gets a
    random word (what synthesis leaves undefined), a read of another word its contents; each collision is listed."""
    from amaranth import Module, Signal
    from amaranth.hdl import Fragment
    from amaranth.sim import Simulator

    from amaranth_host import collision_check
    from hwgen.arch.hdl import ram

    m = Module()
    memory = ram(m, "mem", shape=8, depth=4, init=[10, 11, 12, 13])
    rd, wr = memory.read_port(), memory.write_port()
    word = Signal(8)                                    # what the design registers from the word read
    m.d.sync += word.eq(rd.data)
    fragment = Fragment.get(m, None)
    collisions: list[str] = []
    seen = []

    async def bench(ctx):
        for addr, write in ((1, False), (2, True), (3, False), (0, False)):
            ctx.set(rd.addr, addr)
            ctx.set(wr.addr, 2)
            ctx.set(wr.data, 99)
            ctx.set(wr.en, write)
            await ctx.tick()
            seen.append(ctx.get(word))                  # the word read a cycle earlier
        seen.pop(0)

    sim = Simulator(fragment)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(collision_check(fragment, collisions, seed=1))
    sim.run()
    assert collisions == ["mem@2[2]"]
    assert seen[0] == 11 and seen[2] == 13 and seen[1] not in (12, 99)
