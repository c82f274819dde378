"""Hardware quality: hwgen's int8 PE against hand-written Verilog, and the fmax of an 8×8 int8 array on ECP5.

::

    python benchmarks/hardware_quality.py [--out OUT] [--array 8x8] [--freq 150] [--seeds 1 2 3] [--array-only]

1. LUTs of hwgen's output-stationary int8 PE (``arch/systolic/pe.py``: operand = code − zero point, 10 bits;
   int8 weight; product register, then a 28-bit accumulator for k_max = 1024; shadow register and drain chain)
   against two hand-written Verilog modules synthesized the same way (``benchmarks/hand_mac.v``): ``hand_pe_os``
   does the PE's whole job (with the same product register), ``hand_mac_minimal`` only ``acc += a·w`` on int8.
   Yosys ``synth_ecp5`` (multiplier in a MULT18X18D) and ``synth_ice40`` (multiplier in LUTs). Goal: hwgen / hand
   ≤ 1.1.
2. fmax of the 8×8 int8 systolic array (``SystolicConfig(rows=8, cols=8, slot_depth=8, out_depth=16)``: the
   default activation and weight scratchpads, thresholds for 8 output-channel groups per lane, 16 words per
   output bank) on ECP5-85 (speed 6) after nextpnr (out of context, given the goal as its target clock:
   ``--freq 150``). Goal ≥ 150 MHz; the critical path is printed from nextpnr's report, and the analytic model's
   figure beside the placed one (the model is fitted on smaller placed designs: see its note on extrapolation).
   The block RAMs are sized to leave the device room: an int8 lane holds 255 thresholds per channel, so with the
   default ``slot_depth=64`` the lanes alone take 272 DP16KD and the design 368, more than the 208 of the LFE5U-85F
   (the analytic estimate says so before any synthesis; this benchmark checks it does), and a design that fills
   96 % of them (``slot_depth=16``, the output banks in block RAM: 200) spreads its memories over the whole device,
   with routes across it that no pipelining of the logic shortens.

``--array 4x4`` places a smaller array of the same configuration (a quicker proxy while working on the RTL's
speed, about 5 minutes a seed; the 8×8 array takes 40 minutes of one core, Yosys and packing 2, placement 8, router1
about 30 for ~700,000 iterations — an RTL of two sessions before needed over a million and one to two hours);
``--freq`` gives nextpnr another target clock, ``--seeds`` places it with each seed.
All runs go through ``hwgen.estimate.synth`` (cached by design hash, target clock and seed; logs under OUT/).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
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


def array_fmax(out: Path, config: SystolicConfig, freq_mhz: float, seeds: list[int]):
    """(the placement of ``config`` with each of ``seeds``, its analytic resources); the design is rendered and
    checked against the device once."""
    target = TARGETS["ecp5-85k"]
    analytic = fpga.estimate_resources(config, target.family)
    bram = analytic["bram"]
    if bram > target.bram:
        raise SystemExit(f"the {config.rows}×{config.cols} array needs {bram:.0f} {target.bram_unit} (analytic), "
                         f"{target.name} has {target.bram}: it cannot be placed")
    verilog = render_verilog(config)
    return [synthesize(verilog, TOP_NAME, target, out_dir=out / f"array{config.rows}x{config.cols}_{freq_mhz:g}_{seed}",
                       freq_mhz=freq_mhz, seed=seed) for seed in seeds], analytic


def _array(text: str) -> SystolicConfig:
    rows, _, cols = text.partition("x")
    if not (rows.isdigit() and cols.isdigit()):
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS, e.g. 4x4, got {text!r}")
    return replace(ARRAY, rows=int(rows), cols=int(cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/hardware_quality"))
    parser.add_argument("--array", type=_array, default=ARRAY, metavar="ROWSxCOLS",
                        help="the array placed (default 8x8, the goal's; a smaller one is a quicker proxy)")
    parser.add_argument("--freq", type=float, default=GOAL_MHZ, help="nextpnr's target clock, MHz (default: the goal)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="nextpnr placement seeds, one run each (placed fmax varies by several MHz between seeds)")
    parser.add_argument("--array-only", action="store_true", help="skip the PE comparison")
    args = parser.parse_args()
    if not args.array_only:
        print("## int8 PE: LUTs (FF) after Yosys\n")
        print("| target | hwgen PE | hand PE (same job) | hand MAC (minimal) | hwgen / hand PE | hwgen / hand MAC "
              "| goal |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for target, r in pe_luts(args.out):
            h, p, m = r["hwgen PE"], r["hand PE"], r["hand MAC"]
            print(f"| {target} | {h['lut']:.0f} ({h['ff']:.0f} FF, {h['dsp']:.0f} DSP) | {p['lut']:.0f} "
                  f"({p['ff']:.0f} FF) | {m['lut']:.0f} ({m['ff']:.0f} FF) | {h['lut'] / p['lut']:.2f}× "
                  f"| {h['lut'] / m['lut']:.2f}× | ≤ 1.1× |")
    config = args.array
    print(f"\n## {config.rows}×{config.cols} int8 systolic array on ECP5-85 (speed 6), nextpnr out of context, "
          f"--freq {args.freq:g}\n")
    results, analytic = array_fmax(args.out, config, args.freq, args.seeds)
    model = fpga.estimate_fmax(config, "ecp5")
    print(f"analytic fmax model: {model:.1f} MHz (fitted on placed designs up to "
          f"{fpga.coefficients()['families']['ecp5']['placed_lut_max']:,} LUTs; this one: "
          f"{analytic['lut']:,.0f} analytic)\n")
    for seed, result in zip(args.seeds, results):
        print(f"seed {seed}: fmax {result.fmax_mhz:.1f} MHz (goal, 8×8: ≥ {GOAL_MHZ} MHz; "
              f"placed / model {result.fmax_mhz / model:.2f}); "
              f"LUT {result.resources['lut']:.0f}, FF {result.resources['ff']:.0f}, DSP {result.resources['dsp']:.0f}, "
              f"BRAM {result.resources['bram']:.0f} (analytic {analytic['bram']:.0f} of {TARGETS['ecp5-85k'].bram})")
        print("critical path (nextpnr):")
        for line in result.critical_path:
            print("   " + line)
    figures = [result.fmax_mhz for result in results]
    if len(figures) > 1:
        print(f"\nfmax over {len(figures)} seeds: min {min(figures):.1f}, mean {sum(figures) / len(figures):.1f}, "
              f"max {max(figures):.1f} MHz")


if __name__ == "__main__":
    main()
