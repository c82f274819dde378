"""A small design that implements the hwgen host protocol, to test the simulation harness against.

```
            load ──▶ ┌──────────────────────────────┐
            read ──▶ │ target 0 operand: 4 banks ×  │ ──▶ rdata
           start ──▶ │   16 words × 4 lanes × 8 bit │ ──▶ busy, done
                     │ target 1 result: 16 × 32 bit │ ──▶ cycles
                     │ target 2 passes: 1 × 32 bit  │
                     └──────────────────────────────┘
```

Memory map ``(target, bank, addr, lane)``:

- target 0, ``operand``: banks 0..3, words 0..15, lanes 0..3 of 8 bits (one ``Memory`` per bank, written one
  lane at a time through a write port with lane granularity). Reads return the lane zero-extended.
- target 1, ``result``: bank 0, words 0..15, lane 0, 32 bits.
- target 2, ``passes``: bank 0, word 0, lane 0, 32 bits; reset value 1.

Writes outside the map are dropped; reads outside it return 0.

A run (one-cycle ``start`` while idle) makes ``P = max(passes, 1)`` passes over the 16 result words. Pass ``p``
sets ``result[i] = (result[i] if p else 0) + sum(operand[bank i % 4][word i])`` (mod 2**32) and takes exactly
2 cycles per word (read, then write), so a run is busy for exactly ``32 * P`` cycles; ``done`` rises on the
edge after the last busy cycle and ``cycles`` holds ``32 * P``. After a run, ``result[i] = P * sum(...)``.

Streams: every ``s_axis`` beat (72 bits, wider than a machine word on purpose) comes back on ``m_axis`` one cycle
later plus one (mod 2**72), tlast kept; ``s_axis`` is ready whenever the output register is free or leaving.

Backpressure: ``load`` and ``read`` are not ready while busy, nor on every third cycle (a free-running counter),
so a host must honour ready. ``read`` is answered on ``rdata`` one cycle after its transfer, in order, and holds
its answer while ``rdata`` is not ready.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

OPERAND_BANKS = 4
WORDS = 16
LANES = 4
LANE_BITS = 8

STREAM_BITS = 72
LOAD_LAYOUT = data.StructLayout({"target": 3, "bank": 6, "addr": 16, "lane": 6, "data": 32})
READ_LAYOUT = data.StructLayout({"target": 3, "bank": 6, "addr": 16, "lane": 6})


class ProtocolDut(wiring.Component):
    """The protocol test design; see the module docstring for its memory map and timing."""

    def __init__(self) -> None:
        super().__init__({
            "load":   In(stream.Signature(LOAD_LAYOUT)),
            "read":   In(stream.Signature(READ_LAYOUT)),
            "rdata":  Out(stream.Signature(32)),
            "start":  In(1),
            "busy":   Out(1),
            "done":   Out(1),
            "cycles": Out(32),
            "s_axis_tdata": In(STREAM_BITS), "s_axis_tvalid": In(1), "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(STREAM_BITS), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()

        # Memories: one per operand bank (lane-granular writes), the result memory, the passes register.
        lane_word = data.ArrayLayout(unsigned(LANE_BITS), LANES)
        operand_reads, operand_writes = [], []
        for bank in range(OPERAND_BANKS):
            memory = Memory(shape=lane_word, depth=WORDS, init=[])
            m.submodules[f"operand_bank{bank}"] = memory
            operand_reads.append(memory.read_port())
            operand_writes.append(memory.write_port(granularity=1))
        m.submodules.result = result = Memory(shape=32, depth=WORDS, init=[])
        result_read = result.read_port()
        result_write = result.write_port()
        passes = Signal(32, init=1)

        # Backpressure: not ready on every third cycle, nor while busy.
        stall_count = Signal(range(3))
        m.d.sync += stall_count.eq(Mux(stall_count == 2, 0, stall_count + 1))
        host_ready = ~self.busy & (stall_count != 2)

        # Stream echo: a one-beat register.
        m.d.comb += self.s_axis_tready.eq(~self.m_axis_tvalid | self.m_axis_tready)
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += [self.m_axis_tvalid.eq(1), self.m_axis_tdata.eq(self.s_axis_tdata + 1),
                         self.m_axis_tlast.eq(self.s_axis_tlast)]
        with m.Elif(self.m_axis_tready):
            m.d.sync += self.m_axis_tvalid.eq(0)

        # Host writes.
        load = self.load.payload
        m.d.comb += self.load.ready.eq(host_ready)
        load_fire = self.load.valid & self.load.ready
        load_hit = load_fire & _in_map(load)
        for bank, port in enumerate(operand_writes):
            m.d.comb += [
                port.addr.eq(load.addr),
                port.data.eq(Cat(load.data[:LANE_BITS] for _ in range(LANES))),
            ]
            with m.If(load_hit & (load.target == 0) & (load.bank == bank)):
                m.d.comb += port.en.eq(Const(1, LANES) << load.lane[:2])
        with m.If(load_hit & (load.target == 2)):
            m.d.sync += passes.eq(load.data)

        # Host reads: the request selects the word now and the element one cycle later.
        request = self.read.payload
        m.d.comb += self.read.ready.eq(host_ready & (~self.rdata.valid | self.rdata.ready))
        read_fire = self.read.valid & self.read.ready
        answer_target = Signal.like(request.target)
        answer_bank = Signal.like(request.bank)
        answer_lane = Signal.like(request.lane)
        answer_hit = Signal()
        with m.If(read_fire):
            m.d.sync += [
                answer_target.eq(request.target),
                answer_bank.eq(request.bank),
                answer_lane.eq(request.lane),
                answer_hit.eq(_in_map(request)),
                self.rdata.valid.eq(1),
            ]
        with m.Elif(self.rdata.ready):
            m.d.sync += self.rdata.valid.eq(0)
        operand_answer = Signal(LANE_BITS)
        with m.Switch(answer_bank):
            for bank, port in enumerate(operand_reads):
                with m.Case(bank):
                    m.d.comb += operand_answer.eq(port.data[answer_lane[:2]])
        with m.If(answer_hit):
            with m.Switch(answer_target):
                with m.Case(0):
                    m.d.comb += self.rdata.payload.eq(operand_answer)
                with m.Case(1):
                    m.d.comb += self.rdata.payload.eq(result_read.data)
                with m.Case(2):
                    m.d.comb += self.rdata.payload.eq(passes)

        # The run: per word, cycle 0 reads operand and result, cycle 1 writes the new result.
        word = Signal(range(WORDS))
        pass_index = Signal(32)
        write_phase = Signal()
        operand_sum = Signal(LANE_BITS + 2)
        bank_word = Signal(lane_word)
        with m.Switch(word[:2]):
            for bank, port in enumerate(operand_reads):
                with m.Case(bank):
                    m.d.comb += bank_word.eq(port.data)
        m.d.comb += operand_sum.eq(sum(bank_word[lane] for lane in range(LANES)))
        read_addr = Mux(self.busy, word, request.addr)
        run_read = self.busy & ~write_phase
        for port in operand_reads:
            m.d.comb += [port.addr.eq(read_addr), port.en.eq(run_read | read_fire)]
        m.d.comb += [
            result_read.addr.eq(read_addr),
            result_read.en.eq(run_read | read_fire),
            result_write.addr.eq(word),
            result_write.data.eq(Mux(pass_index == 0, 0, result_read.data) + operand_sum),
            result_write.en.eq(self.busy & write_phase),
        ]

        with m.If(self.busy):
            m.d.sync += [self.cycles.eq(self.cycles + 1), write_phase.eq(~write_phase)]
            with m.If(write_phase):
                m.d.sync += word.eq(word + 1)
                with m.If(word == WORDS - 1):
                    m.d.sync += pass_index.eq(pass_index + 1)
                    with m.If(pass_index + 1 >= passes):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        with m.Elif(self.start):
            m.d.sync += [
                self.busy.eq(1),
                self.done.eq(0),
                self.cycles.eq(0),
                word.eq(0),
                pass_index.eq(0),
                write_phase.eq(0),
            ]
        return m


def _in_map(element: data.View) -> Value:
    """High when ``element`` (a load or read payload) names an element of the memory map."""
    operand = (element.bank < OPERAND_BANKS) & (element.addr < WORDS) & (element.lane < LANES)
    result = (element.bank == 0) & (element.addr < WORDS) & (element.lane == 0)
    passes = (element.bank == 0) & (element.addr == 0) & (element.lane == 0)
    return Mux(element.target == 0, operand,
               Mux(element.target == 1, result, (element.target == 2) & passes))
