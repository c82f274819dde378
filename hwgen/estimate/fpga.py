"""Analytic FPGA resource and fmax models: per-component structure counts, mapped per family, summed.

Two steps, so that the structural part is exact and only the technology mapping is fitted:

1. **Structure** (:func:`components`): every hardware component of a design (PE, skew registers, scratchpads,
   controller, requant lanes, stream engines for the systolic array; MVAU, thresholds, FIFOs, width converters for
   the dataflow pipeline) is described by the primitives its generator instantiates, read off the configuration's
   fields: register bits, adder/subtractor bits, comparator bits, 2:1-mux bit equivalents, other gate bits,
   multipliers ``(a_bits, b_bits)`` and memories ``(depth, width)``, plus its critical path (memory read, LUT
   levels, carry chains, multiplier).
2. **Mapping** (:func:`estimate_resources`, :func:`estimate_fmax`): per family, multipliers go to DSP blocks by
   Yosys' own rule (``mul2dsp``: both operands ≥ 2 bits; iCE40 flows map them to LUTs) and each memory to block
   RAM, LUT RAM or flip-flops by Yosys' ``memory_libmap`` cost rule (:mod:`hwgen.estimate.memmap`: which primitive,
   how many, and the fabric flip-flops and muxes the choice brings). Block RAM, LUT-RAM LUTs and the memories'
   fabric flip-flops are counted exactly; what remains is a linear model in the features whose coefficients
   (``coefficients.json``) are fitted by :mod:`hwgen.estimate.calibrate` against Yosys/nextpnr runs.

Everything here is plain integer arithmetic on the configuration (no Amaranth elaboration), so one design point
costs tens of microseconds (``benchmarks/estimate_speed.py``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from math import ceil, lcm
from operator import mul
from pathlib import Path
from collections.abc import Sequence
from typing import NamedTuple

from .memmap import mapping
from ..arch.systolic.config import DECODE_COPIES, LANE_STAGE_CYCLES, STEP_GROUPS

# lut_ram (LUT-equivalents of LUT RAM primitives) and mem_ff (flip-flop memories, LUT RAM read registers) are exact
# counts; mem_emulation_ff (read-first emulation of block RAM, partly shared between memories on one write bus),
# mem_mux / mem_logic (read muxes, write decoders, bypasses) are fitted; add_chain / add_tree split ``add`` into
# adders kept as carry chains and adder trees (popcounts, dot products' sums, threshold counts) for the carry fit
FEATURES = ("reg", "add", "cmp", "mux", "logic", "mul_lut", "lut_ram", "mem_ff", "mem_emulation_ff", "mem_mux",
            "mem_logic", "memories", "one", "add_chain", "add_tree")
EXACT = {"lut": "lut_ram", "ff": "mem_ff"}       # features that count a resource exactly (coefficient 1, not fitted)
_EXACT_INDEX = {metric: FEATURES.index(feature) for metric, feature in EXACT.items()}
PATH_TERMS = ("one", "mem", "levels", "carry_bits", "chains", "dsp", "mul_lut")
COEFFICIENTS_FILE = Path(__file__).with_name("coefficients.json")
DSP_MAX = {"ice40": None, "ecp5": (18, 18), "xc7": (25, 18), "xcup": (27, 18), "asic": None}   # asic: gates


@dataclass(slots=True)
class Path_:
    """A register-to-register path: a memory read at its start (``mem``), ``levels`` LUT levels, carry chains of
    ``carry_bits`` bits in total over ``chains`` chains, a multiplier (``mul``: (a, b) bits or None)."""

    mem: int = 0
    levels: int = 0
    carry_bits: int = 0
    chains: int = 0
    mul: tuple[int, int] | None = None


class Mem(NamedTuple):
    """A memory: ``depth`` words of ``width`` bits, ``count`` copies; a write enables ``group``-bit slices
    separately (``write_port(granularity=…)`` or per-element writes; None: the whole word); ``shape``: ``sdp``
    (separate read and write addresses) or ``sp`` (one address), see :mod:`hwgen.estimate.memmap`; ``used``: the
    bits of the word anything reads, as a mask (synthesis removes the others)."""

    depth: int
    width: int
    count: int = 1
    group: int | None = None
    shape: str = "sdp"
    used: int | None = None           # the bits the hardware reads, as a mask (None: the whole word)


@dataclass(slots=True)
class Component:
    """Structure counts of one hardware component (all in bits unless named otherwise); ``count`` identical
    instances. ``muls``, ``mems`` and ``paths`` are lists where given and empty tuples where not (most components
    have none of one or the other: a sweep builds ~16 components per point, and 36 empty lists per point were the
    most objects it made and kept in the components cache)."""

    name: str
    count: int = 1
    reg: int = 0                      # flip-flop bits
    add: int = 0                      # adder / subtractor / counter bits
    tree: int = 0                     # … of which adder trees (popcounts, dot products' sums, threshold counts)
    cmp: int = 0                      # magnitude-comparator bits
    mux: int = 0                      # 2:1 mux bit equivalents (an n:1 mux of w bits = (n − 1)·w)
    logic: int = 0                    # other gate bits (XNOR lanes, decoders, popcount inputs, enables)
    muls: Sequence[tuple[int, int, int]] = ()     # (a_bits, b_bits, how many)
    mems: Sequence[Mem] = ()
    paths: Sequence[Path_] = ()
    product_register: bool = False    # each product goes straight into an (a + b)-bit register


@lru_cache(maxsize=1)
def _instruction_layout() -> tuple[int, tuple[tuple[str, int, int], ...]]:
    """The systolic instruction's size and its fields as ``(name, offset, width)``."""
    from ..arch.systolic.controller import INSTRUCTION
    return INSTRUCTION.size, tuple((name, f.offset, f.shape.width) for name, f in INSTRUCTION)


@lru_cache(maxsize=None)
def _fields_read(dataflow: str, max_pool: bool, fixed_steps: int, product_rounding: bool) -> frozenset[str]:
    """The instruction fields the systolic hardware with these options reads at all (a field no logic reads leaves
    the netlist whole: its latch in ``ctrl.instr`` and the program-memory bits behind it).

    Derived from the hardware itself, not listed: a 2×2 array with the same dataflow and optional hardware (the
    only configuration fields that decide, in Python, which fields the generators touch) is elaborated once while
    every read of an ``INSTRUCTION`` view is recorded: by field name (``View.__getitem__``, which ``instr.name``
    goes through), or as a bit range of ``instr.as_value()[a:b]`` taken by hwgen's own code (the lanes' fixed-point
    stages; Amaranth's own ``as_value`` calls, e.g. to format signals, are not reads). ~0.2 s per option set, cached.
    """
    import sys

    from amaranth.hdl import Fragment
    from amaranth.lib import data

    from ..arch.systolic.config import SystolicConfig
    from ..arch.systolic.controller import INSTRUCTION
    from ..arch.systolic.top import SystolicTop

    names: set[str] = set()
    spans: list[tuple[int, int]] = []

    class RawReads:
        """``instr.as_value()`` as hwgen's code gets it while recording: slicing records the range read."""

        def __init__(self, value):
            self.value = value

        def __getitem__(self, key):
            if not isinstance(key, slice):
                raise TypeError(f"instr.as_value()[{key!r}]: only slices of the instruction word can be recorded")
            start, stop, _ = key.indices(len(self.value))
            spans.append((start, stop))
            return self.value[key]

    getitem, as_value = data.View.__getitem__, data.View.as_value

    def recorded_getitem(view, key):
        if isinstance(key, str) and view.shape() is INSTRUCTION:
            names.add(key)
        return getitem(view, key)

    def recorded_as_value(view):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if view.shape() is INSTRUCTION and caller.startswith("hwgen."):
            return RawReads(as_value(view))
        return as_value(view)

    cfg = SystolicConfig(rows=2, cols=2, dataflow=dataflow, max_pool=max_pool, fixed_steps=fixed_steps,
                         product_rounding=product_rounding)
    data.View.__getitem__, data.View.as_value = recorded_getitem, recorded_as_value
    try:
        Fragment.get(SystolicTop(cfg), None)
    finally:
        data.View.__getitem__, data.View.as_value = getitem, as_value
    for name, field in INSTRUCTION:
        if any(field.offset < stop and start < field.offset + field.shape.width for start, stop in spans):
            names.add(name)
    return frozenset(names)


def instruction_fields_unread(cfg) -> frozenset[str]:
    """The instruction fields no hardware of ``cfg`` reads (:func:`_fields_read`)."""
    return _fields_unread(cfg.dataflow, cfg.max_pool, cfg.fixed_steps, cfg.product_rounding)


@lru_cache(maxsize=None)
def _fields_unread(dataflow: str, max_pool: bool, fixed_steps: int, product_rounding: bool) -> frozenset[str]:
    read = _fields_read(dataflow, max_pool, fixed_steps, product_rounding)
    return frozenset(name for name, _, _ in _instruction_layout()[1] if name not in read)


def instruction_used(cfg) -> int:
    """The bits of the instruction word that the hardware of ``cfg`` reads, as a mask (bit ``i`` set: bit ``i``
    read)."""
    return _instruction_kept(cfg)[0]


def _instruction_kept(cfg) -> tuple[int, int]:
    """:func:`instruction_used` and the number of bits it sets."""
    return _instruction_used(cfg.dataflow, _clog2(cfg.act_depth), _clog2(cfg.weight_depth), _clog2(cfg.slot_depth),
                             cfg.operand_bits, _clog2(cfg.prog_depth), _clog2(cfg.rows), cfg.rows.bit_length(),
                             _clog2(cfg.cols), cfg.max_pool, cfg.fixed_steps, cfg.product_rounding)


# Fields read but cut by synthesis to the low bits their consumers use: the controllers read whole 16-bit fields
# (6-bit residues), but an address only reaches as far as its memory is deep, so Yosys removes the rest of the
# field, its latch in ``ctrl.instr`` and the program-memory bits behind it (and RAM cells left holding nothing).
# By kind, from the field's name in the layout (checked against synth_ecp5 netlists: which ``ctrl.instr`` bits
# still have a driver, calibration designs 0 (os) and 6 (ws)):
# - word addresses and word steps into the activation banks (``*_words`` but the stream counts ``x_words`` /
#   ``y_words``, ``*_base`` but ``w_base`` / ``slot_base``, ``c0_word``): the activation address bits;
# - residues (slot mod R, ``*_r``): a walk's step residue feeds ``SlotStep.limit = R − dr`` (``range(R + 1)``, the
#   bits of R); a start residue (``d0_r``, ``c0_word_r``, ``out_word_r``) goes into an ``index_range(R)`` register;
# - ``w_base`` (weight address; WS: one bit more), ``slot_base``, ``zx`` / ``base`` (operand width), ``loop_to``
#   (program address), ``c0_lane`` (column).
# Fields no hardware reads at all are found by :func:`_fields_read`; one more is read but dead: the OS feed
# takes the feature walker's descriptor without ``word_r`` (the WS rows' channel word residue), so ``c0_word_r``.
_START_RESIDUES = ("d0_r", "c0_word_r", "out_word_r")
_COUNTS = ("x_words", "y_words")          # words a streamed sample has (beat counts, compared whole)
_READ_BUT_DEAD = {"os": frozenset({"c0_word_r"}), "ws": frozenset()}


def _narrowed_kind(name: str) -> str | None:
    """How a field is cut (a key of the widths :func:`_instruction_used` computes), None if it is kept whole."""
    if name in ("w_base", "slot_base", "zx", "base", "loop_to", "c0_lane"):
        return name
    if name.endswith(("_words", "_base")) and name not in _COUNTS or name == "c0_word":
        return "act"
    if name in _START_RESIDUES:
        return "start_residue"
    if name.endswith("_r"):
        return "step_residue"
    return None


@lru_cache(maxsize=None)
def _instruction_items(dataflow: str, max_pool: bool, fixed_steps: int, product_rounding: bool
                       ) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """The instruction's fields that the hardware with these options reads: the bits of those kept whole (a mask,
    whatever the configuration) and the others as ``(offset, width, kind)``, so :func:`_instruction_used` walks a
    few dozen items, not every field."""
    unread = _fields_unread(dataflow, max_pool, fixed_steps, product_rounding) | _READ_BUT_DEAD[dataflow]
    whole, narrowed = 0, []
    for name, offset, width in _instruction_layout()[1]:
        if name in unread:
            continue
        kind = _narrowed_kind(name)
        if kind is None:
            whole |= ((1 << width) - 1) << offset
        else:
            narrowed.append((offset, width, kind))
    return whole, tuple(narrowed)


@lru_cache(maxsize=1024)
def _instruction_used(dataflow: str, act: int, weight: int, slot: int, operand: int, prog: int, rows: int,
                      rows_bits: int, cols: int, max_pool: bool, fixed_steps: int, product_rounding: bool
                      ) -> tuple[int, int]:
    """``rows`` / ``cols``: the bits of a row / column index (``clog2``); ``rows_bits``: the bits of R itself. (A
    sweep's configurations have hundreds of different bit widths, so this runs for a quarter of its points.)"""
    kept = {"act": act, "w_base": weight + (dataflow == "ws"), "slot_base": slot, "zx": operand, "base": operand,
            "loop_to": prog, "c0_lane": cols, "start_residue": rows, "step_residue": rows_bits}
    mask, narrowed = _instruction_items(dataflow, max_pool, fixed_steps, product_rounding)
    for offset, width, kind in narrowed:
        mask |= ((1 << min(kept[kind], width)) - 1) << offset
    return mask, mask.bit_count()


def _bits(count: int) -> int:
    return (count - 1).bit_length() or 1              # max(1, …) without the call


def _clog2(n: int) -> int:
    """⌈log₂ n⌉ (0 for n ≤ 1), in integers."""
    return (n - 1).bit_length() if n > 1 else 0


def _mux_levels(inputs: int) -> int:
    """LUT levels of an ``inputs``:1 multiplexer (a LUT4 level selects among ~2 inputs, wide muxes ~4)."""
    return ceil(_clog2(inputs) / 2) if inputs > 1 else 0


# ---------------------------------------------------------------------------------------------------- systolic
# Components (and paths) that read nothing of a configuration but the column count and the widths and depths of
# the PEs and lanes are built by cached functions (_pe_paths, _requant_lanes, _accumulators), those that read
# nothing of it are constants (_CONTROLLER_PATHS, _RESET); all are shared by every configuration that
# has the same arguments: a sweep over the array's rows builds them once per column count and dataflow, not once per
# point (benchmarks/dse_throughput.py). They are shared: do not mutate.
def _lane_registers(S: int, B: int, tb: int, acc: int, out_bits: int, slot_bits: int, sb: int) -> int:
    """Flip-flop bits of one requant lane's data (requant.py, ``K = LANE_STAGE_CYCLES`` cycles per stage, the first
    two of a memory's: its address, its output register): stage 0's ``K`` accumulator registers; per search stage
    its threshold words registered ``K - 1`` times (stage 0: one word one bit wider, and −x; its x registers are the
    accumulator's; b > 0: the two children, its prefix, x and x's negate flag ``K`` times); a finished search's
    count, x and its negate flag ``K`` times per padding stage; then the count's lowest bit with the two codes it
    chooses between (base + step · count, signed: ``sb + 1``-bit base plus ``B + 1`` bits; without padding stages
    the code adders' own copy of the last search stage's prefix, the count's upper ``B - 1`` bits), out_acc and the
    output value registers; the lane's own copies of the slot its next stages read at, of the layer's base, step and
    passthrough, and of the host's write (enable, stage, the address bits its memories decode, data). The valid /
    meta / slot registers are the same in every lane (Yosys merges them): :func:`_lane_control_registers`."""
    K = LANE_STAGE_CYCLES
    search = sum((K - 1) * (tb + 1) + tb if b == 0 else 2 * (K - 1) * tb + K * b + K * tb for b in range(B))
    write = 1 + _bits(S) + slot_bits + B + tb + 1
    codes = 1 + 2 * (max(sb + 1, B + 2) + 1) + (B - 1 if S == B else 0)
    layer = sb + 1 + 2 + 1
    return (K * acc + search + (B - 1) * K + (S - B) * K * (B + tb + 1) + codes + acc + out_bits
            + (B - 1) * slot_bits + layer + write)


def _lane_control_registers(S: int, slot_bits: int, meta_bits: int) -> int:
    """What travels beside the values through the lanes, once for all lanes: valid and meta ``LANE_STAGE_CYCLES``
    times per stage (meta's first register is the controller's: it enters the lanes a cycle late), the slot as
    often per stage that a next stage addresses with, then the out valid / meta registers twice."""
    K = LANE_STAGE_CYCLES
    return S * K * (1 + meta_bits) + (S - 1) * K * slot_bits + 2 * (1 + meta_bits)


def _feed_registers(cfg, slot_bits: int, meta_bits: int) -> int:
    """Flip-flop bits of the feed pipeline in top.py (``cfg.feed_latency`` cycles, controller → array): the
    registered scratchpad addresses (their memories' address bits), every bank's own port registers (read
    addresses, write address, data and enables, its copies of busy and stream_out), the memories' output registers
    (activation and output words), the activation words again beside the operand logic (OS: the code of the lane
    fed), each row's chosen word (OS: code), the weights' output and operand registers, the operand registers and
    each row's copy of zx, the banks' read enables, and the controller's outputs that meet the data delayed to match
    (OS: the rotate select's last registers one per row, the lane select's one per bank); WS: also the accumulator
    and lane signals delayed by the feed pipeline and the PEs' second stage (the accumulators' read enable two cycles
    less, the lanes' meta one more), and the column sums' partials."""
    R, C, L = cfg.rows, cfg.cols, cfg.feed_latency
    act_addr, w_addr, out_addr = _bits(cfg.act_depth), _bits(cfg.weight_depth), _bits(cfg.out_depth)
    sb, acc = cfg.store_bits, cfg.acc_bits
    ports = R * (2 * act_addr + C + C * sb + 2 * out_addr + 1 + C * acc + 2) + C * (2 * w_addr + cfg.w_bits + 1)
    words = R * C * (3 * sb + acc) if cfg.dataflow == "ws" else R * C * (sb + acc) + 2 * R * sb
    bits = R * act_addr + w_addr + ports + words + C * cfg.w_bits * (L - 3) + 2 * R * cfg.operand_bits + 2 * R
    row, col = _bits(R), _bits(C)
    if cfg.dataflow == "ws":
        lag = L + cfg.pe_stages - 2
        acc_addr = _bits(cfg.acc_depth)
        bits += R * (row * (L - 3) + (col + 1) * (L - 2)) + 2 * L - 1       # row selects; commit, weight shift
        bits += 4 * lag - 2 + acc_addr * (2 * lag - 1) + C * acc + slot_bits * lag + meta_bits * (lag + 1)
    else:
        # each bank's copy of the kernel walk's offset; rotate (its last registers one per row) and lane (one per
        # bank), row valid (a cycle of it in the controller); valid, last
        bits += R * act_addr + row * (L - 3 + R) + col * (L - 4 + R) + R * (L - 3) + 2 * L
    return bits


def _controller_pipeline_registers(cfg) -> int:
    """Controller flip-flops for speed (controller.py, ws_controller.py, walk.py): the loop bounds' last indices and
    the walkers' per-layer step constants prepared in DECODE (a step is words, words + stride, dr and R - dr); the
    streaming flags, the layer's end (a copy of the lanes' output flags, beside it) and the drain walk's
    lattice-phase zero flags; the sequencer's DECODE flag copies, ``busy`` copies per activation bank, the load
    decode's and the cycle counter's, ``repeat − 1`` and the run's end flags; OS: the drain's state and the feed's
    flags registered ahead, the drain walk's fill state, whether each row is a pixel of the batch, each array
    column's copy of the drain's shift, the array's capturing (a chain of its own); WS: each row's registered read
    (bank, address, lane, valid), the output walk's wrap flag."""
    R, C = cfg.rows, cfg.cols
    step = 16 + 16 + _bits(R) + _bits(R + 1)
    # last indices; the steps and last indices of the pixel walks (×2) and the feature walk; the repeat test; the
    # streaming flags, the layer's end, the phase flags; the sequencer's DECODE flag copies, its busy copies (one
    # per activation bank, the load decode's, the cycle counter's), repeat − 1 (17 bits) and its two end flags; the
    # drain walk's last phases (lat_s − 1)
    bits = 4 * 16 + (2 * 3 + 2) * step + 3 * 2 * 16 + 1 + 2 + 1 + 2 + DECODE_COPIES + R + 2 + 17 + 2 + 2 * 8
    if cfg.dataflow == "ws":
        return bits + R * (_bits(R) + 16 + _bits(C) + 1) + 7 + 16      # row reads; fold and wrap flags, stream end
    # drain flags, feed flags (prepping, the walk's step and the feed's go among them), the tile counters' flags,
    # prepared n − 2 and registered compares (the feed's and the drain's M and N tiles: their last indices, which
    # ``bits`` counts, are not kept); the drain walk's row index and test, its fill flags (filling, the step
    # in two copies) and table row, both pixel walks' registered next values (three slot sums, row, column and
    # position with their flags; the feed's coordinates; the drain's lattice phases and wraps) and the drain's
    # output test; the drained rows' lanes' slot; the feed's row (one-hot), rows' live bits and their registered
    # coordinates and bounds tests (the padding test), each bank's copy of the kernel walk's d_r; the columns' shift
    # copies, capturing (the array's chain of R + C - 1 registers), the phase flags
    next_values = 2 * (3 * (16 + _bits(R)) + 3 * 16 + 2) + 2 * 16 + 2 * (8 + 1) + 1
    return bits + 3 + 7 + 4 * 19 - 2 * 16 + 16 + 1 + 3 + _bits(R) + next_values + _bits(cfg.slot_depth) + R + 2 * R \
        + 2 * R * 19 + 4 * R + R * _bits(R) + C + (R + C - 1) + 2


def _accumulate_path(acc: int, pool: int) -> Path_:
    """The accumulate into an ``acc``-bit register (``pool``: the max mode's comparator bits, 0 without it: a
    compare and a multiplexer more), in a PE and in a WS column accumulator."""
    return Path_(levels=1 + (1 if pool else 0), carry_bits=acc + pool, chains=1 + (1 if pool else 0))


@lru_cache(maxsize=256)
def _pe_paths(select_levels: int, ob: int, wb: int, acc: int, pool: int, rounding: bool) -> list[Path_]:
    """A PE's register-to-register paths (top.py, pe.py) with ``select_levels`` LUT levels to select its operand
    word (:func:`_mux_levels` of the R·C words to select among on the weight-stationary array; OS: 0, its lane and
    bank chosen in stages before), ``ob``-bit operands, ``wb``-bit weights, ``acc``-bit accumulators (``pool``: the
    max mode's comparator bits, 0 without it), ``rounding``: product rounding. A block RAM into its word register;
    the select and − zx into the operand register; the multiplier between registers (with rounding: its shifter and
    increment behind); the accumulate (max mode: a compare and a multiplexer more)."""
    return [Path_(mem=1), Path_(levels=select_levels + 1, carry_bits=ob, chains=1),
            Path_(levels=_clog2(ob + wb + 3) if rounding else 0, carry_bits=ob + wb if rounding else 0,
                  chains=1 if rounding else 0, mul=(ob, wb)),
            _accumulate_path(acc, pool)]


@lru_cache(maxsize=256)
def _requant_lanes(C: int, S: int, B: int, tb: int, acc: int, slot_depth: int, F: int, fb: int, sb: int
                   ) -> Component:
    """The ``C`` requant lanes (requant.py): ``S`` stages, ``B`` of them searching ``tb``-bit thresholds of
    ``acc``-bit accumulators, ``slot_depth`` threshold slots; ``F`` fixed-point stages of ``fb``-bit values
    (hwgen.arch.fixed: run-time shift, modes and width, a bias memory each). Search stage 0 holds ``slot_depth``
    words one bit wider, stage ``b ≥ 1`` two memories of ``slot_depth · 2^(b-1)`` words (a node's two children)."""
    lane = Component("requant_lane", C, reg=_lane_registers(S, B, tb, acc, fb if F else acc, _bits(slot_depth), sb),
                     add=tb + acc + tb, cmp=B * tb, mux=acc + B * tb + acc, logic=B * 4,
                     mems=[Mem(slot_depth, tb + 1, shape="sdpx"),
                           *(Mem(slot_depth << (b - 1), tb, count=2, shape="sdpx") for b in range(1, B))],
                     # (adders: stage 0's −x, the code, passthrough's accumulator −x; multiplexers: x or −x
                     # there and at the end, the children) a stage's choice of child and compare (registered
                     # thresholds and bit, x or −x) into its bit's register; code = base + step · count into the
                     # output register
                     paths=[Path_(levels=2, carry_bits=tb, chains=1), Path_(levels=2, carry_bits=acc, chains=1)])
    if F:
        shift_levels = _clog2(fb + 3)
        lane.reg += S * fb + F * fb              # the fixed stages' values, their biases' second registers
        lane.add += F * (3 * (fb + 1) + 2 * (fb + 2))          # bias add, rounding increment, remainder, limits
        lane.cmp += F * (2 * (fb + 1) + 3 * (fb + 2))          # rem vs half, over/under limits
        lane.mux += F * ((fb + 1) * 2 * shift_levels + 4 * fb) + fb
        lane.logic += F * 16
        lane.mems += [Mem(slot_depth, fb, shape="sdpx") for _ in range(F)]
        lane.paths.append(Path_(levels=2 * shift_levels + 4, carry_bits=3 * fb, chains=4))
    return lane


@lru_cache(maxsize=256)
def _accumulators(C: int, acc_depth: int, acc: int, pool: int) -> Component:
    """The weight-stationary array's ``C`` column accumulators (``acc_depth`` partial sums of ``acc`` bits; ``pool``
    as in :func:`_pe_paths`). Their path is a read-modify-write: the partial sum leaves its memory (a block RAM's
    output register), is added to (or compared with) the column's sum and written back."""
    return Component("accumulators", C, mems=[Mem(acc_depth, acc, shape="sdpx")], add=acc, mux=acc,
                     paths=[replace(_accumulate_path(acc, pool), mem=1)])


# the controller's register-to-register path (two LUT levels and a 32-bit carry chain, whatever the configuration)
_CONTROLLER_PATHS = (Path_(levels=2, carry_bits=32, chains=1),)
# a stream engine's walk (io.py ``_walk``): word and sample indices with their last flags, prepared n − 2 and n = 1
# tests, the sample's address and the address counted, the bank's last flag; its adders (the indices, the prepared
# n − 2, the two addresses) and compares (index = n − 2, n = 1)
_STREAM_WALK_REGISTERS, _STREAM_WALK_ADDERS, _STREAM_WALK_COMPARES = 6 * 16 + 5, 6 * 16, 4 * 16
_RESET = Component("reset", reg=1)


def systolic_components(cfg) -> list[Component]:
    """The components of a :class:`~hwgen.arch.systolic.config.SystolicConfig` design."""
    R, C = cfg.rows, cfg.cols
    ws = cfg.dataflow == "ws"
    ob, wb, acc, sb = cfg.operand_bits, cfg.w_bits, cfg.acc_bits, cfg.store_bits
    tb = cfg.threshold_bits
    B = cfg.search_stages
    slot_bits = _bits(cfg.slot_depth)
    row_index, col_index = _bits(R), _bits(C)              # bits of a row / column number
    # row, write address (the bits its scratchpads decode; Yosys drops the rest), write, layer_last
    meta_bits = row_index + _bits(max(cfg.act_depth, cfg.out_depth)) + 2
    instr, _ = _instruction_layout()
    used, latched = _instruction_kept(cfg)                 # latched: instruction bits the controller keeps
    # operand path into row 0: memory read → lane select (WS: with the bank select; OS: its own stage, then the
    # bank's) → − zx → PE multiply → accumulate
    pool = acc if cfg.max_pool else 0                       # the max mode: a comparator and one more mux level
    product = ob + wb + cfg.product_rounding                # the PE's product register (pe.py, P_pe = 2)
    # every PE has its multiplier's operands (OS: a and w, WS: a) in copies of its own (array.py; PE(0, 0)'s are
    # copies of the feed's registers)
    if ws:
        pe = Component("pe", R * C, reg=2 * ob + 1 + acc + 2 * wb + product, add=acc, mux=2 * wb + pool,
                       cmp=pool, muls=[(ob, wb, 1)], product_register=not cfg.product_rounding)
        skew = Component("skew", reg=acc * (C * (C - 1) // 2) + (ob + 1) * (R * (R - 1) // 2))
    else:
        pe = Component("pe", R * C, reg=2 * (ob + wb) + 2 + 2 * acc + product, add=acc, cmp=pool,
                       mux=2 * acc + pool, muls=[(ob, wb, 1)], product_register=not cfg.product_rounding)
        skew = Component("skew", reg=(ob + 2) * (R * (R - 1) // 2) + wb * (C * (C - 1) // 2))
    if cfg.product_rounding:                 # barrel shifter, remainder compare and rounding increment per PE
        product_bits = ob + wb + 1
        pe.mux += product_bits * _clog2(product_bits + 2)
        pe.add += product_bits
        pe.cmp += 2 * product_bits
        pe.logic += 8
    pe.paths = _pe_paths(_mux_levels(R * C) if ws else 0, ob, wb, acc, pool, cfg.product_rounding)
    # the selects of a row's code: WS its lane of the bank word it chose; OS a bank's lane fed, a row's bank
    select = Component("operand_select", R, add=ob, mux=(C - 1) * sb + (0 if ws else (R - 1) * sb),
                       reg=(3 if ws else 0) + row_index + col_index,
                       paths=[] if ws else [Path_(levels=_mux_levels(max(R, C)))])
    # the systolic memories are hdl.ram's: read-during-write undefined ("sdpx", no read-first emulation)
    act = Component("activation_banks", R, mems=[Mem(cfg.act_depth, C * sb, group=sb, shape="sdpx")],
                    mux=3 * C * sb + 3 * 16, logic=C + 4)
    out = Component("output_banks", R, mems=[Mem(cfg.out_depth, C * acc, shape="sdpx")], mux=16, logic=4)
    weights = Component("weight_banks", C, mems=[Mem(cfg.weight_depth, wb, shape="sdpx")], logic=4)
    chunks = -(-instr // 32)
    program = Component("program", mems=[Mem(cfg.prog_depth, 32 * chunks, group=32, shape="sdpx", used=used)],
                        logic=chunks, reg=chunks)                   # the chunks' registered write enables
    # the request's six stages, each bank's one-hot pick (this bank, outputs or not, lane j: 2·C flags), its
    # masked halves (AND-ORs of the C accumulators and of the C codes, or 0) and their OR (the code sign-extended),
    # the ORed element, the answer; the stored load (weight and lane writes)
    host = Component("host_read", reg=6 + R * (2 * C + acc + sb + 32) + 32 + 33 + 64,
                     mux=R * (C - 1) * (acc + sb), logic=16 + 2 * R * C + R * acc + (R - 1) * 32)
    S, F = cfg.lane_stages, cfg.fixed_steps
    lane = _requant_lanes(C, S, B, tb, acc, cfg.slot_depth, F, cfg.fixed_bits, sb)
    counters = 16 * 10 + 32 if not ws else 16 * 9 + 32
    # address walkers (walk.py): the kernel walk and two pixel walks (feed, drain), ~10 16-bit registers each; OS:
    # the drain's tables of the current and the next M tile's rows (bank row, word address, written)
    walkers = 16 * 30 + (2 * R * (row_index + 16 + 1) if not ws else 0)
    # per row: its pixel (OS: address, address + kp_words, x, y) or feature (WS: offsets, word, lane, coordinates),
    # double-buffered
    row_bits = 64 if not ws else 16 * 2 + 2 * row_index + col_index + 36 + 1
    # (+ the copies of the walks' index flags: the kernel walk's channel and column flags, 4 and 3, each pixel walk's
    # column and position flags, 3 each; OS: the rows' turn flags, one per row, samples − 1 and the pixel walks' step
    # flag copies, 4 and 3)
    flag_copies = 7 + 2 * 2 * (STEP_GROUPS - 1) + (0 if ws else R + 16 + 7)
    ctrl_reg = latched + counters + walkers + 2 * R * row_bits + _bits(cfg.prog_depth) + 8 + flag_copies
    ctrl_add = counters + walkers + R * (16 + (36 + 2 * row_index if ws else 32))
    controller = Component("controller", reg=ctrl_reg, add=ctrl_add, cmp=6 * 16 + R * 4 * 18,
                           mux=latched // 2 + R * row_bits + ((R - 1) * R * 16 if not ws else 0),
                           logic=64 + (R * R * 16 if ws else 0), paths=_CONTROLLER_PATHS)
    accumulators = _accumulators(C, cfg.acc_depth, acc, pool) if ws else None
    # its walk, done and open, the beat's registers for the banks (write, bank, address, data)
    stream_in = Component("stream_in", reg=_STREAM_WALK_REGISTERS + 2 + 1 + row_index + 16 + C * sb,
                          add=_STREAM_WALK_ADDERS, cmp=_STREAM_WALK_COMPARES, logic=8)
    # its walk, issuing and done, the address, read, word and stream stages' flags, banks and last flags, the beat
    # register (flag, last, the stage chosen); the skid register (its flag, the banks' and the walk's copies of it,
    # the beat it holds) and its multiplexer; every bank's stream stage (its word as results, the codes
    # sign-extended or the accumulators as its copy of passthrough says)
    stream_out = Component("stream_out", reg=_STREAM_WALK_REGISTERS + 2 + 4 * (2 + row_index) + 2 + C * acc
                           + 1 + R + 1 + 1 + C * acc + R * (C * acc + 1), add=_STREAM_WALK_ADDERS,
                           cmp=_STREAM_WALK_COMPARES, mux=(R - 1) * C * acc + R * C * acc + C * acc + 1, logic=8)
    reset = _RESET
    feed = Component("feed_pipeline", reg=_feed_registers(cfg, slot_bits, meta_bits))
    lane_control = Component("lane_control", reg=_lane_control_registers(S, slot_bits, meta_bits)
                             + (2 * slot_bits if F else 0))
    controller.reg += _controller_pipeline_registers(cfg)
    parts = [pe, skew, select, act, out, weights, program, host, lane, controller, stream_in, stream_out, reset, feed,
             lane_control]
    if accumulators is not None:
        parts.append(accumulators)
    return parts


# ---------------------------------------------------------------------------------------------------- dataflow
def _layer_components(index: int, layer) -> list[Component]:
    pe, simd = layer.pe, layer.simd
    in_bits = layer.in_type.bits
    wbits = layer.weight_shape.width
    ob = layer.operand_shape.width
    dot_bound = simd * layer.acc_bound // layer.mw
    dot_bits = max(2, dot_bound.bit_length() + 1)
    accb = layer.acc_bits
    nf_bits = _bits(layer.nf)
    lanes = layer.in_lanes
    counters = _bits(layer.sf) + nf_bits + _bits(layer.steps)
    mvau = Component(f"mvau{index}", reg=counters + 4 + nf_bits + lanes * in_bits + 3 + nf_bits + pe * dot_bits
                     + pe * accb + 1 + (0 if layer.bipolar else in_bits), muls=[], mems=[],
                     add=counters + pe * accb, mux=pe * accb, logic=8)
    if layer.weighted:
        mvau.mems.append(Mem(max(2, layer.steps), simd * wbits, pe, group=wbits))   # loaded one weight at a time
    if layer.pool:                                       # no multipliers: operands summed, or compared (max)
        mvau.add += pe * (in_bits + 1)
        mvau.cmp += pe * in_bits if layer.pool == "max" else 0
        mvau.paths = [Path_(levels=2, carry_bits=accb + in_bits, chains=2)]
        return [mvau] + _activation_components(index, layer)
    if layer.nf > 1 and not layer.depthwise:
        mvau.mems.append(Mem(max(2, layer.sf), simd * in_bits, shape="sp"))            # read where it is written
        mvau.mux += simd * in_bits
    levels = _clog2(simd)
    if layer.bipolar:
        mvau.logic += pe * simd
        mvau.add += pe * simd * 2                        # popcount tree ≈ 2 adder bits per input bit
        mvau.tree += pe * simd * 2
        path = Path_(mem=1, levels=1 + levels, carry_bits=levels * max(2, simd.bit_length()), chains=levels)
    else:
        mvau.add += simd * ob + pe * (simd - 1) * dot_bits
        mvau.tree += pe * (simd - 1) * dot_bits
        mvau.muls.append((ob, wbits, pe * simd))
        rounding = layer.product_shift and layer.product_rounding != "TRN"     # AP_TRN: a bit slice
        if rounding:                                     # the dropped bits' compare and the increment per lane
            product_bits = ob + wbits
            mvau.add += pe * simd * (product_bits - layer.product_shift + 1)
            mvau.cmp += pe * simd * layer.product_shift
            mvau.logic += pe * simd * 3
        path = Path_(mem=1, levels=1 + (2 if rounding else 0), carry_bits=ob + levels * dot_bits
                     + (ob + wbits if rounding else 0), chains=1 + levels + (1 if rounding else 0), mul=(ob, wbits))
    mvau.paths = [path, Path_(levels=1, carry_bits=accb, chains=1)]
    return [mvau] + _activation_components(index, layer)


def _activation_components(index: int, layer) -> list[Component]:
    """A layer's thresholds or fixed-point stages."""
    pe, accb = layer.pe, layer.acc_bits
    parts = []
    if layer.stages:
        parts.append(_fixed_component(index, layer))
    if layer.thresholds:
        L = layer.thresholds
        tb = layer.threshold_bits
        out_bits = layer.out_type.bits
        count_bits = L.bit_length()
        thr = Component(f"thresholds{index}", reg=pe * out_bits + 1, add=pe * (accb + 1 + 2 * L + out_bits),
                        tree=pe * 2 * L,
                        cmp=pe * L * tb, mux=pe * (accb + 1), logic=4,
                        mems=[Mem(max(2, layer.threshold_memory[1]), (L + 1) * tb, pe, group=tb,
                                  used=(1 << (L * tb + 1)) - 1)],      # L thresholds, then the negate flag bit
                        paths=[Path_(mem=1, levels=2 + _clog2(L), carry_bits=accb + 1 + tb + count_bits * _clog2(L)
                                     + out_bits, chains=3 + _clog2(L))])
        parts.append(thr)
    return parts


def _swg_component(index: int, layer) -> Component:
    """A sliding-window generator (swg.py): the line buffer, reader and writer counters, the address and
    readiness arithmetic (constant multiplies ≈ adders of the address width), the pad mux."""
    win = layer.window
    lanes, bits = layer.in_lanes, layer.in_type.bits
    cb = win.channels // lanes
    depth = max(2, win.buffer_rows * win.width * cb)
    addr = _bits(depth)
    image = _bits(win.height * win.width * cb + 1)
    counters = sum(_bits(n) for n in (*win.out_hw, *win.kernel, cb, win.height, win.width * cb, win.buffer_rows))
    span = _bits(max(win.height, win.width) + max(win.pads) + max(win.kernel) + max(win.strides)) + 1
    return Component(f"swg{index}", reg=counters + 2 * span + 3 + 2 + lanes * bits, add=counters + 4 * span
                     + 3 * addr + 2 * image, cmp=3 * image + 4 * span, mux=lanes * bits + addr, logic=12,
                     mems=[Mem(depth, lanes * bits)],
                     paths=[Path_(mem=0, levels=3, carry_bits=2 * image + addr, chains=3)])


def _fixed_component(index: int, layer) -> Component:
    """A layer's fixed-point stages (hwgen.arch.fixed), every field constant: per PE and stage a bias adder, a
    ReLU mux, the rounding increment and compare (none for AP_TRN: a bit slice), the overflow compares and clamp
    mux (none for AP_WRAP: a bit slice); the bias memory per PE."""
    pe = layer.pe
    add = cmp = mux = carry = 0
    bits = layer.acc_bits
    for stage in layer.stages:
        pre = stage.pre_bits(bits)
        rounding = stage.shift > 0 and stage.rounding != "TRN"
        add += (pre if stage.bias_bits else 0) + (pre - stage.shift if rounding else 0)
        cmp += (stage.shift if rounding else 0) + (2 * pre if stage.overflow != "WRAP" else 0)
        mux += (pre if stage.relu else 0) + (stage.width if stage.overflow != "WRAP" else 0)
        carry += pre * ((1 if stage.bias_bits else 0) + (1 if rounding else 0) + (1 if stage.overflow != "WRAP"
                                                                                  else 0))
        bits = stage.width + (0 if stage.signed else 1)
    out_bits = layer.out_type.bits
    biased = len(layer.biased_stages)
    return Component(f"fixed{index}", reg=pe * out_bits + 1, add=pe * add, cmp=pe * cmp, mux=pe * mux, logic=4,
                     mems=[Mem(max(2, layer.nf), biased * layer.bias_bits, pe)] if biased else [],
                     paths=[Path_(mem=1 if biased else 0, levels=2 * len(layer.stages), carry_bits=carry,
                                  chains=max(1, 2 * len(layer.stages)))])


def dataflow_components(cfg) -> list[Component]:
    """The components of a :class:`~hwgen.arch.dataflow.config.DataflowConfig` design."""
    parts = [Component("top", reg=1 + 32 + _bits(cfg.out_beats), add=32 + _bits(cfg.out_beats), logic=16,
                       paths=[Path_(levels=1, carry_bits=32, chains=1)])]
    for index, layer in enumerate(cfg.layers):
        parts += _layer_components(index, layer)
        if layer.window is not None:
            parts.append(_swg_component(index, layer))
        readers = cfg.readers(index)
        if readers > 1 or layer.add:                 # a duplicate's AND of readies, a zip's phase and muxes
            bits = layer.pe * layer.out_type.bits
            parts.append(Component(f"branch{index}", reg=1 if layer.add else 0, mux=bits if layer.add else 0,
                                   logic=2 * readers + (2 if layer.add else 0)))
    for (source, consumer, _), depth in zip(cfg.edges, cfg.fifo_depths):
        layer, nxt = cfg.layers[source], cfg.layers[consumer]
        bits = layer.out_type.bits
        up, down = cfg.boundary(source, consumer)
        wide = lcm(layer.pe, nxt.in_lanes)
        if up > 1 or down > 1:
            dwc = Component(f"dwc{source}", logic=4)
            if up > 1:
                dwc.reg += (up - 1) * layer.pe * bits + wide * bits + _bits(up) + 1
                dwc.mux += wide * bits
                dwc.add += _bits(up)
            if down > 1:
                dwc.reg += wide * bits + _bits(down) + 1
                dwc.mux += (down - 1) * nxt.in_lanes * bits
                dwc.add += _bits(down)
            dwc.paths = [Path_(levels=1 + _mux_levels(down), carry_bits=0, chains=0)]
            parts.append(dwc)
        width = wide * bits            # the FIFO sits between upsizer and downsizer: lcm-wide words
        level = _bits(depth + 1)
        parts.append(Component(f"fifo{consumer}", reg=width + 1 + 3 * level, add=3 * level, cmp=level,
                               logic=6, mems=[Mem(depth - 1, width)],
                               paths=[Path_(levels=2, carry_bits=level, chains=1)]))
    return parts


@lru_cache(maxsize=4)
def components(config) -> tuple[Component, ...]:
    """Structure counts of every component of ``config`` (a systolic or dataflow configuration); cached per
    configuration (they are frozen), so resources and fmax of one point (and its other targets) share the work.
    Do not mutate. (Few entries: a sweep lists a configuration's targets one after another and its configurations
    are all different otherwise. Every entry is ~100 objects, and one kept for a few points outlives the young
    garbage collections and is promoted, so the old generations fill and get walked: with 256 entries collections
    cost ~10% of a sweep's time, with 16 ~3% more than with 4, ``benchmarks/dse_throughput.py``.)"""
    kind = type(config).__name__
    if kind == "SystolicConfig":
        return tuple(systolic_components(config))
    if kind == "DataflowConfig":
        return tuple(dataflow_components(config))
    raise TypeError(f"no FPGA model for {type(config).__name__}; expected SystolicConfig or DataflowConfig")


# ---------------------------------------------------------------------------------------------------- mapping
@lru_cache(maxsize=1024)
def uses_dsp(family: str, a: int, b: int) -> int:
    """DSP blocks Yosys' ``mul2dsp`` gives an ``a × b`` multiplier on ``family`` (0: built from LUTs); cached (a
    design's few multiplier shapes are asked for by its resources and by its fmax)."""
    limits = DSP_MAX[family]
    if limits is None or min(a, b) < 2 or (family in ("xc7", "xcup") and a + b < 9):   # synth_xilinx: Y ≥ 9 bits
        return 0
    big, small = max(a, b), min(a, b)
    return ceil(big / limits[0]) * ceil(small / limits[1])


def features(config, family: str) -> tuple[dict[str, float], int, float]:
    """Mapped features of ``config`` on ``family`` (:data:`FEATURES`), DSP blocks and block-RAM units."""
    return _features(components(config), family)


def _features(parts, family: str, dsp_multipliers: bool = True) -> tuple[dict[str, float], int, float]:
    """:func:`features` of the components ``parts``; ``dsp_multipliers=False`` builds every multiplier from LUTs."""
    values, dsp, bram = _feature_values(parts, family, dsp_multipliers)
    return dict(zip(FEATURES, values)), dsp, bram


def _feature_values(parts, family: str, dsp_multipliers: bool = True) -> tuple[tuple[float, ...], int, float]:
    """:func:`_features` with the features as a tuple in :data:`FEATURES` order."""
    # each feature summed in local variables, component by component as listed, in integers (every count is whole)
    # and made a float at the end: the sums are exact either way, and integer additions are the interpreter's
    # fast ones where an integer added to a float is not
    reg = add = tree = cmp = mux = logic = mul_lut = lut_ram = mem_ff = emulation_ff = mem_mux = mem_logic = 0
    memories = dsp = 0
    # ECP5 (hwgen.estimate.ecp5_pack): the register that reads an hdl.ram block RAM (every sdpx memory is read into
    # one) becomes the RAM's output register, a registered product the DSP's: flip-flops no longer
    packs = family == "ecp5"
    bram = 0.0
    for comp in parts:
        n = comp.count
        reg += n * comp.reg
        add += n * comp.add
        tree += n * comp.tree
        cmp += n * comp.cmp
        mux += n * comp.mux
        logic += n * comp.logic
        if not comp.muls and not comp.mems:       # most components have neither
            continue
        for a, b, k in comp.muls:
            blocks = uses_dsp(family, a, b) if dsp_multipliers else 0
            if blocks:
                dsp += n * k * blocks
                if packs and comp.product_register:           # ecp5_pack: the DSP's output register
                    reg -= n * k * (a + b)
            else:
                mul_lut += n * k * a * b
        for depth, width, count, group, shape, used in comp.mems:
            k = n * count
            m_bram, m_lut_ram, m_ff, m_emulation_ff, m_mux, m_logic, read = _mapped(family, depth, width, group,
                                                                                   shape, used)
            if packs and m_bram and shape == "sdpx":            # ecp5_pack: the block RAM's output register
                reg -= k * read
            memories += k
            bram += k * m_bram
            lut_ram += k * m_lut_ram
            mem_ff += k * m_ff
            emulation_ff += k * m_emulation_ff
            mem_mux += k * m_mux
            mem_logic += k * m_logic
    return (float(reg), float(add), float(cmp), float(mux), float(logic), float(mul_lut), float(lut_ram),
            float(mem_ff), float(emulation_ff), float(mem_mux), float(mem_logic), float(memories), 1.0,
            float(add - tree), float(tree)), dsp, bram


@lru_cache(maxsize=8192)
def _mapped(family: str, depth: int, width: int, group: int | None, shape: str, used: int | None) -> tuple:
    """What one copy of a memory (:class:`Mem`'s fields but its count) adds on ``family``:
    :func:`~hwgen.estimate.memmap.map_memory`'s ``bram``, ``lut_ram``, ``ff``, ``emulation_ff``, ``mux`` and
    ``logic``, then the bits of its word in ``used``; one lookup per memory of a design. Keys and values are plain
    numbers and strings, which the garbage collector stops tracking, and the mapping is computed past
    ``map_memory``'s own cache (it would keep a :class:`~hwgen.estimate.memmap.MemoryMapping` per memory): a
    sweep's thousands of memories add nothing to the collections' work (``benchmarks/dse_throughput.py``)."""
    _, _, _, _, bram, lut_ram, ff, emulation_ff, mux, logic, _ = mapping(family, depth, width, group, shape, used)
    return bram, lut_ram, ff, emulation_ff, mux, logic, width if used is None else used.bit_count()


@lru_cache(maxsize=1)
def coefficients() -> dict:
    """The fitted coefficients and their provenance (``coefficients.json``)."""
    return json.loads(COEFFICIENTS_FILE.read_text())


def estimate_resources(config, family: str, coeffs: dict | None = None) -> dict[str, float]:
    """Analytic ``lut``, ``ff``, ``carry``, ``dsp``, ``bram`` of ``config`` on ``family`` (counts of the family's
    primitives; see ``targets``)."""
    return resources_of(components(config), family, coeffs)


def resources_of(parts, family: str, coeffs: dict | None = None) -> dict[str, float]:
    """:func:`estimate_resources` of the components ``parts``."""
    rows = _rows_of(coeffs) if coeffs else _coefficient_rows(family)
    values, dsp, bram = _feature_values(parts, family)
    out = {}
    for metric, row in rows:
        exact = values[_EXACT_INDEX[metric]] if metric in _EXACT_INDEX else 0.0
        out[metric] = exact + max(0.0, sum(map(mul, row, values)))
    out["dsp"] = float(dsp)
    out["bram"] = float(bram)
    return out


def _rows_of(coeffs: dict) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Per fitted metric its coefficients in :data:`FEATURES` order (0.0 where the fit has none)."""
    return tuple((metric, tuple(coeffs[metric].get(k, 0.0) for k in FEATURES)) for metric in ("lut", "ff", "carry"))


@lru_cache(maxsize=None)
def _coefficient_rows(family: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    return _rows_of(coefficients()["families"][family])


FOLD_COST_FAMILY = "ecp5"


@lru_cache(maxsize=65536)
def fold_cost(layer) -> float:
    """What the dataflow folder minimizes for a layer (a :class:`~hwgen.arch.dataflow.config.LayerConfig` at one
    folding): its analytic LUT4 count on :data:`FOLD_COST_FAMILY` with every multiplier built from LUTs (so MAC
    lanes cost what they cost in logic whatever DSP budget a device has; block RAM holding the weights is free, LUT
    RAM and flip-flop memories are not). The layer's constant term is left out: only differences matter."""
    f, _, _ = _features(_layer_components(0, layer), FOLD_COST_FAMILY, dsp_multipliers=False)
    c = coefficients()["families"][FOLD_COST_FAMILY]["lut"]
    exact = f[EXACT["lut"]] if "lut" in EXACT else 0.0
    return exact + sum(c.get(k, 0.0) * v for k, v in f.items() if k != "one")


def _mul_terms(family: str, mul: tuple[int, int] | None) -> tuple[int, int]:
    """A path's multiplier as delay terms ``(dsp, mul_lut)``: a DSP block, or a LUT array multiplier whose depth
    grows with a + b."""
    if mul is None:
        return 0, 0
    return (1, 0) if uses_dsp(family, *mul) else (0, mul[0] + mul[1])


def path_terms(config, family: str) -> list[dict[str, float]]:
    """Every component path of ``config`` as the terms of the delay model (:data:`PATH_TERMS`)."""
    rows = []
    for comp in components(config):
        for p in comp.paths:
            dsp, mul_lut = _mul_terms(family, p.mul)
            rows.append({"one": 1.0, "mem": float(p.mem), "levels": float(p.levels), "carry_bits": float(p.carry_bits),
                         "chains": float(p.chains), "dsp": float(dsp), "mul_lut": float(mul_lut)})
    return rows


def estimate_fmax(config, family: str, coeffs: dict | None = None) -> float:
    """Analytic fmax (MHz): the slowest component path under the family's delay model (ns per term)."""
    return fmax_of(components(config), family, coeffs)


@lru_cache(maxsize=None)
def _delays(family: str) -> tuple[float, ...]:
    delay = coefficients()["families"][family]["delay_ns"]
    return tuple(delay.get(k, 0.0) for k in PATH_TERMS)


def fmax_of(parts, family: str, coeffs: dict | None = None) -> float:
    """:func:`estimate_fmax` of the components ``parts``."""
    if coeffs:
        one, mem, levels, carry_bits, chains, dsp, mul_lut = (coeffs["delay_ns"].get(k, 0.0) for k in PATH_TERMS)
    else:
        one, mem, levels, carry_bits, chains, dsp, mul_lut = _delays(family)
    worst = None
    # path_terms' rows, summed term by term in PATH_TERMS order (a float times an int is the float times the int
    # as a float: path_terms' float() of each term is left out, the figures are the same)
    for comp in parts:
        for p in comp.paths:
            dsp_term, mul_term = (0, 0) if p.mul is None else _mul_terms(family, p.mul)
            total = (0 + one * 1.0 + mem * p.mem + levels * p.levels + carry_bits * p.carry_bits + chains * p.chains
                     + dsp * dsp_term + mul_lut * mul_term)
            if worst is None or total > worst:
                worst = total
    return 1000.0 / worst
