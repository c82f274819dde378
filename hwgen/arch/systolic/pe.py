"""Output-stationary processing element.

::

              w_in (signed w_bits)
                 │
    a_in ──▶ ┌───┴────┐ ──▶ a_out      (a, valid, last registered: 1 cycle per PE)
    valid    │ acc += │     valid_out
    last     │  a * w │     last_out
             └───┬────┘
                 ▼ w_out               (registered)
    shadow_in ─▶ shadow ─▶ shadow_out  (column drain chain, shifts when `shift`)

On a cycle with ``valid``: ``acc += a * w``; if ``last`` is also high the finished sum ``acc + a * w`` goes to
``shadow`` and ``acc`` restarts at 0, so the next tile can stream in behind it without a gap. While ``shift`` is
high ``shadow`` takes ``shadow_in`` (the PE above): R shifts drain a column bottom-first. The controller never
captures and shifts in the same cycle (see controller.py for the schedule that guarantees it).
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import SystolicConfig


class OutputStationaryPE(wiring.Component):
    def __init__(self, cfg: SystolicConfig, broken: bool = False):
        self.cfg = cfg
        self.broken = broken
        acc = signed(cfg.acc_bits)
        super().__init__({
            "a_in": In(signed(cfg.operand_bits)), "valid": In(1), "last": In(1), "w_in": In(signed(cfg.w_bits)),
            "a_out": Out(signed(cfg.operand_bits)), "valid_out": Out(1), "last_out": Out(1),
            "w_out": Out(signed(cfg.w_bits)),
            "shift": In(1), "shadow_in": In(acc), "shadow_out": Out(acc),
        })

    def elaborate(self, platform):
        m = Module()
        accumulator = Signal(self.shadow_out.shape())
        product = self.a_in * self.w_in + (1 if self.broken else 0)
        total = accumulator + product
        m.d.sync += [self.a_out.eq(self.a_in), self.valid_out.eq(self.valid), self.last_out.eq(self.last & self.valid),
                     self.w_out.eq(self.w_in)]
        with m.If(self.valid):
            m.d.sync += accumulator.eq(Mux(self.last, 0, total))
            with m.If(self.last):
                m.d.sync += self.shadow_out.eq(total)
        with m.If(self.shift):
            m.d.sync += self.shadow_out.eq(self.shadow_in)
        return m


class WeightStationaryPE(wiring.Component):
    """Weight-stationary processing element.

    ::

                  psum_in, w_chain_in
                      │
        a_in ──▶ ┌────┴─────────────┐ ──▶ a_out                (a, commit registered: 1 cycle per PE)
      commit_in  │ psum += a · w    │     commit_out
                 │ w: active weight │     shift:  w_chain ← w_chain_in (preload the next fold's weight)
                 └────┬─────────────┘     commit_in: w ← w_chain, already used by this cycle's product
                      ▼ psum_out, w_chain_out (registered)

    ``psum_out = psum_in + a_in · w`` one cycle later; operands outside the fold arrive as 0. ``commit`` travels
    with the first operand of a fold, so the array switches weights along the same wavefront as the data and the
    next fold's operands follow the last ones of the previous fold with no gap.
    """

    def __init__(self, cfg: SystolicConfig, broken: bool = False):
        self.cfg = cfg
        self.broken = broken
        super().__init__({
            "a_in": In(signed(cfg.operand_bits)), "a_out": Out(signed(cfg.operand_bits)),
            "commit_in": In(1), "commit_out": Out(1),
            "psum_in": In(signed(cfg.acc_bits)), "psum_out": Out(signed(cfg.acc_bits)),
            "shift": In(1),
            "w_chain_in": In(signed(cfg.w_bits)), "w_chain_out": Out(signed(cfg.w_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        weight = Signal(signed(self.cfg.w_bits))
        active = Mux(self.commit_in, self.w_chain_out, weight)
        product = self.a_in * active + (1 if self.broken else 0)
        m.d.sync += [self.a_out.eq(self.a_in), self.commit_out.eq(self.commit_in),
                     self.psum_out.eq(self.psum_in + product)]
        with m.If(self.shift):
            m.d.sync += self.w_chain_out.eq(self.w_chain_in)
        with m.If(self.commit_in):
            m.d.sync += weight.eq(self.w_chain_out)
        return m
