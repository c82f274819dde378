"""ASIC power and energy (hwgen.estimate.power): Liberty data, SAIF parsing, netlist energy arithmetic, workloads,
energy per inference, one gate-level run (Yosys onto OSU 0.18 µm + Verilator --trace-saif, ~1 min cold) and
``hwgen simulate --activity`` feeding ``hwgen estimate`` (method ``simulated``)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from hwgen.estimate import estimate, pdk, power
from hwgen.estimate.power import CellPower
from tests.test_asic import needs_yosys
from tests.test_estimate import SMALL, small_dataflow

SAIF = """(SAIFILE
(SAIFVERSION "2.0")
(DURATION 1000)
 (INSTANCE power_tb
  (NET
   (clk (T0 500) (T1 500) (TZ 0) (TX 0) (TB 0) (TC 200))
  )
  (INSTANCE u
   (NET
    (a\\[0\\] (T0 500) (T1 500) (TZ 0) (TX 0) (TB 0) (TC 7))
    (_05_ (T0 500) (T1 500) (TZ 0) (TX 0) (TB 0) (TC 3))
   )
   (INSTANCE _1_
    (NET
     (A (T0 500) (T1 500) (TZ 0) (TX 0) (TB 0) (TC 7))
    )
   )
  )
 )
)
"""


def fake_cells() -> dict[str, CellPower]:
    flat = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([[2.0, 2.0], [2.0, 2.0]]))
    inv = CellPower("INV", inputs={"A": 0.01}, outputs={"Y": "!A"}, arcs={"Y": [flat]}, leakage_nw=1.0)
    dff = CellPower("DFF", inputs={"CLK": 0.02, "D": 0.01}, outputs={"Q": "IQ"}, arcs={"Y": []},
                    passive={"CLK": (np.array([0.0, 1.0]), np.array([0.5, 0.5]))}, leakage_nw=2.0,
                    ff={"clocked_on": "CLK", "next_state": "D", "state": "IQ"})
    return {"INV": inv, "DFF": dff}


def gated_cells() -> dict[str, CellPower]:
    """fake_cells plus a latch and an AND: enough for a clock gate (LATCH on the inverted clock, AND with it)."""
    flat = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([[1.0, 1.0], [1.0, 1.0]]))
    cells = fake_cells()
    cells["LATCH"] = CellPower("LATCH", inputs={"CLK": 0.02, "D": 0.01}, outputs={"Q": "DS0000"}, arcs={"Q": [flat]},
                               passive={"CLK": (np.array([0.0, 1.0]), np.array([0.25, 0.25]))}, leakage_nw=1.0,
                               latch={"enable": "CLK", "data_in": "D", "state": "DS0000"})
    cells["AND2"] = CellPower("AND2", inputs={"A": 0.01, "B": 0.01}, outputs={"Y": "(A B)"}, arcs={"Y": [flat]})
    return cells


def test_liberty_functions_become_verilog():
    assert power._verilog_function("(!(A B))") == "(!(A & B))"
    assert power._verilog_function("(A+B)") == "(A|B)"
    assert power._verilog_function("(!((A B)+C))") == "(!((A & B)|C))"
    assert power._verilog_function("(A B')") == "(A & !B)"
    models = power.cell_models(fake_cells())
    assert "module INV(input A, output Y);\n  assign Y = !A;" in models
    assert "always @(posedge CLK) IQ <= D;" in models
    latch = power.cell_models(gated_cells())
    assert "module LATCH(input CLK, input D, output Q);\n  reg DS0000 = 1'b0;\n  always @* if (CLK) DS0000 = D;" in latch
    assert "module AND2(input A, input B, output Y);\n  assign Y = (A & B);" in latch


def test_osu018_liberty_power_data():
    cells = power.load_library(pdk.osu018_liberty())
    nand = cells["NAND2X1"]
    assert nand.inputs == {"A": 0.0125, "B": 0.0129035} and nand.leakage_nw == pytest.approx(0.0393659)
    assert 0.01 < power.output_energy(nand, "Y", 0.02) < 0.1          # pJ per transition
    dff = cells["DFFPOSX1"]
    assert dff.ff["clocked_on"] == "CLK" and power.input_energy(dff, "CLK") > 0


def test_saif_parsing():
    duration, scopes = power.parse_saif(SAIF)
    assert duration == 1000
    assert scopes["power_tb"] == {"clk": 200}
    assert scopes["power_tb/u"] == {"a[0]": 7, "_05_": 3}
    assert scopes["power_tb/u/_1_"] == {"A": 7}


def test_netlist_energy_arithmetic():
    netlist = """module u(clk, a, q);
  INV _1_ (
    .A(a[0]),
    .Y(_05_)
  );
  DFF _2_ (
    .CLK(clk),
    .D(_05_),
    .Q(q)
  );
  assign x = _05_;
endmodule
"""
    cells = fake_cells()
    result = power.netlist_energy(netlist, {"a[0]": 7, "_05_": 3, "clk": 200, "q": 3}, cells, cycles=100)
    assert result.internal_pj == pytest.approx(3 * 2.0)               # INV output: 3 toggles × 2 pJ
    assert result.passive_pj == pytest.approx(200 * 0.5)              # DFF clock pin
    loads = {"a[0]": 0.01 + power.WIRE_PF_PER_FANOUT, "_05_": 0.01 + power.WIRE_PF_PER_FANOUT,
             "clk": 0.02 + power.WIRE_PF_PER_FANOUT}
    toggles = {"a[0]": 7, "_05_": 3, "clk": 200}
    assert result.switching_pj == pytest.approx(sum(0.5 * c * 1.8 ** 2 * toggles[n] for n, c in loads.items()))
    assert result.flops == 1 and result.data_toggles == 3 and result.leakage_nw == 3.0


def test_netlist_energy_counts_gated_clocks():
    """Flip-flops on a net other than the root clock are behind a clock gate: the run's clock accounting counts the
    gate, its flip-flops, its enabled cycles (rising edges of the gated clock) and every flip-flop's clock edges."""
    netlist = """module g(clk, en, d, q);
  INV _0_ (.A(clk), .Y(clk_n));
  LATCH _1_ (.CLK(clk_n), .D(en), .Q(en_l));
  AND2 _2_ (.A(en_l), .B(clk), .Y(gclk));
  DFF _3_ (.CLK(gclk), .D(d), .Q(q[0]));
  DFF _4_ (.CLK(gclk), .D(d), .Q(q[1]));
  DFF _5_ (.CLK(clk), .D(d), .Q(r));
endmodule
"""
    toggles = {"clk": 200, "clk_n": 200, "en_l": 10, "gclk": 60, "d": 0, "q[0]": 0, "q[1]": 0, "r": 0}
    result = power.netlist_energy(netlist, toggles, gated_cells(), cycles=100)
    assert (result.flops, result.clock_gates, result.gated_flops) == (3, 1, 2)
    assert result.gated_clock_cycles == 30 and result.flop_clock_cycles == 2 * 30 + 100
    assert result.passive_pj == pytest.approx(2 * 60 * 0.5 + 200 * 0.5 + 200 * 0.25)   # gated, ungated DFF; LATCH
    assert result.internal_pj == pytest.approx(200 * 2.0 + 10 * 1.0 + 60 * 1.0)             # INV, LATCH, AND


def test_gated_writes_and_clock_gate_groups():
    assert power.gated_writes(0, 0, 100, 10.0) == (0.0, 0.0)
    assert power.gated_writes(16, 256, 64, 10.0) == (64.0, 4.0)          # 64 bits written = 4 slices of 16
    assert power.gated_writes(2, 8, 1000, 10.0) == (80.0, 20.0)          # at most every gated flop every cycle
    from hwgen.estimate import asic

    # small_dataflow's flip-flop memories: mvau0 weights (3-bit slices: under the 4-flop minimum, not gated) and its
    # 2 × 12 input buffer (2 gates), the thresholds (2 PEs × 2 words × 4 slices of 9 bits), mvau1's 2 × 4 buffer,
    # the 2 × 4 FIFO
    assert asic.clock_gate_groups(small_dataflow()) == (2 + 16 + 2 + 2, 24 + 16 * 9 + 8 + 8)
    assert asic.clock_gate_groups(small_dataflow(), min_flops=100) == (0, 0)


def test_dataflow_workload_counts():
    cfg = small_dataflow()
    work = power.dataflow_workload(cfg, 20.0)
    first, last = cfg.layers
    assert work.macs == ((8 * 4, first.operand_shape.width, 3), (4 * 2, last.operand_shape.width, 3))
    assert work.compare_bits == first.mh * first.thresholds * first.threshold_bits
    assert work.cycles == 20.0 and work.flops > 0 and work.sram_accesses == ()


def test_energy_per_inference_sums_operations():
    work = power.Workload(macs=((100, 4, 4),), read_bits=64, write_bits=32, compare_bits=10, flops=50, cycles=8.0)
    parts = power.energy_per_inference(work, "osu018")
    ops = power.energies()["operations"]
    assert parts["mac"] == pytest.approx(100 * ops["mac_4"])
    assert parts["scratchpad"] == pytest.approx(64 * ops["scratchpad_read_bit"] + 32 * ops["scratchpad_write_bit"])
    assert parts["clock"] == pytest.approx(50 * 8 * ops["flop_clock"]) and parts["clock_gates"] == 0
    assert parts["registers"] == pytest.approx(0.5 * 96 * ops["flop_toggle"])
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
    sky = power.energy_per_inference(work, "sky130")
    assert sky["total"] == pytest.approx(parts["total"] * power.SKY130_ENERGY_SCALE)
    # 32 of the 50 flip-flops behind 2 gates of 16, 32 bits written: 32 gated clock edges, 2 enabled gate-cycles
    gated = replace(work, clock_gates=2, gated_flops=32, gated_clocked=32.0, gate_enables=2.0)
    g = power.energy_per_inference(gated, "osu018")
    assert g["clock"] == pytest.approx((18 * 8 + 32) * ops["flop_clock"])
    assert g["clock_gates"] == pytest.approx(2 * 8 * ops["icg_cycle"] + 2 * ops["icg_enable"])
    assert g["mac"] == parts["mac"] and g["scratchpad"] == parts["scratchpad"]
    # the activity factor scales the data-dependent energies exactly, nothing else
    quiet = power.energy_per_inference(replace(gated, activity=0.25), "osu018")
    for key in power.DATA_DEPENDENT:
        assert quiet[key] == pytest.approx(0.25 * g[key])
    for key in ("clock", "clock_gates", "sram"):
        assert quiet[key] == g[key]
    assert power.mac_energy(3, 3, "osu018") == pytest.approx(
        np.interp(9, [4, 16], [ops["mac_2"], ops["mac_4"]]))


def test_dataflow_register_gates_follow_the_schedule():
    # small_dataflow: mvau0 (mw 8, mh 4, PE 2, SIMD 4, 3-bit inputs and weights: sf = nf = 2, 4 compute cycles),
    # thresholds 3 × 9 bits + the negate flag per PE; mvau1 (mw 4, mh 2, PE 1, SIMD 2, 2-bit inputs, 3-bit
    # weights: 4 compute cycles); the 2-word FIFO between them, lcm(2, 2) = 2 codes of 2 bits wide
    gates = {g.name: (g.gates, g.bits, g.enabled, g.extra) for g in power.dataflow_register_gates(small_dataflow())}
    assert gates == {"mvau0.weights": (2, 12, 4.0, True), "mvau0.input_buffer": (1, 12, 4.0, True),
                     "thresholds0": (2, 28, 2.0, True), "mvau1.weights": (1, 6, 4.0, True),
                     "mvau1.input_buffer": (1, 4, 4.0, True), "fifo1": (1, 4, 2.0, True)}
    work = power.dataflow_workload(small_dataflow(), 20.0)
    plain = power.Workload(work.macs, work.read_bits, work.write_bits, work.compare_bits, 0, 20.0)
    from hwgen.estimate import asic

    features, _ = asic.features(small_dataflow())
    # the read registers are flip-flops the structure counts leave out
    assert work.flops == features["reg"] + features["memff_bits"] + 2 * 12 + 12 + 2 * 28 + 6 + 4 + 4
    assert work.register_gated_flops == 2 * 12 + 12 + 2 * 28 + 6 + 4 + 4 and plain.register_gated_flops == 0
    # ungated: the counted registers and the memory words in slices under the 4-flop minimum (mvau0's weights)
    assert work.ungated_flops == features["reg"] + features["memff_bits"] - asic.clock_gate_groups(small_dataflow())[1]


def test_systolic_register_gates_follow_the_tiles():
    from types import SimpleNamespace

    layer = SimpleNamespace(conv=None, k=10, n=3)           # one sample: M = 1, K = 10, N = 3 on a 2 × 2 array
    os_cfg = replace(SMALL, rows=2, cols=2)
    acc, sb = os_cfg.acc_bits, os_cfg.store_bits
    gates = {g.name: (g.gates, g.bits, g.enabled) for g in power.systolic_register_gates(os_cfg, [layer])}
    # OS: ⌈1/2⌉·⌈3/2⌉ = 2 tiles, each captured (1 cycle) and drained (2 shifts) through the top row's shadows;
    # 1·10·⌈3/2⌉ = 20 operand words read over 2 banks
    assert gates == {"pe.shadow": (2, acc, 6.0), "activation_banks.read": (2, 2 * sb, 10.0),
                     "output_banks.read": (2, 2 * acc, 0.0), "stream_out.stage": (2, 2 * acc, 0.0)}
    # the program's tile counts when given (3 M tiles × 2 N tiles for a batch of 2: 3 per inference)
    instr = [{"m_tiles": 3, "n_tiles": 2, "k_tiles": 1}]
    assert power.systolic_register_gates(os_cfg, [layer], instr, batch=2)[0].enabled == 3 * 3
    ws = replace(os_cfg, dataflow="ws")
    gates = {g.name: (g.gates, g.bits, g.enabled) for g in power.systolic_register_gates(ws, [layer])}
    # WS: ⌈10/2⌉·⌈3/2⌉ = 10 folds, each shifting its weights in (2 cycles) and committing them (1)
    assert gates["pe.weight_chain"] == (4, ws.w_bits, 20.0) and gates["pe.weight"] == (4, ws.w_bits, 10.0)
    assert "pe.shadow" not in gates
    narrow = replace(ws, w_bits=3)                          # 3-bit weight registers: under the 4-flop minimum
    assert "pe.weight" not in {g.name for g in power.systolic_register_gates(narrow, [layer])}


def test_gated_registers_are_clocked_when_enabled():
    # 100 flip-flops over 10 cycles: 40 of them in 5 gated groups of 8, each enabled on 3 cycles; one group of 4
    # enabled on every cycle (12 > 10 cycles: capped)
    groups = (power.RegisterGates("a", 5, 8, 3.0), power.RegisterGates("b", 1, 4, 12.0))
    work = power.Workload(macs=(), read_bits=0, write_bits=0, compare_bits=0, flops=100, cycles=10.0,
                          register_gates=groups)
    ops = power.energies()["operations"]
    parts = power.energy_per_inference(work, "osu018")
    assert work.ungated_flops == 100 - 40 - 4
    assert work.register_clock() == (40 * 3 + 4 * 10, 5 * 3 + 10)
    assert parts["clock"] == pytest.approx((56 * 10 + 120 + 40) * ops["flop_clock"])
    assert parts["clock_gates"] == pytest.approx(6 * 10 * ops["icg_cycle"] + 25 * ops["icg_enable"])
    ungated = power.energy_per_inference(replace(work, register_gates=()), "osu018")
    assert ungated["clock"] == pytest.approx(100 * 10 * ops["flop_clock"]) and ungated["clock_gates"] == 0
    assert parts["total"] < ungated["total"]


def test_energy_has_provenance():
    doc = power.energies()
    assert doc["library"] == "osu018" and doc["unit"] == "pJ" and doc["cycles"] >= 1000
    assert set(doc["operations"]) >= {"mac_2", "mac_4", "mac_8", "flop_clock", "flop_toggle", "icg_cycle",
                                      "icg_enable", "scratchpad_read_bit", "scratchpad_write_bit",
                                      "requant_compare_bit"}
    assert "clock gating" in doc["method"] and doc["blocks"]["gate_on"]["clock_gates"] == 1
    assert doc["operations"]["icg_cycle"] < 32 * doc["operations"]["flop_clock"]       # gating 32 flops pays
    assert doc["operations"]["mac_2"] < doc["operations"]["mac_4"] < doc["operations"]["mac_8"]


@pytest.mark.parametrize("target", ["sky130", "osu018"])
def test_asic_report_energy(target):
    doc = estimate(small_dataflow(), target).to_dict()
    m = doc["metrics"]
    assert m["energy_per_inference"]["unit"] == "nJ" and m["energy_per_inference"]["method"] == "analytic"
    assert m["power_dynamic"]["unit"] == "mW"
    energy = doc["energy"]
    seconds = energy["seconds_per_inference"]
    assert m["power_dynamic"]["value"] == pytest.approx(energy["dynamic"]["total"] * 1e-9 / seconds, rel=1e-2)
    assert m["energy_per_inference"]["value"] == pytest.approx(
        (energy["dynamic"]["total"] + energy["leakage"]) / 1000, rel=1e-2)


@needs_yosys
def test_gate_level_clock_and_data_energy():
    """reg32 at gate level: the clock toggles twice a cycle, random data makes half the flip-flop outputs toggle
    each cycle, and that costs energy on top of the clock's. greg32 (loaded under an enable) is synthesized behind
    one clock gate (INVX1 + LATCH + AND2X1 on OSU 0.18 µm): with the enable low its flip-flops see no clock edge
    and it costs less than reg32 holding data; with the enable high they see every one."""
    verilog = power.blocks_verilog()
    cycles = 400
    runs = power.gate_level(verilog, [power.block(verilog, "reg32", "reg_hold", hold=("d",)),
                                      power.block(verilog, "reg32", "reg_random"),
                                      power.block(verilog, "greg32", "gate_off", hold=("d",), low=("en",)),
                                      power.block(verilog, "greg32", "gate_on", high=("en",))], cycles)
    hold, rand = runs["reg_hold"], runs["reg_random"]
    assert hold.flops == rand.flops == 32 and hold.clock_gates == 0
    assert hold.flop_clock_cycles == pytest.approx(32 * cycles, abs=32)
    assert hold.data_toggles <= 32
    assert 0.4 * 32 * cycles < rand.data_toggles < 0.6 * 32 * cycles
    assert rand.dynamic_pj > hold.dynamic_pj
    clock = power.input_energy(power.load_library(pdk.osu018_liberty())["DFFPOSX1"], "CLK")
    assert hold.passive_pj >= 32 * 2 * cycles * clock * 0.99
    off, on = runs["gate_off"], runs["gate_on"]
    assert (off.clock_gates, off.gated_flops) == (on.clock_gates, on.gated_flops) == (1, 32)
    assert off.flop_clock_cycles == off.gated_clock_cycles == 0 and off.data_toggles == 0
    assert on.gated_clock_cycles == pytest.approx(cycles, abs=1) and on.flop_clock_cycles == pytest.approx(32 * cycles,
                                                                                                             abs=32)
    assert 0.4 * 32 * cycles < on.data_toggles < 0.6 * 32 * cycles             # loads the random data every cycle
    assert off.dynamic_pj < 0.2 * hold.dynamic_pj


def test_simulate_activity_then_estimate(example_dir, tmp_path):
    """`hwgen simulate --activity` records cycles, toggles and the activity relative to a run on random input codes;
    `hwgen estimate --target osu018` then reports the energy with method `simulated`: the measured cycles, and the
    data-dependent energies × that activity, exactly. All-zero inputs toggle the data path less than random ones and
    cost less energy per inference on the same design."""
    import hwgen

    out = tmp_path / "design"
    design = hwgen.compile(example_dir / "digits_mlp.onnx", rows=2, cols=2)
    design.write(out)
    x = np.load(example_dir / "test_x.npy")[:2]
    analytic = design.estimate("osu018").to_dict()["energy"]
    # the gated top-row shadows (2 × 2 OS array: 1 row × 2 columns) are enabled R + 1 cycles per tile of the program
    batch = design.program.batch
    tiles = sum(i["m_tiles"] * i["n_tiles"] for i in design.program.instructions(batch)) / batch
    shadow = next(g for g in analytic["workload"]["register_gates"] if g["name"] == "pe.shadow")
    assert (shadow["gates"], shadow["bits"], shadow["enabled"]) == (2, design.config.acc_bits, tiles * 3)

    def run(inputs: np.ndarray) -> tuple[dict, dict]:
        np.save(tmp_path / "x.npy", inputs)
        sim = subprocess.run([sys.executable, "-m", "hwgen", "simulate", str(out), "--inputs", str(tmp_path / "x.npy"),
                              "--output", str(tmp_path / "y.npy"), "--activity"], capture_output=True, text=True,
                             check=False)
        assert sim.returncode == 0, sim.stderr
        est = subprocess.run([sys.executable, "-m", "hwgen", "estimate", str(out), "--target", "osu018", "--json"],
                             capture_output=True, text=True, check=False)
        assert est.returncode == 0, est.stderr
        return json.loads((out / "activity.json").read_text()), json.loads(est.stdout)

    activity, doc = run(power.reference_inputs(design.model, x, seed=1))          # random input codes
    report = json.loads((out / "sim_report.json").read_text())
    assert activity["cycles"] == report["cycles"] and activity["samples"] == 2 and activity["toggles"] > 0
    assert (out / "activity.saif").is_file() and (out / "activity_reference.saif").is_file()
    # the documented rule, recomputed from the two SAIFs
    _, nets = power._rtl_toggles(out / "activity.saif")
    _, reference = power._rtl_toggles(out / "activity_reference.saif")
    factor, data_nets = power.activity_factor(nets, activity["cycles"], reference, activity["reference"]["cycles"])
    assert activity["activity"] == factor and activity["data_nets"] == data_nets > 0
    assert 0.8 < factor < 1.25                                                # random codes again: about 1
    assert doc["metrics"]["energy_per_inference"]["method"] == "simulated"
    energy = doc["energy"]
    assert energy["workload"]["cycles"] == activity["cycles_per_inference"] and energy["workload"]["activity"] == factor
    for key in power.DATA_DEPENDENT:
        assert energy["dynamic"][key] == pytest.approx(factor * analytic["dynamic"][key], rel=1e-6, abs=2e-3)
    random_nj = doc["metrics"]["energy_per_inference"]["value"]

    quiet, quiet_doc = run(np.zeros_like(x))
    assert quiet["activity"] < factor
    assert quiet_doc["metrics"]["energy_per_inference"]["value"] < random_nj
    assert quiet_doc["energy"]["dynamic"]["mac"] == pytest.approx(quiet["activity"] * analytic["dynamic"]["mac"],
                                                                  rel=1e-6, abs=2e-3)
    assert quiet_doc["energy"]["dynamic"]["clock"] == energy["dynamic"]["clock"]      # same cycles, same clock

    bad = subprocess.run([sys.executable, "-m", "hwgen", "simulate", str(out), "--inputs", str(tmp_path / "x.npy"),
                          "--output", str(tmp_path / "y.npy"), "--activity", "--wave", str(tmp_path / "w.vcd")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--activity records its own trace" in bad.stderr
