"""Output-stationary processing element.

::

              w_in (signed w_bits)
                 │
    a_in ──▶ ┌───┴─────────┐ ──▶ a_out      (a, valid, last registered: 1 cycle per PE)
    valid    │ product ← a·w│     valid_out
    last     │ acc += prod. │     last_out
    max_mode └───┬─────────┘                (or acc = max(acc, product): pooling)
                 ▼ w_out                    (registered)
    shadow_in ─▶ shadow ─▶ shadow_out       (column drain chain, shifts when `shift`)

Two pipeline stages: the cycle an operand pair arrives (``a_in``, ``w_in``, ``valid``, ``last``) its product goes
to the ``product`` register (the multiplier alone between registers: FF → DSP → FF, the DSP's pipelined path;
in an array the multiplier reads copies of the operand registers that feed nothing else, ``a_mul``/``w_mul``),
while ``a``, ``w``, ``valid`` and ``last`` go to the neighbours; on the next cycle ``valid_out``/``last_out`` (the
same registers, one cycle later) accumulate it::

    cycle      c               c + 1
    inputs     a, w, valid     (next pair)
    product    ← a·w           acc += product (valid_out); last_out: shadow ← acc + product, acc ← 0

On a cycle with ``valid_out``: ``acc += product``; if ``last_out`` is also high the finished sum ``acc + product``
goes to ``shadow`` and ``acc`` restarts at 0, so the next tile can stream in behind it without a gap. While
``shift`` is high ``shadow`` takes ``shadow_in`` (the PE below): R shifts drain a column top-first. The controller
never captures and shifts in the same cycle (see controller.py for the schedule that guarantees it).

With ``cfg.product_rounding`` every product is rounded before it is used: ``round_shift(a * w, product_shift,
product_rounding)`` (hwgen.arch.fixed, both constant over a layer), hls4ml's products assigned to a coarser
accumulator type; a layer without it sets the shift to 0. Cost: a barrel shifter and a rounding increment per PE
(between the multiplier and the product register).

With ``cfg.max_pool``, a ``max_mode`` input (constant over a layer) makes the PE a max unit: ``acc = max(acc, a * w)``. A MaxPool runs with
operands ``code - min_code ≥ 0`` (padding fed as 0, the type's minimum, so it never wins) and 0/1 weights that
select the channel, so ``acc`` restarting at 0 is the identity of the max (compile.py, ``pool``). Cost: one
``acc_bits`` comparator and a mux per PE, sharing the multiplier; designs without MaxPool leave it out.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..fixed import round_shift_var
from ..hdl import KEEP_APART
from .config import SystolicConfig


def _product(a, w, broken: bool):
    """``a · w``, or ``a · w + 1`` for the test hook that breaks one PE."""
    return a * w + 1 if broken else a * w


def operand_members(shapes: dict, copies: bool) -> dict:
    """The multiplier's own operand inputs (``{name}_mul``), present when the array gives it ``copies``."""
    return {f"{name}_mul": In(shape) for name, shape in shapes.items()} if copies else {}


def rounding_members(cfg: SystolicConfig) -> dict:
    """The product-rounding inputs of a PE or an array (present with ``cfg.product_rounding``)."""
    return {"product_shift": In(unsigned(6)), "product_rounding": In(unsigned(3))} if cfg.product_rounding else {}


def rounded_product(m: Module, component, a, w, broken: bool):
    """The PE's product register: ``a · w`` of the previous cycle, rounded by the layer's shift and mode when the
    configuration has product rounding."""
    cfg = component.cfg
    product = Signal(signed(cfg.operand_bits + cfg.w_bits + cfg.product_rounding), name="product", reset_less=True)
    raw = _product(a, w, broken)
    if cfg.product_rounding:
        raw = round_shift_var(m, raw, component.product_shift,
                              component.product_rounding, cfg.operand_bits + cfg.w_bits + 1, "product_round")
    m.d.sync += product.eq(raw)
    return product


def _forward_attrs(pe, operand: str) -> dict:
    """The attributes of the register forwarding ``operand``: kept apart from the array's copy of it, if any."""
    return KEEP_APART if operand in pe.copied else {}


def _operands(pe, a, w):
    """The multiplier's operands: ``a`` and ``w``, or the copies the array gives the PE."""
    return (getattr(pe, "a_mul", a), getattr(pe, "w_mul", w))


class OutputStationaryPE(wiring.Component):
    """With ``operand_copies`` the multiplier reads ``a_mul`` and ``w_mul`` instead of ``a_in`` and ``w_in``: the
    same values, from registers of their own (array.py); ``copied``: the operands (``"a"``, ``"w"``) whose forwarding
    register the array copies for the neighbour's multiplier."""

    def __init__(self, cfg: SystolicConfig, broken: bool = False, operand_copies: bool = False,
                 copied: tuple = ()):
        self.cfg = cfg
        self.broken = broken
        self.copied = copied
        acc = signed(cfg.acc_bits)
        a_shape, w_shape = signed(cfg.operand_bits), signed(cfg.w_bits)
        super().__init__({
            "a_in": In(a_shape), "valid": In(1), "last": In(1), "w_in": In(w_shape),
            "a_out": Out(a_shape), "valid_out": Out(1), "last_out": Out(1), "w_out": Out(w_shape),
            "shift": In(1), "shadow_in": In(acc), "shadow_out": Out(acc),
            **({"max_mode": In(1)} if cfg.max_pool else {}),
            **rounding_members(cfg), **operand_members({"a": a_shape, "w": w_shape}, operand_copies),
        })

    def elaborate(self, platform):
        m = Module()
        accumulator = Signal(self.shadow_out.shape())
        # data registers need no reset (only valid/last, and the accumulator that starts every tile at 0, do):
        # fewer reset nets in hardware, less work per cycle in simulation
        a, w = (Signal.like(port, reset_less=True, attrs=_forward_attrs(self, name))
                for name, port in (("a", self.a_out), ("w", self.w_out)))
        shadow = Signal.like(self.shadow_out, reset_less=True)
        total = Signal.like(accumulator)               # one multiply-add (or max), shared by both uses
        product = rounded_product(m, self, *_operands(self, self.a_in, self.w_in), self.broken)
        if self.cfg.max_pool:
            m.d.comb += total.eq(Mux(self.max_mode, Mux(product > accumulator, product, accumulator),
                                     accumulator + product))
        else:
            m.d.comb += total.eq(accumulator + product)
        m.d.sync += [a.eq(self.a_in), self.valid_out.eq(self.valid), self.last_out.eq(self.last & self.valid),
                     w.eq(self.w_in)]
        m.d.comb += [self.a_out.eq(a), self.w_out.eq(w), self.shadow_out.eq(shadow)]
        # second stage: the registered product with the registered valid/last (the ones forwarded to the right)
        with m.If(self.valid_out):
            m.d.sync += accumulator.eq(Mux(self.last_out, 0, total))
            with m.If(self.last_out):
                m.d.sync += shadow.eq(total)
        with m.If(self.shift):
            m.d.sync += shadow.eq(self.shadow_in)
        return m


class WeightStationaryPE(wiring.Component):
    """Weight-stationary processing element.

    ::

                  psum_in, w_chain_in
                      │
        a_in ──▶ ┌────┴─────────────┐ ──▶ a_out                (a, commit registered: 1 cycle per PE)
      commit_in  │ product ← a · w  │     commit_out
                 │ psum ← psum_in + │     shift:  w_chain ← w_chain_in (preload the next fold's weight)
                 │        product   │     commit_in: w ← w_chain as it is after this cycle, for the next product
                 └────┬─────────────┘
                      ▼ psum_out, w_chain_out (registered)

    Two stages: the product of ``a_in`` and the active weight goes to the ``product`` register (FF → DSP → FF), and
    ``psum_out = psum_in + product`` one cycle later, i.e. two cycles after ``a_in`` (with ``cfg.max_pool``,
    ``max_mode``: ``max(psum_in, product)``, MaxPool on operands ≥ 0). ``psum_in`` comes from the PE above, whose
    operand arrived one cycle earlier, so it is ready exactly when this PE's product is; ``a_out`` still moves on
    after one cycle. Operands outside the fold arrive as 0. ``commit`` travels one cycle ahead of the first
    operand of a fold, so the array switches weights along the same wavefront as the data and the next fold's
    operands follow the last ones of the previous fold with no gap; arriving early, it loads the weight register
    the multiplier reads (``w_chain`` as the same edge's shift leaves it), so the multiplier's operands both come
    straight from registers (FPGA: the DSP's input registers can absorb them).
    """

    def __init__(self, cfg: SystolicConfig, broken: bool = False, operand_copies: bool = False,
                 copied: tuple = ()):
        self.cfg = cfg
        self.broken = broken
        self.copied = copied
        super().__init__({
            "a_in": In(signed(cfg.operand_bits)), "a_out": Out(signed(cfg.operand_bits)),
            **operand_members({"a": signed(cfg.operand_bits)}, operand_copies),
            "commit_in": In(1), "commit_out": Out(1),
            "psum_in": In(signed(cfg.acc_bits)), "psum_out": Out(signed(cfg.acc_bits)),
            "shift": In(1), **({"max_mode": In(1)} if cfg.max_pool else {}),
            "w_chain_in": In(signed(cfg.w_bits)), "w_chain_out": Out(signed(cfg.w_bits)),
            **rounding_members(cfg),
        })

    def elaborate(self, platform):
        m = Module()
        weight = Signal(signed(self.cfg.w_bits), reset_less=True)
        a = Signal.like(self.a_out, reset_less=True, attrs=_forward_attrs(self, "a"))
        psum, chain = (Signal.like(port, reset_less=True) for port in (self.psum_out, self.w_chain_out))
        product = rounded_product(m, self, *_operands(self, self.a_in, weight), self.broken)
        m.d.sync += [a.eq(self.a_in), self.commit_out.eq(self.commit_in),
                     psum.eq(Mux(self.max_mode, Mux(product > self.psum_in, product, self.psum_in),
                                 self.psum_in + product) if self.cfg.max_pool else self.psum_in + product)]
        m.d.comb += [self.a_out.eq(a), self.psum_out.eq(psum), self.w_chain_out.eq(chain)]
        with m.If(self.shift):
            m.d.sync += chain.eq(self.w_chain_in)
        with m.If(self.commit_in):
            m.d.sync += weight.eq(Mux(self.shift, self.w_chain_in, chain))
        return m
