"""Simulation speed: the native Verilator harness vs the cocotb backend on a 16×16 array, measured in one run.

Workload: a random quantized MLP 784-256-256-10 (8-bit input, 4-bit weights and activations; built with
``tests/onnx_helpers.py``) on a 16×16 output-stationary array, ``--samples`` samples streamed through
``s_axis``/``m_axis`` in one start → done (≈ 1.3 M cycles at the default 1024). Both backends run the same design,
loads and inputs and must be bit-exact; the cocotb run has no backpressure, so both take exactly
``predicted_cycles``.

Speed is start → done clock cycles over their wall time (``report["sim_cycles_per_second"]``; loading weights and
parsing excluded, the same definition for both). The "end to end" column divides every simulated cycle (reset and
loads included) by the whole simulator process's wall time. Targets of issue 5: ≥ 1,000,000 cycles/s native
(optimized build, no tracing) and ≥ 8× the cocotb backend.

Bound, measured in the same run: the same R×C grid written by hand (``hand_array.v``: ``hand_pe_os`` of
``hand_mac.v``, the PE's whole job and nothing around it) at the design's operand/weight/accumulator widths,
Verilated with the same flags and clocked the same way (``hand_array.cpp``). It shows what Verilator can do with
the array alone on this machine; "native / hand" is the design's speed relative to it.
Usage: ``.venv/bin/python benchmarks/sim_speed.py [--samples N] [--cocotb-samples N] [--dataflow os|ws]``
(the first run builds both simulators: minutes on a small machine; later runs reuse ``~/.cache/hwgen``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import hwgen  # noqa: E402
from onnx_helpers import QONNX, const, quant  # noqa: E402

WIDTHS = (784, 256, 256, 10)
ROWS = COLS = 16


def random_mlp(widths: tuple[int, ...] = WIDTHS, seed: int = 0):
    """x → Quant(8 b) → [Gemm(4-bit W) → Relu → Quant(4 b, unsigned)]… → Gemm (accumulators out)."""
    rng = np.random.default_rng(seed)
    inits = [const("s_in", 0.02), const("zp", 0.0), const("b8", 8.0), const("b4", 4.0), const("s_w", 0.1),
             const("s_h", 0.5)]
    nodes = [quant("quant_in", "x", "h0", "s_in", "zp", "b8")]
    layers = len(widths) - 1
    for i, (k, n) in enumerate(zip(widths, widths[1:])):
        inits += [const(f"w{i}", rng.normal(scale=0.3, size=(n, k))), const(f"bias{i}", rng.normal(size=n))]
        nodes += [quant(f"quant_w{i}", f"w{i}", f"w{i}q", "s_w", "zp", "b4", narrow=1),
                  helper.make_node("Gemm", [f"h{i}", f"w{i}q", f"bias{i}"], [f"a{i}" if i < layers - 1 else "y"],
                                   name=f"fc{i}", transB=1)]
        if i < layers - 1:
            nodes += [helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
                      quant(f"quant_h{i + 1}", f"r{i}", f"h{i + 1}", "s_h", "zp", "b4", signed=0)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, widths[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, widths[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QONNX, 1)])


def hand_array_speed(cfg, cycles: int) -> float:
    """Cycles/s of the bound: the hand-written R×C grid of ``hand_pe_os`` (``hand_array.v``, ``hand_array.cpp``)
    at the design's widths, Verilated with the harness builds' flags (``hwgen.verilator``), two evals per clock."""
    from hwgen import verilator
    top = "hand_array_os"
    flags = verilator._build_flags(top, None, None)
    params = {"R": cfg.rows, "C": cfg.cols, "A": cfg.operand_bits, "W": cfg.w_bits, "ACC": cfg.acc_bits}
    defines = {"ROWS": cfg.rows, "COLS": cfg.cols, "A_BITS": cfg.operand_bits, "W_BITS": cfg.w_bits}
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="hwgen-hand-array-") as scratch:
        command = [str(Path(verilator.environment()["VERILATOR_ROOT"]) / "bin" / "verilator"), *flags,
                   *(f"-G{name}={value}" for name, value in params.items()),
                   *(part for name, value in defines.items() for part in ("-CFLAGS", f"-D{name}={value}")),
                   "--Mdir", scratch, "--build-jobs", str(os.cpu_count() or 1),
                   str(here / "hand_mac.v"), str(here / "hand_array.v"), str(here / "hand_array.cpp")]
        subprocess.run(command, env=verilator.environment(), capture_output=True, text=True, check=True)
        out = subprocess.run([str(Path(scratch) / "harness"), str(cycles), str(cfg.k_max)], capture_output=True,
                             text=True, check=True).stdout.split()
    return int(out[0]) / float(out[1])


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024, help="samples of the native run (default 1024)")
    parser.add_argument("--cocotb-samples", type=int, default=None,
                        help="samples of the cocotb run (default: the same as --samples)")
    parser.add_argument("--dataflow", choices=("os", "ws"), default="os")
    parser.add_argument("--bound-cycles", type=int, default=1_000_000, help="clock cycles of the hand-array bound")
    parser.add_argument("--batch", type=int, default=64, help="samples per scratchpad chunk")
    args = parser.parse_args()
    cocotb_samples = args.cocotb_samples or args.samples

    design, compile_seconds = timed(lambda: hwgen.compile(hwgen.Model(random_mlp()), rows=ROWS, cols=COLS,
                                                          dataflow=args.dataflow, batch=args.batch))
    x = np.random.default_rng(1).uniform(0, 2.5, size=(max(args.samples, cocotb_samples), WIDTHS[0]))
    x = x.astype(np.float32)
    print(f"MLP {'-'.join(map(str, WIDTHS))} on {ROWS}×{COLS} {args.dataflow}, batch {design.program.batch}; "
          f"compiled in {compile_seconds:.1f} s; {len(design.program.weights)} weight load rows")

    from hwgen import cocotb_backend, verilator
    from hwgen.design import TOP_NAME

    _, native_build = timed(lambda: verilator.build(design.verilog, TOP_NAME))
    _, cocotb_build = timed(lambda: cocotb_backend.build(design.verilog, TOP_NAME))
    native = design.simulate(x[:args.samples], stream=True).report
    cocotb = design.simulate(x[:cocotb_samples], backend="cocotb", backpressure=0).report

    rows = [("native", native, native_build), ("cocotb", cocotb, cocotb_build)]
    print(f"\n{'backend':8s} {'samples':>8s} {'cycles':>10s} {'exact':>6s} {'run s':>8s} {'cycles/s':>12s} "
          f"{'end to end':>12s} {'build s':>8s}")
    for name, report, build in rows:
        exact = "yes" if report["bit_exact"] and report["cycles"] == report["predicted_cycles"] else "NO"
        end_to_end = report["sim_cycles"] / report["sim_seconds"]
        print(f"{name:8s} {report['samples']:8d} {report['cycles']:10d} {exact:>6s} {report['run_seconds']:8.3f} "
              f"{report['sim_cycles_per_second']:12,.0f} {end_to_end:12,.0f} {build:8.1f}")
    bound = hand_array_speed(design.config, args.bound_cycles)
    print(f"{'hand':8s} {'':8s} {args.bound_cycles:10d} {'':>6s} {args.bound_cycles / bound:8.3f} {bound:12,.0f}"
          f"   (bound: the bare {ROWS}×{COLS} grid of hand-written PEs, benchmarks/hand_array.v)")
    ratio = native["sim_cycles_per_second"] / cocotb["sim_cycles_per_second"]
    print(f"\nnative / cocotb: {ratio:,.1f}× (target ≥ 8×); native {native['sim_cycles_per_second']:,.0f} cycles/s "
          f"(target ≥ 1,000,000): {'met' if native['sim_cycles_per_second'] >= 1e6 else 'NOT met'}")
    print(f"native / hand-written bare array: {native['sim_cycles_per_second'] / bound:.2f} (the design's scratchpads, "
          f"controller, requantizer and streams included)")
    print(f"cocotb io_cycles {cocotb['io_cycles']} (first s_axis → last m_axis transfer) of {cocotb['cycles']} "
          f"start → done cycles")


if __name__ == "__main__":
    main()
