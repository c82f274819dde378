"""Fixed-point requantization in hardware: ``ap_fixed`` casts as adders, shifts, comparators and bit slices.

One :class:`FixedStage` is one cast of :mod:`hwgen.ir.fixed` without its multiply (a per-channel multiply runs as a
GEMM, see ``hwgen.arch.systolic.compile``)::

    x ─▶ + bias[c] ─▶ relu? ─▶ round_shift(·, shift, rounding) ─▶ fit(·, width, signed, overflow) ─▶ y

- ``round_shift`` drops ``shift`` low bits (``shift < 0`` shifts left): ``q = v >> shift`` (arithmetic), then the
  quantization mode's increment from the dropped bits ``rem`` (``half`` = their top bit alone): TRN none,
  TRN_ZERO ``v < 0 and rem != 0``, RND ``rem >= half``, RND_ZERO ``rem > half or (rem == half and v < 0)``,
  RND_MIN_INF ``rem > half``, RND_INF ``rem > half or (rem == half and v >= 0)``, RND_CONV ``rem > half or
  (rem == half and q odd)``;
- ``fit`` keeps the low ``width`` bits (WRAP: a bit slice, sign-extended if signed), or clamps (SAT), or gives 0 on
  overflow (SAT_ZERO), or clamps to ±max (SAT_SYM; unsigned: SAT).

Two generators build the same arithmetic: :func:`stage_const` for a stage fixed at elaboration (the dataflow
MVAU: a TRN shift is a bit slice, a WRAP a bit slice, nothing else is built) and :func:`stage_var` for a stage
whose shift, modes and width arrive at run time (the systolic array's requant lanes, :func:`stage_fields`), with
a barrel shifter and width-dependent limits. Both equal :meth:`hwgen.ir.fixed.FixedStep.apply` bit for bit
(tests/test_fixed_hw.py checks every mode exhaustively over small widths).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned

from ..ir.fixed import OVERFLOW, ROUNDING, FixedStep
from ..ir.types import int_range

MAX_SHIFT = 63              # |shift| of a stage or a product (run-time fields hold -64..63)


@dataclass(frozen=True)
class FixedStage:
    """The structure of one fixed-point stage: ``fit(round_shift(relu?(x + bias), shift))`` (see the module).

    ``bias_bits`` is the width of the per-channel bias, two's complement (0: no bias). Every field is structural;
    the biases are data loaded at run time.
    """

    shift: int
    rounding: str
    width: int
    signed: bool
    overflow: str
    relu: bool = False
    bias_bits: int = 0

    def __post_init__(self) -> None:
        if self.rounding not in ROUNDING:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, got {self.rounding!r}")
        if self.overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW)}, got {self.overflow!r}")
        if not -MAX_SHIFT <= self.shift <= MAX_SHIFT:
            raise ValueError(f"shift must be in -{MAX_SHIFT}..{MAX_SHIFT}, got {self.shift}")
        if not 1 <= self.width <= 62:
            raise ValueError(f"width must be in 1..62, got {self.width}")
        if not 0 <= self.bias_bits <= 32:
            raise ValueError(f"bias_bits must be in 0..32 (the load port writes 32 bits), got {self.bias_bits}")

    @classmethod
    def of(cls, step: FixedStep) -> FixedStage:
        """The stage of an IR step without a multiply (its biases are data: only their width is structural)."""
        if np.any(np.asarray(step.mult) != 1):
            raise ValueError("a fixed stage has no multiply (run per-channel scales as a GEMM)")
        bias = np.asarray(step.bias, np.int64)
        bits = int_range(min(int(bias.min()), -1), int(bias.max())).bits if np.any(bias != 0) else 0   # signed
        return cls(step.frac - step.to.frac, step.to.rounding, step.to.width, step.to.signed, step.to.overflow,
                   step.relu, bits)

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def shape(self) -> Shape:
        return signed(self.width) if self.signed else unsigned(self.width)

    def pre_bits(self, in_bits: int) -> int:
        """Signed bits of the value before ``fit`` for a signed ``in_bits``-bit input (worst case)."""
        bits = max(in_bits, self.bias_bits) + (1 if self.bias_bits else 0)
        return bits - self.shift + 1 if self.shift <= 0 else max(2, bits - self.shift + 1)


# ---------------------------------------------------------------------------------------------------- increments
def _increment(mode, q_odd, neg, rem_nonzero, above, tie):
    """The quantization mode's increment (a 1-bit Value) for a mode given as a string."""
    return {"TRN": Const(0, 1), "TRN_ZERO": neg & rem_nonzero, "RND": above | tie, "RND_ZERO": above | (tie & neg),
            "RND_MIN_INF": above, "RND_INF": above | (tie & ~neg), "RND_CONV": above | (tie & q_odd)}[mode]


def sign_extend(v: Value, bits: int) -> Value:
    """``v`` (signed or unsigned) as a signed value of at least ``bits`` bits."""
    v = v if v.shape().signed else Cat(v, Const(0, 1)).as_signed()
    return v if len(v) >= bits else Cat(v, v[-1].replicate(bits - len(v))).as_signed()


def round_shift_const(v: Value, shift: int, mode: str) -> Value:
    """``v / 2^shift`` rounded with quantization ``mode`` (``shift`` an int; ``<= 0`` shifts left), signed."""
    v = sign_extend(v, 1)
    if shift <= 0:
        return v << -shift
    v = sign_extend(v, shift + 1)               # the dropped bits and the sign: q = 0 or -1 when all drop
    q = v >> shift                              # arithmetic (v is signed)
    if mode == "TRN":
        return q
    rem = v[:shift]
    half = 1 << (shift - 1)
    inc = _increment(mode, q[0], v[-1], rem != 0, rem > half, rem == half)
    return (q + inc).as_signed()


def fit_const(q: Value, stage: FixedStage) -> Value:
    """``q`` fitted into the stage's type with its overflow mode."""
    lo, hi = stage.lo, stage.hi
    if stage.overflow == "WRAP":
        low = sign_extend(q, stage.width).as_unsigned()[:stage.width]
        return low.as_signed() if stage.signed else low
    if stage.overflow == "SAT_SYM" and stage.signed:
        lo = -hi
    q = sign_extend(q, 1)
    over, under = q > hi, q < lo
    if stage.overflow == "SAT_ZERO":
        return Mux(over | under, 0, q)
    return Mux(over, hi, Mux(under, lo, q))


def stage_const(m: Module, x: Value, stage: FixedStage, bias: Value | None, name: str) -> Signal:
    """The stage applied to ``x`` (combinational), as a Signal of the stage's shape named ``name``."""
    pre = Signal(signed(max(len(x) + 1, stage.bias_bits) + 1), name=f"{name}_pre")
    v = sign_extend(x, 1) + (bias if bias is not None and stage.bias_bits else 0)
    m.d.comb += pre.eq(Mux(v < 0, 0, v) if stage.relu else v)
    out = Signal(stage.shape, name=name)
    m.d.comb += out.eq(fit_const(round_shift_const(pre, stage.shift, stage.rounding), stage))
    return out


# ---------------------------------------------------------------------------------------------------- run time
def stage_fields() -> dict[str, Shape]:
    """Fields a run-time stage reads (an instruction holds one set per stage): shift (signed), the rounding and
    overflow modes as indices of ``ROUNDING``/``OVERFLOW``, the width, signedness and ReLU."""
    return {"shift": signed(7), "rounding": unsigned(3), "overflow": unsigned(2), "width": unsigned(6),
            "signed": unsigned(1), "relu": unsigned(1)}


def encode_stage(stage: FixedStage) -> dict[str, int]:
    """The run-time fields of ``stage`` (see :func:`stage_fields`)."""
    if not -64 <= stage.shift <= 63 or not 1 <= stage.width <= 63:
        raise ValueError(f"stage shift {stage.shift} / width {stage.width} do not fit the run-time fields")
    return {"shift": stage.shift, "rounding": ROUNDING.index(stage.rounding),
            "overflow": OVERFLOW.index(stage.overflow), "width": stage.width, "signed": int(stage.signed),
            "relu": int(stage.relu)}


def identity_fields(bits: int) -> dict[str, int]:
    """Run-time fields of a stage that leaves every ``bits``-bit signed value unchanged (an unused stage)."""
    return {"shift": 0, "rounding": 0, "overflow": OVERFLOW.index("SAT"), "width": bits, "signed": 1, "relu": 0}


def _mode_increment(mode: Value, q_odd, neg, rem_nonzero, above, tie) -> Value:
    """The increment for a run-time mode index (``ROUNDING`` order)."""
    table = [_increment(name, q_odd, neg, rem_nonzero, above, tie) for name in ROUNDING]
    inc = Const(0, 1)
    for index in reversed(range(len(table))):
        inc = Mux(mode == index, table[index], inc)
    return inc


def round_shift_var(m: Module, v: Value, shift: Value, mode: Value, bits: int, name: str) -> Signal:
    """``v / 2^shift`` rounded with run-time ``mode`` (index into ``ROUNDING``) and signed run-time ``shift``;
    the result is kept to ``bits`` signed bits (the compiler checks every value fits).

    A right shift by ``s >= w + 1`` (``w`` = bits of ``v``) rounds like one by ``w + 1``: ``q`` is 0 or -1 and
    only the sign of ``v`` and whether it is 0 matter, so the barrel shifter spans ``w + 2`` positions."""
    width = len(v)
    wide = width + 2
    v = sign_extend(v, wide)
    right = Signal(range(wide), name=f"{name}_right")           # min(shift, w + 1) when shift ≥ 0
    m.d.comb += right.eq(Mux(shift < 0, 0, Mux(shift > width + 1, width + 1, shift)))
    q = Signal(signed(wide), name=f"{name}_q")
    mask = Signal(unsigned(wide), name=f"{name}_mask")
    m.d.comb += [q.eq(v >> right), mask.eq((Const(1, wide + 1) << right)[:wide + 1] - 1)]
    rem = v.as_unsigned() & mask
    half = (mask + 1) >> 1
    dropping = right != 0
    inc = _mode_increment(mode, q[0], v[-1], rem != 0, dropping & (rem > half), dropping & (rem == half))
    out = Signal(signed(bits), name=name)
    left = Mux(shift < 0, -shift, 0)[:7]
    m.d.comb += out.eq(Mux(shift < 0, (v << left)[:bits].as_signed(), q + inc))
    return out


def fit_var(m: Module, q: Value, width: Value, is_signed: Value, overflow: Value, bits: int, name: str) -> Signal:
    """``q`` fitted into ``width`` bits (run time, 1 … ``bits``), signed or not, with overflow mode index
    ``overflow`` (``OVERFLOW`` order); the result is ``bits`` signed bits wide."""
    q = sign_extend(q, bits + 1)
    span = Signal(unsigned(bits + 1), name=f"{name}_span")        # 2^width
    hi = Signal(signed(bits + 2), name=f"{name}_hi")
    lo = Signal(signed(bits + 2), name=f"{name}_lo")
    m.d.comb += [span.eq((Const(1, bits + 2) << width)[:bits + 1]),
                 hi.eq(Mux(is_signed, (span >> 1) - 1, span - 1)),
                 lo.eq(Mux(is_signed, -(span >> 1), 0))]
    low = Signal(unsigned(bits + 1), name=f"{name}_low")
    m.d.comb += low.eq(q.as_unsigned()[:bits + 1] & (span - 1))
    sym_lo = Mux(is_signed, -hi, 0)
    over, under = q > hi, q < lo
    out = Signal(signed(bits), name=name)
    with m.Switch(overflow):
        with m.Case(OVERFLOW.index("WRAP")):
            m.d.comb += out.eq(Mux(low > hi, low - span, low))
        with m.Case(OVERFLOW.index("SAT")):
            m.d.comb += out.eq(Mux(over, hi, Mux(under, lo, q)))
        with m.Case(OVERFLOW.index("SAT_ZERO")):
            m.d.comb += out.eq(Mux(over | under, 0, q))
        with m.Case(OVERFLOW.index("SAT_SYM")):
            m.d.comb += out.eq(Mux(over, hi, Mux(q < sym_lo, sym_lo, q)))
    return out


def stage_var(m: Module, x: Value, bias: Value, fields, bits: int, name: str) -> Signal:
    """A run-time stage on ``x`` with ``bias`` (0 where the stage has none) and ``fields`` (a View of
    :func:`stage_fields`); every value is ``bits`` signed bits (the compiler checks that they fit)."""
    v = Signal(signed(bits + 1), name=f"{name}_v")
    m.d.comb += v.eq(x.as_signed() + bias.as_signed())
    relu = Signal(signed(bits + 1), name=f"{name}_relu")
    m.d.comb += relu.eq(Mux(fields.relu & (v < 0), 0, v))
    q = round_shift_var(m, relu, fields.shift, fields.rounding, bits + 1, f"{name}_round")
    return fit_var(m, q, fields.width, fields.signed, fields.overflow, bits, name)
