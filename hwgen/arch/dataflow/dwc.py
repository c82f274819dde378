"""Stream data-width converters between a layer's PE-wide output and the next layer's SIMD-wide input.

Codes keep their order: lane ``j`` of beat ``b`` is code ``b · lanes + j``, so a vector of ``MH`` codes is the same
sequence on both sides (``MH`` is a multiple of both widths, hence of their lcm).

::

    Upsizer (ratio r: n codes → r·n codes)          Downsizer (ratio r: r·n codes → n codes)
      i ─▶ pending[0..r−2] ─┐                          i ─▶ word ─▶ lane group k ─▶ o
           i (r-th beat) ───┴─▶ out reg ─▶ o                 k = 0, 1, …, r−1 (one per o transfer)

    WidthConverter(PE → SIMD): Upsizer(lcm/PE) then Downsizer(lcm/SIMD); a ratio of 1 omits that stage, both
    ratios 1 is a wire. Non-divisible widths go through the lcm width, as FINN's DWCs do. The dataflow top uses
    the two stages separately, with the layer's FIFO between them (top.py: a downsizer takes a word only every r
    cycles, so it must not hold the producing MVAU).

Timing, with ``o`` always ready:

- Upsizer: takes a beat every cycle; the r-th beat of a group transferred at cycle t is on ``o`` at t + 1. It
  takes that r-th beat only when its output register is empty or being emptied in the same cycle.
- Downsizer: a word transferred at cycle t leaves as lane groups at t + 1, …, t + r; the next word is taken in
  the cycle of the last group's transfer (t + r) at the earliest, so words are accepted ≥ r cycles apart.

``i.ready`` depends on ``o.ready`` combinationally (no register in that path); ``o.valid`` never on ``o.ready``.
"""
from __future__ import annotations

from math import lcm

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def _beat(shape, lanes: int) -> data.ArrayLayout:
    return data.ArrayLayout(shape, lanes)


class Upsizer(wiring.Component):
    """Concatenates ``ratio`` beats of ``lanes`` codes into one beat of ``ratio · lanes`` codes."""

    def __init__(self, shape, lanes: int, ratio: int):
        if ratio < 2:
            raise ValueError(f"ratio must be at least 2, got {ratio}")
        self.shape, self.lanes, self.ratio = shape, lanes, ratio
        super().__init__({"i": In(stream.Signature(_beat(shape, lanes))),
                          "o": Out(stream.Signature(_beat(shape, lanes * ratio)))})

    def elaborate(self, platform):
        m = Module()
        ratio = self.ratio
        pending = Signal(data.ArrayLayout(_beat(self.shape, self.lanes), ratio - 1))
        count = Signal(range(ratio))                 # beats of the current group held in `pending`
        closing = count == ratio - 1
        m.d.comb += self.i.ready.eq(~closing | ~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(closing):
                m.d.sync += [self.o.payload.eq(Cat(pending, self.i.payload)), self.o.valid.eq(1), count.eq(0)]
            with m.Else():
                with m.Switch(count):
                    for k in range(ratio - 1):
                        with m.Case(k):
                            m.d.sync += pending[k].eq(self.i.payload)
                m.d.sync += count.eq(count + 1)
        return m


class Downsizer(wiring.Component):
    """Splits one beat of ``ratio · lanes`` codes into ``ratio`` beats of ``lanes`` codes, lowest lanes first."""

    def __init__(self, shape, lanes: int, ratio: int):
        if ratio < 2:
            raise ValueError(f"ratio must be at least 2, got {ratio}")
        self.shape, self.lanes, self.ratio = shape, lanes, ratio
        super().__init__({"i": In(stream.Signature(_beat(shape, lanes * ratio))),
                          "o": Out(stream.Signature(_beat(shape, lanes)))})

    def elaborate(self, platform):
        m = Module()
        ratio = self.ratio
        word = Signal(data.ArrayLayout(_beat(self.shape, self.lanes), ratio))
        group = Signal(range(ratio))
        draining = group == ratio - 1
        m.d.comb += [self.o.payload.eq(word[group]),
                     self.i.ready.eq(~self.o.valid | (draining & self.o.ready))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += group.eq(group + 1)
            with m.If(draining):
                m.d.sync += [self.o.valid.eq(0), group.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [word.eq(self.i.payload), self.o.valid.eq(1), group.eq(0)]
        return m


class WidthConverter(wiring.Component):
    """``lanes_in`` codes per beat → ``lanes_out`` codes per beat, through the lcm width when neither divides."""

    def __init__(self, shape, lanes_in: int, lanes_out: int):
        self.shape, self.lanes_in, self.lanes_out = shape, lanes_in, lanes_out
        wide = lcm(lanes_in, lanes_out)
        self.up, self.down = wide // lanes_in, wide // lanes_out
        super().__init__({"i": In(stream.Signature(_beat(shape, lanes_in))),
                          "o": Out(stream.Signature(_beat(shape, lanes_out)))})

    def elaborate(self, platform):
        m = Module()
        ports = [wiring.flipped(self.i)]
        if self.up > 1:
            m.submodules.upsizer = upsizer = Upsizer(self.shape, self.lanes_in, self.up)
            ports += [upsizer.i, upsizer.o]
        if self.down > 1:
            m.submodules.downsizer = downsizer = Downsizer(self.shape, self.lanes_out, self.down)
            ports += [downsizer.i, downsizer.o]
        ports.append(wiring.flipped(self.o))
        for source, sink in zip(ports[::2], ports[1::2]):
            wiring.connect(m, source, sink)
        return m
