"""hls4ml ``ModelGraph`` → hwgen integer IR, with the exact ``ap_fixed`` semantics of hls4ml's C simulation.

Every hls4ml tensor is a fixed-point type (``ap_fixed<W, I, Q, O>``, see :mod:`hwgen.ir.fixed`); its IR tensor
holds the integer codes. The layers import as hls4ml's Vivado/Vitis ``nnet_utils`` kernels compute them:

- input: the host ``Quantize`` converts floats to ``input_t`` as ``ap_fixed(double)`` does (float32 inputs, as
  the golden model takes them, are exact doubles);
- ``Dense``: every product ``x · w`` is assigned to ``accum_t`` (``mult[i] = a * w``), the accumulator starts at
  ``(accum_t) bias`` and sums the products in ``accum_t``, and the sum is cast to ``result_t``. In the IR::

      MatMul (exact products)  |  FixedMatMul (products rounded to accum_t's LSB: accum_t has fewer
                               |               fractional bits than the products and some weight needs them)
      → FixedCast [+ (accum_t) bias, fit to accum_t: the wrap of an AP_WRAP accumulator, exact by modular
                   arithmetic whatever the summation order]
      → FixedCast [cast to result_t with its quantization and overflow modes]

  A saturating accumulator depends on the order of summation; it is accepted only where no partial sum can reach
  its limits (then it is exact), and refused naming the layer otherwise;
- ``Activation`` relu / linear: ``FixedCast`` [relu?, cast to result_t];
- ``Activation`` sigmoid / tanh / softplus / softsign / elu / selu / relu6 / relu1, ``ParametrizedActivation``
  leakyrelu / elu / thresholdedrelu, ``HardActivation`` hard_sigmoid / hard_tanh: ``MultiThreshold`` on the input
  codes (:mod:`hwgen.frontend.hls4ml_tables`: hls4ml's lookup tables and index arithmetic reproduced exactly; a
  monotone activation is a step function of its input code). Refused, naming the layer, when its result is not
  monotone (a wrapping result_t) or takes more than 1024 levels (result_t too fine for thresholds);
  ``streamline`` fuses it into the Dense's casts before it when they cannot wrap (one MultiThreshold on the
  accumulator);
- ``BatchNormalization``: ``FixedCast`` [x · scale + bias exactly, cast to result_t] (scale_t, bias_t codes);
- ``Conv2D`` (channels-last, padded, strided): as Dense, with ``FixedConv`` computing the sums of products;
- ``Pooling2D`` max: ``MaxPool`` (between transposes to NCHW), then the casts to accum_t and result_t;
- ``Pooling2D`` average (``nnet::avg``): ``SumPool`` of the codes (between transposes to NCHW; padded positions
  enter as 0 and count in the window size N, hls4ml's ``count_pad``, which PyTorch's default ``count_include_pad``
  sets), then ``accum_t y = Σ x; y /= N; res = y``: the sum assigned to accum_t (a wrapping accumulator wraps the
  exact sum), the codes divided by N truncating toward zero (``ap_fixed /= unsigned``), the cast to result_t. For
  N = 2^k that is three casts (the division a TRN_ZERO cast); otherwise one ``MultiThreshold`` on the window sum,
  computed code by code from that arithmetic (:func:`hwgen.frontend.hls4ml_tables.average_codes`; monotone where
  accum_t cannot wrap). Refused, naming the layer: padding not counted (its windows at the borders divide by
  their unpadded area, a divisor that varies with the position), an accum_t with fewer fractional bits than the
  input (every addition rounds, order-dependent), a saturating accum_t that can overflow, a non-power-of-two
  window whose result is not monotone. ``GlobalPooling1D/2D`` (hls4ml converts them from Keras and ONNX only, not
  from PyTorch) are not imported;
- ``Conv1D`` and ``Pooling1D`` (max and average): the 2-D code paths on images of height 1 (kernel (1, k),
  strides (1, s), pads (0, left, 0, right); nnet_utils' 1-D kernels do the same arithmetic): a channels-last
  (N, W, C) tensor is the image (N, 1, W, C), a (N, C, W) → (N, W, C) ``Transpose`` (of a PyTorch model's input)
  an NCHW → NHWC one of (N, C, 1, W). The model input quantizes straight to that image, so streamlining leaves no
  data movement before the first convolution; 1-D layer outputs stay images (``Reshape``/Flatten after them is
  order-preserving);
- ``Reshape`` (Flatten) and ``Transpose``: data movement (plus a cast where hls4ml's result type differs).

An ``io_parallel`` Dense layer's ``ReuseFactor`` is kept on its MatMul node (``reuse_factor``): the dataflow
architecture folds the layer to that initiation interval (hwgen.arch.dataflow.folding.reuse_fold).

Weights, biases and BatchNorm parameters are taken as hls4ml writes them for its C simulation: the decimal text of
each value (``WeightVariable`` formatting), read back as a double and converted to the weight's type.
``streamline`` then fuses consecutive monotone casts and turns those with at most 10-bit results into
``MultiThreshold``; casts that can wrap stay ``FixedCast`` (a shift, rounding increment and bit slice in hardware).
"""
from __future__ import annotations

import copy
import gzip
import io
import json
import math
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import HwgenError, NodeIssue, UnsupportedModelError
from ..ir import FLOAT32, Chain, Graph, Node, Tensor
from ..ir.fixed import MAX_CODE_BITS, FixedStep, FixedType, round_shift
from ..passes.analysis import Bounds, dtype_of, node_bounds
from . import hls4ml_tables as tables

BACKENDS = ("Vivado", "Vitis", "VivadoAccelerator")       # ap_fixed back ends sharing nnet_utils' arithmetic
STRATEGIES = ("latency", "resource", "resource_unrolled")  # same arithmetic; distributed_arithmetic differs
SUPPORTED_ACTIVATIONS = tuple(sorted(("linear", "relu", *tables.ACTIVATIONS)))


@dataclass(frozen=True)
class _Value:
    """An imported hls4ml tensor: the IR tensor of its codes, its fixed-point type and worst-case bounds."""

    tensor: str
    shape: tuple[int, ...]          # with the batch axis first (1)
    type: FixedType
    bounds: Bounds

    @property
    def axis(self) -> int:
        return len(self.shape) - 1      # hls4ml is channels-last: per-channel parameters vary along the last axis


class _Refused(Exception):
    """A layer hwgen cannot import as it is (``why``)."""


def _kinds(precision: Any) -> set[str]:
    """Class names of an hls4ml precision type and its bases (back ends subclass them: APFixedPrecisionType)."""
    return {c.__name__ for c in type(precision).__mro__}


def fixed_type(precision: Any, what: str) -> FixedType:
    """The :class:`FixedType` of an hls4ml ``FixedPrecisionType`` or ``IntegerPrecisionType``."""
    kinds, kind = _kinds(precision), type(precision).__name__
    if "IntegerPrecisionType" in kinds:
        width, integer = precision.width, precision.width
        rounding, overflow = "TRN", "WRAP"
    elif "FixedPrecisionType" in kinds:
        width, integer = precision.width, precision.integer
        rounding, overflow = str(precision.rounding_mode), str(precision.saturation_mode)
        if precision.saturation_bits:
            raise _Refused(f"{what} {precision} has saturation bits (AP_WRAP with N > 0), which are not supported")
    else:
        raise _Refused(f"{what} has precision {precision} ({kind}); hwgen imports ap_fixed/ap_ufixed/ap_int/ap_uint")
    if not 1 <= width <= MAX_CODE_BITS:
        raise _Refused(f"{what} {precision} is {width} bits wide; hwgen's integer model holds at most "
                       f"{MAX_CODE_BITS} bits")
    return FixedType(width, integer, bool(precision.signed), rounding, overflow)


def _codes(layer: Any, name: str) -> tuple[FixedType, np.ndarray]:
    """Type and integer codes (int64, in the array's layout) of weight variable ``name`` as the C simulation
    loads it: hls4ml's decimal text of every value, parsed as a double, converted to the variable's type."""
    var = layer.weights[name]
    dtype = fixed_type(var.type.precision, f"{name}_t")
    values = np.array([float(text) for text in var], np.float64).reshape(np.shape(var.data))
    return dtype, dtype.quantize(values)


@dataclass
class _Builder:
    nodes: list[Node] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    values: dict[str, _Value] = field(default_factory=dict)
    layer: Any = None
    io_type: str = "io_parallel"

    @property
    def where(self) -> str:
        return f"layer '{self.layer.name}' ({self.layer.class_name})"

    def emit(self, op: str, x: _Value, attrs: dict, shape: tuple[int, ...], hint: str, dtype=None,
             source: str | None = None, axis: int | None = None) -> tuple[str, Bounds]:
        """Add node ``op`` of this layer reading ``x``; its output tensor (channel ``axis``: last by default)."""
        name = self.layer.name
        out = f"{name}:{hint}"
        node = Node(op, name, (x.tensor,), (out,), attrs, (self.layer.class_name,))
        bounds = node_bounds(node, [x.bounds], dtype)
        self.tensors[out] = Tensor(out, shape, dtype if dtype is not None else dtype_of(bounds),
                                   len(shape) - 1 if axis is None else axis, source)
        self.nodes.append(node)
        return out, bounds

    def cast(self, x: _Value, steps: tuple[FixedStep, ...], hint: str, source: str | None = None) -> _Value:
        """A ``FixedCast`` node applying ``steps`` to ``x``."""
        out, bounds = self.emit("FixedCast", x, {"steps": steps, "axis": x.axis}, x.shape, hint,
                                steps[-1].to.dtype, source)
        return _Value(out, x.shape, steps[-1].to, bounds)

    def input(self) -> _Value:
        (name,) = self.layer.inputs
        return self.values[name]

    def result_type(self) -> FixedType:
        return fixed_type(self.layer.get_output_variable().type.precision, "result_t")

    def output_shape(self) -> tuple[int, ...]:
        return (1, *(int(d) for d in self.layer.get_output_variable().shape))

    def image_shape(self) -> tuple[int, ...]:
        """The output shape of a 2-D layer, or of a 1-D one as an image of height 1: (N, W, C) → (N, 1, W, C)."""
        shape = self.output_shape()
        return shape if len(shape) == 4 else (shape[0], 1, *shape[1:])

    def finish(self, value: _Value) -> None:
        """Register ``value`` as the layer's output (retyped by a cast if hls4ml's result type differs)."""
        result = self.result_type()
        if result != value.type:
            value = self.cast(value, (FixedStep(value.type.frac, result),), "result")
        self.tensors[value.tensor] = Tensor(value.tensor, value.shape, self.tensors[value.tensor].dtype,
                                            value.axis, self.layer.name)
        self.values[self.layer.outputs[0]] = value


# ---------------------------------------------------------------------------------------------------- layers
Handler = Callable[[_Builder, Any], None]
HANDLERS: dict[str, Handler] = {}


def _handles(*classes: str):
    def register(fn: Handler) -> Handler:
        for cls in classes:
            HANDLERS[cls] = fn
        return fn
    return register


def _class_of(layer: Any) -> str | None:
    """The hls4ml layer class a (backend-specialized) layer is (e.g. VivadoDense → Dense), if hwgen handles it."""
    mro = type(layer).__mro__
    base = next((c for c in mro if c.__module__ == "hls4ml.model.layers"), mro[0])
    return base.__name__ if base.__name__ in HANDLERS else None


@_handles("Input")
def _input(b: _Builder, layer: Any) -> None:
    shape = b.output_shape()
    name = layer.name
    b.tensors[name] = Tensor(name, shape, FLOAT32, source=name)
    to = b.result_type()
    out = f"{name}:codes"
    b.nodes.append(Node("Quantize", name, (name,), (out,), {"pre": (), "quantizer": to, "axis": None,
                                                            "shape": shape}, ("Input",)))
    bounds = (np.array(to.dtype.min), np.array(to.dtype.max))
    b.tensors[out] = Tensor(out, shape, to.dtype, len(shape) - 1, name)
    b.values[layer.outputs[0]] = _Value(out, shape, to, bounds)


def _accumulate(b: _Builder, layer: Any, x: _Value, weight: np.ndarray,
                emit: Callable[[np.ndarray, int, str], tuple[str, Bounds, tuple[int, ...]]]) -> None:
    """hls4ml's multiply-accumulate (Dense, Conv): products assigned to accum_t, the accumulator initialized with
    ``(accum_t) bias`` and fit to accum_t, the sum cast to result_t. ``weight`` is (..., n_out) in weight_t codes;
    ``emit(weight, product_shift, rounding)`` adds the node computing the sums of the (rounded) products."""
    strategy = str(layer.get_attr("strategy", "latency")).lower()
    if strategy not in STRATEGIES:
        raise _Refused(f"strategy '{strategy}' is not supported (supported: {', '.join(STRATEGIES)})")
    acc_t = fixed_type(layer.get_attr("accum_t").precision, "accum_t")
    w_t = fixed_type(layer.weights["weight"].type.precision, "weight_t")
    if _kinds(layer.weights["weight"].type.precision) & {"IntegerPrecisionType"} and w_t.width == 2 and w_t.signed:
        weight = np.where(weight == -2, 1, weight)             # nnet::product::weight_ternary: w ∉ {0, -1} → +x
    if w_t.width == w_t.integer == 1 and not w_t.signed and x.type.width == x.type.integer == 1 \
            and not x.type.signed:
        raise _Refused("binary (ap_uint<1>) inputs and weights use hls4ml's XNOR arithmetic, which is not supported")
    b_t, bias = _codes(layer, "bias")
    shift = x.type.frac + w_t.frac - acc_t.frac         # products have frac_x + frac_w fractional bits
    if shift <= 0 or not np.any(weight % (1 << shift)):  # every product is exact at accum_t's LSB
        weight, shift = (weight >> shift if shift > 0 else weight << -shift), 0
    out, bounds, shape = emit(weight, shift, acc_t.rounding)
    acc_bias = acc_t.cast(bias, b_t.frac)
    if acc_t.overflow != "WRAP":
        lo, hi = int(np.min(x.bounds[0])), int(np.max(x.bounds[1]))
        _check_saturating_sum(weight.reshape(-1, weight.shape[-1]), shift, acc_t, acc_bias, min(lo, 0), max(hi, 0))
    acc = b.cast(_Value(out, shape, acc_t, bounds), (FixedStep(acc_t.frac, acc_t, bias=acc_bias),), "accum")
    b.finish(b.cast(acc, (FixedStep(acc_t.frac, b.result_type()),), "result"))


def _weights(layer: Any, layout: tuple[int, ...]) -> np.ndarray:
    """Weight codes in hls4ml's latency layout; ``layout`` undoes the resource strategy's transposition."""
    weight = _codes(layer, "weight")[1]
    return weight.transpose(layout) if layer.get_attr("_weights_transposed", False) else weight


@_handles("Dense")
def _dense(b: _Builder, layer: Any) -> None:
    x = b.input()
    weight = _weights(layer, (1, 0))                      # (n_in, n_out); resource stores (n_out, n_in)
    shape = x.shape[:-1] + (weight.shape[1],)

    reuse = {"reuse_factor": int(layer.get_attr("reuse_factor", 1))} if b.io_type == "io_parallel" else {}

    def emit(w: np.ndarray, shift: int, rounding: str):
        if shift:
            return (*b.emit("FixedMatMul", x, {"weight": w, "product_shift": shift, "rounding": rounding, **reuse},
                            shape, "acc"), shape)
        return (*b.emit("MatMul", x, {"weight": w, "x_zero_point": 0, **reuse}, shape, "acc"), shape)
    _accumulate(b, layer, x, weight, emit)


def _image(b: _Builder, x: _Value) -> _Value:
    """A channels-last 1-D tensor (N, W, C) as the image (N, 1, W, C) the 2-D code paths take."""
    if len(x.shape) == 4:
        return x
    return _reshaped(b, x, (x.shape[0], 1, *x.shape[1:]))


def _geometry(layer: Any, kernel: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """(kernel, strides, pads) of a 2-D layer, or of a 1-D one as an image of height 1 (``kernel``: hls4ml's
    attribute prefix, 'filt' or 'pool')."""
    get = layer.get_attr
    if get(f"{kernel}_height") is None:                   # Conv1D / Pooling1D
        return (1, get(f"{kernel}_width")), (1, get("stride_width")), (0, get("pad_left"), 0, get("pad_right"))
    return ((get(f"{kernel}_height"), get(f"{kernel}_width")), (get("stride_height"), get("stride_width")),
            (get("pad_top"), get("pad_left"), get("pad_bottom"), get("pad_right")))


@_handles("Conv1D", "Conv2D")
def _conv(b: _Builder, layer: Any) -> None:
    x = _image(b, b.input())
    _, strides, pads = _geometry(layer, "filt")
    rank = np.ndim(layer.weights["weight"].data)
    weight = _weights(layer, (*range(1, rank), 0))       # ([fh,] fw, c, f); resource stores (f, [fh,] fw, c)
    weight = weight[None] if rank == 3 else weight       # (fh, fw, c, f)
    shape = b.image_shape()
    n, h, w, _ = x.shape
    kh, kw = weight.shape[:2]
    if shape != (n, (h + pads[0] + pads[2] - kh) // strides[0] + 1, (w + pads[1] + pads[3] - kw) // strides[1] + 1,
                 weight.shape[3]):
        raise _Refused(f"output shape {shape[1:]} does not match an undilated convolution of {x.shape[1:]}")

    def emit(wt: np.ndarray, shift: int, rounding: str):
        attrs = {"weight": wt, "strides": strides, "pads": pads, "product_shift": shift, "rounding": rounding}
        return (*b.emit("FixedConv", x, attrs, shape, "acc"), shape)
    _accumulate(b, layer, x, weight, emit)


@_handles("Pooling1D", "Pooling2D")
def _pooling(b: _Builder, layer: Any) -> None:
    x = _image(b, b.input())
    get = layer.get_attr
    op = get("pool_op")
    if op not in ("Max", "Average"):
        raise _Refused(f"{op} pooling is not supported (max and average pooling are)")
    kernel, strides, pads = _geometry(layer, "pool")
    if any(p >= k for p, k in zip(pads, kernel * 2)):
        raise _Refused("padding as large as the pool window is not supported")
    shape = b.image_shape()
    n, h, w, _ = x.shape
    if shape != (n, (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1,
                 (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1, x.shape[3]):
        raise _Refused(f"output shape {shape[1:]} does not match a pooling of {x.shape[1:]}")
    window = kernel[0] * kernel[1]
    if op == "Average" and not get("count_pad", False) and _windows_overlap_padding((h, w), kernel, strides, pads,
                                                                                      shape[1:3]):
        raise _Refused("average pooling without count_pad divides the windows that overlap the padding by their "
                       "unpadded area, a divisor that varies with the position; only count_pad (PyTorch's "
                       "count_include_pad=True) or windows clear of the padding are supported")
    nchw = (x.shape[0], x.shape[3], x.shape[1], x.shape[2])
    dtype = b.tensors[x.tensor].dtype
    out, bounds = b.emit("Transpose", x, {"perm": (0, 3, 1, 2)}, nchw, "nchw", dtype, axis=1)
    pooled = (nchw[0], nchw[1], *shape[1:3])
    if op == "Max":
        attrs = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": (1, 1), "ceil_mode": False}
        out, bounds = b.emit("MaxPool", _Value(out, nchw, x.type, bounds), attrs, pooled, "max", dtype, axis=1)
    else:       # window sums of the codes (padding enters as code 0, the value 0)
        attrs = {"kernel": kernel, "strides": strides, "pads": pads, "ceil_mode": False, "global": False,
                 "window": window, "x_zero_point": 0}
        out, bounds = b.emit("SumPool", _Value(out, nchw, x.type, bounds), attrs, pooled, "sum", axis=1)
        dtype = b.tensors[out].dtype
    out, bounds = b.emit("Transpose", _Value(out, pooled, x.type, bounds), {"perm": (0, 2, 3, 1)}, shape, "nhwc",
                         dtype)
    acc_t = fixed_type(get("accum_t").precision, "accum_t")       # pool_op returns accum_t, assigned to res_T
    if op == "Max":
        b.finish(b.cast(_Value(out, shape, x.type, bounds), (FixedStep(x.type.frac, acc_t),), "accum"))
        return
    sum_t = FixedType(dtype.bits, dtype.bits - x.type.frac, dtype.signed)     # the sums, at the input's LSB
    _average(b, _Value(out, shape, sum_t, bounds), window, acc_t)


def _windows_overlap_padding(size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
                             pads: tuple[int, int, int, int], out: tuple[int, int]) -> bool:
    """Whether some pooling window of an image of ``size`` reaches into its padding."""
    return any(i * strides[a] < pads[a] or i * strides[a] + kernel[a] > size[a] + pads[a]
               for a in (0, 1) for i in range(out[a]))


def _average(b: _Builder, sums: _Value, window: int, acc_t: FixedType) -> None:
    """nnet::avg on window sums ``sums``: ``accum_t y = 0; y += x[i]`` (each sum assigned to accum_t), ``y /=
    window`` (ap_fixed ÷ unsigned: the codes divided, truncated toward zero, in accum_t), the result cast to res_T.

    With accum_t's LSB no coarser than the input's, the additions are exact up to accum_t's overflow: a WRAP
    accumulator wraps the exact sum (modular arithmetic, whatever the order); a saturating one is accepted only
    where no partial sum can reach its limits. A power-of-two window is then a chain of casts: the sum into
    accum_t, ``y / 2^k`` as a TRN_ZERO cast of ``y · 2^-(frac + k)`` to accum_t, and the cast to result_t. Any
    other window is a ``MultiThreshold`` on the sum, computed code by code from the exact C semantics (a monotone
    function of the sum where accum_t cannot wrap); refused when it is not monotone."""
    x_frac = sums.type.frac
    if acc_t.frac < x_frac:
        raise _Refused(f"accum_t {acc_t} has fewer fractional bits than the input ({x_frac}): every addition "
                       "rounds, and the sum depends on its order")
    lo, hi = int(np.min(sums.bounds[0])), int(np.max(sums.bounds[1]))   # bounds every partial sum too
    shift = acc_t.frac - x_frac
    if acc_t.overflow != "WRAP" and (lo << shift < acc_t.dtype.min or hi << shift > acc_t.dtype.max):
        raise _Refused(f"accumulator {acc_t} saturates (AP_{acc_t.overflow}) and can overflow; a saturating sum "
                       "depends on the order of summation, so it has no order-independent result")
    steps = tables.average_steps(x_frac, window, acc_t)
    if steps is not None:
        acc = b.cast(sums, steps[:1], "accum")
        mean = b.cast(acc, steps[1:], "mean")
        b.finish(replace(mean, type=acc_t))
        return
    res_t = b.result_type()
    if hi - lo >= tables.ENUMERATED:
        raise _Refused(f"average pooling over a window of {window} (not a power of two) runs as thresholds, "
                       f"computed code by code: its sums take {hi - lo + 1} values (at most {tables.ENUMERATED})")
    results = tables.average_codes(np.arange(lo, hi + 1, dtype=np.int64), x_frac, window, acc_t, res_t)
    node = Node("MultiThreshold", b.layer.name, (sums.tensor,), (), {"axis": sums.axis})
    try:
        attrs = tables.threshold_attrs(node, [tables.enumerated_piece(lo, results)], res_t)
    except tables.ActivationRefused as exc:
        raise _Refused(f"average pooling over a window of {window} (not a power of two): {exc}") from None
    out, bounds = b.emit("MultiThreshold", sums, attrs, sums.shape, "mean", attrs["quantizer"].dtype)
    b.finish(_Value(out, sums.shape, res_t, bounds))


def _check_saturating_sum(weight: np.ndarray, shift: int, acc_t: FixedType, acc_bias: np.ndarray, lo: int,
                          hi: int) -> None:
    """A saturating accumulator is exact only if no product and no partial sum can reach its limits."""
    ends = [round_shift(weight.astype(np.int64) * v, shift, acc_t.rounding) for v in (lo, hi)]
    neg = np.minimum(np.minimum(*ends), 0).sum(axis=0)
    pos = np.maximum(np.maximum(*ends), 0).sum(axis=0)
    dtype = acc_t.dtype
    low, high = np.minimum(neg, acc_bias + neg), np.maximum(pos, acc_bias + pos)
    if np.any(low < dtype.min) or np.any(high > dtype.max):
        raise _Refused(f"accumulator {acc_t} saturates (AP_{acc_t.overflow}) and can overflow; a saturating sum "
                       "depends on the order of summation, so it has no order-independent result")


@_handles("Activation", "ParametrizedActivation", "HardActivation")
def _activation(b: _Builder, layer: Any) -> None:
    kind = str(layer.get_attr("activation", "")).lower()
    x = b.input()
    if kind in ("relu", "linear"):
        b.finish(b.cast(x, (FixedStep(x.type.frac, b.result_type(), relu=kind == "relu"),), "act"))
        return
    if kind not in tables.ACTIVATIONS:
        raise _Refused(f"activation '{kind}' is not supported (supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
    res_t = b.result_type()
    options: dict[str, Any] = {}
    if kind in tables.CENTERED or kind in tables.NEGATIVE:
        options["table_size"] = int(layer.get_attr("table_size", 1024))
        options["table_t"] = fixed_type(layer.get_attr("table_t").precision, "table_t")
    if layer.get_attr("param_t") is not None and kind in ("elu", "leakyrelu", "thresholdedrelu"):
        # the C call passes the parameter as hls4ml's decimal text, converted to param_t
        options["param"] = (fixed_type(layer.get_attr("param_t").precision, "param_t"),
                            float(str(layer.get_attr("activ_param", 1.0))))
    elif kind in ("leakyrelu", "thresholdedrelu"):
        raise _Refused(f"activation '{kind}' has no parameter type (param_t)")
    if kind in ("hard_sigmoid", "hard_tanh"):
        options["slope_shift"] = (fixed_type(layer.get_attr("slope_t").precision, "slope_t"),
                                  float(str(layer.get_attr("slope"))),
                                  fixed_type(layer.get_attr("shift_t").precision, "shift_t"),
                                  float(str(layer.get_attr("shift"))))
    lo, hi = int(np.min(x.bounds[0])), int(np.max(x.bounds[1]))
    try:
        pieces = tables.activation_pieces(kind, x.type, res_t, lo, hi, **options)
        node = Node("MultiThreshold", layer.name, (x.tensor,), (), {"axis": x.axis})
        attrs = tables.threshold_attrs(node, pieces, res_t)
    except tables.ActivationRefused as exc:
        raise _Refused(f"activation '{kind}': {exc}") from None
    out, bounds = b.emit("MultiThreshold", x, attrs, x.shape, "act", attrs["quantizer"].dtype)
    b.finish(_Value(out, x.shape, res_t, bounds))


@_handles("BatchNormalization")
def _batchnorm(b: _Builder, layer: Any) -> None:
    x = b.input()
    s_t, scale = _codes(layer, "scale")
    c_t, bias = _codes(layer, "bias")
    channels = x.shape[-1]
    if scale.size not in (1, channels) or bias.size not in (1, channels):
        raise _Refused(f"scale/bias of {scale.size}/{bias.size} values do not vary along the channel axis only "
                       f"(input shape {x.shape[1:]})")
    frac = max(x.type.frac + s_t.frac, c_t.frac)        # res = data * scale + bias, exact before the cast
    mult = scale.reshape(-1) << (frac - x.type.frac - s_t.frac)
    add = bias.reshape(-1) << (frac - c_t.frac)
    magnitude = max(abs(int(np.min(x.bounds[0]))), abs(int(np.max(x.bounds[1])))) * int(np.max(np.abs(mult))) \
        + int(np.max(np.abs(add)))
    if magnitude.bit_length() > MAX_CODE_BITS:
        raise _Refused(f"data * scale + bias needs {magnitude.bit_length() + 1} bits; hwgen computes in 64-bit "
                       "integers (narrow the input, scale or bias precision)")
    b.finish(b.cast(x, (FixedStep(frac, b.result_type(), mult=mult, bias=add),), "bn"))


@_handles("Reshape")
def _reshape(b: _Builder, layer: Any) -> None:
    x = b.input()
    shape = b.output_shape()
    if math.prod(shape) != math.prod(x.shape):
        raise _Refused(f"reshape {x.shape[1:]} → {shape[1:]} changes the number of elements")
    out, bounds = b.emit("Reshape", x, {"shape": shape}, shape, "reshape", b.tensors[x.tensor].dtype)
    b.finish(_Value(out, shape, x.type, bounds))


@_handles("Transpose")
def _transpose(b: _Builder, layer: Any) -> None:
    x = b.input()
    perm = (0, *(int(p) + 1 for p in layer.get_attr("perm")))
    shape = b.output_shape()
    if perm == (0, 2, 1):           # (N, C, W) → (N, W, C), e.g. a PyTorch 1-D input: an image's NCHW → NHWC
        x, perm, shape = _reshaped(b, x, (x.shape[0], x.shape[1], 1, x.shape[2])), (0, 2, 3, 1), b.image_shape()
    out, bounds = b.emit("Transpose", x, {"perm": perm}, shape, "transpose", b.tensors[x.tensor].dtype)
    b.finish(_Value(out, shape, x.type, bounds))


def _reshaped(b: _Builder, x: _Value, shape: tuple[int, ...]) -> _Value:
    """``x`` reshaped: the model input's ``Quantize``, when it is the last node, quantizes to ``shape`` (the
    architectures read their input images straight from it); otherwise a ``Reshape``."""
    node = b.nodes[-1] if b.nodes else None
    if node is None or node.op != "Quantize" or node.outputs != (x.tensor,):
        out, bounds = b.emit("Reshape", x, {"shape": shape}, shape, "image", b.tensors[x.tensor].dtype)
        return _Value(out, shape, x.type, bounds)
    b.nodes[-1] = node.with_attrs(shape=shape)
    b.tensors[x.tensor] = replace(b.tensors[x.tensor], shape=shape, axis=len(shape) - 1)
    value = replace(x, shape=shape)
    b.values = {name: value if v is x else v for name, v in b.values.items()}
    return value


# ---------------------------------------------------------------------------------------------------- entry points
def _unsupported_why(layer: Any) -> str:
    activation = layer.get_attr("activation")
    return f"layer class is not supported (activation '{activation}')" if activation else "layer class is not supported"


def from_hls4ml(hls_model: Any) -> Graph:
    """The integer IR of an hls4ml ``ModelGraph`` (e.g. from ``hls4ml.converters.convert_from_pytorch_model``).

    Golden execution of the result equals ``hls_model.predict`` after ``hls_model.compile()`` bit for bit (inputs
    as float32 values). Raises :class:`hwgen.UnsupportedModelError` naming every layer (name and class) hwgen
    cannot import, or :class:`hwgen.HwgenError` for a model-level problem.
    """
    config = hls_model.config
    backend = str(config.get_config_value("Backend", "Vivado"))
    if backend not in BACKENDS:
        raise HwgenError(f"hls4ml backend '{backend}' is not supported; hwgen reproduces the ap_fixed arithmetic of "
                         f"{', '.join(BACKENDS)}")
    if len(hls_model.inputs) != 1 or len(hls_model.outputs) != 1:
        raise HwgenError(f"hls4ml model has {len(hls_model.inputs)} inputs and {len(hls_model.outputs)} outputs; "
                         "hwgen takes exactly one of each")
    layers = list(hls_model.get_layers())
    issues = [NodeIssue(layer.name, layer.class_name, _unsupported_why(layer), f"supported: {', '.join(sorted(HANDLERS))}")
              for layer in layers if _class_of(layer) is None]
    builder = _Builder(io_type=str(config.get_config_value("IOType", "io_parallel")))
    poisoned: set[str] = set()          # outputs of layers that could not be imported; their users are skipped
    for layer in layers:
        builder.layer = layer
        if _class_of(layer) is None or poisoned & set(layer.inputs):
            poisoned.update(layer.outputs)
            continue
        try:
            HANDLERS[_class_of(layer)](builder, layer)
        except _Refused as exc:
            issues.append(NodeIssue(layer.name, layer.class_name, str(exc)))
            poisoned.update(layer.outputs)
    if issues:
        raise UnsupportedModelError(issues)
    out = builder.values[hls_model.outputs[0]]
    name = f"{hls_model.outputs[0]}:output"
    builder.tensors[name] = Tensor(name, out.shape, FLOAT32, out.axis, name)
    builder.nodes.append(Node("Dequantize", f"output:{hls_model.outputs[0]}", (out.tensor,), (name,),
                              {"chain": Chain(np.asarray(out.type.scale)), "axis": None}, ("output",)))
    inputs = (hls_model.inputs[0],)
    return Graph(inputs=inputs, outputs=(name,), nodes=tuple(builder.nodes), tensors=builder.tensors,
                 name=str(config.get_project_name()))


def read_hls4ml(path: str | Path) -> Any:
    """An hls4ml ``ModelGraph`` from a ``.fml`` file written by ``hls4ml.utils.serialization.serialize_model``."""
    path = Path(path)
    if not path.is_file():
        raise HwgenError(f"hls4ml model file '{path}' does not exist")
    try:
        from hls4ml.utils.serialization import deserialize_model
    except ImportError as exc:
        raise HwgenError("reading .fml models needs hls4ml (pip install 'hwgen[test]' or pip install hls4ml)") from exc
    try:
        return deserialize_model(path)
    except Exception as exc:       # tarfile/json/hls4ml errors: not a readable .fml
        raise HwgenError(f"'{path}' is not a readable hls4ml model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from exc


def canonical_fml(data: bytes) -> bytes:
    """The ``.fml`` archive ``data`` re-packed deterministically (members sorted by name; times, owners and the
    gzip header's time zeroed; the applied optimizer sets sorted): the same model gives the same bytes, so designs
    that keep it are reproducible."""
    raw = io.BytesIO()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as source, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed, \
                tarfile.open(fileobj=packed, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for member in sorted(source.getmembers(), key=lambda member: member.name):
                info = copy.copy(member)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                content = source.extractfile(member).read() if member.isfile() else None
                if content is not None and Path(member.name).name == "graph_state.json":
                    content = _sorted_flows(content)
                    info.size = len(content)
                archive.addfile(info, None if content is None else io.BytesIO(content))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise HwgenError(f"not a readable hls4ml model archive ({exc})") from exc
    return raw.getvalue()


def _sorted_flows(state: bytes) -> bytes:
    """``graph_state.json`` with the optimizers of every applied flow sorted: hls4ml keeps them in sets, which
    it writes in hash order (different in every process)."""
    data = json.loads(state)
    data["applied_flows"] = [{flow: sorted(passes) for flow, passes in group.items()}
                             for group in data.get("applied_flows", [])]
    return json.dumps(data, indent=4).encode()


def fml_bytes(hls_model: Any) -> bytes:
    """An in-memory ``ModelGraph`` as hls4ml's ``serialize_model`` writes it (``.fml``), re-packed canonically."""
    from hls4ml.utils.serialization import serialize_model

    with tempfile.TemporaryDirectory(prefix="hwgen-fml-") as tmp:
        path = Path(tmp) / "model.fml"
        serialize_model(hls_model, str(path))
        return canonical_fml(path.read_bytes())


def load_hls4ml(path: str | Path) -> Graph:
    """The integer IR of an hls4ml model saved with ``serialize_model`` (``.fml``)."""
    return from_hls4ml(read_hls4ml(path))


def fixed_output_type(graph: Graph) -> FixedType:
    """The fixed-point type of the codes the output dequantizer of an imported hls4ml graph reads."""
    producer = next(n for n in graph.nodes if n.op == "Dequantize")
    node = graph.producer(producer.inputs[0])
    while node.op in ("Reshape", "Transpose"):
        node = graph.producer(node.inputs[0])
    if node.op == "FixedCast":
        return node.attrs["steps"][-1].to
    return node.attrs["quantizer"]


__all__ = ["canonical_fml", "fixed_output_type", "fixed_type", "fml_bytes", "from_hls4ml", "load_hls4ml",
           "read_hls4ml"]
