"""Fidelity of the per-operation energy model: its energy per cycle vs a full gate-level SAIF power computation on
three small designs that were not used to characterize it (``pe_row4``, ``mac2_store``, ``os_tile2x2`` in
``flows/power_blocks.v.j2``), OSU 0.18 µm, random operands.

::

    python benchmarks/asic_power_fidelity.py [--cycles 2000]

Gate level: Yosys onto osu018_stdcells with clock gating (each scratchpad word behind an integrated clock gate),
Verilator --trace-saif, every cell's Liberty internal energy at its toggles plus ½·C·V² per net transition
(hwgen.estimate.power.gate_level). Per-operation model: the design's operation counts per cycle × ``energy.json``
(MACs, scratchpad bits read and written, requantizer comparison bits, register toggles), its ungated flip-flops ×
``flop_clock`` every cycle, the gated ones × ``flop_clock`` on the cycles their word is written (``os_tile2x2``:
the registers loaded under an enable, :class:`hwgen.estimate.power.RegisterGates`, on their enabled cycles), and
the clock gates × ``icg_cycle`` every cycle + × ``icg_enable`` per enabled cycle. The gate counts are the design's
(16 words of 16 bits each; the tile's two top-row shadows); the netlists' own counts are printed beside. Goal:
within ±25 %.
"""
from __future__ import annotations

import argparse
import time

from hwgen.estimate import power

# operations per cycle of each design (random inputs: a 1-bit enable is high half the time; a register bit
# outside the characterized MAC / scratchpad blocks toggles with probability ½); a 16 × 16 scratchpad is 16 clock
# gates of 16 flip-flops, one of them enabled per write
OPERATIONS = {
    "pe_row4": {"macs": [(4, 4, 4)], "read_bits": 16, "write_bits": 0.5 * 16, "compare_bits": 14 * 14,
                "register_toggles": 0.5 * (14 + 4), "clock_gates": 16, "gated_flops": 256, "gate_enables": 0.5},
    "mac2_store": {"macs": [(2, 8, 8)], "read_bits": 16, "write_bits": 16, "compare_bits": 0,
                   "register_toggles": 0.5 * 16, "clock_gates": 16, "gated_flops": 256, "gate_enables": 1.0},
    # 2 × 2 OS tile, valid / last / shift each high half the time: 4 MACs of 4 × 4 bits (operand registers and
    # accumulators included); outside them the 8-bit product registers, valid and last (valid & last: high a
    # quarter of the time, toggling with probability 2 · ¼ · ¾) and the four 14-bit shadows, loaded on
    # shift | (valid & last) = 1 − ½ · ¾ = ⅝ of the cycles; the two top-row shadows are behind two clock gates
    "os_tile2x2": {"macs": [(4, 4, 4)], "read_bits": 0, "write_bits": 0, "compare_bits": 0,
                   "register_toggles": 4 * (0.5 * 8 + 0.5 + 0.375 + 0.625 * 0.5 * 14),
                   "clock_gates": 0, "gated_flops": 0, "gate_enables": 0.0,
                   "register_gates": [(2, 14, 0.625)]},
}


def model_pj_per_cycle(ops: dict, flops: int) -> dict[str, float]:
    """The per-operation model's energy per cycle: :func:`hwgen.estimate.power.energy_per_inference` of one cycle's
    operations."""
    work = power.Workload(tuple(ops["macs"]), ops["read_bits"], ops["write_bits"], ops["compare_bits"], flops, 1.0,
                          clock_gates=ops["clock_gates"], gated_flops=ops["gated_flops"],
                          gated_clocked=ops["gate_enables"] * ops["gated_flops"] / max(1, ops["clock_gates"]),
                          gate_enables=ops["gate_enables"],
                          register_gates=tuple(power.RegisterGates(f"group{i}", g, b, e)
                                               for i, (g, b, e) in enumerate(ops.get("register_gates", ()))))
    parts = power.energy_per_inference(work, "osu018")
    parts["registers"] = ops["register_toggles"] * power.op_energy("flop_toggle", "osu018")   # the design's own
    parts["total"] = sum(v for k, v in parts.items() if k != "total")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    verilog = power.blocks_verilog()
    blocks = [power.block(verilog, "pe_row4", hold=("thresholds",)), power.block(verilog, "mac2_store"),
              power.block(verilog, "os_tile2x2", low=("rst",))]
    started = time.perf_counter()
    runs = power.gate_level(verilog, blocks, args.cycles)
    seconds = time.perf_counter() - started
    doc = power.energies()
    print(f"per-operation energies characterized {doc['date']} ({doc['library']}, {doc['cycles']} cycles); "
          f"gate-level runs of {args.cycles} cycles took {seconds:.0f} s\n")
    print("| design | flops (gated) | clock gates | gate level pJ/cycle | per-op model pJ/cycle | error | error with "
          "enabled registers clocked every cycle | model: mac / scratchpad / requant / registers / clock / clock "
          "gates |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, ops in OPERATIONS.items():
        run = runs[name]
        gate = run.dynamic_pj / args.cycles
        model = model_pj_per_cycle(ops, run.flops)
        error = 100 * (model["total"] - gate) / gate
        ungated = model_pj_per_cycle({**ops, "register_gates": ()}, run.flops)
        error_ungated = 100 * (ungated["total"] - gate) / gate
        split = " / ".join(f"{model[k]:.2f}" for k in ("mac", "scratchpad", "requant", "registers", "clock",
                                                        "clock_gates"))
        print(f"| {name} | {run.flops} ({run.gated_flops}) | {run.clock_gates} | {gate:.2f} | {model['total']:.2f} | "
              f"{error:+.1f}% {'✓' if abs(error) <= 25 else '✗'} | {error_ungated:+.1f}% | {split} |")


if __name__ == "__main__":
    main()
