"""Speed of the analytic FPGA and ASIC estimates (resources or area + fmax): design points per second on one core.

::

    python benchmarks/estimate_speed.py

Goal: ≥ 10,000 design points/s per core. A design point is one configuration estimated on one family (features,
mapping, resources and the fmax model), as a design-space sweep evaluates it; on an ASIC library (``sky130``,
``osu018``): area, cells, fmax and leakage (:func:`hwgen.estimate.asic.analytic`).
"""
from __future__ import annotations

import itertools
import time

from hwgen.arch.dataflow.config import CodeType, DataflowConfig, LayerConfig
from hwgen.arch.systolic.config import SystolicConfig
from hwgen.estimate import asic, fpga
from hwgen.estimate.targets import ASIC_TARGETS


def systolic_space() -> list[SystolicConfig]:
    return [SystolicConfig(rows=r, cols=c, dataflow=d, a_bits=b, w_bits=b)
            for r, c, d, b in itertools.product((2, 4, 8, 16, 32), (2, 4, 8, 16, 32), ("os", "ws"), (2, 4, 8))]


def dataflow_space() -> list[DataflowConfig]:
    space = []
    for pe, simd, bits in itertools.product((1, 2, 4, 8, 16), (1, 2, 4, 8, 16), (2, 4, 8)):
        first = LayerConfig(mw=64, mh=32, pe=min(pe, 32), simd=simd, in_type=CodeType(bits), weight_bits=bits,
                            thresholds=(1 << bits) - 1)
        last = LayerConfig(mw=32, mh=16, pe=pe, simd=simd, in_type=first.out_type, weight_bits=bits)
        space.append(DataflowConfig((first, last)))
    return space


def rate(configs, family: str) -> float:
    """Points per CPU second (process time: the machine may be shared); fresh configurations, no cache hits."""
    fpga.components.cache_clear()
    start = time.process_time()
    if family in ASIC_TARGETS:
        for config in configs:
            asic.analytic(config, ASIC_TARGETS[family])
    else:
        for config in configs:
            fpga.estimate_resources(config, family)
            fpga.estimate_fmax(config, family)
    return len(configs) / (time.process_time() - start)


def main() -> None:
    spaces = {"systolic": systolic_space(), "dataflow": dataflow_space()}
    rate([SystolicConfig(rows=3, cols=3), dataflow_space()[0]], "ice40")        # imports, first-call caches
    print("| space | points | family | points/s | goal |")
    print("| --- | ---: | --- | ---: | --- |")
    for name, configs in spaces.items():
        for family in ("ice40", "ecp5", "xc7", "sky130", "osu018"):
            r = rate(configs, family)
            print(f"| {name} | {len(configs)} | {family} | {r:,.0f} | ≥ 10,000 {'✓' if r >= 10000 else '✗'} |")


if __name__ == "__main__":
    main()
