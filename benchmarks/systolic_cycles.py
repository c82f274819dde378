"""Systolic-array cycles and utilization on the GEMMs of issue 5, against SCALE-Sim's published fold formulas.

Our cycles come from ``Program.predict_cycles``, the analytic model the test suite proves equal to the RTL cycle
counter (Amaranth and Verilator, both dataflows). ``--rtl`` also simulates each case in Verilator and checks that
equality here too (one build per array shape and dataflow; slower). SCALE-Sim's compute cycles follow its fold
formulas (OS: ⌈M/R⌉·⌈N/C⌉·(K+R+C−2) − 1; WS: ⌈K/R⌉·⌈N/C⌉·(2R+C+M−2) − 1); running SCALE-Sim itself is issue 5.
Usage: ``.venv/bin/python benchmarks/systolic_cycles.py [--rtl]``.
"""
from __future__ import annotations

import argparse
from math import ceil

import numpy as np

from hwgen import verilator
from hwgen.arch.systolic.compile import GemmLayer, compile_layers, default_config, run_layers
from hwgen.design import TOP_NAME, render_verilog

CASES = [(64, 64, 64, 8, 8, "os"), (64, 64, 64, 8, 8, "ws"), (128, 256, 64, 8, 8, "os"),
         (128, 256, 64, 16, 16, "os"), (128, 256, 64, 32, 32, "os"), (256, 256, 256, 16, 16, "os"),
         (256, 256, 256, 16, 16, "ws")]


def scalesim_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    if dataflow == "os":
        return ceil(m / rows) * ceil(n / cols) * (k + rows + cols - 2) - 1
    return ceil(k / rows) * ceil(n / cols) * (2 * rows + cols + m - 2) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtl", action="store_true", help="also simulate every case in Verilator")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'M×N×K':>12} {'array':>6} {'df':>3} {'hwgen cycles':>13} {'SCALE-Sim':>10} {'ratio':>6} "
          f"{'util':>6}{'  RTL':>8}")
    for m, n, k, rows, cols, dataflow in CASES:
        weight = rng.integers(-8, 8, size=(k, n))
        bound = int(np.abs(weight).sum(axis=0).max()) * 255
        layer = GemmLayer("gemm", weight, 0, None, None, 0, 1, (-bound, bound), 9, (2 * bound).bit_length() + 1,
                          None, ("x",), (k,), "y")
        cfg = default_config([layer], rows=rows, cols=cols, dataflow=dataflow, batch=m)
        program = compile_layers([layer], cfg)
        ours = program.predict_cycles(m)
        theirs = scalesim_cycles(m, n, k, rows, cols, dataflow)
        util = m * n * k / (rows * cols * ours)
        rtl = ""
        if args.rtl:
            codes = rng.integers(0, 256, size=(m, k))
            binary = verilator.build(render_verilog(cfg), TOP_NAME)
            loads = program.weights + program.program_rows(m) + program.input_rows(codes)
            result = verilator.run(binary, loads, program.output_reads(m), max_cycles=10 * ours)
            exact = np.array_equal(result.values.view(np.int32).reshape(m, n), run_layers([layer], codes))
            rtl = "exact" if exact and result.cycles == ours else f"MISMATCH ({result.cycles})"
        print(f"{f'{m}×{n}×{k}':>12} {f'{rows}×{cols}':>6} {dataflow:>3} {ours:13d} {theirs:10d} "
              f"{ours / theirs:6.3f} {util:6.1%}{rtl:>8}")


if __name__ == "__main__":
    main()
