"""Address walkers shared by both controllers: the pixels of a layer and the features of its kernel.

Both controllers feed the array by walking two sequences with counters and adders only (no multiplier, no
divider), one step per cycle:

- :class:`PixelWalk` walks a layer's pixels: ``walk_w`` per row, ``walk_s`` per sample (a sample may end inside a
  row: the OS walk rounds samples to the bank rotation, compile.py ``os_walk``). It keeps the pixel's slot in a
  tensor at three levels (sample start, row start, pixel) so that a row or sample wrap needs no multiplication;
  the feed's walk also keeps the pixel's input coordinates ``(x, y)`` (steps ``px_sx``/``px_sy``), the drain's
  walk whether the pixel is an output (on the stride lattice ``lat_sx``/``lat_sy``, within ``lat_w``/``lat_h``).
- :class:`FeatureWalk` walks a layer's features in (ky, kx, c) order: ``c`` over ``cgp`` channel positions from
  ``c0`` (word, lane), the kernel position's slot offset δ and its input-coordinate offset (dx, dy).

Slots are kept as pairs (word address of their group of R slots, slot mod R), ``addr = base + (slot // R) ·
stride``; every step adds a constant the compiler splits the same way (compile.py ``split``), carrying into the
next group when the residue reaches R::

    (addr, r) + (words, dr) = (addr + words + [r + dr ≥ R]·stride, (r + dr) mod R)       (all 16-bit, modulo 2^16)

For speed (one adder between registers) every constant step is prepared once per layer (``prepare``, in the
controllers' DECODE state) as a :class:`SlotStep`: ``words``, ``words + stride`` and ``R - dr``, so a step is a
small compare ``r ≥ R - dr`` choosing between two sums formed in parallel; the walks' wraps are chosen by
registered flags (:class:`Index`: the pixel's position in its sample and row, the feature's channel and kernel
column), set with the indices from compares against prepared ``n - 2``.
"""
from __future__ import annotations

from contextlib import nullcontext

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from ..hdl import copies
from .config import STEP_GROUPS, SystolicConfig, index_range


def slot_add(addr, r, words, dr, stride, rows: int) -> tuple:
    """``(addr, r) + (words, dr)`` with ``r, dr < rows``: the new (address, residue) as expressions."""
    total = r + dr
    carry = total >= rows
    return addr + words + Mux(carry, stride, 0), Mux(carry, total - rows, total)


class SlotStep:
    """A constant step ``(words, dr)`` over slots kept as (word address, residue), prepared once per layer."""

    def __init__(self, rows: int, name: str):
        self.rows = rows
        self.words = Signal(16, name=f"{name}_words")
        self.carry_words = Signal(16, name=f"{name}_carry_words")        # words + stride
        self.dr = Signal(index_range(rows), name=f"{name}_dr")
        self.limit = Signal(range(rows + 1), name=f"{name}_limit")        # R - dr: a residue ≥ it carries

    def prepare(self, words, dr, stride) -> list:
        return [self.words.eq(words), self.carry_words.eq(words + stride), self.dr.eq(dr),
                self.limit.eq(self.rows - dr)]

    def add(self, addr, r) -> tuple:
        """``(addr, r) + (words, dr)``, as :func:`slot_add`."""
        carry = r >= self.limit
        return Mux(carry, addr + self.carry_words, addr + self.words)[:16], Mux(carry, r - self.limit, r + self.dr)


class Index:
    """A 16-bit index counting ``0 … n - 1`` with a registered flag ``last`` (≡ ``value == n - 1``).

    A walker's step chooses between its wrap and its increment by this flag: a flip-flop in front of every walker
    register's multiplexer, where a 16-bit compare there was the controller's critical path. The flag is set with the
    value it describes: from ``n == 1`` when the index restarts (``single``, prepared once per layer; from the
    instruction in :meth:`start`, which may run in the cycle that prepares), else from ``value == n - 2``.

    ``slow``: the index never advances on two consecutive cycles, nor on the cycle after :meth:`prepare` or
    :meth:`start`; ``value == n - 2`` is then itself a register, compared on every cycle (:meth:`compare`, which the
    caller adds to its module once), so no compare stands in front of ``last``.

    ``flags``: the flag in that many exact copies (``lasts``; ``last`` is the first), for groups of loads spread
    over the controller: each group's enables read a copy of their own."""

    def __init__(self, name: str, slow: bool = False, flags: int = 1):
        self.value = Signal(16, name=name)
        self.lasts = [Signal(name=f"{name}_is_last")] if flags == 1 else copies(f"{name}_is_last", flags)
        self.last = self.lasts[0]
        self.before_last, self.single = Signal(16, name=f"{name}_before_last"), Signal(name=f"{name}_single")
        self.at_before_last = Signal(name=f"{name}_at_before_last") if slow else None

    def compare(self) -> list:
        """A slow index's registered compare (a statement for ``m.d.sync``)."""
        return [self.at_before_last.eq(self.value == self.before_last)]

    def prepare(self, n) -> list:
        return [self.before_last.eq(n - 2), self.single.eq(n == 1)]

    def start(self, n) -> list:
        return [self.value.eq(0), *(flag.eq(n == 1) for flag in self.lasts)]

    def restart(self) -> list:
        return [self.value.eq(0), *(flag.eq(self.single) for flag in self.lasts)]

    def next(self) -> tuple:
        """The value and flag :meth:`advance` loads, as expressions."""
        if self.at_before_last is None:
            return self.value + 1, self.value == self.before_last
        return self.value + 1, self.at_before_last

    def move(self, value, last) -> list:
        """Load ``value`` and ``last`` (:meth:`next`'s, or registered copies of them)."""
        return [self.value.eq(value), *(flag.eq(last) for flag in self.lasts)]

    def advance(self) -> list:
        return self.move(*self.next())


def mod_add(a, b, rows: int):
    """``(a + b) mod rows`` for ``a, b < rows``."""
    total = a + b
    return Mux(total >= rows, total - rows, total)


class PixelWalk:
    """One walk over a layer's pixels (see the module docstring); ``prefix`` names its step fields in the
    instruction: ``in`` (the feed, with coordinates) or ``out`` (the drain, with the output lattice)."""

    def __init__(self, rows: int, prefix: str):
        self.rows = rows
        self.prefix = prefix
        name = f"{prefix}_walk"
        self.col_index = Index(f"{name}_col", flags=STEP_GROUPS)
        self.pos_index = Index(f"{name}_pos", flags=STEP_GROUPS)
        self.col, self.pos, self.row = self.col_index.value, self.pos_index.value, Signal(16, name=f"{name}_row")
        self.addr, self.row_addr, self.smp_addr = (Signal(16, name=f"{name}_{n}") for n in ("addr", "row_addr",
                                                                                             "smp_addr"))
        self.r, self.row_r, self.smp_r = (Signal(index_range(rows), name=f"{name}_{n}") for n in ("r", "row_r",
                                                                                                  "smp_r"))
        if prefix == "in":
            self.x, self.y = Signal(16, name=f"{name}_x"), Signal(16, name=f"{name}_y")
            extra = [self.x, self.y]
        else:           # the lattice phases, and whether each is 0 (registered with it: the output test and the
            # step's choices read flip-flops, not compares); each phase's last value lat_s − 1 (prepared: the wrap
            # test is a compare with a register, no adder in front of it)
            self.phx, self.phy = Signal(8, name=f"{name}_phx"), Signal(8, name=f"{name}_phy")
            self.phx_zero, self.phy_zero = Signal(name=f"{name}_phx_zero"), Signal(name=f"{name}_phy_zero")
            self.phase_last = {axis: Signal(8, name=f"{name}_{axis}_last") for axis in ("phx", "phy")}
            extra = [self.phx, self.phy, self.phx_zero, self.phy_zero]
        self.signals = [self.col, self.col_index.last, self.row, self.pos, self.pos_index.last, self.addr,
                        self.row_addr, self.smp_addr, self.r, self.row_r, self.smp_r, *extra]
        self.steps = {kind: SlotStep(rows, f"{name}_{kind}") for kind in ("sample", "row", "x")}

    def prepare(self, instr, stride) -> list:
        """The layer's step constants (``stride``: words per group of R slots)."""
        field = lambda name: getattr(instr, f"{self.prefix}_{name}")      # noqa: E731
        lattice = ([self.phase_last["phx"].eq(instr.lat_sx - 1), self.phase_last["phy"].eq(instr.lat_sy - 1)]
                   if self.prefix == "out" else [])
        return [*(assignment for kind, step in self.steps.items()
                  for assignment in step.prepare(field(f"{kind}_words"), field(f"{kind}_r"), stride)),
                *self.pos_index.prepare(instr.walk_s), *self.col_index.prepare(instr.walk_w), *lattice]

    def start(self, instr, base) -> list:
        """The first pixel of sample 0, its slot 0 at word ``base``."""
        addresses = (self.addr, self.row_addr, self.smp_addr)
        zeros = (self.phx_zero, self.phy_zero) if self.prefix == "out" else ()
        own = (*addresses, self.col, self.col_index.last, self.pos, self.pos_index.last, *zeros)
        return [*(s.eq(0) for s in self.signals if not any(s is o for o in own)), *(a.eq(base) for a in addresses),
                *(z.eq(1) for z in zeros), *self.pos_index.start(instr.walk_s), *self.col_index.start(instr.walk_w)]

    def output(self, instr):
        """The drain's pixel is an output: on the stride lattice and within the output."""
        return self.phx_zero & self.phy_zero & (self.col <= instr.lat_w) & (self.row <= instr.lat_h)

    def next_values(self, instr) -> dict:
        """What a step computes from the present pixel, as expressions: the slot sums of the three steps, the next
        row, the indices' increments and flags, the feed's next coordinates, the drain's lattice wraps and
        incremented phases."""
        values = {}
        for kind, (addr, r) in (("sample", (self.smp_addr, self.smp_r)), ("row", (self.row_addr, self.row_r)),
                                ("x", (self.addr, self.r))):
            values[f"{kind}_addr"], values[f"{kind}_r"] = self.steps[kind].add(addr, r)
        values["row"] = self.row + 1
        values["col"], values["col_last"] = self.col_index.next()
        values["pos"], values["pos_last"] = self.pos_index.next()
        if self.prefix == "in":
            values["x"], values["y"] = self.x + instr.px_sx, self.y + instr.px_sy
        else:
            # the drain's choices too: the output row and pixel advance only on the lattice (its address held
            # otherwise), the phases wrap at the lattice's steps
            for kind, on_lattice, addr, r in (("row", self.phy_zero, self.row_addr, self.row_r),
                                              ("x", self.phx_zero, self.addr, self.r)):
                values[f"{kind}_addr"] = Mux(on_lattice, values[f"{kind}_addr"], addr)
                values[f"{kind}_r"] = Mux(on_lattice, values[f"{kind}_r"], r)
            for axis in ("phy", "phx"):
                phase = getattr(self, axis)
                values[f"{axis}_wrap"], values[f"{axis}_up"] = phase == self.phase_last[axis], phase + 1
        return values

    def registered_next(self, m: Module, instr) -> dict:
        """:meth:`next_values` registered on every cycle (call outside any condition): a walk that steps at most
        every other cycle steps with these (``step(m, instr, values)``) and its step is a multiplexer level behind
        flip-flops. It must not step on the cycle after it changed (its start or a step)."""
        registers = {}
        for name, value in self.next_values(instr).items():
            registers[name] = Signal.like(value, name=f"{self.prefix}_walk_next_{name}", reset_less=True)
            m.d.sync += registers[name].eq(value)
        return registers

    def step(self, m: Module, instr, values: dict | None = None, enables: list | None = None) -> None:
        """Move to the next pixel (inside the caller's condition), with the steps :meth:`prepare` made; ``values``:
        :meth:`next_values`' (default) or :meth:`registered_next`'. ``enables``: exact copies of the step's flag, one
        per group of the walk's registers (:data:`STEP_GROUPS`: the indices, the pixel's slot, the row's and
        sample's slots, the coordinates or lattice phases), each group's choices reading copies of the index flags
        of its own (one flag's enables over all of them were the 4×4 array's path)."""
        v = values or self.next_values(instr)
        sample, row, pixel = ((v[f"{kind}_addr"], v[f"{kind}_r"]) for kind in ("sample", "row", "x"))

        def slot(addr, r, at):
            return [addr.eq(at[0]), r.eq(at[1])]

        # each group's loads at the next sample, the next row and the next pixel in the row
        indices = ([*self.col_index.restart(), self.row.eq(0), *self.pos_index.restart()],
                   [*self.col_index.restart(), self.row.eq(v["row"]), *self.pos_index.move(v["pos"], v["pos_last"])],
                   [*self.col_index.move(v["col"], v["col_last"]), *self.pos_index.move(v["pos"], v["pos_last"])])
        here = (slot(self.addr, self.r, sample), slot(self.addr, self.r, row), slot(self.addr, self.r, pixel))
        starts = ([*slot(self.smp_addr, self.smp_r, sample), *slot(self.row_addr, self.row_r, sample)],
                  slot(self.row_addr, self.row_r, row), [])
        if self.prefix == "in":
            place = ([self.x.eq(0), self.y.eq(0)], [self.x.eq(0), self.y.eq(v["y"])], [self.x.eq(v["x"])])
        else:            # the output row and pixel advance on the lattice only (next_values chose); a phase wraps to 0

            def phase(axis):
                wrap = v[f"{axis}_wrap"]
                return [getattr(self, axis).eq(Mux(wrap, 0, v[f"{axis}_up"])), getattr(self, f"{axis}_zero").eq(wrap)]
            place = ([self.phx.eq(0), self.phy.eq(0), self.phx_zero.eq(1), self.phy_zero.eq(1)],
                     [self.phx.eq(0), self.phx_zero.eq(1), *phase("phy")], phase("phx"))
        for k, (at_sample, at_row, at_pixel) in enumerate((indices, here, starts, place)):
            with m.If(enables[k]) if enables else nullcontext():
                with m.If(self.pos_index.lasts[k]):
                    m.d.sync += at_sample
                with m.Elif(self.col_index.lasts[k]):
                    m.d.sync += at_row
                with m.Else():
                    m.d.sync += at_pixel


def feature_layout(cfg: SystolicConfig) -> data.StructLayout:
    """One feature as a row of the WS array reads it: present (a real channel of a kernel position), the slot
    offset of its kernel position, its channel's word (and word mod R) and lane, and its coordinate offset."""
    return data.StructLayout({
        "valid": unsigned(1), "d_words": unsigned(16), "d_r": unsigned(max(1, (cfg.rows - 1).bit_length())),
        "word": unsigned(16), "word_r": unsigned(max(1, (cfg.rows - 1).bit_length())),
        "lane": unsigned(max(1, (cfg.cols - 1).bit_length())), "dx": signed(18), "dy": signed(18)})


class FeatureWalk:
    """Walks a layer's features in (ky, kx, c) order (see the module docstring)."""

    def __init__(self, cfg: SystolicConfig, d_r_copies: int = 0):
        self.cfg = cfg
        rows, cols = cfg.rows, cfg.cols
        self.c_index, self.kx_index = Index("feature_c", flags=5), Index("feature_kx", flags=4)
        self.c, self.kx, self.ky = self.c_index.value, self.kx_index.value, Signal(16, name="feature_ky")
        self.word, self.lane = Signal(16, name="feature_word"), Signal(index_range(cols), name="feature_lane")
        self.word_r = Signal(index_range(rows), name="feature_word_r")
        self.d_words, self.d_r = Signal(16, name="feature_d_words"), Signal(index_range(rows), name="feature_d_r")
        # exact copies of d_r (the OS controller's: one per activation bank, whose address it selects)
        self.d_r_copies = copies("feature_d_r", d_r_copies, index_range(rows))
        self.dx, self.dy = Signal(signed(18), name="feature_dx"), Signal(signed(18), name="feature_dy")
        self.dx_step, self.dy_step = SlotStep(rows, "feature_dx_step"), SlotStep(rows, "feature_dy_step")

    def prepare(self, instr, stride) -> list:
        """The layer's step constants (``stride``: words per group of R slots)."""
        return [*self.dx_step.prepare(instr.dx_words, instr.dx_r, stride),
                *self.dy_step.prepare(instr.dy_words, instr.dy_r, stride),
                *self.c_index.prepare(instr.cgp), *self.kx_index.prepare(instr.kw)]

    def start(self, instr) -> list:
        return [*self.c_index.start(instr.cgp), *self.kx_index.start(instr.kw), self.ky.eq(0),
                self.word.eq(instr.c0_word), self.lane.eq(instr.c0_lane), self.word_r.eq(instr.c0_word_r),
                self.d_words.eq(instr.d0_words), self.d_r.eq(instr.d0_r), self.dx.eq(instr.x0), self.dy.eq(instr.y0),
                *(copy.eq(instr.d0_r) for copy in self.d_r_copies)]

    def valid(self, instr):
        """The feature is a channel of a kernel position (not padding of a channel group or of the last fold)."""
        return (self.c < instr.cg) & (self.ky < instr.kh)

    def descriptor(self, instr) -> dict:
        """The current feature as :func:`feature_layout` fields."""
        return {"valid": self.valid(instr), "d_words": self.d_words, "d_r": self.d_r, "word": self.word,
                "word_r": self.word_r, "lane": self.lane, "dx": self.dx, "dy": self.dy}

    def step(self, m: Module, instr) -> None:
        """Move to the next feature (inside the caller's condition), with the steps :meth:`prepare` made."""
        rows, cols = self.cfg.rows, self.cfg.cols

        def offset(step: SlotStep):
            addr, res = step.add(self.d_words, self.d_r)
            return [self.d_words.eq(addr), self.d_r.eq(res), *(copy.eq(res) for copy in self.d_r_copies)]

        # the registers the flags enable, in five groups, each reading copies of the flags of its own: the channel,
        # kx, (ky, dy), dx and the slot offset (one flag's enables over all of them, then one over the last four,
        # were the 4×4 array's path)
        c_last, *c_lasts = self.c_index.lasts
        with m.If(c_last):                                        # next kernel position: its first channel
            m.d.sync += [*self.c_index.restart(), self.lane.eq(instr.c0_lane), self.word.eq(instr.c0_word),
                         self.word_r.eq(instr.c0_word_r)]
        with m.Else():
            m.d.sync += self.c_index.advance()
            with m.If(self.lane == cols - 1):
                m.d.sync += [self.lane.eq(0), self.word.eq(self.word + 1),
                             self.word_r.eq(mod_add(self.word_r, 1, rows))]
            with m.Else():
                m.d.sync += self.lane.eq(self.lane + 1)
        # (each group's loads at the next kernel row, and at the next kernel column)
        kx_groups = [([self.ky.eq(self.ky + 1), self.dy.eq(self.dy + instr.sy)], []),
                     ([self.dx.eq(instr.x0)], [self.dx.eq(self.dx + instr.sx)]),
                     (offset(self.dy_step), offset(self.dx_step)),
                     (self.kx_index.restart(), self.kx_index.advance())]
        for c_last, kx_last, (wrap, step) in zip(c_lasts, self.kx_index.lasts, kx_groups, strict=True):
            with m.If(c_last):
                with m.If(kx_last):
                    m.d.sync += wrap
                with m.Else():
                    m.d.sync += step
