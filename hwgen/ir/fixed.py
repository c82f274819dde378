"""Fixed-point numerics as Xilinx ``ap_fixed``/``ap_int`` define them (what hls4ml's C simulation computes).

An ``ap_fixed<W, I, Q, O>`` value is an integer *code* ``c`` of ``W`` bits standing for ``c · 2^-F`` with
``F = W - I`` fractional bits (``F`` may be negative or exceed ``W``). Converting a value to such a type first
drops fractional bits with the quantization mode ``Q`` and then fits the integer into ``W`` bits with the overflow
mode ``O`` (``ap_fixed_base::operator=`` and ``ap_fixed_base(double)``; the carry of a rounding counts as
overflow). Everything here is exact integer arithmetic on int64 codes (float64 only for the host-side conversion of
float inputs, where every step is exact), so hwgen reproduces hls4ml bit for bit, wrap-around included.

Quantization modes (``dropped`` = the bits shifted out, ``half`` = the first of them alone):
``TRN`` floor; ``TRN_ZERO`` toward zero; ``RND`` half up (toward +inf); ``RND_ZERO`` half toward zero;
``RND_MIN_INF`` half down; ``RND_INF`` half away from zero; ``RND_CONV`` half to even.
Overflow modes: ``WRAP`` modulo 2^W; ``SAT`` clamp; ``SAT_ZERO`` 0 on overflow; ``SAT_SYM`` clamp to ±max (signed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .numerics import channel_view
from .types import IntType

ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOW = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
MAX_CODE_BITS = 62          # every code and intermediate fits int64 with headroom (bounds guard INT64_SAFE)


def _adjust(q: np.ndarray, rem: np.ndarray, half, neg: np.ndarray, mode: str) -> np.ndarray:
    """``q = floor(v / 2^s)`` plus the quantization mode's increment; ``rem = v - q·2^s`` in [0, 2^s)."""
    if mode == "TRN":
        return q
    above, tie = rem > half, rem == half
    inc = {"TRN_ZERO": neg & (rem != 0),
           "RND": above | tie,
           "RND_ZERO": above | (tie & neg),
           "RND_MIN_INF": above,
           "RND_INF": above | (tie & ~neg),
           "RND_CONV": above | (tie & (np.mod(q, 2) != 0))}[mode]
    return q + inc.astype(q.dtype)


def round_shift(v: np.ndarray, shift: int, mode: str) -> np.ndarray:
    """``v / 2^shift`` rounded with quantization ``mode`` (int64 in, int64 out); ``shift <= 0`` shifts left."""
    v = np.asarray(v, np.int64)
    if shift <= 0:
        return v << -shift
    if shift >= MAX_CODE_BITS:          # |v| < 2^62 <= half: only the sign and v != 0 matter
        v, shift = np.sign(v), 2
    q = v >> shift
    return _adjust(q, v - (q << shift), 1 << (shift - 1), v < 0, mode)


def overflow(q: np.ndarray, dtype: IntType, mode: str) -> np.ndarray:
    """Fit integers ``q`` (int64) into ``dtype`` (full range) with overflow ``mode``."""
    lo, hi = dtype.min, dtype.max
    if mode == "WRAP":
        r = q & ((1 << dtype.bits) - 1)
        return np.where(r > hi, r - (1 << dtype.bits), r) if dtype.signed else r
    if mode == "SAT_ZERO":
        return np.where((q < lo) | (q > hi), 0, q)
    if mode == "SAT_SYM" and dtype.signed:
        lo = -hi
    return np.clip(q, lo, hi)


@dataclass(frozen=True)
class FixedType:
    """``ap_fixed<width, integer, rounding, overflow>`` (``ap_ufixed`` if not ``signed``; ``ap_int<W>`` is
    ``FixedType(W, W)``): code ``c`` stands for ``c · 2^-frac``."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self) -> None:
        if not 1 <= self.width <= MAX_CODE_BITS:
            raise ValueError(f"fixed-point width must be in 1..{MAX_CODE_BITS} bits, got {self.width}")
        if self.rounding not in ROUNDING:
            raise ValueError(f"unknown quantization mode {self.rounding!r}; expected one of {', '.join(ROUNDING)}")
        if self.overflow not in OVERFLOW:
            raise ValueError(f"unknown overflow mode {self.overflow!r}; expected one of {', '.join(OVERFLOW)}")

    @property
    def frac(self) -> int:
        """Fractional bits: the code's unit is 2^-frac."""
        return self.width - self.integer

    @property
    def dtype(self) -> IntType:
        return IntType(self.width, self.signed)

    @property
    def scale(self) -> float:
        """Real value of one code step (2^-frac), exact in float64."""
        return float(2.0 ** -self.frac)

    def cast(self, codes: np.ndarray, frac: int) -> np.ndarray:
        """Codes of this type for integers ``codes`` standing for ``codes · 2^-frac`` (an ap_fixed assignment)."""
        return overflow(round_shift(codes, frac - self.frac, self.rounding), self.dtype, self.overflow)

    def quantize(self, value: np.ndarray, axis: int | None = None) -> np.ndarray:
        """Codes (int64) of float values, as ``ap_fixed(double)`` converts them; ``axis`` is unused (per tensor)."""
        y = np.ldexp(np.asarray(value, np.float64), self.frac)          # exact: a power-of-two scaling
        if not np.all(np.isfinite(y)):
            raise ValueError(f"cannot convert NaN or infinite values to {self}")
        q = np.floor(y)
        q = _adjust(q, y - q, 0.5, y < 0, self.rounding)
        limit = float(1 << self.width)
        q = np.fmod(q, limit) if self.overflow == "WRAP" else np.clip(q, -limit, limit)   # into int64, same result
        return overflow(q.astype(np.int64), self.dtype, self.overflow)

    def __str__(self) -> str:
        return (f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer},AP_{self.rounding},"
                f"AP_{self.overflow}>")


@dataclass(frozen=True)
class FixedStep:
    """One fixed-point layer operation on integer codes: ``to.cast(relu?(x · mult + bias), frac)``.

    ``x · mult + bias`` is exact, in units of 2^-``frac``; ``mult`` and ``bias`` are int64 per tensor (shape ())
    or per channel (shape (C,)); ``relu`` is hls4ml's ``x > 0 ? x : 0`` before the cast to the result type.
    """

    frac: int
    to: FixedType
    mult: np.ndarray = field(default_factory=lambda: np.array(1, np.int64))
    bias: np.ndarray = field(default_factory=lambda: np.array(0, np.int64))
    relu: bool = False

    def affine(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        """``relu?(x · mult + bias)``: the exact value that is cast (int64)."""
        v = x.astype(np.int64) * channel_view(self.mult, x.ndim, axis) + channel_view(self.bias, x.ndim, axis)
        return np.maximum(v, 0) if self.relu else v

    def apply(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        return self.to.cast(self.affine(x, axis), self.frac)

    def bounds(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Output bounds (per channel) for inputs in [lo, hi], and whether the step is monotone on that range.

        Rounding, ReLU and saturation are monotone; WRAP and SAT_ZERO are monotone only where nothing overflows.
        """
        mult = np.asarray(self.mult, np.int64)
        ends = (np.asarray(lo, np.int64) * mult + self.bias, np.asarray(hi, np.int64) * mult + self.bias)
        v_lo, v_hi = np.minimum(*ends), np.maximum(*ends)
        if self.relu:
            v_lo, v_hi = np.maximum(v_lo, 0), np.maximum(v_hi, 0)
        shift = self.frac - self.to.frac
        r_lo, r_hi = round_shift(v_lo, shift, self.to.rounding), round_shift(v_hi, shift, self.to.rounding)
        dtype = self.to.dtype
        fits = bool(np.all(r_lo >= dtype.min) and np.all(r_hi <= dtype.max))
        if fits or self.to.overflow in ("SAT", "SAT_SYM"):
            return overflow(r_lo, dtype, self.to.overflow), overflow(r_hi, dtype, self.to.overflow), True
        return np.full(np.shape(r_lo), dtype.min), np.full(np.shape(r_hi), dtype.max), False


def apply_steps(steps: tuple[FixedStep, ...], x: np.ndarray, axis: int | None) -> np.ndarray:
    """Codes after every step of a ``FixedCast`` node, in order."""
    for step in steps:
        x = step.apply(x, axis)
    return x


def steps_bounds(steps: tuple[FixedStep, ...], lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Bounds after ``steps`` and whether their composition is monotone on [lo, hi]."""
    monotone = True
    for step in steps:
        lo, hi, ok = step.bounds(lo, hi)
        monotone &= ok
    return lo, hi, monotone


def product_matmul(x: np.ndarray, weight: np.ndarray, shift: int, rounding: str,
                   chunk_elements: int = 1 << 22) -> np.ndarray:
    """``sum_k round(x[..., k] · weight[k, n] / 2^shift)``: every product rounded before it is accumulated (int64).

    This is hls4ml's dense layer when the accumulator has fewer fractional bits than the products: each product is
    assigned to the accumulator type (``mult[i] = a * w``) before the sum. Batches are processed in chunks of at
    most ``chunk_elements`` products to bound memory.
    """
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]).astype(np.int64)
    weight = weight.astype(np.int64)
    rows = max(1, chunk_elements // max(1, weight.size))
    out = np.empty((flat.shape[0], weight.shape[1]), np.int64)
    for start in range(0, flat.shape[0], rows):
        block = flat[start:start + rows]
        out[start:start + rows] = round_shift(block[:, :, None] * weight[None], shift, rounding).sum(axis=1)
    return out.reshape(*lead, weight.shape[1])


def _exact(step: FixedStep, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Whether ``step`` only shifts left on [lo, hi]: no multiply, no rounding, no overflow, no effective ReLU."""
    if step.frac > step.to.frac or np.any(np.asarray(step.mult) != 1):
        return False
    if step.relu and np.any(np.asarray(lo, np.int64) + step.bias < 0):
        return False
    shift = step.to.frac - step.frac
    v_lo = (np.asarray(lo, np.int64) + step.bias) << shift
    v_hi = (np.asarray(hi, np.int64) + step.bias) << shift
    return bool(np.all(v_lo >= step.to.dtype.min) and np.all(v_hi <= step.to.dtype.max))


def simplify_steps(steps: tuple[FixedStep, ...], lo: np.ndarray, hi: np.ndarray) -> tuple[FixedStep, ...]:
    """Steps computing the same codes as ``steps`` for inputs in [lo, hi], with every step that only shifts left
    (exact: no rounding, overflow or ReLU) merged into the step after it, and a last such step without a shift
    dropped. ``A`` = ``(x + a) << k`` followed by ``B`` = ``cast(y · m + b)`` is ``cast(x · m + a·m + b / 2^k)`` read
    at B's input frac minus ``k`` (A's input frac in a graph), when ``2^k`` divides ``b``: the same exact value
    reaches B's rounding and overflow."""
    steps = list(steps)
    index, lo, hi = 0, np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    while index < len(steps):
        step = steps[index]
        shift = step.to.frac - step.frac
        if _exact(step, lo, hi):
            if index + 1 < len(steps) and not np.any(np.asarray(steps[index + 1].bias) % (1 << shift)):
                after = steps[index + 1]
                steps[index:index + 2] = [FixedStep(after.frac - shift, after.to, after.mult,
                                                    np.asarray(step.bias * after.mult + (after.bias >> shift),
                                                               np.int64), after.relu)]
                continue
            if index + 1 == len(steps) and index > 0 and shift == 0 and not np.any(step.bias):
                del steps[index]
                continue
        lo, hi, _ = step.bounds(lo, hi)
        index += 1
    return tuple(steps)
