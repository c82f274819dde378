"""The UART bridge in simulation: the bridge Verilog plus the design's, built for cocotb with Verilator, driven by
``sim/cocotb/tb_uart_bridge.py`` through a UART model with the same host-side code as ``hwgen run-board``.

The baud divisor is a parameter (clock cycles per bit) so simulation can run the UART fast; the bridge hardware is
otherwise the one a board build synthesizes.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import cocotb_backend, verilator
from .protocol import RunPlan, RunResult, decode_run, plan_run

TESTBENCH = "tb_uart_bridge"
SIM_DIVISOR = 8


@dataclass(frozen=True)
class BridgeRun:
    """One run through the simulated bridge: the output codes it decoded, the golden ones, what came back."""

    codes: np.ndarray
    expected: np.ndarray
    result: RunResult
    plan: RunPlan

    @property
    def mismatches(self) -> int:
        return int(np.sum(self.codes.reshape(self.expected.shape) != self.expected))


def bridge_verilog(design, divisor: int) -> tuple[str, str]:
    """(Verilog of the bridge and the design's top together, the bridge's module name)."""
    from amaranth.back import verilog

    from .bridge import BRIDGE_TOP, UartBridge, bridge_config

    bridge = verilog.convert(UartBridge(bridge_config(design, divisor)), name=BRIDGE_TOP, emit_src=False)
    return bridge + "\n" + design.verilog, BRIDGE_TOP


def simulate_bridge(design, runs: list[tuple[np.ndarray, bool | None]], *, divisor: int = SIM_DIVISOR,
                    timeout_cycles: int | None = None) -> list[BridgeRun]:
    """Run each ``(x, stream)`` of ``runs`` through the simulated bridge, one after the other in one simulation
    (each after a break, which resets bridge and accelerator); returns what each decoded."""
    from cocotb_tools.runner import get_runner

    from .protocol import design_id

    text, top = bridge_verilog(design, divisor)
    build_dir = cocotb_backend.build(text, top)
    planned = [plan_run(design, x, stream) for x, stream in runs]
    frame = 10 * divisor
    if timeout_cycles is None:
        busiest = max(design.predicted_cycles(len(x), stream) for x, stream in runs)
        timeout_cycles = 4 * busiest + 64 * frame
    with tempfile.TemporaryDirectory(prefix="hwgen-uart-") as scratch_name:
        scratch = Path(scratch_name)
        shutil.copy(cocotb_backend.testbench_dir() / f"{TESTBENCH}.py", scratch / f"{TESTBENCH}.py")
        description = {"divisor": divisor, "design_id": design_id(design.verilog_sha256),
                       "timeout_cycles": timeout_cycles, "plans": [plan.to_json() for plan, _, _ in planned],
                       "result": "result.json"}
        (scratch / "run.json").write_text(json.dumps(description))
        package_root = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        failure = None
        try:
            get_runner("verilator").test(test_module=TESTBENCH, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                                         build_dir=build_dir, test_dir=scratch,
                                         results_xml=str(scratch / "results.xml"), log_file=scratch / "sim.log",
                                         plusargs=[f"+hwgen_run={scratch / 'run.json'}"],
                                         extra_env={"PYTHONPATH": python_path})
        except (RuntimeError, SystemExit) as exc:      # the runner exits under pytest when the cocotb test fails
            failure = exc
        result_file = scratch / "result.json"
        if not result_file.is_file():
            raise verilator.SimulationError(f"the UART bridge testbench stopped without results ({failure}):\n"
                                            f"{cocotb_backend._tail(scratch / 'sim.log')}", 1)
        outcome = json.loads(result_file.read_text())
    if outcome["error"]:
        raise verilator.SimulationError(f"UART bridge: {outcome['error']}", 1)
    runs_out = []
    for (plan, _, expected), (x, _), doc in zip(planned, runs, outcome["results"]):
        result = RunResult.from_json(doc)
        runs_out.append(BridgeRun(decode_run(design, plan, result, len(x)), expected, result, plan))
    return runs_out
