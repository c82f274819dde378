"""The dataflow architecture in Verilator: bit-exact against the golden model, II and latency equal to the analytic
model, through the Python API and the CLI.

Verilator builds (cached in ~/.cache/hwgen): one per folded structure — the bundled example at an automatic and an
explicit folding (the CLI test reuses the latter), three zoo MLPs at their automatic folding and a tiny MLP.
Fully folded (PE = SIMD = 1) and fully unrolled pipelines are covered in Amaranth's simulator
(test_dataflow_top.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen import verilator
from hwgen.arch.dataflow.design import TOP_NAME
from modelzoo import build
from onnx_helpers import mlp
from test_systolic_verilator import cli

EXAMPLE = "digits_mlp.onnx"
DATAFLOW_ZOO = ["mlp_w8a8_int32bias_perchannel_qcdq", "mlp_qdq_s8_perchannel", "tfc_1w1a_qonnx"]


def check_exact(report: dict) -> None:
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["latency_cycles"] == report["predicted_latency_cycles"]
    assert report["cycles"] == report["predicted_cycles"]
    if report["samples"] > 1:
        assert report["ii_cycles"] == report["predicted_ii_cycles"]


@pytest.mark.parametrize("fold", [
    {"target_cycles": 64},                                                                  # automatic
    {"fold": [{"pe": 4, "simd": 2}, {"pe": 8, "simd": 4}, {"pe": 2, "simd": 8}]},          # explicit, mixed
])
def test_example_at_several_foldings(fold: dict, example_dir: Path) -> None:
    design = hwgen.compile(example_dir / EXAMPLE, arch="dataflow", **fold)
    x = np.load(example_dir / "test_x.npy")[:12]
    result = design.simulate(x)
    check_exact(result.report)
    np.testing.assert_array_equal(result.outputs, design.model.run(x))
    bound = max(layer["cycles"] for layer in design.program.fold_report())
    assert result.report["predicted_ii_cycles"] <= 1.02 * bound


@pytest.mark.parametrize("name", DATAFLOW_ZOO)
def test_zoo_mlps(name: str, zoo_dir: Path) -> None:
    """Bit widths 1–8, bipolar XNOR layers, signed activations, zero points, BatchNorm, per-channel scales."""
    zoo = build(name, zoo_dir)
    design = hwgen.compile(zoo.path, arch="dataflow", target_cycles=256)
    result = design.simulate(zoo.inputs[:16])
    check_exact(result.report)
    np.testing.assert_array_equal(result.outputs, design.model.run(zoo.inputs[:16]))


def test_cli_compile_simulate_and_mutation(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "df"
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps([{"pe": 4, "simd": 2}, {"pe": 8, "simd": 4}, {"pe": 2, "simd": 8}]))
    result = cli("compile", example_dir / EXAMPLE, "--arch", "dataflow", "--fold", fold, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "II 512 cycles" in result.stdout
    again = cli("compile", example_dir / EXAMPLE, "--arch", "dataflow", "--fold", fold, "-o", tmp_path / "again")
    assert again.returncode == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert {"rtl/hwgen_dataflow.v", "rtl/hwgen_dataflow_axi.v", "manifest.json", "weights.load", "thresholds.load",
            "parameters.load", "report.md", "regmap.md", "hwgen_dataflow_axi.core"} <= set(files)
    for name in files:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arch"] == "dataflow" and {u["unit"] for u in manifest["units"]} >= {"MVAU", "host: input quantizer"}
    assert {p["name"] for p in manifest["ports"]} >= {"s_axis_tdata", "s_axis_tvalid", "s_axis_tready",
                                                      "s_axis_tlast", "m_axis_tdata", "m_axis_tlast"}
    x, y = example_dir / "test_x.npy", tmp_path / "y.npy"
    result = cli("simulate", out, "--inputs", x, "--output", y)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "sim_report.json").read_text())
    check_exact(report)
    golden_y = tmp_path / "golden.npy"
    assert cli("golden", example_dir / EXAMPLE, "--inputs", x, "--output", golden_y).returncode == 0
    assert np.load(y).tobytes() == np.load(golden_y).tobytes()
    # corrupted weight words (one input feature of the first layer, every output channel): the check bites
    lines = (out / "weights.load").read_text().splitlines()
    for index in range(0, 64 * 8, 8):
        target, bank, addr, lane, value = map(int, lines[index].split())
        lines[index] = f"{target} {bank} {addr} {lane} {value ^ 7}"
    (out / "weights.load").write_text("\n".join(lines) + "\n")
    result = cli("simulate", out, "--inputs", x, "--output", y)
    assert result.returncode == 1
    assert json.loads((out / "sim_report.json").read_text())["mismatches"] > 0


def test_refusals(example_dir: Path) -> None:
    with pytest.raises(hwgen.HwgenError, match=r"--set act_depth: the dataflow architecture has no such"):
        hwgen.compile(example_dir / EXAMPLE, arch="dataflow", act_depth=4)
    with pytest.raises(hwgen.HwgenError, match=r"--fold and --target-cycles apply to --arch dataflow"):
        hwgen.compile(example_dir / EXAMPLE, target_cycles=10)
    design = hwgen.compile(example_dir / EXAMPLE, arch="dataflow", target_cycles=64)
    with pytest.raises(hwgen.HwgenError, match=r"always streams"):
        design.simulate(np.zeros((1, 64), np.float32), stream=False)


def test_lint_yosys_and_hostile_names() -> None:
    plain, hostile = mlp(k=8, n=4), mlp(k=8, n=4)
    for node, name in zip(hostile.graph.node, ["名前", "x" * 5000, "endmodule; initial $finish;", "module", "module"]):
        node.name = name
    designs = [hwgen.compile(hwgen.Model(m), arch="dataflow", target_cycles=8) for m in (plain, hostile)]
    assert designs[0].verilog_sha256 == designs[1].verilog_sha256
    assert verilator.lint_problems(designs[1].verilog, TOP_NAME) == []
    assert verilator.yosys_check(designs[1].verilog, TOP_NAME) == []
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    check_exact(designs[1].simulate(x).report)


def test_cocotb_axi_stream_with_random_backpressure() -> None:
    """The AXI-Stream top in the cocotb testbench: bit-exact under random stalls on both sides; without stalls the
    first-input → last-output span is the analytic one."""
    design = hwgen.compile(hwgen.Model(mlp(k=8, n=4)), arch="dataflow", target_cycles=8)
    x = np.random.default_rng(1).normal(size=(9, 8)).astype(np.float32)
    for seed in (1, 2):
        report = design.simulate(x, backend="cocotb", backpressure=0.4, seed=seed).report
        assert report["bit_exact"] and report["io_cycles"] > report["predicted_cycles"] + 1, report
    report = design.simulate(x, backend="cocotb", backpressure=0).report
    assert report["bit_exact"] and report["io_cycles"] == report["predicted_cycles"] + 1, report
