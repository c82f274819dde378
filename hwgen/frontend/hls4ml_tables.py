"""hls4ml's elementwise activations (``nnet_activation.h``) as exact functions of the input code, and as thresholds.

Every activation here maps an ``ap_fixed`` input code to a ``res_T`` code the way the Vivado/Vitis ``nnet_utils``
kernels compute it (io_parallel and io_stream run the same code):

- lookup tables — ``sigmoid``, ``softplus``, ``softsign`` (inputs -8 … 8) and ``tanh`` (-4 … 4): ``table_size``
  entries ``table_t(f(x_i))``, ``x_i = range · (i - N/2) / N`` computed in float, indexed by
  ``index = int(data · N / range) + N/2`` clamped to [0, N - 1] (``ap_fixed`` product, division truncating toward
  zero, ``int`` conversion truncating toward zero), the entry cast to ``res_T``;
- ``elu`` (α = 1, or ``param_t(α)`` for the parametrized layer) and ``selu``: the input itself (``λ · x`` for selu)
  for x ≥ 0, a table of ``e^x - 1`` over -8 … 0 indexed by ``int(data · N / -8)`` below zero;
- ``leakyrelu`` (``x > 0 ? x : α · x``), ``thresholdedrelu`` (``x > θ ? x : 0``), ``relu6`` / ``relu1``
  (``min(max(x, 0), MAX_INT)``), ``hard_sigmoid`` / ``hard_tanh`` (``clip(slope · x + shift, 0, 1)``, and
  ``2 · that - 1``): exact ``ap_fixed`` arithmetic, then the cast to ``res_T``.

The tables are computed as the C simulation computes them: the float32 abscissae, the float or double arithmetic of
each ``*_fcn_float`` and the C library's ``expf``/``tanhf``/``log`` called through ``ctypes`` (the very functions the
compiled C simulation calls on this machine; numpy in float64 rounded to float32 where no C library is found), then
the conversion of the float result to ``table_t``.

An activation is a few *pieces* over intervals of input codes: a table behind a monotone index, or a fixed-point
cast (:class:`~hwgen.ir.fixed.FixedStep`). It is monotone non-decreasing when every piece is (a table piece: its
cast entries over the indices its codes reach; a cast piece: no wrap, per ``FixedStep.bounds``) and every piece
ends no higher than the next begins — a proof, not a sample, so it holds for any input width. Such a function takes
the values ``base + step · j`` (j = 0 … count) and is the ``MultiThreshold`` ``base + step · #{j : x ≥ T_j}``,
whose thresholds bisection finds exactly (:func:`hwgen.passes.thresholds.thresholds_for`). A non-monotone
activation (a wrapping ``res_T``, a negative slope) has no threshold form and is refused.

Average pooling (``nnet::avg``) is such a function of its window sum (:func:`average_codes`), given code by code
(:func:`enumerated_piece`); a power-of-two window is also a chain of casts (:func:`average_steps`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Callable

import numpy as np

from ..ir import Node, int_range
from ..ir.fixed import FixedStep, FixedType
from ..passes.thresholds import MAX_THRESHOLD_BITS, thresholds_for

MAX_LEVELS = (1 << MAX_THRESHOLD_BITS) - 1       # thresholds per activation (2^10 output levels)
CENTERED = {"sigmoid": 16, "softplus": 16, "softsign": 16, "tanh": 8}    # table input range: -range/2 … range/2
ENUMERATED = 1 << 20                            # casts that can wrap: checked code by code up to this many codes
NEGATIVE = ("elu", "selu")                      # tables over -8 … 0, the input itself above 0
RELU_MAX = {"relu6": 6, "relu1": 1}
SELU_LAMBDA = 1.0507009873554805                # selu's ap_ufixed<16,1> lambda for x >= 0
ACTIVATIONS = ("elu", "hard_sigmoid", "hard_tanh", "leakyrelu", "relu1", "relu6", "selu", "sigmoid", "softplus",
               "softsign", "tanh", "thresholdedrelu")


class ActivationRefused(Exception):
    """An activation hwgen cannot express as thresholds (``why``)."""


# ---------------------------------------------------------------------------------------------------- C math
@cache
def _libm() -> Any:
    """The C math library the C simulation links (None where ctypes finds none)."""
    name = ctypes.util.find_library("m")
    try:
        lib = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        for fn, kind in (("expf", ctypes.c_float), ("tanhf", ctypes.c_float), ("log", ctypes.c_double)):
            getattr(lib, fn).restype, getattr(lib, fn).argtypes = kind, [kind]
    except (OSError, AttributeError):
        return None
    return lib


def _float(name: str, x: np.ndarray) -> np.ndarray:
    """``std::exp(float)`` / ``tanh(float)``: the C library's ``expf`` / ``tanhf`` (float32 in, float32 out)."""
    lib = _libm()
    if lib is None:
        return getattr(np, name[:-1])(x.astype(np.float64)).astype(np.float32)
    fn = getattr(lib, name)
    return np.array([fn(float(v)) for v in x], np.float32)


def _expf(x: np.ndarray) -> np.ndarray:
    return _float("expf", x)


def _log(x: np.ndarray) -> np.ndarray:
    """``std::log(double)``."""
    lib = _libm()
    if lib is None:
        return np.log(x)
    return np.array([lib.log(float(v)) for v in x], np.float64)


def table_values(kind: str, size: int) -> np.ndarray:
    """The values ``init_<kind>_table`` assigns to ``table_t`` (float64 holding the float or double result)."""
    i = np.arange(size, dtype=np.float64)
    f32 = np.float32
    if kind in CENTERED:
        span = CENTERED[kind]                             # 2 * 8.0 * (ii - float(N) / 2.0) / float(N), to float
        x = (2.0 * (span / 2) * (i - size / 2.0) / size).astype(f32)
    else:                                                 # -8.0 * ii / float(N), to float
        x = (-8.0 * i / size).astype(f32)
    if kind == "sigmoid":                                 # 1.0 / (1 + std::exp(-input)), returned as float
        return (1.0 / (f32(1) + _expf(-x)).astype(np.float64)).astype(f32).astype(np.float64)
    if kind == "tanh":                                    # tanh(in_val): the float overload (tanhf)
        return _float("tanhf", x).astype(np.float64)
    if kind == "softplus":                                # std::log(std::exp(input) + 1.), returned as float
        return _log(_expf(x).astype(np.float64) + 1.0).astype(f32).astype(np.float64)
    if kind == "softsign":                                # input / (std::abs(input) + 1.), returned as float
        x64 = x.astype(np.float64)
        return (x64 / (np.abs(x64) + 1.0)).astype(f32).astype(np.float64)
    if kind == "elu":                                     # std::exp(input) - 1., returned as float
        return (_expf(x).astype(np.float64) - 1.0).astype(f32).astype(np.float64)
    if kind == "selu":
        em1 = _expf(x).astype(np.float64) - 1.0
        return (1.0507009873554804934193349852946 * (1.6732632423543772848170429916717 * em1)).astype(f32) \
            .astype(np.float64)
    raise ValueError(f"no lookup table for activation '{kind}'")


# ---------------------------------------------------------------------------------------------------- pieces
def trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    """``a / b`` rounded toward zero (C integer division), int64."""
    q = np.abs(a) // abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def _to_int(raw: np.ndarray, frac: int) -> np.ndarray:
    """``int(ap_fixed)`` of raw value ``raw · 2^-frac``: toward zero (Cnative conversion)."""
    return trunc_div(raw, 1 << frac) if frac > 0 else raw << -frac


@dataclass(frozen=True)
class Piece:
    """An activation on input codes [lo, hi]: ``fn`` (vectorized int64 → int64), proven monotone or not, and
    ``values`` such that every output differs from the first of them by a multiple of the gcd of their differences
    (a table's entries; for a cast, two neighbours of its grid)."""

    lo: int
    hi: int
    fn: Callable[[np.ndarray], np.ndarray]
    monotone: bool
    values: np.ndarray


def _cast_piece(lo: int, hi: int, step: FixedStep) -> Piece:
    """``step`` (a cast of ``x · mult``) on codes [lo, hi]: monotone where nothing wraps (``FixedStep.bounds``), or,
    for at most ENUMERATED codes, where every code says so."""
    monotone = bool(step.bounds(np.array(lo), np.array(hi))[2])
    if not monotone and hi - lo < ENUMERATED:
        steps = np.diff(step.apply(np.arange(lo, hi + 1, dtype=np.int64), None))
        monotone = bool(np.all(steps >= 0) or np.all(steps <= 0))
    shift = step.to.frac - step.frac                      # > 0: an exact left shift, outputs mult · 2^shift apart
    grain = abs(int(step.mult)) << shift if shift > 0 else 1
    first = int(step.affine(np.array(lo), None)) << max(shift, 0)       # unsaturated (saturation: at the ends)
    return Piece(lo, hi, lambda x: step.apply(x, None), monotone, np.array([first, first + max(grain, 1)]))


def enumerated_piece(lo: int, values: np.ndarray) -> Piece:
    """A function given code by code: ``values[x - lo]`` on codes [lo, lo + len(values) - 1] (e.g. an average
    pooling's exact division of its window sum), monotone iff those values are."""
    values = np.asarray(values, np.int64)
    steps = np.diff(values)
    return Piece(lo, lo + len(values) - 1, lambda x: values[np.asarray(x, np.int64) - lo],
                 bool(np.all(steps >= 0) or np.all(steps <= 0)), np.unique(values))


def _constant_piece(lo: int, hi: int, value: int) -> Piece:
    return Piece(lo, hi, lambda x: np.full(np.shape(x), value, np.int64), True, np.array([value]))


def _table_piece(lo: int, hi: int, index: Callable[[np.ndarray], np.ndarray], entries: np.ndarray) -> Piece:
    """``entries[index(x)]`` on codes [lo, hi], ``index`` monotone (either way): monotone iff the entries the
    reached indices span are."""
    ends = index(np.array([lo, hi], np.int64))
    reached = entries[int(ends.min()):int(ends.max()) + 1]
    steps = np.diff(reached)
    return Piece(lo, hi, lambda x: entries[index(x)], bool(np.all(steps >= 0) or np.all(steps <= 0)), reached)


def _cut(lo: int, hi: int, parts: list[tuple[int | None, Callable[[int, int], Piece]]]) -> list[Piece]:
    """The pieces of [lo, hi] cut before each ``end`` of ``parts`` (``(end, make)``: ``make`` covers the codes from
    the previous end up to ``end - 1``; None: up to ``hi``), leaving out empty ones."""
    pieces, start = [], lo
    for end, make in parts:
        stop = hi if end is None else min(hi, end - 1)
        if start <= stop:
            pieces.append(make(start, stop))
        start = max(start, stop + 1)
    return pieces


def _split(lo: int, hi: int, at: int, below: Callable[[int, int], Piece], above: Callable[[int, int], Piece]) \
        -> list[Piece]:
    """Pieces for codes [lo, at - 1] and [at, hi] (only those that are not empty)."""
    return _cut(lo, hi, [(at, below), (None, above)])


def activation_pieces(kind: str, x_t: FixedType, res_t: FixedType, lo: int, hi: int, table_size: int = 1024,
                      table_t: FixedType | None = None, param: tuple[FixedType, float] | None = None,
                      slope_shift: tuple[FixedType, float, FixedType, float] | None = None) -> list[Piece]:
    """hls4ml activation ``kind`` on ``x_t`` codes [lo, hi], cast to ``res_t``, as pieces in input order.

    ``param``: (param_t, value) of a parametrized activation (leakyrelu α, elu α, thresholdedrelu θ);
    ``slope_shift``: (slope_t, slope, shift_t, shift) of hard_sigmoid / hard_tanh."""
    f = x_t.frac
    identity = FixedStep(f, res_t)                        # res[ii] = data[ii]
    size = int(table_size)
    if kind in CENTERED or kind in NEGATIVE:
        if size < 2:
            raise ActivationRefused(f"table_size {size} is below 2")
        if x_t.width + size.bit_length() > 60:
            raise ActivationRefused(f"input {x_t} times table_size {size} exceeds hwgen's 64-bit arithmetic")
        entries = table_t.quantize(table_values(kind, size))
    if kind in CENTERED:
        span = CENTERED[kind]
        offset = (span // 2) * size // span               # 8 * N / 16, 4 * N / 8 (unsigned)
        limit = (abs(min(lo, 0)) + max(hi, 0)) * size // span >> max(f, 0) << max(-f, 0)
        if limit + offset >= 1 << 31:
            raise ActivationRefused(f"input {x_t} reaches table indices beyond a C int")
        out = res_t.cast(entries, table_t.frac)

        def index(x: np.ndarray) -> np.ndarray:           # int(data * N / span) + offset, clamped
            return np.clip(_to_int(trunc_div(x * size, span), f) + offset, 0, size - 1)
        return [_table_piece(lo, hi, index, out)]

    if kind in NEGATIVE:
        if kind == "elu":                                 # res = alpha * elu_table[index]; x itself above zero
            a_t, alpha = param if param is not None else (FixedType(1, 1, False), 1.0)     # ap_uint<1>(1.0)
            a = int(a_t.quantize(np.array(alpha)))
            out = res_t.cast(a * entries, a_t.frac + table_t.frac)
            positive = identity
        else:                                             # res = selu_table[index]; lambda * x above zero
            lam_t = FixedType(16, 1, False)
            lam = int(lam_t.quantize(np.array(SELU_LAMBDA)))
            out = res_t.cast(entries, table_t.frac)
            positive = FixedStep(f + lam_t.frac, res_t, mult=np.array(lam, np.int64))

        def index(x: np.ndarray) -> np.ndarray:           # int(data * N / -8), clamped
            return np.clip(_to_int(trunc_div(x * size, -8), f), 0, size - 1)
        return _split(lo, hi, 0, lambda l, h: _table_piece(l, h, index, out),
                      lambda l, h: _cast_piece(l, h, positive))

    if kind == "leakyrelu":                               # x > 0 ? x : alpha * x
        a_t, alpha = param
        a = int(a_t.quantize(np.array(alpha)))
        return _split(lo, hi, 1, lambda l, h: _cast_piece(l, h, FixedStep(f + a_t.frac, res_t, mult=np.array(a))),
                      lambda l, h: _cast_piece(l, h, identity))
    if kind == "thresholdedrelu":                         # x > theta ? x : 0
        t_t, theta = param
        t = int(t_t.quantize(np.array(theta)))
        last = t << (f - t_t.frac) if f >= t_t.frac else t >> (t_t.frac - f)    # largest x with x <= theta
        return _split(lo, hi, last + 1, lambda l, h: _constant_piece(l, h, int(res_t.cast(np.array(0), 0))),
                      lambda l, h: _cast_piece(l, h, identity))
    if kind in RELU_MAX:                                  # x < 0 ? 0 : x > MAX_INT ? MAX_INT : x
        top = RELU_MAX[kind]
        first = (top << f if f >= 0 else top >> -f) + 1   # the smallest code above MAX_INT
        return _cut(lo, hi, [(0, lambda l, h: _constant_piece(l, h, int(res_t.cast(np.array(0), 0)))),
                             (first, lambda l, h: _cast_piece(l, h, identity)),
                             (None, lambda l, h: _constant_piece(l, h, int(res_t.cast(np.array(top), 0))))])
    if kind in ("hard_sigmoid", "hard_tanh"):
        return _hard_pieces(kind, x_t, res_t, lo, hi, *slope_shift)
    raise ActivationRefused(f"activation '{kind}' is not supported")


def _hard_pieces(kind: str, x_t: FixedType, res_t: FixedType, lo: int, hi: int, slope_t: FixedType, slope: float,
                 shift_t: FixedType, shift: float) -> list[Piece]:
    """``auto v = slope * data + shift`` (exact, in ap_fixed's sum type), clamped by ``v > 1 ? 1 : v < 0 ? 0 : v``
    (1 assigned to that type), then ``res = v`` (hard_sigmoid) or ``res = 2 * v - 1`` (hard_tanh)."""
    s = int(slope_t.quantize(np.array(slope)))
    c = int(shift_t.quantize(np.array(shift)))
    if s < 0:
        raise ActivationRefused(f"slope {slope} is negative: the activation decreases")
    # the type of slope * data + shift (ap_fixed_base RType: mult, then plus)
    m_w, m_i, m_s = slope_t.width + x_t.width, slope_t.integer + x_t.integer, slope_t.signed or x_t.signed
    m_f, c_f = m_w - m_i, shift_t.frac
    p_i = max(m_i + (shift_t.signed and not m_s), shift_t.integer + (m_s and not shift_t.signed)) + 1
    frac = max(m_f, c_f)
    sum_t = FixedType(p_i + frac, p_i, m_s or shift_t.signed)
    one = int(sum_t.cast(np.array(1), 0))                 # datareg = 1 (may wrap if the type cannot hold 1)
    mult, bias = s << (frac - m_f), c << (frac - c_f)

    def to(v: np.ndarray) -> np.ndarray:                  # res = v, or res = 2 * v - 1 (exact), cast to res_T
        return res_t.cast(v if kind == "hard_sigmoid" else 2 * v - (1 << frac), frac)

    def clamped(x: np.ndarray) -> np.ndarray:
        value = np.asarray(x, np.int64) * mult + bias
        return to(np.where(value > 1 << frac, one, np.where(value < 0, 0, value)))
    if s == 0:
        return [_constant_piece(lo, hi, int(clamped(np.array(lo))))]
    x0 = -(bias // mult)                                  # the smallest x with x·mult + bias >= 0
    x1 = ((1 << frac) - bias) // mult + 1                 # the smallest x with x·mult + bias > 1
    inner = FixedStep(frac, res_t, mult=np.array(mult), bias=np.array(bias)) if kind == "hard_sigmoid" else \
        FixedStep(frac, res_t, mult=np.array(2 * mult), bias=np.array(2 * bias - (1 << frac)))
    return _cut(lo, hi, [(x0, lambda l, h: _constant_piece(l, h, int(to(np.array(0))))),
                         (x1, lambda l, h: _cast_piece(l, h, inner)),
                         (None, lambda l, h: _constant_piece(l, h, int(to(np.array(one)))))])


def evaluate(pieces: list[Piece], x: np.ndarray) -> np.ndarray:
    """The activation's output codes for input codes ``x`` (each within the pieces' span)."""
    x = np.asarray(x, np.int64)
    out = np.zeros(x.shape, np.int64)
    for piece in pieces:
        inside = (x >= piece.lo) & (x <= piece.hi)
        if np.any(inside):
            out[inside] = piece.fn(x[inside])
    return out


# ---------------------------------------------------------------------------------------------------- pooling
def average_codes(sums: np.ndarray, x_frac: int, window: int, acc_t: FixedType, res_t: FixedType) -> np.ndarray:
    """``nnet::avg`` of a window whose input codes (``x_frac`` fractional bits, no more than accum_t's) sum to
    ``sums``, assigned to ``res_T``: ``accum_t y = 0; y += x[i]`` (exact up to accum_t's overflow: a wrapping
    accumulator wraps the exact sum, whatever the order), ``y /= window`` (``ap_fixed /= unsigned``: the codes
    divided, truncated toward zero, in accum_t), then the cast to ``res_T``."""
    return res_t.cast(trunc_div(acc_t.cast(np.asarray(sums, np.int64), x_frac), window), acc_t.frac)


def average_steps(x_frac: int, window: int, acc_t: FixedType) -> tuple[FixedStep, FixedStep] | None:
    """For a power-of-two ``window`` 2^k, :func:`average_codes` before its cast to ``res_T`` as two casts: the sum
    into accum_t, then ``y / 2^k`` as the TRN_ZERO cast of ``y · 2^-(frac + k)`` back to accum_t (it cannot
    overflow: |y / 2^k| ≤ |y|). None for any other window."""
    k = window.bit_length() - 1
    if window != 1 << k:
        return None
    return FixedStep(x_frac, acc_t), FixedStep(acc_t.frac + k, replace(acc_t, rounding="TRN_ZERO"))


# ---------------------------------------------------------------------------------------------------- thresholds
def threshold_attrs(node: Node, pieces: list[Piece], res_t: FixedType) -> dict:
    """MultiThreshold attributes (thresholds on input codes, per tensor) computing ``pieces`` exactly; refuses a
    non-monotone activation or one with more than MAX_LEVELS + 1 output levels. The ``quantizer`` is ``res_t``
    narrowed to the levels: the same LSB (the same codes) in the fewest bits holding them, so the widths derived
    downstream (activation storage, the next layer's accumulators) follow the activation's actual range."""
    lo, hi = pieces[0].lo, pieces[-1].hi
    for piece in pieces:
        if not piece.monotone:
            raise ActivationRefused(f"its result {res_t} is not monotone in the input between codes {piece.lo} and "
                                    f"{piece.hi} (wrap-around), so it has no threshold form")
    ends = [evaluate(pieces, np.array([p.lo, p.hi])) for p in pieces]
    flat = np.concatenate(ends)
    if np.any(np.diff(flat) < 0):
        raise ActivationRefused(f"its result {res_t} decreases as the input grows, so it has no threshold form "
                                "(hwgen runs non-decreasing activations as thresholds)")
    base, top = int(flat[0]), int(flat[-1])
    step = 0
    for piece, end in zip(pieces, ends):
        values = np.unique(piece.values)
        step = math.gcd(step, *(int(v) - int(values[0]) for v in values), *(int(e) - base for e in end))
    step = step or 1
    count = max(1, (top - base) // step)
    if count > MAX_LEVELS:
        raise ActivationRefused(f"its result {res_t} takes {count + 1} levels on the input's range; hwgen runs "
                                f"lookup-table activations as thresholds with at most {MAX_LEVELS + 1} levels "
                                "(narrow result_t)")

    def code(x: np.ndarray) -> np.ndarray:               # x: (1, k)
        return evaluate(pieces, x)
    attrs = thresholds_for(node, np.array([lo]), np.array([hi]), code, 1, res_t.dtype, (base, step, count))
    codes = int_range(base, base + step * count)        # the levels' codes: often far fewer bits than res_t's
    attrs["quantizer"] = FixedType(codes.bits, codes.bits - res_t.frac, codes.signed, res_t.rounding, res_t.overflow)
    return attrs
