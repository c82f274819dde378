"""Dataflow configuration, folding and cycle model as plain Python: validation names the field and range, the
config is hashable and holds no weights, widths come from worst-case type bounds, the closed-form cycle counts."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hwgen.arch.dataflow import (
    CodeType,
    DataflowConfig,
    LayerConfig,
    LayerFold,
    auto_fold,
    parse_fold,
)
from hwgen.arch.dataflow.cycles import fifo_depths, last_arrival, word_writes
from hwgen.errors import HwgenError

U4 = CodeType(4)


def layer(**fields) -> LayerConfig:
    base = {"mw": 8, "mh": 6, "pe": 2, "simd": 4, "in_type": U4, "weight_bits": 4, "thresholds": 15}
    return LayerConfig(**{**base, **fields})


@pytest.mark.parametrize("fields, message", [
    ({"pe": 4}, "pe must divide mh=6, got pe=4"),
    ({"simd": 3}, "simd must divide mw=8, got simd=3"),
    ({"pe": 0}, "pe must be an integer in 1..6, got 0"),
    ({"weight_bits": 17}, "weight_bits must be an integer in 1..16, got 17"),
    ({"thresholds": -1}, "thresholds must be an integer in 0..1023, got -1"),
    ({"bipolar": True}, "a bipolar \\(XNOR\\) layer needs bipolar inputs, got in_type=UINT4"),
])
def test_layer_validation_names_field_and_range(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        layer(**fields)


def test_chain_validation() -> None:
    first = layer()
    with pytest.raises(ValueError, match=r"layers\[1\].mw must equal layers\[0\]'s 6 output codes, got 8"):
        DataflowConfig((first, layer()))
    with pytest.raises(ValueError, match=r"layers\[1\].in_type must be layers\[0\]'s output type UINT4, got INT4"):
        DataflowConfig((first, layer(mw=6, simd=3, in_type=CodeType(4, True))))
    with pytest.raises(ValueError, match=r"layers\[0\] passes its accumulator through"):
        DataflowConfig((layer(thresholds=0), layer(mw=6, simd=3)))


def test_config_is_hashable_structure() -> None:
    cfg = DataflowConfig((layer(), layer(mw=6, simd=3, thresholds=0)))
    assert hash(cfg) == hash(DataflowConfig((layer(), layer(mw=6, simd=3, thresholds=0))))
    assert cfg != replace(cfg, layers=(layer(pe=3), cfg.layers[1]))


def test_widths_from_worst_case_bounds() -> None:
    lay = layer()                                          # UINT4 inputs, 4-bit weights, MW = 8
    assert lay.operand_bound == 15 and lay.acc_bound == 8 * 15 * 8 and lay.acc_bits == 11
    assert lay.threshold_bits == 11 and lay.out_type == CodeType(4)
    assert layer(base=-8).out_type == CodeType(4, True)
    assert layer(thresholds=1, base=-1, step=2).out_type == CodeType(1, bipolar=True)
    xnor = layer(in_type=CodeType(1, bipolar=True), bipolar=True, weight_bits=1)
    assert xnor.acc_bound == 8 and xnor.weight_shape.width == 1
    assert (lay.sf, lay.nf, lay.cycles) == (2, 3, 6)


@pytest.mark.parametrize("code_type, values", [
    (CodeType(3, True), [-4, -1, 0, 3]), (CodeType(2), [0, 1, 3]), (CodeType(1, bipolar=True), [-1, 1]),
])
def test_code_types_round_trip(code_type: CodeType, values: list[int]) -> None:
    raw = code_type.encode(np.array(values))
    assert raw.min() >= 0 and raw.max() < 1 << code_type.bits
    assert code_type.decode(raw).tolist() == values
    with pytest.raises(ValueError, match="outside"):
        code_type.encode(np.array([code_type.hi + 1]))


def test_cycle_model_closed_forms() -> None:
    """One layer: SF − 1 input cycles, 4 pipeline cycles, then NF − 1 more passes of SF cycles."""
    cfg = DataflowConfig((layer(),))
    assert cfg.predicted_ii_cycles == 6
    assert cfg.predicted_latency_cycles == (2 - 1) + 4 + (3 - 1) * 2
    assert cfg.fifo_depths == ()
    lay = layer(pe=6, simd=1)                              # SF = 8, NF = 1
    assert last_arrival(10, lay, 1, 1) == 10 + 2           # no converter: written when valid, FIFO latency 2
    wide = layer(mh=12, pe=4, simd=8)                      # SF = 1, NF = 3
    assert word_writes(10, wide, 1) == [10, 11, 12]        # the producer never waits on the downsizer
    assert last_arrival(10, wide, 1, 4) == 10 + 2 + 3 * 4  # downsizer slower than the producer: 4 cycles a word
    assert word_writes(10, wide, 3) == [10 + 2 * 1 + 1]    # upsizer: one cycle after the group's last beat
    assert last_arrival(10, wide, 3, 1) == 10 + 2 * 1 + 1 + 2
    slow = layer(mh=12, pe=4, simd=2)                      # SF = 4, NF = 3: words 4 cycles apart, downsizer by 2
    assert last_arrival(10, slow, 1, 2) == 10 + 2 * 4 + 2 + 2


def test_fifo_depths_hold_one_vector_plus_the_longest_wait() -> None:
    """depth = V + max(0, 2 + (V − 1)·|SF·up − down| − II + 1) words, at least 3."""
    a = layer(mw=8, mh=12, pe=4, simd=8)                   # SF 1, NF 3 → V = 3 words of 4 codes
    b = layer(mw=12, mh=2, pe=1, simd=4, in_type=a.out_type, thresholds=0)    # SF 3, NF 2: II = 6
    assert fifo_depths(DataflowConfig((a, b))) == (3,)     # no converter: words wait 2 cycles
    c = replace(b, mh=4, pe=4, simd=1)                     # downsizer 4 → 1, SF 12, NF 1: II = 12
    assert fifo_depths(DataflowConfig((a, c))) == (3,)    # waits up to 2 + 2·3 < II
    d = layer(mw=8, mh=32, pe=4, simd=8)                   # SF 1, NF 8 → V = 8 words, II 8
    e = layer(mw=32, mh=1, pe=1, simd=4, in_type=d.out_type, thresholds=0)    # SF 8, NF 1, no converter
    assert fifo_depths(DataflowConfig((d, e))) == (8,)    # a whole vector: written at once, read over II
    unrolled = layer(mw=8, mh=4, pe=4, simd=8)             # one cycle per vector: one word, written every cycle
    last = layer(mw=4, mh=2, pe=2, simd=4, in_type=unrolled.out_type, thresholds=0)
    assert fifo_depths(DataflowConfig((unrolled, last))) == (3,)   # 1 + (2 − 1 + 1)


def test_auto_fold_and_parse_fold() -> None:
    layers = [layer(pe=1, simd=1), layer(mw=6, mh=4, pe=1, simd=1, thresholds=0)]
    folds = auto_fold(layers, 6)
    assert all(replace(lay, pe=f.pe, simd=f.simd).cycles <= 6 for lay, f in zip(layers, folds))
    assert auto_fold(layers, 10**6) == (LayerFold(1, 1), LayerFold(1, 1))
    with pytest.raises(HwgenError, match="'a' \\(8×6\\) cannot run in 2 cycles per inference with at most 2 MAC "
                                         "lanes; the best achievable is 24 cycles"):
        auto_fold(layers, 2, ["a", "b"], max_lanes=2)
    assert parse_fold({"b": {"pe": 2}, "a": {"simd": 4}}, ["a", "b"]) == (LayerFold(1, 4), LayerFold(2, 1))
    with pytest.raises(HwgenError, match="fold: unknown layers 'c'; no entry for 'b'"):
        parse_fold({"a": {}, "c": {}}, ["a", "b"])
    with pytest.raises(HwgenError, match="fold entry for 'a': pe must be an integer"):
        parse_fold([{"pe": 0}, {}], ["a", "b"])
