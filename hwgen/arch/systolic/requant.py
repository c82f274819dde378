"""Requantization lane: multi-threshold activation by a pipelined binary search.

One lane per array column. For channel slot ``s`` the lane holds that channel's thresholds ``T[1..2^B - 1]``
(ascending; unused entries are +inf), split over ``B`` stages like a heap: stage ``b`` holds, for every
prefix ``P`` of ``b`` result bits, the threshold ``T[(P << (B - b)) | (1 << (B - b - 1))]`` at (host) address
``(s << b) | P``. Stage ``b`` compares and appends one bit, so after ``B`` stages ``count = #{j: x >= T[j]}``.
``x`` is the accumulator, negated on channels whose requantizer decreases (the compiler negates and sorts their
thresholds), and the output code is ``base + step * count``; in ``passthrough`` mode the accumulator itself
leaves the lane (the last layer, dequantized on the host).

::

    acc, slot, meta ─▶ [stage 0] ─▶ … ─▶ [stage B-1] ─▶ [codes reg] ─▶ [out reg] ─▶ code, meta   (3B + 2 cycles)
                         ▲ mem0       ▲ mem1               ▲ mem B-1

Each stage takes three cycles, and no memory sits between a compare and a register. Stage ``b ≥ 1`` keeps its
thresholds in two memories by the prefix's lowest bit, the two children of a node of stage ``b - 1``, both at
``(slot << (b - 1)) | parent prefix``: it reads them while stage ``b - 1`` compares, at an address made of
registers only; the words read go straight into two registers (the block RAM's own output register: its
clock-to-output leaves no time for logic behind it; then one beside the compare: the block RAMs stand apart from
the logic, a route of ~5 ns on ECP5), and on the next cycle the bit stage ``b - 1`` found chooses one and the stage
compares it with ``x``. The last compare's count is registered, and ``base + step · count`` goes to the output
register. The lane accepts one value per cycle with a fixed latency of ``cfg.lane_latency = 3S + 2`` cycles,
``S = cfg.lane_stages``. ``meta`` (row, write address, flags) enters a cycle after its value (the controllers
register it: it is formed by logic) and travels alongside unchanged, leaving with the value::

    cycle    0                       1                      2                    3
    stage b  read both children at   words → output regs;   words → registers;   the bit chooses a child T;
             (slot, parent prefix)   x, −x, bit → regs      x, −x, bit → regs    compare x ≥ T → bit (stage b + 1
                                                                                 reads at (slot, prefix) meanwhile)

**Fixed-point mode** (``cfg.fixed_steps = F > 0``, hwgen.arch.fixed; ``fixed`` set by the instruction): beside the
search runs a pipeline of ``F`` stages, stage ``k`` reading the bias of the channel slot from its memory (written
through ``wr_bias``: stage ``k`` at address ``slot``) and applying ``fit(round_shift(relu?(x + bias)))`` with the
layer's fields ``s{k}_*``; unused stages are the identity. Like a search stage, a fixed-point stage reads its
bias in one cycle, registers it twice, and computes on the next. Whichever of the two pipelines is shorter is padded
with registers up to ``S = max(B, F)`` stages, so the latency does not depend on the mode. ``out_value`` is the last
stage's value (``cfg.fixed_bits`` wide, sign-extended).
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import stage_fields, stage_var
from ..hdl import delayed, ram, replica
from .config import MAX_FIXED_STEPS, SystolicConfig, index_range


def stage_layout() -> data.StructLayout:
    """The per-layer fields of every fixed-point stage (``s{k}_*`` of the instruction)."""
    return data.StructLayout({f"s{k}_{name}": shape for k in range(MAX_FIXED_STEPS)
                              for name, shape in stage_fields().items()})


class RequantLane(wiring.Component):
    def __init__(self, cfg: SystolicConfig, meta_bits: int, init: list[list[int]] | None = None,
                 bias_init: list[list[int]] | None = None):
        self.cfg = cfg
        self.meta_bits = meta_bits
        self.init = init            # per search stage: initial memory words (ROM-style designs)
        self.bias_init = bias_init  # per fixed-point stage: initial bias words
        slot_bits = max(1, (cfg.slot_depth - 1).bit_length())
        self.slot_bits = slot_bits
        super().__init__({
            "valid": In(1), "acc": In(signed(cfg.acc_bits)), "slot": In(unsigned(slot_bits)),
            "meta": In(unsigned(meta_bits)),
            "base": In(signed(cfg.store_bits + 1)), "step": In(unsigned(2)), "passthrough": In(1),
            "out_valid": Out(1), "out_value": Out(signed(cfg.acc_bits)), "out_meta": Out(unsigned(meta_bits)),
            # out_valid and out_meta a cycle ahead (the registers in front of them)
            "ahead_valid": Out(1), "ahead_meta": Out(unsigned(meta_bits)),
            # host writes: stage memory `stage` (stage 0 also holds the negate flag in bit threshold_bits), or
            # with wr_bias the bias memory of fixed-point stage `stage`
            "wr_en": In(1), "wr_stage": In(index_range(cfg.lane_stages)), "wr_addr": In(unsigned(16)),
            "wr_data": In(unsigned(cfg.threshold_bits + 1)),
            **({"fixed": In(1), "stages": In(stage_layout()), "wr_bias": In(1)} if cfg.fixed_steps else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        stages = cfg.search_stages
        depth = cfg.lane_stages
        tbits = cfg.threshold_bits
        x_shape = signed(tbits)

        # per-stage pipeline registers (index b = stage b's input; index 0 = the lane input, combinational)
        valid = [self.valid]
        x = [None]                     # stage 0 learns x after reading the negate flag
        negate = [None]                # … and whether x is −acc (passthrough takes acc back from x at the end)
        prefix = [Const(0, unsigned(1))]
        slot = [self.slot]
        meta = [self.meta]

        cycles = cfg.lane_stage_cycles
        for b in range(depth):
            # valid, slot, meta and the value through the stage's registers (one per cycle of the stage); the slot
            # the next stage's memories read at is the lane's own copy in its last register (every lane's chain is
            # the same: merged, it would address every lane's memories from one place)
            valid.append(delayed(m, valid[b], cycles, f"s{b}_valid", reset_less=False))
            if b + 1 < stages:
                slot.append(replica(m, delayed(m, slot[b], cycles - 1, f"s{b}_slot"), f"s{b}_slot_d{cycles}"))
            else:
                slot.append(delayed(m, slot[b], cycles, f"s{b}_slot"))
            meta.append(delayed(m, meta[b], cycles - 1 if b == 0 else cycles, f"s{b}_meta"))   # (a cycle late)
            if b == 0:                              # stage 0 compares x (its last accumulator register) or −x
                before = delayed(m, self.acc, cycles - 1, "s0_acc")
                positive = delayed(m, before, 1, "s0_x")
            if b >= stages:                         # the search is done: its count waits for the fixed stages
                prefix.append(delayed(m, prefix[b], cycles, f"s{b}_count"))
                x.append(delayed(m, x[b], cycles, f"s{b}_x"))
                negate.append(delayed(m, negate[b], cycles, f"s{b}_negate"))
                continue
            if b == 0:
                mem = ram(m, "stage0_mem", shape=unsigned(tbits + 1), depth=cfg.slot_depth,
                          init=self.init[0] if self.init else [])
                words = [self._threshold_memory(m, mem, 0, 0, slot[0])]
                threshold = words[0][:tbits].as_signed()
            else:
                # the two children of the parent node the previous stage compares with, read while it compares:
                # at (slot << (b-1)) | the parent's prefix, registers only (prefix[b] = Cat(bit, parent prefix))
                address = (slot[b] << (b - 1)) | prefix[b][1:] if b > 1 else slot[b]
                words = [self._threshold_memory(
                    m, ram(m, f"stage{b}_{side}_mem", shape=unsigned(tbits), depth=cfg.slot_depth << (b - 1),
                           init=self.init[b][index::2] if self.init else []), b, index, address)
                    for index, side in enumerate(("left", "right"))]

            # this stage's operands (data: read with valid), held while its threshold is read and registered
            if b:
                p_early = delayed(m, prefix[b], cycles - 1, f"s{b}_prefix")     # (its last register apart:
                p_r = Signal.like(p_early, name=f"s{b}_prefix_d{cycles}")       # copied below)
                m.d.sync += p_r.eq(p_early)
                x_here = delayed(m, x[b], cycles, f"s{b}_x")
                negate_here = delayed(m, negate[b], cycles, f"s{b}_negate")
                threshold = Mux(p_r[0], words[1], words[0]).as_signed()      # the child the previous bit chose
            else:
                negated = Signal(x_shape, name="s0_x_negated", reset_less=True)    # −x beside x: no negation
                m.d.sync += negated.eq(-before)                                    # before the compare
                x_here = Signal(x_shape, name="s0_x_signed")
                negate_here = words[0][tbits]
                m.d.comb += x_here.eq(Mux(negate_here, negated, positive))
            bit = x_here >= threshold
            new_prefix = Signal(unsigned(b + 1), name=f"s{b}_next_prefix")
            m.d.comb += new_prefix.eq(Cat(bit, p_r) if b else bit)
            x.append(x_here)
            negate.append(negate_here)
            prefix.append(new_prefix)

        # the count register (the last compare ends a cycle), then code = base + step · count into the output. The
        # count's upper bits are registers while its lowest bit is still being compared: both codes it may give are
        # formed beside the compare (base + step · 2h and base + step · (2h + 1)), registered with the bit, which
        # then chooses one (no adder in front of the output register, which the banks' loads pull away)
        count = prefix[depth]
        high = count[1:]
        if depth == stages > 1:
            # the last search stage's prefix (the count's upper bits) chooses its threshold; the code adders take a
            # copy of their own (the shared register's route across to them was the 4×4 array's path)
            high = replica(m, p_early, "count_high")
        double = self.step == 2
        even = self.base + Mux(double, high.shift_left(2), high.shift_left(1))
        odd = self.base + Mux(double, high.shift_left(2) | 2, high.shift_left(1) | 1)
        code_even = Signal.like(even, name="code_even", reset_less=True)
        code_odd = Signal.like(odd, name="code_odd", reset_less=True)
        count_low = Signal(name="count_low", reset_less=True)
        # passthrough's accumulator, taken back from the last x and its negate flag (x is a bit wider than acc: −x
        # is exact), so that only x, not the accumulator beside it too, travels through the stages
        acc_r = Signal.like(self.acc, name="out_acc", reset_less=True)
        valid_r = Signal(name="out_valid_r")
        meta_r = Signal.like(self.meta, name="out_meta_r", reset_less=True)
        m.d.sync += [code_even.eq(even), code_odd.eq(odd),
                     count_low.eq(count[0]), acc_r.eq(Mux(negate[depth], -x[depth], x[depth])),
                     valid_r.eq(valid[depth]), meta_r.eq(meta[depth])]
        result = Mux(self.passthrough, acc_r, Mux(count_low, code_odd, code_even))
        if cfg.fixed_steps:
            fixed_r = Signal(signed(cfg.fixed_bits), name="fixed_value", reset_less=True)
            m.d.sync += fixed_r.eq(self._fixed_stages(m, slot))
            result = Mux(self.fixed, fixed_r, result)
        out_meta = Signal.like(self.out_meta, reset_less=True)
        out_value = Signal.like(self.out_value, reset_less=True)
        m.d.sync += [self.out_valid.eq(valid_r), out_meta.eq(meta_r), out_value.eq(result)]
        m.d.comb += [self.out_meta.eq(out_meta), self.out_value.eq(out_value), self.ahead_valid.eq(valid_r),
                     self.ahead_meta.eq(meta_r)]
        return m

    def _threshold_memory(self, m: Module, mem, stage: int, side: int, address) -> Signal:
        """The word of ``mem`` (search stage ``stage``; for ``stage > 0`` the ``side`` = 0 / 1 half of its
        thresholds, addresses with that lowest bit) read at ``address``, registered twice (the memory's output
        register, then the register beside the compare). The host writes threshold
        ``(slot << stage) | prefix`` of the stage: at word ``address >> 1`` of the half its lowest bit names."""
        rd, wr = mem.read_port(), mem.write_port()
        write = self.wr_en & (self.wr_stage == stage) & ~self._bias_write
        m.d.comb += [wr.en.eq(write & (self.wr_addr[0] == side) if stage else write),
                     wr.addr.eq(self.wr_addr[1:] if stage else self.wr_addr), wr.data.eq(self.wr_data),
                     rd.addr.eq(address)]
        name = f"s{stage}_threshold" + (f"_{side}" if stage else "")
        return delayed(m, rd.data, self.cfg.lane_stage_cycles - 1, name)

    @property
    def _bias_write(self):
        return self.wr_bias if self.cfg.fixed_steps else Const(0, 1)

    def _fixed_stages(self, m: Module, slot: list) -> Signal:
        """The fixed-point pipeline: stage k reads its bias at ``slot[k]`` and computes from its registered
        value; the result is padded with registers to the lane's depth."""
        cfg = self.cfg
        bits = cfg.fixed_bits
        value = Signal(signed(bits), name="f_in")             # the accumulator, sign-extended
        m.d.comb += value.eq(self.acc)
        for k in range(cfg.lane_stages):
            x_r = delayed(m, value, cfg.lane_stage_cycles, f"f{k}_x")
            if k >= cfg.fixed_steps:
                value = x_r
                continue
            mem = ram(m, f"bias{k}_mem", shape=signed(bits), depth=cfg.slot_depth,
                      init=self.bias_init[k] if self.bias_init else [])
            rd, wr = mem.read_port(), mem.write_port()
            bias = delayed(m, rd.data, cfg.lane_stage_cycles - 1, f"f{k}_bias")     # the word read, registered
            m.d.comb += [wr.en.eq(self.wr_en & self.wr_bias & (self.wr_stage == k)), wr.addr.eq(self.wr_addr),
                         wr.data.eq(self.wr_data[:bits]), rd.addr.eq(slot[k])]
            fields = SimpleNamespace(**{name: self.stages[f"s{k}_{name}"] for name in stage_fields()})
            value = stage_var(m, x_r, bias, fields, bits, f"f{k}_out")
        return value
