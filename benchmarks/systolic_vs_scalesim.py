"""hwgen's systolic arrays against SCALE-Sim v3 on the GEMMs of issue 5: cycles, ratio and utilization in one run.

For every case (M×N×K GEMM on an R×C array, dataflow os or ws) this runs

- **SCALE-Sim v3** (``pip install scalesim``) in its own virtual environment, created on first use in
  ``$HWGEN_CACHE/scalesim-venv`` (default ``~/.cache/hwgen/scalesim-venv``; SCALE-Sim needs numpy < 2.4, so it
  stays out of hwgen's venv). Each case is one GEMM-mode run (``input_type_gemm``, topology row
  ``name, M, N, K,``) with ArrayHeight = R, ArrayWidth = C, Dataflow os|ws, 64 MiB per SRAM (far more than any
  operand here, so no stalls), InterfaceBandwidth CALC and no traces. Its compute cycles are read from
  ``COMPUTE_REPORT.csv``: "Total Cycles" minus "Stall Cycles" (the "incl. prefetch" column adds the DRAM fill and
  is not compute), and its utilization is "Overall Util %" (= M·N·K / (R·C·cycles)). The script checks that they
  equal SCALE-Sim's fold formulas, which serialize the folds:
  OS ⌈M/R⌉·⌈N/C⌉·(K+R+C−2) − 1, WS ⌈K/R⌉·⌈N/C⌉·(2R+C+M−2) − 1.
- **hwgen** on the same GEMM: one integer ``GemmLayer`` with passthrough output (no thresholds), K inputs, N
  outputs, M samples preloaded (``batch = M``), 8-bit unsigned input codes and weights in [−8, 8) (accumulators
  ≤ 22 bits, under SystolicConfig's 30); ``default_config(rows=R, cols=C, dataflow, batch=M)``,
  ``compile_layers`` and ``Program.predict_cycles(M)``: the exact start → done cycles of the run (program fetch,
  every fold, the drain through the output lanes), which the test suite proves equal to the RTL's cycle counter.
  ``--rtl`` also runs every case in Verilator and checks the outputs bit-exact and the measured cycles equal to
  the prediction.

Dimension mapping. SCALE-Sim's GEMM mode reads ``M, N, K`` and builds the convolution ifmap M×K (M output pixels,
window K), filter K×N (N filters) and ofmap M×N (``topology_utils.load_arrays_gemm``): C[M×N] = A[M×K]·B[K×N],
the same as hwgen's layer, where M is the batch of samples, K the layer's inputs and N its outputs. Both map the
array the same way: OS puts M on the rows and N on the columns and streams K (SCALE-Sim ``Sr = M, Sc = N,
T = K``; hwgen row i ← sample m_tile·R + i, column j ← output n_tile·C + j); WS holds a K×N weight tile (rows ↔ K,
columns ↔ N) and streams the M samples (SCALE-Sim ``Sr = K, Sc = N, T = M``).

Convolutions (issue 7, ``--conv``): SCALE-Sim's convolution topology (``Layer name, IFMAP Height, IFMAP Width,
Filter Height, Filter Width, Channels, Num Filter, Strides,``; no padding) against hwgen's conv layers with implicit
im2col (``Conv`` geometry on a GemmLayer; the input image preloaded as exactly C·H·W codes), on both dataflows:
the two layers of the issue (32×32×3 * 3×3×16, 16×16×16 * 3×3×32) and a VGG-style 32×32 stack of unpadded 3×3
convs (3→32→32→64→64 channels). SCALE-Sim's conv compute is its GEMM with M = output pixels, K = kh·kw·C, N =
filters (the fold formulas above). ``--rtl`` runs every layer in Verilator on one configuration per dataflow (the
field-wise largest of the layers' smallest ones: one build each) and checks outputs and cycles. Target (issue 7):
ours / SCALE-Sim ≤ 1.0 on every layer.

Targets (issue 5): ours / SCALE-Sim ≤ 1.0 on every case, and ≥ 94% utilization on 256³ 16×16 for both dataflows.
Usage: ``.venv/bin/python benchmarks/systolic_vs_scalesim.py [--quick] [--rtl]``.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from math import ceil
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hwgen import verilator
from hwgen.arch.systolic.compile import (
    Conv,
    GemmLayer,
    compile_layers,
    default_config,
    run_layers,
)
from hwgen.arch.systolic.config import SystolicConfig
from hwgen.design import TOP_NAME, render_verilog

SCALESIM = "scalesim==3.0.0"          # the version whose source the mapping above was checked against
NUMPY = "numpy<2.4"
SRAM_KB = 64 * 1024                    # per SRAM; the largest operand here is 256·256 one-byte words = 64 kB


@dataclass(frozen=True)
class Case:
    m: int
    n: int
    k: int
    rows: int
    cols: int
    dataflow: str

    @property
    def gemm(self) -> str:
        return f"{self.m}×{self.n}×{self.k}"

    @property
    def array(self) -> str:
        return f"{self.rows}×{self.cols}"

    @property
    def name(self) -> str:
        return f"{self.gemm} on {self.array} {self.dataflow}"

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k


CASES = [Case(64, 64, 64, 8, 8, "os"), Case(64, 64, 64, 8, 8, "ws"), Case(128, 256, 64, 8, 8, "os"),
         Case(128, 256, 64, 16, 16, "os"), Case(128, 256, 64, 32, 32, "os"), Case(256, 256, 256, 16, 16, "os"),
         Case(256, 256, 256, 16, 16, "ws")]
QUICK = [CASES[0], CASES[1], CASES[3]]
UTIL_TARGET = {CASES[5]: 0.94, CASES[6]: 0.94}

# Runs inside SCALE-Sim's venv: one GEMM-mode simulation, reports only (the CLI `python -m scalesim.scale` always
# saves the SRAM/DRAM traces, whatever its -s flag says).
DRIVER = """
import sys
from scalesim.scale_sim import scalesim
config, topology, layout, out = sys.argv[1:]
sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology, layout=layout,
               input_type_gemm=True)
sim.run_scale(top_path=out)
"""

CONFIG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {sram}
FilterSramSzkB: {sram}
OfmapSramSzkB: {sram}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {dataflow}
MemoryBanks: 1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def scalesim_formula(case: Case) -> int:
    """SCALE-Sim's compute cycles: folds run one after another, each with its full fill and drain."""
    m, n, k, r, c = case.m, case.n, case.k, case.rows, case.cols
    if case.dataflow == "os":
        return ceil(m / r) * ceil(n / c) * (k + r + c - 2) - 1
    return ceil(k / r) * ceil(n / c) * (2 * r + c + m - 2) - 1


def scalesim_python() -> Path:
    """SCALE-Sim's own venv, created and installed on first use."""
    venv = Path(os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen") / "scalesim-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import scalesim.scale_sim"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    print(f"installing {SCALESIM} into {venv} (first use) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", SCALESIM, NUMPY],
                             capture_output=True, text=True, check=False)
    if install.returncode or subprocess.run(probe, capture_output=True, check=False).returncode:
        sys.exit(f"pip install {SCALESIM} {NUMPY!r} failed:\n{install.stdout}{install.stderr}")
    return python


@dataclass
class ScaleSimResult:
    compute_cycles: int
    stall_cycles: int
    util: float          # fraction
    seconds: float


def _scalesim(python: Path, case, work: Path, name: str, topology_text: str, gemm: bool) -> ScaleSimResult:
    """One SCALE-Sim run of a one-layer topology (``topology_text``, GEMM or conv) on ``case``'s array."""
    folder = work / name
    folder.mkdir()
    config, topology, layout = folder / "scale.cfg", folder / "topology.csv", folder / "layout.csv"
    config.write_text(CONFIG.format(name=name, rows=case.rows, cols=case.cols, sram=SRAM_KB,
                                    dataflow=case.dataflow))
    topology.write_text(topology_text)
    layout.write_text("Layer,\n")           # required file; unused with custom layouts off
    driver = DRIVER if gemm else DRIVER.replace("input_type_gemm=True", "input_type_gemm=False")
    start = time.perf_counter()
    run = subprocess.run([str(python), "-c", driver, str(config), str(topology), str(layout), str(folder / "out")],
                         capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    report = folder / "out" / name / "COMPUTE_REPORT.csv"
    if run.returncode or not report.exists():
        raise RuntimeError(f"SCALE-Sim failed on {case.name}:\n{run.stdout}{run.stderr}")
    with report.open() as f:
        row = {key.strip(): value.strip() for key, value in next(csv.DictReader(f)).items() if key}
    total, stalls = int(row["Total Cycles"]), int(row["Stall Cycles"])
    return ScaleSimResult(total - stalls, stalls, float(row["Overall Util %"]) / 100, seconds)


def run_scalesim(python: Path, case: Case, work: Path) -> ScaleSimResult:
    name = f"gemm_{case.m}x{case.n}x{case.k}_{case.rows}x{case.cols}_{case.dataflow}"
    # GEMM topology: the parser drops the field after the last comma, so every row ends with one.
    return _scalesim(python, case, work, name, f"Layer, M, N, K,\n{name}, {case.m}, {case.n}, {case.k},\n", True)


def gemm_layer(case: Case, rng: np.random.Generator) -> GemmLayer:
    weight = rng.integers(-8, 8, size=(case.k, case.n))
    bound = int(np.abs(weight).sum(axis=0).max()) * 255
    return GemmLayer("gemm", weight, 0, None, None, 0, 1, (-bound, bound), 9, (2 * bound).bit_length() + 1, None,
                     ("x",), (case.k,), "y")


def run_hwgen(case: Case, rng: np.random.Generator, rtl: bool) -> tuple[int, str]:
    """Predicted cycles and, with ``rtl``, the Verilator check: 'exact' or what went wrong."""
    layer = gemm_layer(case, rng)
    cfg = default_config([layer], rows=case.rows, cols=case.cols, dataflow=case.dataflow, batch=case.m)
    program = compile_layers([layer], cfg)
    cycles = program.predict_cycles(case.m)
    if not rtl:
        return cycles, ""
    codes = rng.integers(0, 256, size=(case.m, case.k))
    binary = verilator.build(render_verilog(cfg), TOP_NAME)
    loads = program.weights + program.program_rows(case.m) + program.input_rows(codes)
    result = verilator.run(binary, loads, program.output_reads(case.m), max_cycles=10 * cycles)
    exact = np.array_equal(result.values.view(np.int32).reshape(case.m, case.n), run_layers([layer], codes))
    if not exact:
        return cycles, "WRONG VALUES"
    return cycles, "= predicted" if result.cycles == cycles else f"MISMATCH {result.cycles}"


@dataclass(frozen=True)
class ConvCase:
    h: int
    w: int
    c: int
    kernel: int
    filters: int
    rows: int
    cols: int
    dataflow: str

    @property
    def out(self) -> tuple[int, int]:
        return self.h - self.kernel + 1, self.w - self.kernel + 1

    @property
    def name(self) -> str:
        return f"{self.h}×{self.w}×{self.c} * {self.kernel}×{self.kernel}×{self.filters}"

    @property
    def macs(self) -> int:
        oh, ow = self.out
        return oh * ow * self.kernel ** 2 * self.c * self.filters

    def gemm(self) -> Case:
        oh, ow = self.out
        return Case(oh * ow, self.filters, self.kernel ** 2 * self.c, self.rows, self.cols, self.dataflow)


# issue 7: its two single layers and a VGG-style 32×32 stack (unpadded 3×3 convs, as SCALE-Sim's conv mode has no
# padding), each on both dataflows
CONV_LAYERS = [("issue", 32, 32, 3, 3, 16), ("issue", 16, 16, 16, 3, 32), ("VGG 1", 32, 32, 3, 3, 32),
               ("VGG 2", 30, 30, 32, 3, 32), ("VGG 3", 28, 28, 32, 3, 64), ("VGG 4", 26, 26, 64, 3, 64)]
CONV_CASES = [ConvCase(*layer[1:], 8, 8, dataflow) for dataflow in ("os", "ws") for layer in CONV_LAYERS]
CONV_LABELS = {case: layer[0] for case, layer in zip(CONV_CASES, CONV_LAYERS * 2)}


def run_scalesim_conv(python: Path, case: ConvCase, work: Path) -> ScaleSimResult:
    name = f"conv_{case.h}x{case.w}x{case.c}_{case.kernel}x{case.filters}_{case.rows}x{case.cols}_{case.dataflow}"
    return _scalesim(python, case, work, name,
                     "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                     f"Strides,\n{name}, {case.h}, {case.w}, {case.kernel}, {case.kernel}, {case.c}, "
                     f"{case.filters}, 1,\n", False)


def conv_layer(case: ConvCase, rng: np.random.Generator) -> GemmLayer:
    """One unpadded conv layer with random weights in [−8, 8), 8-bit unsigned codes, raw accumulators out."""
    k = case.kernel ** 2 * case.c
    weight = rng.integers(-8, 8, size=(k, case.filters))
    bound = int(np.abs(weight).sum(axis=0).max()) * 255
    return GemmLayer("conv", weight, 0, None, None, 0, 1, (-bound, bound), 9, (2 * bound).bit_length() + 1, None,
                     ("x",), (k,), "y", Conv((case.c, case.h, case.w), (case.kernel, case.kernel)))


def shared_config(cases: list[ConvCase], layers: dict) -> dict:
    """Per dataflow, the field-wise largest of the layers' smallest configurations (one Verilator build each)."""
    merged = {}
    for case in cases:
        cfg = default_config([layers[case]], rows=case.rows, cols=case.cols, dataflow=case.dataflow, batch=1)
        fields = {key: value for key, value in asdict(cfg).items() if isinstance(value, int)}
        known = merged.setdefault((case.dataflow, case.rows, case.cols), fields)
        for key, value in fields.items():
            known[key] = max(known[key], value)
    return merged


def run_hwgen_conv(case: ConvCase, layer: GemmLayer, shared: dict | None, rng: np.random.Generator) -> tuple[int, str]:
    """Predicted cycles of one conv layer and, with ``shared`` (the --rtl configurations), the Verilator check."""
    if shared is None:
        cfg = default_config([layer], rows=case.rows, cols=case.cols, dataflow=case.dataflow, batch=1)
    else:
        cfg = SystolicConfig(dataflow=case.dataflow, **shared[(case.dataflow, case.rows, case.cols)])
    program = compile_layers([layer], cfg)
    cycles = program.predict_cycles(1)
    if shared is None:
        return cycles, ""
    codes = rng.integers(0, 256, size=(1, case.c * case.h * case.w))
    binary = verilator.build(render_verilog(cfg), TOP_NAME)
    loads = program.weights + program.program_rows(1) + program.input_rows(codes)
    result = verilator.run(binary, loads, program.output_reads(1), max_cycles=10 * cycles)
    if not np.array_equal(result.values.view(np.int32).reshape(1, -1), run_layers([layer], codes)):
        return cycles, "WRONG VALUES"
    return cycles, "= predicted" if result.cycles == cycles else f"MISMATCH {result.cycles}"


def conv_main(console: Console, python: Path, jobs: int, rtl: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="hwgen-scalesim-") as work, ThreadPoolExecutor(max(1, jobs)) as pool:
        theirs = list(pool.map(lambda case: run_scalesim_conv(python, case, Path(work)), CONV_CASES))
    rng = np.random.default_rng(0)
    layers = {case: conv_layer(case, rng) for case in CONV_CASES}
    shared = shared_config(CONV_CASES, layers) if rtl else None
    table = Table(title="hwgen vs SCALE-Sim v3 (compute cycles, convolution layers, implicit im2col, 1 image)")
    table.caption = "ratio = hwgen cycles / SCALE-Sim compute cycles; util = MACs / (R·C·cycles)"
    for header in ("layer", "ifmap * filters", "array", "df", "hwgen cycles", "SCALE-Sim cycles", "ratio",
                   "hwgen util", "SCALE-Sim util", "formula", *(["RTL (Verilator)"] if rtl else [])):
        table.add_column(header, justify="left" if header in ("layer", "ifmap * filters", "array", "df")
                         else "right")
    ratios, rtl_ok = [], True
    for case, their in zip(CONV_CASES, theirs):
        cycles, check = run_hwgen_conv(case, layers[case], shared, rng)
        formula = scalesim_formula(case.gemm())
        matches = "yes" if their.compute_cycles == formula and their.stall_cycles == 0 else f"NO ({formula:,})"
        ratios.append(cycles / their.compute_cycles)
        rtl_ok &= check in ("", "= predicted")
        table.add_row(CONV_LABELS[case], case.name, f"{case.rows}×{case.cols}", case.dataflow, f"{cycles:,}",
                      f"{their.compute_cycles:,}", f"{ratios[-1]:.3f}",
                      f"{case.macs / (case.rows * case.cols * cycles):.1%}", f"{their.util:.1%}", matches,
                      *([check] if rtl else []))
    console.print(table)
    verdict = "[green]PASS[/]" if max(ratios) <= 1.0 else "[red]FAIL[/]"
    console.print(f"{verdict}  ours / SCALE-Sim ≤ 1.0 on every conv layer (worst {max(ratios):.3f})")
    if rtl:
        console.print(f"{'[green]PASS[/]' if rtl_ok else '[red]FAIL[/]'}  Verilator: outputs bit-exact and measured "
                      "cycles = predicted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64³ on 8×8 (os, ws) and 128×256×64 on 16×16 only")
    parser.add_argument("--rtl", action="store_true", help="also run every case in Verilator (measured cycles)")
    parser.add_argument("--jobs", type=int, default=2, help="SCALE-Sim runs in parallel (default 2)")
    parser.add_argument("--conv", action="store_true", help="the convolution layers of issue 7 instead of GEMMs")
    args = parser.parse_args()
    cases = QUICK if args.quick else CASES
    console = Console(width=None if sys.stdout.isatty() else 150)      # piped: don't wrap the table at 80

    python = scalesim_python()
    if args.conv:
        conv_main(console, python, args.jobs, args.rtl)
        return
    with tempfile.TemporaryDirectory(prefix="hwgen-scalesim-") as work:
        start = time.perf_counter()
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            theirs = list(pool.map(lambda case: run_scalesim(python, case, Path(work)), cases))
        scalesim_wall = time.perf_counter() - start
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    ours = [run_hwgen(case, rng, args.rtl) for case in cases]
    hwgen_wall = time.perf_counter() - start

    table = Table(title="hwgen vs SCALE-Sim v3 (compute cycles, GEMM M×N×K on R×C)")
    table.caption = ("ratio = hwgen cycles / SCALE-Sim compute cycles; util = M·N·K / (R·C·cycles); "
                     "formula: SCALE-Sim's cycles equal its fold formula, no stalls; run s: one SCALE-Sim run")
    for header in ("GEMM M×N×K", "array", "df", "hwgen cycles", "SCALE-Sim cycles", "ratio",
                   "hwgen util", "SCALE-Sim util", "formula", "run s",
                   *(["RTL (Verilator)"] if args.rtl else [])):
        table.add_column(header, justify="left" if header in ("GEMM M×N×K", "array", "df") else "right")
    ratio_ok, formula_ok, rtl_ok, util_results = True, True, True, []
    for case, (cycles, rtl), their in zip(cases, ours, theirs):
        ratio = cycles / their.compute_cycles
        util = case.macs / (case.rows * case.cols * cycles)
        formula = scalesim_formula(case)
        matches = their.compute_cycles == formula and their.stall_cycles == 0
        ratio_ok &= ratio <= 1.0
        formula_ok &= matches
        rtl_ok &= rtl in ("", "= predicted")
        if case in UTIL_TARGET:
            util_results.append((case, util, UTIL_TARGET[case]))
        table.add_row(case.gemm, case.array, case.dataflow, f"{cycles:,}", f"{their.compute_cycles:,}", f"{ratio:.3f}",
                      f"{util:.1%}", f"{their.util:.1%}",
                      "yes" if matches else f"NO ({formula:,}; {their.stall_cycles} stalls)",
                      f"{their.seconds:.1f}", *([rtl] if args.rtl else []))
    console.print(table)

    def verdict(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]FAIL[/]"

    console.print(f"{verdict(ratio_ok)}  ours / SCALE-Sim ≤ 1.0 on every case "
                  f"(worst {max(c / t.compute_cycles for (c, _), t in zip(ours, theirs)):.3f})")
    for case, util, target in util_results:
        console.print(f"{verdict(util >= target)}  ≥ {target:.0%} utilization on {case.name} "
                      f"({util:.1%})")
    if not util_results:
        console.print("[yellow]n/a[/]   ≥ 94% utilization on 256³ 16×16: not in --quick")
    console.print(f"{'yes' if formula_ok else '[red]NO[/]'}   SCALE-Sim's reported compute cycles equal its fold "
                  f"formulas, with no stalls")
    if args.rtl:
        console.print(f"{verdict(rtl_ok)}  Verilator: outputs bit-exact and measured cycles = predicted")
    console.print(f"SCALE-Sim {scalesim_wall:.1f} s wall ({args.jobs} in parallel), hwgen "
                  f"{'with Verilator ' if args.rtl else ''}{hwgen_wall:.1f} s")


if __name__ == "__main__":
    main()
