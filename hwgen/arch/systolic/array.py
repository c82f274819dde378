"""R×C output-stationary PE grid with input skew.

::

    a[0] ─────────────▶ PE00 ─▶ PE01 ─▶ … PE0,C-1        w[j] enters column j after j skew registers;
    a[1] ─[1 reg]─────▶ PE10 ─▶ PE11 ─▶ …                a[i] (with valid/last) enters row i after i registers,
    …                    │        │                       so PE(i, j) sees a[m_i, k] and w[k, n_j] together,
    a[R-1] ─[R-1 regs]─▶ PE…     …                       i + j cycles after they were presented.
                     drain[0] … drain[C-1]   (top row's shadows; ``shift`` moves every column up by one,
                          ▲ shadow chains ▲    so a tile drains top row first)

Each PE's multiplier reads copies of the registers its operands come from (PE(0, 0)'s: the caller's, ``a0_mul`` and
``w0_mul``): loaded alike, they feed only its DSP, so the placer stands them beside it (:func:`_operand_copies`).

Latency: the operand pair presented at cycle c reaches PE(i, j) at cycle c + i + j and is accumulated there one
cycle later (pe.py: product register, then accumulator); PE(R-1, C-1) captures the tile's last sum at the end of
cycle c_last + R + C - 1 (its ``last_out``), and ``captured`` (that ``last_out`` registered: the tile's capture is
complete everywhere) is high at cycle c_last + R + C.
"""
from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..hdl import KEEP_APART, delayed, replica
from .config import SystolicConfig
from .pe import OutputStationaryPE, WeightStationaryPE, rounding_members


OPERANDS, FLAGS = ("a", "w"), ("valid", "commit")


def _skewed(m: Module, values: dict, stages: int, index: int):
    """``values`` (name → value) through ``stages`` registers each (``{name}_skew_{index}_{stage}``; only the flags
    reset, the operands' are kept apart from their copies, :func:`_operand_copies`): the delayed values, and the last
    stage's inputs (None without a stage)."""
    before = None
    for stage in range(stages):
        before = values
        values = {name: Signal.like(value, name=f"{name}_skew_{index}_{stage}", reset_less=name not in FLAGS,
                                    attrs=KEEP_APART if name in OPERANDS else {}) for name, value in values.items()}
        m.d.sync += [values[name].eq(before[name]) for name in values]
    return values, before


def _operand_copies(m: Module, first, inputs: list, name: str) -> list:
    """The multiplier operands of a row's (column's) PEs: ``first`` for the first PE, then for each next one a
    register of its own loaded like the previous PE's forwarding register (from that PE's input ``inputs[k]``: the
    same value on the same cycle, :func:`~hwgen.arch.hdl.replica`). The register a PE takes its operand from also
    forwards it to the PE's own register, so it cannot stand beside the neighbour's DSP (4×4 on ECP5: 3.4 ns of
    route in front of the multiplier's 3.5 ns setup); the copy feeds the DSP alone."""
    return [first, *(replica(m, source, f"{name}_{k + 1}") for k, source in enumerate(inputs[:-1]))]


def _copied(cfg: SystolicConfig, i: int, j: int, operands: tuple) -> tuple:
    """The operands PE(i, j) forwards to a neighbour (``a`` right, ``w`` down), which the neighbour's multiplier
    reads from a copy."""
    return tuple(name for name in operands if (name == "a" and j < cfg.cols - 1) or (name == "w" and i < cfg.rows - 1))


class OutputStationaryArray(wiring.Component):
    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        super().__init__({
            "a": In(data.ArrayLayout(signed(cfg.operand_bits), cfg.rows)),
            "valid": In(1),
            "last": In(1),
            "w": In(data.ArrayLayout(signed(cfg.w_bits), cfg.cols)),
            # a[0] and w[0] again, from copies of the caller's registers that drive them (PE(0, 0)'s multiplier's)
            "a0_mul": In(signed(cfg.operand_bits)), "w0_mul": In(signed(cfg.w_bits)),
            "shift": In(data.ArrayLayout(unsigned(1), cfg.cols)),        # per column (a copy each)
            # every PE takes max(acc, a·w) instead of acc + a·w (MaxPool; per layer)
            **({"max_mode": In(1)} if cfg.max_pool else {}),
            "drain": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
            "captured": Out(1),      # PE(R-1, C-1) captured the tile's last sum on the previous cycle
            "capturing": Out(1),     # PE(R-1, C-1) captures it on this cycle (``captured`` of the next one)
            **rounding_members(cfg),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pes = [[OutputStationaryPE(cfg, broken=cfg.broken_pe == (i, j), operand_copies=True,
                                   copied=_copied(cfg, i, j, ("a", "w"))) for j in range(cfg.cols)]
               for i in range(cfg.rows)]
        for i in range(cfg.rows):
            for j in range(cfg.cols):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]

        for i in range(cfg.rows):
            skewed, before = _skewed(m, {"a": self.a[i], "valid": self.valid, "last": self.last}, i, i)
            row = pes[i]
            inputs = [skewed["a"]] + [pe.a_out for pe in row[:-1]]
            first = self.a0_mul if i == 0 else replica(m, before["a"], f"a_mul_{i}_0")
            for pe, a_in, a_mul, left in zip(row, inputs, _operand_copies(m, first, inputs, f"a_mul_{i}"),
                                             [None] + row[:-1]):
                valid, last = (skewed["valid"], skewed["last"]) if left is None else (left.valid_out, left.last_out)
                m.d.comb += [pe.a_in.eq(a_in), pe.a_mul.eq(a_mul), pe.valid.eq(valid), pe.last.eq(last)]

        for j in range(cfg.cols):
            column = [pes[i][j] for i in range(cfg.rows)]
            skewed, before = _skewed(m, {"w": self.w[j]}, j, j)
            inputs = [skewed["w"]] + [pe.w_out for pe in column[:-1]]
            first = self.w0_mul if j == 0 else replica(m, before["w"], f"w_mul_{j}_0")
            for pe, w_in, w_mul in zip(column, inputs, _operand_copies(m, first, inputs, f"w_mul_{j}")):
                m.d.comb += [pe.w_in.eq(w_in), pe.w_mul.eq(w_mul)]
            for i in range(cfg.rows):
                m.d.comb += pes[i][j].shift.eq(self.shift[j])
                if cfg.max_pool:
                    m.d.comb += pes[i][j].max_mode.eq(self.max_mode)
                if cfg.product_rounding:
                    m.d.comb += [pes[i][j].product_shift.eq(self.product_shift),
                                 pes[i][j].product_rounding.eq(self.product_rounding)]
                if i < cfg.rows - 1:
                    m.d.comb += pes[i][j].shadow_in.eq(pes[i + 1][j].shadow_out)
            m.d.comb += self.drain[j].eq(pes[0][j].shadow_out)
        # the corner PE accumulates (and captures) on the cycle its last_out is high: one register later, every
        # shadow holds the tile. ``capturing`` is that last_out again: the array's ``valid & last`` through R + C - 1
        # registers of its own (row R - 1's skew, C - 1 PEs, the corner's), a chain the placer spreads from the
        # array's input to the controller that reads it (a copy of the corner's register stood beside the corner,
        # 5.3 ns of route from the controller's loads: the 4×4 array's path)
        chain = delayed(m, self.valid & self.last, cfg.rows + cfg.cols - 2, "capture_chain", reset_less=False)
        m.d.comb += self.capturing.eq(replica(m, chain, "capturing", reset_less=False))
        m.d.sync += self.captured.eq(self.capturing)
        return m


class WeightStationaryArray(wiring.Component):
    """R×C weight-stationary PE grid with input skew and output deskew.

    ::

        a[i] ─[i regs]─▶ PE(i,0) ──▶ PE(i,1) ──▶ …   row i carries feature k0 + i; the caller presents sample m to
        commit ─[i regs]─┘ │ psum     │              every row at once, row i sees it i cycles later
                           ▼          ▼
                         PE(R-1,0)  PE(R-1,1) …
                           ▼ [C-1 regs] ▼ [C-2 regs] …   deskew: every column's sum for sample m presented at
                         out[0]      out[1]   …          cycle c leaves at c + R + C (each PE: 2 stages, pe.py)

    Weights enter at the top of each column through ``w_top`` and shift down while ``shift`` is high (R shifts
    place row i's weight in row i); ``commit``, presented one cycle before a fold's first sample, makes the
    shifted weight active in each PE as that sample reaches it. ``max_mode``: every PE passes ``max(psum, a·w)`` (pooling).
    """

    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        super().__init__({
            "a": In(data.ArrayLayout(signed(cfg.operand_bits), cfg.rows)),
            "a0_mul": In(signed(cfg.operand_bits)),     # a[0] again, from a copy of the caller's register driving it
            "w_top": In(data.ArrayLayout(signed(cfg.w_bits), cfg.cols)),
            "commit": In(1), "shift": In(1), **({"max_mode": In(1)} if cfg.max_pool else {}),
            "out": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
            **rounding_members(cfg),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pes = [[WeightStationaryPE(cfg, broken=cfg.broken_pe == (i, j), operand_copies=True,
                                   copied=_copied(cfg, i, j, ("a",))) for j in range(cfg.cols)]
               for i in range(cfg.rows)]
        for i in range(cfg.rows):
            skewed, before = _skewed(m, {"a": self.a[i], "commit": self.commit}, i, i)
            row = pes[i]
            inputs = [skewed["a"]] + [pe.a_out for pe in row[:-1]]
            first = self.a0_mul if i == 0 else replica(m, before["a"], f"a_mul_{i}_0")
            a_muls = _operand_copies(m, first, inputs, f"a_mul_{i}")
            for j, (pe, a_in, a_mul) in enumerate(zip(row, inputs, a_muls)):
                m.submodules[f"pe_{i}_{j}"] = pe
                if cfg.max_pool:
                    m.d.comb += pe.max_mode.eq(self.max_mode)
                m.d.comb += [pe.shift.eq(self.shift), pe.a_in.eq(a_in), pe.a_mul.eq(a_mul),
                             pe.commit_in.eq(skewed["commit"] if j == 0 else row[j - 1].commit_out),
                             pe.psum_in.eq(0 if i == 0 else pes[i - 1][j].psum_out),
                             pe.w_chain_in.eq(self.w_top[j] if i == 0 else pes[i - 1][j].w_chain_out)]
                if cfg.product_rounding:
                    m.d.comb += [pe.product_shift.eq(self.product_shift),
                                 pe.product_rounding.eq(self.product_rounding)]
        for j in range(cfg.cols):
            value = pes[cfg.rows - 1][j].psum_out
            for stage in range(cfg.cols - 1 - j):
                delayed = Signal.like(value, name=f"deskew_{j}_{stage}", reset_less=True)
                m.d.sync += delayed.eq(value)
                value = delayed
            m.d.comb += self.out[j].eq(value)
        return m
