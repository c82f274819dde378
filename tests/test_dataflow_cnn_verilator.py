"""Convolutional models on the dataflow pipeline in Verilator: bit-exact against the golden model, the measured
latency, II and total cycles equal to the timing model's, the II at its bound (the slowest unit's cycles). Each
model runs fully folded and at the fastest folding its first layer allows (two structures, two builds). The models
cover padded, strided and unpadded convs, a depthwise-separable block, per-channel scales, MaxPool, AveragePool and
GlobalAveragePool; FINN's CNV (1w1a in the default tier, 2w2a in the nightly one) adds XNOR convs and max pooling
of bipolar codes at CNV's size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conv_models import digits_cnn
from modelzoo import build

import hwgen
from hwgen.arch.dataflow.folding import legal_folds

ZOO = ("cnn_w4a4_qonnx", "cnn_truncavgpool_qonnx")
SAMPLES = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, zoo_dir: Path) -> dict[str, tuple[Path, np.ndarray]]:
    path = tmp_path_factory.mktemp("cnn") / "digits_cnn_w4a4.onnx"
    made = {"digits_cnn_w4a4": (path, digits_cnn(path))}
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


@pytest.mark.parametrize("folding", ["folded", "fastest"])
@pytest.mark.parametrize("name", ["digits_cnn_w4a4", *ZOO])
def test_cnn_bit_exact_with_exact_cycles(name: str, folding: str, models) -> None:
    path, x = models[name]
    target = fastest(path) if folding == "fastest" else None
    design = hwgen.compile(path, arch="dataflow", target_cycles=target)
    check(design, x[:SAMPLES])


def test_models_cover_the_units(models) -> None:
    """What the models above run on, so that a change to them cannot silently drop a unit."""
    units = {row["unit"] for path, _ in models.values()
             for row in hwgen.compile(path, arch="dataflow").program.fold_report()}
    assert units == {"SWG+MVAU", "SWG+VVAU", "MVAU", "SWG+maxpool", "SWG+sumpool"}


@pytest.mark.parametrize("name", ["cnv_1w1a", pytest.param("cnv_2w2a", marks=pytest.mark.nightly)])
def test_finn_cnv(name: str, zoo_dir: Path) -> None:
    """CNV (32×32×3, six convs, two MaxPools, three FC layers) folded to 100k cycles per inference."""
    model = build(f"{name}_qonnx", zoo_dir)
    design = hwgen.compile(model.path, arch="dataflow", target_cycles=100_000)
    assert [row["unit"] for row in design.program.fold_report()].count("SWG+maxpool") == 2
    check(design, np.asarray(model.inputs, np.float32)[:2])
