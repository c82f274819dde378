"""Matrix–vector–activation unit (FINN's MVAU): ``PE`` output channels × ``SIMD`` input lanes per cycle, then
the layer's multi-threshold activation (thresholds.py) in the same pipeline.

::

              ┌──────────── issue (sf, nf, word counters) ──────────┐
    i ─(SIMD codes)─▶ s1_x ─┐                                        │
          │ pass 0: write    ├─ x ─▶ − zero_point ─▶ × W[p] ─▶ Σ lanes ─▶ s2_dot[p] ─▶ acc[p] ─▶ activate ─▶ o
          └▶ input buffer ──┘ pass > 0: re-read word sf  (bipolar: XNOR, popcount, 2·pc − SIMD)     ▲
                          weight memory p (word = SIMD weights)         threshold memory p (word nf) ┘
    stage:    issue (t)          s1 (t+1)                    s2 (t+2)          acc (t+3)          o (t+4)

A vector is ``SF = MW/SIMD`` input beats; the unit runs ``SF · NF`` steps per vector (``NF = MH/PE``), step
``nf · SF + sf`` multiplying input word ``sf`` by weight word ``nf · SF + sf`` of every PE. Pass ``nf = 0`` takes
the words from ``i`` (one per step, kept in the input buffer when ``NF > 1``), later passes re-read them, so
``i.ready`` is high only during pass 0. Output beat ``nf`` (channels ``nf · PE + p``) is valid :func:`latency`
cycles (4; 3 for a passthrough layer, whose accumulators are the output) after the issue of step
``nf · SF + SF − 1``.

One stall signal for the whole unit: ``advance = ~o.valid | o.ready`` enables every register and memory read
port, and a step issues on ``advance`` when its input is there (``i.valid``, pass 0 only). So the unit is rigid:
with ``o`` always ready and ``i`` always valid it issues one step every cycle with no bubble between vectors, and
an output beat taken at cycle a is followed by the next one of the vector at a + SF at the earliest.

The accumulator is ``acc_bits`` wide from the types' worst-case bound (config.py); the zero point is subtracted
from each code before the multiply (bipolar layers have none).

Fixed-point layers (hls4ml models, hwgen.arch.fixed): with ``product_shift`` every lane's product is rounded
before the sum (a bit slice for AP_TRN, plus an increment otherwise), and ``stages`` replace the thresholds in the
``o`` stage: per PE, the accumulator goes through each stage's bias add, ReLU, rounding shift and overflow fit,
the biases read from a memory per PE (word ``nf``: the channel's bias of every biased stage) exactly as the
thresholds are. The latency and the stall rule are those of a thresholded layer.

Depthwise layers (FINN's VVAU; ``depthwise``): lane ``p`` of an input beat is channel ``nf·PE + p`` at tap ``sf``,
every step takes a fresh beat (``i.ready`` in every pass, no input buffer), and PE ``p`` multiplies its lane by its
one-weight word ``nf·SF + sf`` (no sum across lanes). Pooling layers are depthwise without weights: ``sum`` adds
the operands (code − zero point), ``max`` keeps the largest code (the first tap loads it) and emits it in the
``o`` stage, so every layer kind has the same latency and stall rule.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...ir.types import int_range
from ..fixed import round_shift_const, stage_const
from ..systolic.config import index_range
from .config import LayerConfig
from .loader import write_signature
from .thresholds import activate, parameter_memories, threshold_memories, tree_sum


def latency(layer: LayerConfig) -> int:
    """Cycles from the issue of a pass's last step to its output beat being valid."""
    return 4 if layer.requantized else 3


def decode(code, code_type):
    """A stored code as the value it stands for (bipolar bit → ±1)."""
    return Mux(code, 1, -1) if code_type.bipolar else code


class MVAU(wiring.Component):
    """One layer. ``init`` (ROM-style designs): ``{"weights": per PE a list of words (lists of SIMD raw
    weights), "thresholds": per PE a list of words (L raw thresholds, then the negate flag), "biases": per PE a
    list of words (the biased stages' biases)}``."""

    def __init__(self, layer: LayerConfig, init: dict | None = None):
        self.layer = layer
        self.init = init or {}
        members = {
            "i": In(stream.Signature(data.ArrayLayout(layer.in_type.shape, layer.in_lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(layer.out_type.shape, layer.pe))),
        }
        if layer.weighted:
            members["weights"] = In(write_signature(layer.weight_memory, layer.weight_shape.width))
        if layer.thresholds:
            members["thresholds"] = In(write_signature(layer.threshold_memory, layer.threshold_bits))
        if layer.biased_stages:
            members["biases"] = In(write_signature(layer.bias_memory, layer.bias_bits))
        if not layer.bipolar:
            members["zero_point"] = In(layer.in_type.value_shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        sf = Signal(index_range(layer.sf))
        nf = Signal(index_range(layer.nf))
        word = Signal(index_range(layer.steps))
        advance = Signal()
        fire = Signal()
        takes = 1 if layer.depthwise else nf == 0           # steps taking an input beat
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready),
                     fire.eq(advance & (self.i.valid | ~takes)),
                     self.i.ready.eq(advance & takes)]
        first_pass = nf == 0
        with m.If(fire):
            m.d.sync += [sf.eq(Mux(sf == layer.sf - 1, 0, sf + 1)),
                         word.eq(Mux(word == layer.steps - 1, 0, word + 1))]
            with m.If(sf == layer.sf - 1):
                m.d.sync += nf.eq(Mux(nf == layer.nf - 1, 0, nf + 1))

        # ---- s1: the input word and every PE's weight word
        in_word = data.ArrayLayout(layer.in_type.shape, layer.in_lanes)
        s1_valid, s1_first, s1_last, s1_fresh = Signal(), Signal(), Signal(), Signal()
        s1_group = Signal.like(nf)
        s1_x = Signal(in_word)
        with m.If(advance):
            m.d.sync += [s1_valid.eq(fire), s1_first.eq(sf == 0), s1_last.eq(sf == layer.sf - 1),
                         s1_fresh.eq(first_pass), s1_group.eq(nf), s1_x.eq(self.i.payload)]
        x = s1_x
        if layer.nf > 1 and not layer.depthwise:
            m.submodules.input_buffer = buffer = Memory(shape=in_word, depth=max(2, layer.sf), init=[])
            wr, rd = buffer.write_port(), buffer.read_port()
            m.d.comb += [wr.addr.eq(sf), wr.data.eq(self.i.payload), wr.en.eq(fire & first_pass),
                         rd.addr.eq(sf), rd.en.eq(advance)]
            x = data.View(in_word, Mux(s1_fresh, s1_x, rd.data))
        w_word = data.ArrayLayout(layer.weight_shape, layer.simd)
        weights = []
        for p in range(layer.pe if layer.weighted else 0):
            init = self.init["weights"][p] if "weights" in self.init else []
            memory = Memory(shape=w_word, depth=max(2, layer.steps), init=init)
            m.submodules[f"weights_{p}"] = memory
            wr, rd = memory.write_port(granularity=1), memory.read_port()
            m.d.comb += [wr.addr.eq(self.weights.word), wr.data.eq(self.weights.data.replicate(layer.simd)),
                         wr.en.eq(Mux(self.weights.en & (self.weights.row == p), 1 << self.weights.lane, 0)),
                         rd.addr.eq(word), rd.en.eq(advance)]
            weights.append(rd.data)

        # ---- s2: one dot product of SIMD lanes per PE
        dot_bound = layer.simd * layer.acc_bound // layer.mw
        dot_shape = layer.in_type.value_shape if layer.pool == "max" else signed(int_range(-dot_bound, dot_bound).bits)
        s2_valid, s2_first, s2_last = Signal(), Signal(), Signal()
        s2_group = Signal.like(nf)
        s2_dot = [Signal(dot_shape, name=f"s2_dot_{p}") for p in range(layer.pe)]
        if layer.pool == "max":
            dots = [decode(x[p], layer.in_type) for p in range(layer.pe)]
        elif layer.bipolar:
            dots = [2 * tree_sum(~(x[s] ^ w[s]) for s in range(layer.simd)) - layer.simd for w in weights]
        else:
            operands = []
            for s in range(layer.in_lanes):
                operand = Signal(layer.operand_shape, name=f"operand_{s}")
                m.d.comb += operand.eq(decode(x[s], layer.in_type) - self.zero_point)
                operands.append(operand)
            if layer.pool == "sum":
                dots = operands
            elif layer.depthwise:
                dots = [self._product(operands[p], w[0]) for p, w in enumerate(weights)]
            else:
                dots = [tree_sum(self._product(operand, w[s]) for s, operand in enumerate(operands))
                        for w in weights]
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_last.eq(s1_last), s2_group.eq(s1_group)]
            m.d.sync += [reg.eq(dot) for reg, dot in zip(s2_dot, dots)]

        # ---- acc: accumulate (a passthrough layer's accumulators are its output)
        if layer.requantized:
            acc_shape = dot_shape if layer.pool == "max" else signed(layer.acc_bits)
            acc = Signal(data.ArrayLayout(acc_shape, layer.pe))
            acc_valid = Signal()
        else:
            acc, acc_valid = self.o.payload, self.o.valid
        with m.If(advance):
            m.d.sync += acc_valid.eq(s2_valid & s2_last)
            with m.If(s2_valid):
                if layer.pool == "max":
                    m.d.sync += [acc[p].eq(Mux(s2_first | (s2_dot[p] > acc[p]), s2_dot[p], acc[p]))
                                 for p in range(layer.pe)]
                else:
                    m.d.sync += [acc[p].eq(Mux(s2_first, 0, acc[p]) + s2_dot[p]) for p in range(layer.pe)]
        if not layer.requantized:
            return m
        if layer.pool == "max":
            with m.If(advance):
                m.d.sync += self.o.valid.eq(acc_valid)
                m.d.sync += [self.o.payload[p].eq(acc[p] > 0 if layer.in_type.bipolar else acc[p])
                             for p in range(layer.pe)]
            return m
        if layer.stages:
            self._fixed_activation(m, acc, acc_valid, s2_group, advance)
            return m

        # ---- o: activation (threshold words read at the channel group leaving s2)
        rows = threshold_memories(m, layer, self.thresholds, s2_group, advance, self.init.get("thresholds"))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(acc_valid)
            m.d.sync += [self.o.payload[p].eq(activate(m, layer, acc[p], row, f"pe{p}"))
                         for p, row in enumerate(rows)]
        return m

    def _product(self, operand, weight):
        """One lane's product, rounded when the layer rounds products."""
        layer = self.layer
        product = operand * weight
        return round_shift_const(product, layer.product_shift, layer.product_rounding) if layer.product_shift \
            else product

    def _fixed_activation(self, m: Module, acc, acc_valid, group, advance) -> None:
        """o: every PE's accumulator through the fixed-point stages (biases read at the channel group leaving
        s2, like thresholds)."""
        layer = self.layer
        biased = layer.biased_stages
        rows = parameter_memories(m, layer, self.biases, group, advance, layer.bias_memory, layer.bias_bits,
                                  "biases", self.init.get("biases")) if biased else [None] * layer.pe
        with m.If(advance):
            m.d.sync += self.o.valid.eq(acc_valid)
        for p, row in enumerate(rows):
            value = acc[p]
            for k, stage in enumerate(layer.stages):
                bias = row[biased.index(k)] if k in biased else None
                value = stage_const(m, value, stage, bias, f"pe{p}_stage{k}")
            with m.If(advance):
                m.d.sync += self.o.payload[p].eq(value)
