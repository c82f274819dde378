"""The :class:`~hwgen.estimate.report.Estimate` of a design on an ASIC target (``hwgen estimate --target sky130``).

Metrics (units fixed): ``area`` µm² (standard cells + SRAM macros), ``cell_area`` µm², ``sram_area`` µm²,
``cells``, ``critical_path`` ns, ``fmax`` MHz, ``latency_cycles``, ``latency`` µs, ``throughput`` inferences/s,
``power_leakage`` mW, and from :mod:`hwgen.estimate.power` ``power_dynamic`` mW (running back to back at fmax)
and ``energy_per_inference`` nJ. With ``synth``: Yosys figures for area and cells, OpenSTA for the critical path
on timed libraries (OSU 0.18 µm), the analytic ones kept under ``analytic``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from .. import __version__
from . import asic, power
from .report import Cycles, Estimate, arch_of, config_dict, default_verilog, metric
from .targets import AsicTarget


def _with_analytic(tool: dict, analytic: dict) -> dict:
    tool["analytic"] = analytic
    return tool


ACTIVITY_FILE = "activity.json"


def load_activity(out_dir: Path | None, verilog_sha256: str | None) -> dict | None:
    """``OUT/activity.json`` written by ``hwgen simulate --activity`` for this design's Verilog, if any."""
    if out_dir is None or not (Path(out_dir) / ACTIVITY_FILE).is_file():
        return None
    doc = json.loads((Path(out_dir) / ACTIVITY_FILE).read_text())
    if verilog_sha256 is not None and doc.get("verilog_sha256") != verilog_sha256:
        return None
    return doc


def _energy(config, t: AsicTarget, m: dict, cycles: Cycles, workload, activity: dict | None, notes: list[str]
            ) -> dict | None:
    """Add ``energy_per_inference`` and ``power_dynamic`` to ``m``; the energy breakdown (or None)."""
    per_inference = cycles.batch_cycles / cycles.batch_samples
    if workload is None and arch_of(config) == "dataflow":
        workload = power.dataflow_workload(config, per_inference)
    if workload is None:
        notes.append("energy needs the program's operation counts: estimate a compiled design (hwgen estimate OUT)")
        return None
    method = "analytic"
    if activity is not None:
        factor = activity.get("activity", 1.0)
        cycles_measured = activity["cycles_per_inference"]
        clocked, enables = power.gated_writes(workload.clock_gates, workload.gated_flops, workload.write_bits,
                                              cycles_measured)
        source = (f"simulated: {activity['cycles']} cycles for {activity['samples']} samples ({activity['io']}), "
                  f"data-dependent energies × activity {factor:.4f} (toggles of the data nets vs a run on random "
                  f"input codes); operations: {workload.source}")
        workload = replace(workload, cycles=cycles_measured, activity=factor, gated_clocked=clocked,
                           gate_enables=enables, source=source)
        method = "simulated"
    parts = power.energy_per_inference(workload, t.library, t.voltage)
    clock = parts["clock"] + parts["clock_gates"]
    if clock > 0.5 * parts["total"]:
        notes.append(f"the clock is {100 * clock / parts['total']:.0f}% of the dynamic energy: "
                     f"{workload.ungated_flops:,} flip-flops clocked every cycle, {workload.gated_flops:,} behind "
                     f"{workload.clock_gates:,} clock gates (flip-flop memory words, clocked when written), "
                     f"{workload.register_gated_flops:,} behind {sum(g.gates for g in workload.register_gates):,} "
                     "(registers loaded under an enable, clocked when enabled)")
    seconds = workload.cycles / (m["fmax"]["value"] * 1e6)
    leak_pj = m["power_leakage"]["value"] * 1e-6 * seconds * 1e12
    m["energy_per_inference"] = metric((parts["total"] + leak_pj) / 1000.0, "nJ", method)
    m["power_dynamic"] = metric(parts["total"] * 1e-12 / seconds * 1e3, "mW", method)
    return {"unit": "pJ", "method": method, "dynamic": {k: round(v, 3) for k, v in parts.items()},
            "leakage": round(leak_pj, 3), "seconds_per_inference": seconds,
            "workload": {"macs": [list(x) for x in workload.macs], "read_bits": workload.read_bits,
                         "write_bits": workload.write_bits, "compare_bits": workload.compare_bits,
                         "flops": workload.flops, "cycles": workload.cycles, "clock_gates": workload.clock_gates,
                         "gated_flops": workload.gated_flops, "gated_clocked": workload.gated_clocked,
                         "gate_enables": workload.gate_enables, "activity": workload.activity,
                         "register_gates": [{"name": g.name, "gates": g.gates, "bits": g.bits, "enabled": g.enabled}
                                            for g in workload.register_gates],
                         "sram_accesses": [list(x) for x in workload.sram_accesses], "source": workload.source},
            "energies": {"characterized": power.energies().get("date"), "library": power.energies().get("library"),
                         "scale": power.SKY130_ENERGY_SCALE if t.library == "sky130" else 1.0}}


def _analytic_metrics(config, t: AsicTarget) -> tuple[asic.AsicFigures, dict[str, dict]]:
    """The analytic area, cells, timing and leakage of ``config`` on ``t``: the figures and their metrics."""
    figures = asic.analytic(config, t)
    return figures, {
        "area": metric(figures.area, "µm²", "analytic"),
        "cell_area": metric(figures.cell_area, "µm²", "analytic"),
        "sram_area": metric(figures.sram_area, "µm²", "analytic"),
        "cells": metric(figures.cells, "cells", "analytic"),
        "critical_path": metric(1000.0 / figures.fmax_mhz, "ns", "analytic"),
        "fmax": metric(figures.fmax_mhz, "MHz", "analytic"),
        "power_leakage": metric(figures.leakage_mw * 1e3, "µW", "analytic"),
    }


def _timing_metrics(m: dict[str, dict], cycles: Cycles) -> None:
    """Add ``latency_cycles``, ``latency`` and ``throughput`` at ``m``'s fmax."""
    f = m["fmax"]["value"]
    m["latency_cycles"] = metric(cycles.latency_cycles, "cycles", "analytic")
    m["latency"] = metric(cycles.latency_cycles / f, "µs", m["fmax"]["method"])
    m["throughput"] = metric(cycles.batch_samples * f * 1e6 / cycles.batch_cycles, "inferences/s",
                             m["fmax"]["method"])


def asic_metrics(config, t: AsicTarget, cycles: Cycles, workload=None) -> dict[str, dict]:
    """The metrics of :func:`estimate_asic` without ``synth`` and without an activity file, alone (no report
    document)."""
    _, m = _analytic_metrics(config, t)
    _timing_metrics(m, cycles)
    _energy(config, t, m, cycles, workload, None, [])
    return m


def estimate_asic(config, t: AsicTarget, *, synth: bool, cycles: Cycles, verilog: str | None, top: str | None,
                  out_dir: Path | None, design: dict | None, workload=None) -> Estimate:
    """Estimate ``config`` on the ASIC target ``t`` (see :func:`hwgen.estimate.report.estimate`); energy from
    ``workload`` (or the dataflow pipeline's own), refined by ``OUT/activity.json`` when simulation recorded one."""
    figures, m = _analytic_metrics(config, t)
    model = asic.coefficients()
    tools: dict[str, object] = {"hwgen": __version__,
                                "model": {"fitted": model.get("date"), "status": model.get("status"),
                                          "tools": model.get("tools", {}),
                                          "calibration_configs": len(model.get("configurations", []))}}
    notes: list[str] = []
    if t.library == "sky130":
        notes.append("sky130: timing is OSU 0.18 µm's delay model × 130/180 (the sky130 package has no timing "
                     "data); leakage per cell as OSU's (no sky130 leakage data): stated assumptions")
    if figures.macros:
        notes.append(f"{sum(n for _, n in figures.macros)} memories costed as SRAM macros (hwgen.estimate.sram: OpenRAM sky130 "
                     "macro sizes" + (", scaled (180/130)²" if t.library == "osu018" else "") + ")")
    design = dict(design or {})
    synth_doc = None
    if synth:
        asic.require_tools(t)
        if verilog is None:
            verilog, top = default_verilog(config)
        result = asic.synthesize(verilog, top or "top", t, out_dir=out_dir)
        tools.update(result.tools)
        macros = [asic.sram.macro(d, w, t.library, t.voltage) for d, w in result.srams]
        sram_area = sum(x.area_um2 for x in macros)
        m["area"] = _with_analytic(metric(result.cell_area + sram_area, "µm²", "synthesized"), m["area"])
        m["cell_area"] = _with_analytic(metric(result.cell_area, "µm²", "synthesized"), m["cell_area"])
        m["sram_area"] = _with_analytic(metric(sram_area, "µm²", "synthesized"), m["sram_area"])
        m["cells"] = _with_analytic(metric(result.cell_count, "cells", "synthesized"), m["cells"])
        if result.fmax_mhz is not None:
            m["fmax"] = _with_analytic(metric(result.fmax_mhz, "MHz", "synthesized"), m["fmax"])
            m["critical_path"] = _with_analytic(metric(1000.0 / result.fmax_mhz, "ns", "synthesized"),
                                                m["critical_path"])
        elif not t.timed:
            notes.append(f"{t.name}: no timing Liberty, so fmax is the analytic model's figure")
        if result.leakage_mw is not None:
            leak = result.leakage_mw + sum(x.leakage_mw for x in macros)
            m["power_leakage"] = _with_analytic(metric(leak * 1e3, "µW", "synthesized"), m["power_leakage"])
        synth_doc = {"cells": result.cells, "srams": [list(s) for s in result.srams],
                     "clock_gates": result.clock_gates, "gated_flops": result.gated_flops,
                     "sequential_area": result.sequential_area, "critical_path": list(result.critical_path),
                     "log_dir": f"synth/{t.name}" if out_dir is not None else None}
        design["verilog_sha256"] = hashlib.sha256(verilog.encode()).hexdigest()
    _timing_metrics(m, cycles)
    activity = load_activity(out_dir, design.get("verilog_sha256") or design.get("design_verilog_sha256"))
    energy = _energy(config, t, m, cycles, workload, activity, notes)
    if cycles.source:
        notes.append(f"cycles: {cycles.source}")
    design = {"arch": arch_of(config), "config": config_dict(config), **design}
    return Estimate(t, design, m, tools, notes, synth_doc, energy)
