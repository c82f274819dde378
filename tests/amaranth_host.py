"""The host protocol (load / start / read) driven from Amaranth's simulator, shared by the hardware unit tests."""
from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator


def simulate_run(top, loads, reads, max_cycles: int = 200_000) -> tuple[int, np.ndarray]:
    """Load ``loads`` rows, start, wait for done, read ``reads``; returns (cycles port, int32 values)."""
    result: dict = {}

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
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(top.done):
                break
        else:
            raise AssertionError(f"no done within {max_cycles} cycles")
        result["cycles"] = ctx.get(top.cycles)
        values = []
        ctx.set(top.rdata.ready, 1)
        for target, bank, addr, lane in reads:
            ctx.set(top.read.payload, {"target": target, "bank": bank, "addr": addr, "lane": lane})
            ctx.set(top.read.valid, 1)
            await ctx.tick().until(top.read.ready)
            ctx.set(top.read.valid, 0)
            value, = await ctx.tick().sample(top.rdata.payload).until(top.rdata.valid)
            values.append(value)
        result["values"] = np.array(values, np.uint32).view(np.int32)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    return result["cycles"], result["values"]
