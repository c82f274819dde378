"""Stream beats as integers: ``lanes`` values of ``bits`` bits each, lane ``j`` at bits ``[j·bits, (j+1)·bits)``.

The layout of every multi-value payload hwgen's hardware streams (``amaranth.lib.data.ArrayLayout``), packed and
unpacked in bulk through numpy bit arrays, so a million beats take well under a second.
"""
from __future__ import annotations

import numpy as np


def pack_lanes(values: np.ndarray, bits: int) -> list[int]:
    """One integer per row of ``values`` (beats × lanes); negative values keep their low ``bits`` bits."""
    values = np.asarray(values, np.int64)
    beats, lanes = values.shape
    bit_planes = (values[:, :, None] >> np.arange(bits)) & 1                  # beats × lanes × bits
    packed = np.packbits(bit_planes.reshape(beats, lanes * bits).astype(np.uint8), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_lanes(beats: list[int], lanes: int, bits: int, signed: bool) -> np.ndarray:
    """The inverse of :func:`pack_lanes`: ``len(beats) × lanes`` int64 values (sign-extended if ``signed``)."""
    width = -(-lanes * bits // 8)
    raw = np.frombuffer(b"".join(beat.to_bytes(width, "little") for beat in beats), np.uint8)
    bit_planes = np.unpackbits(raw.reshape(len(beats), width), axis=1, bitorder="little")[:, :lanes * bits]
    values = (bit_planes.reshape(len(beats), lanes, bits).astype(np.int64) << np.arange(bits)).sum(axis=2)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values
