"""The dataflow architecture in Verilator: bit-exact against the golden model (itself bit-exact with the source
models' reference, test_golden.py), II and latency equal to the analytic model, through the Python API and the CLI.

The brevitas MLP matrix (:data:`CI_CASES` in the default tier, :data:`NIGHTLY_CASES` with
``HYPOTHESIS_PROFILE=nightly``): w4a4, w2a2, w1a1 (bipolar, XNOR), 6-bit, signed activations, BatchNorm, float and
int32 bias, per-channel weights, FINN's TFC 1w1a and 2w2a, and onnxruntime QDQ, each at several foldings —
fully folded (PE = SIMD = 1), automatic for a range of targets, fully unrolled (PE = MH, SIMD = MW). The ci tier
runs every model at one folding plus the fully folded and fully unrolled pipelines of the smallest model.

Verilator builds (cached in ~/.cache/hwgen, one per folded structure): ci — the bundled example at an automatic
and an explicit folding (the CLI test reuses the latter), 11 zoo cases, a tiny MLP (lint, hostile names; cocotb
builds it once more). Cold, the 8 cases this matrix added to the ci tier cost about 2 CPU-minutes of builds.
TFC's fully unrolled pipeline (59,008 MAC lanes, 27.6 MB of Verilog) is left out even from the nightly tier: its
Verilog takes 2 minutes to generate and the C++ build grows with it (3 CPU-minutes already for the 3,392 lanes of
a 64-32-32-10 MLP).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from modelzoo import build
from onnx_helpers import mlp
from test_systolic_verilator import cli

import hwgen
from hwgen import verilator
from hwgen.arch.dataflow.design import TOP_NAME
from hwgen.arch.systolic.compile import gemm_layers
from hwgen.design import golden_codes

EXAMPLE = "digits_mlp.onnx"

Fold = str | int | list
"""``"folded"`` (PE = SIMD = 1), ``"unrolled"`` (PE = MH, SIMD = MW), a target cycle count (automatic folding) or
an explicit list of ``(PE, SIMD)`` per layer."""

CI_CASES: list[tuple[str, Fold]] = [
    ("mlp_w4a4_qonnx", 64),                                   # float bias, uint8 input, 4-bit
    ("mlp_w2a2_qonnx", [(2, 8), (8, 4), (5, 4)]),            # explicit: an upsizer and a downsizer
    ("mlp_w1a1_qonnx", 128),                                  # binary: XNOR-popcount layers
    ("mlp_w6a6_qonnx", 256),                                  # 6-bit weights, activations and input
    ("mlp_bn_in16_w2a2_w3a3_qonnx", 32),                      # BatchNorm, signed acts, per-channel, 16-bit input
    ("mlp_w8a8_int32bias_perchannel_qcdq", 256),              # int32 bias, per-channel scales, QCDQ
    ("mlp_qdq_s8_perchannel", 256),                           # onnxruntime QDQ: signed acts with zero points
    ("tfc_1w1a_qonnx", 256),                                  # FINN's TFC, binary
    ("tfc_2w2a_qonnx", 1024),                                 # FINN's TFC, 2-bit
    ("mlp_tiny_w3a3_signed_qonnx", "folded"),
    ("mlp_tiny_w3a3_signed_qonnx", "unrolled"),
]
NIGHTLY_CASES: list[tuple[str, Fold]] = [
    *[(name, fold) for name in ("mlp_w4a4_qonnx", "mlp_w2a2_qonnx", "mlp_w1a1_qonnx", "mlp_w6a6_qonnx",
                                "mlp_bn_in16_w2a2_w3a3_qonnx", "mlp_w8a8_int32bias_perchannel_qonnx",
                                "mlp_qdq_s8_perchannel")
      for fold in ("folded", 512, 16, "unrolled")],
    *[(name, fold) for name in ("tfc_1w1a_qonnx", "tfc_2w2a_qonnx") for fold in ("folded", 4096, 64)],
    ("mlp_tiny_w3a3_signed_qonnx", 8),
    ("mlp_w4a4_dynamo_qcdq", 128),
]


@pytest.fixture(scope="module", autouse=True)
def quick_verilator_builds() -> Iterator[None]:
    """Harnesses built at -O0 (``HWGEN_VERILATOR_OPT``, part of the build cache key; the CLI runs inherit it):
    these simulations are short, and GCC's optimizer dominates the builds (an 8-bit layer's 255 fused thresholds:
    460 CPU-s at -O2, 15 at -O0)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HWGEN_VERILATOR_OPT", "0")
        yield


def check_exact(report: dict) -> None:
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["latency_cycles"] == report["predicted_latency_cycles"]
    assert report["cycles"] == report["predicted_cycles"]
    if report["samples"] > 1:
        assert report["ii_cycles"] == report["predicted_ii_cycles"]


def fold_options(fold: Fold, model: hwgen.Model) -> dict:
    """``hwgen.compile`` keyword arguments for a :data:`Fold`."""
    if isinstance(fold, int):
        return {"target_cycles": fold}
    shapes = [(layer.n, layer.k) for layer in gemm_layers(model.graph)]
    choice = fold if isinstance(fold, list) else {"folded": [(1, 1)] * len(shapes), "unrolled": shapes}[fold]
    return {"fold": [{"pe": pe, "simd": simd} for pe, simd in choice]}


def max_layer_bound(design) -> int:
    """max over layers of ⌈MW/SIMD⌉·⌈MH/PE⌉ (cycles): no folding of these layers can beat it."""
    return max(-(-layer.mw // layer.simd) * -(-layer.mh // layer.pe) for layer in design.config.layers)


def zoo_case(name: str, fold: Fold, zoo_dir: Path) -> None:
    zoo = build(name, zoo_dir)
    model = hwgen.load(zoo.path)
    design = hwgen.compile(model, arch="dataflow", **fold_options(fold, model))
    layers = design.config.layers
    if fold == "folded":
        assert all((layer.pe, layer.simd) == (1, 1) for layer in layers)
    elif fold == "unrolled":
        assert all((layer.pe, layer.simd) == (layer.mh, layer.mw) for layer in layers)
        assert design.program.predicted_ii_cycles == 1
    elif isinstance(fold, int):
        assert design.program.predicted_ii_cycles <= fold
    x = zoo.inputs[:3 if design.program.predicted_ii_cycles > 20000 else 12]
    result = design.simulate(x)
    check_exact(result.report)
    np.testing.assert_array_equal(result.outputs, model.run(x))
    assert result.report["ii_cycles"] <= 1.02 * max_layer_bound(design)


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


@pytest.mark.parametrize("name, fold", CI_CASES)
def test_brevitas_mlps(name: str, fold: Fold, zoo_dir: Path) -> None:
    """Bit-exact outputs; measured II and latency equal to the prediction; II ≤ 1.02 × the max-layer bound."""
    zoo_case(name, fold, zoo_dir)


@pytest.mark.nightly
@pytest.mark.parametrize("name, fold", NIGHTLY_CASES)
def test_brevitas_mlps_every_folding(name: str, fold: Fold, zoo_dir: Path) -> None:
    zoo_case(name, fold, zoo_dir)


def test_cli_compile_simulate_and_mutation(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "df"
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps([{"pe": 4, "simd": 2}, {"pe": 8, "simd": 4}, {"pe": 2, "simd": 8}]))
    result = cli("compile", example_dir / EXAMPLE, "--arch", "dataflow", "--fold", fold, "--rom", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "II 512 cycles" in result.stdout
    again = cli("compile", example_dir / EXAMPLE, "--arch", "dataflow", "--fold", fold, "--rom", "-o",
                tmp_path / "again")
    assert again.returncode == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert {"rtl/hwgen_dataflow.v", "rtl/hwgen_dataflow_rom.v", "rtl/hwgen_dataflow_axi.v", "manifest.json",
            "weights.load", "thresholds.load", "parameters.load", "report.md", "regmap.md",
            "hwgen_dataflow_axi.core"} <= set(files)
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


def test_lint_yosys_and_hostile_names(tmp_path: Path) -> None:
    plain, hostile = mlp(k=8, n=4), mlp(k=8, n=4)
    names = ["名前", "x" * 5000, "[bold]endmodule; | initial $finish;[/bold]\n# heading", "module", "module"]
    for node, name in zip(hostile.graph.node, names):
        node.name = name
    designs = [hwgen.compile(hwgen.Model(m), arch="dataflow", target_cycles=8) for m in (plain, hostile)]
    assert designs[0].verilog_sha256 == designs[1].verilog_sha256
    assert verilator.lint_problems(designs[1].verilog, TOP_NAME) == []
    assert verilator.yosys_check(designs[1].verilog, TOP_NAME) == []
    out = designs[1].write(tmp_path / "hostile")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [unit["node"] for unit in manifest["units"]][:3] == [names[0], names[2], names[4]]
    report = (out / "report.md").read_text().splitlines()
    table = [line for line in report if line.startswith("| ")]
    assert len(table) == 1 + len(designs[1].layers) and all(line.replace("\\|", "").count("|") == 9 for line in table)
    assert "# heading" not in [line.strip() for line in report]
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    check_exact(designs[1].simulate(x).report)


def test_rom_verilog_needs_no_loads() -> None:
    """``--rom``: weights, thresholds and zero points as the memories' initial contents. Lint and Yosys clean;
    Verilated and loaded with nothing, it streams bit-exact outputs, II and latency as predicted."""
    design = hwgen.compile(hwgen.Model(mlp(k=8, n=4)), arch="dataflow", fold=[{"pe": 2, "simd": 4}])
    rom = design.verilog_rom()
    assert rom != design.verilog
    assert verilator.lint_problems(rom, TOP_NAME) == []
    assert verilator.yosys_check(rom, TOP_NAME) == []
    x = np.random.default_rng(2).normal(size=(6, 8)).astype(np.float32)
    codes_in, expected = golden_codes(design.model, x)
    beats, last = design.program.pack_inputs(codes_in)
    result = verilator.run(verilator.build(rom, TOP_NAME), [], [], max_cycles=10_000, x=beats,
                           x_last=[int(b) for b in last], y_beats=len(x) * design.config.out_beats,
                           stop_after_y=True)
    np.testing.assert_array_equal(design.program.unpack_outputs(result.y).reshape(expected.shape), expected)
    finished = result.y_cycles[result.y_last == 1]
    assert finished[0] - result.x_starts[0] == design.program.predicted_latency_cycles
    assert np.diff(finished).tolist() == [design.program.predicted_ii_cycles] * (len(x) - 1)


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
