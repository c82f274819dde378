"""Small HDL helpers shared by the generators."""
from __future__ import annotations

from amaranth import Module, Shape, Signal, Value
from amaranth.lib.memory import Memory


def select(m: Module, index: Value, values: list, shape: Shape, name: str) -> Signal:
    """``values[index]`` as a case statement (0 when ``index`` is out of range).

    Indexing a packed ``ArrayLayout`` view with a signal emits a variable shift of the whole packed word, which
    Verilator evaluates every cycle over every bit; a ``Switch`` emits one branch per value, of which one runs.
    """
    out = Signal(shape, name=name)
    with m.Switch(index):
        for position, value in enumerate(values):
            with m.Case(position):
                m.d.comb += out.eq(value)
    return out


def ram(m: Module, name: str, *, shape, depth: int, init=()) -> Memory:
    """A memory added to ``m`` as submodule ``name``, marked so that a read of the word being written is undefined.

    The generators never use a word read in the cycle the same word is written through the other port (weights,
    thresholds and the program are written only while the accelerator is idle; scratchpad regions a layer reads
    are not the ones it writes; reads are enabled only when their word is used; tests/amaranth_host.py replaces
    every such read with a random word in the simulated runs, which stay bit-exact). The
    ``no_rw_check`` attribute tells synthesis so: without it, Yosys emulates read-first collisions with a
    registered bypass multiplexer after the block RAM, whose LUT also keeps the register that follows the RAM out
    of the RAM's own output register (ECP5 DP16KD clock-to-output 5.83 ns without it, iCE40 and Xilinx alike).
    """
    memory = Memory(shape=shape, depth=depth, init=list(init), attrs={"no_rw_check": 1})
    m.submodules[name] = memory
    return memory


def delayed(m: Module, value, cycles: int, name: str, reset_less: bool = True):
    """``value`` ``cycles`` cycles later, through a chain of registers named ``{name}_d1`` … (data registers
    need no reset; control flags pass ``reset_less=False``)."""
    for stage in range(cycles):
        register = Signal.like(value, name=f"{name}_d{stage + 1}", reset_less=reset_less)
        m.d.sync += register.eq(value)
        value = register
    return value


REPLICA = "hwgen_replica"       # the attribute hwgen's Yosys flows look for (flows/*.ys.j2): keep the flip-flop
# the attributes of a register synthesis must not merge with an identical one: a replica, or the original that a
# replica copies (Yosys merges an unmarked flip-flop into its marked twin: both then drive the twin's loads)
KEEP_APART = {"keep": 1, REPLICA: 1}


def replica(m: Module, value, name: str, enable=None, reset_less: bool = True) -> Signal:
    """``value`` registered in a copy of its own, loaded while ``enable`` (always without): a flip-flop synthesis
    must not merge with identical ones.

    A register whose loads are spread over the device (the ports of every bank's or every lane's block RAMs) is
    copied per group of loads, so that each copy is placed beside its group and no route crosses the device in
    front of a block RAM. Identical flip-flops are merged by Yosys (``opt_merge``) and by vendor tools
    (equivalent-register removal), so a copy carries ``keep`` (vendor tools) and :data:`REPLICA`: hwgen's Yosys
    flows mark the flip-flops driving such wires ``keep`` before synthesis."""
    register = Signal.like(value, name=name, reset_less=reset_less, attrs=KEEP_APART)
    if enable is None:
        m.d.sync += register.eq(value)
    else:
        with m.If(enable):
            m.d.sync += register.eq(value)
    return register


def copies(name: str, count: int, shape=1, init: int = 0, reset_less: bool = False) -> list[Signal]:
    """``count`` flip-flop copies of one register (``{name}_{k}``), for loads spread over the device (one copy per
    bank, per lane or per array column); the caller assigns every copy wherever it assigns the register (``m.d.sync
    += [c.eq(v) for c in copies]``), so each is exact, not a cycle late like a :func:`replica` of the register.
    Marked like a replica, so that synthesis keeps them apart."""
    return [Signal(shape, name=f"{name}_{k}", init=init, reset_less=reset_less, attrs=KEEP_APART)
            for k in range(count)]
