"""Convolutional models on the systolic array in Verilator: bit-exact against the golden model, cycles equal to the
prediction. Both models share one configuration, hence one Verilog and one Verilator build."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import hwgen
from conv_models import digits_cnn, residual_cnn
from hwgen.arch.systolic.compile import default_config, gemm_layers

MODELS = {"digits_cnn_w4a4": digits_cnn, "residual_cnn_w8a8": residual_cnn}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    out = tmp_path_factory.mktemp("cnn")
    return {name: (out / f"{name}.onnx", make(out / f"{name}.onnx")) for name, make in MODELS.items()}


@pytest.fixture(scope="module")
def shared(models) -> dict:
    """One configuration running every model: the field-wise largest of their smallest configurations."""
    configs = [asdict(default_config(gemm_layers(hwgen.load(path).graph), rows=4, cols=4, dataflow="os", batch=4))
               for path, _ in models.values()]
    merged = {key: max(c[key] for c in configs) for key in configs[0] if isinstance(configs[0][key], int)}
    merged.pop("rows"), merged.pop("cols")
    return merged


@pytest.mark.parametrize("name", list(MODELS))
def test_cnn_bit_exact_with_exact_cycles(name: str, models, shared) -> None:
    path, x = models[name]
    design = hwgen.compile(path, rows=4, cols=4, dataflow="os", **shared)
    result = design.simulate(x[:4])
    report = result.report
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(4)
    units = {u["op"]: u["unit"] for u in design.manifest()["units"]}
    assert units["Conv"].startswith("systolic array")
    # the input image is written as exactly C·H·W values per sample (no padding, no im2col copy)
    codes = design._golden_codes(x[:4])[0]
    assert len(design.program.input_rows(codes)) == codes.size == 4 * int(np.prod(x.shape[1:]))


def test_weight_stationary_conv_is_refused(models) -> None:
    path, _ = models["digits_cnn_w4a4"]
    with pytest.raises(hwgen.HwgenError, match="output-stationary"):
        hwgen.compile(path, rows=4, cols=4, dataflow="ws")
