"""Stream FIFO: ``amaranth.lib.fifo.SyncFIFOBuffered`` behind ``lib.stream`` ports.

::

    i ──▶ ┌ SyncFIFOBuffered(depth) ┐ ──▶ o        i.ready = level < depth        (no path from o.ready)
          │ memory (depth−1) + reg  │              o.valid = output register full
          └─────────────────────────┘

Timing: a beat written at cycle t into an empty FIFO is valid on ``o`` at t + :data:`LATENCY` (2); the FIFO then
passes one beat per cycle. ``depth`` ≥ 3 (its memory holds ``depth − 1`` ≥ 2 words; no zero-width counters).
"""
from __future__ import annotations

from amaranth import Module, Shape
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

LATENCY = 2          # cycles: write → valid at the output of an empty FIFO
MIN_DEPTH = 3


class StreamFIFO(wiring.Component):
    def __init__(self, shape, depth: int):
        if depth < MIN_DEPTH:
            raise ValueError(f"depth must be at least {MIN_DEPTH}, got {depth}")
        self.shape = shape
        self.depth = depth
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = SyncFIFOBuffered(width=Shape.cast(self.shape).width, depth=self.depth)
        m.d.comb += [buffer.w_data.eq(self.i.payload), buffer.w_en.eq(self.i.valid), self.i.ready.eq(buffer.w_rdy),
                     self.o.payload.eq(buffer.r_data), self.o.valid.eq(buffer.r_rdy), buffer.r_en.eq(self.o.ready)]
        return m
