"""Fidelity of the analytic FPGA models: analytic vs Yosys (LUT, FF, carry, DSP) and vs nextpnr (fmax) on the
held-out configurations of ``hwgen/estimate/calibration_set.json`` (listed before fitting, never fitted).

::

    python benchmarks/estimate_fidelity.py            # uses the measured rows of calibration_data.json
    python benchmarks/estimate_fidelity.py --synth    # re-measures them (cached by design hash)

Goal: LUT / FF / DSP within ±15 %, fmax within ±20 % of nextpnr. Also prints the same errors on the calibration
set (in-sample) for comparison.
"""
from __future__ import annotations

import argparse
import json

from hwgen.estimate import fpga
from hwgen.estimate.calibrate import DATA_FILE, SYNTH_TARGET, _measure, build_config, entries
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


def report(which: str, data: list[dict]) -> dict:
    print(f"\n## {which}: analytic vs synthesized (error %, model − measured)\n")
    print("| family | design | " + " | ".join(f"{m} (meas → err)" for m in METRICS) + " | fmax MHz (nextpnr → err) |")
    print("| --- | --- | " + " | ".join("---:" for _ in METRICS) + " | ---: |")
    summary = {}
    for r in data:
        family = r["family"]
        config = build_config(r["config"])
        model = fpga.estimate_resources(config, family)
        cells = []
        for m in METRICS:
            e = error(model[m], r["resources"][m])
            summary.setdefault((family, m), []).append(e)
            cells.append(f"{r['resources'][m]:.0f} → {'—' if e is None else f'{e:+.0f}%'}")
        fmax = r.get("fmax_mhz")
        if fmax:
            e = error(fpga.estimate_fmax(config, family), fmax)
            summary.setdefault((family, "fmax"), []).append(e)
            cells.append(f"{fmax:.0f} → {e:+.0f}%")
        else:
            cells.append("—")
        name = r["config"]["arch"] + (f" {r['config']['rows']}×{r['config']['cols']} {r['config']['dataflow']} "
                                      f"a{r['config']['a_bits']}w{r['config']['w_bits']}"
                                      if r["config"]["arch"] == "systolic" else f" {len(r['config']['layers'])} layers")
        print(f"| {family} | {name} | " + " | ".join(cells) + " |")
    print(f"\n### {which}: mean |error| % and share within the goal (±15 % resources, ±20 % fmax)\n")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth", action="store_true", help="re-measure (cached) instead of reading the data file")
    args = parser.parse_args()
    doc = fpga.coefficients()
    print(f"coefficients fitted {doc.get('date')} with {doc.get('tools')}; synthesis targets {SYNTH_TARGET}")
    unhashed = [r for r in json.loads(DATA_FILE.read_text())["rows"] if "design" not in r]
    if unhashed:
        print(f"warning: {len(unhashed)} rows record no design hash, so they may measure older hardware; "
              "`python -m hwgen.estimate.calibrate collect --stale` measures the changed ones again")
    report("heldout", rows("heldout", args.synth))
    report("calibration", rows("calibration", False))


if __name__ == "__main__":
    main()
