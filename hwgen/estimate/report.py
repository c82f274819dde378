"""``Estimate``: what a design costs on one FPGA target, as JSON-ready data with units and methods.

JSON (``schema_version`` 1), shared with the ASIC estimates::

    {"schema_version": 1, "kind": "fpga", "target": "ecp5-25k", "family": "ecp5",
     "device": {"name": "LFE5U-25F-6BG381C", "capacity": {"lut": 24288, ...}, "bram_unit": "DP16KD (18 Kbit)"},
     "tools": {"hwgen": "0.1.0", "model": {...provenance of the coefficients...}, "yosys": "...", ...},
     "design": {"arch": "systolic", "top": "hwgen_systolic", "config": {...}, "verilog_sha256": "..."},
     "metrics": {"lut": {"value": 1234.0, "unit": "LUT4", "method": "synthesized",
                         "analytic": {"value": 1190.0, "unit": "LUT4", "method": "analytic"}}, ...},
     "notes": ["..."], "synth": {"cells": {...}, "placed": {...}, "critical_path": [...], "log_dir": "synth/…",
                                 "yosys_fallback": {...}}}   # only when Yosys crashed in ABC9 and was run again

Metrics: ``lut``, ``ff``, ``carry``, ``dsp``, ``bram`` (the family's primitives), ``util_<resource>`` (% of the
device), ``fmax`` (MHz), ``latency_cycles`` (exact, from the cycle model), ``latency`` (µs at fmax),
``throughput`` (inferences/s at fmax). ``method`` is ``analytic``, ``synthesized`` (Yosys) or ``placed``
(nextpnr). With ``synth`` the tool figure is the value and the analytic one stays under ``analytic``.

ASIC targets (``"kind": "asic"``, :mod:`hwgen.estimate.asic`) share the document; their ``device`` names the cell
library and their metrics are ``area`` (µm², cells + SRAM macros), ``cell_area``, ``sram_area``, ``cells``,
``critical_path`` (ns), ``fmax``, ``latency``, ``throughput``, ``power_leakage`` and, with the per-operation energy
model, ``power_dynamic`` (mW) and ``energy_per_inference`` (nJ).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .. import __version__
from . import fpga
from .targets import RESOURCE_METRICS, Target
from .targets import target as get_target

SCHEMA_VERSION = 1
METHODS = ("analytic", "synthesized", "placed", "simulated")
UNITS = {
    "ice40": {"lut": "LUT4", "ff": "FF", "carry": "SB_CARRY", "dsp": "SB_MAC16"},
    "ecp5": {"lut": "LUT4", "ff": "FF", "carry": "CCU2C", "dsp": "MULT18X18D"},
    "xc7": {"lut": "LUT6", "ff": "FF", "carry": "CARRY4", "dsp": "DSP48E1"},
    "xcup": {"lut": "LUT6", "ff": "FF", "carry": "CARRY4/CARRY8", "dsp": "DSP48E2"},
}


class Cycles(NamedTuple):
    """The design's exact cycle model: one sample start → result (``latency_cycles``) and ``batch_samples``
    samples in ``batch_cycles`` (throughput). (A named tuple: a design-space sweep makes one per point, and a
    frozen dataclass costs twice as much to make.)"""

    latency_cycles: int
    batch_samples: int
    batch_cycles: int
    source: str = ""


def metric(value: float, unit: str, method: str) -> dict:
    """``{"value", "unit", "method"}``, the value rounded to 3 decimals (:func:`_rounded`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return {"value": _rounded(value), "unit": unit, "method": method}


def _rounded(value: float) -> float:
    """``value`` as a float rounded to 3 decimals, bit for bit what ``round(value, 3)`` gives, mostly without it:
    ``round`` with digits goes through a decimal conversion (the costliest step of an analytic estimate's
    bookkeeping), which neither a whole number needs nor a number whose thousandths are not near a tie. That one is
    ``n / 1000.0``, ``n`` the integer nearest to ``value · 1000``: the float product is within ``2⁻⁵³·|product|``
    (< 0.0002 below 10¹²) of the exact one, so ``n`` is the integer nearest to the exact product when the float one
    is not within 0.001 of a tie, as ``round`` finds it; and a quotient of two exact floats is the float nearest to
    it, as ``round``'s conversion of its decimal back is. Ties, zeros (``round`` keeps the sign), huge values,
    infinities and NaN take ``round``."""
    value = float(value)
    if value.is_integer():
        return value
    scaled = value * 1000.0
    if -1e12 < scaled < 1e12:
        nearest = round(scaled)
        if nearest and abs(scaled - nearest) < 0.499:
            return nearest / 1000.0
    return round(value, 3)


@dataclass
class Estimate:
    """An FPGA estimate; :meth:`to_json` is the report document, :meth:`table` its Rich rendering."""

    target: Target
    design: dict
    metrics: dict[str, dict]
    tools: dict[str, object]
    notes: list[str] = field(default_factory=list)
    synth: dict | None = None
    energy: dict | None = None        # ASIC: energy per inference by operation and the workload it came from

    def value(self, name: str) -> float:
        return self.metrics[name]["value"]

    def to_dict(self) -> dict:
        t = self.target
        if t.kind == "asic":
            device = {"name": t.cells, "library": t.library, "node_nm": t.node_nm, "voltage": t.voltage,
                      "source": t.source}
        else:
            device = {"name": t.device, "bram_unit": t.bram_unit,
                      "capacity": {m: t.capacity(m) for m in RESOURCE_METRICS}}
        doc = {"schema_version": SCHEMA_VERSION, "kind": t.kind, "target": t.name, "family": t.family,
               "device": device, "tools": self.tools, "design": self.design, "metrics": self.metrics,
               "notes": self.notes}
        if self.synth is not None:
            doc["synth"] = self.synth
        if self.energy is not None:
            doc["energy"] = self.energy
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def table(self):
        from rich import box
        from rich.table import Table

        t = self.target
        table = Table(title=f"estimate: {t.name} ({t.cells if t.kind == 'asic' else t.device})",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("metric", "value", "unit", "method", "analytic", "device"):
            table.add_column(column, justify="right" if column in ("value", "analytic", "device") else "left")
        for name, m in self.metrics.items():
            if name.startswith("util_"):
                continue
            analytic = m.get("analytic", {}).get("value")
            util = self.metrics.get(f"util_{name}")
            table.add_row(name, _fmt(m["value"]), m["unit"], m["method"],
                          "" if analytic is None else _fmt(analytic),
                          "" if util is None or t.kind == "asic" else f"{util['value']:.1f}% of {t.capacity(name)}")
        return table


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def config_dict(config) -> dict:
    """A configuration as JSON-ready data (dataclasses → dicts, tuples → lists); a fresh copy every call."""
    return json.loads(_config_json(config))


@lru_cache(maxsize=4096)
def _config_json(config) -> str:
    return json.dumps(asdict(config) if is_dataclass(config) else config)


def arch_of(config) -> str:
    from ..arch.dataflow.config import DataflowConfig
    return "dataflow" if isinstance(config, DataflowConfig) else "systolic"


def default_verilog(config) -> tuple[str, str]:
    """(Verilog, top module name) of a configuration: memories empty, loaded at run time."""
    from amaranth.back import verilog

    if arch_of(config) == "dataflow":
        from ..arch.dataflow.top import DataflowTop
        return verilog.convert(DataflowTop(config), name="hwgen_dataflow", emit_src=False), "hwgen_dataflow"
    from ..design import TOP_NAME, render_verilog
    return render_verilog(config), TOP_NAME


def default_cycles(config) -> Cycles:
    """Cycle model of a bare configuration: the dataflow pipeline's exact latency and initiation interval (a
    systolic configuration needs a compiled program: use ``Design.estimate``)."""
    if arch_of(config) != "dataflow":
        raise ValueError("a systolic configuration's cycles depend on the program: estimate a Design instead")
    return Cycles(config.predicted_latency_cycles, 1, config.predicted_ii_cycles,
                  "dataflow cycles.py: latency_cycles, ii_cycles")


def analytic_figures(config, target: Target) -> tuple[dict[str, float], float]:
    """(resources, fmax MHz) from the analytic models."""
    parts = fpga.components(config)
    return fpga.resources_of(parts, target.family), fpga.fmax_of(parts, target.family)


@lru_cache(maxsize=None)
def _resource_columns(t: Target) -> tuple[tuple[str, str, int, str], ...]:
    """Per resource metric of the FPGA ``t`` (:data:`RESOURCE_METRICS` order): its name, unit, the device's
    capacity and the name of its utilization metric (what every estimate on ``t`` reads, looked up once)."""
    units = UNITS[t.family]
    return tuple((name, units.get(name, t.bram_unit if name == "bram" else name), t.capacity(name), f"util_{name}")
                 for name in RESOURCE_METRICS)


class MetricColumns(NamedTuple):
    """Metrics as columns: their ``names``, ``units`` (``{"unit", "method"}`` per metric) and ``values``, in the
    order :func:`estimate` lists them. A design-space sweep keeps the values and the unit entries of a point
    without building a ``{"value", "unit", "method"}`` dict per metric; on an FPGA target the names and unit
    entries are built once per target and shared by every point (do not mutate them)."""

    names: tuple[str, ...]
    units: tuple[dict[str, str], ...]
    values: tuple[float, ...]

    def metrics(self) -> dict[str, dict]:
        """As an estimate's ``metrics``: a new ``{"value", "unit", "method"}`` dict per metric."""
        return {name: {"value": value, **unit} for name, unit, value in zip(self.names, self.units, self.values)}


@lru_cache(maxsize=None)
def _analytic_columns(t: Target) -> tuple[tuple[str, ...], tuple[dict[str, str], ...]]:
    """The names and unit entries of the analytic metrics on the FPGA ``t`` (:func:`_analytic_values` order)."""
    columns = _resource_columns(t)
    names = (*(name for name, _, _, _ in columns), *(util for _, _, capacity, util in columns if capacity),
             "fmax", "latency_cycles", "latency", "throughput")
    units = (*(unit for _, unit, _, _ in columns), *("%" for _, _, capacity, _ in columns if capacity),
             "MHz", "cycles", "µs", "inferences/s")
    return names, tuple({"unit": unit, "method": "analytic"} for unit in units)


def _analytic_values(config, t: Target, cycles: Cycles) -> tuple[float, ...]:
    """The analytic resources of ``config`` on the FPGA ``t``, then :func:`_timing_values` at its analytic fmax."""
    resources, fmax = analytic_figures(config, t)
    values = [_rounded(resources[name]) for name in RESOURCE_METRICS]
    fmax = _rounded(fmax)
    utils, timing = _timing_values(values, fmax, t, cycles)
    return (*values, *utils, fmax, *timing)


def _timing_values(resources: list[float], fmax: float, t: Target, cycles: Cycles
                   ) -> tuple[list[float], tuple[float, float, float]]:
    """(the utilizations of the ``resources`` (values in :data:`RESOURCE_METRICS` order) that ``t`` has, %;
    ``latency_cycles``, ``latency`` (µs) and ``throughput`` (inferences/s) at ``fmax`` MHz)."""
    utils = [_rounded(100.0 * value / capacity)
             for value, (_, _, capacity, _) in zip(resources, _resource_columns(t)) if capacity]
    return utils, (_rounded(cycles.latency_cycles), _rounded(cycles.latency_cycles / fmax),
                   _rounded(cycles.batch_samples * fmax * 1e6 / cycles.batch_cycles))


def _timing_metrics(metrics: dict[str, dict], fmax_metric: dict, t: Target, cycles: Cycles) -> None:
    """Set the utilizations, ``fmax``, ``latency_cycles``, ``latency`` and ``throughput`` of ``metrics`` from its
    resource metrics (synthesized: a utilization takes its resource's method) and ``fmax_metric`` (placed: the
    latency and throughput take its method)."""
    columns = [column for column in _resource_columns(t) if column[2]]
    utils, (latency_cycles, latency, throughput) = _timing_values(
        [metrics[name]["value"] for name in RESOURCE_METRICS], fmax_metric["value"], t, cycles)
    for (name, _, _, util), value in zip(columns, utils):
        metrics[util] = {"value": value, "unit": "%", "method": metrics[name]["method"]}
    method = fmax_metric["method"]
    metrics["fmax"] = fmax_metric
    metrics["latency_cycles"] = {"value": latency_cycles, "unit": "cycles", "method": "analytic"}
    metrics["latency"] = {"value": latency, "unit": "µs", "method": method}
    metrics["throughput"] = {"value": throughput, "unit": "inferences/s", "method": method}


def analytic_columns(config, target: str | Target, cycles: Cycles | None = None, workload=None) -> MetricColumns:
    """The ``metrics`` of :func:`estimate` without ``synth`` (same names, values, units and methods), alone, as
    columns: a design-space sweep stores nothing else, so the report document (configuration dump, provenance,
    notes) is not built. ``cycles`` and ``workload`` as in :func:`estimate`."""
    t = get_target(target) if isinstance(target, str) else target
    cycles = cycles or default_cycles(config)
    if t.kind == "asic":
        from .asic_report import asic_metrics

        metrics = asic_metrics(config, t, cycles, workload)
        return MetricColumns(tuple(metrics), tuple({"unit": m["unit"], "method": m["method"]}
                                                   for m in metrics.values()),
                             tuple(m["value"] for m in metrics.values()))
    return MetricColumns(*_analytic_columns(t), _analytic_values(config, t, cycles))


def analytic_metrics(config, target: str | Target, cycles: Cycles | None = None, workload=None) -> dict[str, dict]:
    """:func:`analytic_columns` as an estimate's ``metrics`` (a new ``{"value", "unit", "method"}`` dict per
    metric)."""
    return analytic_columns(config, target, cycles, workload).metrics()


def estimate(config, target: str | Target, *, synth: bool = False, cycles: Cycles | None = None,
             verilog: str | None = None, top: str | None = None, out_dir: Path | None = None,
             design: dict | None = None, workload=None) -> Estimate:
    """Estimate ``config`` (SystolicConfig or DataflowConfig) on ``target`` (an FPGA or, through
    :mod:`hwgen.estimate.asic_report`, an ASIC target).

    Resources come from the analytic models (:mod:`hwgen.estimate.fpga`), or with ``synth`` from Yosys (and fmax
    from nextpnr where there is an open place-and-route), the analytic figures kept beside them. ``cycles``:
    the design's cycle model (default: the dataflow pipeline's own). ``out_dir``: where ``synth/<target>/``
    receives the tool logs and reports. ``workload``: an ASIC target's operation counts per inference
    (:class:`hwgen.estimate.power.Workload`; default: the dataflow pipeline's own).
    """
    t = get_target(target) if isinstance(target, str) else target
    cycles = cycles or default_cycles(config)
    if t.kind == "asic":
        from .asic_report import estimate_asic

        return estimate_asic(config, t, synth=synth, cycles=cycles, verilog=verilog, top=top, out_dir=out_dir,
                             design=design, workload=workload)
    metrics = MetricColumns(*_analytic_columns(t), _analytic_values(config, t, cycles)).metrics()
    model = fpga.coefficients()
    tools: dict[str, object] = {"hwgen": __version__,
                                "model": {"fitted": model.get("date"), "tools": model.get("tools", {}),
                                          "calibration_configs": len(model.get("configurations", []))}}
    notes = []
    synth_doc = None
    if design is None:
        design = {}
    if synth:
        from .synth import require_tools, synthesize

        require_tools(t)                  # before generating Verilog: a missing tool is the first thing to say
        if verilog is None:
            verilog, top = default_verilog(config)
        result = synthesize(verilog, top or "top", t, out_dir=out_dir)
        tools.update(result.tools)
        for name in RESOURCE_METRICS:
            tool = metric(result.resources[name], metrics[name]["unit"], "synthesized")
            tool["analytic"] = metrics[name]
            metrics[name] = tool
        fmax_metric = metrics["fmax"]
        if result.fmax_mhz is not None:
            placed = metric(result.fmax_mhz, "MHz", "placed")
            placed["analytic"] = fmax_metric
            fmax_metric = placed
        elif t.pnr is None:
            notes.append(f"{t.family}: no open-source place-and-route exists, so fmax is the analytic model's figure "
                         "(datasheet-derived delays, not calibrated against a placed design)")
        _timing_metrics(metrics, fmax_metric, t, cycles)          # of the tools' figures
        synth_doc = {"cells": result.cells, "placed": result.placed, "critical_path": list(result.critical_path),
                     "log_dir": f"synth/{t.name}" if out_dir is not None else None}
        if result.yosys_fallback:
            synth_doc["yosys_fallback"] = result.yosys_fallback
            notes.append(f"yosys: ABC9 crashed ({result.yosys_fallback['reason']}); the resources come from a "
                         f"second run mapping LUTs with {result.yosys_fallback['mapper']}, "
                         f"see {result.yosys_fallback['failed_log']}")
        design = {**design, "verilog_sha256": hashlib.sha256(verilog.encode()).hexdigest()}
    elif t.pnr is None:
        notes.append(f"{t.family}: fmax model from datasheet-derived delays (no open place-and-route to calibrate it)")
    placed_max = model["families"][t.family].get("placed_lut_max")
    lut = metrics["lut"]["value"]
    if metrics["fmax"]["method"] == "analytic" and placed_max and lut > placed_max:
        notes.append(f"fmax is extrapolated: the largest design placed to fit the {t.family} delay model has "
                     f"{placed_max:,} LUTs, this one {lut:,.0f}; a larger design spreads over more of the device and "
                     "its routes lengthen, which the model's paths do not see, so expect a lower placed fmax (--synth "
                     "places it)")
    over = []
    for name, unit, capacity, util in _resource_columns(t):
        if not capacity and metrics[name]["value"]:
            notes.append(f"{t.device} has no {name.upper()} blocks but the design needs {metrics[name]['value']:g}")
        elif capacity and metrics[name]["value"] > capacity:
            over.append(f"{metrics[name]['value']:,.0f} {unit} of {capacity:,} ({metrics[util]['value']:.1f} %)")
    if over:
        notes.append(f"the design does not fit the {t.device} ({t.name}): {', '.join(over)}")
    if cycles.source:
        notes.append(f"cycles: {cycles.source}")
    design = {"arch": arch_of(config), "config": config_dict(config), **design}
    return Estimate(t, design, metrics, tools, notes, synth_doc)
