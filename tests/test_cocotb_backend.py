"""The cocotb backend (sim/cocotb/tb_systolic.py through hwgen.cocotb_backend): bit-exact under random backpressure
on both AXI-Stream sides, the exact cycle model without it, io_cycles as documented, a scoreboard that catches a
wrong beat, and the CLI path.

Verilator builds (cocotb's, cached in ~/.cache/hwgen/verilator/cocotb-*): the bundled example on a 4×4 OS array and a
small random MLP on a 2×3 WS array. Every test below shares those two.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen import cocotb_backend
from hwgen.design import TOP_NAME
from onnx_helpers import mlp

NATIVE_REPORT_KEYS = {"schema_version", "hwgen_version", "samples", "io", "cycles", "predicted_cycles", "bit_exact",
                      "mismatches", "sim_seconds", "build_seconds", "run_seconds", "sim_cycles",
                      "sim_cycles_per_second", "verilator_version", "verilog_sha256"}
# s_axis_tready of the systolic top rises in cycle 4 after the start pulse (cycle 0: IDLE; then FETCH, LATCH and
# DECODE, controller.py), and done follows the last m_axis transfer by one cycle more than that lead (StreamOut's
# done is a register, io.py): with a source offering from cycle 1, io_cycles == cycles - 4
IO_OUTSIDE_CYCLES = 4


@pytest.fixture(scope="module")
def os_design(example_dir: Path) -> hwgen.Design:
    """The bundled example on a small output-stationary array: 10 samples are two chunks (8 + 2)."""
    return hwgen.compile(example_dir / "digits_mlp.onnx", rows=4, cols=4, dataflow="os", batch=8)


@pytest.fixture(scope="module")
def os_inputs(example_dir: Path) -> np.ndarray:
    return np.load(example_dir / "test_x.npy")[:10]


@pytest.fixture(scope="module")
def ws_design() -> hwgen.Design:
    """A random 10 → 5 quantized MLP on a 2×3 weight-stationary array: K and N both leave padding lanes."""
    return hwgen.compile(hwgen.Model(mlp(k=10, n=5, seed=3)), rows=2, cols=3, dataflow="ws", batch=4)


def check_stream_relation(report: dict) -> None:
    """io_cycles (first s_axis → last m_axis transfer, both included) lies inside start → done."""
    assert report["backend"] == "cocotb" and report["io"] == "streamed"
    assert 0 < report["io_cycles"] <= report["cycles"] - IO_OUTSIDE_CYCLES
    assert set(report) == NATIVE_REPORT_KEYS | {"backend", "io_cycles", "backpressure", "seed"}


def golden_codes(design: hwgen.Design, x: np.ndarray) -> np.ndarray:
    return design.model.run_codes(x)


@pytest.mark.parametrize("seed", [1, 2])
def test_os_bit_exact_under_random_backpressure(os_design: hwgen.Design, os_inputs: np.ndarray, seed: int) -> None:
    result = os_design.simulate(os_inputs, backend="cocotb", backpressure=0.4, seed=seed)
    report = result.report
    assert report["bit_exact"] and report["mismatches"] == 0
    assert np.array_equal(result.codes.reshape(len(os_inputs), -1),
                          golden_codes(os_design, os_inputs).reshape(len(os_inputs), -1))
    assert report["cycles"] > report["predicted_cycles"] == os_design.predicted_cycles(10, stream=True)
    check_stream_relation(report)
    assert report["backpressure"] == 0.4 and report["seed"] == seed


def test_os_exact_cycles_without_backpressure(os_design: hwgen.Design, os_inputs: np.ndarray) -> None:
    report = os_design.simulate(os_inputs, backend="cocotb", backpressure=0).report
    assert report["bit_exact"]
    assert report["cycles"] == report["predicted_cycles"]
    assert report["io_cycles"] == report["cycles"] - IO_OUTSIDE_CYCLES
    check_stream_relation(report)


def test_ws_bit_exact_under_random_backpressure(ws_design: hwgen.Design) -> None:
    x = np.random.default_rng(5).normal(scale=2.0, size=(9, 10)).astype(np.float32)  # chunks of 4, 4, 1
    result = ws_design.simulate(x, backend="cocotb", backpressure=0.3, seed=7)
    report = result.report
    assert report["bit_exact"], report
    assert np.array_equal(result.outputs, ws_design.model.run(x))
    assert report["cycles"] > report["predicted_cycles"]
    check_stream_relation(report)
    exact = ws_design.simulate(x, backend="cocotb", backpressure=0).report
    assert exact["bit_exact"] and exact["cycles"] == exact["predicted_cycles"]
    assert exact["io_cycles"] == exact["cycles"] - IO_OUTSIDE_CYCLES


def test_scoreboard_reports_a_wrong_beat(ws_design: hwgen.Design) -> None:
    """The checker compares every m_axis beat as it arrives: one flipped result bit, one wrong tlast."""
    x = np.random.default_rng(6).normal(scale=2.0, size=(3, 10)).astype(np.float32)
    program = ws_design.program
    codes_in, expected = ws_design._golden_codes(x)
    beats, last = ws_design._input_beats(codes_in)
    y_beats, y_last, y_mask = ws_design._expected_beats(expected)
    y_beats[2] ^= 1 << ws_design.config.acc_bits  # lane 1, bit 0 (a result lane: N = 5 > 3 + 1)
    y_last[4] ^= 1
    build_dir = cocotb_backend.build(ws_design.verilog, TOP_NAME)
    result = cocotb_backend.run(build_dir, TOP_NAME, ws_design._static_rows() + program.program_rows(3, True),
                                x=beats, x_last=last, expected=y_beats, expected_last=y_last, expected_mask=y_mask,
                                max_cycles=100_000, backpressure=0.2, seed=3)
    assert (result.beat_mismatches, result.tlast_errors) == (1, 1)
    assert result.errors[0].startswith(f"m_axis beat 2 at cycle {result.y_cycles[2]}: tdata ")
    assert result.errors[1] == f"m_axis beat 4 at cycle {result.y_cycles[4]}: tlast 0, expected 1"
    assert len(result.y) == len(y_beats) and list(np.diff(result.y_cycles) > 0) == [True] * (len(y_beats) - 1)
    assert list(result.y_last) == [0, 1] * 3 and result.extra["frames_consistent"]


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def test_cli_cocotb_backend(os_design: hwgen.Design, os_inputs: np.ndarray, tmp_path: Path) -> None:
    design_dir = os_design.write(tmp_path / "design")
    x = tmp_path / "x.npy"
    np.save(x, os_inputs)
    golden_y = tmp_path / "golden.npy"
    sim_y = tmp_path / "sim.npy"
    assert run("golden", design_dir / "model.onnx", "--inputs", x, "--output", golden_y).returncode == 0
    result = run("simulate", design_dir, "--inputs", x, "--output", sim_y, "--backend", "cocotb",
                 "--backpressure", 0.3, "--seed", 4)
    assert result.returncode == 0, result.stderr
    assert np.load(sim_y).tobytes() == np.load(golden_y).tobytes()
    report = json.loads((design_dir / "sim_report.json").read_text())
    assert report["bit_exact"] and report["seed"] == 4
    check_stream_relation(report)
    assert "bit-exact" in result.stdout and f"io_cycles {report['io_cycles']}" in result.stdout


def test_bad_backend_arguments(os_design: hwgen.Design, os_inputs: np.ndarray) -> None:
    with pytest.raises(hwgen.HwgenError, match="unknown simulation backend 'icarus'; available: native, cocotb"):
        os_design.simulate(os_inputs, backend="icarus")
    with pytest.raises(hwgen.HwgenError, match="the cocotb backend always streams"):
        os_design.simulate(os_inputs, backend="cocotb", stream=False)
    with pytest.raises(hwgen.HwgenError, match=r"backpressure must be a probability in \[0, 1\), got 1.0"):
        os_design.simulate(os_inputs, backend="cocotb", backpressure=1.0)


def test_cache_entry_keyed_by_where_cocotb_libraries_load_from(monkeypatch) -> None:
    """A cocotb build loads libcocotbvpi_verilator.so from its environment's cocotb at run time (RUNPATH): a build
    made by another (since deleted) virtual environment must not be found in the cache."""
    import cocotb_tools.config

    here = cocotb_backend.cache_entry("module m; endmodule", "m")
    monkeypatch.setattr(cocotb_tools.config, "libs_dir", Path("/elsewhere/.venv/site-packages/cocotb/libs"))
    assert cocotb_backend.cache_entry("module m; endmodule", "m") != here
