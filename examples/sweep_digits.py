"""The sweep of ``sweep_digits.yaml``, declared in Python: the bundled digits MLP on both architectures.

    python examples/sweep_digits.py [--store out/sweep_digits.sqlite] [--workers 2] [--evaluator analytic]

Sweeps the space with the analytic evaluator (a few hundred points, seconds on 2 cores), then prints the Pareto
front and writes the report (CSV/JSON, Pareto plots as PNG and SVG, the utilization plot of the systolic
points) beside the store. Running it again computes nothing: every point is already in the store.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from hwgen.dse import Space, build_report, run_sweep

HERE = Path(__file__).resolve().parent

SPACE = Space(
    name="digits",
    models=["digits_mlp/digits_mlp.onnx"],
    targets=["ecp5-25k", "ice40-up5k"],
    samples=1,                                    # `cycles` = one inference
    inputs="digits_mlp/test_x.npy",               # for --evaluator sim
    architectures={
        "systolic": {"rows": {"from": 2, "to": 32, "times": 2},      # 2, 4, 8, 16, 32
                     "cols": {"from": 2, "to": 32, "times": 2},
                     "dataflow": ["os", "ws"],
                     "batch": [16, 64]},
        "dataflow": {"target_cycles": [8, 16, 32, 64, 128, 256, 512, 1024, 4096, None],   # None: fully folded
                     "max_lanes": [None, 64]},
    },
    constraints=["lut <= 20000", "throughput >= 1e5"],
    objectives={"cycles": "min", "lut": "min"},
    base=HERE,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("out/sweep_digits.sqlite"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evaluator", default="analytic")
    args = parser.parse_args()
    args.store.parent.mkdir(parents=True, exist_ok=True)
    summary = run_sweep(SPACE, args.store, evaluator=args.evaluator, workers=args.workers)
    console = Console()
    console.print(f"{summary}")
    report = build_report(args.store)
    console.print(report.table())
    console.print("written: " + ", ".join(str(path) for path in report.files))


if __name__ == "__main__":
    main()
