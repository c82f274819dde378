"""The AXI wrapper in simulation: cocotb + cocotbext-axi drive ``<top>_axi`` through its AXI ports only.

``hwgen simulate OUT/ --backend axi`` and ``design.simulate(x, backend="axi")`` come here::

    load rows ──LOAD_SELECT/LOAD_ADDR/LOAD_DATA writes──▶ s_axil ┐
    CONTROL (START) ─────────────────────────────────────▶ s_axil ├─▶ <top>_axi ─▶ m_axis ─▶ AxiStreamSink
    AxiStreamSource (random tvalid) ─────────────────────▶ s_axis ┘      │ irq          (random tready)
    registers read back: CYCLES, IN_BEATS, OUT_BEATS, STATUS ◀── s_axil ◀┘

The testbench is ``sim/cocotb/tb_axi.py`` (its docstring has the run format); the Verilator build is cocotb's,
cached like :func:`hwgen.cocotb_backend.build`, of the wrapper plus the core's files exactly as ``hwgen compile``
writes them (:func:`hwgen.integration.integration_files`). A systolic run loads weights, thresholds and the streamed
program, starts with the interrupt enabled and ends when ``irq`` rises; a dataflow run loads weights, thresholds
and zero points, starts, and ends with the last expected ``m_axis`` beat. Every output beat is compared with the
golden model (result lanes, tlast, and the padding bits, which must be 0).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from . import __version__, cocotb_backend, verilator
from .design import SCHEMA_VERSION, SimResult, check_codes, golden_codes
from .errors import HwgenError
from .integration import (
    core_sources,
    core_stream_bits,
    design_top,
    integration_files,
    registers,
)

TESTBENCH = "tb_axi"
CONTROL_START, CONTROL_SOFT_RESET, CONTROL_IRQ_ENABLE = 1, 2, 4


def build(design) -> tuple:
    """The cocotb Verilator build of ``design``'s AXI wrapper (and core): (build folder, wrapper module name)."""
    top = design_top(design)
    wrapper = f"{top}_axi"
    files = integration_files(design)
    return cocotb_backend.build(files[f"rtl/{wrapper}.v"] + core_sources(files, top), wrapper), wrapper


def offsets(design) -> dict[str, int]:
    """Register name → byte offset of ``design``'s wrapper."""
    return {reg.name: reg.offset for reg in registers(design)}


def load_ops(design, rows: Sequence[Sequence[int]]) -> list[list[int | str]]:
    """AXI4-Lite writes loading ``rows`` (``target bank addr lane value``): LOAD_SELECT and LOAD_ADDR when they
    change, LOAD_DATA for every row."""
    regs = {reg.name: reg for reg in registers(design)}
    select_lsb = {field.name: field.lsb for field in regs["LOAD_SELECT"].fields}
    ops: list[list[int | str]] = []
    select = address = None
    for target, bank, addr, lane, value in rows:
        word = target << select_lsb["TARGET"] | bank << select_lsb["BANK"] | lane << select_lsb["LANE"]
        if word != select:
            ops.append(["w", regs["LOAD_SELECT"].offset, word])
            select = word
        if addr != address:
            ops.append(["w", regs["LOAD_ADDR"].offset, addr])
            address = addr
        ops.append(["w", regs["LOAD_DATA"].offset, int(value) & 0xFFFFFFFF])
    return ops


def _stimulus(design, x: np.ndarray):
    """(load rows, s_axis beats, tlast, expected m_axis beats, their tlast, their result masks, expected codes)."""
    samples = len(x)
    if design.arch == "dataflow":
        from .design import read_rows

        program = design.program
        codes_in, expected = golden_codes(design.model, x)
        beats, last = program.pack_inputs(codes_in)
        y_beats = program.pack_outputs(expected)
        out_beats = design.config.out_beats
        y_last = [int((i + 1) % out_beats == 0) for i in range(len(y_beats))]
        mask = (1 << (design.config.out_lanes * design.config.out_type.bits)) - 1
        loads = read_rows(design.images) if design.images else program.load_rows
        return loads, beats, [int(b) for b in last], y_beats, y_last, [mask] * len(y_beats), expected
    codes_in, expected = design._golden_codes(x)
    beats, last = design._input_beats(codes_in)
    y_beats, y_last, y_mask = design._expected_beats(expected)
    loads = design._static_rows() + design.program.program_rows(samples, stream=True)
    return loads, beats, last, y_beats, y_last, y_mask, expected


def simulate(design, x: np.ndarray, *, backpressure: float = 0.25, seed: int = 0, max_cycles: int | None = None,
             setup: Sequence[list] = (), after: Sequence[list] = ()) -> SimResult:
    """Run ``x`` (N, *input_shape[1:]) through the AXI wrapper; outputs, codes and the report.

    ``backpressure``: probability per cycle that the ``s_axis`` source withholds tvalid, and that the ``m_axis``
    sink withholds tready (0: none; ``seed`` makes it reproducible). ``setup`` / ``after``: extra register
    operations (``["r", offset]``, ``["w", offset, value]``, ``["irq"]``) after reset / after the run, recorded as
    ``[resp, data]`` in ``report["setup_ops"]`` / ``report["after_ops"]``. The report's ``cycles`` is the
    CYCLES register at the end (systolic: start → done) or, for the dataflow pipeline, the cycles from the first
    input to the last output transfer; both equal ``predicted_cycles`` without backpressure.
    """
    x = np.asarray(x, np.float32)
    if x.ndim == 0 or len(x) == 0:
        raise HwgenError("simulate needs at least one sample (inputs of shape (N, ...) with N ≥ 1)")
    if not 0 <= backpressure < 1:
        raise HwgenError(f"backpressure must be a probability in [0, 1), got {backpressure}")
    samples = len(x)
    reg = offsets(design)
    loads, beats, last, y_beats, y_last, y_mask, expected = _stimulus(design, x)
    started = time.perf_counter()
    build_dir, wrapper = build(design)
    build_seconds = time.perf_counter() - started
    predicted = design.predicted_cycles(samples, stream=True)
    systolic = design.arch == "systolic"
    readback = [["r", reg[name]] for name in ("CYCLES", "IN_BEATS", "OUT_BEATS", "STATUS")] + [["irq"]]
    run = {"start": [["w", reg["CONTROL"], CONTROL_START | (CONTROL_IRQ_ENABLE if systolic else 0)]],
           "x": "x.txt", "y_beats": len(y_beats), "wait": "irq" if systolic else "beats",
           "backpressure": backpressure, "seed": seed, "after": readback + list(after)}
    limit = max_cycles or int(4 * (predicted + len(beats) + len(y_beats)) / (1 - backpressure) ** 2) + 1000
    description = {"setup": [*setup, *load_ops(design, loads)], "runs": [run], "max_cycles": limit}
    result, failure, seconds, tail = cocotb_backend.run_testbench(
        build_dir, wrapper, TESTBENCH, description, {"x.txt": cocotb_backend._beat_lines(beats, last)}, seed)
    record = result["runs"][0] if result["runs"] else {"status": "not run"}
    if record["status"] != "done":
        raise verilator.CycleLimitError(f"the AXI wrapper run did not finish within {limit} clock cycles "
                                        f"(status {record['status']}):\n{tail}", verilator.EXIT_CYCLE_LIMIT)
    if failure is not None:
        raise verilator.SimulationError(f"the AXI testbench failed ({failure}):\n{tail}", 1)
    setup_ops = result["setup"][:len(setup)]
    load_errors = sum(resp != 0 for resp, _ in result["setup"][len(setup):]) + record["start"][0][0]
    y = [int(beat, 16) for beat in record["y"]]
    m_bits = core_stream_bits(design)[1]
    beat_mismatches = sum(bool((got ^ want) & mask) for got, want, mask in zip(y, y_beats, y_mask))
    padding_errors = sum(got >> m_bits != 0 for got in y)
    tlast_errors = sum(got != want for got, want in zip(record["y_last"], y_last))
    codes = design.program.output_codes(y, samples) if systolic else design.program.unpack_outputs(y)
    outputs, codes, mismatches = check_codes(design.model, codes, expected)
    after_ops = record["after"]
    registers_after = {name: after_ops[index][1] for index, name in
                       enumerate(("CYCLES", "IN_BEATS", "OUT_BEATS", "STATUS", "irq"))}
    io_cycles = record["y_cycles"][-1] - record["x_cycles"][0]
    report = {
        "schema_version": SCHEMA_VERSION, "hwgen_version": __version__, "arch": design.arch, "backend": "axi",
        "samples": samples, "io": "streamed", "cycles": registers_after["CYCLES"] if systolic else io_cycles,
        "predicted_cycles": predicted, "io_cycles": io_cycles,
        "bit_exact": mismatches + beat_mismatches + tlast_errors + padding_errors + load_errors == 0,
        "mismatches": mismatches, "beat_mismatches": beat_mismatches, "tlast_errors": tlast_errors,
        "padding_errors": padding_errors, "load_errors": load_errors, "load_writes": len(description["setup"]),
        "registers": registers_after, "setup_ops": setup_ops, "after_ops": after_ops[len(readback):],
        "backpressure": backpressure, "seed": seed, "sim_seconds": round(seconds, 6),
        "build_seconds": round(build_seconds, 6), "sim_cycles_per_second": None,
        "verilog_sha256": design.verilog_sha256,
    }
    return SimResult(outputs, codes, report)


__all__ = ["build", "load_ops", "offsets", "simulate"]
