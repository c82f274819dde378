"""The zoo CNNs with pooling (MaxPool, GlobalAveragePool) on the systolic array in Verilator: bit-exact against the
golden model, cycles equal to the prediction. Both models share one configuration, hence one Verilog and one
Verilator build."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from modelzoo import build

import hwgen
from hwgen.arch.systolic.compile import default_config, gemm_layers

MODELS = ("cnn_w4a4_qonnx", "cnn_residual_qonnx")


@pytest.fixture(scope="module")
def models(zoo_dir: Path) -> dict[str, tuple[Path, np.ndarray]]:
    built = {name: build(name, zoo_dir) for name in MODELS}
    return {name: (model.path, np.asarray(model.inputs, np.float32)) for name, model in built.items()}


@pytest.fixture(scope="module")
def shared(models) -> dict:
    """One configuration running every model: the field-wise largest of their smallest configurations."""
    configs = [asdict(default_config(gemm_layers(hwgen.load(path).graph), rows=4, cols=4, dataflow="os", batch=2))
               for path, _ in models.values()]
    merged = {key: max(c[key] for c in configs) for key in configs[0] if isinstance(configs[0][key], int)}
    merged.pop("rows"), merged.pop("cols")
    return merged


@pytest.mark.parametrize("name", MODELS)
def test_pooled_cnn_bit_exact_with_exact_cycles(name: str, models, shared) -> None:
    path, x = models[name]
    design = hwgen.compile(path, rows=4, cols=4, dataflow="os", **shared)
    result = design.simulate(x[:2])
    report = result.report
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(2)
    units = {u["op"]: u["unit"] for u in design.manifest()["units"]}
    assert units["MaxPool"].startswith("systolic array") and units["SumPool"].startswith("systolic array")
    assert {layer.pool for layer in design.layers} >= {"max", "sum"}


def test_finn_cnv_2w2a_bit_exact_with_exact_cycles(zoo_dir: Path) -> None:
    """FINN's CNV 2w2a (brevitas_examples, 32×32×3, two MaxPools) on a 4×32 array, one sample: 2.41 M cycles:
    ~70 s with a cached Verilator build, ~4 min with the build, on two shared cores. 32 columns because its 1.6 M weights need
    ≤ 65 536 words per weight bank."""
    model = build("cnv_2w2a_qonnx", zoo_dir)
    design = hwgen.compile(model.path, rows=4, cols=32, dataflow="os", batch=1)
    assert [layer.pool for layer in design.layers].count("max") == 2
    report = design.simulate(np.asarray(model.inputs, np.float32)[:1]).report
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(1) == 2413181
