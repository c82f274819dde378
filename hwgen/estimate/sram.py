"""SRAM macro model: area, leakage and access energy of a memory the ASIC flow black-boxes (``hwgen_sram``).

Which memories: synchronously read memories of at least :data:`SRAM_MIN_BITS` bits and :data:`SRAM_MIN_DEPTH`
words (``flows/asic_sram_map.v.j2`` applies the same rule in Yosys). Below that, the periphery of a macro (decoders,
sense amplifiers, control: ~97,000 µm² in sky130) costs more than flip-flops (~25–30 µm² per bit in
sky130_fd_sc_hd including the read multiplexer), so small memories stay in standard cells.

**Area** — the published OpenRAM macros of the sky130 PDK (``libs.ref/sky130_sram_macros``, LEF ``SIZE``), both
one read-write + one read port:

================================================  =============  ==========  ==========
macro                                             LEF SIZE (µm)  bits        area (µm²)
================================================  =============  ==========  ==========
``sky130_sram_1kbyte_1rw1r_32x256_8``             479.78×397.5   8,192       190,713
``sky130_sram_2kbyte_1rw1r_32x512_8``             683.1×416.54   16,384      284,539
================================================  =============  ==========  ==========

The line through them gives :data:`SKY130_PERIPHERY_UM2` + :data:`SKY130_BIT_UM2` × bits per macro. Memories
above :data:`MAX_MACRO_BITS` are banked into macros of that size (OpenRAM's largest sky130 configurations).
OSU 0.18 µm has no published OpenRAM macros: areas scale by (180/130)² (the drawn-feature rule for a memory
array). hwgen memories have one write and one read port, the 1rw1r macros' configuration.

**Timing** (for OpenSTA, which times paths into and out of the macro through a Liberty hwgen writes per design):
clock-to-output :func:`access_ns` = 0.8 ns + 0.2 ns × log2(depth) (decoder depth; 2.4 ns for the 256-word
macros), input setup :data:`SETUP_NS`, both × 180/130 on OSU 0.18 µm — stated assumptions of the model.

**Energy per access** (analytic bitline model, CACTI-style): every column's bitline — ``depth`` cells of
:data:`BITLINE_FF_PER_CELL` fF drain and wire capacitance — swings the full rail once per access, plus the
decoder / word line / sense periphery (:data:`PERIPHERY_PJ` per access); capacitances scale by 180/130 for OSU
0.18 µm. **Leakage**: :data:`LEAK_NW_PER_KBIT` per Kbit (sky130 6T cell arrays at 25 °C are in the tens of pW per
bit; a stated assumption, not a measured figure).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log2

SRAM_MIN_BITS = 4096
SRAM_MIN_DEPTH = 64
MAX_MACRO_BITS = 32768
SKY130_MACROS = {"sky130_sram_1kbyte_1rw1r_32x256_8": (8192, 479.78 * 397.5),
                 "sky130_sram_2kbyte_1rw1r_32x512_8": (16384, 683.1 * 416.54)}
_b1, _a1 = SKY130_MACROS["sky130_sram_1kbyte_1rw1r_32x256_8"]
_b2, _a2 = SKY130_MACROS["sky130_sram_2kbyte_1rw1r_32x512_8"]
SKY130_BIT_UM2 = (_a2 - _a1) / (_b2 - _b1)                   # ≈ 11.45 µm² per bit
SKY130_PERIPHERY_UM2 = _a1 - SKY130_BIT_UM2 * _b1           # ≈ 96,887 µm² per macro
BITLINE_FF_PER_CELL = 0.5
PERIPHERY_PJ = 2.0
LEAK_NW_PER_KBIT = 30.0
SCALE = {"sky130": 1.0, "osu018": 180 / 130}                # linear feature-size ratio to sky130
SETUP_NS = 0.3


def access_ns(depth: int, library: str) -> float:
    """Clock-to-output time (ns) of a ``depth``-word macro on ``library`` (see the module docstring)."""
    return round((0.8 + 0.2 * log2(max(2, depth))) * SCALE[library], 3)


def is_macro(depth: int, width: int) -> bool:
    """Whether a synchronously read ``depth × width`` memory becomes an SRAM macro (else flip-flops)."""
    return depth * width >= SRAM_MIN_BITS and depth >= SRAM_MIN_DEPTH


@dataclass(frozen=True)
class Macro:
    """One black-boxed memory: its size and the model's figures on one library."""

    depth: int
    width: int
    banks: int
    area_um2: float
    leakage_mw: float
    access_pj: float          # one read or write of one word


def macro(depth: int, width: int, library: str, voltage: float = 1.8) -> Macro:
    """The model's figures for a ``depth × width`` memory on ``library`` (``sky130`` / ``osu018``)."""
    bits = depth * width
    banks = max(1, ceil(bits / MAX_MACRO_BITS))
    scale = SCALE[library]
    area = (banks * SKY130_PERIPHERY_UM2 + SKY130_BIT_UM2 * bits) * scale ** 2
    bank_depth = ceil(depth / banks)
    access = (width * bank_depth * BITLINE_FF_PER_CELL * 1e-3 * voltage ** 2 + PERIPHERY_PJ) * scale
    leakage = LEAK_NW_PER_KBIT * bits / 1024 * 1e-6
    return Macro(depth, width, banks, round(area, 1), leakage, access)
