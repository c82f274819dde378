"""Float32 semantics of the float operations a quantized model performs between integer tensors.

A quantized model's reference (qonnx ``execute_onnx``, onnxruntime with optimizations off) computes the ops between
an integer accumulator and the next quantizer — bias add, BatchNorm, ReLU, scalings — in float32. hwgen reproduces
those operations bit for bit here, as a *chain* applied to an integer tensor::

    value = chain(x) = op_n(... op_1(f32((x - zero_point) * scale)))

and a :class:`Quantizer` maps the final float32 value to an integer code exactly as the source op does (QONNX
``Quant``/``BipolarQuant``/``Trunc``, ONNX ``QuantizeLinear``). Streamlining turns ``quantizer(chain(acc))`` into
integer thresholds by searching this function, so the hardware matches it exactly.

The first step, ``(x - zero_point) * scale``, is the exact real value of a linear op's integer result (``scale`` is
the float64 product of two float32 scales, which is exact) rounded once to float32. That is what the reference's
float matmul computes whenever its float sums are exact (power-of-two scales, as in FINN's networks); with
arbitrary float scales the reference carries its own float32 summation error, and hwgen follows the exact value.
Parameters are per tensor (shape ``()``) or per channel (shape ``(C,)``), broadcast along a channel axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .types import DType

F32 = np.float32
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


def channel_view(param: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    """``param`` (shape () or (C,)) reshaped to broadcast along ``axis`` of an ``ndim``-dimensional tensor."""
    param = np.asarray(param)
    if param.ndim == 0 or param.size == 1 and axis is None:
        return param.reshape(())
    if axis is None:
        raise ValueError("a per-channel parameter needs a channel axis")
    shape = [1] * ndim
    shape[axis] = param.shape[0]
    return param.reshape(shape)


def round_mode(values: np.ndarray, mode: str) -> np.ndarray:
    """Rounding as qonnx ``resolve_rounding_mode`` does it, in the dtype of ``values``."""
    mode = mode.upper()
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(values)
    if mode == "CEIL":
        return np.ceil(values)
    if mode == "FLOOR":
        return np.floor(values)
    if mode == "UP":
        return np.sign(values) * np.ceil(np.abs(values))
    if mode == "DOWN":
        return np.fix(values)
    if mode == "HALF_UP":
        return np.sign(values) * np.floor(np.abs(values) + values.dtype.type(0.5))
    if mode == "HALF_DOWN":
        return np.sign(values) * np.ceil(np.abs(values) - values.dtype.type(0.5))
    raise ValueError(f"unknown rounding mode {mode!r}; expected one of {', '.join(ROUNDING_MODES)}")


@dataclass(frozen=True)
class FloatOp:
    """One float32 elementwise op: ``add``, ``mul``, ``div``, ``relu``, ``clip`` or ``batchnorm``."""

    kind: str
    params: tuple[np.ndarray, ...] = ()

    def apply(self, value: np.ndarray, axis: int | None) -> np.ndarray:
        p = [channel_view(q, value.ndim, axis).astype(F32) for q in self.params]
        if self.kind == "add":
            return (value + p[0]).astype(F32)
        if self.kind == "mul":
            return (value * p[0]).astype(F32)
        if self.kind == "div":
            return (value / p[0]).astype(F32)
        if self.kind == "relu":
            return np.maximum(value, F32(0))
        if self.kind == "clip":
            return np.minimum(np.maximum(value, p[0]), p[1]).astype(F32)
        if self.kind == "batchnorm":
            scale, bias = batchnorm_affine(*self.params)
            return (value * channel_view(scale, value.ndim, axis) + channel_view(bias, value.ndim, axis)).astype(F32)
        raise ValueError(f"unknown float op {self.kind!r}")

    @property
    def per_channel(self) -> int:
        """Number of channels the parameters describe (1 if per tensor)."""
        return max([np.asarray(p).size for p in self.params] + [1])

    def increasing(self) -> np.ndarray | bool:
        """Whether the op is monotone non-decreasing (per channel where parameters are per channel)."""
        if self.kind in ("mul", "div"):
            return np.asarray(self.params[0]) > 0
        if self.kind == "batchnorm":
            return batchnorm_affine(*self.params)[0] > 0
        return True


def batchnorm_affine(gamma, beta, mean, var, eps) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization as onnxruntime's CPU kernel folds it: ``x * scale + bias`` in float32."""
    gamma, beta, mean, var = (np.asarray(a, F32) for a in (gamma, beta, mean, var))
    inv_std = (F32(1) / np.sqrt((var + F32(eps)).astype(F32))).astype(F32)
    scale = (inv_std * gamma).astype(F32)
    bias = (beta - (mean * scale).astype(F32)).astype(F32)
    return scale, bias


@dataclass(frozen=True)
class Chain:
    """``ops(f32((x - zero_point) * scale))``: the float value an integer tensor stands for."""

    scale: np.ndarray                       # float64, () or (C,): exact product of float32 scales
    zero_point: np.ndarray | int = 0        # integer, () or (C,)
    ops: tuple[FloatOp, ...] = field(default_factory=tuple)

    def evaluate(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        scale = channel_view(np.asarray(self.scale, np.float64), x.ndim, axis)
        zero_point = channel_view(np.asarray(self.zero_point, np.int64), x.ndim, axis)
        value = ((x.astype(np.int64) - zero_point).astype(np.float64) * scale).astype(F32)
        for op in self.ops:
            value = op.apply(value, axis)
        return value

    def then(self, op: FloatOp) -> Chain:
        return Chain(self.scale, self.zero_point, self.ops + (op,))

    @property
    def channels(self) -> int:
        return max([np.asarray(self.scale).size, np.asarray(self.zero_point).size] +
                   [op.per_channel for op in self.ops])

    def increasing(self) -> np.ndarray | bool:
        """True where the chain is monotone non-decreasing in x (per channel)."""
        result: np.ndarray | bool = np.asarray(self.scale) > 0
        for op in self.ops:
            result = np.logical_and(result, op.increasing())
        return result


@dataclass(frozen=True)
class Quantizer:
    """Maps float32 values to integer codes exactly as a source op does.

    ``style``: ``qonnx`` (``Quant``: round(clamp(x/scale + zp))), ``bipolar`` (``BipolarQuant`` or 1-bit signed
    ``Quant``: x/scale [+ zp] >= 0 → +1 else -1), ``qdq`` (``QuantizeLinear`` [+ ``Clip``]: clamp(round_half_even(
    x/scale) + zp)), ``trunc`` (QONNX ``Trunc``: round(x/scale + zp) / 2^shift, then ``rounding``, clamped in v2).
    The code stands for ``(code - out_zero_point) * out_scale``.
    """

    style: str
    scale: np.ndarray                      # float32, () or (C,)
    zero_point: np.ndarray                 # float32, () or (C,)
    dtype: DType
    rounding: str = "ROUND"
    trunc_div: float = 1.0                 # Trunc: divisor 2^(in_bits - out_bits), or output_scale / scale
    clamp: bool = True
    divide: bool = True                    # False for BipolarQuant, which takes the sign of x itself
    out_scale: np.ndarray | None = None    # defaults to scale
    out_zero_point: np.ndarray | None = None  # defaults to zero_point

    def __post_init__(self) -> None:
        if self.style not in ("qonnx", "bipolar", "qdq", "trunc"):
            raise ValueError(f"unknown quantizer style {self.style!r}")

    @property
    def value_scale(self) -> np.ndarray:
        return np.asarray(self.scale if self.out_scale is None else self.out_scale, F32)

    @property
    def value_zero_point(self) -> np.ndarray:
        return np.asarray(self.zero_point if self.out_zero_point is None else self.out_zero_point, F32)

    @property
    def channels(self) -> int:
        return max(np.asarray(self.scale).size, np.asarray(self.zero_point).size, self.value_scale.size)

    def quantize(self, value: np.ndarray, axis: int | None) -> np.ndarray:
        """Integer codes (int64) of float32 ``value``."""
        value = np.asarray(value, F32)
        scale = channel_view(np.asarray(self.scale, F32), value.ndim, axis)
        zp = channel_view(np.asarray(self.zero_point, F32), value.ndim, axis)
        lo, hi = F32(self.dtype.min), F32(self.dtype.max)
        if self.style == "bipolar":
            y = (value / scale + zp).astype(F32) if self.divide else value
            return np.where(y >= 0, 1, -1).astype(np.int64)
        y = (value / scale).astype(F32)
        if self.style == "qdq":
            y = (np.round(y) + zp).astype(F32)
            return np.clip(y, lo, hi).astype(np.int64)
        y = (y + zp).astype(F32)
        if self.style == "qonnx":
            return round_mode(np.clip(y, lo, hi), self.rounding).astype(np.int64)
        y = (np.round(y) / F32(self.trunc_div)).astype(F32)      # trunc
        if self.clamp:
            y = np.clip(y, lo, hi)
        return round_mode(y, self.rounding).astype(np.int64)

    def dequantize(self, codes: np.ndarray, axis: int | None) -> np.ndarray:
        """Float32 value of codes, as the source's dequantization computes it."""
        scale = channel_view(self.value_scale, codes.ndim, axis)
        zp = channel_view(self.value_zero_point, codes.ndim, axis)
        return ((codes.astype(F32) - zp).astype(F32) * scale).astype(F32)

