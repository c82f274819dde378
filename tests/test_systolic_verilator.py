"""The systolic design in Verilator: CLI compile/simulate, bit-exact against the golden model, cycles equal to the
prediction, one build serving many models, mutation tests, lint, Yosys checks, determinism and hostile names.

Verilator builds (cached in ~/.cache/hwgen across runs): the bundled example on 8×8; one shared 4×3 configuration
that runs every MLP below and the random chains; 1×4 and 4×1; a 2×2 with a broken PE.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwgen
from hwgen import verilator
from hwgen.arch.systolic.compile import compile_layers, default_config, run_layers
from hwgen.design import TOP_NAME, render_verilog
from modelzoo import build
from onnx_helpers import mlp
from test_systolic_sim import random_layers

# One configuration big enough for every model below: weights and thresholds are loaded at run time, so they all
# share one Verilog and one Verilator build.
SHARED = dict(rows=4, cols=3, batch=16, a_bits=8, w_bits=8, k_max=786, out_bits=8, act_depth=2 * 4 * 262,
              weight_depth=24000, slot_depth=128, out_depth=64, prog_depth=8)
ZOO_MLPS = ["mlp_w4a4_qonnx", "mlp_w4a4_dynamo_qcdq", "mlp_w8a8_int32bias_perchannel_qonnx",
            "mlp_w8a8_int32bias_perchannel_qcdq", "mlp_ops_qonnx", "mlp_ops_dynamo_qcdq", "mlp_qdq_u8_pertensor",
            "mlp_qdq_s8_perchannel",
            "tfc_1w1a_qonnx", "tfc_2w2a_qonnx", "tfc_2w2a_qcdq"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def digits_design(example_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "design"
    result = cli("compile", example_dir / "digits_mlp.onnx", "--arch", "systolic", "--rows", 8, "--cols", 8,
                 "--dataflow", "os", "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def test_example_bit_exact_with_exact_cycles(digits_design: Path, example_dir: Path, tmp_path: Path) -> None:
    x = example_dir / "test_x.npy"
    golden_y = tmp_path / "golden.npy"
    assert cli("golden", example_dir / "digits_mlp.onnx", "--inputs", x, "--output", golden_y).returncode == 0
    sim_y = tmp_path / "sim.npy"
    result = cli("simulate", digits_design, "--inputs", x, "--output", sim_y, "--labels", example_dir / "test_y.npy")
    assert result.returncode == 0, result.stderr
    assert np.load(sim_y).tobytes() == np.load(golden_y).tobytes()
    report = json.loads((digits_design / "sim_report.json").read_text())
    design = hwgen.open_design(digits_design)
    samples = len(np.load(x))
    assert report["samples"] == samples and report["bit_exact"] and report["mismatches"] == 0
    assert report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(samples)
    assert report["verilog_sha256"] == design.verilog_sha256
    assert report["schema_version"] == 1 and report["sim_cycles_per_second"] > 0
    accuracy = np.mean(np.load(sim_y).argmax(1) == np.load(example_dir / "test_y.npy"))
    assert f"RTL top-1 accuracy: {100 * accuracy:.2f}%" in result.stdout


def test_weight_stationary_cli(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ws"
    result = cli("compile", example_dir / "digits_mlp.onnx", "--rows", 4, "--cols", 4, "--dataflow", "ws", "-o", out)
    assert result.returncode == 0, result.stderr
    result = cli("simulate", out, "--inputs", example_dir / "test_x.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "sim_report.json").read_text())
    assert report["bit_exact"] and report["cycles"] == report["predicted_cycles"]
    assert json.loads((out / "manifest.json").read_text())["config"]["dataflow"] == "ws"


def test_corrupted_weight_image_is_caught(digits_design: Path, example_dir: Path, tmp_path: Path) -> None:
    mutant = tmp_path / "mutant"
    subprocess.run(["cp", "-r", str(digits_design), str(mutant)], check=True)
    # the first layer's weight from the centre pixel (k = 28, never blank in digits) to channel 0: bank 0, word 28
    image = mutant / "weights.load"
    rows = [line.split() for line in image.read_text().splitlines()]
    old = next((int(r[4]) for r in rows if r[:4] == ["2", "0", "28", "0"]), 0)
    image.write_text(image.read_text() + f"2 0 28 0 {old + 3}\n")     # a later load of a word replaces it
    result = cli("simulate", mutant, "--inputs", example_dir / "test_x.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 1
    report = json.loads((mutant / "sim_report.json").read_text())
    assert not report["bit_exact"] and report["mismatches"] > 0
    assert "MISMATCHES" in result.stdout


def test_broken_pe_is_caught(example_dir: Path, tmp_path: Path) -> None:
    design = hwgen.compile(example_dir / "digits_mlp.onnx", rows=2, cols=2, broken_pe=(1, 0))
    design.write(tmp_path / "broken")
    result = cli("simulate", tmp_path / "broken", "--inputs", example_dir / "test_x.npy", "--output",
                 tmp_path / "y.npy")
    assert result.returncode == 1
    report = json.loads((tmp_path / "broken" / "sim_report.json").read_text())
    assert report["mismatches"] > 0


def test_compile_is_deterministic(example_dir: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = cli("compile", example_dir / "digits_mlp.onnx", "--rows", 4, "--cols", 3, "--rom", "-o",
                     tmp_path / name)
        assert result.returncode == 0, result.stderr
    files = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file())
    top_level = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert top_level == ["hwgen_systolic_axi.core", "lint_waivers.vlt", "manifest.json", "model.onnx",
                         "program.load", "regmap.md", "report.md", "rtl", "thresholds.load", "vivado",
                         "weights.load"]
    assert {"rtl/hwgen_systolic.v", "rtl/hwgen_systolic_rom.v", "rtl/hwgen_systolic_axi.v"} <= set(files)
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_manifest_maps_every_op_to_a_unit(example_dir: Path) -> None:
    design = hwgen.compile(example_dir / "digits_mlp.onnx", rows=4, cols=3)
    manifest = design.manifest()
    units = [(u["op"], u["unit"]) for u in manifest["units"]]
    assert units == [("Quantize", "host: input quantizer"), ("MatMul", "systolic array"),
                     ("MultiThreshold", "requant lanes"), ("MatMul", "systolic array"),
                     ("MultiThreshold", "requant lanes"), ("MatMul", "systolic array"),
                     ("Dequantize", "host: output dequantizer")]
    assert manifest["schema_version"] == 1 and manifest["top"] == TOP_NAME
    assert {p["name"] for p in manifest["ports"]} >= {"load__payload", "read__payload", "rdata__payload", "start",
                                                     "done", "cycles", "clk", "rst"}
    assert manifest["cycle_model"]["cycles_per_full_run"] == design.predicted_cycles(design.program.batch)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("name", ZOO_MLPS)
def test_zoo_mlps_share_one_build(name: str, dataflow: str, zoo_dir: Path) -> None:
    zoo = build(name, zoo_dir)
    design = hwgen.compile(zoo.path, dataflow=dataflow, **SHARED)
    shared = hwgen.compile(build(ZOO_MLPS[0], zoo_dir).path, dataflow=dataflow, **SHARED)
    assert design.verilog_sha256 == shared.verilog_sha256
    result = design.simulate(zoo.inputs)
    assert result.report["bit_exact"], result.report
    assert result.report["cycles"] == result.report["predicted_cycles"]
    np.testing.assert_array_equal(result.outputs, design.model.run(zoo.inputs))


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("rows, cols", [(1, 4), (4, 1)])
def test_degenerate_array_shapes(rows: int, cols: int, dataflow: str, example_dir: Path) -> None:
    design = hwgen.compile(example_dir / "digits_mlp.onnx", rows=rows, cols=cols, dataflow=dataflow, batch=8)
    x = np.load(example_dir / "test_x.npy")[:20]
    result = design.simulate(x)
    assert result.report["bit_exact"] and result.report["io"] == "streamed"       # 20 samples: chunks 8, 8, 4
    assert result.report["cycles"] == result.report["predicted_cycles"]
    preloaded = design.simulate(x[:8])
    assert preloaded.report["io"] == "preloaded" and preloaded.report["cycles"] == preloaded.report["predicted_cycles"]
    np.testing.assert_array_equal(preloaded.codes, result.codes[:8])


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 3), dataflow=st.sampled_from(["os", "ws"]),
       data=st.data())
def test_random_chains_in_verilator(seed: int, depth: int, dataflow: str, data) -> None:
    """Random GEMM chains on the shared build: bit-exact and cycles == prediction (one build, many programs)."""
    rng = np.random.default_rng(seed)
    dims = [data.draw(st.integers(1, 40)) for _ in range(depth + 1)]
    out_bits = [data.draw(st.integers(1, 8)) for _ in range(depth)]
    layers = random_layers(rng, dims, 8, 8, out_bits, data.draw(st.booleans()))
    cfg = default_config(layers, dataflow=dataflow, **SHARED)
    program = compile_layers(layers, cfg)
    stream = data.draw(st.booleans())
    samples = data.draw(st.integers(1, 3 * SHARED["batch"] if stream else SHARED["batch"]))
    codes = rng.integers(0, 256, size=(samples, dims[0]))
    binary = verilator.build(render_verilog(cfg), TOP_NAME)
    loads = program.weights + program.thresholds + program.program_rows(samples, stream)
    expected = run_layers(layers, codes)
    if stream:
        result = verilator.run(binary, loads, [], max_cycles=10 ** 7, x=program.input_beats(codes),
                               y_beats=samples * program.y_words)
        np.testing.assert_array_equal(program.output_codes(result.y, samples), expected)
    else:
        result = verilator.run(binary, loads + program.input_rows(codes), program.output_reads(samples),
                               max_cycles=10 ** 7)
        np.testing.assert_array_equal(result.values.view(np.int32).reshape(expected.shape), expected)
    assert result.cycles == program.predict_cycles(samples, stream)


def test_lint_and_yosys_clean(example_dir: Path) -> None:
    design = hwgen.compile(example_dir / "digits_mlp.onnx", **SHARED)
    assert verilator.lint_problems(design.verilog, TOP_NAME) == []
    assert verilator.yosys_check(design.verilog, TOP_NAME) == []
    rom = hwgen.compile(example_dir / "digits_mlp.onnx", rows=2, cols=2).verilog_rom()
    assert verilator.lint_problems(rom, TOP_NAME) == []


def test_hostile_names_do_not_reach_the_verilog(tmp_path: Path) -> None:
    plain = mlp(k=8, n=4)
    hostile = mlp(k=8, n=4)
    # quant_in, quant_w, fc, relu, quant_out: Verilog syntax, keywords, non-ASCII, 5,000 characters, duplicates
    names = ["名前", "x" * 5000, "[bold]endmodule; | initial $finish;[/bold]\n# heading", "module", "module"]
    for node, name in zip(hostile.graph.node, names):
        node.name = name
    designs = [hwgen.compile(hwgen.Model(m), rows=2, cols=2) for m in (plain, hostile)]
    assert designs[0].verilog_sha256 == designs[1].verilog_sha256
    assert verilator.lint_problems(designs[1].verilog, TOP_NAME) == []
    out = designs[1].write(tmp_path / "hostile")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [u["node"] for u in manifest["units"]][:3] == [names[0], names[2], names[4]]
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert all(line.replace("\\|", "").count("|") == 7 for line in table)      # names cannot break the table
    assert "# heading" not in [line.strip() for line in (out / "report.md").read_text().splitlines()]
    onnx_path = tmp_path / "hostile.onnx"
    onnx_path.write_bytes(hostile.SerializeToString())
    check = cli("check", onnx_path)
    assert check.returncode == 0 and "[bold]endmodule;" in check.stdout        # shown literally, not as markup
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    assert designs[1].simulate(x).report["bit_exact"]


def test_compile_and_simulate_refuse_bad_input(zoo_dir: Path, example_dir: Path, tmp_path: Path) -> None:
    transposed = build("helper_transpose_qonnx", zoo_dir)
    result = cli("compile", transposed.path, "-o", tmp_path / "transposed")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # convolutions and pooling run (issue 7); a Transpose does not, and that is named
    assert result.stderr.startswith("error: node 'x_t' (Transpose): the systolic array runs Conv, MatMul, pooling "
                                    "and residual Add layers")
    assert not (tmp_path / "transposed").exists()
    result = cli("compile", example_dir / "digits_mlp.onnx", "--rows", 65, "-o", tmp_path / "big")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: invalid configuration: rows must be an integer in 1..64, got 65"
    result = cli("simulate", tmp_path, "--inputs", example_dir / "test_x.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path}: no manifest.json; is this a folder written by `hwgen compile`?"


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_dense_residual_in_verilator(dataflow: str) -> None:
    from onnx_helpers import residual_mlp

    design = hwgen.compile(hwgen.Model(residual_mlp(skip_scale_ratio=2.0)), dataflow=dataflow, **SHARED)
    x = np.random.default_rng(6).normal(size=(2 * design.program.batch + 3, 8)).astype(np.float32)
    result = design.simulate(x)                             # two full chunks and a partial one, streamed
    assert result.report["bit_exact"] and result.report["io"] == "streamed"
    assert result.report["cycles"] == result.report["predicted_cycles"]
    manifest = design.manifest()
    assert ("AddScaled", "systolic array") in [(u["op"], u["unit"]) for u in manifest["units"]]
    with pytest.raises(hwgen.HwgenError, match=r"node 'residual' \(Add\): its inputs' scales need integer factors "
                                               r"13421773 and 10066330"):
        hwgen.compile(hwgen.Model(residual_mlp(skip_scale_ratio=0.75)))


def test_simulate_refuses_empty_and_misshapen_inputs(digits_design: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 64), np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 63), np.float32))
    result = cli("simulate", digits_design, "--inputs", tmp_path / "empty.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: simulate needs at least one sample (inputs of shape (N, ...) with N ≥ 1)"
    result = cli("simulate", digits_design, "--inputs", tmp_path / "wrong.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("must have shape (N, 64), got (3, 63)")
    assert not (tmp_path / "y.npy").exists()


def test_compile_set_overrides_scratchpads(example_dir: Path, tmp_path: Path) -> None:
    result = cli("compile", example_dir / "digits_mlp.onnx", "--rows", 2, "--cols", 2, "-o", tmp_path / "d",
                 "--set", "act_depth=4096", "--set", "out_depth=512")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["config"]["act_depth"] == 4096 and manifest["config"]["out_depth"] == 512
    # activations: 4096 words = 2 regions × 64 groups of 2 samples × 32 words (64 features / 2 columns) → 128
    # samples; outputs: 512 words / 5 words per group (10 channels / 2 columns) would allow 204
    assert manifest["derived"]["batch_per_run"] == 128
    result = cli("compile", example_dir / "digits_mlp.onnx", "-o", tmp_path / "e", "--set", "depth=3")
    assert result.returncode == 2 and result.stderr.startswith("error: --set depth=3: expected KEY=VALUE with KEY")
