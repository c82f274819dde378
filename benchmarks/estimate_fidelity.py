"""Fidelity of the analytic FPGA models: analytic vs Yosys (LUT, FF, carry, DSP) and vs nextpnr (fmax) on the
held-out configurations of ``hwgen/estimate/calibration_set.json`` (listed before fitting, never fitted).

::

    python benchmarks/estimate_fidelity.py            # uses the measured rows of calibration_data.json
    python benchmarks/estimate_fidelity.py --synth    # re-measures them (cached by design hash)

Goal: LUT / FF / DSP within ±15 %, fmax within ±20 % of nextpnr. Also prints the same errors on the calibration
set (in-sample) for comparison.

ASIC (sky130, osu018): analytic cell area / cells / fmax vs Yosys + Liberty and OpenSTA on the ASIC subset of the
held-out list (``asic_calibration_data.json``, ``python -m hwgen.estimate.calibrate collect --asic``), both the
ungated flow's rows (base model) and the clock-gated flow's (``collect --asic --clock-gating``; base model + the
clock-gating terms). Goal: area within ±15 %.
"""
from __future__ import annotations

import argparse
import json

from hwgen.estimate import fpga
from hwgen.estimate.calibrate import (DATA_FILE, SYNTH_TARGET, _measure, asic_stale_rows, build_config, entries,
                                      stale_rows)
from hwgen.estimate.targets import FAMILIES

METRICS = ("lut", "ff", "carry", "dsp", "bram")


def rows(which: str, resynth: bool) -> list[dict]:
    if resynth:
        return [{"config": e, **_measure(e, f, f in ("ecp5", "ice40"))} for e in entries(which) for f in FAMILIES]
    return [r for r in json.loads(DATA_FILE.read_text())["rows"] if r["set"] == which]


def error(model: float, measured: float) -> float | None:
    if measured == 0:
        return None if model == 0 else float("inf")
    return 100.0 * (model - measured) / measured


def report(which: str, data: list[dict], stale: set[tuple[str, str]] = frozenset()) -> dict:
    """The table of ``data`` and its summary; rows in ``stale`` ((family, JSON of the configuration): measured on
    hardware the generators no longer build) are shown, marked, and left out of the summary."""
    print(f"\n## {which}: analytic vs synthesized (error %, model − measured)\n")
    print("| family | design | " + " | ".join(f"{m} (meas → err)" for m in METRICS) + " | fmax MHz (nextpnr → err) |")
    print("| --- | --- | " + " | ".join("---:" for _ in METRICS) + " | ---: |")
    summary = {}
    for r in data:
        family = r["family"]
        config = build_config(r["config"])
        old = (family, json.dumps(r["config"], sort_keys=True)) in stale
        model = fpga.estimate_resources(config, family)
        cells = []
        for m in METRICS:
            e = error(model[m], r["resources"][m])
            if not old:
                summary.setdefault((family, m), []).append(e)
            cells.append(f"{r['resources'][m]:.0f} → {'—' if e is None else f'{e:+.0f}%'}")
        fmax = r.get("fmax_mhz")
        if fmax:
            e = error(fpga.estimate_fmax(config, family), fmax)
            if not old:
                summary.setdefault((family, "fmax"), []).append(e)
            cells.append(f"{fmax:.0f} → {e:+.0f}%")
        else:
            cells.append("—")
        name = r["config"]["arch"] + (f" {r['config']['rows']}×{r['config']['cols']} {r['config']['dataflow']} "
                                      f"a{r['config']['a_bits']}w{r['config']['w_bits']}"
                                      if r["config"]["arch"] == "systolic" else f" {len(r['config']['layers'])} layers")
        print(f"| {family} | {name}{' (stale)' if old else ''} | " + " | ".join(cells) + " |")
    print(f"\n### {which}: mean |error| % and share within the goal (±15 % resources, ±20 % fmax)"
          f"{', stale rows left out' if stale else ''}\n")
    print("| family | " + " | ".join((*METRICS, "fmax")) + " |")
    print("| --- | " + " | ".join("---:" for _ in (*METRICS, "fmax")) + " |")
    for family in FAMILIES:
        cells = []
        for m in (*METRICS, "fmax"):
            errs = [abs(e) for e in summary.get((family, m), []) if e is not None]
            if not errs:
                cells.append("—")
                continue
            goal = 20 if m == "fmax" else 15
            within = sum(e <= goal for e in errs)
            cells.append(f"{sum(errs) / len(errs):.1f} ({within}/{len(errs)})")
        print(f"| {family} | " + " | ".join(cells) + " |")
    return summary


def asic_report(which: str) -> None:
    from hwgen.estimate import asic
    from hwgen.estimate.calibrate import ASIC_DATA_FILE, ASIC_LIBRARIES

    if not ASIC_DATA_FILE.is_file():
        print("\n(no ASIC calibration data: python -m hwgen.estimate.calibrate collect --asic)")
        return
    rows = [r for r in json.loads(ASIC_DATA_FILE.read_text())["rows"] if r["set"] == which]
    stale = {id(r) for r in asic_stale_rows(rows)}
    print(f"\n## ASIC {which}: analytic vs synthesized (error %, model − measured)\n")
    if stale:
        print(f"{len(stale)} rows record no design hash, another design than the generators build today or an "
              "older flow (marked stale, left out of the summaries); `python -m hwgen.estimate.calibrate collect "
              "--asic [--clock-gating] --stale` measures them again\n")
    print("| library | design | cell area µm² (meas → err) | cells (meas → err) | fmax MHz (OpenSTA → err) |")
    print("| --- | --- | ---: | ---: | ---: |")
    summary: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        lib = asic.coefficients()["libraries"][r["library"]]
        config = build_config(r["config"])
        features, _ = asic.features(config)
        gated = bool(r.get("clock_gating"))
        extra = dict(zip(("area", "cells"), asic.gating_terms(config, r["library"]) if gated else (0.0, 0.0)))
        cells = []
        kept = summary if id(r) not in stale else {}              # stale rows: shown, not summarized
        for key, measured in (("area", r["cell_area"]), ("cells", r["cells"])):
            e = error(asic._linear(lib[key], features) + extra[key], measured)
            kept.setdefault((r["library"] + (" gated" if gated else ""), key), []).append(e)
            cells.append(f"{measured:,.0f} → {e:+.0f}%")
        if r.get("fmax_mhz"):
            model = 1000.0 / max(asic.path_delays(build_config(r["config"]), r["library"]))
            e = error(model, r["fmax_mhz"])
            kept.setdefault((r["library"] + (" gated" if gated else ""), "fmax"), []).append(e)
            cells.append(f"{r['fmax_mhz']:.0f} → {e:+.0f}%")
        else:
            cells.append("—")
        config = r["config"]
        name = config["arch"] + (f" {config['rows']}×{config['cols']} {config['dataflow']}"
                                 if config["arch"] == "systolic" else f" {len(config['layers'])} layers")
        print(f"| {r['library']}{' clock-gated' if gated else ''} | {name}{' (stale)' if id(r) in stale else ''} | "
              + " | ".join(cells) + " |")
    print(f"\n### ASIC {which}: mean |error| % (within goal: ±15 % area/cells, ±20 % fmax)\n")
    print("| library | area | cells | fmax |")
    print("| --- | ---: | ---: | ---: |")
    for lib in [x + suffix for x in ASIC_LIBRARIES for suffix in ("", " gated")]:
        if not any(k[0] == lib for k in summary):
            continue
        out = []
        for key, goal in (("area", 15), ("cells", 15), ("fmax", 20)):
            errs = [abs(e) for e in summary.get((lib, key), [])]
            out.append(f"{sum(errs) / len(errs):.1f} ({sum(e <= goal for e in errs)}/{len(errs)})" if errs else "—")
        print(f"| {lib} | " + " | ".join(out) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth", action="store_true", help="re-measure (cached) instead of reading the data file")
    args = parser.parse_args()
    doc = fpga.coefficients()
    print(f"coefficients fitted {doc.get('date')} with {doc.get('tools')}; synthesis targets {SYNTH_TARGET}")
    stale: set[tuple[str, str]] = set()
    if not args.synth:
        old = stale_rows(json.loads(DATA_FILE.read_text())["rows"])
        stale = {(r["family"], json.dumps(r["config"], sort_keys=True)) for r in old}
        if old:
            print(f"{len(old)} rows measured hardware the generators no longer build (marked stale, left out of "
                  "the summaries); `python -m hwgen.estimate.calibrate collect --stale` measures them again")
    report("heldout", rows("heldout", args.synth), stale)
    report("calibration", rows("calibration", False), stale)
    asic_report("heldout")
    asic_report("calibration")


if __name__ == "__main__":
    main()
