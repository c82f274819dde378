"""Dataflow folding: for a range of target cycles per inference, the folding ``--target-cycles`` picks, its cost,
and the measured (Verilator) II and latency against the analytic bound and prediction, in one run.

Models:

- **digits**: the bundled example ``examples/digits_mlp/digits_mlp.onnx`` (64-64-32-10, uint8 input), its own
  test inputs;
- **TFC-w2a2**: FINN's TFC (784-64-64-64-10, 2-bit weights and activations) from ``brevitas_examples``
  (``model_with_cfg("tfc_2w2a", pretrained=False)``: random weights, calibrated activation scales), exported to
  QONNX by the test zoo's builder (``tests/modelzoo.py``, ``tfc_2w2a_qonnx``);
- **CAN-IDS w2a2**: a 2-bit 4-layer MLP of the size used for automotive CAN intrusion detection (the FINN CAN-IDS
  seed: Khandelwal & Shreejith, "Exploring Highly Quantised Neural Networks for Intrusion Detection in Automotive
  CAN", arXiv:2401.11030 — a 2-bit 4-layer MLP on 4 concatenated CAN messages). The paper's layer widths were not
  found in the sources available here, so the model is 64-64-32-32-5 (64 inputs = 4 messages × 16 features;
  5 classes: benign, DoS, fuzzing, gear and RPM spoofing, the Car-Hacking data set's), a plausible size next to
  FINN's own 2-bit cybersecurity MLP (600-64-64-64-1); brevitas, random weights (zoo ``mlp_canids_w2a2_qonnx``);
- **digits CNN w4a4**: a 1×8×8 CNN (padded conv, strided conv, depthwise-separable block, dense; ``tests/
  conv_models.py``): sliding-window generators, the depthwise unit;
- **CNV-w1a1**: FINN's CNV (32×32×3, six binary convs, two max pools, three dense layers) from
  ``brevitas_examples`` (zoo ``cnv_1w1a_qonnx``): XNOR convolutions at FINN's reference size.

For every model and target ``T`` the script compiles with ``target_cycles=T`` (``folding.auto_fold``: per layer
the legal PE/SIMD with ``SF·NF ≤ T`` at least cost), builds the pipeline in Verilator (one build per folding,
cached in ``~/.cache/hwgen``) and streams ``--samples`` samples back to back with the output always ready. Columns:

- ``fold``: the chosen ``PE×SIMD`` per layer; ``lanes``: Σ PE·SIMD (MAC lanes);
- ``cost``: what the folder minimized, Σ over layers of the layer's analytic LUT4 count on ECP5 with multipliers
  built from LUTs (``LayerConfig.cost``, :func:`hwgen.estimate.fpga.fold_cost`);
- ``II``: measured cycles between consecutive samples' last outputs, (t_last − t_first)/(N − 1); ``bound``: max
  over layers of vectors·⌈MW/SIMD⌉·⌈MH/PE⌉ (and a sliding-window generator's input beats; no pipeline of these
  layers can beat it); ``II/bound`` (target ≤ 1.02);
- ``latency``: measured first input → last output of one sample, ``predicted``: the analytic model's, and their
  ratio (target 1.000: the model is exact);
- ``bit-exact``: outputs equal to the golden model's; ``build s``: the Verilator build (0 when cached).

Usage: ``.venv/bin/python benchmarks/dataflow_folding.py [--quick] [--samples N]`` (``--quick``: three targets
per model instead of five; the first run builds every folding, about 20–60 s each on a small machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conv_models import digits_cnn
from modelzoo import build

import hwgen


@dataclass(frozen=True)
class Workload:
    name: str
    targets: tuple[int, ...]
    quick: tuple[int, ...]

    def load(self, cache: Path) -> tuple[hwgen.Model, np.ndarray]:
        """The model and float32 sample inputs."""
        if self.name == "digits":
            example = ROOT / "examples" / "digits_mlp"
            return hwgen.load(example / "digits_mlp.onnx"), np.load(example / "test_x.npy")
        if self.name == "digits CNN w4a4":
            path = cache / "digits_cnn_w4a4.onnx"
            x = digits_cnn(path)
            return hwgen.load(path), x
        zoo = build({"TFC-w2a2": "tfc_2w2a_qonnx", "CAN-IDS w2a2": "mlp_canids_w2a2_qonnx",
                     "CNV-w1a1": "cnv_1w1a_qonnx"}[self.name], cache)
        return hwgen.load(zoo.path), zoo.inputs


WORKLOADS = (
    Workload("digits", (4096, 1024, 256, 64, 16), (4096, 256, 16)),
    Workload("TFC-w2a2", (50176, 8192, 2048, 512, 128), (50176, 2048, 128)),
    Workload("CAN-IDS w2a2", (4096, 1024, 256, 64, 16), (4096, 256, 16)),
    Workload("digits CNN w4a4", (5184, 2592, 1296, 864, 576), (5184, 1296, 576)),
    Workload("CNV-w1a1", (400_000, 200_000, 100_000, 50_000, 25_000), (200_000, 100_000, 25_000)),
)


def run(model: hwgen.Model, x: np.ndarray, target: int) -> dict:
    """Compile at ``target`` cycles, simulate ``x`` in Verilator; the row's figures."""
    design = hwgen.compile(model, arch="dataflow", target_cycles=target)
    report = design.simulate(x).report
    program = design.program
    layers = program.fold_report()
    return {
        "fold": " ".join(f"{row['pe']}×{row['simd']}" for row in layers),
        "lanes": sum(row["pe"] * row["simd"] for row in layers),
        "cost": sum(row["cost_lut"] for row in layers),
        "ii": report["ii_cycles"], "predicted_ii": report["predicted_ii_cycles"], "bound": design.config.predicted_bound,
        "latency": report["latency_cycles"], "predicted_latency": report["predicted_latency_cycles"],
        "bit_exact": report["bit_exact"], "build": report["build_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three targets per model instead of five")
    parser.add_argument("--samples", type=int, default=8, help="samples streamed per run (≥ 2; default 8)")
    args = parser.parse_args()
    if args.samples < 2:
        parser.error("--samples must be at least 2 (the II is measured between samples)")
    console = Console(width=None if sys.stdout.isatty() else 170)
    cache = Path(os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen") / "benchmark-models"

    table = Table(title=f"Dataflow folding: --target-cycles vs measured II and latency (Verilator, "
                        f"{args.samples} samples back to back)")
    table.caption = ("fold: PE×SIMD per layer; cost: Σ analytic LUT4 (ECP5, multipliers in LUTs) over layers (what "
                     "the folder minimized); bound: max over layers of vectors·⌈MW/SIMD⌉·⌈MH/PE⌉")
    for header in ("model", "target", "fold (PE×SIMD)", "lanes", "cost (LUT)", "II", "bound", "II/bound",
                   "latency", "predicted", "lat. ratio", "bit-exact", "build s"):
        table.add_column(header, justify="left" if header in ("model", "fold (PE×SIMD)") else "right")
    worst_ii, exact, all_bit_exact = 0.0, True, True
    started = time.perf_counter()
    for workload in WORKLOADS:
        model, x = workload.load(cache)
        x = x[:args.samples]
        for target in workload.quick if args.quick else workload.targets:
            row = run(model, x, target)
            ratio = row["ii"] / row["bound"]
            worst_ii = max(worst_ii, ratio)
            exact &= row["ii"] == row["predicted_ii"] and row["latency"] == row["predicted_latency"]
            all_bit_exact &= row["bit_exact"]
            table.add_row(workload.name, f"{target:,}", row["fold"], f"{row['lanes']:,}", f"{row['cost']:,.0f}",
                          f"{row['ii']:,.0f}", f"{row['bound']:,}", f"{ratio:.3f}", f"{row['latency']:,}",
                          f"{row['predicted_latency']:,}", f"{row['latency'] / row['predicted_latency']:.3f}",
                          "yes" if row["bit_exact"] else "[red]NO[/]", f"{row['build']:.1f}")
    console.print(table)

    def verdict(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]FAIL[/]"

    console.print(f"{verdict(worst_ii <= 1.02)}  measured II ≤ 1.02 × max-layer bound (worst {worst_ii:.3f})")
    console.print(f"{verdict(exact)}  measured II and latency = the analytic prediction on every row")
    console.print(f"{verdict(all_bit_exact)}  outputs bit-exact with the golden model")
    console.print(f"{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
