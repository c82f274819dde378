"""ASIC power and energy (hwgen.estimate.power): Liberty data, SAIF parsing, netlist energy arithmetic, workloads,
energy per inference, one gate-level run (Yosys onto OSU 0.18 µm + Verilator --trace-saif, ~1 min cold) and
``hwgen simulate --activity`` feeding ``hwgen estimate`` (method ``simulated``)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hwgen.estimate import estimate, pdk, power
from hwgen.estimate.power import CellPower
from tests.test_asic import needs_yosys
from tests.test_estimate import small_dataflow

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


def test_liberty_functions_become_verilog():
    assert power._verilog_function("(!(A B))") == "(!(A & B))"
    assert power._verilog_function("(A+B)") == "(A|B)"
    assert power._verilog_function("(!((A B)+C))") == "(!((A & B)|C))"
    assert power._verilog_function("(A B')") == "(A & !B)"
    models = power.cell_models(fake_cells())
    assert "module INV(input A, output Y);\n  assign Y = !A;" in models
    assert "always @(posedge CLK) IQ <= D;" in models


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
    assert parts["clock"] == pytest.approx(50 * 8 * ops["flop_clock"])
    assert parts["registers"] == pytest.approx(0.5 * 96 * ops["flop_toggle"])
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
    sky = power.energy_per_inference(work, "sky130")
    assert sky["total"] == pytest.approx(parts["total"] * power.SKY130_ENERGY_SCALE)
    assert power.mac_energy(3, 3, "osu018") == pytest.approx(
        np.interp(9, [4, 16], [ops["mac_2"], ops["mac_4"]]))


def test_energy_has_provenance():
    doc = power.energies()
    assert doc["library"] == "osu018" and doc["unit"] == "pJ" and doc["cycles"] >= 1000
    assert set(doc["operations"]) >= {"mac_2", "mac_4", "mac_8", "flop_clock", "flop_toggle",
                                      "scratchpad_read_bit", "scratchpad_write_bit", "requant_compare_bit"}
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
    each cycle, and that costs energy on top of the clock's."""
    verilog = power.blocks_verilog()
    cycles = 400
    runs = power.gate_level(verilog, [power.block(verilog, "reg32", "reg_hold", hold=("d",)),
                                      power.block(verilog, "reg32", "reg_random")], cycles)
    hold, rand = runs["reg_hold"], runs["reg_random"]
    assert hold.flops == rand.flops == 32
    assert hold.data_toggles <= 32
    assert 0.4 * 32 * cycles < rand.data_toggles < 0.6 * 32 * cycles
    assert rand.dynamic_pj > hold.dynamic_pj
    clock = power.input_energy(power.load_library(pdk.osu018_liberty())["DFFPOSX1"], "CLK")
    assert hold.passive_pj >= 32 * 2 * cycles * clock * 0.99


def test_simulate_activity_then_estimate(example_dir, tmp_path):
    """`hwgen simulate --activity` records cycles and toggles; `hwgen estimate --target osu018` then reports the
    energy with method `simulated` and the measured cycles."""
    import hwgen

    out = tmp_path / "design"
    design = hwgen.compile(example_dir / "digits_mlp.onnx", rows=2, cols=2)
    design.write(out)
    np.save(tmp_path / "x.npy", np.load(example_dir / "test_x.npy")[:2])
    run = subprocess.run([sys.executable, "-m", "hwgen", "simulate", str(out), "--inputs", str(tmp_path / "x.npy"),
                          "--output", str(tmp_path / "y.npy"), "--activity"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    activity = json.loads((out / "activity.json").read_text())
    report = json.loads((out / "sim_report.json").read_text())
    assert activity["cycles"] == report["cycles"] and activity["samples"] == 2 and activity["toggles"] > 0
    assert (out / "activity.saif").is_file()
    result = subprocess.run([sys.executable, "-m", "hwgen", "estimate", str(out), "--target", "osu018", "--json"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["metrics"]["energy_per_inference"]["method"] == "simulated"
    assert doc["energy"]["workload"]["cycles"] == activity["cycles_per_inference"]
    bad = subprocess.run([sys.executable, "-m", "hwgen", "simulate", str(out), "--inputs", str(tmp_path / "x.npy"),
                          "--output", str(tmp_path / "y.npy"), "--activity", "--wave", str(tmp_path / "w.vcd")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--activity records its own trace" in bad.stderr
