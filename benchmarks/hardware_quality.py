"""Hardware quality: hwgen's int8 PE against hand-written Verilog, and the fmax of an 8×8 int8 array on ECP5.

::

    python benchmarks/hardware_quality.py [--out OUT]

1. LUTs of hwgen's output-stationary int8 PE (``arch/systolic/pe.py``: operand = code − zero point, 10 bits;
   int8 weight; product register, then a 28-bit accumulator for k_max = 1024; shadow register and drain chain)
   against two hand-written Verilog modules synthesized the same way (``benchmarks/hand_mac.v``): ``hand_pe_os``
   does the PE's whole job (with the same product register), ``hand_mac_minimal`` only ``acc += a·w`` on int8.
   Yosys ``synth_ecp5`` (multiplier in a MULT18X18D) and ``synth_ice40`` (multiplier in LUTs). Goal: hwgen / hand
   ≤ 1.1.
2. fmax of the 8×8 int8 systolic array (``SystolicConfig(rows=8, cols=8, slot_depth=8, out_depth=16)``: the
   default activation and weight scratchpads, thresholds for 8 output-channel groups per lane, 16 words per
   output bank) on ECP5-85 (speed 6) after nextpnr (out of context, given the goal as its target clock:
   ``--freq 150``). Goal ≥ 150 MHz; the critical path is printed from nextpnr's report. The block RAMs are sized
   to leave the device room: an int8 lane holds 255 thresholds per channel, so with the default ``slot_depth=64``
   the lanes alone take 272 DP16KD and the design 368, more than the 208 of the LFE5U-85F (the analytic estimate
   says so before any synthesis; this benchmark checks it does), and a design that fills 96 % of them (``slot_depth=16``, the output banks in block RAM: 200)
   spreads its memories over the whole device, with routes across it that no pipelining of the logic shortens.

All runs go through ``hwgen.estimate.synth`` (cached by design hash; logs under OUT/synth/).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog

from hwgen.arch.systolic.config import SystolicConfig
from hwgen.arch.systolic.pe import OutputStationaryPE
from hwgen.design import TOP_NAME, render_verilog
from hwgen.estimate import TARGETS, fpga
from hwgen.estimate.synth import synthesize

HAND = Path(__file__).with_name("hand_mac.v")


def pe_luts(out: Path) -> list[tuple]:
    cfg = SystolicConfig(a_bits=8, w_bits=8, k_max=1024)
    hwgen_pe = amaranth_verilog.convert(OutputStationaryPE(cfg), name="hwgen_pe", emit_src=False)
    hand = HAND.read_text()
    rows = []
    for target in ("ecp5-85k", "ice40-hx8k"):
        results = {}
        for name, text, top in (("hwgen PE", hwgen_pe, "hwgen_pe"), ("hand PE", hand, "hand_pe_os"),
                                ("hand MAC", hand, "hand_mac_minimal")):
            results[name] = synthesize(text, top, TARGETS[target], pnr=False, out_dir=out / top).resources
        rows.append((target, results))
    return rows


GOAL_MHZ = 150                 # nextpnr is given the goal as its target clock
ARRAY = SystolicConfig(rows=8, cols=8, a_bits=8, w_bits=8, slot_depth=8, out_depth=16)


def array_fmax(out: Path):
    target = TARGETS["ecp5-85k"]
    bram = fpga.estimate_resources(ARRAY, target.family)["bram"]
    if bram > target.bram:
        raise SystemExit(f"the 8×8 array needs {bram:.0f} {target.bram_unit} (analytic), {target.name} has "
                         f"{target.bram}: it cannot be placed")
    return synthesize(render_verilog(ARRAY), TOP_NAME, target, out_dir=out / "array8x8", freq_mhz=GOAL_MHZ), bram


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/hardware_quality"))
    args = parser.parse_args()
    print("## int8 PE: LUTs (FF) after Yosys\n")
    print("| target | hwgen PE | hand PE (same job) | hand MAC (minimal) | hwgen / hand PE | hwgen / hand MAC | goal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for target, r in pe_luts(args.out):
        h, p, m = r["hwgen PE"], r["hand PE"], r["hand MAC"]
        print(f"| {target} | {h['lut']:.0f} ({h['ff']:.0f} FF, {h['dsp']:.0f} DSP) | {p['lut']:.0f} ({p['ff']:.0f} FF) "
              f"| {m['lut']:.0f} ({m['ff']:.0f} FF) | {h['lut'] / p['lut']:.2f}× | {h['lut'] / m['lut']:.2f}× | ≤ 1.1× |")
    result, bram = array_fmax(args.out)
    print("\n## 8×8 int8 systolic array on ECP5-85 (speed 6), nextpnr out of context\n")
    print(f"fmax {result.fmax_mhz:.1f} MHz (goal ≥ {GOAL_MHZ} MHz, nextpnr --freq {GOAL_MHZ}); "
          f"LUT {result.resources['lut']:.0f}, FF "
          f"{result.resources['ff']:.0f}, DSP {result.resources['dsp']:.0f}, BRAM {result.resources['bram']:.0f} "
          f"(analytic {bram:.0f} of {TARGETS['ecp5-85k'].bram})")
    print("\ncritical path (nextpnr):")
    for line in result.critical_path:
        print("   " + line)


if __name__ == "__main__":
    main()
