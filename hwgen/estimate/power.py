"""Power and energy: gate-level power from SAIF toggles and Liberty data, per-operation energies, energy/inference.

Gate level (the reference, :func:`gate_level`)::

    block RTL ─▶ Yosys onto OSU 0.18 µm (hwgen.estimate.asic) ─▶ netlist.v + cell models from the Liberty
              ─▶ Verilator --binary --timing --trace-saif (flows/power_tb.v.j2: random stimulus) ─▶ SAIF
              ─▶ Σ over cells: toggles(output) × internal energy(load, slew) + toggles(net) × ½·C·V²
                 + toggles(input pins with internal power, e.g. CLK) × their passive energy       (Python)

Energies are in pJ (the Liberty's pF·V²). The internal-energy tables are read at the net's load (Σ fan-out pin
capacitance + :data:`WIRE_PF_PER_FANOUT` per fan-out: pre-layout) and an input slew of :data:`SLEW_NS`.

Per-operation energies (:func:`characterize`, stored in ``energy.json`` with provenance): each block of
``flows/power_blocks.v.j2`` runs :data:`CHARACTERIZE_CYCLES` cycles of random operands at gate level;
per cycle and per flip-flop clock energy from ``reg32`` with held data, per data-bit toggle from ``reg32`` with random
data, a clock gate's energy per cycle and per enabled cycle from ``greg32`` (enable low / high), a signed w×w MAC
(operand and accumulator registers included, their clock energy excluded) from ``mac_w{2,4,8}``, scratchpad
write/read per bit from ``mem16x16``, a requantizer comparison per bit from ``requant15``. sky130 figures are
OSU 0.18 µm's × :data:`SKY130_ENERGY_SCALE` = 130/180: switched capacitance per gate scales with the drawn feature length at the same 1.8 V supply (E = C·V²; the constant-voltage scaling
rule), a stated assumption since the sky130 package has no power data.

Clock gating (synthesis inserts integrated clock gates, :mod:`hwgen.estimate.asic`): the gate-level runs count
the clock edges each flip-flop actually sees (gated clock nets toggle only on enabled cycles) and the gates' own
cells; the per-operation model charges ``flop_clock`` per flip-flop clock edge, ``icg_cycle`` per gate per cycle and
``icg_enable`` per enabled gate-cycle (:func:`clock_energy`).

Energy per inference (:func:`energy_per_inference`): operation counts of one inference (:class:`Workload`) ×
those energies: ungated flip-flops clocked every cycle, flip-flop memory words behind clock gates clocked only when
written, registers behind clock gates (:class:`RegisterGates`) clocked only on the cycles the schedule enables them;
SRAM macro accesses (:mod:`hwgen.estimate.sram`) and leakage over the inference's time.

Which registers synthesis gates: Yosys ``clockgate`` gates a group of at least
:data:`~hwgen.estimate.asic.CLOCK_GATE_MIN_FLOPS` flip-flops sharing a clock enable, and only flip-flops without
a synchronous reset (``$_DFFE_``: a reset that overrides the enable would be swallowed by the gate). Amaranth's
``sync`` domain resets every signal that is not ``reset_less``, so the controllers' counters and walkers, the PEs'
accumulators and the requant lanes' pipeline stay ungated; what is gated, besides memory words, is the reset-less
registers loaded under an enable (:func:`systolic_register_gates`, :func:`dataflow_register_gates`). Read off the
gated OSU 0.18 µm netlists of the held-out systolic design 0 (OS 3 × 2: 246 gated register flip-flops = 2 rows ×
2 columns × 21-bit shadows + 3 × 42-bit output-bank and 3 × 12-bit activation-bank read registers) and of the
dataflow designs (every flip-flop memory's read register: weights, input buffer, thresholds, FIFO).
"""
from __future__ import annotations

import datetime
import json
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from math import lcm
from pathlib import Path

import numpy as np

from ..templates import render

log = logging.getLogger(__name__)

SLEW_NS = 0.1
WIRE_PF_PER_FANOUT = 0.002
VOLTAGE = 1.8
SKY130_ENERGY_SCALE = 130 / 180
CHARACTERIZE_CYCLES = 2000
MAC_WIDTHS = (2, 4, 8)
ENERGY_FILE = Path(__file__).with_name("energy.json")
CLOCK_PERIOD_NS = 10.0


# ------------------------------------------------------------------------------------------------ Liberty
@dataclass
class CellPower:
    """What the power computation needs of one Liberty cell (capacitance pF, energy pJ, leakage nW)."""

    name: str
    inputs: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)              # pin → function (Liberty syntax)
    arcs: dict[str, list[tuple]] = field(default_factory=dict)        # output pin → [(load index, slew index, E)]
    passive: dict[str, tuple] = field(default_factory=dict)           # input pin → (slew index, E per toggle)
    leakage_nw: float = 0.0
    ff: dict[str, str] | None = None                                   # clocked_on, next_state, clear, preset
    latch: dict[str, str] | None = None                                # enable, data_in, state


def _table(group) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    values = np.asarray(group.get_array("values"), float)
    index_1 = np.asarray(group.get_array("index_1"), float).ravel()
    index_2 = group.get("index_2")
    return index_1, (np.asarray(group.get_array("index_2"), float).ravel() if index_2 is not None else None), values


def _pair(power_group):
    """(rise_power, fall_power) groups of an ``internal_power`` group, or None if either is missing."""
    rise, fall = power_group.get_groups("rise_power"), power_group.get_groups("fall_power")
    return (rise[0], fall[0]) if rise and fall else None


def _unquote(value) -> str:
    return str(value).strip().strip('"')


@lru_cache(maxsize=2)
def load_library(liberty: Path) -> dict[str, CellPower]:
    """Cells of a Liberty file with their pin capacitances, internal-energy tables, leakage and functions."""
    from liberty.parser import parse_liberty

    lib = parse_liberty(Path(liberty).read_text())
    cells = {}
    for group in lib.get_groups("cell"):
        cell = CellPower(_unquote(group.args[0]), leakage_nw=float(group.get("cell_leakage_power") or 0.0))
        ff = group.get_groups("ff")
        if ff:
            cell.ff = {k: _unquote(ff[0].get(k)) for k in ("clocked_on", "next_state", "clear", "preset")
                       if ff[0].get(k) is not None}
            cell.ff["state"] = _unquote(ff[0].args[0])
        latch = group.get_groups("latch")
        if latch:
            cell.latch = {k: _unquote(latch[0].get(k)) for k in ("enable", "data_in")}
            cell.latch["state"] = _unquote(latch[0].args[0])
        for pin in group.get_groups("pin"):
            name = _unquote(pin.args[0])
            direction = _unquote(pin.get("direction"))
            powers = pin.get_groups("internal_power")
            if direction == "input":
                cell.inputs[name] = float(pin.get("capacitance") or 0.0)
                for p in powers:
                    pair = _pair(p)
                    if pair is not None:
                        i1, _, rv = _table(pair[0])
                        _, _, fv = _table(pair[1])
                        cell.passive[name] = (i1, (rv.ravel() + fv.ravel()) / 2)
            elif direction == "output":
                cell.outputs[name] = _unquote(pin.get("function") or "")
                arcs = []
                for p in powers:
                    pair = _pair(p)
                    if pair is None:
                        continue
                    i1, i2, rv = _table(pair[0])
                    _, _, fv = _table(pair[1])
                    arcs.append((i1, i2, (rv + fv) / 2))
                cell.arcs[name] = arcs
        cells[cell.name] = cell
    return cells


def _interp2(i1: np.ndarray, i2: np.ndarray | None, values: np.ndarray, load: float, slew: float) -> float:
    values = values.reshape(len(i1), -1)
    if i2 is None or values.shape[1] == 1:
        return float(np.interp(load, i1, values[:, 0]))
    column = np.array([np.interp(load, i1, values[:, j]) for j in range(values.shape[1])])
    return float(np.interp(slew, i2, column))


def output_energy(cell: CellPower, pin: str, load_pf: float) -> float:
    """Internal energy (pJ) of one transition of ``cell``'s output ``pin`` driving ``load_pf`` (mean over the
    related input pins and over rise / fall)."""
    arcs = cell.arcs.get(pin) or []
    if not arcs:
        return 0.0
    return sum(_interp2(i1, i2, v, load_pf, SLEW_NS) for i1, i2, v in arcs) / len(arcs)


def input_energy(cell: CellPower, pin: str) -> float:
    """Passive internal energy (pJ) of one transition on input ``pin`` (e.g. a flip-flop's clock)."""
    if pin not in cell.passive:
        return 0.0
    i1, values = cell.passive[pin]
    return float(np.interp(SLEW_NS, i1, values))


# ------------------------------------------------------------------------------------------------ cell models
def _verilog_function(function: str) -> str:
    """A Liberty function (``!``, a name's postfix ``'``, ``&``/``*``/space, ``|``/``+``, ``^``) as a Verilog
    expression."""
    text = function.replace("*", "&").replace("+", "|")
    text = re.sub(r"(\w+)'", r"!\1", text)
    text = re.sub(r"([\w)])\s+(?=[\w(!])", r"\1 & ", text)
    return text


def cell_models(cells: dict[str, CellPower]) -> str:
    """Verilog behavioural models of every cell (combinational functions, edge-triggered flip-flops and
    level-sensitive latches: the OSU clock gate's) for simulating a mapped netlist in Verilator."""
    out = ["// generated by hwgen.estimate.power from the Liberty", "/* verilator lint_off UNUSEDSIGNAL */"]
    for cell in cells.values():
        if cell.ff is None and cell.latch is None and not all(cell.outputs.values()):
            continue                                   # tristates: not used by the mapped netlists
        ports = [f"input {p}" for p in cell.inputs] + [f"output {p}" for p in cell.outputs]
        body = []
        if cell.latch is not None:
            state, enable = cell.latch["state"], _verilog_function(cell.latch["enable"])
            body.append(f"  reg {state} = 1'b0;")
            body.append(f"  always @* if ({enable}) {state} = {_verilog_function(cell.latch['data_in'])};")
            for pin, function in cell.outputs.items():
                body.append(f"  assign {pin} = {_verilog_function(function) if function else state};")
            out.append(f"module {cell.name}({', '.join(ports)});\n" + "\n".join(body) + "\nendmodule")
            continue
        if cell.ff is not None:
            state = cell.ff["state"]
            body.append(f"  reg {state} = 1'b0;")
            clock = cell.ff["clocked_on"].strip("()")
            edge = f"negedge {clock[1:]}" if clock.startswith("!") else f"posedge {clock}"
            body.append(f"  always @({edge}) {state} <= {_verilog_function(cell.ff['next_state'])};")
        for pin, function in cell.outputs.items():
            expr = _verilog_function(function) if cell.ff is None or function else cell.ff["state"]
            body.append(f"  assign {pin} = {expr};")
        out.append(f"module {cell.name}({', '.join(ports)});\n" + "\n".join(body) + "\nendmodule")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------ netlist / SAIF
_INSTANCE = re.compile(r"^\s*(\w+)\s+(\S+)\s*\((.*?)\);", re.DOTALL | re.MULTILINE)
_PORT = re.compile(r"\.(\w+)\(([^()]*)\)")


def _net(name: str) -> str:
    """A netlist net reference as the SAIF names it: escaped identifiers lose their backslash and space."""
    return name.strip().replace(" ", "").replace("\\", "")


def parse_netlist(text: str, cells: dict[str, CellPower]) -> list[tuple[str, str, dict[str, str]]]:
    """(cell type, instance, {pin: net}) of every instance of a known cell in a flat ``write_verilog`` netlist."""
    out = []
    for cell, name, ports in _INSTANCE.findall(text):
        if cell in cells:
            out.append((cell, name, {pin: _net(net) for pin, net in _PORT.findall(ports)}))
    return out


def _aliases(text: str) -> dict[str, str]:
    """Bit-level ``assign a = b;`` aliases of a netlist (a → b)."""
    out = {}
    for lhs, rhs in re.findall(r"^\s*assign\s+(.+?)\s*=\s*(.+?);", text, re.MULTILINE):
        ls, rs = _bits(lhs), _bits(rhs)
        if ls and rs and len(ls) == len(rs):
            out.update(zip(map(_net, ls), map(_net, rs)))
    return out


def _bits(ref: str) -> list[str]:
    ref = ref.strip()
    m = re.fullmatch(r"(\S+?)\s*\[(\d+):(\d+)\]", ref)
    if m:
        hi, lo = int(m.group(2)), int(m.group(3))
        return [f"{m.group(1)}[{i}]" for i in range(hi, lo - 1, -1)]
    if re.fullmatch(r"[\w$\\.]+(\[\d+\])?", ref):
        return [ref]
    return []


def parse_saif(text: str) -> tuple[float, dict[str, dict[str, int]]]:
    """(duration in the SAIF's time unit, {instance path: {net: toggle count}}) of a Verilator SAIF file."""
    duration = float(re.search(r"\(DURATION\s+([\d.]+)\)", text).group(1))
    scopes: dict[str, dict[str, int]] = {}
    stack: list[str] = []
    depth_of: list[int] = []
    depth = 0
    for line in text.splitlines():
        stripped = line.strip()
        m = re.match(r"\(INSTANCE\s+(\S+)", stripped)
        if m:
            stack.append(m.group(1))
            depth_of.append(depth)
        m = re.match(r"\((\S+)\s+\(T0.*\(TC\s+(\d+)\)", stripped)
        if m and stack:
            net = m.group(1).replace("\\", "")
            scopes.setdefault("/".join(stack), {})[net] = int(m.group(2))
        depth += stripped.count("(") - stripped.count(")")
        while depth_of and depth <= depth_of[-1]:
            stack.pop()
            depth_of.pop()
    return duration, scopes


@dataclass(frozen=True)
class GatePower:
    """Energy of one gate-level run of one block (pJ), split by where it goes."""

    internal_pj: float         # cells' internal energy at output transitions
    passive_pj: float          # input pins' internal energy (flip-flop clock and data pins)
    switching_pj: float        # ½·C·V² of every net transition
    leakage_nw: float
    cycles: int
    flops: int
    data_toggles: int          # flip-flop output transitions
    clock_gates: int = 0       # gated clock nets (one per integrated clock gate)
    gated_flops: int = 0       # flip-flops clocked by them
    gated_clock_cycles: float = 0.0    # Σ over the gated clock nets of their rising edges (enabled gate-cycles)
    flop_clock_cycles: float = 0.0     # Σ over flip-flops of the rising edges at their clock pins

    @property
    def dynamic_pj(self) -> float:
        return self.internal_pj + self.passive_pj + self.switching_pj


def netlist_energy(netlist: str, toggles: dict[str, int], cells: dict[str, CellPower], cycles: int,
                   voltage: float = VOLTAGE, root_clock: str = "clk") -> GatePower:
    """Energy of a netlist run from its nets' toggle counts (see the module docstring), and its clock accounting:
    flip-flops whose clock pin is not on ``root_clock`` are on a gated clock (one net per clock gate)."""
    instances = parse_netlist(netlist, cells)
    aliases = _aliases(netlist)

    def canonical(net: str) -> str:
        seen = 0
        while net in aliases and seen < 8:
            net, seen = aliases[net], seen + 1
        return net

    def count(net: str) -> int:
        for name in (net, canonical(net)):
            if name in toggles:
                return toggles[name]
        return 0

    load: dict[str, float] = {}
    for cell, _, pins in instances:
        for pin, net in pins.items():
            if pin in cells[cell].inputs:
                key = canonical(net)
                load[key] = load.get(key, 0.0) + cells[cell].inputs[pin] + WIRE_PF_PER_FANOUT
    internal = passive = 0.0
    flops = data_toggles = 0
    leakage = 0.0
    gated: dict[str, int] = {}
    flop_clock_cycles = 0.0
    for cell, _, pins in instances:
        lib = cells[cell]
        if lib.ff is not None:
            clock = canonical(pins.get(lib.ff["clocked_on"].strip("()!"), root_clock))
            flop_clock_cycles += count(clock) / 2
            if clock != root_clock:
                gated[clock] = gated.get(clock, 0) + 1
        leakage += lib.leakage_nw
        for pin, net in pins.items():
            if pin in lib.outputs:
                tc = count(net)
                internal += tc * output_energy(lib, pin, load.get(canonical(net), 0.0))
                if lib.ff is not None:
                    data_toggles += tc
            elif pin in lib.passive:
                passive += count(net) * input_energy(lib, pin)
        flops += lib.ff is not None
    switching = sum(0.5 * c * voltage ** 2 * count(net) for net, c in load.items())
    return GatePower(internal, passive, switching, leakage, cycles, flops, data_toggles, len(gated),
                     sum(gated.values()), sum(count(net) / 2 for net in gated), flop_clock_cycles)


# ------------------------------------------------------------------------------------------------ gate-level runs
@dataclass(frozen=True)
class Port:
    name: str
    bits: int
    mode: str = "random"            # "random": new value every cycle; "hold": one random value for the run;
                                    # "low" / "high": all zeros / all ones for the run

    @property
    def start(self) -> str:
        """The port's value at the start of the run."""
        if self.mode in ("low", "high"):
            return f"{{{self.bits}{{1'b{int(self.mode == 'high')}}}}}"
        return self.random

    @property
    def random(self) -> str:
        words = -(-self.bits // 32)
        return "{" + ", ".join(["$urandom"] * words) + "}" if words > 1 else "$urandom"


@dataclass(frozen=True)
class Block:
    """One design simulated at gate level: its RTL module, which inputs are random or held."""

    name: str
    module: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]


def _ports(verilog: str, module: str) -> tuple[list[Port], list[Port]]:
    body = re.search(rf"module\s+{module}\s*\((.*?)\);", verilog, re.DOTALL).group(1)
    inputs, outputs = [], []
    for direction, msb, name in re.findall(r"(input|output)\s+(?:\[(\d+):0\]\s*)?(\w+)", body):
        if name == "clk":
            continue
        (inputs if direction == "input" else outputs).append(Port(name, int(msb) + 1 if msb else 1))
    return inputs, outputs


def block(verilog: str, module: str, name: str | None = None, hold: tuple[str, ...] = (), low: tuple[str, ...] = (),
          high: tuple[str, ...] = ()) -> Block:
    """A :class:`Block` of ``module`` in ``verilog``; inputs in ``hold`` keep one random value for the run, those in
    ``low`` / ``high`` are all zeros / all ones."""
    inputs, outputs = _ports(verilog, module)

    def mode(name: str) -> str:
        return "hold" if name in hold else "low" if name in low else "high" if name in high else "random"

    inputs = [Port(p.name, p.bits, mode(p.name)) for p in inputs]
    return Block(name or module, module, tuple(inputs), tuple(outputs))


def gate_level(verilog: str, blocks: list[Block], cycles: int, *, work_dir: Path | None = None
               ) -> dict[str, GatePower]:
    """Synthesize every block's module onto OSU 0.18 µm, simulate all of them at gate level for ``cycles`` clock
    cycles in one Verilator build, and compute each block's energy from the SAIF toggles."""
    from .. import verilator
    from . import asic, pdk
    from .targets import ASIC_TARGETS

    cells = load_library(pdk.osu018_liberty())
    netlists = {}
    for b in blocks:
        if b.module not in netlists:
            result = asic.synthesize(verilog, b.module, ASIC_TARGETS["osu018"])
            netlists[b.module] = result.netlist.read_text()
    scratch = Path(tempfile.mkdtemp(prefix="hwgen-power-", dir=work_dir))
    try:
        (scratch / "cells.v").write_text(cell_models(cells))
        (scratch / "netlists.v").write_text("\n".join(netlists.values()))
        (scratch / "tb.v").write_text(render("power_tb.v.j2", folder="flows", blocks=blocks, cycles=cycles,
                                             saif="run.saif"))
        command = [str(Path(verilator.environment()["VERILATOR_ROOT"]) / "bin" / "verilator"), "--binary",
                   "--timing", "--trace-saif", "--trace-underscore", "-CFLAGS", "-fcoroutines", "-Wno-fatal",
                   "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", "-MAKEFLAGS", "OPT_FAST=-O1",   # see verilator.py
                   "-Wno-lint", "-Wno-style", "--top-module", "power_tb", "-o", "power_sim", "cells.v",
                   "netlists.v", "tb.v"]
        build = subprocess.run(command, cwd=scratch, env=verilator.environment(), capture_output=True, text=True,
                               check=False)
        if build.returncode != 0:
            raise RuntimeError("Verilator build of the gate-level power testbench failed:\n"
                               + "\n".join((build.stdout + build.stderr).splitlines()[-15:]))
        run = subprocess.run([str(scratch / "obj_dir" / "power_sim")], cwd=scratch, capture_output=True, text=True,
                             check=False)
        if run.returncode != 0:
            raise RuntimeError(f"gate-level power simulation failed: {run.stderr.strip()[-500:]}")
        _, scopes = parse_saif((scratch / "run.saif").read_text())
        return {b.name: netlist_energy(netlists[b.module], scopes.get(f"power_tb/{b.name}", {}), cells, cycles)
                for b in blocks}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ characterization
def blocks_verilog() -> str:
    return render("power_blocks.v.j2", folder="flows", mac_widths=MAC_WIDTHS)


def characterization_blocks(verilog: str) -> list[Block]:
    return ([block(verilog, f"mac_w{w}") for w in MAC_WIDTHS]
            + [block(verilog, "reg32", "reg_hold", hold=("d",)), block(verilog, "reg32", "reg_random"),
               block(verilog, "greg32", "gate_off", hold=("d",), low=("en",)),
               block(verilog, "greg32", "gate_on", hold=("d",), high=("en",)),
               block(verilog, "mem16x16", "mem_write", hold=("raddr",), high=("we",)),
               block(verilog, "mem16x16", "mem_rw", high=("we",)),
               block(verilog, "requant15", hold=("thresholds",))])


def clock_energy(run: GatePower, ops: dict[str, float]) -> float:
    """The clock part (pJ) of a gate-level run under the per-operation model: every rising edge at a flip-flop's
    clock pin × ``flop_clock``, every clock gate every cycle × ``icg_cycle``, every enabled gate-cycle ×
    ``icg_enable``."""
    return (run.flop_clock_cycles * ops["flop_clock"] + run.clock_gates * run.cycles * ops["icg_cycle"]
            + run.gated_clock_cycles * ops["icg_enable"])


def characterize(cycles: int = CHARACTERIZE_CYCLES) -> dict:
    """Per-operation energies (pJ) on OSU 0.18 µm from gate-level runs of ``flows/power_blocks.v.j2`` (synthesized
    with clock gating, as :func:`hwgen.estimate.asic.synthesize` does by default):

    - ``flop_clock``: one flip-flop clocked one cycle, data held (``reg32``, no enable: not gated);
    - ``flop_toggle``: one flip-flop output transition (``reg32`` random − held data, per transition);
    - ``icg_cycle``: one integrated clock gate one cycle with its enable low (``greg32``, enable low: the gate's
      clock input, latch and inverter; its 32 flip-flops see no clock);
    - ``icg_enable``: what an enabled cycle adds to the gate itself (``greg32`` enable high − enable low − 32 ×
      ``flop_clock``: the gated clock's AND and latch);
    - ``mac_w``, ``scratchpad_write_bit`` (a word written every cycle, per bit), ``scratchpad_read_bit`` (a
      registered read every cycle, per bit) and ``requant_compare_bit``: each block's energy with its clock part
      (:func:`clock_energy`) taken out."""
    from . import pdk

    verilog = blocks_verilog()
    runs = gate_level(verilog, characterization_blocks(verilog), cycles)

    def per_cycle(name: str) -> float:
        return runs[name].dynamic_pj / cycles

    clock = per_cycle("reg_hold") / 32                                   # one flip-flop, one cycle, data held
    toggle = (runs["reg_random"].dynamic_pj - runs["reg_hold"].dynamic_pj) / max(1, runs["reg_random"].data_toggles)
    icg_cycle = per_cycle("gate_off") / max(1, runs["gate_off"].clock_gates)
    icg_enable = per_cycle("gate_on") - per_cycle("gate_off") - runs["gate_on"].gated_flops * clock
    ops = {"flop_clock": clock, "flop_toggle": toggle, "icg_cycle": icg_cycle, "icg_enable": icg_enable}

    def net_of_clock(name: str) -> float:                                 # per cycle, clock part removed
        return (runs[name].dynamic_pj - clock_energy(runs[name], ops)) / cycles

    ops.update({f"mac_{w}": net_of_clock(f"mac_w{w}") for w in MAC_WIDTHS})
    write = net_of_clock("mem_write") / 16
    ops.update({"scratchpad_write_bit": write,
                "scratchpad_read_bit": net_of_clock("mem_rw") / 16 - write,
                "requant_compare_bit": net_of_clock("requant15") / (15 * 16)})
    doc = {"schema_version": 2, "date": datetime.date.today().isoformat(), "unit": "pJ",
           "library": "osu018", "liberty": str(pdk.osu018_liberty().name), "voltage": VOLTAGE, "cycles": cycles,
           "method": "gate-level: Yosys onto osu018_stdcells with clock gating, Verilator --trace-saif, Liberty "
                     "internal energy + ½CV² (hwgen.estimate.power)", "slew_ns": SLEW_NS,
           "wire_pf_per_fanout": WIRE_PF_PER_FANOUT, "sky130_scale": SKY130_ENERGY_SCALE,
           "operations": {k: round(v, 6) for k, v in ops.items()},
           "blocks": {k: {"dynamic_pj": round(v.dynamic_pj, 3), "flops": v.flops, "data_toggles": v.data_toggles,
                          "clock_gates": v.clock_gates, "gated_flops": v.gated_flops,
                          "gated_clock_cycles": v.gated_clock_cycles, "flop_clock_cycles": v.flop_clock_cycles,
                          "leakage_nw": round(v.leakage_nw, 4)} for k, v in runs.items()}}
    return doc


@lru_cache(maxsize=1)
def energies() -> dict:
    """The characterized per-operation energies (``energy.json``)."""
    return json.loads(ENERGY_FILE.read_text())


def op_energy(name: str, library: str) -> float:
    """Energy (pJ) of one operation ``name`` of :func:`energies` on ``library``."""
    value = energies()["operations"][name]
    return value * (SKY130_ENERGY_SCALE if library == "sky130" else 1.0)


def mac_energy(a_bits: int, b_bits: int, library: str) -> float:
    """Energy (pJ) of one a×b-bit MAC: the characterized w×w MACs interpolated linearly in a·b."""
    ops = energies()["operations"]
    points = sorted((w * w, ops[f"mac_{w}"]) for w in MAC_WIDTHS)
    x = a_bits * b_bits
    value = float(np.interp(x, [p[0] for p in points], [p[1] for p in points]))
    if x > points[-1][0]:                                # beyond the largest: grow with the partial products
        value = points[-1][1] * x / points[-1][0]
    return value * (SKY130_ENERGY_SCALE if library == "sky130" else 1.0)


# ------------------------------------------------------------------------------------------------ per inference
@dataclass(frozen=True)
class RegisterGates:
    """Registers that synthesis puts behind clock gates (reset-less, loaded under an enable): ``gates`` enable
    groups of ``bits`` flip-flops each, every group enabled on ``enabled`` cycles of one inference (from the
    schedule: the program's tiles and folds, the dataflow units' compute cycles and outputs). ``extra``: flip-flops
    the structure counts (:func:`hwgen.estimate.fpga.components`) leave out (a flip-flop memory's read register),
    added to the workload's flip-flops; otherwise they are part of the counted registers."""

    name: str
    gates: int
    bits: int
    enabled: float                 # enabled cycles per gate per inference
    extra: bool = False

    @property
    def flops(self) -> int:
        return self.gates * self.bits


@dataclass(frozen=True)
class Workload:
    """Operation counts of one inference: MACs by operand widths, scratchpad bits read/written (flip-flop
    memories), SRAM word accesses by macro, requantizer comparison bits, flip-flops and cycles. Register data
    toggles outside the MACs (:attr:`register_toggles`): every bit read from or written to a scratchpad passes one
    pipeline register, half of them toggling (random data).

    Clock gating: ``gated_flops`` of the ``flops`` sit behind ``clock_gates`` integrated clock gates (flip-flop
    memory word slices, :func:`hwgen.estimate.asic.clock_gate_groups`) and are clocked only on a cycle their slice is
    written: ``gated_clocked`` flip-flop clock edges per inference, ``gate_enables`` enabled gate-cycles. The other
    flip-flops are clocked every cycle, except the registers of ``register_gates`` (:class:`RegisterGates`), which
    see a clock edge only on their enabled cycles. ``activity``: the factor that scales the data-dependent energies
    (MACs, scratchpads, requantizers, register toggles; 1 = the random operands they were characterized at)."""

    macs: tuple[tuple[int, int, int], ...]          # (count, a_bits, b_bits)
    read_bits: int
    write_bits: int
    compare_bits: int
    flops: int
    cycles: float
    sram_accesses: tuple[tuple[int, int, int], ...] = ()    # (accesses, depth, width)
    source: str = "analytic"
    clock_gates: int = 0
    gated_flops: int = 0
    gated_clocked: float = 0.0
    gate_enables: float = 0.0
    activity: float = 1.0
    register_gates: tuple[RegisterGates, ...] = ()

    @property
    def register_toggles(self) -> float:
        return 0.5 * (self.read_bits + self.write_bits + sum(n * w for n, _, w in self.sram_accesses))

    @property
    def register_gated_flops(self) -> int:
        """Flip-flops of :attr:`register_gates`."""
        return sum(g.flops for g in self.register_gates)

    @property
    def ungated_flops(self) -> int:
        return max(0, self.flops - self.gated_flops - self.register_gated_flops)

    def register_clock(self) -> tuple[float, float]:
        """(flip-flop clock edges, enabled gate-cycles) per inference of :attr:`register_gates` (a group is enabled
        on at most every cycle)."""
        enables = sum(g.gates * min(g.enabled, self.cycles) for g in self.register_gates)
        edges = sum(g.flops * min(g.enabled, self.cycles) for g in self.register_gates)
        return edges, enables


def gated_writes(gates: int, gated_flops: int, write_bits: float, cycles: float) -> tuple[float, float]:
    """(flip-flop clock edges, enabled gate-cycles) per inference of ``gated_flops`` flip-flops behind ``gates``
    clock gates when ``write_bits`` flip-flop memory bits are written: each written bit is one clock edge of its
    flip-flop (at most every gated flip-flop every cycle), and a write enables a whole slice, so the enabled
    gate-cycles are those edges over the mean slice size ``gated_flops / gates``."""
    if gates == 0 or gated_flops == 0:
        return 0.0, 0.0
    clocked = min(float(write_bits), gated_flops * cycles)
    return clocked, clocked * gates / gated_flops


def _memory_traffic(depth: int, width: int, read_bits: float, write_bits: float, reads: list, writes: list,
                    srams: list) -> None:
    """Account ``read_bits`` / ``write_bits`` of a ``depth × width`` memory as SRAM word accesses or flip-flop
    scratchpad bits."""
    from . import sram

    if sram.is_macro(depth, width):
        srams.append((round((read_bits + write_bits) / width), depth, width))
    else:
        reads.append(read_bits)
        writes.append(write_bits)


def _gate_min() -> int:
    from .asic import CLOCK_GATE_MIN_FLOPS
    return CLOCK_GATE_MIN_FLOPS


def dataflow_register_gates(config) -> tuple[RegisterGates, ...]:
    """The clock-gated registers of a dataflow pipeline and their enabled cycles per inference: the read register
    of every flip-flop memory (a synchronous read port with a read enable; synthesis keeps its ``used`` bits), one
    gate per copy when it has at least :data:`~hwgen.estimate.asic.CLOCK_GATE_MIN_FLOPS` bits:

    - an MVAU's weight memories (one per PE, ``simd · w`` bits): read on every compute cycle, ``layer.cycles``;
    - its input buffer (``nf > 1``, not depthwise; ``simd · in_bits``): one word per compute cycle, ``layer.cycles``
      (``sf`` words per vector, read again for each of the ``nf`` output beats);
    - its thresholds (one per PE, ``L · tb + 1`` used bits): one word per output beat, ``nf · vectors``;
    - fixed-point bias memories (one per PE): one word per output beat;
    - a sliding-window generator's line buffer: one word per beat it sends, ``vectors · mw / in_lanes``;
    - each FIFO (``lcm(PE, SIMD)`` codes wide): one word per beat through it.

    The structure counts of :mod:`hwgen.estimate.fpga` leave these registers out (``extra``). SRAM macros (their
    own output registers) are not flip-flops here. Checked against the gated OSU netlists of the 11 dataflow
    calibration and held-out designs: the gated read-register flip-flops are exact on 8, within 3.8 % on the
    other 3; bias memories and line buffers follow the same rule unchecked (no such design was synthesized)."""
    from . import sram

    least = _gate_min()
    out: list[RegisterGates] = []

    def read_register(name: str, depth: int, width: int, copies: int, enabled: float) -> None:
        if copies and width >= least and not sram.is_macro(depth, width):
            out.append(RegisterGates(name, copies, width, float(enabled), extra=True))

    for index, layer in enumerate(config.layers):
        if layer.weighted:
            read_register(f"mvau{index}.weights", max(2, layer.steps), layer.simd * layer.weight_shape.width,
                          layer.pe, layer.cycles)
        if not layer.pool and layer.nf > 1 and not layer.depthwise:
            read_register(f"mvau{index}.input_buffer", max(2, layer.sf), layer.simd * layer.in_type.bits, 1,
                          layer.cycles)
        beats = layer.nf * layer.vectors
        if layer.thresholds:
            L, tb = layer.thresholds, layer.threshold_bits
            read_register(f"thresholds{index}", max(2, layer.threshold_memory[1]), L * tb + 1, layer.pe, beats)
        if layer.stages and layer.biased_stages:
            read_register(f"fixed{index}.bias", max(2, layer.nf), len(layer.biased_stages) * layer.bias_bits,
                          layer.pe, beats)
        if layer.window is not None:
            win = layer.window
            cb = win.channels // layer.in_lanes
            read_register(f"swg{index}", max(2, win.buffer_rows * win.width * cb),
                          layer.in_lanes * layer.in_type.bits, 1, layer.vectors * layer.mw // layer.in_lanes)
    for (source, consumer, _), depth in zip(config.edges, config.fifo_depths):
        layer, nxt = config.layers[source], config.layers[consumer]
        wide = lcm(layer.pe, nxt.in_lanes)
        if depth - 1 >= 1:
            read_register(f"fifo{consumer}", depth - 1, wide * layer.out_type.bits, 1, layer.out_codes / wide)
    return tuple(out)


def _positions(layer) -> int:
    """M of a systolic GEMM layer (``Design.layers``): its output positions (1 for a dense layer)."""
    return layer.conv.out_hw[0] * layer.conv.out_hw[1] if layer.conv is not None else 1


def systolic_register_gates(config, layers, instructions=None, batch: int = 1) -> tuple[RegisterGates, ...]:
    """The clock-gated registers of a systolic array and their enabled cycles per inference (``instructions``: the
    program's, one per layer, for ``batch`` samples, whose tile counts are exact; without them the tiles of one
    sample, ``⌈M/R⌉·⌈N/C⌉`` (OS) or folds ``⌈K/R⌉·⌈N/C⌉`` (WS)). All are part of the structure's register counts:

    - OS: the shadow registers of PE rows 0 … R − 2 (``acc`` bits each; the bottom row's shifts in zeros, a
      synchronous reset that keeps it ungated): enabled to capture a finished tile (1 cycle) and while the column
      drains (R shifts): ``R + 1`` cycles per tile;
    - WS (``w_bits ≥ 4``): each PE's weight chain, enabled while the fold's weights shift in (R cycles per fold),
      and its active weight, loaded by ``commit`` once per fold;
    - the activation banks' read registers (R of ``C · store_bits``): enabled when the controller reads an operand
      word for a live row (``bank_read``), once per activation of a tile: ``M · K · ⌈N/C⌉`` word reads per layer;
    - the output banks' read registers (R of ``C · acc_bits``): enabled only for host reads and streamed output
      (``idle`` / streaming), none during an inference's compute; so are the banks' stream stages (R of
      ``C · acc_bits``), loaded only while streaming out."""
    R, C = config.rows, config.cols
    least = _gate_min()
    acc, wb, sb = config.acc_bits, config.w_bits, config.store_bits
    tiles = act_words = 0.0
    for index, layer in enumerate(layers):
        m = _positions(layer)
        if instructions is not None:
            instr = instructions[index]
            count = instr["n_tiles"] * (instr["k_tiles"] if config.dataflow == "ws" else instr["m_tiles"]) / batch
        elif config.dataflow == "ws":
            count = -(-layer.k // R) * -(-layer.n // C)
        else:
            count = -(-m // R) * -(-layer.n // C)
        tiles += count
        act_words += m * layer.k * -(-layer.n // C)
    out: list[RegisterGates] = []
    if config.dataflow == "ws":
        if wb >= least:
            out += [RegisterGates("pe.weight_chain", R * C, wb, tiles * R),
                    RegisterGates("pe.weight", R * C, wb, tiles)]
    elif R > 1 and acc >= least:
        out.append(RegisterGates("pe.shadow", (R - 1) * C, acc, tiles * (R + 1)))
    if C * sb >= least:
        out.append(RegisterGates("activation_banks.read", R, C * sb, act_words / R))
    if C * acc >= least:
        out += [RegisterGates("output_banks.read", R, C * acc, 0.0), RegisterGates("stream_out.stage", R, C * acc, 0.0)]
    return tuple(out)


def dataflow_workload(config, cycles_per_inference: float) -> Workload:
    """Operation counts of one inference on a dataflow pipeline: every MVAU multiplies its whole mw × mh matrix
    once per vector (bipolar layers: 1 × 1-bit XNOR MACs; pooling: none), reads its weight memories once per
    compute cycle and its input buffer per weight word, thresholds every output against all L thresholds, and every
    FIFO carries every output once (each reader's)."""
    macs, reads, writes, srams = [], [], [], []
    compare = 0
    for index, layer in enumerate(config.layers):
        wbits = layer.weight_shape.width
        ob = 1 if layer.bipolar else layer.operand_shape.width
        if layer.weighted:
            macs.append((layer.mw * layer.mh * layer.vectors, ob, 1 if layer.bipolar else wbits))
            for _ in range(layer.pe):
                _memory_traffic(max(2, layer.steps), layer.simd * wbits, layer.cycles * layer.simd * wbits, 0,
                                reads, writes, srams)
        if layer.nf > 1 and not layer.depthwise:
            bits = layer.mw * layer.in_type.bits * layer.vectors
            _memory_traffic(max(2, layer.sf), layer.simd * layer.in_type.bits, bits * layer.nf, bits, reads, writes,
                            srams)
        if layer.thresholds:
            tb = layer.threshold_bits
            compare += layer.out_codes * layer.thresholds * tb
            reads.append(layer.out_codes * (layer.thresholds + 1) * tb)
        if index + 1 < len(config.layers):
            bits = layer.out_codes * layer.out_type.bits * config.readers(index)
            reads.append(bits)
            writes.append(bits)
    return _workload(config, macs, reads, writes, compare, cycles_per_inference, srams,
                     "dataflow structure: every MVAU's mw×mh MACs, weight reads per compute cycle, all thresholds; "
                     "gated read registers per word read", dataflow_register_gates(config))


def _workload(config, macs: list, reads: list, writes: list, compare: float, cycles: float, srams: list,
              source: str, register_gates: tuple[RegisterGates, ...] = ()) -> Workload:
    from . import asic

    features, _ = asic.features(config)
    gates, gated = asic.clock_gate_groups(config)
    write_bits = round(sum(writes))
    clocked, enables = gated_writes(gates, gated, write_bits, cycles)
    extra = sum(g.flops for g in register_gates if g.extra)
    return Workload(tuple(macs), round(sum(reads)), write_bits, compare,
                    round(features["reg"] + features["memff_bits"]) + extra, cycles, tuple(srams), source, gates,
                    gated, clocked, enables, register_gates=register_gates)


def systolic_workload(config, layers, cycles_per_inference: float, instructions=None, batch: int = 1) -> Workload:
    """Operation counts of one inference on the systolic array from its GEMM layers (``Design.layers``): M·K·N
    MACs per layer (M output positions), each activation read once per column tile and each weight once per row
    tile, every result written to an output bank, requantized (binary search: one threshold comparison per stage)
    and written back as activations; the gated registers of :func:`systolic_register_gates` (``instructions`` /
    ``batch``: the program's, for exact tile counts)."""
    R, C = config.rows, config.cols
    ob, wb, sb, acc = config.operand_bits, config.w_bits, config.store_bits, config.acc_bits
    macs, reads, writes, srams = [], [], [], []
    compare = 0
    for layer in layers:
        m = _positions(layer)
        k, n = layer.k, layer.n
        macs.append((m * k * n, ob, wb))
        _memory_traffic(config.act_depth, C * sb, m * k * -(-n // C) * sb, m * n * sb, reads, writes, srams)
        _memory_traffic(config.weight_depth, wb, k * n * -(-m // R) * wb, 0, reads, writes, srams)
        _memory_traffic(config.out_depth, C * acc, m * n * acc, m * n * acc, reads, writes, srams)
        if layer.thresholds is not None:
            compare += m * n * config.search_stages * config.threshold_bits
    return _workload(config, macs, reads, writes, compare, cycles_per_inference, srams,
                     "systolic program: M·K·N MACs per layer, operand reads per tile, requantizer search stages; "
                     "gated registers per tile / fold", systolic_register_gates(config, layers, instructions, batch))


DATA_DEPENDENT = ("mac", "scratchpad", "requant", "registers")


def energy_per_inference(work: Workload, library: str, voltage: float = VOLTAGE) -> dict[str, float]:
    """Dynamic energy (pJ) of one inference by operation, from :func:`energies`:

    - ``mac``, ``scratchpad``, ``requant``, ``registers``: operation counts × their energies at random operands,
      × ``work.activity`` (the data-dependent part, :data:`DATA_DEPENDENT`);
    - ``clock``: ``ungated_flops × cycles × flop_clock`` + ``gated_clocked × flop_clock`` (gated memory words
      see a clock edge only when their slice is written) + Σ over the gated registers (``register_gates``)
      ``gates × bits × enabled × flop_clock`` (clocked only on their enabled cycles);
    - ``clock_gates``: ``(clock_gates + Σ gates) × cycles × icg_cycle + (gate_enables + Σ gates × enabled) ×
      icg_enable`` (every gate's latch and inverter run every cycle; its AND only when enabled);
    - ``sram``: macro accesses × the SRAM model's access energy."""
    from . import sram

    clock = op_energy("flop_clock", library)
    out = {"mac": sum(n * mac_energy(a, b, library) for n, a, b in work.macs),
           "scratchpad": work.read_bits * op_energy("scratchpad_read_bit", library)
           + work.write_bits * op_energy("scratchpad_write_bit", library),
           "requant": work.compare_bits * op_energy("requant_compare_bit", library),
           "registers": work.register_toggles * op_energy("flop_toggle", library)}
    out = {k: v * work.activity for k, v in out.items()}
    edges, enables = work.register_clock()
    gates = work.clock_gates + sum(g.gates for g in work.register_gates)
    out.update({"clock": (work.ungated_flops * work.cycles + work.gated_clocked + edges) * clock,
                "clock_gates": gates * work.cycles * op_energy("icg_cycle", library)
                + (work.gate_enables + enables) * op_energy("icg_enable", library),
                "sram": sum(n * sram.macro(d, w, library, voltage).access_pj for n, d, w in work.sram_accesses)})
    out["total"] = sum(out.values())
    return out


def reference_inputs(model, x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Inputs shaped like ``x`` whose input codes are uniformly random over the input quantizer's range: the
    random-operand activity the per-operation energies were characterized at, as a reference run for
    :func:`activity_summary`. Codes are drawn and dequantized (the quantizer maps them back to themselves); a
    float pre-processing before the quantizer is not inverted (its inputs are then the dequantized codes)."""
    node = next(n for n in model.graph.nodes if n.op == "Quantize")
    quantizer = node.attrs["quantizer"]
    rng = np.random.default_rng(seed)
    shape = (len(x),) + tuple(node.attrs["shape"][1:])
    codes = rng.integers(int(quantizer.dtype.min), int(quantizer.dtype.max) + 1, size=shape)
    values = quantizer.dequantize(codes, node.attrs["axis"])
    return values.reshape(np.asarray(x).shape).astype(np.float32)


def _rtl_toggles(saif: Path) -> tuple[float, dict[str, int]]:
    duration, scopes = parse_saif(Path(saif).read_text())
    return duration, {f"{scope}/{net}": tc for scope, table in scopes.items() for net, tc in table.items()
                      if not net.startswith("clk")}


def activity_factor(nets: dict[str, int], cycles: int, reference: dict[str, int], reference_cycles: int
                    ) -> tuple[float, int]:
    """(activity, data nets): the toggles per cycle of the data-dependent nets in a run over those in the
    reference run on random input codes (:func:`reference_inputs`), same design and sample count. The data nets
    are those whose toggle counts differ between the two runs; nets toggling the same in both (clock-driven
    control: counters, valids, addresses) are left out of both sums. 1.0 when no net differs."""
    data = [n for n in set(nets) | set(reference) if nets.get(n, 0) != reference.get(n, 0)]
    run = sum(nets.get(n, 0) for n in data) / max(1, cycles)
    ref = sum(reference.get(n, 0) for n in data) / max(1, reference_cycles)
    return (run / ref if ref > 0 else 1.0), len(data)


def activity_summary(saif: Path, report: dict, reference: tuple[Path, dict] | None = None) -> dict:
    """What ``hwgen simulate --activity`` records in ``OUT/activity.json``: the run's measured cycles per inference
    and its RTL toggle counts (from the SAIF beside it), keyed to the simulated Verilog; with ``reference`` (SAIF
    and report of the same run on :func:`reference_inputs`), the ``activity`` factor (:func:`activity_factor`) that
    ``hwgen estimate`` multiplies the data-dependent energies with."""
    duration, nets = _rtl_toggles(saif)
    samples = report["samples"]
    doc = {"schema_version": 2, "verilog_sha256": report["verilog_sha256"], "samples": samples,
           "cycles": report["cycles"], "cycles_per_inference": report["cycles"] / samples, "io": report["io"],
           "saif": Path(saif).name, "saif_duration": duration, "toggles": sum(nets.values()),
           "toggling_nets": sum(1 for tc in nets.values() if tc), "nets": len(nets),
           "toggle_rate": sum(nets.values()) / max(1, len(nets)) / max(1, report["cycles"]),
           "note": "measured by hwgen simulate --activity (Verilator --trace-saif); hwgen estimate uses the "
                   "measured cycles per inference for clock and leakage energy and the activity factor for the "
                   "data-dependent energies"}
    if reference is not None:
        ref_saif, ref_report = reference
        _, ref_nets = _rtl_toggles(ref_saif)
        factor, data = activity_factor(nets, report["cycles"], ref_nets, ref_report["cycles"])
        doc.update(activity=factor, data_nets=data, reference={
            "saif": Path(ref_saif).name, "cycles": ref_report["cycles"], "toggles": sum(ref_nets.values()),
            "inputs": "random input codes, uniform over the input quantizer's range (seed 0)"})
    return doc


def main(argv: list[str] | None = None) -> None:
    """``python -m hwgen.estimate.power characterize``: rewrite ``energy.json``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hwgen.estimate.power")
    parser.add_argument("step", choices=("characterize",))
    parser.add_argument("--cycles", type=int, default=CHARACTERIZE_CYCLES)
    args = parser.parse_args(argv)
    doc = characterize(args.cycles)
    ENERGY_FILE.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    energies.cache_clear()
    print(json.dumps(doc["operations"], indent=1))


if __name__ == "__main__":
    main()
