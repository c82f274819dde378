"""Multi-threshold activation: ``PE`` accumulators in, ``PE`` codes out per beat, parallel compare.

::

    i (PE accs) ─▶ s1_acc ─┬─▶ x = negate ? −acc : acc ─▶ #{j : x ≥ T[j]} ─▶ base + step · count ─▶ o (PE codes)
    channel group ─▶ threshold memory p: word = T[0..L−1], negate ─┘
    stage:          (t)          s1 (t+1)                                              o (t+2)

Channel ``nf · PE + p`` (beat ``nf`` of a vector, lane ``p``) reads word ``nf`` of memory ``p`` (word 0 when the
thresholds are per tensor): ``L`` ascending thresholds and the channel's negate flag (descending channels: the
compiler negates and re-sorts their thresholds and the unit compares ``−acc``). The output is bit-exact with
``golden.multithreshold``; bipolar outputs (``base = −1, step = 2, L = 1``) are the count bit itself (1 ↔ +1).

:class:`Thresholds` is the standalone unit: one beat per cycle; a beat transferred on ``i`` at cycle t is valid on
``o`` at t + :data:`LATENCY` (2). Backpressure stalls it (``advance = ~o.valid | o.ready`` enables its registers
and memory read ports; ``i.ready = advance``). It counts beats itself, so it runs on any stream of ``NF`` beats
per vector. Fused into an MVAU, the same memories and compare logic (:func:`threshold_memories`,
:func:`activate`) form the MVAU's last pipeline stage, under the MVAU's single stall signal (see mvau.py).
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..systolic.config import index_range
from .config import LayerConfig
from .loader import write_signature

LATENCY = 2          # cycles: input transfer → output valid (standalone unit)


def tree_sum(values):
    """Balanced adder tree (log2 depth instead of a chain)."""
    values = list(values)
    while len(values) > 1:
        values = [a + b for a, b in zip(values[::2], values[1::2])] + ([values[-1]] if len(values) % 2 else [])
    return values[0]


def parameter_memories(m: Module, layer: LayerConfig, write, group, enable, memory: tuple[int, int, int],
                       bits: int, name: str, init=None, per_channel: bool = True) -> list:
    """One memory per PE of ``memory = (PE, words, entries)`` words of ``entries`` signed ``bits``-bit values,
    written element-wise through ``write`` (a ``write_signature`` interface) and read at word ``group`` (0 if not
    ``per_channel``) while ``enable``; returns each memory's read data (next cycle)."""
    _, words, entries = memory
    row = data.ArrayLayout(signed(bits), entries)
    rows = []
    for p in range(layer.pe):
        mem = Memory(shape=row, depth=max(2, words), init=init[p] if init else [])
        m.submodules[f"{name}_{p}"] = mem
        wr, rd = mem.write_port(granularity=1), mem.read_port()
        m.d.comb += [wr.addr.eq(write.word), wr.data.eq(write.data.replicate(entries)),
                     wr.en.eq(Mux(write.en & (write.row == p), 1 << write.lane, 0)),
                     rd.addr.eq(group if per_channel else 0), rd.en.eq(enable)]
        rows.append(rd.data)
    return rows


def threshold_memories(m: Module, layer: LayerConfig, write, group, enable, init=None) -> list:
    """One threshold memory per PE (word: the L thresholds then the negate flag), see :func:`parameter_memories`."""
    return parameter_memories(m, layer, write, group, enable, layer.threshold_memory, layer.threshold_bits,
                              "thresholds", init, layer.per_channel)


def activate(m: Module, layer: LayerConfig, acc, row, name: str):
    """The output code (raw, ``out_type`` bits) of accumulator ``acc`` against threshold word ``row``."""
    count = layer.thresholds
    x = Signal(signed(layer.acc_bits + 1), name=f"{name}_x")
    m.d.comb += x.eq(Mux(row[count][0], -acc, acc))
    above = tree_sum(x >= row[j] for j in range(count))
    return above if layer.out_type.bipolar else layer.base + layer.step * above


class Thresholds(wiring.Component):
    """``init``: per PE, initial words (lists of L raw thresholds then the negate flag) for ROM-style designs."""

    def __init__(self, layer: LayerConfig, init: list[list[list[int]]] | None = None):
        if not layer.thresholds:
            raise ValueError("a threshold unit needs thresholds > 0")
        self.layer = layer
        self.init = init
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(layer.acc_bits), layer.pe))),
            "o": Out(stream.Signature(data.ArrayLayout(layer.out_type.shape, layer.pe))),
            "thresholds": In(write_signature(layer.threshold_memory, layer.threshold_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        group = Signal(index_range(layer.nf))             # channel group of the beat on `i`
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += group.eq(Mux(group == layer.nf - 1, 0, group + 1))
        s1_valid = Signal()
        s1_acc = Signal.like(self.i.payload)
        with m.If(advance):
            m.d.sync += [s1_valid.eq(self.i.valid), s1_acc.eq(self.i.payload), self.o.valid.eq(s1_valid)]
        rows = threshold_memories(m, layer, self.thresholds, group, advance, self.init)
        with m.If(advance):
            m.d.sync += [self.o.payload[p].eq(activate(m, layer, s1_acc[p], row, f"pe{p}"))
                         for p, row in enumerate(rows)]
        return m
