"""Convolutional models on the dataflow pipeline in Verilator: bit-exact against the golden model, the measured
latency, II and total cycles equal to the timing model's, the II at its bound (the slowest unit's cycles). Each
model runs fully folded or at the fastest folding its first layer allows (the digits CNN both). The models
cover padded, strided and unpadded convs, a depthwise-separable block, per-channel scales, MaxPool, AveragePool,
GlobalAveragePool and a residual block (duplicate, skip FIFO, add); FINN's CNV (1w1a in the default tier, 2w2a in
the nightly one) adds XNOR convs and max pooling of bipolar codes at CNV's size. The w8a8 residual block is in the
nightly tier: its 8-bit activations compare 255 thresholds in parallel per PE, a Verilator build of many minutes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conv_models import digits_cnn, residual_cnn
from modelzoo import build

import hwgen
from hwgen.arch.dataflow.folding import legal_folds

ZOO = ("cnn_w4a4_qonnx", "cnn_truncavgpool_qonnx", "cnn_residual_qonnx")
NIGHTLY = pytest.mark.nightly
SAMPLES = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, zoo_dir: Path) -> dict[str, tuple[Path, np.ndarray]]:
    out = tmp_path_factory.mktemp("cnn")
    made = {name: (out / f"{name}.onnx", make(out / f"{name}.onnx"))
            for name, make in (("digits_cnn_w4a4", digits_cnn), ("residual_cnn_w8a8", residual_cnn))}
    for name in ZOO:
        model = build(name, zoo_dir)
        made[name] = (model.path, np.asarray(model.inputs, np.float32))
    return made


def fastest(path: Path) -> int:
    """The fewest cycles per inference every layer can reach (the first conv's SIMD is at most its channels)."""
    config = hwgen.compile(path, arch="dataflow").config
    return max(min(c.cycles for c in legal_folds(layer)) for layer in config.layers)


def check(design, x: np.ndarray) -> dict:
    report = design.simulate(x).report
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["latency_cycles"] == report["predicted_latency_cycles"]
    assert report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(len(x))
    assert report["ii_cycles"] == report["predicted_ii_cycles"] == design.config.predicted_bound
    return report


# default tier: every model once, the digits CNN at both foldings; the rest nightly (8-bit requantizers compare 255
# thresholds per PE in parallel: builds of several minutes when unrolled; the w8a8 block's second folding halves
# its II rather than unrolling it)
CASES = [("digits_cnn_w4a4", "folded"), ("digits_cnn_w4a4", "fastest"), ("cnn_truncavgpool_qonnx", "folded"),
         ("cnn_residual_qonnx", "folded"),
         *(pytest.param(name, folding, marks=NIGHTLY) for name, folding in (
             ("cnn_w4a4_qonnx", "folded"), ("cnn_w4a4_qonnx", "fastest"), ("cnn_truncavgpool_qonnx", "fastest"),
             ("cnn_residual_qonnx", "fastest"), ("residual_cnn_w8a8", "folded"), ("residual_cnn_w8a8", "half")))]


@pytest.mark.parametrize(("name", "folding"), CASES)
def test_cnn_bit_exact_with_exact_cycles(name: str, folding: str, models) -> None:
    path, x = models[name]
    if folding == "folded":
        target = None
    elif folding == "fastest":
        target = fastest(path)
    else:                                       # half the fully folded II
        target = hwgen.compile(path, arch="dataflow").config.predicted_bound // 2
    design = hwgen.compile(path, arch="dataflow", target_cycles=target)
    check(design, x[:SAMPLES])


def test_models_cover_the_units(models) -> None:
    """What the models above run on, so that a change to them cannot silently drop a unit."""
    units = {row["unit"] for path, _ in models.values()
             for row in hwgen.compile(path, arch="dataflow").program.fold_report()}
    assert units == {"SWG+MVAU", "SWG+VVAU", "MVAU", "SWG+maxpool", "SWG+sumpool", "add"}


@pytest.mark.parametrize(("name", "target"), [("cnv_1w1a", 100_000), pytest.param("cnv_1w1a", 25_000, marks=NIGHTLY),
                                              pytest.param("cnv_2w2a", 100_000, marks=NIGHTLY),
                                              pytest.param("cnv_2w2a", 25_000, marks=NIGHTLY)])
def test_finn_cnv(name: str, target: int, zoo_dir: Path) -> None:
    """CNV (32×32×3, six convs, two MaxPools, three FC layers) at two foldings."""
    model = build(f"{name}_qonnx", zoo_dir)
    design = hwgen.compile(model.path, arch="dataflow", target_cycles=target)
    assert [row["unit"] for row in design.program.fold_report()].count("SWG+maxpool") == 2
    check(design, np.asarray(model.inputs, np.float32)[:2])


def test_cli_compile_simulate_estimate(models, tmp_path: Path) -> None:
    """The CLI on a CNN: the folding table names each layer's units; simulate reports bit-exact outputs and the
    predicted cycles (the digits CNN at 576 cycles: the build of the test above)."""
    import subprocess
    import sys

    path, x = models["digits_cnn_w4a4"]
    out, inputs = tmp_path / "design", tmp_path / "x.npy"
    np.save(inputs, x[:SAMPLES])

    def cli(*args) -> str:
        result = subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True, text=True,
                                timeout=900, check=False)
        assert result.returncode == 0, result.stderr
        return " ".join(result.stdout.split())

    text = cli("compile", path, "--arch", "dataflow", "--target-cycles", 576, "-o", out)
    assert "/dw/Conv SWG+VVAU 9 6 16 1 2 432" in text and "II 576 cycles, latency 1099 cycles" in text
    design = hwgen.open_design(out)
    text = cli("simulate", out, "--inputs", inputs, "--output", tmp_path / "y.npy")
    predicted = design.predicted_cycles(SAMPLES)
    assert f"{predicted} cycles (predicted {predicted}), bit-exact" in text
    assert "II 576.0 (predicted 576), latency 1099 (predicted 1099)" in text
    text = cli("estimate", out, "--target", "xcup")
    assert "latency_cycles 1,099" in text
