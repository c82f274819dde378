"""FPGA targets: the named devices ``hwgen estimate --target`` knows, their families and capacities.

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

    def capacity(self, metric: str) -> int:
        return getattr(self, metric)


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


def target(name: str) -> Target:
    """The :class:`Target` called ``name``; a ``ValueError`` listing the known ones otherwise."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown FPGA target {name!r}; known: {', '.join(TARGETS)}") from None
