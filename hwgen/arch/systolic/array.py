"""R×C output-stationary PE grid with input skew.

::

    a[0] ─────────────▶ PE00 ─▶ PE01 ─▶ … PE0,C-1        w[j] enters column j after j skew registers;
    a[1] ─[1 reg]─────▶ PE10 ─▶ PE11 ─▶ …                a[i] (with valid/last) enters row i after i registers,
    …                    │        │                       so PE(i, j) sees a[m_i, k] and w[k, n_j] together,
    a[R-1] ─[R-1 regs]─▶ PE…     …                       i + j cycles after they were presented.
                          ▼ shadow chains ▼
                     drain[0] … drain[C-1]   (bottom row's shadows; ``shift`` moves every column down by one)

Latency: the operand pair presented at cycle c reaches PE(i, j) at cycle c + i + j; PE(R-1, C-1)'s ``last_out``
(the tile's capture is complete everywhere) is high at cycle c_last + R + C - 1.
"""
from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import SystolicConfig
from .pe import OutputStationaryPE, WeightStationaryPE


class OutputStationaryArray(wiring.Component):
    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        super().__init__({
            "a": In(data.ArrayLayout(signed(cfg.operand_bits), cfg.rows)),
            "valid": In(1),
            "last": In(1),
            "w": In(data.ArrayLayout(signed(cfg.w_bits), cfg.cols)),
            "shift": In(1),
            # every PE takes max(acc, a·w) instead of acc + a·w (MaxPool; per layer)
            **({"max_mode": In(1)} if cfg.max_pool else {}),
            "drain": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
            "captured": Out(1),      # PE(R-1, C-1) captured the tile's last product on the previous cycle
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pes = [[OutputStationaryPE(cfg, broken=cfg.broken_pe == (i, j)) for j in range(cfg.cols)]
               for i in range(cfg.rows)]
        for i in range(cfg.rows):
            for j in range(cfg.cols):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]

        for i in range(cfg.rows):
            a, valid, last = self.a[i], self.valid, self.last
            for stage in range(i):
                a_r = Signal.like(a, name=f"a_skew_{i}_{stage}", reset_less=True)
                v_r = Signal(name=f"valid_skew_{i}_{stage}")
                l_r = Signal(name=f"last_skew_{i}_{stage}", reset_less=True)     # only read with valid
                m.d.sync += [a_r.eq(a), v_r.eq(valid), l_r.eq(last)]
                a, valid, last = a_r, v_r, l_r
            m.d.comb += [pes[i][0].a_in.eq(a), pes[i][0].valid.eq(valid), pes[i][0].last.eq(last)]
            for j in range(1, cfg.cols):
                left = pes[i][j - 1]
                m.d.comb += [pes[i][j].a_in.eq(left.a_out), pes[i][j].valid.eq(left.valid_out),
                             pes[i][j].last.eq(left.last_out)]

        for j in range(cfg.cols):
            w = self.w[j]
            for stage in range(j):
                w_r = Signal.like(w, name=f"w_skew_{j}_{stage}", reset_less=True)
                m.d.sync += w_r.eq(w)
                w = w_r
            m.d.comb += pes[0][j].w_in.eq(w)
            for i in range(1, cfg.rows):
                m.d.comb += pes[i][j].w_in.eq(pes[i - 1][j].w_out)
            for i in range(cfg.rows):
                m.d.comb += pes[i][j].shift.eq(self.shift)
                if cfg.max_pool:
                    m.d.comb += pes[i][j].max_mode.eq(self.max_mode)
                if i:
                    m.d.comb += pes[i][j].shadow_in.eq(pes[i - 1][j].shadow_out)
            m.d.comb += self.drain[j].eq(pes[cfg.rows - 1][j].shadow_out)
        m.d.comb += self.captured.eq(pes[cfg.rows - 1][cfg.cols - 1].last_out)
        return m


class WeightStationaryArray(wiring.Component):
    """R×C weight-stationary PE grid with output deskew.

    ::

        a[i] ──▶ PE(i,0) ──▶ PE(i,1) ──▶ …       row i carries feature k0 + i; the caller presents sample m to row i
                   │ psum      │                 at cycle m + i (the skew is done by addressing the banks)
                   ▼           ▼
                 PE(R-1,0)   PE(R-1,1) …
                   ▼ [C-1 regs] ▼ [C-2 regs] …   deskew: every column's sum for sample m leaves at m + R + C - 1
                 out[0]      out[1]   …

    Weights enter at the top of each column through ``w_top`` and shift down while ``shift`` is high (R shifts
    place row i's weight in row i); ``commit[i]``, presented with row i's first operand of a fold, makes the
    shifted weight active in each PE of row i as that operand reaches it.
    """

    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        super().__init__({
            "a": In(data.ArrayLayout(signed(cfg.operand_bits), cfg.rows)),
            "w_top": In(data.ArrayLayout(signed(cfg.w_bits), cfg.cols)),
            "commit": In(data.ArrayLayout(unsigned(1), cfg.rows)), "shift": In(1),
            "out": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pes = [[WeightStationaryPE(cfg, broken=cfg.broken_pe == (i, j)) for j in range(cfg.cols)]
               for i in range(cfg.rows)]
        for i in range(cfg.rows):
            for j in range(cfg.cols):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [pe.shift.eq(self.shift),
                             pe.a_in.eq(self.a[i] if j == 0 else pes[i][j - 1].a_out),
                             pe.commit_in.eq(self.commit[i] if j == 0 else pes[i][j - 1].commit_out),
                             pe.psum_in.eq(0 if i == 0 else pes[i - 1][j].psum_out),
                             pe.w_chain_in.eq(self.w_top[j] if i == 0 else pes[i - 1][j].w_chain_out)]
        for j in range(cfg.cols):
            value = pes[cfg.rows - 1][j].psum_out
            for stage in range(cfg.cols - 1 - j):
                delayed = Signal.like(value, name=f"deskew_{j}_{stage}", reset_less=True)
                m.d.sync += delayed.eq(value)
                value = delayed
            m.d.comb += self.out[j].eq(value)
        return m
