"""hls4ml models → hwgen IR and hardware: golden outputs, and the outputs of both architectures in Verilator, equal
hls4ml's C simulation (``predict`` after ``compile``) bit for bit.

Every C-sim build costs seconds, so each model is converted and compiled once per module and checked on thousands of
inputs. The ap_fixed cast semantics themselves are checked exhaustively against the ap_fixed headers hls4ml ships.

Verilator builds in the default tier: one 4×4 systolic array (product rounding, three fixed-point lane stages) runs
the nine models that fit it (MLPs, the 2-D and 1-D CNNs with max and average pooling, the MLPs with lookup-table
activations), one dataflow pipeline (the narrow MLP at its ReuseFactor folding) serves the Python API, the II test
and the CLI, and three more run the CNNs (sliding windows, max pooling; the 1-D one as images of height 1; sum
pooling with the average's division as casts and as thresholds). hls4ml's activation kernels themselves are checked
on every input code of many types, its average pooling kernel on every window sum of several types. The nightly tier
adds the 16-bit default precision, the threshold-requantized MLP and the sigmoid/tanh MLP on the dataflow
architecture and a matrix of random precisions on both.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
hls4ml = pytest.importorskip("hls4ml")
from hls4ml.model.optimizer.optimizer import get_optimizer  # noqa: E402

import hwgen
from hwgen import HwgenError, UnsupportedModelError, golden
from hwgen.arch.systolic.compile import default_config, gemm_layers
from hwgen.frontend import hls4ml_tables as tables
from hwgen.frontend.hls4ml import fixed_output_type, fixed_type, from_hls4ml, load_hls4ml
from hwgen.ir import Graph
from hwgen.ir.fixed import OVERFLOW, ROUNDING, FixedStep, FixedType, apply_steps
from hwgen.passes import streamline

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C simulation needs g++")
SAMPLES = 4000


# ---------------------------------------------------------------------------------------------------- helpers
def convert(model: torch.nn.Module, n_in: int | tuple[int, ...], out_dir: Path, precisions: dict[str, dict[str, str]],
            default: str = "ap_fixed<16,6>", layer_config: dict | None = None, **kwargs):
    """hls4ml ModelGraph of ``model`` (eval mode) with per-layer precisions (granularity='name')."""
    model.eval()
    shape = n_in if isinstance(n_in, tuple) else (n_in,)
    config = hls4ml.utils.config_from_pytorch_model(model, shape, granularity="name", default_precision=default)
    for layer, precision in precisions.items():
        config["LayerName"][layer]["Precision"].update(precision)
    for layer, extra in (layer_config or {}).items():
        config["LayerName"][layer].update(extra)
    return hls4ml.converters.convert_from_pytorch_model(model, hls_config=config, output_dir=str(out_dir),
                                                        backend="Vivado", **kwargs)


def output_codes(graph: Graph, x: np.ndarray) -> np.ndarray:
    """hwgen golden: the integer codes the output dequantizer reads."""
    env = golden.run(graph, x, keep=True)
    return env[graph.producer(graph.outputs[0]).inputs[0]].reshape(len(x), -1)


def reference_codes(hls_model, graph: Graph, x: np.ndarray) -> np.ndarray:
    """hls4ml C simulation on the same (float32-exact) inputs, as exact fixed-point codes of the result type."""
    y = hls_model.predict(np.ascontiguousarray(x.reshape(len(x), -1), np.float64)).reshape(len(x), -1)
    codes = np.ldexp(y, fixed_output_type(graph).frac)
    assert np.array_equal(codes, np.round(codes)), "C-sim outputs are not on the result type's grid"
    return codes.astype(np.int64)


def inputs(n_in: int | tuple[int, ...], scale: float, seed: int = 0) -> np.ndarray:
    """Gaussian inputs plus values on and halfway between fine grid points (rounding ties)."""
    rng = np.random.default_rng(seed)
    shape = (SAMPLES, *(n_in if isinstance(n_in, tuple) else (n_in,)))
    x = rng.normal(size=shape) * scale
    ties = (SAMPLES // 4, *shape[1:])
    x[: SAMPLES // 4] = np.round(x[: SAMPLES // 4] * 64) / 64 + rng.choice([0, 1 / 128, -1 / 128], ties)
    return x.astype(np.float32)


def wrapped(graph: Graph, x: np.ndarray) -> int:
    """How many accumulator or result values of ``x`` wrapped (differ from the exact value they were cast from)."""
    env = golden.run(graph, x, keep=True)
    count = 0
    for node in graph.nodes:
        if node.op == "FixedCast":
            (step,) = node.attrs["steps"]
            exact = step.to.cast(step.affine(env[node.inputs[0]], node.attrs["axis"]), step.frac)
            lifted = type(step.to)(62, 62 - step.to.frac, True, step.to.rounding, "SAT")     # same rounding, no wrap
            count += int(np.sum(exact != lifted.cast(step.affine(env[node.inputs[0]], node.attrs["axis"]), step.frac)))
    return count


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Convert + compile once per model per module: name → (hls_model, imported IR)."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model, n_in, precisions, extra = MODELS[name]()
            renamed = extra.pop("activations", {})
            hls_model = convert(model, n_in, tmp_path_factory.mktemp(name), precisions, **extra)
            for layer, activation in renamed.items():         # hls4ml's Keras-only activations, same layer class
                node = hls_model.graph[layer]
                node.set_attr("activation", activation)
                for template in ("activation_unarylut_config", "activation_hardactivation_function"):
                    get_optimizer(f"vivado:{template}_template").transform(hls_model, node)   # the C++ call anew
            graph = from_hls4ml(hls_model)
            hls_model.compile()
            cache[name] = (hls_model, graph, n_in)
        return cache[name]
    return get


# ---------------------------------------------------------------------------------------------------- models
def _mlp(*sizes: int, bn_at: tuple[int, ...] = (), seed: int = 0, weight_scale: float = 1.0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i + 2 < len(sizes):
            if i in bn_at:
                bn = torch.nn.BatchNorm1d(b)
                with torch.no_grad():
                    bn.running_mean.uniform_(-1, 1)
                    bn.running_var.uniform_(0.25, 2)
                    bn.weight.uniform_(-2, 2)                     # negative gammas: decreasing channels
                    bn.bias.uniform_(-1, 1)
                layers.append(bn)
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(weight_scale) if p.ndim == 2 else None
    return model


def reuse(factor: int, *layers: str) -> dict:
    """Per-layer config giving ``layers`` the ReuseFactor ``factor`` (io_parallel: the dataflow II)."""
    return {"layer_config": {layer: {"ReuseFactor": factor} for layer in layers}}


def default_mlp():
    """hls4ml's defaults: ap_fixed<16,6> everywhere, 'auto' results; accum_t<16,6> truncates every product."""
    return _mlp(12, 16, 8, 5, bn_at=(0,), seed=1), 12, {}, reuse(4, "_0", "_3", "_5")


def narrow_modes():
    """Precisions narrow enough to wrap (input, accumulators, results) and every quantization/overflow mode."""
    model = _mlp(10, 12, 8, 6, 4, bn_at=(1,), seed=2, weight_scale=3.0)
    precisions = {
        "input_1": {"result": "ap_fixed<8,3,AP_RND_CONV,AP_WRAP>"},
        "_0": {"weight": "ap_fixed<6,2,AP_RND>", "bias": "ap_fixed<6,2>", "accum": "ap_fixed<10,4>",
               "result": "ap_fixed<7,3,AP_RND,AP_WRAP>"},
        "_1": {"result": "ap_ufixed<5,2,AP_RND_ZERO,AP_SAT>"},
        "_2": {"weight": "ap_int<2>", "bias": "ap_fixed<4,2>", "accum": "ap_fixed<9,4,AP_TRN,AP_WRAP>",
               "result": "ap_fixed<8,4,AP_RND_INF,AP_SAT_SYM>"},
        "_3": {"scale": "ap_fixed<8,3,AP_RND>", "bias": "ap_fixed<8,3>",
               "result": "ap_fixed<9,4,AP_RND_MIN_INF,AP_SAT_ZERO>"},
        "_4": {"result": "ap_ufixed<6,3,AP_TRN_ZERO,AP_WRAP>"},
        "_5": {"weight": "ap_fixed<8,2,AP_RND_CONV>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<12,5,AP_RND,AP_WRAP>",
               "result": "ap_ufixed<10,4,AP_RND_CONV,AP_WRAP>"},
        "_6": {"result": "ap_fixed<8,3,AP_TRN_ZERO,AP_SAT_SYM>"},
        "_7": {"weight": "ap_fixed<7,2>", "bias": "ap_fixed<8,3>", "accum": "ap_fixed<11,4,AP_TRN,AP_WRAP>",
               "result": "ap_fixed<9,4,AP_RND_ZERO,AP_WRAP>"},
    }
    return model, 10, precisions, reuse(2, "_0", "_2", "_5", "_7")


def systolic_mlp():
    """Exact accumulators (one saturating, but too wide to saturate), 8-bit saturating results: thresholds only."""
    model = _mlp(16, 24, 12, 6, seed=3, weight_scale=2.0)
    precisions = {
        "input_1": {"result": "ap_fixed<8,3,AP_RND,AP_SAT>"},
        "_0": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<24,12>",
               "result": "ap_fixed<8,4,AP_RND,AP_SAT>"},
        "_1": {"result": "ap_ufixed<6,3,AP_RND,AP_SAT>"},
        "_2": {"weight": "ap_fixed<6,1,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<20,8,AP_TRN,AP_SAT>",
               "result": "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"},
        "_3": {"result": "ap_ufixed<7,3,AP_TRN,AP_SAT>"},
        "_4": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<24,12>",
               "result": "ap_fixed<10,5,AP_RND,AP_SAT>"},
    }
    return model, 16, precisions, {}


def small_cnn():
    """Conv2D (padded, resource strategy) → ReLU → MaxPool → Conv2D (strided) → Flatten → Dense, wrapping accum."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(4, 3, 2, stride=2), torch.nn.Flatten(), torch.nn.Linear(12, 5))
    precisions = {
        "input_1": {"result": "ap_fixed<8,3,AP_RND,AP_SAT>"},
        "_0": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<9,2,AP_TRN,AP_WRAP>",
               "result": "ap_fixed<10,5,AP_RND_CONV,AP_WRAP>"},
        "_1": {"result": "ap_ufixed<8,4,AP_RND,AP_SAT>"},
        "_2": {"result": "ap_ufixed<7,3,AP_TRN,AP_SAT>"},
        "_3": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "result": "ap_fixed<12,5,AP_RND,AP_SAT>"},
        "_5": {"weight": "ap_fixed<8,2>", "bias": "ap_fixed<8,2>", "result": "ap_fixed<16,7,AP_RND_ZERO,AP_WRAP>"},
    }
    return model, (2, 8, 8), precisions, {"layer_config": {"_0": {"Strategy": "Resource", "ReuseFactor": 2}}}


def small_cnn1d():
    """Conv1D (padded, resource strategy) → ReLU → MaxPool1D → Conv1D (strided) → Flatten → Dense on
    (C=2, W=16): the 1-D layers as images of height 1; a wrapping accumulator, 6-bit activations."""
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool1d(2),
                                torch.nn.Conv1d(4, 3, 2, stride=2), torch.nn.Flatten(), torch.nn.Linear(12, 5))
    precisions = {
        "input_1": {"result": "ap_fixed<6,3,AP_RND,AP_SAT>"},
        "_0": {"weight": "ap_fixed<6,2,AP_RND>", "bias": "ap_fixed<6,2>", "accum": "ap_fixed<8,2,AP_TRN,AP_WRAP>",
               "result": "ap_fixed<8,4,AP_RND_CONV,AP_WRAP>"},
        "_1": {"result": "ap_ufixed<6,3,AP_RND,AP_SAT>"},
        "_2": {"result": "ap_ufixed<5,2,AP_TRN,AP_SAT>"},
        "_3": {"weight": "ap_fixed<6,2,AP_RND>", "bias": "ap_fixed<6,2>", "result": "ap_fixed<6,3,AP_RND,AP_SAT>"},
        "_5": {"weight": "ap_fixed<6,2>", "bias": "ap_fixed<6,2>", "result": "ap_fixed<12,5,AP_RND_ZERO,AP_WRAP>"},
    }
    return model, (2, 16), precisions, {"layer_config": {"_0": {"Strategy": "Resource", "ReuseFactor": 2}}}


def avg_cnn():
    """Conv2D → ReLU → AvgPool2d(2) (a window of 4: casts; a wrapping accum_t) → Conv2D → ReLU → AvgPool2d(3,
    stride 2, padding 1, padded zeros counted: a window of 9, thresholds from the exact division) → Dense; 6-bit
    activations."""
    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                                torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AvgPool2d(3, stride=2, padding=1), torch.nn.Flatten(), torch.nn.Linear(8, 5))
    precisions = {
        "input_1": {"result": "ap_fixed<6,3,AP_RND,AP_SAT>"},
        "_0": {"weight": "ap_fixed<6,2,AP_RND>", "bias": "ap_fixed<6,2>", "accum": "ap_fixed<12,5>",
               "result": "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"},
        "_1": {"result": "ap_ufixed<6,3,AP_RND,AP_SAT>"},
        "_2": {"accum": "ap_ufixed<6,2,AP_TRN,AP_WRAP>", "result": "ap_ufixed<6,3,AP_RND,AP_SAT>"},
        "_3": {"weight": "ap_fixed<6,2,AP_RND>", "bias": "ap_fixed<6,2>", "accum": "ap_fixed<14,6>",
               "result": "ap_fixed<8,4,AP_RND,AP_SAT>"},
        "_4": {"result": "ap_ufixed<5,1,AP_RND,AP_SAT>"},
        "_5": {"accum": "ap_ufixed<12,6>", "result": "ap_ufixed<6,2,AP_RND_CONV,AP_SAT>"},
        "_7": {"weight": "ap_fixed<6,2>", "bias": "ap_fixed<6,2>", "result": "ap_fixed<12,5,AP_RND_ZERO,AP_WRAP>"},
    }
    return model, (2, 8, 8), precisions, {}


def avg_cnn1d():
    """Conv1D → ReLU → AvgPool1d(3, stride 2, padding 1) (a window of 3 with counted padding: thresholds; a signed
    input, truncated toward zero) → Dense on (C=2, W=16)."""
    torch.manual_seed(8)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3, padding=1), torch.nn.AvgPool1d(3, stride=2, padding=1),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(24, 5))
    precisions = {
        "input_1": {"result": "ap_fixed<6,3,AP_RND,AP_SAT>"},
        "_0": {"weight": "ap_fixed<6,2,AP_RND>", "bias": "ap_fixed<6,2>", "accum": "ap_fixed<12,5>",
               "result": "ap_fixed<6,3,AP_RND,AP_SAT>"},
        "_1": {"accum": "ap_fixed<10,5>", "result": "ap_fixed<6,3,AP_TRN,AP_SAT>"},
        "_2": {"result": "ap_ufixed<5,2,AP_RND,AP_SAT>"},
        "_4": {"weight": "ap_fixed<6,2>", "bias": "ap_fixed<6,2>", "result": "ap_fixed<12,5,AP_RND_ZERO,AP_WRAP>"},
    }
    return model, (2, 16), precisions, {}


def _act_mlp(sizes: tuple[int, ...], activations: list[torch.nn.Module], seed: int, weight_scale: float):
    """Linear layers with ``activations`` between them (hls4ml names them _0, _1, …: Dense at even indices)."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(activations):
            layers.append(activations[i])
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(weight_scale) if p.ndim == 2 else None
    return model


def lut_mlp():
    """Lookup-table activations with narrow results: a sigmoid after a wrapping Dense result (thresholds on its
    codes), a tanh (TableSize 512, a rounding, saturating table_t) whose Dense result saturates (the Dense's casts
    and the table fuse into one MultiThreshold on the accumulator)."""
    model = _act_mlp((8, 12, 8, 4), [torch.nn.Sigmoid(), torch.nn.Tanh()], seed=9, weight_scale=4.0)
    precisions = {
        "input_1": {"result": "ap_fixed<10,4,AP_RND,AP_SAT>"},
        "_0": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<22,10>",
               "result": "ap_fixed<12,5>"},
        "_1": {"result": "ap_ufixed<8,0,AP_RND,AP_SAT>"},
        "_2": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<20,8>",
               "result": "ap_fixed<12,4,AP_RND,AP_SAT>"},
        "_3": {"result": "ap_fixed<8,1,AP_RND,AP_SAT>"},
        "_4": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<20,8>",
               "result": "ap_fixed<12,5,AP_RND,AP_SAT>"},
    }
    layer_config = {"_3": {"TableSize": 512, "TableT": "ap_fixed<12,2,AP_RND,AP_SAT>"},
                    **{name: {"ReuseFactor": 8} for name in ("_0", "_2", "_4")}}
    return model, 8, precisions, {"layer_config": layer_config}


def lut_params_mlp():
    """ELU(α = 0.5) and LeakyReLU(0.125) with hls4ml's 'auto' param_t, and a sigmoid at hls4ml's default widths
    (ap_fixed<16,6> input, saturating, and result; ap_fixed<18,8> table: 1024 levels, 1023 thresholds) ending the
    model, fused into the last Dense."""
    model = _act_mlp((6, 10, 6, 3), [torch.nn.ELU(0.5), torch.nn.LeakyReLU(0.125), torch.nn.Sigmoid()], seed=6,
                     weight_scale=3.0)
    precisions = {
        "input_1": {"result": "ap_fixed<10,4,AP_RND,AP_SAT>"},
        "_0": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<20,8>",
               "result": "ap_fixed<10,4,AP_RND,AP_SAT>"},
        "_1": {"result": "ap_fixed<8,3,AP_RND,AP_SAT>"},
        "_2": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<20,8>",
               "result": "ap_fixed<10,5,AP_TRN,AP_SAT>"},
        "_3": {"result": "ap_fixed<9,4,AP_RND_CONV,AP_SAT>"},
        "_4": {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<20,8>",
               "result": "ap_fixed<16,6,AP_RND,AP_SAT>"},
    }
    return model, 6, precisions, {}


def lut_keras_mlp():
    """The table activations hls4ml converts from Keras only (softsign, softplus, selu, relu6): PyTorch
    activations of the same hls4ml class (Activation), renamed before the C simulation is written."""
    model = _act_mlp((6, 8, 8, 6, 4), [torch.nn.Sigmoid(), torch.nn.Tanh(), torch.nn.Sigmoid(), torch.nn.ReLU()],
                     seed=9, weight_scale=6.0)
    dense = {"weight": "ap_fixed<8,2,AP_RND>", "bias": "ap_fixed<8,2>", "accum": "ap_fixed<20,8>"}
    precisions = {
        "input_1": {"result": "ap_fixed<10,4,AP_RND,AP_SAT>"},
        "_0": {**dense, "result": "ap_fixed<12,5>"},
        "_1": {"result": "ap_fixed<8,1,AP_RND,AP_SAT>"},
        "_2": {**dense, "result": "ap_fixed<12,5,AP_RND,AP_SAT>"},
        "_3": {"result": "ap_ufixed<8,3,AP_RND,AP_SAT>"},
        "_4": {**dense, "result": "ap_fixed<12,5,AP_RND,AP_SAT>"},
        "_5": {"result": "ap_fixed<9,3,AP_RND_CONV,AP_SAT>"},
        "_6": {**dense, "result": "ap_fixed<12,5,AP_RND,AP_SAT>"},
        "_7": {"result": "ap_ufixed<8,3,AP_RND,AP_SAT>"},
    }
    activations = {"_1": "softsign", "_3": "softplus", "_5": "selu", "_7": "relu6"}
    layer_config = {"_3": {"TableSize": 2048, "TableT": "ap_fixed<14,4,AP_RND,AP_SAT>"}}
    return model, 6, precisions, {"activations": activations, "layer_config": layer_config}


MODELS = {"default": default_mlp, "narrow": narrow_modes, "systolic": systolic_mlp, "cnn": small_cnn,
          "cnn1d": small_cnn1d, "lut": lut_mlp, "lut_params": lut_params_mlp, "lut_keras": lut_keras_mlp,
          "avg_cnn": avg_cnn, "avg_cnn1d": avg_cnn1d}
INPUT_SCALE = {"default": 3.0, "narrow": 6.0, "systolic": 2.0, "cnn": 3.0, "cnn1d": 3.0, "lut": 6.0, "lut_params": 3.0,
               "lut_keras": 4.0, "avg_cnn": 3.0, "avg_cnn1d": 3.0}
# lookup-table activations whose inputs must reach beyond the table's ends (index clamps): layer → (below, above)
TABLE_ENDS = {"lut": {"_1": (-8, 8), "_3": (-4, 4)}, "lut_params": {"_1": (-8, None), "_5": (-8, 8)},
              "lut_keras": {"_1": (-8, 8), "_3": (-8, 8), "_5": (-8, None)}}


# ---------------------------------------------------------------------------------------------------- C-sim
@needs_gxx
@pytest.mark.parametrize("name", sorted(MODELS))
def test_golden_equals_csim(build, name: str) -> None:
    hls_model, graph, n_in = build(name)
    x = inputs(n_in, INPUT_SCALE[name])
    expected = reference_codes(hls_model, graph, x)
    for ir in (graph, streamline(graph)):
        np.testing.assert_array_equal(output_codes(ir, x), expected)
    if name in ("narrow", "cnn", "cnn1d", "avg_cnn", "avg_cnn1d"):
        assert wrapped(graph, x) > SAMPLES // 10, "the model should overflow and wrap"
    env = golden.run(graph, x, keep=True)
    for layer, (below, above) in TABLE_ENDS.get(name, {}).items():
        node = next(n for n in graph.nodes if n.name == layer and n.op == "MultiThreshold")
        x_t = fixed_type(hls_model.graph[layer].get_input_variable().type.precision, "input")
        real = env[node.inputs[0]] * x_t.scale
        assert np.sum(real <= below) > 10 and (above is None or np.sum(real >= above) > 10), (layer, real.min(),
                                                                                              real.max())


@needs_gxx
def test_streamlined_forms(build) -> None:
    """Exact accumulators with saturating 8-bit results become MatMul → MultiThreshold; wrapping ones stay casts."""
    _, graph, _ = build("systolic")
    ops = [n.op for n in streamline(graph).nodes]
    assert ops == ["Quantize"] + ["MatMul", "MultiThreshold"] * 3 + ["Dequantize"]
    _, graph, _ = build("default")
    ops = [n.op for n in streamline(graph).nodes]
    assert "FixedMatMul" in ops and "MultiThreshold" not in ops      # 16-bit results stay FixedCast
    # table activations: the sigmoid reads the codes of a Dense result that can wrap (not monotone); the tanh and
    # its Dense's saturating casts are one MultiThreshold on the accumulator
    _, graph, _ = build("lut")
    nodes = streamline(graph).nodes
    assert [(n.op, n.name) for n in nodes] == [
        ("Quantize", "input_1"), ("MatMul", "_0"), ("FixedCast", "_0"), ("FixedCast", "_0"), ("MultiThreshold", "_1"),
        ("FixedMatMul", "_2"), ("MultiThreshold", "_3"), ("FixedMatMul", "_4"), ("FixedCast", "_4"),
        ("Dequantize", "output:_4")]
    sigmoid, tanh = nodes[4], nodes[6]
    assert sigmoid.attrs["thresholds"].shape == (1, 255) and str(sigmoid.attrs["quantizer"]) == \
        "ap_ufixed<8,0,AP_RND,AP_SAT>"
    assert tanh.attrs["thresholds"].shape == (8, 255) and tanh.source_ops == ("Dense", "Dense", "Activation")
    layers = gemm_layers(streamline(graph))
    assert [(layer.name, layer.thresholds is not None, len(layer.steps)) for layer in layers] == \
        [("_0", False, 1), ("_1", True, 0), ("_2", True, 0), ("_4", False, 1)]
    assert np.array_equal(layers[1].weight, np.eye(12))             # the sigmoid: thresholds after an identity GEMM


@needs_gxx
def test_gemm_layers(build) -> None:
    """Thresholds where one MultiThreshold requantizes, fixed-point stages for runs of casts, rounded products,
    a BatchNorm's scale as a diagonal layer, hls4ml's channels-last convolutions as NCHW convolutions."""
    _, graph, _ = build("systolic")
    layers = gemm_layers(streamline(graph))
    assert [layer.name for layer in layers] == ["_0", "_2", "_4"]
    assert all(layer.thresholds is not None and not layer.steps for layer in layers)
    # the dataflow MVAU compares thresholds in parallel: outputs wider than 4 bits run as the casts instead
    layers = gemm_layers(streamline(graph), max_thresholds=15)
    assert all(layer.thresholds is None and layer.steps for layer in layers)
    _, graph, _ = build("default")
    layers = gemm_layers(streamline(graph))
    assert [(layer.name, layer.product_shift, len(layer.steps)) for layer in layers] == \
        [("_0", 10, 2), ("_3", 10, 2), ("_5", 10, 1)]
    assert [str(step.to) for step in layers[0].steps] == ["ap_fixed<16,6,AP_TRN,AP_WRAP>"] * 2   # wrap, ReLU
    _, graph, _ = build("narrow")
    layers = gemm_layers(streamline(graph))
    assert [layer.name for layer in layers] == ["_0", "_2", "_3", "_5", "_7"]
    diagonal = layers[2]                                  # BatchNorm '_3': x @ diag(scale), then its casts
    assert np.array_equal(diagonal.weight, np.diag(np.diag(diagonal.weight))) and diagonal.inputs == (layers[1].output,)
    _, graph, _ = build("cnn")
    streamlined = streamline(graph)
    assert "Transpose" not in [n.op for n in streamlined.nodes]
    assert [(layer.name, layer.conv is not None, layer.pool) for layer in gemm_layers(streamlined)] == \
        [("_0", True, None), ("_2", True, "max"), ("_2", True, None), ("_3", True, None), ("_5", True, None)]
    _, graph, _ = build("cnn1d")                          # 1-D layers as images of height 1, quantized as such
    streamlined = streamline(graph)
    assert [n.op for n in streamlined.nodes][:2] == ["Quantize", "FixedConv"]
    assert streamlined.tensors[streamlined.nodes[0].outputs[0]].shape == (1, 2, 1, 16)
    assert [(layer.name, layer.conv is not None, layer.pool) for layer in gemm_layers(streamlined)] == \
        [("_0", True, None), ("_2", True, "max"), ("_2", True, None), ("_3", True, None), ("_5", True, None)]


@needs_gxx
def test_fml_round_trip(build, tmp_path: Path) -> None:
    from hls4ml.utils.serialization import serialize_model

    hls_model, graph, n_in = build("narrow")
    path = tmp_path / "narrow.fml"
    serialize_model(hls_model, str(path))
    loaded = load_hls4ml(path)
    x = inputs(n_in, INPUT_SCALE["narrow"], seed=1)
    np.testing.assert_array_equal(output_codes(loaded, x), output_codes(graph, x))
    np.testing.assert_array_equal(output_codes(loaded, x), reference_codes(hls_model, graph, x))


def test_load_hls4ml_errors(tmp_path: Path) -> None:
    with pytest.raises(HwgenError, match="does not exist"):
        load_hls4ml(tmp_path / "missing.fml")
    (tmp_path / "bad.fml").write_bytes(b"not a tarball")
    with pytest.raises(HwgenError, match="not a readable hls4ml model"):
        load_hls4ml(tmp_path / "bad.fml")


# ---------------------------------------------------------------------------------------------------- refusals
def test_unsupported_layers_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.PReLU(4), torch.nn.Linear(4, 3),
                                torch.nn.Softmax(dim=-1))
    with pytest.raises(UnsupportedModelError) as info:
        from_hls4ml(convert(model, 4, tmp_path, {}))
    assert {issue.node for issue in info.value.issues} == {"_1", "_3"}
    assert "'_1' (PReLU)" in str(info.value) and "'_3' (Softmax)" in str(info.value)
    assert "activation 'prelu'" in str(info.value) and "activation 'softmax'" in str(info.value)


def test_table_activation_refusals(tmp_path: Path) -> None:
    """A tanh at hls4ml's default precision has too many output levels for thresholds; a sigmoid whose result
    wraps is not monotone; both named with the layer."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    with pytest.raises(UnsupportedModelError, match=r"node '_1' \(Activation\): activation 'tanh': its result "
                       r"ap_fixed<16,6,AP_TRN,AP_WRAP> takes 2048 levels on the input's range; hwgen runs lookup-table "
                       r"activations as thresholds with at most 1024 levels \(narrow result_t\)"):
        from_hls4ml(convert(model, 4, tmp_path / "tanh", {}))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sigmoid())
    with pytest.raises(UnsupportedModelError, match=r"node '_1' \(Activation\): activation 'sigmoid': its result "
                       r"ap_fixed<6,0,AP_TRN,AP_WRAP> is not monotone in the input .*\(wrap-around\)"):
        from_hls4ml(convert(model, 4, tmp_path / "sigmoid", {"_1": {"result": "ap_fixed<6,0>"}}))


def test_saturating_accumulator_refused(tmp_path: Path) -> None:
    model = _mlp(8, 4, weight_scale=4.0)
    precisions = {"_0": {"accum": "ap_fixed<8,3,AP_TRN,AP_SAT>"}}
    with pytest.raises(UnsupportedModelError, match=r"node '_0' \(Dense\): accumulator .*order of summation"):
        from_hls4ml(convert(model, 8, tmp_path, precisions))


def test_average_pooling_refusals(tmp_path: Path) -> None:
    """A divisor that varies with the window's position (padding not counted), an accumulator that rounds every
    addition, and a non-power-of-two window after a wrapping accumulator (not monotone) are refused by name."""
    def pool_model(pool: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv1d(2, 2, 1), pool, torch.nn.Flatten(), torch.nn.Linear(32, 2))
    model = pool_model(torch.nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False))
    with pytest.raises(UnsupportedModelError, match=r"node '_1' \(Pooling1D\): average pooling without count_pad "
                       r"divides .* by their unpadded area"):
        from_hls4ml(convert(model, (2, 16), tmp_path / "count_pad", {}))
    model = pool_model(torch.nn.AvgPool1d(3, stride=1, padding=1))
    precisions = {"_0": {"result": "ap_fixed<8,3>"}, "_1": {"accum": "ap_fixed<8,4>"}}
    with pytest.raises(UnsupportedModelError, match=r"node '_1' \(Pooling1D\): accum_t ap_fixed<8,4,AP_TRN,AP_WRAP> "
                       r"has fewer fractional bits than the input \(5\)"):
        from_hls4ml(convert(model, (2, 16), tmp_path / "coarse", precisions))
    precisions = {"_0": {"result": "ap_fixed<8,3>"}, "_1": {"accum": "ap_fixed<7,2>"}}
    with pytest.raises(UnsupportedModelError, match=r"node '_1' \(Pooling1D\): average pooling over a window of 3 "
                       r"\(not a power of two\): its result .* is not monotone"):
        from_hls4ml(convert(model, (2, 16), tmp_path / "wrap", precisions))


# ---------------------------------------------------------------------------------------------------- ap_fixed casts
HARNESS = """#include <cmath>
#include <cstdio>
#include "ap_fixed.h"
template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int SW, int SI, bool SS>
void from_fixed(int n, const long long *codes) {
    for (int i = 0; i < n; i++) {
        ap_fixed_base<SW, SI, SS> src = std::ldexp((double)codes[i], SI - SW);
        ap_fixed_base<W, I, S, Q, O> dst = src;
        std::printf("%.0f\\n", std::ldexp(dst.to_double(), W - I));
    }
}
template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O>
void from_double(int n, const double *values) {
    for (int i = 0; i < n; i++) {
        ap_fixed_base<W, I, S, Q, O> dst = values[i];
        std::printf("%.0f\\n", std::ldexp(dst.to_double(), W - I));
    }
}
"""
TARGETS = [(5, 2, signed, q, o) for signed in (True, False) for q in ROUNDING for o in OVERFLOW]
SOURCES = [(10, 4, True), (10, 5, False)]


def _double_probes() -> np.ndarray:
    rng = np.random.default_rng(0)
    grid = np.arange(-96, 97) / 16                                        # ties and near-ties of the 1/8 grid
    return np.concatenate([grid, grid + 2.0 ** -30, grid - 2.0 ** -30, rng.normal(size=200) * 8,
                           [1e-300, -1e-300, 1e9, -1e9, 2.0 ** 70 + 2.0 ** 20, -(2.0 ** 70)]])


@pytest.fixture(scope="module")
def harness_output(tmp_path_factory) -> list[int]:
    """Codes the ap_fixed headers shipped with hls4ml produce for every (target, source) case, in order."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    include = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    doubles = _double_probes()
    lines = [HARNESS, "int main() {"]
    for s_w, s_i, s_s in SOURCES:
        codes = range(-(1 << (s_w - 1)), 1 << (s_w - 1)) if s_s else range(1 << s_w)
        lines.append(f"  {{ const long long c[] = {{{', '.join(map(str, codes))}}};")
        for w, i, signed, q, o in TARGETS:
            lines.append(f"    from_fixed<{w}, {i}, {str(signed).lower()}, AP_{q}, AP_{o}, {s_w}, {s_i}, "
                         f"{str(s_s).lower()}>({len(codes)}, c);")
        lines.append("  }")
    lines.append(f"  {{ const double d[] = {{{', '.join(float(v).hex() for v in doubles)}}};")
    for w, i, signed, q, o in TARGETS:
        lines.append(f"    from_double<{w}, {i}, {str(signed).lower()}, AP_{q}, AP_{o}>({len(doubles)}, d);")
    lines += ["  }", "  return 0;", "}"]
    workdir = tmp_path_factory.mktemp("apfixed")
    (workdir / "cast.cpp").write_text("\n".join(lines))
    subprocess.run(["g++", "-std=c++17", "-O0", f"-I{include}", "cast.cpp", "-o", "cast"], cwd=workdir, check=True)
    run = subprocess.run([str(workdir / "cast")], capture_output=True, text=True, check=True)
    return [int(float(v)) for v in run.stdout.split()]


def test_fixed_casts_match_ap_fixed(harness_output: list[int]) -> None:
    """Every quantization × overflow mode × signedness, from every code of two source types and from doubles."""
    expected = iter(harness_output)
    compared = 0
    for (s_w, s_i, s_s), target in itertools.product(SOURCES, TARGETS):
        codes = np.arange(-(1 << (s_w - 1)), 1 << (s_w - 1)) if s_s else np.arange(1 << s_w)
        want = np.array([next(expected) for _ in codes])
        got = FixedType(*target).cast(codes, s_w - s_i)
        np.testing.assert_array_equal(got, want, err_msg=f"{FixedType(*target)} from ap_fixed<{s_w},{s_i}>")
        compared += codes.size
    doubles = _double_probes()
    for target in TARGETS:
        want = np.array([next(expected) for _ in doubles])
        np.testing.assert_array_equal(FixedType(*target).quantize(doubles), want, err_msg=f"{FixedType(*target)}")
        compared += doubles.size
    assert next(expected, None) is None and compared > 100_000


# ---------------------------------------------------------------------------------------------------- activations
def _c_type(t: FixedType) -> str:
    return f"ap_{'' if t.signed else 'u'}fixed<{t.width},{t.integer},AP_{t.rounding},AP_{t.overflow}>"


def _activation_cases() -> list[tuple]:
    """(kind, input type, result type, table_size, table_t, param or slope/shift): every activation hwgen imports,
    over input types with fractional bits, unsigned and negative-fraction types, saturating and wrapping results,
    power-of-two and other table sizes, narrow and 44-bit tables (where float rounding shows in the codes)."""
    data = [FixedType(12, 5), FixedType(10, 2, True, "RND", "SAT"), FixedType(9, 3, False), FixedType(8, 10)]
    results = [FixedType(8, 1, True, "RND", "SAT"), FixedType(8, 0, False), FixedType(16, 6),
               FixedType(6, 2, True, "RND_CONV", "WRAP")]
    tables = [(1024, FixedType(18, 8)), (256, FixedType(12, 2, True, "RND", "SAT")), (1000, FixedType(10, 1, False)),
              (4096, FixedType(16, 3))]
    cases = []
    for kind in ("sigmoid", "tanh", "softplus", "softsign", "elu", "selu"):
        cases += [(kind, d, r, n, t, None) for d, r, (n, t) in zip(data, results, tables)]
        cases.append((kind, FixedType(16, 5), FixedType(40, 3), 1000, FixedType(44, 3), None))
    params = [("leakyrelu", (FixedType(8, 0, False), 0.1)), ("elu", (FixedType(8, 0, False), 0.7)),
              ("thresholdedrelu", (FixedType(8, 0, False), 0.55)), ("thresholdedrelu", (FixedType(8, 1), -0.2))]
    cases += [(kind, d, r, 1024, FixedType(18, 8), p) for kind, p in params for d, r in zip(data, results[1:])]
    cases += [(kind, d, r, 0, None, None) for kind in ("relu6", "relu1") for d, r in zip(data[::2], results[::2])]
    slopes = [(FixedType(16, 0, False), 0.2, FixedType(2, 0, False), 0.5), (FixedType(8, 1, False), 1.0,
                                                                            FixedType(4, 1), -0.25)]
    cases += [(kind, d, r, 0, None, p) for kind in ("hard_sigmoid", "hard_tanh") for p in slopes
              for d, r in zip(data[:2], results[::3])]
    return cases


def _all_codes(t: FixedType) -> np.ndarray:
    return np.arange(t.dtype.min, t.dtype.max + 1)


@pytest.fixture(scope="module")
def nnet_activations(tmp_path_factory) -> list[np.ndarray]:
    """The result codes of hls4ml's own nnet_activation.h kernels for every input code of every case, in order."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    root = Path(hls4ml.__file__).parent / "templates" / "vivado"
    cases = _activation_cases()
    lines = ["#include <cstdio>", '#include "nnet_utils/nnet_activation.h"']
    body = ["int main() {"]
    for k, (kind, d, r, n, t, p) in enumerate(cases):
        if kind.startswith("hard"):
            slope_t, slope, shift_t, shift = p
            lines.append(f"struct c{k} {{ static const unsigned n_in = 1; static const {_c_type(slope_t)} slope; "
                         f"static const {_c_type(shift_t)} shift; static const unsigned io_type = nnet::io_parallel; "
                         f"static const unsigned reuse_factor = 1; }};")
            lines.append(f"const {_c_type(slope_t)} c{k}::slope = {slope}; const {_c_type(shift_t)} c{k}::shift = "
                         f"{shift};")
        else:
            table = _c_type(t) if t is not None else "ap_fixed<18,8>"
            lines.append(f"struct c{k} : nnet::activ_config {{ static const unsigned n_in = 1; static const unsigned "
                         f"table_size = {n or 1024}; typedef {table} table_t; }};")
        fn = {"leakyrelu": "leaky_relu", "thresholdedrelu": "thresholded_relu"}.get(kind, kind)
        codes = _all_codes(d)
        if p is not None and not kind.startswith("hard"):
            call = f"nnet::{fn}<{_c_type(d)}, {_c_type(p[0])}, {_c_type(r)}, c{k}>(x, {p[1]}, y);"
        else:
            call = f"nnet::{fn}<{_c_type(d)}, {_c_type(r)}, c{k}>(x, y);"
        body.append(f"  for (long long c = {codes[0]}; c <= {codes[-1]}; c++) {{ {_c_type(d)} x[1]; x[0].V = c; "
                    f"{_c_type(r)} y[1]; {call} std::printf(\"%lld\\n\", (long long)y[0].V); }}")
    workdir = tmp_path_factory.mktemp("activations")
    (workdir / "act.cpp").write_text("\n".join(lines + body + ["  return 0;", "}"]))
    subprocess.run(["g++", "-std=c++11", "-O0", f"-I{root}", f"-I{root / 'ap_types'}", "act.cpp", "-o", "act"],
                   cwd=workdir, check=True)
    values = iter(int(v) for v in subprocess.run([str(workdir / "act")], capture_output=True, text=True,
                                                  check=True).stdout.split())
    out = []
    for _, d, r, *_ in cases:
        raw = np.array([next(values) for _ in _all_codes(d)])
        out.append(np.where(raw > r.dtype.max, raw - (1 << r.width), raw) if r.signed else raw)
    assert next(values, None) is None
    return out


def test_activations_match_nnet(nnet_activations: list[np.ndarray]) -> None:
    """hwgen's model of every activation (tables computed as the C code computes them, index arithmetic, casts)
    equals hls4ml's kernels on every input code."""
    compared = 0
    for (kind, d, r, n, t, p), expected in zip(_activation_cases(), nnet_activations):
        options = {"slope_shift": p} if kind.startswith("hard") else {"param": p} if p is not None else {}
        codes = _all_codes(d)
        pieces = tables.activation_pieces(kind, d, r, int(codes[0]), int(codes[-1]), n or 1024, t, **options)
        np.testing.assert_array_equal(tables.evaluate(pieces, codes), expected, err_msg=f"{kind} {d} → {r} {n} {t}")
        compared += codes.size
    assert compared > 200_000


def test_activation_thresholds() -> None:
    """Monotone activations become MultiThresholds equal to them on every input code; the fewest levels (a
    result with more fractional bits than the table steps by 2^k codes); non-monotone ones are refused."""
    from hwgen.golden import multithreshold
    from hwgen.ir import Node

    node = Node("MultiThreshold", "act", ("x",), ("y",), {"axis": 1})
    checked = 0
    for kind, d, r, n, t, p in _activation_cases():
        options = {"slope_shift": p} if kind.startswith("hard") else {"param": p} if p is not None else {}
        codes = _all_codes(d)
        pieces = tables.activation_pieces(kind, d, r, int(codes[0]), int(codes[-1]), n or 1024, t, **options)
        values = tables.evaluate(pieces, codes)
        grid = math.gcd(*(int(v) for v in values - values.min())) or 1
        try:
            attrs = tables.threshold_attrs(node, pieces, r)
        except tables.ActivationRefused as exc:
            assert np.any(np.diff(values) < 0) or (values.max() - values.min()) // grid > 1023, (kind, d, r, str(exc))
            continue
        got = multithreshold(codes, attrs["thresholds"], attrs["descending"], attrs["base"], attrs["step"], None)
        np.testing.assert_array_equal(got, values, err_msg=f"{kind} {d} → {r}")
        assert grid % attrs["step"] == 0
        assert attrs["thresholds"].shape[1] == max(1, (values.max() - values.min()) // attrs["step"])
        checked += 1
    assert checked >= 28
    d, r = FixedType(10, 4), FixedType(20, 2)               # 18 fractional bits: table codes 2^8 apart
    pieces = tables.activation_pieces("sigmoid", d, r, d.dtype.min, d.dtype.max, 1024, FixedType(18, 8))
    attrs = tables.threshold_attrs(node, pieces, r)
    assert attrs["step"] == 1 << 8 and attrs["thresholds"].shape[1] <= 1023


# (data_T, accum_t, res_T, window): wrapping accumulators (signed and unsigned), negative sums (truncation toward
# zero), power-of-two and other windows, every rounding mode of the result
AVERAGE_CASES = [
    (FixedType(6, 3, False), FixedType(6, 2, False), FixedType(6, 3, False, "RND", "SAT"), 4),
    (FixedType(6, 3), FixedType(10, 5), FixedType(6, 3, True, "TRN", "SAT"), 3),
    (FixedType(6, 3), FixedType(8, 4), FixedType(6, 3, True, "RND_INF", "SAT"), 2),
    (FixedType(5, 2), FixedType(9, 3), FixedType(6, 2, True, "RND_ZERO", "WRAP"), 9),
    (FixedType(6, 2), FixedType(8, 2), FixedType(6, 2, True, "RND_CONV", "SAT"), 8),
    (FixedType(5, 1, False), FixedType(12, 6, False), FixedType(6, 2, False, "RND_CONV", "SAT"), 9),
    (FixedType(6, 3), FixedType(12, 4, True, "RND", "SAT"), FixedType(7, 3, True, "RND_MIN_INF", "SAT_SYM"), 6),
    (FixedType(6, 3), FixedType(9, 3), FixedType(5, 2, True, "TRN_ZERO", "SAT_ZERO"), 16),
]


def _ap(t: FixedType) -> str:
    return f"ap_{'' if t.signed else 'u'}fixed<{t.width}, {t.integer}, AP_{t.rounding}, AP_{t.overflow}>"


def _window_codes(total: int, window: int, t: FixedType) -> list[int]:
    """``window`` codes of ``t`` summing to ``total``."""
    codes = []
    for _ in range(window):
        codes.append(int(np.clip(total, t.dtype.min, t.dtype.max)))
        total -= codes[-1]
    return codes


@needs_gxx
def test_average_matches_nnet_avg(tmp_path: Path) -> None:
    """hwgen's average pooling arithmetic (the exact function thresholds are computed from, and the casts of a
    power-of-two window) equals hls4ml's ``nnet::avg`` then the assignment to res_T, compiled with the shipped
    headers, on every reachable window sum of each case."""
    templates = Path(hls4ml.__file__).parent / "templates" / "vivado"
    lines = ["#include <cmath>", "#include <cstdio>", '#include "ap_fixed.h"', '#include "nnet_utils/nnet_pooling.h"',
             "int main() {"]
    sums = []
    for index, (x_t, acc_t, res_t, window) in enumerate(AVERAGE_CASES):
        total = np.arange(window * x_t.dtype.min, window * x_t.dtype.max + 1)
        sums.append(total)
        rows = ", ".join("{" + ", ".join(map(str, _window_codes(int(v), window, x_t))) + "}" for v in total)
        lines += [f"  {{ static const long long c[][{window}] = {{{rows}}};",
                  f"    for (unsigned n = 0; n < {len(total)}; n++) {{",
                  f"      {_ap(x_t)} x[{window}];",
                  f"      for (int i = 0; i < {window}; i++) x[i] = std::ldexp((double)c[n][i], {-x_t.frac});",
                  f"      {_ap(res_t)} r = nnet::avg<{_ap(x_t)}, {window}, {_ap(acc_t)}>(x, {window});",
                  f"      std::printf(\"%.0f\\n\", std::ldexp(r.to_double(), {res_t.frac}));",
                  "    }", "  }"]
    lines += ["  return 0;", "}"]
    (tmp_path / "avg.cpp").write_text("\n".join(lines))
    subprocess.run(["g++", "-std=c++17", "-O0", f"-I{templates}", f"-I{templates / 'ap_types'}", "avg.cpp", "-o",
                    "avg"], cwd=tmp_path, check=True)
    run = subprocess.run([str(tmp_path / "avg")], capture_output=True, text=True, check=True)
    expected = iter(int(float(v)) for v in run.stdout.split())
    for (x_t, acc_t, res_t, window), total in zip(AVERAGE_CASES, sums):
        want = np.array([next(expected) for _ in total])
        case = f"{x_t} summed in {acc_t}, / {window}, to {res_t}"
        np.testing.assert_array_equal(tables.average_codes(total, x_t.frac, window, acc_t, res_t), want, err_msg=case)
        steps = tables.average_steps(x_t.frac, window, acc_t)
        assert (steps is None) == (window & (window - 1) != 0)
        if steps is not None:
            casts = (*steps, FixedStep(acc_t.frac, res_t))
            np.testing.assert_array_equal(apply_steps(casts, total, None), want, err_msg=case)
    assert next(expected, None) is None


# ---------------------------------------------------------------------------------------------------- hardware
HW_SAMPLES = 256
SYSTOLIC_MODELS = ("narrow", "systolic", "cnn", "cnn1d", "avg_cnn", "avg_cnn1d", "lut", "lut_params",
                   "lut_keras")                                                         # one array, one build


def check_against_csim(result, hls_model, graph: Graph, x: np.ndarray) -> None:
    """The RTL run was bit-exact with the golden model, and its output codes equal hls4ml's C-sim's."""
    assert result.report["bit_exact"] and result.report["mismatches"] == 0, result.report
    np.testing.assert_array_equal(result.codes.reshape(len(x), -1), reference_codes(hls_model, graph, x))


@pytest.fixture(scope="module")
def shared_array(build) -> dict:
    """The field-wise largest of the models' smallest 4×4 configurations (at 8 samples a run)."""
    configs = [asdict(default_config(gemm_layers(streamline(build(name)[1])), rows=4, cols=4, batch=8))
               for name in SYSTOLIC_MODELS]
    merged = {key: max(c[key] for c in configs) for key in configs[0] if isinstance(configs[0][key], int)}
    merged.pop("rows"), merged.pop("cols")
    assert merged["product_rounding"] and merged["fixed_steps"] == 3
    return merged


@needs_gxx
@pytest.mark.parametrize("name", SYSTOLIC_MODELS)
def test_systolic_equals_csim(build, shared_array: dict, name: str) -> None:
    """MLPs with every quantization and overflow mode, wrapping accumulators and results, a BatchNorm, rounded
    products; CNNs (2-D and 1-D) with padded and strided convolutions and max or average pooling; a
    threshold-requantized MLP; MLPs with lookup-table activations (sigmoid, tanh, elu, leakyrelu, softsign, softplus,
    selu, relu6)."""
    hls_model, graph, n_in = build(name)
    design = hwgen.compile(hls_model, rows=4, cols=4, **shared_array)
    x = inputs(n_in, INPUT_SCALE[name], seed=2)[:HW_SAMPLES]
    # the CNN's input image is preloaded and its results read back, one batch a run
    streams = design.program.x_layout.slots == design.program.y_layout.slots == 1
    chunks = [x] if streams else [x[i:i + design.program.batch] for i in range(0, len(x), design.program.batch)]
    codes = []
    for chunk in chunks:
        result = design.simulate(chunk)
        assert result.report["bit_exact"] and result.report["cycles"] == result.report["predicted_cycles"]
        codes.append(result.codes.reshape(len(chunk), -1))
    np.testing.assert_array_equal(np.concatenate(codes), reference_codes(hls_model, graph, x))
    if name in ("narrow", "cnn", "cnn1d", "avg_cnn", "avg_cnn1d"):
        assert wrapped(graph, x) > 0, "the simulated inputs should overflow and wrap"


def check_dataflow(design, hls_model, graph: Graph, x: np.ndarray, ii: int) -> dict:
    """Simulate; bit-exact with the C-sim, II and latency as the cycle model predicts, II = ``ii``."""
    result = design.simulate(x)
    check_against_csim(result, hls_model, graph, x)
    report = result.report
    assert report["ii_cycles"] == report["predicted_ii_cycles"] == ii
    assert report["latency_cycles"] == report["predicted_latency_cycles"]
    assert report["cycles"] == report["predicted_cycles"]
    return report


@needs_gxx
def test_dataflow_equals_csim_at_reuse_factor_ii(build) -> None:
    """ReuseFactor 2 on every Dense layer: each folded to SF·NF = 2 (MW·MH/2 MAC lanes), the BatchNorm's
    diagonal layer no slower; measured II = 2 cycles, as the folding implies."""
    hls_model, graph, n_in = build("narrow")
    design = hwgen.compile(hls_model, arch="dataflow")
    rows = design.program.fold_report()
    dense = [row for row in rows if row["name"] != "_3"]
    assert all(row["cycles"] == 2 and row["pe"] * row["simd"] * 2 == row["mw"] * row["mh"] for row in dense)
    assert next(row for row in rows if row["name"] == "_3")["cycles"] <= 2
    x = inputs(n_in, INPUT_SCALE["narrow"], seed=2)[:HW_SAMPLES]
    check_dataflow(design, hls_model, graph, x, ii=2)
    assert wrapped(graph, x) > 0


@needs_gxx
def test_cnn_on_dataflow_equals_csim(build) -> None:
    """The CNN (channels-last conv, max pooling, the casts after it, dense) on the dataflow pipeline: sliding-window
    generators, the pooling unit, fixed-point stages; bit-exact with the C-sim at the II of its folding."""
    hls_model, graph, n_in = build("cnn")
    design = hwgen.compile(hls_model, arch="dataflow", target_cycles=576)
    assert [row["unit"] for row in design.program.fold_report()][:2] == ["SWG+MVAU", "SWG+maxpool"]
    x = inputs(n_in, INPUT_SCALE["cnn"], seed=3)[:HW_SAMPLES]
    check_dataflow(design, hls_model, graph, x, ii=design.config.predicted_bound)


@needs_gxx
def test_cnn1d_on_dataflow_equals_csim(build) -> None:
    """The 1-D CNN (Conv1D, MaxPooling1D as images of height 1; the PyTorch input quantized straight to an NCHW
    image): sliding windows along the width, the pooling unit, fixed-point stages; bit-exact with the C-sim at the
    II of its folding."""
    hls_model, graph, n_in = build("cnn1d")
    design = hwgen.compile(hls_model, arch="dataflow", target_cycles=128)
    assert [row["unit"] for row in design.program.fold_report()][:2] == ["SWG+MVAU", "SWG+maxpool"]
    x = inputs(n_in, INPUT_SCALE["cnn1d"], seed=3)[:HW_SAMPLES]
    check_dataflow(design, hls_model, graph, x, ii=design.config.predicted_bound)
    assert wrapped(graph, x) > 0


@needs_gxx
def test_avg_cnn_on_dataflow_equals_csim(build) -> None:
    """The average-pooling CNN: a 2×2 pool (window sums, a wrapping accum_t, the division as a TRN_ZERO cast) and a
    padded 3×3 pool (its exact division as thresholds) on the sum-pooling unit; bit-exact with the C-sim at the II
    of its folding."""
    hls_model, graph, n_in = build("avg_cnn")
    design = hwgen.compile(hls_model, arch="dataflow", target_cycles=576)
    units = {row["name"]: row["unit"] for row in design.program.fold_report()}
    assert units["_2"] == units["_5"] == "SWG+sumpool"
    x = inputs(n_in, INPUT_SCALE["avg_cnn"], seed=3)[:HW_SAMPLES]
    check_dataflow(design, hls_model, graph, x, ii=design.config.predicted_bound)
    assert wrapped(graph, x) > 0


@needs_gxx
@pytest.mark.nightly
def test_dataflow_lut_activations(build) -> None:
    """(nightly: the dataflow unit compares all 255 thresholds of an 8-bit activation in parallel, a Verilator
    build of many minutes) Sigmoid (thresholds after an identity MVAU, reading a wrapping Dense result) and tanh (thresholds fused
    into its Dense's MVAU) on the dataflow architecture; ReuseFactor 8: II = 8 cycles, the identity layer folded
    to meet it."""
    hls_model, graph, n_in = build("lut")
    design = hwgen.compile(hls_model, arch="dataflow")
    rows = design.program.fold_report()
    assert [(row["name"], row["mw"], row["mh"]) for row in rows] == \
        [("_0", 8, 12), ("_1", 12, 12), ("_2", 12, 8), ("_4", 8, 4)]
    assert [row["cycles"] for row in rows] == [8, 6, 8, 8]
    x = inputs(n_in, INPUT_SCALE["lut"], seed=2)[:HW_SAMPLES]
    check_dataflow(design, hls_model, graph, x, ii=8)


@needs_gxx
def test_refusals(build) -> None:
    """16-bit models on the systolic array (products too wide for its 30-bit accumulators) are refused with one
    clear message."""
    hls_model, _, _ = build("default")
    with pytest.raises(HwgenError, match="invalid configuration: accumulator width .* exceeds 30"):
        hwgen.compile(hls_model, rows=4, cols=4)


def cli(*args) -> subprocess.CompletedProcess:
    import sys
    return subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True, text=True,
                          timeout=1200, check=False)


@needs_gxx
def test_cli_from_hls4ml(build, tmp_path: Path) -> None:
    """compile --from-hls4ml MODEL.fml, then simulate and estimate: the same pipeline as the Python API."""
    from hls4ml.utils.serialization import serialize_model

    hls_model, graph, n_in = build("narrow")
    fml = tmp_path / "narrow.fml"
    serialize_model(hls_model, str(fml))
    out = tmp_path / "design"
    result = cli("compile", "--from-hls4ml", fml, "--arch", "dataflow", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "II 2 cycles" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["model"] == "model.fml" and (out / "model.fml").is_file()
    assert {u["unit"] for u in manifest["units"]} >= {"MVAU (rounded products)", "MVAU fixed-point stages (fused)"}
    again = tmp_path / "again"
    assert cli("compile", "--from-hls4ml", fml, "--arch", "dataflow", "-o", again).returncode == 0
    for name in ("rtl/hwgen_dataflow.v", "manifest.json", "weights.load", "biases.load", "model.fml"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    x = inputs(n_in, INPUT_SCALE["narrow"], seed=3)[:64]
    np.save(tmp_path / "x.npy", x)
    result = cli("simulate", out, "--inputs", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "sim_report.json").read_text())["bit_exact"]
    y = np.load(tmp_path / "y.npy").reshape(len(x), -1)
    np.testing.assert_array_equal(np.ldexp(y.astype(np.float64), fixed_output_type(graph).frac),
                                  reference_codes(hls_model, graph, x))
    result = cli("estimate", out, "--target", "xcup", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["dsp"]["value"] > 0
    result = cli("compile", "--from-hls4ml", tmp_path / "missing.fml", "-o", tmp_path / "x")
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
    result = cli("compile", fml, "--from-hls4ml", fml, "-o", tmp_path / "x")
    assert result.returncode == 2 and "exactly one" in result.stderr


# ---------------------------------------------------------------------------------------------------- nightly
@needs_gxx
@pytest.mark.nightly
@pytest.mark.parametrize("name", ["default", "systolic"])
def test_dataflow_more_precisions(build, name: str) -> None:
    """hls4ml's default ap_fixed<16,6> (16×16-bit products truncated to the accumulator, ReuseFactor 4) and an
    MLP whose casts become thresholds."""
    hls_model, graph, n_in = build(name)
    design = hwgen.compile(hls_model, arch="dataflow")
    x = inputs(n_in, INPUT_SCALE[name], seed=2)[:HW_SAMPLES]
    check_dataflow(design, hls_model, graph, x, ii=4 if name == "default" else 1)


def random_precisions(rng: np.random.Generator, layers: int) -> dict[str, dict[str, str]]:
    """Narrow ap_fixed types with random quantization and overflow modes for every tensor of an MLP (wrapping
    accumulators: hwgen refuses saturating ones that can overflow)."""
    def fixed(lo: int, hi: int, overflow: tuple[str, ...] = ("WRAP",), unsigned: bool = False) -> str:
        width = int(rng.integers(lo, hi + 1))
        integer = int(rng.integers(1, width))
        return (f"ap_{'u' if unsigned else ''}fixed<{width},{integer},AP_{rng.choice(ROUNDING)},"
                f"AP_{rng.choice(overflow)}>")

    results = ("WRAP", "WRAP", "SAT", "SAT_SYM", "SAT_ZERO")
    precisions = {"input_1": {"result": fixed(6, 8, results)}}
    for i in range(layers):
        precisions[f"_{2 * i}"] = {"weight": fixed(4, 8), "bias": fixed(4, 8), "accum": fixed(8, 12),
                                   "result": fixed(6, 10, results)}
        if i + 1 < layers:                                # the ReLU after every Dense but the last
            precisions[f"_{2 * i + 1}"] = {"result": fixed(5, 8, results, unsigned=bool(rng.random() < 0.5))}
    return precisions


RANDOM_MODELS = 6


@pytest.fixture(scope="module")
def random_models(tmp_path_factory) -> list[tuple]:
    """MLPs of random sizes with random narrow precisions: (hls_model, graph, inputs), C-sim compiled."""
    models = []
    for seed in range(RANDOM_MODELS):
        rng = np.random.default_rng(100 + seed)
        sizes = [int(v) for v in rng.integers(3, 12, size=4)]
        model = _mlp(*sizes, seed=seed, weight_scale=float(rng.uniform(1, 4)))
        hls_model = convert(model, sizes[0], tmp_path_factory.mktemp(f"random{seed}"),
                            random_precisions(rng, len(sizes) - 1))
        graph = from_hls4ml(hls_model)
        hls_model.compile()
        models.append((hls_model, graph, inputs(sizes[0], 4.0, seed=seed)[:HW_SAMPLES]))
    return models


@needs_gxx
@pytest.mark.nightly
def test_random_precisions_systolic(random_models) -> None:
    """Random narrow precisions (wrapping accumulators, every mode) on one shared 4×4 array: C-sim = golden =
    RTL for every model."""
    configs = [asdict(default_config(gemm_layers(streamline(graph)), rows=4, cols=4, batch=8))
               for _, graph, _ in random_models]
    shared = {key: max(c[key] for c in configs) for key in configs[0] if isinstance(configs[0][key], int)}
    shared.pop("rows"), shared.pop("cols")
    for hls_model, graph, x in random_models:
        np.testing.assert_array_equal(output_codes(graph, x), reference_codes(hls_model, graph, x))
        result = hwgen.compile(hls_model, rows=4, cols=4, **shared).simulate(x)
        check_against_csim(result, hls_model, graph, x)


@needs_gxx
@pytest.mark.nightly
@pytest.mark.parametrize("index", range(RANDOM_MODELS))
def test_random_precisions_dataflow(random_models, index: int) -> None:
    hls_model, graph, x = random_models[index]
    check_against_csim(hwgen.compile(hls_model, arch="dataflow").simulate(x), hls_model, graph, x)


@needs_gxx
@pytest.mark.nightly
def test_jet_tagger_example(tmp_path: Path) -> None:
    """examples/hls4ml_jet_tagger/run.py end to end: bit-exact with hls4ml's C-sim, II = the ReuseFactor."""
    import sys

    script = Path(__file__).resolve().parent.parent / "examples" / "hls4ml_jet_tagger" / "run.py"
    out = tmp_path / "design"
    root = str(script.parent.parent.parent)                 # this checkout's hwgen, also in the script's subprocesses
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, str(script), "--samples", "64", "--out", str(out)], capture_output=True,
                            text=True, timeout=3600, check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((out / "results.json").read_text())
    assert figures["mismatches_vs_hls4ml_csim"] == 0 and figures["outputs_compared"] == 64 * 5
    assert figures["bit_exact_vs_golden"]
    assert figures["ii_cycles"] == {"measured": 16, "predicted": 16}
    assert figures["latency_cycles"]["measured"] == figures["latency_cycles"]["predicted"]
