"""Fidelity of the per-operation energy model: its energy per cycle vs a full gate-level SAIF power computation on
two small designs that were not used to characterize it (``pe_row4``, ``mac2_store`` in
``flows/power_blocks.v.j2``), OSU 0.18 µm, random operands.

::

    python benchmarks/asic_power_fidelity.py [--cycles 2000]

Gate level: Yosys onto osu018_stdcells, Verilator --trace-saif, every cell's Liberty internal energy at its
toggles plus ½·C·V² per net transition (hwgen.estimate.power.gate_level). Per-operation model: the design's
operation counts per cycle × ``energy.json`` (MACs, scratchpad bits read and written, requantizer comparison bits,
register toggles) + its flip-flops × clock energy. Goal: within ±25 %.
"""
from __future__ import annotations

import argparse
import time

from hwgen.estimate import power

# operations per cycle of each design (random inputs: a 1-bit enable is high half the time; a register bit
# outside the characterized MAC / scratchpad blocks toggles with probability ½)
OPERATIONS = {
    "pe_row4": {"macs": [(4, 4, 4)], "read_bits": 16, "write_bits": 0.5 * 16, "compare_bits": 14 * 14,
                "register_toggles": 0.5 * (14 + 4)},
    "mac2_store": {"macs": [(2, 8, 8)], "read_bits": 16, "write_bits": 16, "compare_bits": 0,
                   "register_toggles": 0.5 * 16},
}


def model_pj_per_cycle(ops: dict, flops: int) -> dict[str, float]:
    parts = {"mac": sum(n * power.mac_energy(a, b, "osu018") for n, a, b in ops["macs"]),
             "scratchpad": ops["read_bits"] * power.op_energy("scratchpad_read_bit", "osu018")
             + ops["write_bits"] * power.op_energy("scratchpad_write_bit", "osu018"),
             "requant": ops["compare_bits"] * power.op_energy("requant_compare_bit", "osu018"),
             "registers": ops["register_toggles"] * power.op_energy("flop_toggle", "osu018"),
             "clock": flops * power.op_energy("flop_clock", "osu018")}
    parts["total"] = sum(parts.values())
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    verilog = power.blocks_verilog()
    blocks = [power.block(verilog, "pe_row4", hold=("thresholds",)), power.block(verilog, "mac2_store")]
    started = time.perf_counter()
    runs = power.gate_level(verilog, blocks, args.cycles)
    seconds = time.perf_counter() - started
    doc = power.energies()
    print(f"per-operation energies characterized {doc['date']} ({doc['library']}, {doc['cycles']} cycles); "
          f"gate-level runs of {args.cycles} cycles took {seconds:.0f} s\n")
    print("| design | flops | gate level pJ/cycle | per-op model pJ/cycle | error | model: mac / scratchpad / "
          "requant / registers / clock |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, ops in OPERATIONS.items():
        gate = runs[name].dynamic_pj / args.cycles
        model = model_pj_per_cycle(ops, runs[name].flops)
        error = 100 * (model["total"] - gate) / gate
        split = " / ".join(f"{model[k]:.2f}" for k in ("mac", "scratchpad", "requant", "registers", "clock"))
        print(f"| {name} | {runs[name].flops} | {gate:.2f} | {model['total']:.2f} | {error:+.1f}% "
              f"{'✓' if abs(error) <= 25 else '✗'} | {split} |")


if __name__ == "__main__":
    main()
