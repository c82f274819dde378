"""cocotb testbench of an hwgen accelerator top streamed through its AXI-Stream ports (the ``hwgen_systolic`` host
protocol: ``load``/``read`` streams, ``start``/``done``/``cycles``, ``s_axis``/``m_axis``).

Run by :mod:`hwgen.cocotb_backend` (``hwgen simulate --backend cocotb``); the run is described by a JSON file named
by the plusarg ``+hwgen_run=<path>`` (or the environment variable ``HWGEN_COCOTB_RUN``)::

    {"load": "<file>",      one load payload per line, hex (target | bank | addr | lane | data, field 0 at bit 0)
     "x": "<file>",         one s_axis beat per line: `<tdata hex> <tlast 0|1>` (the native harness's x format)
     "expected": "<file>",  one expected m_axis beat per line: `<tdata hex> <tlast 0|1> <mask hex>`; only the
                            tdata bits set in mask are compared (lanes beyond the last layer's N are don't-care)
     "result": "<file>",    where the results are written (JSON, below)
     "seed": 0,             random backpressure seed
     "backpressure": 0.25,  probability that the source withholds tvalid / the sink withholds tready in a cycle
                            (0: tvalid whenever a beat is queued, tready always high)
     "max_cycles": 100000}  clock cycles after the start pulse before the run is declared stuck

Components (cocotb's driver / monitor / reference model / checker split)::

    LoadDriver ──load──▶ ┌───────────┐ ──m_axis──▶ AxiStreamSink (random tready)
    AxiStreamSource ───▶ │    DUT    │               │
      (random tvalid)    └───────────┘       StreamMonitor(m_axis) ──beat, tlast, cycle──▶ Scoreboard ◀── Reference
    StreamMonitor(s_axis) ◀── transfer cycles                                                   (expected beats)

Cycle numbering follows the native harness: cycle 0 is the cycle ``start`` is high; a transfer is stamped with
the cycle whose closing rising edge commits it (valid and ready both high in that cycle). cocotb's ``RisingEdge``
fires before the design evaluates the edge (also in Verilator), so values read there are the cycle's settled
values, which is how the monitors and the load driver sample handshakes.

``io_cycles`` (end to end through the streams): ``last_m_axis_cycle - first_s_axis_cycle + 1``, the clock cycles
from the first input beat entering ``s_axis`` to the last result leaving ``m_axis``, both included. The ``cycles``
port counts start → done and ``done`` follows the last ``m_axis`` transfer, so ``io_cycles <= cycles``; the
difference is the start cycle plus the cycles before the first input was accepted (with a source that offers from
cycle 1 and no backpressure: ``io_cycles == cycles - 2`` on the systolic top, whose ``s_axis_tready`` rises in
cycle 3).

Results (JSON): ``status`` ("done"), ``cycles`` (port at done), ``done_cycle``, ``io_cycles``,
``first_s_axis_cycle``, ``last_m_axis_cycle``, ``x_starts`` (cycle of each sample's first input beat), ``y`` (hex),
``y_last``, ``y_cycles``, ``beat_mismatches``, ``tlast_errors``, ``errors`` (the first few, as text),
``frames_consistent`` (the sink's frames equal the monitored beats split at tlast), ``run_seconds`` (wall time of
start → done), ``load_cycles``, ``sim_cycles`` (every clock cycle simulated). They are written before the checker
asserts, so a failing run still reports what it saw.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

PERIOD_NS = 10
RESET_CYCLES = 4
MAX_REPORTED_ERRORS = 10


def run_description() -> dict:
    """The run file (plusarg ``+hwgen_run=`` first, then ``$HWGEN_COCOTB_RUN``), paths made absolute."""
    path = cocotb.plusargs.get("hwgen_run") or os.environ.get("HWGEN_COCOTB_RUN")
    if not path:
        raise RuntimeError("no run description: pass +hwgen_run=<run.json> (or set HWGEN_COCOTB_RUN)")
    path = Path(str(path))
    run = json.loads(path.read_text())
    for key in ("load", "x", "expected", "result"):
        run[key] = str((path.parent / run[key]).resolve())
    return run


def read_beats(path: str) -> list[list[int]]:
    """Lines of hex/decimal columns: ``<hex> <int> [<hex>]`` → lists of ints."""
    beats = []
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            if fields:
                beats.append([int(fields[0], 16), int(fields[1])] + [int(f, 16) for f in fields[2:]])
    return beats


def random_pauses(rng: random.Random, probability: float):
    """An endless pause pattern for cocotbext-axi's ``set_pause_generator``: True (pause) with ``probability``."""
    return (rng.random() < probability for _ in itertools.count())


class Cycles:
    """Cycle numbers from simulation time: cycle 0 is the one closed by the rising edge at ``start_ns``."""

    def __init__(self) -> None:
        self.start_ns: int | None = None

    def now(self) -> int:
        """The cycle the current rising edge closes (call right after ``await RisingEdge``)."""
        return (round(get_sim_time("ns")) - self.start_ns) // PERIOD_NS


class LoadDriver:
    """Writes payloads through the ``load`` valid/ready stream, one per cycle while ``load__ready`` is high."""

    def __init__(self, dut) -> None:
        self.clk = dut.clk
        self.valid = dut.load__valid
        self.ready = dut.load__ready
        self.payload = dut.load__payload
        self.valid.value = 0

    async def write(self, payloads: list[int]) -> int:
        """Transfers every payload in order; returns the cycles it took. Leaves ``valid`` low."""
        cycles = 0
        index = 0
        if payloads:
            self.valid.value = 1
            self.payload.value = payloads[0]
        while index < len(payloads):
            await RisingEdge(self.clk)
            cycles += 1
            if self.ready.value:  # sampled before the edge: this edge took payloads[index]
                index += 1
                if index < len(payloads):
                    self.payload.value = payloads[index]
        self.valid.value = 0
        return cycles


class StreamMonitor:
    """Watches one AXI-Stream port and records every transfer (valid and ready high at a rising edge) with its
    cycle; ``on_beat(index, tdata, tlast, cycle)`` is called for each as it happens."""

    def __init__(self, dut, prefix: str, cycles: Cycles, on_beat=None, keep_data: bool = True) -> None:
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.data = getattr(dut, f"{prefix}_tdata")
        self.last = getattr(dut, f"{prefix}_tlast")
        self.cycles = cycles
        self.on_beat = on_beat
        self.keep_data = keep_data
        self.beats: list[int] = []
        self.lasts: list[int] = []
        self.transfer_cycles: list[int] = []
        self.sample_starts: list[int] = []
        self._task = None

    def start(self) -> None:
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        clk, valid, ready, data, last = self.clk, self.valid, self.ready, self.data, self.last
        previous_last = 1
        while True:
            await RisingEdge(clk)
            if valid.value and ready.value:
                cycle = self.cycles.now()
                tdata, tlast = int(data.value), int(last.value)
                if previous_last:
                    self.sample_starts.append(cycle)
                previous_last = tlast
                self.transfer_cycles.append(cycle)
                self.lasts.append(tlast)
                if self.keep_data:
                    self.beats.append(tdata)
                if self.on_beat is not None:
                    self.on_beat(len(self.transfer_cycles) - 1, tdata, tlast, cycle)


class Reference:
    """The golden model's expected ``m_axis`` beats (computed by hwgen's numpy golden model): tdata, tlast and
    the mask of the tdata bits that carry results."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def beat(self, index: int) -> tuple[int, int, int]:
        tdata, tlast, mask = self.rows[index]
        return tdata, tlast, mask


class Scoreboard:
    """Compares every output beat with the reference as it arrives; counts data and tlast mismatches."""

    def __init__(self, reference: Reference, log: logging.Logger) -> None:
        self.reference = reference
        self.log = log
        self.beat_mismatches = 0
        self.tlast_errors = 0
        self.extra_beats = 0
        self.errors: list[str] = []

    def _error(self, text: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(text)
            self.log.error(text)

    def check(self, index: int, tdata: int, tlast: int, cycle: int) -> None:
        if index >= len(self.reference):
            self.extra_beats += 1
            self._error(f"m_axis beat {index} at cycle {cycle}: more beats than the {len(self.reference)} expected")
            return
        expected, expected_last, mask = self.reference.beat(index)
        if (tdata ^ expected) & mask:
            self.beat_mismatches += 1
            self._error(f"m_axis beat {index} at cycle {cycle}: tdata {tdata & mask:#x}, expected {expected:#x}")
        if tlast != expected_last:
            self.tlast_errors += 1
            self._error(f"m_axis beat {index} at cycle {cycle}: tlast {tlast}, expected {expected_last}")

    @property
    def clean(self) -> bool:
        return not (self.beat_mismatches or self.tlast_errors or self.extra_beats)


async def reset(dut) -> None:
    dut.rst.value = 1
    dut.start.value = 0
    dut.read__valid.value = 0
    dut.rdata__ready.value = 1
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def streamed_run(dut):
    """Load, start, stream every sample through s_axis/m_axis under random backpressure, check every result."""
    run = run_description()
    log = logging.getLogger("cocotb.hwgen")
    loads = [int(line, 16) for line in Path(run["load"]).read_text().split()]
    x = read_beats(run["x"])
    reference = Reference(read_beats(run["expected"]))
    rng = random.Random(run["seed"])
    backpressure = float(run["backpressure"])

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst, byte_lanes=1)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst, byte_lanes=1)
    for component in (source, sink):  # one INFO line per frame otherwise
        component.log.setLevel(logging.WARNING)
    if backpressure > 0:
        source.set_pause_generator(random_pauses(random.Random(rng.random()), backpressure))
        sink.set_pause_generator(random_pauses(random.Random(rng.random()), backpressure))
    load_driver = LoadDriver(dut)
    cycles = Cycles()
    scoreboard = Scoreboard(reference, log)
    x_monitor = StreamMonitor(dut, "s_axis", cycles, keep_data=False)
    y_monitor = StreamMonitor(dut, "m_axis", cycles, on_beat=scoreboard.check)

    await reset(dut)
    load_cycles = await load_driver.write(loads)

    # cycle 0: start high; the source offers its first beat from cycle 1 (as the native harness does)
    dut.start.value = 1
    frame = []
    for tdata, tlast in x:
        frame.append(tdata)
        if tlast:
            source.send_nowait(AxiStreamFrame(frame))
            frame = []
    if frame:
        source.send_nowait(AxiStreamFrame(frame))
    started = time.perf_counter()
    await RisingEdge(dut.clk)
    cycles.start_ns = round(get_sim_time("ns"))
    dut.start.value = 0
    x_monitor.start()
    y_monitor.start()
    done_cycle = None
    while True:
        await RisingEdge(dut.clk)
        cycle = cycles.now()
        if dut.done.value or (run.get("stop_after_y") and len(y_monitor.beats) >= len(reference)):
            done_cycle = cycle      # a top without done (the dataflow pipeline) ends with its last output beat
            break
        if cycle > run["max_cycles"]:
            break
    run_seconds = time.perf_counter() - started
    cycles_port = int(dut.cycles.value)
    x_monitor.stop()
    y_monitor.stop()

    frames = []
    while not sink.empty():
        frames.append(list(sink.recv_nowait().tdata))
    split, current = [], []
    for tdata, tlast in zip(y_monitor.beats, y_monitor.lasts):
        current.append(tdata)
        if tlast:
            split.append(current)
            current = []
    missing = len(reference) - len(y_monitor.beats)
    if missing > 0:
        scoreboard._error(f"m_axis gave {len(y_monitor.beats)} beats, expected {len(reference)}")
    if len(x_monitor.transfer_cycles) != len(x):
        scoreboard._error(f"s_axis took {len(x_monitor.transfer_cycles)} of {len(x)} input beats")
    first_x = x_monitor.transfer_cycles[0] if x_monitor.transfer_cycles else None
    last_y = y_monitor.transfer_cycles[-1] if y_monitor.transfer_cycles else None
    result = {
        "status": "done" if done_cycle is not None else "timeout",
        "cycles": cycles_port, "done_cycle": done_cycle,
        "io_cycles": None if first_x is None or last_y is None else last_y - first_x + 1,
        "first_s_axis_cycle": first_x, "last_m_axis_cycle": last_y,
        "s_axis_beats": len(x_monitor.transfer_cycles), "x_starts": x_monitor.sample_starts,
        "y": [format(beat, "x") for beat in y_monitor.beats], "y_last": y_monitor.lasts,
        "y_cycles": y_monitor.transfer_cycles,
        "beat_mismatches": scoreboard.beat_mismatches, "tlast_errors": scoreboard.tlast_errors,
        "errors": scoreboard.errors, "frames_consistent": frames == split and not current,
        "run_seconds": run_seconds, "load_cycles": load_cycles,
        "sim_cycles": round(get_sim_time("ns")) // PERIOD_NS,
        "backpressure": backpressure, "seed": run["seed"],
    }
    Path(run["result"]).write_text(json.dumps(result))

    assert done_cycle is not None, f"done still low {run['max_cycles']} cycles after start"
    assert not missing and len(x_monitor.transfer_cycles) == len(x), "; ".join(scoreboard.errors)
    assert result["frames_consistent"], "the sink's frames differ from the monitored m_axis beats"
    assert scoreboard.clean, f"{scoreboard.beat_mismatches} beat(s) and {scoreboard.tlast_errors} tlast(s) differ " \
                             f"from the golden model: " + "; ".join(scoreboard.errors)
