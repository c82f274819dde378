"""Top level of the dataflow accelerator: one MVAU per layer, width converters and FIFOs, AXI-Stream in and out.

::

    s_axis ─▶ [SWG] ─▶ MVAU 0 ─▶ [upsizer] ─▶ FIFO ─▶ [downsizer] ─▶ [SWG] ─▶ MVAU 1 ─▶ … ─▶ MVAU L−1 ─▶ m_axis
                         ▲ weights, thresholds, zero point (load port, before start)

A layer over an image window has a sliding-window generator (swg.py) in front of its MVAU (or depthwise unit),
emitting the layer's zero point for padded positions.

Between two layers, ``PE`` codes → ``lcm(PE, SIMD)`` codes (upsizer, dwc.py) → FIFO of ``lcm``-code words →
``SIMD`` codes (downsizer); a ratio of 1 omits that converter. The FIFO sits between the two converters so that
nothing a producer writes waits on a downsizer: a downsizer by ``r`` takes a word only every ``r`` cycles, and an
MVAU stalled on its output freezes its whole pipeline, including the next vector's steps already issued, which
would delay every vector but the first (the cycle model could then not be exact from the first sample on).

Ports: the host protocol every hwgen top shares (``load``, ``read``, ``rdata``, ``start``, ``busy``, ``done``,
``cycles``; see ``hwgen.arch.systolic.top``) plus flat AXI-Stream members ``s_axis_t{data,valid,ready,last}``
(input) and ``m_axis_t{data,valid,ready,last}`` (output), so the Verilog ports carry exactly those names.

- ``load`` writes weights, thresholds and zero points (mapping in loader.py); ``load.ready`` is high until start.
- ``start`` (a pulse) enables the pipeline: ``busy`` goes high and stays high, ``cycles`` counts clocks while busy,
  ``done`` stays low. The hardware does not know how many samples come: the host stops after collecting the
  outputs it expects.
- ``read`` is never ready and ``rdata`` never valid (nothing to read back; the ports keep the harness common).
- One ``s_axis`` beat is the first layer's ``SIMD`` input codes, lane ``j`` at bits ``[j·w, (j+1)·w)``; one
  ``m_axis`` beat is the last layer's ``PE`` results (codes, or ``acc_bits`` accumulators if it passes through).
  ``m_axis_tlast`` marks the last beat of each sample; ``s_axis_tlast`` is accepted but not needed (the units
  count beats).

Backpressure anywhere stalls the units behind it; the FIFO depths (cycles.py) let the pipeline reach its
initiation interval when ``m_axis`` is always ready. No deadlock is possible: the chain has no forks.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring

from ..systolic.config import index_range
from ..systolic.top import host_members
from .config import DataflowConfig
from .dwc import Downsizer, Upsizer
from .fifo import StreamFIFO
from .loader import BIASES, PARAMETERS, THRESHOLDS, WEIGHTS, decode_index
from .mvau import MVAU
from .branch import Duplicate, Zip
from .swg import SlidingWindow


def dataflow_signature(cfg: DataflowConfig) -> wiring.Signature:
    """The host ports every hwgen top shares, with AXI-Stream widths for ``cfg``."""
    return wiring.Signature(host_members(cfg.in_lanes * cfg.in_type.bits, cfg.out_lanes * cfg.out_type.bits))


class DataflowTop(wiring.Component):
    """The accelerator for ``cfg``; ``init`` (``DataflowProgram.memory_init()``) pre-loads weights, thresholds and
    zero points as initial memory contents for ROM-style synthesis (loading them at run time still works)."""

    def __init__(self, cfg: DataflowConfig, init: list[dict] | None = None):
        self.cfg = cfg
        self.init = init
        super().__init__(dataflow_signature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        running = Signal()
        with m.If(self.start):
            m.d.sync += running.eq(1)
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += [self.busy.eq(running), self.load.ready.eq(~running),
                     self.read.ready.eq(0), self.rdata.valid.eq(0)]
        load = self.load.payload
        loading = self.load.valid & self.load.ready

        units, inputs = [], []          # per layer: the MVAU, and the ports taking its input streams
        for index, layer in enumerate(cfg.layers):
            init = self.init[index] if self.init else None
            unit = MVAU(layer, init)
            m.submodules[f"layer{index}"] = unit
            units.append(unit)
            here = loading & (load.bank == index)
            ports = [(unit.weights, WEIGHTS, layer.weight_memory)] if layer.weighted else []
            if layer.thresholds:
                ports.append((unit.thresholds, THRESHOLDS, layer.threshold_memory))
            if layer.biased_stages:
                ports.append((unit.biases, BIASES, layer.bias_memory))
            for port, target, memory in ports:
                row, word, lane = decode_index(load.addr, load.lane, memory)
                m.d.comb += [port.en.eq(here & (load.target == target)), port.row.eq(row), port.word.eq(word),
                             port.lane.eq(lane), port.data.eq(load.data)]
            if not layer.bipolar:
                zero_point = Signal(layer.in_type.value_shape, name=f"layer{index}_zero_point",
                                    init=init["zero_point"] if init else 0)
                with m.If(here & (load.target == PARAMETERS) & (load.addr == 0)):
                    m.d.sync += zero_point.eq(load.data)
                m.d.comb += unit.zero_point.eq(zero_point)
            entry = unit.i
            if layer.window is not None:
                m.submodules[f"swg{index}"] = swg = SlidingWindow(layer.window, layer.in_type, layer.in_lanes,
                                                                  layer.depthwise)
                wiring.connect(m, swg.o, unit.i)
                if not layer.bipolar:                       # (XNOR layers do not pad)
                    # a bipolar code's zero point −1 (max pooling's pad) is stored as bit 0
                    m.d.comb += swg.pad.eq(unit.zero_point > 0 if layer.in_type.bipolar else unit.zero_point)
                entry = swg.i
            if layer.add:
                m.submodules[f"zip{index}"] = zip_ = Zip(layer.in_type.shape, layer.in_lanes)
                wiring.connect(m, zip_.o, entry)
                inputs.append([zip_.a, zip_.b])
            else:
                inputs.append([entry])

        # ---- outputs: a layer read by several streams goes through a duplicate
        outputs = []
        for index, unit in enumerate(units):
            readers = cfg.readers(index)
            if readers > 1:
                m.submodules[f"dup{index}"] = dup = Duplicate(cfg.layers[index].out_type.shape, unit.layer.pe,
                                                              readers)
                wiring.connect(m, unit.o, dup.i)
                outputs.append(dup.outputs())
            else:
                outputs.append([unit.o])

        # ---- streams: s_axis → layer 0; every edge: producer → [upsizer] → FIFO → [downsizer] → consumer
        first, last = inputs[0][0], units[-1]
        m.d.comb += [first.payload.eq(self.s_axis_tdata), first.valid.eq(self.s_axis_tvalid & running),
                     self.s_axis_tready.eq(first.ready & running)]
        taken = [0] * len(units)
        for edge, ((source, consumer, port), depth) in enumerate(zip(cfg.edges, cfg.fifo_depths)):
            producer = units[source]
            shape = producer.layer.out_type.shape
            up, down = cfg.boundary(source, consumer)
            wide = producer.layer.pe * up                   # lcm(PE, SIMD): the FIFO's word
            suffix = f"_{port}" if port else ""
            ports = [outputs[source][taken[source]]]
            taken[source] += 1
            if up > 1:
                m.submodules[f"upsizer{consumer - 1}{suffix}"] = upsizer = Upsizer(shape, producer.layer.pe, up)
                ports += [upsizer.i, upsizer.o]
            m.submodules[f"fifo{consumer}{suffix}"] = fifo = StreamFIFO(data.ArrayLayout(shape, wide), depth)
            ports += [fifo.i, fifo.o]
            if down > 1:
                m.submodules[f"downsizer{consumer - 1}{suffix}"] = downsizer = Downsizer(
                    shape, cfg.layers[consumer].in_lanes, down)
                ports += [downsizer.i, downsizer.o]
            ports.append(inputs[consumer][port])
            for source_port, sink in zip(ports[::2], ports[1::2]):
                wiring.connect(m, source_port, sink)
        beat = Signal(index_range(cfg.out_beats))           # output beat within the sample
        m.d.comb += [self.m_axis_tdata.eq(last.o.payload), self.m_axis_tvalid.eq(last.o.valid),
                     last.o.ready.eq(self.m_axis_tready), self.m_axis_tlast.eq(beat == cfg.out_beats - 1)]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += beat.eq(Mux(beat == cfg.out_beats - 1, 0, beat + 1))
        return m
