"""Amaranth-simulator stream helpers shared by the stream-block tests: drive and collect valid/ready streams with
random stalls, record each transfer's cycle, pack/unpack lanes.

Every helper counts clock cycles from the start of the simulation (one ``ctx.tick()`` per cycle, never
``until``), so transfer cycles from different testbenches are comparable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth import Module, Signal, Value
from amaranth.sim import Simulator


@dataclass
class Ends:
    """One side of a stream: ``valid``, ``ready`` and the signals carried with each beat (payload, tlast, ...)."""

    valid: object
    ready: object
    data: tuple


def stream_ends(port) -> Ends:
    """The ends of a ``lib.stream`` interface (payload as raw bits)."""
    return Ends(port.valid, port.ready, (Value.cast(port.payload),))


@dataclass
class Transfers:
    """What crossed a stream: the beats (tuples of ``Ends.data`` values) and the cycle of each transfer."""

    beats: list = field(default_factory=list)
    cycles: list = field(default_factory=list)


class Clock:
    """A testbench's cycle counter: ``await clock.tick(ctx, *signals)`` samples ``signals`` at the clock edge."""

    def __init__(self, cycle: int = 0):
        self.cycle = cycle

    async def tick(self, ctx, *signals):
        values = await ctx.tick().sample(*signals)
        self.cycle += 1
        return values[2:]


async def send(ctx, ends: Ends, beats, clock: Clock, rng: np.random.Generator | None = None,
               p_valid: float = 1.0, max_wait: int = 100_000) -> Transfers:
    """Offer ``beats`` in order, each after idle cycles drawn with probability ``1 − p_valid`` per cycle; valid
    stays high (payload held) until the beat transfers."""
    sent = Transfers()
    for beat in beats:
        while rng is not None and rng.random() >= p_valid:
            ctx.set(ends.valid, 0)
            await clock.tick(ctx)
        for signal, value in zip(ends.data, beat):
            ctx.set(signal, int(value))
        ctx.set(ends.valid, 1)
        for _ in range(max_wait):
            cycle = clock.cycle
            ready, = await clock.tick(ctx, ends.ready)
            if ready:
                sent.beats.append(tuple(beat))
                sent.cycles.append(cycle)
                break
        else:
            raise AssertionError(f"beat {len(sent.beats)} not accepted within {max_wait} cycles")
    ctx.set(ends.valid, 0)
    return sent


async def receive(ctx, ends: Ends, count: int, clock: Clock, rng: np.random.Generator | None = None,
                  p_ready: float = 1.0, max_cycles: int = 200_000) -> Transfers:
    """Collect ``count`` beats, ready high on each cycle with probability ``p_ready``."""
    got = Transfers()
    for _ in range(max_cycles):
        if len(got.beats) == count:
            break
        ready = rng is None or rng.random() < p_ready
        ctx.set(ends.ready, ready)
        cycle = clock.cycle
        valid, *values = await clock.tick(ctx, ends.valid, *ends.data)
        if ready and valid:
            got.beats.append(tuple(values))
            got.cycles.append(cycle)
    else:
        raise AssertionError(f"only {len(got.beats)} of {count} beats within {max_cycles} cycles")
    ctx.set(ends.ready, 0)
    return got


def simulate(dut, *testbenches) -> None:
    """Run ``testbenches`` (async functions of ``ctx``) on ``dut`` with one clock until they all return (a
    purely combinational ``dut`` gets a dummy register so the clock domain exists)."""
    m = Module()
    m.submodules.dut = dut
    toggle = Signal()
    m.d.sync += toggle.eq(~toggle)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    sim.run()


def pack(lanes, bits: int) -> int:
    """Lane values (any sign) → one raw int, lane j at bits [j·bits, (j+1)·bits)."""
    return sum((int(value) & ((1 << bits) - 1)) << (j * bits) for j, value in enumerate(lanes))


def unpack(raw: int, bits: int, count: int, signed: bool) -> list[int]:
    """One raw int → ``count`` lane values."""
    lanes = [(int(raw) >> (j * bits)) & ((1 << bits) - 1) for j in range(count)]
    return [v - (1 << bits) if signed and v >> (bits - 1) else v for v in lanes]
