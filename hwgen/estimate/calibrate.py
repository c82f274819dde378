"""Calibration of the analytic FPGA models against real synthesis (run once; results committed as JSON).

::

    python -m hwgen.estimate.calibrate collect [--jobs 2] [--families ecp5,xc7] [--archs dataflow] [--stale]
                                                          # Yosys (all families) + nextpnr (ECP5, iCE40)
    python -m hwgen.estimate.calibrate fit [--families ecp5] # coefficients.json from the calibration rows only
    python -m hwgen.estimate.calibrate collect --asic [--clock-gating] [--stale] [--only calibration:12;heldout:5]
                                                          # Yosys + Liberty (sky130, osu018) and OpenSTA (osu018)
    python -m hwgen.estimate.calibrate fit --asic           # asic_coefficients.json

``calibration_set.json`` lists the configurations: ``calibration`` (fitted) and ``heldout`` (written before any
fit, used only by ``benchmarks/estimate_fidelity.py``; :func:`fit` refuses a held-out configuration). ``collect``
writes every measured figure to ``calibration_data.json`` (cells, resources, fmax, tool versions); ``fit`` solves,
per family, a non-negative least-squares problem per resource (LUT, FF, carry) in the features of
:mod:`hwgen.estimate.fpga`, weighted by 1/measured (so the error fitted is relative), and a delay model per family
(ns per path term, max over the design's paths) against nextpnr's fmax by bounded least squares.
Place-and-route for fmax runs on ``ecp5-85k`` (out of context) and ``ice40-hx8k`` (pin-light shell).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import fpga
from .targets import FAMILIES, TARGETS

HERE = Path(__file__).parent
SET_FILE = HERE / "calibration_set.json"
DATA_FILE = HERE / "calibration_data.json"
SYNTH_TARGET = {"ice40": "ice40-hx8k", "ecp5": "ecp5-85k", "xc7": "xc7", "xcup": "xcup"}
RESOURCE_FEATURES = {                 # fitted; fpga.EXACT features are added with coefficient 1 on top
    "lut": ("add", "cmp", "mux", "logic", "mul_lut", "mem_mux", "mem_logic", "memories", "reg"),
    "ff": ("reg", "mem_emulation_ff", "one"),
    # adder trees (popcounts, dot products' sums) are mostly LUTs after Yosys; other adders and compares are chains
    "carry": ("add_chain", "add_tree", "cmp", "mul_lut"),
}
SAME_FABRIC = {"xcup": "xc7"}         # an unmeasured family borrows the resource coefficients of a fitted one
log = logging.getLogger(__name__)


def build_config(entry: dict):
    """A configuration from one ``calibration_set.json`` entry."""
    from ..arch.dataflow.config import CodeType, DataflowConfig, LayerConfig
    from ..arch.systolic.config import SystolicConfig

    entry = dict(entry)
    if entry.pop("arch") == "systolic":
        return SystolicConfig(**entry)
    rows = entry["layers"]
    layers = []
    for i, (mw, mh, pe, simd, in_bits, in_signed, wbits, thresholds) in enumerate(rows):
        bipolar = in_bits == 0
        next_bipolar = i + 1 < len(rows) and rows[i + 1][4] == 0
        in_type = layers[-1].out_type if layers else (CodeType(1, bipolar=True) if bipolar
                                                      else CodeType(in_bits, in_signed))
        extra = {"base": -1, "step": 2} if next_bipolar else {}
        layers.append(LayerConfig(mw=mw, mh=mh, pe=pe, simd=simd, in_type=in_type, weight_bits=wbits,
                                  bipolar=bipolar, thresholds=thresholds, **extra))
    return DataflowConfig(tuple(layers))


def design_hash(verilog: str) -> str:
    """What a row records of the hardware it measured: the first 16 hex digits of the Verilog's SHA-256."""
    return hashlib.sha256(verilog.encode()).hexdigest()[:16]


def stale_rows(rows: list[dict]) -> list[dict]:
    """The rows whose hardware is not what the current generators build for their configuration (no recorded
    design hash, or a different one): measurements of an older design, which must not be fitted."""
    from .report import default_verilog

    current: dict[str, str] = {}
    out = []
    for r in rows:
        key = json.dumps(r["config"], sort_keys=True)
        if key not in current:
            current[key] = design_hash(default_verilog(build_config(r["config"]))[0])
        if r.get("design") != current[key]:
            out.append(r)
    return out


def entries(which: str) -> list[dict]:
    return json.loads(SET_FILE.read_text())[which]


def _measure(entry: dict, family: str, pnr: bool) -> dict:
    from .report import default_verilog
    from .synth import SynthesisError, synthesize

    config = build_config(entry)
    verilog, top = default_verilog(config)
    target = TARGETS[SYNTH_TARGET[family]]
    row = {"family": family, "target": target.name, "design": design_hash(verilog)}
    try:
        result = synthesize(verilog, top, target, pnr=pnr)
    except SynthesisError as exc:
        if not pnr:
            raise
        log.warning("%s on %s: place-and-route failed (%s); resources only", top, target.name, str(exc)[:200])
        result = synthesize(verilog, top, target, pnr=False)
        row["pnr_error"] = str(exc).splitlines()[0]
    row.update(resources=result.resources, cells=result.cells, fmax_mhz=result.fmax_mhz, tools=result.tools,
               seconds=round(result.seconds, 1))
    if result.yosys_fallback:                     # Yosys crashed in ABC9: LUTs mapped by classic ABC (see synth)
        row["yosys_fallback"] = result.yosys_fallback["mapper"]
    print(f"  {family:5s} {json.dumps(entry)[:70]:70s} lut {result.resources['lut']:7.0f} "
          f"fmax {result.fmax_mhz or 0:6.1f}  {result.seconds:5.1f} s", flush=True)
    return row


# place-and-route is the slow part (1–2 min per nextpnr-ecp5 run on a shared 2-core machine): fmax is measured on
# these many leading configurations of each set, resources on all of them. Calibration 0–5 are output-stationary,
# 6–9 weight-stationary (placed since 2026-12-07: fitted on output-stationary designs alone, the model put both
# held-out weight-stationary designs 22–29 % above their placed fmax; their controllers' and column accumulators'
# paths are their own)
PNR_COUNT = {"ecp5": {"calibration": 10, "heldout": 4}, "ice40": {"calibration": 0, "heldout": 0}}
FAMILY_ORDER = ("ecp5", "xc7", "ice40", "xcup")         # measured in this order (partial data is still usable)


def _with_pnr(name: str, index: int, family: str) -> bool:
    return index < PNR_COUNT.get(family, {}).get(name, 0)


def collect(jobs: int = 2, pnr: bool = True, sets: tuple[str, ...] = ("calibration", "heldout"),
            families: tuple[str, ...] = FAMILY_ORDER, stale: bool = False,
            archs: tuple[str, ...] = ("systolic", "dataflow")) -> dict:
    """Synthesize every configuration of ``sets`` for ``families`` (placing the :data:`PNR_COUNT` first ones),
    appending each measured row to ``calibration_data.json`` as it completes. Rows already there are kept, except,
    with ``stale``, those :func:`stale_rows` finds (measured on an older design): they are measured again.
    ``archs``: only the configurations of these architectures."""
    data = json.loads(DATA_FILE.read_text()) if DATA_FILE.is_file() else {
        "schema_version": 1, "date": datetime.date.today().isoformat(), "tools": {},
        "note": "measured by `python -m hwgen.estimate.calibrate collect`; see calibration_set.json", "rows": []}
    key = lambda r: (r["set"], r["index"], r["family"])
    redo = {key(r) for r in stale_rows([r for r in data["rows"] if r["family"] in families])} if stale else set()
    have = {key(r) for r in data["rows"]} - redo
    work = [(name, i, entry, family) for family in FAMILY_ORDER if family in families for name in sets
            for i, entry in enumerate(entries(name)) if (name, i, family) not in have and entry["arch"] in archs]
    lock = threading.Lock()

    def one(w):
        name, i, entry, family = w
        row = _measure(entry, family, pnr and _with_pnr(name, i, family))
        with lock:                                                # a stale row stays until its new one is in
            data["tools"].update(row.pop("tools"))
            data["rows"] = [r for r in data["rows"] if key(r) != (name, i, family)]
            data["rows"].append({"set": name, "index": i, "config": entry, **row})
            data["rows"].sort(key=lambda r: (r["set"], r["index"], FAMILIES.index(r["family"])))
            DATA_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, work))
    return data


def _nnls_fit(rows: list[tuple[dict, float]], names: tuple[str, ...], exact: str | None = None) -> dict[str, float]:
    """Non-negative coefficients of ``names`` for ``measured − f[exact]``, minimizing the error relative to the
    measured figure."""
    import numpy as np
    from scipy.optimize import nnls

    a = np.array([[f[k] for k in names] for f, _ in rows], float)
    y = np.array([m for _, m in rows], float)
    known = np.array([f[exact] if exact else 0.0 for f, _ in rows], float)
    w = 1.0 / np.maximum(y, 1.0)
    coef, _ = nnls(a * w[:, None], (y - known) * w)
    return {k: round(float(c), 6) for k, c in zip(names, coef)}


def _delay_fit(rows: list[tuple[list[dict], float]], start: dict[str, float]) -> dict[str, float]:
    import numpy as np
    from scipy.optimize import least_squares

    names = fpga.PATH_TERMS
    x0 = np.array([start.get(k, 0.5) for k in names])

    def residual(x):
        out = []
        for paths, fmax in rows:
            worst = max(sum(x[i] * p[k] for i, k in enumerate(names)) for p in paths)
            out.append((worst - 1000.0 / fmax) / (1000.0 / fmax))
        return out

    solution = least_squares(residual, x0, bounds=(0, np.inf))
    return {k: round(float(v), 4) for k, v in zip(names, solution.x)}


def placed_lut_max(rows: list[dict]) -> int:
    """The LUTs of the largest of ``rows`` (one family's calibration rows) placed and timed with nextpnr: the delay
    model is fitted up to there, and an estimate of a larger design says its fmax is extrapolated."""
    return int(max(r["resources"]["lut"] for r in rows if r["fmax_mhz"]))


def fit(families_to_fit: tuple[str, ...] = FAMILIES) -> dict:
    """Fit ``coefficients.json`` from the ``calibration`` rows of ``calibration_data.json``; the families not in
    ``families_to_fit`` keep their coefficients (e.g. while their rows are stale: measured on older hardware)."""
    data = json.loads(DATA_FILE.read_text())
    heldout = {json.dumps(e, sort_keys=True) for e in entries("heldout")}
    rows = [r for r in data["rows"] if r["set"] == "calibration"]
    if any(json.dumps(r["config"], sort_keys=True) in heldout for r in rows):
        raise ValueError("a held-out configuration is in the calibration rows; it must not be fitted")
    previous = fpga.coefficients()
    families = {}
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        if family not in families_to_fit:
            families[family] = previous["families"][family]
            continue
        if len(mine) < 8:
            families[family] = {**previous["families"][family], "status": f"not fitted ({len(mine)} rows measured)"}
            like = SAME_FABRIC.get(family)
            if like in families and "status" not in families[like]:
                families[family].update({metric: families[like][metric] for metric in RESOURCE_FEATURES},
                                        status=f"not fitted ({len(mine)} rows measured); resource coefficients of "
                                               f"{like} (same fabric and Yosys flow)")
            continue
        feats = [(fpga.features(build_config(r["config"]), family)[0], r) for r in mine]
        coeffs = {metric: _nnls_fit([(f, r["resources"][metric]) for f, r in feats], names, fpga.EXACT.get(metric))
                  for metric, names in RESOURCE_FEATURES.items()}
        timed = [(fpga.path_terms(build_config(r["config"]), family), r["fmax_mhz"]) for r in mine if r["fmax_mhz"]]
        if len(timed) >= 5:
            coeffs["delay_ns"] = _delay_fit(timed, previous["families"][family]["delay_ns"])
            coeffs["delay_source"] = f"fitted to nextpnr on {SYNTH_TARGET[family]} ({len(timed)} designs)"
            coeffs["placed_lut_max"] = placed_lut_max(mine)
        else:
            coeffs["delay_ns"] = previous["families"][family]["delay_ns"]
            coeffs["delay_source"] = "datasheet-derived guess (no open place-and-route)"
        families[family] = coeffs
    doc = {"schema_version": 1, "date": data["date"], "status": "fitted", "tools": data["tools"],
           "method": "per family: NNLS on relative error (lut, ff, carry); bounded least squares on path delay",
           "synth_targets": SYNTH_TARGET, "configurations": entries("calibration"), "families": families}
    fpga.COEFFICIENTS_FILE.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    fpga.coefficients.cache_clear()
    return doc


# ------------------------------------------------------------------------------------------------ ASIC
ASIC_DATA_FILE = HERE / "asic_calibration_data.json"
ASIC_LIBRARIES = ("osu018", "sky130")


def asic_stale_rows(rows: list[dict]) -> list[dict]:
    """The ASIC rows :func:`stale_rows` finds (measured on another design, or recording none) and those measured
    by an older flow than :data:`hwgen.estimate.asic.FLOW_VERSION` of their library (no ``flow``: version 1)."""
    from . import asic

    old = {id(r) for r in stale_rows(rows)}
    return [r for r in rows if id(r) in old or r.get("flow", 1) != asic.FLOW_VERSION[r["library"]]]


def _measure_asic(entry: dict, library: str, clock_gating: bool = False) -> dict:
    from . import asic
    from .report import default_verilog
    from .targets import ASIC_TARGETS

    verilog, top = default_verilog(build_config(entry))
    result = asic.synthesize(verilog, top, ASIC_TARGETS[library], clock_gating=clock_gating)
    print(f"  {library:6s} {'gated ' if clock_gating else ''}{json.dumps(entry)[:70]:70s} cells {result.cell_count:7d} "
          f"area {result.cell_area:11.0f} fmax {result.fmax_mhz or 0:6.1f}  {result.seconds:5.1f} s", flush=True)
    row = {"library": library, "cells": result.cell_count, "cell_area": result.cell_area,
           "srams": [list(x) for x in result.srams], "fmax_mhz": result.fmax_mhz, "leakage_mw": result.leakage_mw,
           "tools": result.tools, "seconds": round(result.seconds, 1), "design": design_hash(verilog),
           "flow": asic.FLOW_VERSION[library]}
    if clock_gating:
        row.update(clock_gating=True, clock_gates=result.clock_gates, gated_flops=result.gated_flops)
    return row


def _gated(row: dict) -> bool:
    return bool(row.get("clock_gating"))


def collect_asic(jobs: int = 1, sets: tuple[str, ...] = ("calibration", "heldout"), clock_gating: bool = False,
                 only: dict[str, list[int]] | None = None, stale: bool = False) -> dict:
    """Synthesize every configuration of ``sets`` (``only``: these indices per set) onto every ASIC library,
    clock-gated or not, appending rows to ``asic_calibration_data.json`` as they complete. Rows already there are
    kept, except, with ``stale``, those of the flow measured (gated or not) that :func:`asic_stale_rows` finds (no
    recorded design hash, or a different one: an older design; or an older flow): they are measured again and
    replaced. The ungated
    rows fit the base area model; the gated ones, beside them, its clock-gating terms."""
    data = json.loads(ASIC_DATA_FILE.read_text()) if ASIC_DATA_FILE.is_file() else {
        "schema_version": 1, "date": datetime.date.today().isoformat(), "tools": {},
        "note": "measured by `python -m hwgen.estimate.calibrate collect --asic`; see calibration_set.json",
        "rows": []}
    key = lambda r: (r["set"], r["index"], r["library"], _gated(r))
    asked = [r for r in data["rows"] if _gated(r) == clock_gating and r["set"] in sets
             and (only is None or r["index"] in only.get(r["set"], ()))]
    redo = {key(r) for r in asic_stale_rows(asked)} if stale else set()
    have = {key(r) for r in data["rows"]} - redo
    # the ASIC subset of each set; dataflow designs (seconds each) before systolic ones (minutes)
    subset = only or json.loads(SET_FILE.read_text())["asic"]
    ordered = sorted(((name, i, entry) for name in sets for i, entry in enumerate(entries(name))
                      if i in subset.get(name, ())),
                     key=lambda w: (w[2]["arch"] == "systolic", w[0] != "heldout", w[1]))
    work = [(name, i, entry, lib) for name, i, entry in ordered for lib in ASIC_LIBRARIES
            if (name, i, lib, clock_gating) not in have]
    lock = threading.Lock()

    def one(w):
        name, i, entry, lib = w
        row = _measure_asic(entry, lib, clock_gating)
        with lock:                                                # a stale row stays until its new one is in
            data["tools"].update(row.pop("tools"))
            data["rows"] = [r for r in data["rows"] if key(r) != (name, i, lib, clock_gating)]
            data["rows"].append({"set": name, "index": i, "config": entry, **row})
            data["rows"].sort(key=lambda r: (r["set"], r["index"], r["library"], _gated(r)))
            ASIC_DATA_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, work))
    return data


def _asic_delay_fit(rows: list[tuple[object, float]], start: dict[str, float]) -> dict[str, float]:
    """Delay model (ns per path term) of the ASIC paths against OpenSTA fmax."""
    return _delay_fit([(fpga.path_terms(config, "asic"), fmax) for config, fmax in rows], start)


def _clock_gating_fit(rows: list[dict], library: str) -> dict:
    """The clock-gating terms of ``library``'s area model: least squares (relative error) of gated − ungated cell
    area and cells over the calibration configurations synthesized both ways, in the clock gates and gated bits of
    :func:`hwgen.estimate.asic.clock_gate_groups` (a gate adds its cells; a gated flip-flop loses its enable
    multiplexer)."""
    import numpy as np

    from . import asic

    ungated = {r["index"]: r for r in rows if r["set"] == "calibration" and r["library"] == library and not _gated(r)}
    pairs = [(r, ungated[r["index"]]) for r in rows
             if r["set"] == "calibration" and r["library"] == library and _gated(r) and r["index"] in ungated]
    out: dict = {"rows": len(pairs), "terms": list(asic.GATING_FEATURES)}
    if len(pairs) < 2:
        out["status"] = f"not fitted ({len(pairs)} calibration configurations synthesized with clock gating)"
        return out
    a = np.array([asic.clock_gate_groups(build_config(g["config"])) for g, _ in pairs], float)
    for key in ("area", "cells"):
        base = np.array([u["cell_area" if key == "area" else "cells"] for _, u in pairs], float)
        delta = np.array([g["cell_area" if key == "area" else "cells"] for g, _ in pairs], float) - base
        coef, *_ = np.linalg.lstsq(a / base[:, None], delta / base, rcond=None)
        out[key] = {k: round(float(c), 6) for k, c in zip(asic.GATING_FEATURES, coef)}
    return out


def fit_asic() -> dict:
    """Fit ``asic_coefficients.json`` from the ``calibration`` rows of ``asic_calibration_data.json``."""
    from . import asic

    data = json.loads(ASIC_DATA_FILE.read_text())
    heldout = {json.dumps(e, sort_keys=True) for e in entries("heldout")}
    rows = [r for r in data["rows"] if r["set"] == "calibration" and not _gated(r)]
    if any(json.dumps(r["config"], sort_keys=True) in heldout for r in rows):
        raise ValueError("a held-out configuration is in the calibration rows; it must not be fitted")
    previous = asic.coefficients()["libraries"]
    libraries = {}
    for lib in ASIC_LIBRARIES:
        mine = [r for r in rows if r["library"] == lib]
        feats = [(asic.features(build_config(r["config"]))[0], r) for r in mine]
        coeffs = {"area": _nnls_fit([(f, r["cell_area"]) for f, r in feats], asic.AREA_FEATURES),
                  "cells": _nnls_fit([(f, r["cells"]) for f, r in feats], asic.AREA_FEATURES)}
        if lib == "osu018":
            timed = [(build_config(r["config"]), r["fmax_mhz"]) for r in mine if r["fmax_mhz"]]
            coeffs["delay_ns"] = _asic_delay_fit(timed, previous[lib]["delay_ns"])
            leak = [r["leakage_mw"] * 1e6 / r["cells"] for r in mine if r["leakage_mw"] and r["cells"]]
            coeffs["leakage_nw_per_cell"] = round(sum(leak) / len(leak), 6)
            coeffs["delay_source"] = f"fitted to OpenSTA on the OSU 0.18 µm netlists ({len(timed)} designs)"
        coeffs["rows"] = len(mine)
        coeffs["clock_gating"] = _clock_gating_fit(data["rows"], lib)
        libraries[lib] = coeffs
    doc = {"schema_version": 1, "date": data["date"], "status": "fitted", "tools": data["tools"],
           "method": "per library: NNLS on relative error (cell area, cells); bounded least squares on path delay "
                     "(OSU 0.18 µm, OpenSTA); leakage = mean Liberty leakage per cell",
           "configurations": [entries("calibration")[i] for i in sorted({r["index"] for r in rows})],
           "libraries": libraries}
    asic.COEFFICIENTS_FILE.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    asic.coefficients.cache_clear()
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hwgen.estimate.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("collect", "fit"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-pnr", action="store_true")
    parser.add_argument("--families", default=",".join(FAMILY_ORDER),
                        help="comma-separated (collect; fit: the others keep their coefficients)")
    parser.add_argument("--archs", default="systolic,dataflow", help="comma-separated (collect only)")
    parser.add_argument("--stale", action="store_true",
                        help="collect: measure again the rows whose design changed since they were measured")
    parser.add_argument("--asic", action="store_true", help="the ASIC libraries (sky130, osu018) instead of FPGAs")
    parser.add_argument("--clock-gating", action="store_true",
                        help="collect --asic: the clock-gated flow (rows beside the ungated ones)")
    parser.add_argument("--only", default=None,
                        help="collect --asic: indices per set, e.g. calibration:12,18;heldout:5")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.asic:
        if args.step == "collect":
            only = None
            if args.only:
                only = {name: [int(i) for i in ids.split(",")] for name, ids in
                        (part.split(":") for part in args.only.split(";"))}
            collect_asic(args.jobs, clock_gating=args.clock_gating, only=only, stale=args.stale)
        else:
            json.dump(fit_asic()["libraries"], sys.stdout, indent=1)
        return
    families = tuple(args.families.split(","))
    unknown = [f for f in families if f not in FAMILY_ORDER]
    if unknown:
        parser.error(f"--families: unknown {', '.join(unknown)}; known: {', '.join(FAMILY_ORDER)}")
    if args.step == "collect":
        collect(args.jobs, pnr=not args.no_pnr, families=families, stale=args.stale,
                archs=tuple(args.archs.split(",")))
    else:
        doc = fit(families)
        json.dump(doc["families"], sys.stdout, indent=1)


if __name__ == "__main__":
    main()
