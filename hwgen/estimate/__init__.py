"""Estimates of what a design costs: FPGA resources, fmax, latency and throughput (``hwgen estimate``).

- :mod:`~hwgen.estimate.targets` — the named devices and their capacities;
- :mod:`~hwgen.estimate.fpga` — analytic per-component models, coefficients fitted by
  :mod:`~hwgen.estimate.calibrate` and stored in ``coefficients.json`` with their provenance;
- :mod:`~hwgen.estimate.synth` — Yosys / nextpnr runs (YoWASP), cached by design hash;
- :mod:`~hwgen.estimate.report` — the :class:`Estimate` document (JSON schema shared with the ASIC estimates).
"""
from __future__ import annotations

from .report import SCHEMA_VERSION, Cycles, Estimate, estimate
from .targets import TARGETS, Target, target

__all__ = ["SCHEMA_VERSION", "TARGETS", "Cycles", "Estimate", "Target", "estimate", "target"]
