"""A zoo of small quantized ONNX models for testing the hwgen importer and golden model.

Every model is identified by a name in :data:`NAMES`; :func:`build` writes it (or reuses it)
under a cache directory and returns a :class:`ZooModel` with seeded sample inputs.

Three ONNX dialects are covered:

* ``"qonnx"``: ``Quant`` / ``BipolarQuant`` / ``Trunc`` nodes of the ``qonnx.custom_op.general``
  domain, exported by brevitas (TorchScript exporter, ``dynamo=False``, and the default dynamo
  exporter) or written directly with :mod:`onnx.helper`;
* ``"qcdq"``: brevitas' ``export_onnx_qcdq`` (QuantizeLinear -> Clip -> DequantizeLinear);
* ``"qdq"``: onnxruntime's ``quantize_static`` in ``QuantFormat.QDQ``.

Brevitas models get random weights and calibrated activation scales / BatchNorm statistics
(a few batches of random data in calibration mode), so that activations use most of their
integer range. Importing this module is cheap: torch, brevitas and onnxruntime are imported
lazily inside the builders. Files are cached under ``cache_dir`` keyed by the model name plus a
hash of this module's source, so editing a builder invalidates all cached models.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    import torch

Dialect = Literal["qonnx", "qcdq", "qdq"]
"""ONNX quantization dialect of a zoo model."""

Distribution = Literal["unit", "normal"]
"""Sample-input distribution: uniform in [0, 1) or standard normal."""

Exporter = Literal["qonnx", "qonnx_dynamo", "qcdq", "qcdq_dynamo"]
"""Brevitas export flavour: QONNX or QCDQ, TorchScript (``dynamo=False``) or dynamo exporter."""

QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 17
NUM_CALIBRATION = 64


@dataclass(frozen=True)
class ZooModel:
    """A built zoo model: its ONNX file, dialect and float32 sample inputs."""

    name: str
    path: Path
    dialect: Dialect
    inputs: np.ndarray
    """Float32 sample inputs of shape (N, *input_shape[1:])."""


@dataclass(frozen=True)
class _Spec:
    """How to build one zoo model."""

    dialect: Dialect
    input_shape: tuple[int, ...]
    """Shape of one sample (without the batch dimension)."""
    distribution: Distribution
    write: Callable[[Path, np.ndarray, int], None]
    """Writes the ONNX model to a path, given float32 calibration data (batch first) and a seed."""
    num_samples: int = 32


def _source_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _sample(spec: _Spec, rng: np.random.Generator, n: int) -> np.ndarray:
    shape = (n, *spec.input_shape)
    if spec.distribution == "unit":
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


def build(name: str, cache_dir: Path) -> ZooModel:
    """Build the zoo model ``name`` into ``cache_dir``, or reuse the cached build.

    Builds are deterministic (seeded from the name). Files are written atomically, so
    concurrent builders (e.g. pytest-xdist workers) sharing ``cache_dir`` are safe.
    """
    spec = _SPECS[name]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{_source_digest()}"
    onnx_path = cache_dir / f"{stem}.onnx"
    inputs_path = cache_dir / f"{stem}.inputs.npy"
    seed = _seed(name)
    if not onnx_path.exists():
        calibration = _sample(spec, np.random.default_rng([seed, 1]), NUM_CALIBRATION)
        tmp = cache_dir / f".{stem}.{os.getpid()}.onnx"
        spec.write(tmp, calibration, seed)
        os.replace(tmp, onnx_path)
    if not inputs_path.exists():
        inputs = _sample(spec, np.random.default_rng([seed, 0]), spec.num_samples)
        tmp = cache_dir / f".{stem}.{os.getpid()}.inputs.npy"
        np.save(tmp, inputs)
        os.replace(tmp, inputs_path)
    return ZooModel(name=name, path=onnx_path, dialect=spec.dialect, inputs=np.load(inputs_path))


# --------------------------------------------------------------------------------------------
# brevitas helpers


def _calibrate(model: torch.nn.Module, data: np.ndarray, batch_size: int = 16) -> None:
    """Set BatchNorm statistics and activation scales from ``data``; leave ``model`` in eval.

    Runs the model in brevitas' calibration mode (quantization off, activation statistics
    collected) and in training mode, with BatchNorm running statistics reset and accumulated
    as a cumulative average over the calibration batches.
    """
    import torch
    from brevitas.graph.calibrate import calibration_mode
    from torch import nn

    batchnorms = {m: m.momentum for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))}
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad(), calibration_mode(model):
        for batch in torch.from_numpy(data).split(batch_size):
            model(batch)
    for bn, momentum in batchnorms.items():
        bn.momentum = momentum
    model.eval()


def _export(model: torch.nn.Module, example: np.ndarray, path: Path, exporter: Exporter) -> None:
    """Export ``model`` with brevitas, tracing it on ``example`` (one sample, batch of 1)."""
    import torch
    from brevitas.export import export_onnx_qcdq, export_qonnx

    fn = export_qonnx if exporter.startswith("qonnx") else export_onnx_qcdq
    x = torch.from_numpy(example)
    if exporter.endswith("_dynamo"):
        fn(model, x, export_path=str(path), dynamo=True, optimize=True, verbose=False)
    else:
        fn(model, x, export_path=str(path), dynamo=False)


def _brevitas_writer(
    make_model: Callable[[], torch.nn.Module], exporter: Exporter
) -> Callable[[Path, np.ndarray, int], None]:
    """A :attr:`_Spec.write` that instantiates, calibrates and exports a brevitas model."""

    def write(path: Path, calibration: np.ndarray, seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        model = make_model()
        _calibrate(model, calibration)
        _export(model, calibration[:1], path, exporter)

    return write


# --------------------------------------------------------------------------------------------
# brevitas MLPs


@dataclass(frozen=True)
class _MLPConfig:
    """A chain of QuantLinear layers with quantized activations in between.

    A bit width of 1 (weights or a hidden activation) is binary: brevitas' ``SignedBinary*PerTensorConst``
    quantizers, exported as ``BipolarQuant`` (±1, as in BinaryConnect and FINN's BNNs).
    """

    in_features: int = 64
    hidden: tuple[int, ...] = (32, 32)
    out_features: int = 10
    in_bits: int = 8
    in_signed: bool = True
    weight_bits: tuple[int, ...] = (4, 4, 4)
    """One entry per QuantLinear."""
    weight_narrow: bool = True
    act_bits: tuple[int, ...] = (4, 4)
    """One entry per hidden activation."""
    signed_acts: bool = False
    """Signed QuantIdentity hidden activations instead of unsigned QuantReLU."""
    act_narrow: bool = False
    per_channel: bool = False
    int32_bias: bool = False
    batchnorm: bool = False
    """A BatchNorm1d between each hidden QuantLinear (then bias-free) and its activation."""


CANIDS = _MLPConfig(in_features=64, hidden=(64, 32, 32), out_features=5, in_signed=False, weight_bits=(2, 2, 2, 2),
                    act_bits=(2, 2, 2))
"""A 2-bit 4-layer MLP of the size used for automotive CAN intrusion detection (the FINN CAN-IDS seed:
Khandelwal & Shreejith, arXiv:2401.11030 — a 2-bit 4-layer MLP on 4 concatenated CAN messages, classifying benign
traffic, DoS, fuzzing and spoofing). The paper's layer widths were not available; 64 inputs (4 messages × 16
features), hidden widths 64, 32, 32 and 5 classes are a plausible size (FINN's cybersecurity MLP is 600-64-64-64-1
with 2-bit weights), uint8 inputs."""


def _mlp(cfg: _MLPConfig) -> Callable[[], torch.nn.Module]:
    def make() -> torch.nn.Module:
        from brevitas import nn as qnn
        from brevitas.quant import (
            Int8ActPerTensorFloat,
            Int32Bias,
            SignedBinaryActPerTensorConst,
            SignedBinaryWeightPerTensorConst,
            Uint8ActPerTensorFloat,
        )
        from torch import nn

        layers: list[nn.Module] = [
            qnn.QuantIdentity(
                act_quant=Int8ActPerTensorFloat if cfg.in_signed else Uint8ActPerTensorFloat,
                bit_width=cfg.in_bits,
                return_quant_tensor=True,
            )
        ]
        widths = (cfg.in_features, *cfg.hidden, cfg.out_features)
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(cfg.hidden)
            layers.append(
                qnn.QuantLinear(
                    fan_in,
                    fan_out,
                    bias=last or not cfg.batchnorm,
                    weight_bit_width=cfg.weight_bits[i],
                    weight_narrow_range=cfg.weight_narrow,
                    **({"weight_quant": SignedBinaryWeightPerTensorConst} if cfg.weight_bits[i] == 1 else {}),
                    weight_scaling_per_output_channel=cfg.per_channel,
                    bias_quant=Int32Bias if cfg.int32_bias else None,
                    return_quant_tensor=not last,
                )
            )
            if last:
                break
            if cfg.batchnorm:
                layers.append(nn.BatchNorm1d(fan_out))
            if cfg.act_bits[i] == 1:
                layers.append(qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True))
                continue
            act = qnn.QuantIdentity if cfg.signed_acts else qnn.QuantReLU
            layers.append(
                act(bit_width=cfg.act_bits[i], narrow_range=cfg.act_narrow, return_quant_tensor=True)
            )
        return nn.Sequential(*layers)

    return make


def _mlp_ops() -> torch.nn.Module:
    """An MLP on (4, 16) inputs with Transpose, Flatten, Reshape and Mul/Div by constants."""
    import torch
    from brevitas import nn as qnn
    from torch import nn

    class OpsMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=6, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(64, 32, bias=True, weight_bit_width=5)
            self.act1 = qnn.QuantReLU(bit_width=5, return_quant_tensor=True)
            self.fc2 = qnn.QuantLinear(32, 16, bias=True, weight_bit_width=6)
            self.act2 = qnn.QuantReLU(bit_width=7, return_quant_tensor=True)
            self.fc3 = qnn.QuantLinear(16, 10, bias=True, weight_bit_width=8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.inp(x).transpose(1, 2)  # (B, 16, 4)
            x = torch.flatten(x, 1)  # (B, 64)
            x = self.act1(self.fc1(x) * 0.5)
            x = x.reshape(x.shape[0], 4, 8).transpose(1, 2).reshape(x.shape[0], 32)
            x = self.act2(self.fc2(x) / 4.0)
            return self.fc3(x)

    return OpsMLP()


# --------------------------------------------------------------------------------------------
# brevitas CNNs


def _cnn() -> torch.nn.Module:
    """Conv(stride 1, pad 1) + BN + ReLU, MaxPool, Conv(stride 2, pad 1) + BN + ReLU, GAP, FC."""
    import torch
    from brevitas import nn as qnn
    from torch import nn

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(
                3, 8, 3, padding=1, weight_bit_width=4, weight_scaling_per_output_channel=True
            )
            self.bn1 = nn.BatchNorm2d(8)
            self.act1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = qnn.QuantConv2d(8, 16, 3, stride=2, padding=1, bias=False, weight_bit_width=4)
            self.bn2 = nn.BatchNorm2d(16)
            self.act2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc_in = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(16, 10, bias=True, weight_bit_width=8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(self.act1(self.bn1(self.conv1(self.inp(x)))))
            x = self.gap(self.act2(self.bn2(self.conv2(x))))
            return self.fc(self.fc_in(torch.flatten(x, 1)))

    return CNN()


def _cnn_truncavgpool() -> torch.nn.Module:
    """Unpadded convs, TruncAvgPool2d (exports ``Trunc``) and a float AvgPool2d as global pool."""
    from brevitas import nn as qnn
    from torch import nn

    class TruncCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(3, 8, 3, weight_bit_width=4, return_quant_tensor=True)
            self.act1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool1 = qnn.TruncAvgPool2d(2, bit_width=4, return_quant_tensor=True)
            self.conv2 = qnn.QuantConv2d(8, 16, 3, stride=2, weight_bit_width=4)
            self.act2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool2 = nn.AvgPool2d(3)
            self.fc_in = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(16, 10, bias=True, weight_bit_width=8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool1(self.act1(self.conv1(self.inp(x))))  # 16 -> 14 -> 7
            x = self.pool2(self.act2(self.conv2(x)))  # 7 -> 3 -> 1
            return self.fc(self.fc_in(x.reshape(x.shape[0], -1)))

    return TruncCNN()


def _cnn_residual() -> torch.nn.Module:
    """A stem conv and one residual block whose Add inputs share one QuantIdentity quantizer."""
    import torch
    from brevitas import nn as qnn
    from torch import nn

    class ResidualCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.stem = qnn.QuantConv2d(3, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.stem_bn = nn.BatchNorm2d(8)
            self.stem_act = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn1 = nn.BatchNorm2d(8)
            self.act1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.conv2 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn2 = nn.BatchNorm2d(8)
            self.add_quant = qnn.QuantIdentity(bit_width=6, return_quant_tensor=True)
            self.act_out = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = nn.MaxPool2d(2)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc_in = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(8, 10, bias=True, weight_bit_width=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skip = self.stem_act(self.stem_bn(self.stem(self.inp(x))))
            y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(skip)))))
            x = self.act_out(self.add_quant(y) + self.add_quant(skip))
            x = self.gap(self.pool(x))
            return self.fc(self.fc_in(torch.flatten(x, 1)))

    return ResidualCNN()


def _finn(cfg_name: str) -> Callable[[], torch.nn.Module]:
    """FINN's reference TFC / CNV network from brevitas_examples, randomly initialized."""

    def make() -> torch.nn.Module:
        from brevitas_examples.bnn_pynq.models import model_with_cfg

        model, _ = model_with_cfg(cfg_name, pretrained=False)
        return model

    return make


# --------------------------------------------------------------------------------------------
# onnxruntime QDQ models


def _float_mlp(rng: np.random.Generator) -> onnx.ModelProto:
    """Float 64-32-16-10 Gemm/Relu MLP with a dynamic batch dimension."""
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    widths = (64, 32, 16, 10)
    x = "input"
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        w = rng.standard_normal((fan_out, fan_in), dtype=np.float32) * float(np.sqrt(2.0 / fan_in))
        b = rng.standard_normal(fan_out, dtype=np.float32) * 0.1
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(b, f"fc{i}.bias")]
        y = f"fc{i}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [y], transB=1))
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
            y = f"relu{i}"
        x = y
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        nodes,
        "float_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])


def _float_cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """Float CNN on 3x16x16: Conv(pad 1)+Relu, MaxPool, Conv(stride 2)+Relu, GAP, Flatten, Gemm."""

    def conv_params(name: str, cout: int, cin: int) -> list[TensorProto]:
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * float(np.sqrt(2.0 / (cin * 9)))
        b = rng.standard_normal(cout, dtype=np.float32) * 0.1
        return [numpy_helper.from_array(w, f"{name}.weight"), numpy_helper.from_array(b, f"{name}.bias")]

    fc_w = rng.standard_normal((10, 16), dtype=np.float32) * float(np.sqrt(2.0 / 16))
    fc_b = rng.standard_normal(10, dtype=np.float32) * 0.1
    inits = [
        *conv_params("conv1", 8, 3),
        *conv_params("conv2", 16, 8),
        numpy_helper.from_array(fc_w, "fc.weight"),
        numpy_helper.from_array(fc_b, "fc.bias"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Conv",
            ["pool1", "conv2.weight", "conv2.bias"],
            ["conv2"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node("Relu", ["conv2"], ["relu2"]),
        helper.make_node("GlobalAveragePool", ["relu2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "float_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])


def _qdq_writer(
    make_float: Callable[[np.random.Generator], onnx.ModelProto],
    signed_activations: bool,
    per_channel: bool,
) -> Callable[[Path, np.ndarray, int], None]:
    """A :attr:`_Spec.write` running onnxruntime's static QDQ quantization on a float model.

    Weights are symmetric int8, activations asymmetric uint8 or int8, biases int32.
    """

    def write(path: Path, calibration: np.ndarray, seed: int) -> None:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._batches = iter(np.split(calibration, 4))

            def get_next(self) -> dict[str, np.ndarray] | None:
                batch = next(self._batches, None)
                return None if batch is None else {"input": batch}

        float_model = make_float(np.random.default_rng(seed))
        quantize_static(
            float_model,
            path,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8 if signed_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "QuantizeBias": True},
        )

    return write


# --------------------------------------------------------------------------------------------
# hand-written QONNX graphs


def _int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """Integer range of a QONNX ``Quant`` (same as qonnx' ``min_int`` / ``max_int``)."""
    if signed:
        return -(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - narrow


def _asym_params(x: np.ndarray, bits: int, signed: bool) -> tuple[np.float32, np.float32]:
    """Asymmetric (scale, zero point) spanning the range of ``x`` with a ``bits``-bit grid."""
    lo, hi = _int_range(bits, signed, narrow=False)
    scale = (float(x.max()) - float(x.min())) / (hi - lo)
    return np.float32(scale), np.float32(np.round(lo - float(x.min()) / scale))


_Tensor = tuple[str, np.ndarray]
"""A tensor of a :class:`_QonnxGraph`: its ONNX name and its value on the calibration data."""


class _QonnxGraph:
    """Incremental builder of a QONNX graph that also evaluates it, in numpy, on calibration data.

    Methods take and return :data:`_Tensor` pairs, so quantizer parameters can be derived from
    the float range each tensor actually reaches.
    """

    def __init__(self, calibration: np.ndarray) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.input: _Tensor = ("input", calibration)

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], value: np.ndarray, out: str, **attrs: object) -> _Tensor:
        """Append a standard ONNX node whose calibration output is ``value``."""
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out, value

    def quant(
        self,
        x: _Tensor,
        out: str,
        scale: np.ndarray | np.float32,
        zeropt: np.float32,
        bits: int,
        signed: bool,
        narrow: bool = False,
    ) -> _Tensor:
        """Append a ``Quant`` node (ROUND) with scale / zero point / bit width initializers."""
        inputs = [
            x[0],
            self.const(f"{out}.scale", np.asarray(scale, dtype=np.float32)),
            self.const(f"{out}.zeropt", np.float32(zeropt)),
            self.const(f"{out}.bitwidth", np.float32(bits)),
        ]
        self.nodes.append(
            helper.make_node(
                "Quant", inputs, [out], name=out, domain=QONNX_DOMAIN,
                signed=int(signed), narrow=int(narrow), rounding_mode="ROUND",
            )
        )
        lo, hi = _int_range(bits, signed, narrow)
        return out, (np.clip(np.round(x[1] / scale + zeropt), lo, hi) - zeropt) * scale

    def quant_asym(self, x: _Tensor, out: str, bits: int, signed: bool) -> _Tensor:
        """Quantize an activation with an asymmetric grid fitted to its calibration range."""
        return self.quant(x, out, *_asym_params(x[1], bits, signed), bits=bits, signed=signed)

    def quant_weight(self, name: str, w: np.ndarray, bits: int, per_channel: bool) -> _Tensor:
        """Quantize constant weights of shape (in, out) symmetrically, with narrow range."""
        absmax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
        scale = (absmax / (2 ** (bits - 1) - 1)).astype(np.float32)
        weight = (self.const(name, w), w)
        return self.quant(weight, f"{name}_q", scale, np.float32(0), bits, signed=True, narrow=True)

    def matmul_add(self, x: _Tensor, w: _Tensor, bias: np.ndarray | None, out: str) -> _Tensor:
        """``MatMul`` followed, if ``bias`` is given, by a separate ``Add`` of a float bias."""
        y = self.op("MatMul", [x[0], w[0]], x[1] @ w[1], f"{out}_mm" if bias is not None else out)
        if bias is None:
            return y
        return self.op("Add", [y[0], self.const(f"{out}.bias", bias)], y[1] + bias, out)

    def save(self, path: Path, output: _Tensor) -> None:
        """Check and write the graph; the batch dimension of input and output is fixed to 1."""
        def value_info(name: str, calib: np.ndarray) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, *calib.shape[1:]])

        graph = helper.make_graph(
            self.nodes, "qonnx_graph", [value_info(*self.input)], [value_info(*output)], self.inits
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(QONNX_DOMAIN, 2)]
        )
        onnx.checker.check_model(model)
        onnx.save(model, path)


def _write_asym_matmul(path: Path, calibration: np.ndarray, seed: int) -> None:
    """Asymmetric unsigned and signed activation quantizers around MatMul + separate bias Add."""
    rng = np.random.default_rng(seed)
    g = _QonnxGraph(calibration)
    x = g.quant_asym(g.input, "x_q", 8, signed=False)
    w1 = g.quant_weight("w1", rng.standard_normal((16, 24), dtype=np.float32) / 4, 4, per_channel=True)
    h = g.matmul_add(x, w1, rng.standard_normal(24, dtype=np.float32) * 0.5 + 0.5, "h")
    h = g.quant_asym(h, "h_q", 5, signed=True)
    w2 = g.quant_weight("w2", rng.standard_normal((24, 10), dtype=np.float32) / 5, 6, per_channel=False)
    g.save(path, g.matmul_add(h, w2, rng.standard_normal(10, dtype=np.float32) * 0.1, "output"))


def _write_transpose(path: Path, calibration: np.ndarray, seed: int) -> None:
    """Quant -> Transpose -> batched MatMul + Add -> asymmetric Quant -> Reshape -> MatMul -> Quant."""
    rng = np.random.default_rng(seed)
    g = _QonnxGraph(calibration)
    in_scale = np.float32(np.abs(calibration).max() / 31)
    x = g.quant(g.input, "x_q", in_scale, np.float32(0), 6, signed=True)
    x = g.op("Transpose", [x[0]], x[1].transpose(0, 2, 1), "x_t", perm=[0, 2, 1])  # (B, 8, 4)
    w1 = g.quant_weight("w1", rng.standard_normal((4, 6), dtype=np.float32) / 2, 3, per_channel=False)
    h = g.matmul_add(x, w1, rng.standard_normal(6, dtype=np.float32) * 0.2, "h")  # (B, 8, 6)
    h = g.quant_asym(h, "h_q", 4, signed=False)
    shape = g.const("flat_shape", np.array([1, 48], dtype=np.int64))
    h = g.op("Reshape", [h[0], shape], h[1].reshape(len(h[1]), 48), "h_flat")
    w2 = g.quant_weight("w2", rng.standard_normal((48, 10), dtype=np.float32) / 7, 8, per_channel=True)
    y = g.matmul_add(h, w2, None, "y")
    scale = np.float32(np.abs(y[1]).max() / 127)
    g.save(path, g.quant(y, "output", scale, np.float32(0), 8, signed=True))


# --------------------------------------------------------------------------------------------
# the zoo


_SUFFIX: dict[Exporter, str] = {
    "qonnx": "qonnx",
    "qonnx_dynamo": "dynamo_qonnx",
    "qcdq": "qcdq",
    "qcdq_dynamo": "dynamo_qcdq",
}


def _brevitas_specs() -> dict[str, _Spec]:
    """Brevitas models, each exported with one or more exporters (name suffix ``_SUFFIX``)."""
    specs: dict[str, _Spec] = {}

    def add(
        base: str,
        make: Callable[[], torch.nn.Module],
        exporters: tuple[Exporter, ...],
        input_shape: tuple[int, ...],
        distribution: Distribution = "normal",
        num_samples: int = 32,
    ) -> None:
        for exporter in exporters:
            dialect: Dialect = "qonnx" if exporter.startswith("qonnx") else "qcdq"
            write = _brevitas_writer(make, exporter)
            spec = _Spec(dialect, input_shape, distribution, write, num_samples)
            specs[f"{base}_{_SUFFIX[exporter]}"] = spec

    every: tuple[Exporter, ...] = ("qonnx", "qonnx_dynamo", "qcdq", "qcdq_dynamo")
    add("mlp_w4a4", _mlp(_MLPConfig(in_signed=False)), every, (64,), "unit")
    add("cnn_w4a4", _cnn, every, (3, 16, 16))
    # QCDQ export of a quantized (int32) bias needs dynamo=False.
    mlp_w8a8 = _MLPConfig(weight_bits=(8, 8, 8), act_bits=(8, 8), per_channel=True, int32_bias=True)
    add("mlp_w8a8_int32bias_perchannel", _mlp(mlp_w8a8), ("qonnx", "qcdq"), (64,))
    add("mlp_w2a2", _mlp(_MLPConfig(in_signed=False, weight_bits=(2, 2, 2), act_bits=(2, 2))), ("qonnx",), (64,),
        "unit")
    add("mlp_w6a6", _mlp(_MLPConfig(in_bits=6, weight_bits=(6, 6, 6), act_bits=(6, 6))), ("qonnx",), (64,))
    # binary weights and activations (BipolarQuant, no QCDQ export); the 8-bit input meets binary weights
    add("mlp_w1a1", _mlp(_MLPConfig(weight_bits=(1, 1, 1), act_bits=(1, 1))), ("qonnx",), (64,))
    # small enough that its fully unrolled dataflow pipeline (320 MAC lanes) builds quickly in Verilator
    tiny = _MLPConfig(in_features=16, hidden=(12, 8), out_features=4, weight_bits=(3, 3, 3), act_bits=(3, 3),
                      signed_acts=True)
    add("mlp_tiny_w3a3_signed", _mlp(tiny), ("qonnx",), (16,))
    add("mlp_canids_w2a2", _mlp(CANIDS), ("qonnx",), (CANIDS.in_features,), "unit")
    # QCDQ export supports at most 8 bits, hence no QCDQ variant with the 16-bit input.
    mlp_bn = _MLPConfig(
        in_bits=16,
        weight_bits=(2, 3, 8),
        act_bits=(2, 3),
        signed_acts=True,
        act_narrow=True,
        weight_narrow=False,
        per_channel=True,
        batchnorm=True,
    )
    add("mlp_bn_in16_w2a2_w3a3", _mlp(mlp_bn), ("qonnx", "qonnx_dynamo"), (64,))
    add("mlp_ops", _mlp_ops, ("qonnx", "qonnx_dynamo", "qcdq_dynamo"), (4, 16))
    # No QCDQ variant: QCDQ exports the Trunc as QuantizeLinear on the float average, whose
    # rounding of the (frequent) exact .5 ties then depends on float error, not bit-exact.
    add("cnn_truncavgpool", _cnn_truncavgpool, ("qonnx",), (3, 16, 16))
    add("cnn_residual", _cnn_residual, ("qonnx", "qcdq"), (3, 8, 8))
    add("tfc_1w1a", _finn("tfc_1w1a"), ("qonnx",), (1, 28, 28), "unit")
    # BipolarQuant (1 bit) has no QCDQ export, 2w2a does.
    add("tfc_2w2a", _finn("tfc_2w2a"), ("qonnx", "qcdq"), (1, 28, 28), "unit")
    add("cnv_1w1a", _finn("cnv_1w1a"), ("qonnx",), (3, 32, 32), "unit", num_samples=16)
    add("cnv_2w2a", _finn("cnv_2w2a"), ("qonnx",), (3, 32, 32), "unit", num_samples=16)
    return specs


_SPECS: dict[str, _Spec] = {
    **_brevitas_specs(),
    "mlp_qdq_u8_pertensor": _Spec("qdq", (64,), "normal", _qdq_writer(_float_mlp, False, False)),
    "mlp_qdq_s8_perchannel": _Spec("qdq", (64,), "normal", _qdq_writer(_float_mlp, True, True)),
    "cnn_qdq_u8_perchannel": _Spec("qdq", (3, 16, 16), "normal", _qdq_writer(_float_cnn, False, True)),
    "cnn_qdq_s8_pertensor": _Spec("qdq", (3, 16, 16), "normal", _qdq_writer(_float_cnn, True, False)),
    "helper_asym_matmul_qonnx": _Spec("qonnx", (16,), "normal", _write_asym_matmul),
    "helper_transpose_qonnx": _Spec("qonnx", (4, 8), "normal", _write_transpose),
}

NAMES: list[str] = list(_SPECS)
"""Every model name of the zoo."""
