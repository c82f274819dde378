"""Integer data types of the IR (FINN DataType style): bounds are exact Python ints."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IntType:
    """A ``bits``-wide two's-complement (``signed``) or unsigned integer, optionally narrowed to ``[lo, hi]``."""

    bits: int
    signed: bool
    narrow_lo: int | None = None
    narrow_hi: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 64:
            raise ValueError(f"bits must be in 1..64, got {self.bits}")

    @property
    def min(self) -> int:
        if self.narrow_lo is not None:
            return self.narrow_lo
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        if self.narrow_hi is not None:
            return self.narrow_hi
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        base = f"{'INT' if self.signed else 'UINT'}{self.bits}"
        full = IntType(self.bits, self.signed)
        return base if (self.min, self.max) == (full.min, full.max) else f"{base}[{self.min},{self.max}]"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class BipolarType:
    """Values in {-1, +1}, one bit in hardware (FINN's BIPOLAR): XNOR-popcount arithmetic."""

    bits: int = 1
    signed: bool = True

    min = -1
    max = 1

    @property
    def name(self) -> str:
        return "BIPOLAR"

    def __str__(self) -> str:
        return self.name


DType = IntType | BipolarType


def int_range(lo: int, hi: int) -> IntType:
    """The narrowest IntType holding every integer in ``[lo, hi]`` (accumulator widths from worst-case bounds)."""
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    if lo >= 0:
        return IntType(max(1, hi.bit_length()), False)
    bits = max((-lo - 1).bit_length(), hi.bit_length()) + 1
    return IntType(bits, True)


def quant_type(bits: int, signed: bool, narrow: bool) -> DType:
    """The type of a QONNX ``Quant`` output with these attributes (qonnx ``min_int``/``max_int``)."""
    if signed and bits == 1:
        return BipolarType()
    full = IntType(bits, signed)
    if not narrow:
        return full
    return IntType(bits, signed, full.min + 1 if signed else 0, full.max if signed else full.max - 1)
