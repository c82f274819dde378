"""Analytic evaluator speed: points/s on one core (in-process) and wall time of a sweep on a local pool.

    .venv/bin/python benchmarks/dse_throughput.py [--points 1000] [--workers 2]

Points come from ``examples/sweep_digits.yaml``'s model over systolic rows × cols × dataflow and dataflow
target_cycles × max_lanes (cycled to ``--points``), each with an analytic estimate on ecp5-25k. The per-core
figure excludes the one-off model import (cached per worker); the pool figure is end to end (pool start,
SQLite writes included).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hwgen.dse import Space, evaluate, run_sweep

MODEL = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp" / "digits_mlp.onnx"


def space(points: int) -> Space:
    side = 1
    while (side * side * 2 + 40) < points:
        side += 1
    return Space(models=[MODEL], targets=["ecp5-25k"], architectures={
        "systolic": {"rows": list(range(1, side + 1)), "cols": list(range(1, side + 1)), "dataflow": ["os", "ws"]},
        "dataflow": {"target_cycles": [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
                     "max_lanes": [None, 16, 64, 256]}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    points = space(args.points).points()[:args.points]
    evaluate(points[0])                                  # import the model once (as each worker does)
    for arch in ("systolic", "dataflow"):
        chosen = [p for p in points if p.arch == arch]
        started = time.perf_counter()
        results = [evaluate(p) for p in chosen]
        seconds = time.perf_counter() - started
        failed = sum(r["status"] == "failed" for r in results)
        print(f"analytic {arch:9s}: {len(chosen)} points ({failed} failed) in {seconds:.2f} s = "
              f"{len(chosen) / seconds:,.0f} points/s per core")
    started = time.perf_counter()
    results = [evaluate(p) for p in points]
    seconds = time.perf_counter() - started
    print(f"analytic all      : {len(points)} points in {seconds:.2f} s = {len(points) / seconds:,.0f} points/s "
          f"per core")
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_sweep(space(args.points), Path(tmp) / "bench.sqlite", workers=args.workers)
    print(f"sweep of {summary.total} points on {args.workers} workers (pool + SQLite): {summary.seconds:.2f} s wall "
          f"= {summary.points_per_second:,.0f} points/s")


if __name__ == "__main__":
    main()
