"""Convolutional models on the systolic array in Verilator, both dataflows: bit-exact against the golden model,
cycles equal to the prediction. The models cover padded, strided and unpadded convs, a depthwise-separable block,
per-channel scales, residual blocks, MaxPool, AveragePool and GlobalAveragePool; all of them share one
configuration per dataflow, hence one Verilog and one Verilator build each (weights and programs load at run
time)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conv_models import digits_cnn, residual_cnn
from modelzoo import build

import hwgen
from hwgen.arch.systolic.compile import default_config, gemm_layers

LOCAL = {"digits_cnn_w4a4": digits_cnn, "residual_cnn_w8a8": residual_cnn}
ZOO = ("cnn_w4a4_qonnx", "cnn_residual_qonnx", "cnn_truncavgpool_qonnx")
MODELS = (*LOCAL, *ZOO)
SAMPLES = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, zoo_dir: Path) -> dict[str, tuple[Path, np.ndarray]]:
    out = tmp_path_factory.mktemp("cnn")
    made = {name: (out / f"{name}.onnx", make(out / f"{name}.onnx")) for name, make in LOCAL.items()}
    for name in ZOO:
        model = build(name, zoo_dir)
        made[name] = (model.path, np.asarray(model.inputs, np.float32))
    return made


@pytest.fixture(scope="module")
def shared(models) -> dict[str, dict]:
    """Per dataflow, one configuration running every model: the field-wise largest of their smallest ones."""
    merged = {}
    for dataflow in ("os", "ws"):
        configs = [asdict(default_config(gemm_layers(hwgen.load(path).graph), rows=4, cols=4, dataflow=dataflow,
                                         batch=SAMPLES)) for path, _ in models.values()]
        fields = {key: max(c[key] for c in configs) for key in configs[0] if isinstance(configs[0][key], int)}
        fields.pop("rows"), fields.pop("cols")
        merged[dataflow] = fields
    return merged


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("name", MODELS)
def test_cnn_bit_exact_with_exact_cycles(name: str, dataflow: str, models, shared) -> None:
    path, x = models[name]
    design = hwgen.compile(path, rows=4, cols=4, dataflow=dataflow, **shared[dataflow])
    report = design.simulate(x[:SAMPLES]).report
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(SAMPLES)
    units = {u["op"]: u["unit"] for u in design.manifest()["units"]}
    assert units["Conv"].startswith("systolic array")
    # the input image is written as exactly C·H·W values per sample (no padding, no im2col copy)
    codes = design._golden_codes(x[:SAMPLES])[0]
    assert len(design.program.input_rows(codes)) == codes.size == SAMPLES * int(np.prod(x.shape[1:]))


def test_models_cover_the_conv_features(models) -> None:
    """What the models above exercise, so that a change to them cannot silently drop a feature."""
    layers = [layer for path, _ in models.values() for layer in gemm_layers(hwgen.load(path).graph)]
    convs = [layer.conv for layer in layers if layer.conv is not None and layer.pool is None]
    assert any(c.groups > 1 and c.cg == 1 for c in convs)                    # depthwise
    assert any(max(c.strides) > 1 for c in convs) and any(max(c.pads) > 0 for c in convs)
    assert any(max(c.pads) == 0 and c.kernel != (1, 1) and not c.flat_out for c in convs)
    pools = {(layer.pool, layer.conv.kernel == layer.conv.in_shape[1:]) for layer in layers if layer.pool}
    assert pools == {("max", False), ("sum", False), ("sum", True)}         # MaxPool, AveragePool, global
    assert any(len(layer.inputs) > 1 for layer in layers)                     # residual Add


def test_cnn_design_writes_its_preload_program(models, tmp_path: Path) -> None:
    """An image in or out cannot stream: the written ``program.load`` is the preload program of a batch."""
    from hwgen.design import format_rows

    design = hwgen.compile(models["digits_cnn_w4a4"][0], rows=4, cols=4)
    assert not design.program.streams
    out = design.write(tmp_path / "design")
    program = design.program
    assert (out / "program.load").read_text() == format_rows(program.program_rows(program.batch, stream=False))
