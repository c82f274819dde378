"""Post-synthesis register packing on a Yosys ECP5 netlist: what a vendor mapper does and ``synth_ecp5`` does not.

Yosys (0.70) maps every block RAM to a ``DP16KD`` with ``REGMODE_A/B = "NOREG"`` and every multiplier to a fully
combinational ``MULT18X18D``; the flip-flop a design puts after the RAM's read data or around the multiplier stays a
``TRELLIS_FF`` in the fabric (YosysHQ/yosys #5814, PR #3668). nextpnr then times the RAM's clock-to-output as
5.83 ns (``NOREG``) and the multiplier as a combinational path, where Lattice's own flow would use the registers
inside the blocks. This pass moves those flip-flops into the blocks, exactly preserving the cycle behaviour:

::

    DP16KD  (port A or B; PDP 36-bit: DOA+DOB on port B)
        DOx ──▶ TRELLIS_FF(clk, ce) ──▶ q        becomes     DOx = q,  REGMODE_x = "OUTREG",  OCEx = ce

    MULT18X18D
        a ─▶ FF ─▶ A ─┐
        b ─▶ FF ─▶ B ─┴▶ P ──▶ FF ──▶ p      becomes    P = p,  REG_OUTPUT_CLK = CLK0
        a ─▶ FF ─▶ A ─┐
        b ─▶ FF ─▶ B ─┴▶ P ──▶ logic         becomes    A = a, B = b (the FFs' D),  REG_INPUTA/B_CLK = CLK0

A RAM port is absorbed when every used ``DOx`` bit drives exactly one sink, the ``DI`` of a ``TRELLIS_FF`` on the
port's own clock net and edge, with no set/reset that can act (``LSR`` constant inactive), init value 0
(``REGSET = "RESET"``, the value the RAM output register powers up with: ``rdinit zero`` in Yosys's
``brams_16kd.txt``) and one clock enable shared by all those flip-flops (a net or constant 1), and the RAM port
itself has no reset (``RSTx`` constant 0: ``RSTx`` clears the output latch and the output register, so with a reset
in use the register would be cleared a cycle earlier than the fabric flip-flop was). ``CEx`` keeps enabling the
RAM's output latch (the read itself); ``OCEx`` enables the output register, so the RAM output register holds
exactly what the fabric flip-flop held (ECP5 memory usage guide, TN1264: OCE is the output-register clock enable).
In PDP 36-bit mode (``DATA_WIDTH_A = 36``, Yosys's ``$__PDPW16KD_``) all read data (``DOA`` and ``DOB``) belongs
to the read port B (clocked by ``CLKB``, as nextpnr times it); both ``REGMODE`` are set and both ``OCEA`` and
``OCEB`` driven, which is what nextpnr's own ``PDPW16KD`` conversion does (one ``REGMODE``, ``OCER`` → ``OCEB``).

A multiplier operand (A or B) is absorbed when every non-constant pin is driven by the ``Q`` of a ``TRELLIS_FF``
(rising edge, no active set/reset, init 0), all on one clock net with one enable; the DSP's input register then
loads the flip-flop's ``D``. A flip-flop whose ``Q`` has other sinks (a systolic PE forwarding its operand to the
neighbour) stays and is *duplicated* into the DSP; one whose only sinks were this DSP is removed. Operands are
absorbed in pairs only: nextpnr has timing classes for both inputs registered or neither (``MULT18X18D_REGS_INPUT``
/ ``_ALL``) and times a mixed cell as unregistered. The product (P) is absorbed into the output register under the
same conditions as a RAM port's read data (each used bit: one sink, a flip-flop ``DI``). Never both: nextpnr
times a block register like a fabric one and has no minimum period for the DSP itself, so with input and output
registers the multiply (A/B → P, wholly inside the block) would not be timed at all; the product register is
tried first (a plain move, no duplicated operand), the operands only when it cannot be taken (a MAC, whose
product feeds an adder). Every register uses ``CLK0`` (nextpnr times a clocked MULT18X18D against ``CLK0`` only),
``RST0`` tied to 0, and ``CE0`` (``CE1`` too when the operands' enables differ; the output register's enable is
``CE0``: nextpnr's bitstream writer has no ``REG_OUTPUT_CE``).

Limits: nextpnr has no minimum period for the blocks themselves; the datasheet's EBR / sysDSP maximum frequencies
still apply on top of the fmax it reports.

Each port considered yields one outcome, counted in :class:`PackReport` (``absorbed`` or the first refusal reason,
see :data:`REFUSALS`) so a figure can be traced to what the pass did.
"""
from __future__ import annotations

import copy
from collections import Counter, defaultdict
from dataclasses import dataclass, field

FF = "TRELLIS_FF"
RAM = "DP16KD"
MULT = "MULT18X18D"
CONSTANTS = ("0", "1", "x", "z")

REFUSALS = {
    "already_registered": "the block's register is already in use",
    "multiply_timed": "the product went into the output register; registering the operands as well would leave "
                      "the multiply wholly inside the DSP, where nextpnr does not time it",
    "block_reset": "the RAM port's RSTx is not constant 0 (it would clear the output register too)",
    "fanout": "an output bit drives more than one sink, or a module port",
    "not_ff": "an output bit's sink (input bit's driver) is not a TRELLIS_FF DI (Q)",
    "constant_one": "an input pin is constant 1 (a register would power up 0 there)",
    "constant": "every input pin is constant",
    "ff_clock_edge": "the flip-flop's clock edge differs from the block's (or is falling, for a MULT18X18D)",
    "ff_clock": "the flip-flops are clocked by another net than the block port (or than each other)",
    "ff_reset": "a flip-flop has a set/reset that can act (LSR not constant inactive)",
    "ff_init_one": "a flip-flop powers up 1 (REGSET SET); the block register powers up 0",
    "ff_enable": "a flip-flop's enable is inverted or constant 0",
    "ff_enable_mismatch": "the flip-flops of one port have different enables",
    "ff_constant_input": "an input flip-flop's D is constant 1 (the DSP register would see it from cycle 0)",
    "signed_net": "the operand's SIGNEDA/B pin is a net, not a constant (it would need registering too)",
    "other_operand": "the other operand cannot be absorbed (nextpnr has no timing class for one registered input)",
    "clock_mismatch": "the two operands' flip-flops use different clocks",
}


def _param(cell: dict, name: str, default: str) -> str:
    """A cell parameter as Yosys's JSON writer stores it, without the space it appends to strings like ``"1"``."""
    value = cell.get("parameters", {}).get(name, default)
    if isinstance(value, str) and value.endswith(" ") and set(value[:-1]) <= set("01xz"):
        return value[:-1]
    return value


def _int_param(cell: dict, name: str, default: int) -> int:
    """An integer parameter (Yosys writes them as 32-character binary strings)."""
    value = cell.get("parameters", {}).get(name, default)
    return value if isinstance(value, int) else int(value, 2)


def _pin(cell: dict, pin: str, default: str | int = "0") -> str | int:
    """The single bit on ``pin`` (a net number or a constant ``"0"``/``"1"``/``"x"``)."""
    bits = cell["connections"].get(pin)
    return bits[0] if bits else default


def _never_active(pin, inverted: bool) -> bool:
    """A reset pin tied so that it never acts: constant 0 (or undriven), or constant 1 through an inverting mux."""
    return pin in ("0", "x") and not inverted or pin == "1" and inverted


def _find_top(netlist: dict) -> str:
    tops = [name for name, module in netlist["modules"].items()
            if int(str(module.get("attributes", {}).get("top", "0")).strip() or "0", 2)]
    if len(tops) != 1:
        raise ValueError(f"netlist has {len(tops)} top modules ({', '.join(tops) or 'none'}); expected exactly one")
    return tops[0]


@dataclass
class PackReport:
    """What :func:`pack_ecp5` did: counts (ports, flip-flops) and one outcome per port considered."""

    ram_ports_absorbed: int = 0
    dsp_inputs_absorbed: int = 0            # operands (A or B) moved into MULT18X18D input registers
    dsp_outputs_absorbed: int = 0           # products moved into MULT18X18D output registers
    ffs_removed: int = 0                    # TRELLIS_FF cells deleted (now inside a DP16KD / MULT18X18D)
    ffs_duplicated: int = 0                 # TRELLIS_FF cells kept (other fanout) and copied into a DSP register
    refusals: Counter = field(default_factory=Counter)      # "<block> <port>: <reason>" -> ports
    ports: list = field(default_factory=list)               # [cell, port, outcome] per port considered

    def to_dict(self) -> dict:
        return {"schema": 1, "ram_ports_absorbed": self.ram_ports_absorbed,
                "dsp_inputs_absorbed": self.dsp_inputs_absorbed, "dsp_outputs_absorbed": self.dsp_outputs_absorbed,
                "ffs_removed": self.ffs_removed, "ffs_duplicated": self.ffs_duplicated,
                "refusals": dict(sorted(self.refusals.items())), "reasons": REFUSALS, "ports": self.ports}

    def _outcome(self, cell_type: str, cell: str, port: str, outcome: str) -> None:
        self.ports.append([cell, port, outcome])
        if outcome != "absorbed":
            self.refusals[f"{cell_type} {port}: {outcome}"] += 1


class _Refused(Exception):
    """One port cannot be absorbed; the argument is a key of :data:`REFUSALS`."""


class _Index:
    """Drivers and sinks of every net bit of the top module (sinks: cell input pins and module output ports)."""

    def __init__(self, module: dict):
        self.cells = module["cells"]
        self.drivers: dict[int, tuple[str, str]] = {}
        self.sinks: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for name, port in module.get("ports", {}).items():
            for bit in port["bits"]:
                if isinstance(bit, int):
                    if port["direction"] == "input":
                        self.drivers[bit] = ("$port", name)
                    else:
                        self.sinks[bit].append(("$port", name))
        for name, cell in self.cells.items():
            directions = cell.get("port_directions", {})
            for pin, bits in cell["connections"].items():
                for bit in bits:
                    if not isinstance(bit, int):
                        continue
                    if directions.get(pin) == "output":
                        self.drivers[bit] = (name, pin)
                    else:                                   # input, inout or unknown: counted as a sink
                        self.sinks[bit].append((name, pin))

    def rewire_sink(self, cell: str, pin: str, old, new) -> None:
        if isinstance(old, int):
            self.sinks[old].remove((cell, pin))
        if isinstance(new, int):
            self.sinks[new].append((cell, pin))
        self.cells[cell]["connections"][pin] = [new]
        self.cells[cell].setdefault("port_directions", {}).setdefault(pin, "input")    # CLK0.. are new to Yosys's cell

    def rewire_driver(self, cell: str, pin: str, old, new: int) -> None:
        self.drivers.pop(old, None)
        self.drivers[new] = (cell, pin)
        self.cells[cell]["connections"][pin] = [new]

    def remove(self, name: str) -> None:
        cell = self.cells.pop(name)
        for pin, bits in cell["connections"].items():
            for bit in bits:
                if isinstance(bit, int):
                    if self.drivers.get(bit) == (name, pin):
                        del self.drivers[bit]
                    elif (name, pin) in self.sinks.get(bit, ()):
                        self.sinks[bit].remove((name, pin))


@dataclass(frozen=True)
class _FF:
    """A flip-flop's behaviour as far as absorption cares: clock net and edge, enable (net or ``"1"``)."""

    name: str
    clock: str | int
    rising: bool
    enable: str | int


def _flip_flop(cells: dict, name: str) -> _FF:
    """The flip-flop ``name`` if a block register can stand in for it (no reset, init 0, plain enable), else
    :class:`_Refused`. TRELLIS_FF semantics: ``common_sim.vh`` in Yosys's ``share/lattice``."""
    cell = cells[name]
    if not _never_active(_pin(cell, "LSR", "0"), _param(cell, "LSRMUX", "LSR") == "INV"):
        raise _Refused("ff_reset")
    if _param(cell, "REGSET", "RESET") != "RESET":
        raise _Refused("ff_init_one")
    cemux = _param(cell, "CEMUX", "CE" if "CE" in cell["connections"] else "1")
    ce = _pin(cell, "CE", "1")
    if cemux == "1" or cemux not in ("0", "INV") and ce == "1":
        enable = "1"
    elif cemux not in ("0", "INV") and isinstance(ce, int):
        enable = ce
    else:
        raise _Refused("ff_enable")
    return _FF(name, _pin(cell, "CLK", "x"), _param(cell, "CLKMUX", "CLK") != "INV", enable)


def _output_ffs(index: _Index, bits: list[tuple[str, int]]) -> list[tuple[str, _FF]]:
    """(pin, flip-flop) for block output pins whose bits each drive exactly one flip-flop ``DI``; refusal otherwise."""
    found = []
    for pin, bit in bits:
        sinks = index.sinks.get(bit, [])
        if len(sinks) != 1 or sinks[0][0] == "$port":
            raise _Refused("fanout")
        name, sink_pin = sinks[0]
        if index.cells[name]["type"] != FF or sink_pin != "DI":
            raise _Refused("not_ff")
        found.append((pin, _flip_flop(index.cells, name)))
    return found


def _common(ffs: list[_FF], clock, rising: bool | None = None):
    """The one enable of ``ffs`` (all on ``clock``, edge ``rising`` if given), or :class:`_Refused`."""
    for ff in ffs:
        if clock is not None and ff.clock != clock:
            raise _Refused("ff_clock")
        if rising is not None and ff.rising != rising:
            raise _Refused("ff_clock_edge")
    enables = {ff.enable for ff in ffs}
    if len(enables) != 1:
        raise _Refused("ff_enable_mismatch")
    return enables.pop()


def _used_outputs(index: _Index, cell: dict, pins: list[str]) -> list[tuple[str, int]]:
    return [(pin, bit) for pin in pins if isinstance(bit := _pin(cell, pin, "x"), int) and index.sinks.get(bit)]


def _pack_ram(index: _Index, name: str, report: PackReport) -> None:
    cell = index.cells[name]
    pdp = _int_param(cell, "DATA_WIDTH_A", 18) == 36
    ports = {"B": [f"DO{p}{i}" for p in "AB" for i in range(18)]} if pdp else \
        {p: [f"DO{p}{i}" for i in range(18)] for p in "AB"}
    for port, pins in ports.items():
        used = _used_outputs(index, cell, pins)
        if not used:
            continue                                        # a write-only port
        regmodes = ("REGMODE_A", "REGMODE_B") if pdp else (f"REGMODE_{port}",)
        try:
            if any(_param(cell, regmode, "NOREG") != "NOREG" for regmode in regmodes):
                raise _Refused("already_registered")
            if not _never_active(_pin(cell, f"RST{port}", "0"), _param(cell, f"RST{port}MUX", f"RST{port}") == "INV"):
                raise _Refused("block_reset")
            found = _output_ffs(index, used)
            rising = _param(cell, f"CLK{port}MUX", f"CLK{port}") != "INV"
            enable = _common([ff for _, ff in found], _pin(cell, f"CLK{port}", "x"), rising)
        except _Refused as refusal:
            report._outcome(RAM, name, port, refusal.args[0])
            continue
        for regmode in regmodes:
            cell["parameters"][regmode] = "OUTREG"
        for oce in ("OCEA", "OCEB") if pdp else (f"OCE{port}",):
            index.rewire_sink(name, oce, _pin(cell, oce, "1"), enable)
        _absorb_outputs(index, name, found, report)
        report.ram_ports_absorbed += 1
        report._outcome(RAM, name, port, "absorbed")


def _absorb_outputs(index: _Index, name: str, found: list[tuple[str, _FF]], report: PackReport) -> None:
    """Block output pins take over the flip-flops' ``Q`` nets; the flip-flops go."""
    for pin, ff in found:
        q = _pin(index.cells[ff.name], "Q")
        old = _pin(index.cells[name], pin)
        index.remove(ff.name)
        index.rewire_driver(name, pin, old, q)
        report.ffs_removed += 1


def _operand(index: _Index, cell: dict, letter: str) -> tuple[dict[str, _FF], object, object]:
    """({pin: flip-flop}, clock, enable) of DSP operand ``letter``, or :class:`_Refused`."""
    if isinstance(_pin(cell, f"SIGNED{letter}", "0"), int):
        raise _Refused("signed_net")
    ffs = {}
    for i in range(18):
        pin = f"{letter}{i}"
        bit = _pin(cell, pin, "0")
        if bit == "1":
            raise _Refused("constant_one")
        if not isinstance(bit, int):
            continue
        driver = index.drivers.get(bit)
        if driver is None or driver[0] == "$port" or index.cells[driver[0]]["type"] != FF or driver[1] != "Q":
            raise _Refused("not_ff")
        ffs[pin] = _flip_flop(index.cells, driver[0])
        if _pin(index.cells[driver[0]], "DI", "x") == "1":
            raise _Refused("ff_constant_input")
    if not ffs:
        raise _Refused("constant")
    clock = next(iter(ffs.values())).clock
    enable = _common(list(ffs.values()), clock, rising=True)
    return ffs, clock, enable


def _pack_mult(index: _Index, name: str, report: PackReport) -> None:
    cell = index.cells[name]
    regs = {"A": "REG_INPUTA", "B": "REG_INPUTB", "P": "REG_OUTPUT"}
    plans: dict[str, tuple] = {}                    # the product's register, or both operands' (never both kinds)
    outcomes: dict[str, str] = {}
    used = _used_outputs(index, cell, [f"P{i}" for i in range(36)])
    if used:
        try:
            if _param(cell, "REG_OUTPUT_CLK", "NONE") != "NONE" or _param(cell, "REG_PIPELINE_CLK", "NONE") != "NONE":
                raise _Refused("already_registered")
            found = _output_ffs(index, used)
            clock = found[0][1].clock
            plans["P"] = (found, clock, _common([ff for _, ff in found], clock, rising=True))
        except _Refused as refusal:
            outcomes["P"] = refusal.args[0]
    if plans:
        outcomes.update(A="multiply_timed", B="multiply_timed")
    else:
        for letter in "AB":
            try:
                if _param(cell, f"{regs[letter]}_CLK", "NONE") != "NONE":
                    raise _Refused("already_registered")
                plans[letter] = _operand(index, cell, letter)
            except _Refused as refusal:
                outcomes[letter] = refusal.args[0]
        if len(plans) == 1:
            outcomes[next(iter(plans))] = "other_operand"
            plans.clear()
        elif len(plans) == 2 and plans["A"][1] != plans["B"][1]:
            outcomes.update(A="clock_mismatch", B="clock_mismatch")
            plans.clear()
    if not plans:
        for letter in "ABP":
            if letter in outcomes:
                report._outcome(MULT, name, letter, outcomes[letter])
        return
    clock = next(iter(plans.values()))[1]
    enables = list(dict.fromkeys(plan[2] for plan in plans.values()))
    index.rewire_sink(name, "CLK0", _pin(cell, "CLK0", None), clock)
    index.rewire_sink(name, "RST0", _pin(cell, "RST0", None), "0")
    for i, enable in enumerate(enables):
        index.rewire_sink(name, f"CE{i}", _pin(cell, f"CE{i}", None), enable)
    for letter, plan in plans.items():
        reg = regs[letter]
        cell["parameters"].update({f"{reg}_CLK": "CLK0", f"{reg}_CE": f"CE{enables.index(plan[2])}",
                                   f"{reg}_RST": "RST0"})
        outcomes[letter] = "absorbed"
    if "P" in plans:
        _absorb_outputs(index, name, plans["P"][0], report)
        report.dsp_outputs_absorbed += 1
    else:
        for letter in "AB":
            for pin, ff in plans[letter][0].items():
                index.rewire_sink(name, pin, _pin(cell, pin), _pin(index.cells[ff.name], "DI", "x"))
            report.dsp_inputs_absorbed += 1
        for ff_name in dict.fromkeys(ff.name for letter in "AB" for ff in plans[letter][0].values()):
            if index.sinks.get(_pin(index.cells[ff_name], "Q")):
                report.ffs_duplicated += 1
            else:
                index.remove(ff_name)
                report.ffs_removed += 1
    for letter in "ABP":
        if letter in outcomes:
            report._outcome(MULT, name, letter, outcomes[letter])


def pack_ecp5(netlist: dict) -> tuple[dict, PackReport]:
    """A copy of the Yosys JSON ``netlist`` (flattened ``synth_ecp5`` output) with RAM output registers and DSP
    input/output registers absorbed as the module docstring describes, and the :class:`PackReport`."""
    packed = copy.deepcopy(netlist)
    module = packed["modules"][_find_top(packed)]
    index = _Index(module)
    report = PackReport()
    for name in sorted(index.cells):
        if name in index.cells and index.cells[name]["type"] == RAM:
            _pack_ram(index, name, report)
    for name in sorted(index.cells):
        if name in index.cells and index.cells[name]["type"] == MULT:
            _pack_mult(index, name, report)
    return packed, report


def cell_counts(netlist: dict) -> dict[str, int]:
    """Cells of the top module by type (what ``stat -json`` reports as ``num_cells_by_type`` for a flat design)."""
    module = netlist["modules"][_find_top(netlist)]
    counts = Counter(cell["type"] for cell in module["cells"].values() if not cell["type"].startswith("$scopeinfo"))
    return dict(sorted(counts.items()))
