"""UART receiver and transmitter (8 data bits, no parity, one stop bit), ``divisor`` clock cycles per bit.

::

    rx ─▶ FFSynchronizer ─▶ UartRx ─▶ o (valid pulse per byte, always ready)    brk: a break (line low a frame)
    i (valid/ready, one byte) ─▶ UartTx ─▶ tx

Receiver timing: a falling edge of the synchronized line starts a frame; the start bit is checked in its middle
(``divisor // 2`` cycles later) and each data bit and the stop bit ``divisor`` cycles after the previous sample.
A frame whose stop bit is low is dropped; if its data were all zero it is a *break* (the line held low), reported
by a one-cycle ``brk`` pulse, after which the receiver waits for the line to go high again. ``o.valid`` pulses
with each byte (``o`` cannot be stalled: a UART cannot be paused, so the consumer must keep up).

Transmitter timing: a byte accepted on ``i`` leaves as 10 bits of ``divisor`` cycles each (start, data least
significant bit first, stop), from the next cycle on; ``i.ready`` is high while idle and in the last cycle of a
stop bit, so bytes offered back to back leave back to back (a frame every ``10 · divisor`` cycles).

amaranth-stdio has a serial core but is not on PyPI (only a placeholder name), so hwgen keeps this small one.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MIN_DIVISOR = 4          # clock cycles per bit: the receiver samples mid-bit after a 2-cycle synchronizer


def _check_divisor(divisor: int) -> None:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor (clock cycles per UART bit) must be an integer ≥ {MIN_DIVISOR}, got {divisor!r}")


class UartRx(wiring.Component):
    """Serial line ``rx`` → bytes on ``o`` (a valid pulse each) and ``brk`` pulses for breaks."""

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8, always_ready=True)), "brk": Out(1)})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor))
        bits = Signal(range(8))
        shift = Signal(8)
        m.d.sync += [self.o.valid.eq(0), self.brk.eq(0)]
        m.d.comb += self.o.payload.eq(shift)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                    with m.If(line):                       # a glitch, not a start bit
                        m.next = "idle"
                    with m.Else():
                        m.next = "data"
            with m.State("data"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), shift.eq(Cat(shift[1:], line)), bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += self.o.valid.eq(1)
                        m.next = "idle"
                    with m.Else():
                        m.d.sync += self.brk.eq(shift == 0)
                        m.next = "wait_high"
            with m.State("wait_high"):
                with m.If(line):
                    m.next = "idle"
        return m


class UartTx(wiring.Component):
    """Bytes from ``i`` → serial line ``tx`` (high while idle)."""

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        frame = Signal(10, init=(1 << 10) - 1)        # stop, data[7:0], start: shifted out from bit 0
        left = Signal(range(11))                      # bits still to send
        ending = (left == 1) & (timer == 0)           # the last cycle of the stop bit
        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq((left == 0) | ending)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))), left.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), left.eq(left - 1), timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
