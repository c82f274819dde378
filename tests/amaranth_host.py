"""The host protocol (load / start / stream / read) driven from Amaranth's simulator, shared by the hardware unit
tests. Every run replaces the word read by a ``no_rw_check`` memory (``hwgen.arch.hdl.ram``) in a cycle that
writes the same word with a random one, as synthesis leaves it undefined: the runs stay bit-exact only if the
design never uses such a word."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Fragment
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator


@dataclass
class Run:
    """What a run gave: the ``cycles`` port, one int32 per read, the ``m_axis`` beats (data, last), and the reads
    that collided with a write (``memory@cycle[addr]``, their words replaced at random)."""

    cycles: int
    values: np.ndarray
    beats: list[int] = field(default_factory=list)
    lasts: list[int] = field(default_factory=list)
    collisions: list[str] = field(default_factory=list)


def simulate_run(top, loads, reads, x_beats=(), *, stall_seed: int | None = None, max_cycles: int = 200_000) -> Run:
    """Load ``loads`` rows, start, stream ``x_beats`` into ``s_axis`` while collecting ``m_axis`` until done, then
    read ``reads``. With ``stall_seed``, ``s_axis_tvalid`` and ``m_axis_tready`` drop at random (backpressure)."""
    result: dict = {}
    rng = np.random.default_rng(stall_seed)

    async def host(ctx):
        for target, bank, addr, lane, value in loads:
            ctx.set(top.load.payload, {"target": target, "bank": bank, "addr": addr, "lane": lane,
                                       "data": int(value) & 0xFFFFFFFF})
            ctx.set(top.load.valid, 1)
            await ctx.tick().until(top.load.ready)
        ctx.set(top.load.valid, 0)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        pending, beats, lasts = list(x_beats), [], []
        for _ in range(max_cycles):
            offer = bool(pending) and (stall_seed is None or rng.random() < 0.7)
            ctx.set(top.s_axis_tvalid, offer)
            if offer:
                ctx.set(top.s_axis_tdata, pending[0])
            ctx.set(top.m_axis_tready, stall_seed is None or rng.random() < 0.7)
            taken = offer and ctx.get(top.s_axis_tready)
            if ctx.get(top.m_axis_tvalid) and ctx.get(top.m_axis_tready):
                beats.append(ctx.get(top.m_axis_tdata))
                lasts.append(ctx.get(top.m_axis_tlast))
            await ctx.tick()
            if taken:
                pending.pop(0)
            if ctx.get(top.done):
                break
        else:
            raise AssertionError(f"no done within {max_cycles} cycles")
        ctx.set(top.s_axis_tvalid, 0)
        result["run"] = Run(ctx.get(top.cycles), np.zeros(0, np.int32), beats, lasts)
        values = []
        ctx.set(top.rdata.ready, 1)
        for target, bank, addr, lane in reads:
            ctx.set(top.read.payload, {"target": target, "bank": bank, "addr": addr, "lane": lane})
            ctx.set(top.read.valid, 1)
            await ctx.tick().until(top.read.ready)
            ctx.set(top.read.valid, 0)
            value, = await ctx.tick().sample(top.rdata.payload).until(top.rdata.valid)
            values.append(value)
        result["run"].values = np.array(values, np.uint32).view(np.int32)

    fragment = Fragment.get(top, None)
    collisions: list[str] = []
    sim = Simulator(fragment)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_process(collision_check(fragment, collisions))
    sim.run()
    result["run"].collisions = collisions
    return result["run"]


def _memories(fragment, path=()):
    """(hierarchical name, Memory) of every ``no_rw_check`` memory in an elaborated design."""
    for origin in getattr(fragment, "origins", None) or ():
        if isinstance(origin, Memory) and origin.attrs.get("no_rw_check"):
            yield ".".join(path), origin
    for sub, name, *_ in fragment.subfragments:
        yield from _memories(sub, (*path, str(name)))


def collision_check(fragment, collisions: list[str], seed: int = 0):
    """A simulator process for ``no_rw_check`` memories: in every cycle in which an enabled read port reads the word
    a write port writes, it appends ``name@cycle[addr]`` to ``collisions`` and replaces the word read with a random
    one (synthesis leaves such a read undefined: Yosys maps the memory without read-first emulation), so a design
    that used that word would not stay bit-exact."""
    rng = np.random.default_rng(seed)
    pairs = [(name, rd, wr) for name, memory in _memories(fragment)
             for rd in memory.read_ports for wr in memory.write_ports]
    signals = [s for _, rd, wr in pairs for s in (rd.addr, rd.en, wr.addr, wr.en)]

    async def process(ctx):
        cycle = 0
        while True:
            _, _, *values = await ctx.tick().sample(*signals)
            cycle += 1
            hits = []
            for index, (name, rd, _) in enumerate(pairs):
                rd_addr, rd_en, wr_addr, wr_en = values[4 * index: 4 * index + 4]
                if wr_en and rd_en and rd_addr == wr_addr:
                    collisions.append(f"{name}@{cycle}[{rd_addr}]")
                    hits.append(rd.data)
            if hits:
                await ctx.delay(1e-10)          # after the read ports have taken the edge's words, before the next
                for data in hits:
                    ctx.set(data, int.from_bytes(rng.bytes((len(data) + 7) // 8), "little") & ((1 << len(data)) - 1))
    return process
