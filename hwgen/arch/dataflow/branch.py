"""Stream fork and join for branching pipelines (residual blocks).

::

    Duplicate (n outputs)                         Zip (two inputs, one output)
      i ─┬─▶ o0     a beat goes out on every        a ─┐
         ├─▶ o1     output in the same cycle,       b ─┴─▶ o   a, b, a, b, … (one beat of each in turn)
         └─▶ …      only when all are ready

- Duplicate (FINN's StreamingDuplicate): ``i.ready`` is the AND of the outputs' readies and ``o_k.valid`` is
  ``i.valid`` AND the other outputs' readies, so a beat transfers on all outputs at once or on none; no register.
- Zip: the two streams of an add layer interleaved beat by beat, the first input first; the add layer (a
  depthwise unit over two taps) reads them as the two taps of each channel group. No register but the phase.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class Duplicate(wiring.Component):
    def __init__(self, shape, lanes: int, count: int):
        if count < 2:
            raise ValueError(f"count must be at least 2, got {count}")
        self.count = count
        beat = data.ArrayLayout(shape, lanes)
        super().__init__({"i": In(stream.Signature(beat)),
                          **{f"o{k}": Out(stream.Signature(beat)) for k in range(count)}})

    def outputs(self) -> list:
        return [getattr(self, f"o{k}") for k in range(self.count)]

    def elaborate(self, platform):
        m = Module()
        outs = self.outputs()
        m.d.comb += self.i.ready.eq(_all(o.ready for o in outs))
        for k, o in enumerate(outs):
            m.d.comb += [o.payload.eq(self.i.payload),
                         o.valid.eq(self.i.valid & _all(p.ready for j, p in enumerate(outs) if j != k))]
        return m


def _all(signals):
    result = 1
    for signal in signals:
        result = result & signal
    return result


class Zip(wiring.Component):
    def __init__(self, shape, lanes: int):
        beat = data.ArrayLayout(shape, lanes)
        super().__init__({"a": In(stream.Signature(beat)), "b": In(stream.Signature(beat)),
                          "o": Out(stream.Signature(beat))})

    def elaborate(self, platform):
        m = Module()
        phase = Signal()
        m.d.comb += [self.o.valid.eq(Mux(phase, self.b.valid, self.a.valid)),
                     self.o.payload.eq(Mux(phase, self.b.payload, self.a.payload)),
                     self.a.ready.eq(~phase & self.o.ready), self.b.ready.eq(phase & self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += phase.eq(~phase)
        return m
