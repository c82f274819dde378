"""Small HDL helpers shared by the generators."""
from __future__ import annotations

from amaranth import Module, Shape, Signal, Value


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
