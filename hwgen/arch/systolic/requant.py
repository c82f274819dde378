"""Requantization lane: multi-threshold activation by a pipelined binary search.

One lane per array column. For channel slot ``s`` the lane holds that channel's thresholds ``T[1..2^B - 1]``
(ascending; unused entries are +inf), split over ``B`` stage memories like a heap: stage ``b`` holds, for every
prefix ``P`` of ``b`` result bits, the threshold ``T[(P << (B - b)) | (1 << (B - b - 1))]`` at address
``(s << b) | P``. Stage ``b`` compares and appends one bit, so after ``B`` stages ``count = #{j: x >= T[j]}``.
``x`` is the accumulator, negated on channels whose requantizer decreases (the compiler negates and sorts their
thresholds), and the output code is ``base + step * count``; in ``passthrough`` mode the accumulator itself
leaves the lane (the last layer, dequantized on the host).

::

    acc, slot, meta ─▶ [stage 0] ─▶ [stage 1] ─▶ … ─▶ [stage B-1] ─▶ [out reg] ─▶ code, meta   (B + 1 cycles)
                         ▲ mem0       ▲ mem1               ▲ mem B-1

Each stage's memory is read synchronously with the address formed combinationally by the stage before, so the
lane accepts one value per cycle with a fixed latency of ``B + 1`` cycles. ``meta`` (row, write address, flags)
travels alongside unchanged.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import SystolicConfig, index_range


class RequantLane(wiring.Component):
    def __init__(self, cfg: SystolicConfig, meta_bits: int, init: list[list[int]] | None = None):
        self.cfg = cfg
        self.meta_bits = meta_bits
        self.init = init            # per search stage: initial memory words (ROM-style designs)
        slot_bits = max(1, (cfg.slot_depth - 1).bit_length())
        self.slot_bits = slot_bits
        super().__init__({
            "valid": In(1), "acc": In(signed(cfg.acc_bits)), "slot": In(unsigned(slot_bits)),
            "meta": In(unsigned(meta_bits)),
            "base": In(signed(cfg.store_bits + 1)), "step": In(unsigned(2)), "passthrough": In(1),
            "out_valid": Out(1), "out_value": Out(signed(cfg.acc_bits)), "out_meta": Out(unsigned(meta_bits)),
            # host writes: stage memory `stage` (stage 0 also holds the negate flag in bit threshold_bits)
            "wr_en": In(1), "wr_stage": In(index_range(cfg.search_stages)), "wr_addr": In(unsigned(16)),
            "wr_data": In(unsigned(cfg.threshold_bits + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        stages = cfg.search_stages
        tbits = cfg.threshold_bits
        x_shape = signed(tbits)

        # per-stage pipeline registers (index 0 = lane input, combinational)
        valid = [self.valid]
        x = [None]                     # stage 0 learns x after reading the negate flag
        prefix = [Const(0, unsigned(1))]
        slot = [self.slot]
        meta = [self.meta]
        acc = [self.acc]
        for b in range(stages):
            width = 1 << b
            depth = cfg.slot_depth * width
            mem = Memory(shape=unsigned(tbits + (1 if b == 0 else 0)), depth=depth,
                         init=self.init[b] if self.init else [])
            m.submodules[f"stage{b}_mem"] = mem
            rd = mem.read_port()
            wr = mem.write_port()
            m.d.comb += [wr.en.eq(self.wr_en & (self.wr_stage == b)), wr.addr.eq(self.wr_addr),
                         wr.data.eq(self.wr_data)]
            m.d.comb += rd.addr.eq((slot[b] << b) | prefix[b] if b else slot[b])

            # registers holding this stage's operands while its threshold is read
            v_r = Signal(name=f"s{b}_valid")
            p_r = Signal(unsigned(max(1, b)), name=f"s{b}_prefix", reset_less=True)    # data: read with valid
            s_r = Signal.like(self.slot, name=f"s{b}_slot", reset_less=True)
            mt_r = Signal.like(self.meta, name=f"s{b}_meta", reset_less=True)
            a_r = Signal.like(self.acc, name=f"s{b}_acc", reset_less=True)
            x_r = Signal(x_shape, name=f"s{b}_x", reset_less=True)
            m.d.sync += [v_r.eq(valid[b]), s_r.eq(slot[b]), mt_r.eq(meta[b]), a_r.eq(acc[b])]
            if b:
                m.d.sync += [p_r.eq(prefix[b]), x_r.eq(x[b])]
            else:
                m.d.sync += x_r.eq(self.acc)
            threshold = rd.data[:tbits].as_signed()
            if b == 0:
                negate = rd.data[tbits]
                x_here = Signal(x_shape, name="s0_x_signed")
                m.d.comb += x_here.eq(Mux(negate, -x_r, x_r))
            else:
                x_here = x_r
            bit = x_here >= threshold
            new_prefix = Signal(unsigned(b + 1), name=f"s{b}_next_prefix")
            m.d.comb += new_prefix.eq(Cat(bit, p_r) if b else bit)
            valid.append(v_r)
            x.append(x_here)
            prefix.append(new_prefix)
            slot.append(s_r)
            meta.append(mt_r)
            acc.append(a_r)

        count = prefix[stages] if stages else Const(0, 1)
        code = Signal(signed(cfg.acc_bits))
        m.d.comb += code.eq(self.base + Mux(self.step == 2, count << 1, count))
        out_meta = Signal.like(self.out_meta, reset_less=True)
        out_value = Signal.like(self.out_value, reset_less=True)
        m.d.sync += [self.out_valid.eq(valid[stages]), out_meta.eq(meta[stages]),
                     out_value.eq(Mux(self.passthrough, acc[stages], code))]
        m.d.comb += [self.out_meta.eq(out_meta), self.out_value.eq(out_value)]
        return m

