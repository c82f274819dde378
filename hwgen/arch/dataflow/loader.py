"""The load-row mapping of the dataflow top: which ``(target, bank, addr, lane, data)`` row writes which element.

A load row (``LOAD`` of the systolic top, shared host protocol) carries ``target`` (3 bits), ``bank`` (6),
``addr`` (16), ``lane`` (6) and ``data`` (32). The dataflow top uses:

========================  ======  =====================================================================
target                    bank    element
========================  ======  =====================================================================
:data:`WEIGHTS` (2)       layer   weight ``W[k, n]``: memory row ``p`` (PE), word ``nf · SF + sf``, lane ``s``
:data:`THRESHOLDS` (3)    layer   threshold ``T[n, j]``: row ``p``, word ``nf`` (0 if per-tensor), lane ``j``;
                                  lane ``L`` holds the channel's negate flag (0/1)
:data:`PARAMETERS` (5)    layer   ``addr`` 0: the layer's input zero point (two's complement)
:data:`BIASES` (6)        layer   bias of fixed-point stage ``biased_stages[j]`` for channel ``n``: row ``p``,
                                  word ``nf``, lane ``j`` (layers with fixed-point stages)
========================  ======  =====================================================================

with ``n = nf · PE + p`` and ``k = sf · SIMD + s``. A memory element (row, word, lane) is numbered
``index = row << (word_bits + lane_bits) | word << lane_bits | lane`` (each field as wide as its count needs, at
least one bit) and the row carries ``addr = index >> 6``, ``lane = index & 63`` (22 index bits in all).
Values are written as their two's-complement low bits (bipolar weights: 1 ↔ +1).
"""
from __future__ import annotations

from amaranth import Cat, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..systolic.top import BIASES, THRESHOLDS, WEIGHTS
from .config import INDEX_BITS, bits_for

PARAMETERS = 5
LANE_BITS = 6


def element_fields(memory: tuple[int, int, int]) -> tuple[int, int, int]:
    """(row, word, lane) field widths of a memory family ``(rows, words, lanes)``."""
    rows, words, lanes = memory
    return bits_for(rows), bits_for(words), bits_for(lanes)


def element_row(target: int, bank: int, memory: tuple[int, int, int], row: int, word: int, lane: int,
                value: int) -> tuple[int, int, int, int, int]:
    """The load row writing ``value`` into element (row, word, lane) of memory family ``memory``."""
    _, word_bits, lane_bits = element_fields(memory)
    index = (row << (word_bits + lane_bits)) | (word << lane_bits) | lane
    return target, bank, index >> LANE_BITS, index & ((1 << LANE_BITS) - 1), int(value) & 0xFFFFFFFF


def write_signature(memory: tuple[int, int, int], width: int) -> wiring.Signature:
    """One element write into a memory family: ``en``, memory ``row``, ``word``, ``lane``, ``data`` (raw bits)."""
    row_bits, word_bits, lane_bits = element_fields(memory)
    return wiring.Signature({"en": Out(1), "row": Out(unsigned(row_bits)), "word": Out(unsigned(word_bits)),
                             "lane": Out(unsigned(lane_bits)), "data": Out(unsigned(width))})


def decode_index(addr: Value, lane: Value, memory: tuple[int, int, int]) -> tuple[Value, Value, Value]:
    """(row, word, lane) fields of the element a load row's ``addr``/``lane`` name."""
    row_bits, word_bits, lane_bits = element_fields(memory)
    index = Cat(lane, addr)[:INDEX_BITS]
    return (index[word_bits + lane_bits:word_bits + lane_bits + row_bits], index[lane_bits:lane_bits + word_bits],
            index[:lane_bits])


__all__ = ["BIASES", "PARAMETERS", "THRESHOLDS", "WEIGHTS", "decode_index", "element_row", "write_signature"]
