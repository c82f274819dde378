"""Which FPGA primitive each memory becomes and how many: Yosys' ``memory_libmap`` decision, reproduced.

Yosys maps every memory by cost (``passes/memory/memory_libmap.cc``): for each RAM the family's library
(``techlibs/lattice/brams_16kd.txt`` + ``lutrams_trellis.txt``, ``techlibs/ice40/brams.txt``,
``techlibs/xilinx/brams_xc4v.txt`` + ``lutrams_xc5v.txt`` / ``lutrams_xcu.txt``) offers, it picks the cheapest
geometry (base width → ``mult_a`` address blocks × ``repl`` data replicas) and scores it::

    cost = (ram_cost − widthscale)·repl + widthscale·mult_a·width / unit_width
           + ½·(mult_a − 1)·width            (read mux)   + ½·mult_a·enables  (write demux, when mult_a > 1)
           + 2·emulation score               (soft logic the RAM cannot do itself)

and keeps the memory in flip-flops when ``depth · width`` (the logic cost of a RAM bit is 1) is lower than every
RAM's cost (ties go to flip-flops; costs are compared truncated to integers, as Yosys does). This module evaluates
that rule for the port shapes hwgen's generators build, all of them one synchronous write port and one synchronous,
non-transparent (read-first) read port in the same clock domain:

- ``sdp``: separate read and write addresses (the dataflow pipeline's weights, thresholds, FIFOs);
- ``sdpx``: the same with read-during-write undefined (``no_rw_check``: ``hwgen.arch.hdl.ram``, the systolic
  array's memories): Yosys emulates no read-first behaviour, so block RAMs score 1 (the read port that does not
  share the write port) and bring no soft logic;
- ``sp``: one address for both (the MVAU input buffer), which single-port RAMs can take. hwgen reads such a
  memory whenever it writes it, so a shared block-RAM port needs no read-enable emulation (Yosys proves the write
  implies the read); a single-port memory whose reads and writes are independent would cost one more register.

Bits nothing reads (instruction fields a configuration does not use, the high bits of addresses into shallow
memories, a threshold word's unused flag bits) are mapped with the rest and then removed, with every RAM cell left
holding none of the used bits: ``map_memory(..., used=…)`` returns what remains.

A write port whose enables split the word into ``groups`` (``write_port(granularity=…)`` or per-element writes)
pads every group to the RAM's byte width (or to its unit width when it has no byte enables), as Yosys' swizzle does.

The emulation score and the soft logic a choice brings come from how the RAM's ports fit a read-first port pair:

- distributed RAMs read asynchronously: the read register stays in fabric (``width`` flip-flops), score 1 for the
  read port that does not share the write port (0 when it shares it, single-port RAMs);
- ECP5 ``DP16KD``/``PDPW16KD`` (separate ports) and iCE40 ``SB_RAM40_4K`` have no read-first capability: Yosys
  delays the write by a cycle and bypasses it (``Mem::emulate_read_first`` + ``emulate_transparency``): score 7
  and ``2·width + abits + 2·groups`` flip-flops, a ``width``-bit bypass mux and an address comparator;
- Xilinx block RAM has ``READ_FIRST``: score 1, no soft logic; a shared ``DP16KD`` port has ``READBEFOREWRITE``:
  score 0.

Every figure is checked against real Yosys runs in ``tests/test_memmap.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

FACTOR_MUX = 0.5
FACTOR_DEMUX = 0.5
FACTOR_EMU = 2.0
READ_FIRST_SCORE = 7          # 3 (read-first emulation) + 3 (transparency emulation) + 1 (non-shared read port)


@dataclass(frozen=True)
class RamDef:
    """One configuration of a library RAM (a ``ram`` block with one choice of its ``option``s).

    ``dbits``: data widths by base-width index (Yosys assumes each index doubles the depth below ``abits``);
    ``wr_widths``: (min, max) index the write port can take (None: any); ``scores``: emulation score per port
    shape (``sdp``/``sp``; missing: the RAM cannot take that shape); ``read_first``: shapes for which Yosys
    emulates read-first behaviour in fabric; ``cells``: what one Yosys cell becomes: ``(primitive, how many,
    per_bit)`` (``per_bit``: one primitive per used data bit, as widthscale LUT RAMs do); ``units``: block-RAM units
    (see ``targets``) per cell; ``luts``: LUT-equivalents per primitive (LUT RAM)."""

    name: str
    kind: str                                    # "block" | "distributed"
    abits: int
    dbits: tuple[int, ...]
    cost: float
    scores: tuple[tuple[str, int], ...]
    primitive: str
    widthscale: float = 0.0
    byte: int = 0
    wr_widths: tuple[int, int] | None = None
    read_first: tuple[str, ...] = ()
    per_bit: bool = False
    units: float = 0.0
    luts: int = 0
    per_cell: int = 1                            # primitives per Yosys cell (a cascaded pair: 2)

    def score(self, shape: str) -> int | None:
        if shape == "sdpx":                      # no read-first emulation: only the separate read port's 1
            sdp = self.score("sdp")
            return None if sdp is None else (1 if "sdp" in self.read_first else sdp)
        return dict(self.scores).get(shape)


def _lutram(name: str, cost: float, options: tuple[tuple[int, int, str, int, bool], ...], scores, widthscale=None
            ) -> tuple[RamDef, ...]:
    """A widthscale LUT RAM with one ``(abits, width, primitive, luts, per_bit)`` entry per ``ABITS`` option."""
    return tuple(RamDef(name, "distributed", a, (w,), cost, scores, prim, cost if widthscale is None else widthscale,
                        per_bit=per_bit, luts=luts) for a, w, prim, luts, per_bit in options)


SDP_1 = (("sdp", 1),)                   # a separate asynchronous read port: +1, no other emulation
SHARED_0 = (("sp", 0),)                 # the read port shares the read-write port
BOTH = (("sdp", 1), ("sp", 0))

# ECP5 (synth_ecp5: memory_libmap -lib +/lattice/lutrams_trellis.txt -lib +/lattice/brams_16kd.txt)
ECP5 = (
    RamDef("$__TRELLIS_DPR16X4_", "distributed", 4, (4,), 4, (("sdp", 1), ("sp", 1)), "TRELLIS_DPR16X4", luts=4),
    RamDef("$__DP16KD_", "block", 14, (1, 2, 4, 9, 18), 128, (("sdp", READ_FIRST_SCORE), ("sp", 0)), "DP16KD",
           byte=9, read_first=("sdp",), units=1),
    RamDef("$__PDPW16KD_", "block", 14, (1, 2, 4, 9, 18, 36), 128, (("sdp", READ_FIRST_SCORE), ("sp", 7)),
           "DP16KD", byte=9, wr_widths=(5, 5), read_first=("sdp", "sp"), units=1),     # a DP16KD, 36 bits wide
)

# iCE40 (synth_ice40: memory_libmap -lib +/ice40/brams.txt -lib +/ice40/spram.txt -no-auto-huge)
_RAM4K_SCORES = (("sdp", READ_FIRST_SCORE), ("sp", READ_FIRST_SCORE))
ICE40 = (
    RamDef("$__ICE40_RAM4K_", "block", 11, (2, 4, 8, 16), 64, _RAM4K_SCORES, "SB_RAM40_4K", wr_widths=(0, 2),
           read_first=("sdp", "sp"), units=1),                                               # option HAS_BE 0
    RamDef("$__ICE40_RAM4K_", "block", 11, (2, 4, 8, 16), 64, _RAM4K_SCORES, "SB_RAM40_4K", byte=1,
           wr_widths=(3, 3), read_first=("sdp", "sp"), units=1),                             # option HAS_BE 1
)

# Xilinx 7-series (synth_xilinx -family xc7: lutrams_xc5v.txt, brams_xc4v.txt with HAS_SIZE_36, HAS_CASCADE,
# HAS_CONFLICT_BUG, HAS_MIXWIDTH_SDP): READ_FIRST is available, so block RAM needs no emulation
_TDP = (("sdp", 1), ("sp", 0))
_XILINX_BRAM = (
    RamDef("$__XILINX_BLOCKRAM_TDP_", "block", 14, (1, 2, 4, 9, 18), 129, _TDP, "RAMB18E1", byte=9, units=0.5),
    RamDef("$__XILINX_BLOCKRAM_TDP_", "block", 15, (1, 2, 4, 9, 18, 36), 257, _TDP, "RAMB36E1", byte=9, units=1),
    RamDef("$__XILINX_BLOCKRAM_TDP_", "block", 16, (1, 2, 4, 9), 513, _TDP, "RAMB36E1", byte=9, units=1,
           per_cell=2),                                                                      # MODE CASCADE
    RamDef("$__XILINX_BLOCKRAM_SDP_", "block", 14, (1, 2, 4, 9, 18, 36), 129, SDP_1, "RAMB18E1", byte=9, units=0.5),
    RamDef("$__XILINX_BLOCKRAM_SDP_", "block", 15, (1, 2, 4, 9, 18, 36, 72), 257, SDP_1, "RAMB36E1", byte=9,
           units=1),
)
XC7 = (
    *_lutram("$__XILINX_LUTRAM_SP_", 8, ((5, 8, "RAM32M", 4, False), (6, 4, "RAM64X1S", 1, True),
                                         (7, 2, "RAM128X1S", 2, True), (8, 1, "RAM256X1S", 4, True)), SHARED_0),
    *_lutram("$__XILINX_LUTRAM_DP_", 8, ((5, 4, "RAM32M", 4, False), (6, 2, "RAM64X1D", 2, True),
                                         (7, 1, "RAM128X1D", 4, True)), BOTH),
    *_lutram("$__XILINX_LUTRAM_QP_", 7, ((5, 2, "RAM32M", 4, False), (6, 1, "RAM64M", 4, False)), BOTH),
    *_lutram("$__XILINX_LUTRAM_SDP_", 8, ((5, 6, "RAM32M", 4, False), (6, 3, "RAM64M", 4, False)), SDP_1,
             widthscale=7),
    *_XILINX_BRAM,
)
# UltraScale+ (lutrams_xcu.txt; brams_xc4v.txt without cascade; URAM off: -no-auto-huge). The 64X8SW and
# 32X16DR8 RAMs need mixed port widths, which hwgen's memories never have.
XCUP = (
    *_lutram("$__XILINX_LUTRAM_SP_", 16, ((5, 16, "RAM32M16", 8, False), (6, 8, "RAM64M8", 8, False),
                                          (7, 4, "RAM128X1S", 2, True), (8, 2, "RAM256X1S", 4, True),
                                          (16, 1, "RAM512X1S", 8, True)), SHARED_0),
    *_lutram("$__XILINX_LUTRAM_DP_", 16, ((5, 8, "RAM32M16", 8, False), (6, 4, "RAM64M8", 8, False),
                                          (7, 2, "RAM128X1D", 4, True), (8, 1, "RAM256X1D", 8, True)), BOTH),
    *_lutram("$__XILINX_LUTRAM_QP_", 16, ((5, 4, "RAM32M16", 8, False), (6, 2, "RAM64M8", 8, False)), BOTH),
    *_lutram("$__XILINX_LUTRAM_OP_", 16, ((5, 2, "RAM32M16", 8, False), (6, 1, "RAM64M8", 8, False)), BOTH),
    *_lutram("$__XILINX_LUTRAM_SDP_", 16, ((5, 14, "RAM32M16", 8, False), (6, 7, "RAM64M8", 8, False)), SDP_1),
    *(d for d in _XILINX_BRAM if d.per_cell == 1),
)
LIBRARIES = {"ecp5": ECP5, "ice40": ICE40, "xc7": XC7, "xcup": XCUP}


class MemoryMapping(NamedTuple):
    """What one memory becomes on a family. ``kind``: ``block`` / ``distributed`` / ``ff`` (flip-flops); ``cell``:
    the Yosys cell ``memory_libmap`` chose (``$__DP16KD_``; ``""`` for ``ff``); ``primitive`` (the synthesized
    cell: ``DP16KD``, ``RAM32M``; ``""`` for ``ff``) × ``count``; ``bram``: block-RAM units (see ``targets``);
    ``lut_ram``: LUT-equivalents of the LUT RAM primitives; ``ff``: flip-flops the mapping puts in
    fabric (storage of ``ff`` memories, read registers of LUT RAM); ``emulation_ff``: the read-first emulation's
    flip-flops (its delayed write address and data may be one set for memories written from one bus, as Yosys
    merges identical flip-flops; the count here is this memory's alone); ``mux``: 2:1 mux bits in
    fabric (read multiplexers across address blocks or flip-flop words, write-bypass muxes); ``logic``: other gate
    bits (write-enable decoding, bypass address comparison); ``cost``: Yosys' score of the choice."""

    kind: str
    cell: str
    primitive: str
    count: int
    bram: float
    lut_ram: int
    ff: int
    emulation_ff: int
    mux: int
    logic: int
    cost: float


def _clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _swizzle_bits(width: int, group: int, byte: int) -> int:
    """Bits of Yosys' swizzle: every write-enable group starts on a ``byte`` boundary, the word ends on one."""
    full, rest = divmod(width, group)
    return full * (-(-group // byte) * byte) + (-(-rest // byte) * byte if rest else 0)


def _bases(ram: RamDef) -> tuple[tuple[int, int, int, bool], ...]:
    """The base widths Yosys' ``handle_geom`` tries for ``ram``, in its order, as ``(words per address block, unit
    width, byte width, unit width capped by the write port)``; widths the write port cannot emulate are left out."""
    dbits = ram.dbits
    if ram.byte:
        byte_log2 = max((i for i, d in enumerate(dbits) if ram.byte >= d), default=0)
    else:
        byte_log2 = len(dbits) - 1
    out = []
    for base in range(len(dbits)):
        unit = base if ram.wr_widths is None else min(base, ram.wr_widths[1])
        if ram.wr_widths is not None and base < ram.wr_widths[0] and base < byte_log2:
            continue                                              # write port narrower than it can be
        unit_width = dbits[unit]
        out.append((1 << (ram.abits - base), unit_width, ram.byte if 0 < ram.byte <= unit_width else unit_width,
                    unit != base))
    return tuple(out)


def _plans(rams: tuple[RamDef, ...], shape: str) -> tuple:
    """The RAMs that can take ``shape`` as ``(library index, RAM, fixed cost per replica, widthscale, 2 × emulation
    score, base widths, cost per bit of its fullest block, its widest unit, its kind)``, cheapest per bit first (so the
    RAMs tried later are mostly cut by :func:`map_memory`'s lower bound)."""
    out = []
    for i, ram in enumerate(rams):
        if ram.score(shape) is None:
            continue
        bases = _bases(ram)
        per_bit = ram.cost / max(words * unit for words, unit, _, _ in bases)
        out.append((i, ram, ram.cost - ram.widthscale, ram.widthscale, FACTOR_EMU * ram.score(shape), bases, per_bit,
                    max(unit for _, unit, _, _ in bases), ram.kind))
    return tuple(sorted(out, key=lambda plan: (plan[6], plan[2], plan[0])))


_PLANS = {family: {shape: _plans(rams, shape) for shape in ("sdp", "sdpx", "sp")}
          for family, rams in LIBRARIES.items()}


@lru_cache(maxsize=1024)
def _word_plans(family: str, width: int, group: int, shape: str) -> tuple:
    """The plans (:data:`_PLANS`) of ``family`` for ``shape`` with what their costs read of a ``width``-bit word of
    ``group``-bit write-enable groups alone (``group`` ≤ ``width``), as ``(library index, kind, fixed cost per
    replica, widthscale, 2 × emulation score, cost per bit of its fullest block, the least cost of the replicas
    the word needs whatever the depth, base widths as ``(words per address block, unit width, byte width, capped,
    the swizzle's bits)``)``: computed once per word shape, not once per memory (a sweep's memories have a few
    dozen word shapes and a thousand depths, ``benchmarks/dse_throughput.py``)."""
    out = []
    for index, _, fixed, widthscale, emulation, bases, per_bit, widest, kind in _PLANS[family][shape]:
        swizzles = {byte: _swizzle_bits(width, group, byte) for _, _, byte, _ in bases}
        out.append((index, kind, fixed, widthscale, emulation, per_bit,
                    fixed * -(-width // widest) + widthscale * width / widest,
                    tuple((words, unit, byte, capped, swizzles[byte]) for words, unit, byte, capped in bases)))
    return tuple(out)


def _geometry(plan, depth: int, width: int, groups: int) -> tuple[float, int, int, int, int] | None:
    """Yosys' ``handle_geom`` for one write port of ``groups`` enables (``plan``: one of :func:`_word_plans`):
    ``(cost, mult_a, repl, unit width, byte width)`` of the cheapest base width (costs compared truncated to
    integers, as Yosys does), or None when none fits the write port."""
    _, _, fixed, widthscale, emulation, _, _, bases = plan
    best = None
    for words, unit_width, byte, capped, swizzle in bases:
        if capped and best is not None:
            break
        mult_a = -(-depth // words)
        repl = -(-mult_a * swizzle // unit_width)
        cost = fixed * repl + widthscale * mult_a * width / unit_width + emulation
        if mult_a != 1:
            cost += FACTOR_MUX * (mult_a - 1) * width + FACTOR_DEMUX * mult_a * groups
        if best is None or cost < int(best[0]):
            best = (cost, mult_a, repl, unit_width, byte)
    return best


def _fields_touched(mask: int, size: int, count: int) -> int:
    """How many of the ``count`` ``size``-bit fields of ``mask`` (field ``i``: bits ``i·size`` on) hold a set bit:
    each field's bits ORed down into its lowest bit (shifts that double the span folded), then those bits counted."""
    span = 1
    while span < size:
        step = min(span, size - span)
        mask |= mask >> step
        span += step
    return (mask & ((1 << (size * count)) - 1) // ((1 << size) - 1)).bit_count()


def _used_replicas(mask: int, width: int, group: int, byte: int, unit: int, mult_a: int) -> int:
    """RAM cells that hold at least one used bit (``mask``: the bits read): Yosys lays ``mult_a`` copies of the
    swizzle (one per address block) end to end and cuts them into ``unit``-bit cells; bit ``b`` sits at
    ``(b // group)·padded + b % group``. (The padding between groups is shorter than a cell, so no cell
    between two used bits of a run holds padding alone: counting cells with a used bit counts every cell from a
    run's first bit's to its last's.)"""
    padded = -(-group // byte) * byte
    swizzle = _swizzle_bits(width, group, byte)
    if padded != group:
        field, spread = (1 << group) - 1, 0
        for index in range(-(-width // group)):
            spread |= ((mask >> (index * group)) & field) << (index * padded)
        mask = spread
    if mult_a > 1:                    # the copies do not overlap (mask < 2^swizzle): a product ORs them
        mask *= ((1 << (swizzle * mult_a)) - 1) // ((1 << swizzle) - 1)
    return _fields_touched(mask, unit, -(-swizzle * mult_a // unit))


@lru_cache(maxsize=8192)
def map_memory(family: str, depth: int, width: int, group: int | None = None, shape: str = "sdp",
               used: int | None = None) -> MemoryMapping:
    """How Yosys maps a ``depth × width`` memory with write-enable groups of ``group`` bits (None: one enable for
    the word) and port ``shape`` (``sdp`` / ``sp``, see the module docstring) on ``family``.

    ``used``: the bits of the word the hardware reads, as a mask (bit ``i`` set: bit ``i`` read; None: all). Yosys
    chooses the mapping for the whole word, then removes what drives nothing: RAM cells none of whose bits are
    read, and the flip-flops and muxes of unread bits; the figures returned are what remains."""
    return MemoryMapping(*mapping(family, depth, width, group, shape, used))


def mapping(family: str, depth: int, width: int, group: int | None, shape: str, used: int | None) -> tuple:
    """:func:`map_memory` uncached, as a plain tuple of :class:`MemoryMapping`'s fields (what the FPGA model's
    own cache keeps per memory)."""
    group, groups, abits, choice = _choice(family, depth, width, group, shape)
    mask = None if used is None else used & ((1 << width) - 1)
    read = width if mask is None else mask.bit_count()                  # bits the hardware reads
    if mask is not None:
        groups = _fields_touched(mask, group, groups)                   # write-enable groups left
    if choice is None:
        return "ff", "", "", 0, 0.0, 0, depth * read + read, 0, (depth - 1) * read, depth * groups, \
            float(depth * width)
    index, (cost, mult_a, repl, unit, byte) = choice
    ram = LIBRARIES[family][index]
    if mask is not None:
        repl = _used_replicas(mask, width, group, byte, unit, mult_a)
    cells = repl * ram.per_cell
    count = mult_a * read if ram.per_bit else cells
    mux = (mult_a - 1) * read
    logic = mult_a * groups if mult_a > 1 else 0
    ff = emulation_ff = 0
    if ram.kind == "distributed":
        ff = read                                                # the read register, outside the RAM
    elif shape in ram.read_first:
        emulation_ff = 2 * read + abits + 2 * groups             # delayed write (data, address, enables), bypass
        mux += read
        logic += abits + groups
    return ram.kind, ram.name, ram.primitive, count, cells * ram.units, count * ram.luts, ff, emulation_ff, mux, \
        logic, cost


@lru_cache(maxsize=8192)
def _choice(family: str, depth: int, width: int, group: int | None, shape: str) -> tuple:
    """:func:`map_memory`'s choice for the whole word (which bits are read does not enter it): ``(group, groups,
    address bits, None or (RAM's index in the family's library, geometry))``; cached apart, so memories differing
    only in the bits read (the program memory of every configuration) share it. (An index, not the RAM: an entry of
    plain numbers is one the garbage collector stops tracking, and a sweep fills thousands.)"""
    group = width if group is None else min(group, width)
    groups = -(-width // group)
    abits = (depth - 1).bit_length() or 1                         # _clog2, inlined
    bits = depth * width
    # RAMs in order of a cost none of their geometries undercuts (a replica holds at most a full block, and
    # ⌈width / widest unit⌉ replicas are needed); once that bound reaches the flip-flop fallback's cost or a found
    # choice's cost + 1, no RAM left can be chosen (Yosys picks a later choice only if it is below the truncated
    # cost of the earlier one)
    bounds = sorted([(plan[4] + max(plan[5] * bits, plan[6]), plan[0], plan)
                     for plan in _word_plans(family, width, group, shape)])
    limit = int(bits)
    block = distributed = None                                    # the cheapest choice of each kind so far
    for bound, index, plan in bounds:
        if bound >= limit:
            break
        other = block if plan[1] == "block" else distributed
        if other is not None and (bound, index) > (other[1][0], other[0]):
            continue                                              # cannot beat its kind's choice
        geometry = _geometry(plan, depth, width, groups)
        if geometry is None:
            continue
        if other is not None and (geometry[0], index) > (other[1][0], other[0]):
            continue                                              # post-geometry prune: cheapest per kind, first
        if plan[1] == "block":                                    # in library order on a tie
            block = (index, geometry)
        else:
            distributed = (index, geometry)
        if geometry[0] + 1 < limit:
            limit = geometry[0] + 1
    best_cost = float(depth * width)                              # logic fallback: 1 per RAM bit
    choice = None
    for kept in sorted(kind for kind in (block, distributed) if kind is not None):
        if kept[1][0] < int(best_cost):                           # ties go to the earlier choice, logic first
            best_cost, choice = kept[1][0], kept
    return group, groups, abits, choice
