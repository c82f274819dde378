"""cocotb testbench of an hwgen AXI wrapper (``<top>_axi``: AXI4-Lite ``s_axil_*``, AXI4-Stream ``s_axis_*`` /
``m_axis_*``, ``irq``, ``aclk``/``aresetn``), driven only through its AXI ports with cocotbext-axi.

Run by :mod:`hwgen.axi_sim`; the run is described by a JSON file named by the plusarg ``+hwgen_run=<path>`` (or
``$HWGEN_COCOTB_RUN``)::

    {"setup": [op, ...],        register operations after reset (loads included)
     "runs": [{"start": [op, ...],      operations that start the run (e.g. write CONTROL)
               "x": "<file>",           s_axis beats, one per line: `<tdata hex> <tlast 0|1>`
               "y_beats": 12,           m_axis beats to collect
               "wait": "irq" | "beats", the run ends when irq rises (after y_beats) or when y_beats are in
               "backpressure": 0.25,    probability per cycle that the source withholds tvalid / the sink tready
               "seed": 0,
               "after": [op, ...]}],    register operations after the run
     "max_cycles": 100000,      clock cycles a run may take
     "result": "<file>"}

An operation is ``["r", offset]`` (AXI4-Lite read), ``["w", offset, value]`` (write, all strobes) or ``["irq"]``
(sample the irq pin); each is recorded as ``[resp, data]`` (``[0, irq]`` for ``irq``). Results (JSON, written
before anything is asserted): ``setup`` and per run ``start``/``after`` (the recorded operations), ``y`` (hex),
``y_last``, ``x_cycles``/``y_cycles`` (the clock cycle of every transfer, counted from the first rising edge),
``status`` ("done" or "timeout") and ``cycles`` (clock cycles the run took).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

PERIOD_NS = 10
RESET_CYCLES = 8


def run_description() -> dict:
    path = cocotb.plusargs.get("hwgen_run") or os.environ.get("HWGEN_COCOTB_RUN")
    if not path:
        raise RuntimeError("no run description: pass +hwgen_run=<run.json> (or set HWGEN_COCOTB_RUN)")
    path = Path(str(path))
    run = json.loads(path.read_text())
    run["result"] = str((path.parent / run["result"]).resolve())
    for item in run["runs"]:
        item["x"] = str((path.parent / item["x"]).resolve())
    return run


def read_beats(path: str) -> list[tuple[int, int]]:
    beats = []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if fields:
            beats.append((int(fields[0], 16), int(fields[1])))
    return beats


def random_pauses(rng: random.Random, probability: float):
    return (rng.random() < probability for _ in itertools.count())


class Clocks:
    """Counts rising edges of the clock (cycle numbers for the transfer monitors)."""

    def __init__(self, clk) -> None:
        self.clk = clk
        self.now = 0

    async def run(self) -> None:
        while True:
            await RisingEdge(self.clk)
            self.now += 1


class TransferMonitor:
    """Records the cycle (and tdata/tlast) of every transfer on one AXI-Stream port."""

    def __init__(self, dut, prefix: str, clocks: Clocks) -> None:
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.data = getattr(dut, f"{prefix}_tdata")
        self.last = getattr(dut, f"{prefix}_tlast")
        self.clocks = clocks
        self.cycles: list[int] = []
        self.beats: list[int] = []
        self.lasts: list[int] = []

    async def run(self) -> None:
        while True:
            await RisingEdge(self.clocks.clk)
            if self.valid.value and self.ready.value:      # sampled before the edge: this edge transfers
                self.cycles.append(self.clocks.now)
                self.beats.append(int(self.data.value))
                self.lasts.append(int(self.last.value))

    def clear(self) -> None:
        self.cycles, self.beats, self.lasts = [], [], []


async def do_ops(dut, master: AxiLiteMaster, ops: list) -> list[list[int]]:
    results = []
    for op in ops:
        if op[0] == "r":
            answer = await master.read(op[1], 4)
            results.append([int(answer.resp), int.from_bytes(answer.data, "little")])
        elif op[0] == "w":
            answer = await master.write(op[1], int(op[2]).to_bytes(4, "little"))
            results.append([int(answer.resp), 0])
        elif op[0] == "irq":
            results.append([0, int(dut.irq.value)])
        else:
            raise ValueError(f"unknown operation {op!r}")
    return results


@cocotb.test()
async def axi_run(dut):
    """Reset, register operations, then each run: start, stream under backpressure, wait, register operations."""
    run = run_description()
    cocotb.start_soon(Clock(dut.aclk, PERIOD_NS, unit="ns").start())
    clocks = Clocks(dut.aclk)
    cocotb.start_soon(clocks.run())
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.aclk, dut.aresetn, reset_active_level=False)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk, dut.aresetn,
                             reset_active_level=False, byte_lanes=1)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk, dut.aresetn, reset_active_level=False,
                         byte_lanes=1)
    for component in (master.write_if, master.read_if, source, sink):
        component.log.setLevel(logging.WARNING)
    x_monitor = TransferMonitor(dut, "s_axis", clocks)
    y_monitor = TransferMonitor(dut, "m_axis", clocks)
    cocotb.start_soon(x_monitor.run())
    cocotb.start_soon(y_monitor.run())

    dut.aresetn.value = 0
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.aclk)
    dut.aresetn.value = 1
    await RisingEdge(dut.aclk)
    result = {"setup": await do_ops(dut, master, run["setup"]), "runs": []}
    for item in run["runs"]:
        rng = random.Random(item["seed"])
        probability = float(item["backpressure"])
        source.set_pause_generator(random_pauses(random.Random(rng.random()), probability) if probability else None)
        sink.set_pause_generator(random_pauses(random.Random(rng.random()), probability) if probability else None)
        x_monitor.clear()
        y_monitor.clear()
        frame = []
        for tdata, tlast in read_beats(item["x"]):
            frame.append(tdata)
            if tlast:
                source.send_nowait(AxiStreamFrame(frame))
                frame = []
        if frame:
            source.send_nowait(AxiStreamFrame(frame))
        first = clocks.now
        record = {"start": await do_ops(dut, master, item["start"])}
        status = "timeout"
        while clocks.now - first <= run["max_cycles"]:
            await RisingEdge(dut.aclk)
            if len(y_monitor.beats) >= item["y_beats"] and (item["wait"] == "beats" or dut.irq.value):
                status = "done"
                break
        record.update(status=status, cycles=clocks.now - first, y=[format(b, "x") for b in y_monitor.beats],
                      y_last=y_monitor.lasts, y_cycles=y_monitor.cycles, x_cycles=x_monitor.cycles)
        while not sink.empty():           # the monitor has every beat; the sink's frames are not needed
            sink.recv_nowait()
        record["after"] = await do_ops(dut, master, item["after"]) if status == "done" else []
        result["runs"].append(record)
        if status != "done":
            break
    Path(run["result"]).write_text(json.dumps(result))
    assert all(record["status"] == "done" for record in result["runs"]), "a run did not finish"
