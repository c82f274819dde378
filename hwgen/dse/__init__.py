"""Design-space exploration: sweeps over models × architectures × parameters × targets, stored in SQLite.

    from hwgen.dse import Space, run_sweep, build_report

    space = Space.from_yaml("examples/sweep_digits.yaml")        # or Space(models=[...], architectures={...})
    summary = run_sweep(space, "results.sqlite", evaluator="analytic", workers=2)
    report = build_report("results.sqlite")                      # Pareto front, CSV/JSON, plots

Modules: :mod:`~hwgen.dse.space` (the spec, points and their hashes), :mod:`~hwgen.dse.evaluate` (analytic,
synth, sim evaluators), :mod:`~hwgen.dse.run` (in-process, process pool or Dask), :mod:`~hwgen.dse.store`
(SQLite schema), :mod:`~hwgen.dse.pareto`, :mod:`~hwgen.dse.report`. PyYAML, Dask and matplotlib (the ``dse``
extra) are imported only where they are used.
"""
from __future__ import annotations

from .evaluate import EVALUATORS, evaluate
from .pareto import front, pareto_mask
from .report import SweepReport, build_report
from .run import SweepSummary, run_sweep
from .space import METRICS, Constraint, Objective, Point, Space, point_hash
from .store import Store

__all__ = ["EVALUATORS", "METRICS", "Constraint", "Objective", "Point", "Space", "Store", "SweepReport",
           "SweepSummary", "build_report", "evaluate", "front", "pareto_mask", "point_hash", "run_sweep"]
