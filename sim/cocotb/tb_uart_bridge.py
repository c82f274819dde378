"""cocotb testbench of the UART host bridge (``hwgen_uart_bridge`` around an hwgen accelerator top).

The host side is the code ``hwgen run-board`` runs: :class:`hwgen.board.protocol.BridgeClient`, here talking to a
:class:`SimulatedSerial` port instead of pyserial's. The client is blocking code, so it runs in a cocotb
``bridge`` thread and each port call that must wait for the simulation (``read``, ``send_break``) is a ``resume``
coroutine: the simulation advances only while the client waits for it, as a real board runs while the host waits.
The UART lines are driven and sampled by cocotbext-uart (``UartSource`` on ``rx``, ``UartSink`` on ``tx``) at the
bridge's baud rate: ``divisor`` clock cycles per bit.

Run by :func:`hwgen.board.sim.simulate_bridge`; the run is described by a JSON file named by the plusarg
``+hwgen_run=<path>``::

    {"divisor": 8,              clock cycles per UART bit (the bridge was built with the same)
     "design_id": 305419896,    the id the bridge must report (None: not checked)
     "timeout_cycles": 100000,  clock cycles without a byte from the bridge before the client gives up
     "plans": [{...}, ...],     RunPlan documents, run one after the other, each after a break (reset)
     "result": "result.json"}

Results (JSON): ``info`` (the bridge's identify answer), ``results`` (RunResult documents, ``seconds`` in simulated
seconds), ``sim_cycles``, ``error`` (the client's error message, or null).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, Timer
from cocotbext.uart import UartSink, UartSource

from hwgen.board.protocol import BridgeClient, BridgeError, RunPlan

PERIOD_NS = 10
RESET_CYCLES = 4
BREAK_FRAMES = 2           # the break holds rx low this many frames, then idles as long before the next byte


class SimulatedSerial:
    """The subset of ``serial.Serial`` that :class:`BridgeClient` uses, over the simulated UART lines. Called from
    the bridge thread; ``clock()`` is the simulated time (s) of the last simulation step the port waited for."""

    def __init__(self, dut, divisor: int, timeout_cycles: int):
        self.rx = dut.rx
        baud = 1e9 / (PERIOD_NS * divisor)
        self.source = UartSource(dut.rx, baud=baud, bits=8)
        self.sink = UartSink(dut.tx, baud=baud, bits=8)
        self.frame_ns = 10 * PERIOD_NS * divisor
        self.timeout_ns = timeout_cycles * PERIOD_NS
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def _tick(self) -> None:
        self.now = get_sim_time("ns") * 1e-9

    @property
    def in_waiting(self) -> int:
        return self.sink.count()

    def write(self, data: bytes) -> int:
        return resume(self._write)(bytes(data))

    async def _write(self, data: bytes) -> int:
        self.source.write_nowait(data)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        return resume(self._read)(size)

    async def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes: waits until ``size`` have arrived or ``timeout_cycles`` passed without one."""
        waited = 0
        while self.sink.count() < size and waited < self.timeout_ns:
            before = self.sink.count()
            await Timer(self.frame_ns, "ns")
            waited = 0 if self.sink.count() > before else waited + self.frame_ns
        self._tick()
        return bytes(self.sink.read_nowait(min(size, self.sink.count())))

    def send_break(self, duration: float = 0.25) -> None:
        resume(self._send_break)()

    async def _send_break(self) -> None:
        await self.source.wait()
        self.rx.value = 0
        await Timer(BREAK_FRAMES * self.frame_ns, "ns")
        self.rx.value = 1
        await Timer(BREAK_FRAMES * self.frame_ns, "ns")     # a frame cut short by the reset ends meanwhile
        self._tick()

    def reset_input_buffer(self) -> None:
        resume(self._clear)()

    async def _clear(self) -> None:
        self.sink.clear()


@cocotb.test()
async def uart_bridge(dut):
    """Every plan of the run file through the bridge, each after a break; results written for the caller."""
    path = Path(str(cocotb.plusargs["hwgen_run"]))
    run = json.loads(path.read_text())
    for name in ("cocotb.rx", "cocotb.tx", f"cocotb.{dut._path}.rx", f"cocotb.{dut._path}.tx"):
        logging.getLogger(name).setLevel(logging.WARNING)        # cocotbext-uart logs every byte at INFO
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    port = SimulatedSerial(dut, run["divisor"], run["timeout_cycles"])
    dut.rst.value = 1
    await ClockCycles(dut.clk, RESET_CYCLES)
    dut.rst.value = 0
    frame_s = port.frame_ns * 1e-9

    @bridge
    def host() -> dict:
        client = BridgeClient(port, timeout=run["timeout_cycles"] * PERIOD_NS * 1e-9 + frame_s, clock=port.clock)
        outcome = {"info": None, "results": [], "error": None}
        try:
            for plan in run["plans"]:
                info = client.connect(run.get("design_id"))
                outcome["info"] = vars(info)
                outcome["results"].append(client.execute(RunPlan.from_json(plan)).to_json())
        except BridgeError as exc:
            outcome["error"] = str(exc)
        return outcome

    started = time.perf_counter()
    outcome = await host()
    outcome["sim_cycles"] = round(get_sim_time("ns")) // PERIOD_NS
    outcome["wall_seconds"] = time.perf_counter() - started
    (path.parent / run["result"]).write_text(json.dumps(outcome, indent=1))
    assert outcome["error"] is None, outcome["error"]
