"""Analytic evaluator speed: points/s on one core (in-process) and wall time of a sweep on a local pool.

    .venv/bin/python benchmarks/dse_throughput.py [--points 1000] [--workers 2] [--repeat 3]

Points come from ``examples/sweep_digits.yaml``'s model over systolic rows × cols × dataflow and dataflow
target_cycles × max_lanes (cycled to ``--points``), each with an analytic estimate on ecp5-25k: every point a
different configuration, the worst case. The ``2 targets`` pass is the same space on the example's two targets
(each configuration on ecp5-25k, then on ice40-up5k: its second target reuses its design). The per-core
figures exclude the one-off work per model (the import, its lowered layers, the dataflow layers' ranked foldings:
cached per worker, done here by one point of each architecture first, after what a sweep's worker process does
before its first point: ``setup_worker``, the pool's initializer, which imports the models and freezes what is
alive then out of the garbage collector's walks) and start every pass with the caches the points fill emptied
(``clear_point_caches``), so a pass costs what a fresh worker pays for new points; the best of ``--repeat`` passes
is reported (CPU time: other processes on the machine do not count). The pool figure is end to end as ``hwgen
sweep`` runs it: in a fresh process that has imported nothing but ``hwgen.dse`` (so every worker imports the
model), pool start and SQLite writes included; the best of ``--repeat`` sweeps into fresh stores.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwgen.dse import Space, evaluate, run_sweep
from hwgen.dse.evaluate import clear_point_caches, setup_worker

MODEL = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp" / "digits_mlp.onnx"
TWO_TARGETS = ("ecp5-25k", "ice40-up5k")          # examples/sweep_digits.yaml's


def space(points: int, targets: tuple[str, ...] = ("ecp5-25k",)) -> Space:
    side = 1
    while (side * side * 2 + 40) * len(targets) < points:
        side += 1
    return Space(models=[MODEL], targets=list(targets), architectures={
        "systolic": {"rows": list(range(1, side + 1)), "cols": list(range(1, side + 1)), "dataflow": ["os", "ws"]},
        "dataflow": {"target_cycles": [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
                     "max_lanes": [None, 16, 64, 256]}})


def per_core(points: list, repeat: int) -> tuple[float, int]:
    """(best CPU seconds of one pass over ``points``, failed points)."""
    best, failed = float("inf"), 0
    for _ in range(repeat):
        clear_point_caches()
        started = time.process_time()
        results = [evaluate(p) for p in points]
        best = min(best, time.process_time() - started)
        failed = sum(r["status"] == "failed" for r in results)
    return best, failed


def sweep(points: int, workers: int) -> None:
    """One sweep into a fresh store (run in a fresh process); prints its summary as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_sweep(space(points), Path(tmp) / "bench.sqlite", workers=workers)
    print(json.dumps({"total": summary.total, "seconds": summary.seconds, "rate": summary.points_per_second}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sweep-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_only:
        return sweep(args.points, args.workers)
    points = space(args.points).points()[:args.points]
    setup_worker(sorted({(p.model, p.model_sha256) for p in points}))     # as the pool's initializer does
    for arch in ("systolic", "dataflow"):            # per model, once per worker: import, layers, foldings
        evaluate(next(p for p in space(args.points).points() if p.arch == arch))
    two = space(args.points, TWO_TARGETS).points()[:args.points]
    for label, chosen in (("systolic", [p for p in points if p.arch == "systolic"]),
                          ("dataflow", [p for p in points if p.arch == "dataflow"]), ("all", points),
                          ("2 targets", two)):
        seconds, failed = per_core(chosen, args.repeat)
        print(f"analytic {label:9s}: {len(chosen)} points ({failed} failed) in {seconds:.3f} s = "
              f"{len(chosen) / seconds:,.0f} points/s per core ({1e6 * seconds / len(chosen):.0f} µs/point)")
    runs = [json.loads(subprocess.run([sys.executable, __file__, "--sweep-only", "--points", str(args.points),
                                       "--workers", str(args.workers)], check=True, capture_output=True,
                                      text=True).stdout) for _ in range(args.repeat)]
    best = min(runs, key=lambda run: run["seconds"])
    print(f"sweep of {best['total']} points on {args.workers} workers (pool + SQLite): {best['seconds']:.2f} s wall "
          f"= {best['rate']:,.0f} points/s")


if __name__ == "__main__":
    main()
