"""Controller: runs a program of layers on the output-stationary array.

Every layer is ``C[M×N] = (A - zx)[M×K] · W[K×N]`` over *pixels*: the rows M are a walk over the pixels of the
layer's output (compile.py ``os_walk``), the features K its kernel positions × input channels (``kp = K``; a dense
layer is the 1×1 kernel over one pixel per sample, a residual Add the 1×2 kernel whose second position is the
second input's region), tiled into ``m_tiles × n_tiles`` tiles of ``rows × cols`` outputs.

Two engines run concurrently:

- **feed** issues, for every tile, ``kp`` reads (one feature per cycle) of the activation banks (row ``i`` ← pixel
  ``m_tile·R + i`` of the walk) and weight banks (column ``j`` ← channel ``n_tile·C + j``), and starts a new tile
  every ``period`` cycles. The compiler sets ``period = max(kp, 2R + C - 1)``: a tile's first capture then comes
  after the previous tile has drained, so consecutive tiles overlap (tile t+1 streams in while tile t finishes in
  the array and drains through the requant lanes).
- **drain** starts on the cycle the array reports the tile captured (its state registered from ``capturing``, the
  cycle before), shifts the shadow registers up for ``R`` cycles, feeding one row per cycle (top row first) to
  the ``C`` requant lanes with its write address, or no write for a pixel that is not an output. The rows' bank
  rows and addresses come from a table of the M tile's ``R`` rows, which the output walk fills a tile ahead; the
  table turns by a row as each row drains, so the row draining is always its first entry.

A layer ends when its last row leaves the lanes (``layer_done``); the next instruction is then fetched. Cycles
of one run (start → done), exactly (``compile.Program.predict_cycles``)::

    Σ_layers [ 3 (fetch, latch, decode) + 2R + 1 (rows of the first tile, one every other cycle) + (T - 1)·period
               + kp (last tile's reads) + L_feed + R + C - 2 + P_pe (last operands → ``captured``) + R - 1 (drain)
               + L_lane ] − 1 + 1 (done)
    = Σ_layers [ (T - 1)·period + kp + 4R + C + 1 + L_feed + P_pe + L_lane ]
    = Σ_layers [ (T - 1)·period + kp + 4R + C + 3S + 12 ]

with ``T = m_tiles · n_tiles``, ``L_feed = cfg.feed_latency = 7`` (top.py), ``P_pe = cfg.pe_stages = 2``
(pe.py), ``L_lane = cfg.lane_latency = 3S + 2`` and ``S`` the lanes' stages. The feed pipeline delays every
operand alike and the drain starts on the array's ``captured``, so the pipeline adds latency per layer but changes
no period.

**Implicit im2col.** A tensor is stored one pixel per *slot* (compile.Layout): pixel (y, x) of sample n is slot
``n·S + y·pitch + x``, bank ``slot % R``, channels along the lanes of ``words`` consecutive words, so the activation
image is exactly C·H·W codes. The feed walks the *virtual* stride-1 output of the conv: pixel (vy, vx) reads, for
kernel position (ky, kx), input pixel ``(vy + ky - pt, vx + kx - pl)``, i.e. slot ``s(v) + δ`` with ``s(v)`` the
slot of input pixel (vy, vx) and ``δ = (ky - pt)·pitch + kx - pl`` — the same δ for every row. The walk has
``walk_w ≡ pitch`` pixels per row and ``walk_s ≡ S`` per sample (mod R; the compiler picks pitch and S so that
both are the output's width and size, or pads the walk with pixels that are not outputs), so pixel ``m`` of the
walk sits in bank ``m mod R``: row i of every tile reads bank ``(i + δ) mod R`` (``feed_rotate``), R rows R banks,
no conflicts, no stalls, no copy. A walker (walk.py) computes the R rows' slots and coordinates for the next M
tile during the current one (the first tile's during R cycles before the layer's first read); δ is kept as
(words, slots mod R) and stepped per kx and per ky with constants from the instruction; a row is fed 0 — the zero
point after ``- zx`` — where its input pixel falls outside the input (padding). The drain walks the same pixels
and writes those on the stride lattice (a strided conv computes its stride-1 output and keeps every
``sy``-th row and ``sx``-th column) to the output tensor's own slots.

**Pooling (``pool_max``).** MaxPool, AveragePool and GlobalAveragePool are conv instructions like any other
(compile.py: 0/1 weights selecting each window's channel, a global pool is the conv whose kernel is the image):
the same address generation, padding, drain and cycle formula. ``pool_max`` switches every PE to
``acc = max(acc, a·w)`` for the layer (pe.py); it changes only between layers, when the array is empty.
"""
from __future__ import annotations

from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import stage_fields
from ..hdl import copies, select
from .config import DECODE_COPIES, MAX_FIXED_STEPS, STEP_GROUPS, SystolicConfig, index_range
from .walk import FeatureWalk, Index, PixelWalk

RESIDUE = unsigned(6)           # a slot mod R (R ≤ 64)
# implicit im2col (see the module docstring and walk.py): the kernel walk over (ky, kx, c), the pixel walk and the
# drain's output lattice; slot offsets as (words, slots mod R), word offsets modulo 2^16
CONV_FIELDS = (
    ("kh", unsigned(8)), ("kw", unsigned(8)), ("cg", unsigned(16)), ("cgp", unsigned(16)),
    ("c0_word", unsigned(16)), ("c0_lane", unsigned(7)), ("c0_word_r", RESIDUE),
    ("d0_words", unsigned(16)), ("d0_r", RESIDUE), ("dx_words", unsigned(16)), ("dx_r", RESIDUE),
    ("dy_words", unsigned(16)), ("dy_r", RESIDUE),
    ("x0", signed(16)), ("y0", signed(16)), ("sx", unsigned(2)), ("sy", unsigned(2)),
    ("lim_x", unsigned(16)), ("lim_y", unsigned(16)),
    ("walk_w", unsigned(16)), ("walk_s", unsigned(16)), ("px_sx", unsigned(8)), ("px_sy", unsigned(8)),
    ("in_x_words", unsigned(16)), ("in_x_r", RESIDUE), ("in_row_words", unsigned(16)), ("in_row_r", RESIDUE),
    ("in_sample_words", unsigned(16)), ("in_sample_r", RESIDUE),
    ("lat_sx", unsigned(8)), ("lat_sy", unsigned(8)), ("lat_w", unsigned(16)), ("lat_h", unsigned(16)),
    ("out_x_words", unsigned(16)), ("out_x_r", RESIDUE), ("out_row_words", unsigned(16)), ("out_row_r", RESIDUE),
    ("out_sample_words", unsigned(16)), ("out_sample_r", RESIDUE), ("out_word_r", RESIDUE),
    ("pool_max", unsigned(1)),          # the array's PEs take max(acc, a·w) instead of acc + a·w (MaxPool)
)
# fixed-point requantization (hls4ml models, hwgen.arch.fixed): the PEs' product rounding, the lanes' mode and the
# fields of every lane stage (``s{k}_shift`` … ``s{k}_relu``; unused stages leave values unchanged)
FIXED_FIELDS = (
    ("product_shift", unsigned(6)), ("product_rounding", unsigned(3)), ("fixed", unsigned(1)),
    *((f"s{k}_{name}", shape) for k in range(MAX_FIXED_STEPS) for name, shape in stage_fields().items()),
)
INSTRUCTION = data.StructLayout({
    "m_tiles": unsigned(16), "n_tiles": unsigned(16), "kp": unsigned(16), "period": unsigned(16),
    "samples": unsigned(16), "k_tiles": unsigned(16),
    "in_base": unsigned(16), "kp_words": unsigned(16), "out_base": unsigned(16), "out_words": unsigned(16),
    "w_base": unsigned(16), "slot_base": unsigned(10),
    "zx": signed(18), "base": signed(18), "step": unsigned(2), "passthrough": unsigned(1),
    "last_layer": unsigned(1),
    # streaming through s_axis/m_axis (io.py): samples of x_words words in before the layer, of y_words words out
    # after it; a segment's last layer repeats the segment ``repeat`` times from ``loop_to``; ``end``: the last one
    "stream_in": unsigned(1), "stream_out": unsigned(1), "x_words": unsigned(16), "y_words": unsigned(16),
    "repeat": unsigned(16), "loop_to": unsigned(8), "end": unsigned(1),
    **dict(CONV_FIELDS),
    **dict(FIXED_FIELDS),
})
INSTRUCTION_CHUNKS = -(-INSTRUCTION.size // 32)     # 32-bit words the host writes per instruction


def meta_layout(cfg: SystolicConfig) -> data.StructLayout:
    """What travels with each drained row through the requant lanes."""
    return data.StructLayout({"row": unsigned(max(1, (cfg.rows - 1).bit_length())), "addr": unsigned(16),
                              "write": unsigned(1), "layer_last": unsigned(1)})


def controller_members(cfg: SystolicConfig) -> dict:
    """Ports both controllers share: run control, program fetch, the lanes' layer end and the stream engines."""
    return {
        "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32),
        "prog_addr": Out(index_range(cfg.prog_depth)), "prog_data": In(INSTRUCTION), "instr": Out(INSTRUCTION),
        "layer_done": In(1), "stream_in": Out(1), "stream_in_done": In(1), "stream_out": Out(1),
        "stream_out_done": In(1),
        "stream_in_start": Out(1),      # stream_in rises on the next cycle (StreamIn opens its input then)
        "stream_out_start": Out(1),     # stream_out rises on the next cycle (StreamOut starts its walk then)
        "bank_busy": Out(data.ArrayLayout(unsigned(1), cfg.rows)),   # busy again, an exact copy per activation bank
        "load_busy": Out(1),            # … and one for the host's load decode (its stored flag, the program write)
    }


def last_indices(instr, names) -> tuple[dict, list]:
    """Registers holding ``instr.<name> - 1`` for each of ``names`` (the loop bounds' last indices) and their
    assignments for the DECODE state: a wrap test is then one compare, no subtraction."""
    last = {name: Signal(16, name=f"last_{name}") for name in names}
    return last, [last[name].eq(getattr(instr, name) - 1) for name in names]


class Sequencer:
    """The program sequence both controllers share: the FSM states (:meth:`states`, inside ``with m.FSM():``) and,
    after the FSM, the per-layer loads and the run's ``busy`` / ``done`` (:meth:`decode`).

    IDLE waits for ``start``; FETCH presents instruction ``layer`` to the program memory; LATCH copies the word
    read into ``ctrl.instr`` (a register straight behind the memory: nothing else may follow a block RAM's slow
    clock-to-output); DECODE makes the caller's per-layer assignments (from ``ctrl.instr``, including the walkers'
    start values and per-layer step constants) and enters ``first_state`` (making the caller's ``enter``
    assignments: flags that stand for the state), through INPUT when the instruction streams its samples in; WAIT
    holds until the layer's last result leaves the lanes, then fetches the next instruction, or (a segment's last
    layer) goes through OUTPUT when it streams results out and then repeats the segment, goes on to the next one or
    finishes the run. (:meth:`decode` also counts ``cycles`` while ``busy``, outside the FSM.)

    Nothing but the FSM's own transitions decodes its state. The per-layer loads (hundreds of flip-flops) are
    enabled by registered copies of "the state is DECODE" (set in LATCH), each loading a share of them; the
    streaming flags are registers set and cleared with the state; ``busy`` and ``done`` fall on the run's last
    ``layer_done`` or ``stream_out_done`` (each arrives only in WAIT / OUTPUT), gated by flags registered from the
    instruction and the chunk count (a step per cycle), and rise on ``start`` while not ``busy`` (≡ IDLE);
    ``bank_busy`` are exact copies of ``busy``, one per activation bank (a host write's decode beside the bank),
    ``load_busy`` one for the host's load decode, and one more enables the cycle counter (``busy``'s loads span the
    device).

    Cycles each chunk adds when streaming: ``x_beats + 1`` (INPUT: one beat per cycle, the state ends on the cycle
    after the last transfer) + ``y_beats + 6`` (OUTPUT: the address registers, the read, the word registers, the
    stream stages, the beat register, one beat per cycle, then the registered ``done``; io.py).
    """

    def __init__(self, ctrl: wiring.Component, layer: Signal, first_state: str, enter: tuple = ()):
        self.ctrl, self.layer, self.first_state = ctrl, layer, first_state
        self.enter = list(enter)        # assignments made as the FSM enters first_state (the caller's flags)
        self.chunk = Signal(16)
        # registered from ``chunk`` and the instruction, one step per cycle (both hold from DECODE to the layer's
        # end, many cycles later): repeat − 1; chunk + 1 < repeat; no more chunks and the segment ends the run; that,
        # and the layer ends its segment without streaming out
        self.repeat_last = Signal(range(-1, 1 << 16))
        self.more_chunks, self.finishes, self.done_at_wait = Signal(), Signal(), Signal()
        self.decoding = copies("decoding", DECODE_COPIES)
        # busy and its exact copies: the banks', the load decode's, then the cycle counter's
        self.busy = [ctrl.busy, *copies("busy", len(ctrl.bank_busy) + 2)]

    def _end_of_segment(self, m: Module) -> None:
        instr, layer, chunk = self.ctrl.instr, self.layer, self.chunk
        with m.If(self.more_chunks):
            m.d.sync += [chunk.eq(chunk + 1), layer.eq(instr.loop_to)]
            m.next = "FETCH"
        with m.Elif(instr.end):
            m.next = "IDLE"
        with m.Else():
            m.d.sync += [chunk.eq(0), layer.eq(layer + 1)]
            m.next = "FETCH"

    def states(self, m: Module) -> None:
        """The shared states; call inside ``with m.FSM():``."""
        ctrl, instr, layer, chunk = self.ctrl, self.ctrl.instr, self.layer, self.chunk
        with m.State("IDLE"):
            with m.If(ctrl.start):
                m.d.sync += [layer.eq(0), chunk.eq(0)]
                m.next = "FETCH"
        with m.State("FETCH"):
            m.next = "LATCH"
        with m.State("LATCH"):
            m.d.sync += [ctrl.instr.eq(ctrl.prog_data), *(flag.eq(1) for flag in self.decoding)]
            m.next = "DECODE"
        with m.State("DECODE"):
            m.d.sync += [flag.eq(0) for flag in self.decoding]
            with m.If(instr.stream_in):
                m.d.sync += ctrl.stream_in.eq(1)
                m.d.comb += ctrl.stream_in_start.eq(1)
                m.next = "INPUT"
            with m.Else():
                m.d.sync += self.enter
                m.next = self.first_state
        with m.State("INPUT"):
            with m.If(ctrl.stream_in_done):
                m.d.sync += [ctrl.stream_in.eq(0), *self.enter]
                m.next = self.first_state
        with m.State("WAIT"):
            with m.If(ctrl.layer_done):
                with m.If(~instr.last_layer):
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "FETCH"
                with m.Elif(instr.stream_out):
                    m.d.sync += ctrl.stream_out.eq(1)
                    m.d.comb += ctrl.stream_out_start.eq(1)
                    m.next = "OUTPUT"
                with m.Else():
                    self._end_of_segment(m)
        with m.State("OUTPUT"):
            with m.If(ctrl.stream_out_done):
                m.d.sync += ctrl.stream_out.eq(0)
                self._end_of_segment(m)

    def decode(self, m: Module, latch: list) -> None:
        """After the FSM: the caller's per-layer assignments ``latch`` in DECODE, in :data:`DECODE_COPIES` shares
        of consecutive assignments (a walker's stay together), each under its own copy of the DECODE flag; then
        ``busy`` and ``done``; ``cycles``, counted while ``busy``, cleared by ``start`` while idle (≡ the state is
        IDLE): its 32 flip-flops' inputs read a copy of ``busy`` of their own and a port, not a decode of the
        state."""
        share = -(-len(latch) // len(self.decoding))
        for k, flag in enumerate(self.decoding):
            with m.If(flag):
                m.d.sync += latch[k * share:(k + 1) * share]
        ctrl, instr = self.ctrl, self.ctrl.instr
        more = self.chunk < self.repeat_last
        m.d.sync += [self.repeat_last.eq(instr.repeat - 1), self.more_chunks.eq(more),
                     self.finishes.eq(~more & instr.end),
                     self.done_at_wait.eq(self.finishes & instr.last_layer & ~instr.stream_out)]
        with m.If(ctrl.layer_done & self.done_at_wait | ctrl.stream_out_done & self.finishes):
            m.d.sync += [*(busy.eq(0) for busy in self.busy), ctrl.done.eq(1)]
        with m.Elif(ctrl.start & ~ctrl.busy):
            m.d.sync += [*(busy.eq(1) for busy in self.busy), ctrl.done.eq(0)]
        m.d.comb += [*(port.eq(busy) for port, busy in zip(ctrl.bank_busy, self.busy[1:-2], strict=True)),
                     ctrl.load_busy.eq(self.busy[-2])]
        with m.If(self.busy[-1]):
            m.d.sync += ctrl.cycles.eq(ctrl.cycles + 1)
        with m.Elif(ctrl.start):
            m.d.sync += ctrl.cycles.eq(0)


class Controller(wiring.Component):
    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        slot_bits = max(1, (cfg.slot_depth - 1).bit_length())
        super().__init__({
            **controller_members(cfg),
            # bank b's read address is bank_base[b] + bank_offset (added beside the bank, a cycle later: top.py)
            "bank_base": Out(data.ArrayLayout(unsigned(16), cfg.rows)), "bank_offset": Out(unsigned(16)),
            "weight_addr": Out(unsigned(16)),
            "bank_read": Out(data.ArrayLayout(unsigned(1), cfg.rows)),  # bank b's read enable (its data is used)
            "feed_valid": Out(1), "feed_last": Out(1), "feed_lane": Out(index_range(cfg.cols)),
            "feed_rotate": Out(index_range(cfg.rows)),                  # row i reads bank (i + rotate) mod R
            # 0: padding, the operand is 0 (x - zx); a cycle after its feed cycle (the coordinates are registered)
            "row_valid": Out(data.ArrayLayout(unsigned(1), cfg.rows)),
            # capturing: the array's captured, one cycle early; shift: the drain's, one copy per array column
            "capturing": In(1), "shift": Out(data.ArrayLayout(unsigned(1), cfg.cols)),
            "lane_valid": Out(1), "lane_slot": Out(unsigned(slot_bits)), "lane_meta": Out(meta_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows = cfg.rows
        instr = self.instr
        layer = Signal(index_range(cfg.prog_depth))
        m.d.comb += self.prog_addr.eq(layer)

        # ---- feed engine state
        k_index = Index("k")            # the feature fed (k == kp - 1 flagged: the tile's last operands)
        k = k_index.value
        # the cycle in the tile's period, its last cycle flagged a cycle ahead (walk.Index: a compare with the
        # prepared period - 2, no adder in front of it)
        count_index = Index("count")
        # the tile counters, with registered flags m_tile = m_tiles − 1, n_tile = n_tiles − 1 (walk.Index)
        # (they advance at a tile's end: period ≥ 2R + C - 1 ≥ 2 cycles apart, the first well after DECODE)
        m_index, n_index = Index("m_tile", slow=True), Index("n_tile", slow=True)
        m.d.sync += [*m_index.compare(), *n_index.compare()]
        w_tile_base = Signal(16)        # w_base + n_tile * kp
        walk_at = Signal(rows, init=1)  # one-hot: the row the walk captures next (a decoded index in front of every
                                        # row's enable was the 4×4 array's path)
        # the pixel walk steps on this cycle (every other cycle while walking), in exact copies: the rows' capture's,
        # then one per group of the walk's registers (walk.PixelWalk.step)
        walk_steps = copies("walk_step", 1 + STEP_GROUPS)
        feed_go = Signal()              # the first tile's rows are walked: the feed starts on the next cycle
        # flags registered for the cycle they gate (a 16-bit compare in front of a walker's enable is too slow):
        # ``feeding`` ≡ the feed runs (the state is FEED, the first tile's rows walked), ``issuing`` ≡ it reads (k <
        # kp), ``walking`` ≡ an M tile's rows are walked (the first one's, or the next one's: n_tile = 0, count < R;
        # row walk_at)
        feeding, issuing, walking = Signal(), Signal(), Signal()
        tile_end = count_index.last     # count = period - 1: the tile's last cycle
        feed_last_tile = n_index.last & m_index.last
        # ≡ tile_end & n_tile = n_tiles − 1 & m_tile < m_tiles − 1: the next M tile's rows move into the current ones;
        # registered with tile_end, in an exact copy per row (their enables: R·65 flip-flops behind one flag were the
        # 4×4 array's path)
        turns = copies("turn", rows)
        features = FeatureWalk(cfg, d_r_copies=rows)
        pixels = PixelWalk(rows, "in")
        # every row's pixel (its slot's word address, that + kp_words, and coordinates): this M tile's, and the next
        # one's
        row_regs = {f"{tile}_{what}": [Signal(16, name=f"{tile}_row{i}_{what}") for i in range(rows)]
                    for tile in ("cur", "next") for what in ("addr", "wrapped", "x", "y")}
        # … and whether it is a pixel of the batch (a last M tile's rows beyond it read words nothing uses)
        row_live = {tile: [Signal(name=f"{tile}_row{i}_live") for i in range(rows)] for tile in ("cur", "next")}
        f_pixel = Signal(16)            # the walk's index of the row captured next
        f_live = Signal()               # f_pixel < samples (registered ahead)
        # samples − 1: a pixel's successor is live if the pixel is below it (one compare, no adder in front of it)
        last, prepare_last = last_indices(instr, ("samples",))

        def capture(tile: str) -> None:
            """Row ``walk_at`` of ``tile`` takes the walk's pixel."""
            for i in range(rows):
                with m.If(walk_at[i]):
                    m.d.sync += [row_regs[f"{tile}_addr"][i].eq(pixels.addr),
                                 row_regs[f"{tile}_wrapped"][i].eq(pixels.addr + instr.kp_words),
                                 row_regs[f"{tile}_x"][i].eq(pixels.x), row_regs[f"{tile}_y"][i].eq(pixels.y),
                                 row_live[tile][i].eq(f_live)]
            m.d.sync += [f_pixel.eq(f_pixel + 1), f_live.eq(f_pixel < last["samples"])]

        # ---- drain engine state
        active = Signal()               # a row drains on this cycle: row r of tile (d_m, d_n)
        r = Signal(index_range(rows))
        last_row = Signal()             # r == R - 1 (while active)
        # the drained tile's indices, their last flags registered (Index, slow: a tile drains once every period)
        d_m_index, d_n_index = Index("d_m", slow=True), Index("d_n", slow=True)
        d_n, d_n_first = d_n_index.value, Signal()               # d_n == 0
        m.d.sync += [*d_m_index.compare(), *d_n_index.compare()]
        d_slot = Signal(self.lane_slot.shape())  # slot_base + d_n: the lanes' threshold slot, from a register
        # every row of the M tile draining (its bank row, word address and whether it is written: an output pixel of
        # the batch), and of the next M tile, which the output walk fills one row per cycle while this one drains
        dest = PixelWalk(rows, "out")
        fields = (("row", unsigned(len(dest.r))), ("addr", unsigned(16)), ("write", unsigned(1)))
        table = {f"{tile}_{what}": [Signal(shape, name=f"drain_{tile}_row{i}_{what}") for i in range(rows)]
                 for tile in ("cur", "next") for what, shape in fields}
        filling = Signal()              # the walk fills row fill_i of the next table
        # … on this cycle (every other cycle: registered steps, walk.PixelWalk.step), in exact copies: the table's,
        # then one per group of the walk's registers
        fill_steps = copies("fill_step", 1 + STEP_GROUPS)
        fill_i = Signal(index_range(rows))
        is_output = Signal()            # the walk's pixel is an output (registered, as its steps are)
        w_pixel = Signal(16)            # the walk's index of the row it fills
        w_live = Signal()               # w_pixel < samples (registered ahead)

        # the padding test, two cycles after the feed cycle whose coordinates it tests (in any state: read only
        # then): the coordinates registered, then their four bounds tests (each a carry chain), then their AND
        for i in range(rows):
            y, x = row_regs["cur_y"][i] + features.dy, row_regs["cur_x"][i] + features.dx
            y_r = Signal.like(y, name=f"row{i}_y", reset_less=True)
            x_r = Signal.like(x, name=f"row{i}_x", reset_less=True)
            inside = Signal(4, name=f"row{i}_inside", reset_less=True)
            m.d.sync += [y_r.eq(y), x_r.eq(x),
                         inside.eq(Cat(y_r >= 0, y_r <= instr.lim_y, x_r >= 0, x_r <= instr.lim_x))]
            m.d.comb += self.row_valid[i].eq(inside.all())

        # the layer starts with the first M tile's rows (``prepping``: walked into the current rows, one every other
        # cycle, then the feed starts), set with ``walking`` as the FSM enters FEED
        prepping = Signal()
        sequencer = Sequencer(self, layer, "FEED", enter=(prepping.eq(1), walking.eq(1)))
        with m.FSM():
            sequencer.states(m)
            with m.State("FEED"):
                with m.If(tile_end & feed_last_tile):
                    m.next = "WAIT"
        sequencer.decode(m, [
            *k_index.start(instr.kp), *k_index.prepare(instr.kp), *count_index.start(instr.period),
            *count_index.prepare(instr.period),
            *m_index.start(instr.m_tiles), *n_index.start(instr.n_tiles),
            *m_index.prepare(instr.m_tiles), *n_index.prepare(instr.n_tiles), walk_at.eq(1),
            *(step.eq(0) for step in walk_steps),
            feed_go.eq(0), w_tile_base.eq(instr.w_base), *(turn.eq(0) for turn in turns),
            *d_m_index.start(instr.m_tiles), *d_m_index.prepare(instr.m_tiles), *d_n_index.start(instr.n_tiles),
            *d_n_index.prepare(instr.n_tiles), d_slot.eq(instr.slot_base), d_n_first.eq(1), w_pixel.eq(0), w_live.eq(1),
            filling.eq(1),
            *(step.eq(0) for step in fill_steps), fill_i.eq(0), f_pixel.eq(0), f_live.eq(1), *features.start(instr),
            *features.prepare(instr, instr.kp_words), *pixels.start(instr, instr.in_base),
            *pixels.prepare(instr, instr.kp_words), *dest.start(instr, instr.out_base),
            *dest.prepare(instr, instr.out_words), *prepare_last])

        # ---- feed engine (FEED), driven by its registered flags, not by the state: they are its enables, and an
        # enable decoded from the state in front of every walker register was the controller's critical path
        m.d.comb += [self.feed_valid.eq(issuing), self.feed_last.eq(k_index.last),
                     self.feed_lane.eq(features.lane), self.weight_addr.eq(w_tile_base + k),
                     self.feed_rotate.eq(features.d_r)]
        # row i reads its pixel's slot + δ: bank (i + d_r) mod R; bank b serves row (b - d_r) mod R, one group of R
        # slots further on when b < d_r (the row's address + kp_words, kept beside it: no adder behind the select);
        # each bank's select from its own copy of d_r (one copy's fan-out is a bank's 17 multiplexers)
        m.d.comb += self.bank_offset.eq(features.d_words + features.word)
        for b, d_r in enumerate(features.d_r_copies):
            rows_of = [(b - rv) % rows for rv in range(rows)]
            base = select(m, d_r, [row_regs["cur_wrapped" if b < rv else "cur_addr"][i]
                                   for rv, i in enumerate(rows_of)], unsigned(16), f"bank{b}_row_addr")
            live = select(m, d_r, [row_live["cur"][i] for i in rows_of], unsigned(1),
                          f"bank{b}_live")                        # read for a pixel of the batch
            m.d.comb += [self.bank_base[b].eq(base), self.bank_read[b].eq(issuing & live)]
        with m.If(issuing):
            m.d.sync += k_index.advance()
            with m.If(k_index.last):
                m.d.sync += issuing.eq(0)
            features.step(m, instr)
        # the rows of an M tile: the first one's before the feed starts, the next one's during this one's first
        # tile; a row every other cycle (walk_steps), the walk stepping with its next values registered the cycle
        # before (walk.PixelWalk.registered_next: an adder in front of its registers was the controller's path)
        pixels_next = pixels.registered_next(m, instr)
        with m.If(walking):
            m.d.sync += [step.eq(~step) for step in walk_steps]
        pixels.step(m, instr, pixels_next, walk_steps[1:])
        with m.If(walk_steps[0]):
            with m.If(prepping):
                capture("cur")
            with m.Else():
                capture("next")
            m.d.sync += walk_at.eq(walk_at.rotate_left(1))
            with m.If(walk_at[rows - 1]):
                m.d.sync += [walking.eq(prepping), prepping.eq(0), feed_go.eq(prepping)]
        # the feed starts two cycles after the first rows' last step, with the next rows' first step (so their walk
        # of 2R - 1 cycles ends within the tile's period ≥ 2R)
        with m.If(feed_go):
            m.d.sync += [feed_go.eq(0), feeding.eq(1), issuing.eq(1)]
        with m.If(tile_end):                    # (period ≥ 2R + C - 1 ≥ 2: never right after a start)
            m.d.sync += [*count_index.restart(), *k_index.restart(), issuing.eq(~feed_last_tile),
                         *features.start(instr)]
            with m.If(n_index.last):
                # (the next rows' walk starts stepping at once: its registered next values are the present ones)
                m.d.sync += [*n_index.restart(), w_tile_base.eq(instr.w_base), walking.eq(~m_index.last),
                             *(step.eq(~m_index.last) for step in walk_steps)]
                with m.If(m_index.last):
                    m.d.sync += feeding.eq(0)
                with m.Else():
                    m.d.sync += m_index.advance()
            with m.Else():
                m.d.sync += [*n_index.advance(), w_tile_base.eq(w_tile_base + instr.kp)]
            m.d.sync += [turn.eq(0) for turn in turns]                  # (period ≥ 2)
        with m.Elif(feeding):
            _, tile_end_next = count_index.next()
            m.d.sync += [*count_index.advance(),
                         *(turn.eq(tile_end_next & n_index.last & ~m_index.last) for turn in turns)]
        for i, turn in enumerate(turns):
            with m.If(turn):
                m.d.sync += [*(row_regs[f"cur_{what}"][i].eq(row_regs[f"next_{what}"][i])
                               for what in ("addr", "wrapped", "x", "y")), row_live["cur"][i].eq(row_live["next"][i])]

        # ---- drain engine: R cycles per captured tile, rows top-first, each to its output slot (or nowhere), from
        # the table of its M tile: the walk runs ahead, filling the next M tile's rows (one every other cycle, its
        # steps' sums registered a cycle before they are taken), so no walker register is on the drain's path and
        # the walk's step is a multiplexer behind flip-flops. The drain's state is registered one cycle ahead, from
        # the array's ``capturing`` (``captured`` of the next cycle); an M tile's first capture moves the next table
        # into the current one. ``active`` again in a copy per array column: the column's shadow registers' shift
        # enable
        shift = copies("shift", cfg.cols)
        with m.If(self.capturing):
            m.d.sync += [active.eq(1), *(s.eq(1) for s in shift), r.eq(0), last_row.eq(rows == 1)]
        with m.Elif(active & ~last_row):
            m.d.sync += [r.eq(r + 1), last_row.eq((r == rows - 2) if rows > 1 else 1)]
        with m.Else():
            m.d.sync += [active.eq(0), *(s.eq(0) for s in shift), r.eq(0), last_row.eq(0)]
        # (a fill takes 2R - 1 cycles from an M tile's first capture, which comes at least 2R + C - 1 cycles after
        # the one before; the first M tile's takes 2R cycles from DECODE, as the walk starts there)
        # the current table turns by one row as each row drains, so the row draining is always its first entry (no
        # select behind ``r`` on the lanes' meta: an 8:1 one in front of ``+ d_n`` was the 8×8 array's path); R turns
        # bring it back for the M tile's next N tile
        with m.If(self.capturing & d_n_first):
            m.d.sync += [table[f"cur_{what}"][i].eq(table[f"next_{what}"][i]) for what, _ in fields
                         for i in range(rows)]
            m.d.sync += [filling.eq(1), *(step.eq(1) for step in fill_steps), fill_i.eq(0)]
        with m.Elif(active):
            m.d.sync += [table[f"cur_{what}"][i].eq(table[f"cur_{what}"][(i + 1) % rows]) for what, _ in fields
                         for i in range(rows)]
        m.d.sync += is_output.eq(dest.output(instr))
        dest_next = dest.registered_next(m, instr)
        # (a step is taken only while filling: the step flags alone enable the walk and the table)
        with m.If(filling):
            m.d.sync += [step.eq(~step) for step in fill_steps]
        dest.step(m, instr, dest_next, fill_steps[1:])
        with m.If(fill_steps[0]):
            with m.Switch(fill_i):
                for i in range(rows):
                    with m.Case(i):
                        m.d.sync += [table["next_row"][i].eq(dest.r), table["next_addr"][i].eq(dest.addr),
                                     table["next_write"][i].eq(is_output & w_live)]
            m.d.sync += [fill_i.eq(fill_i + 1), w_pixel.eq(w_pixel + 1), w_live.eq(w_pixel < last["samples"])]
            with m.If(fill_i == rows - 1):
                m.d.sync += [filling.eq(0), *(step.eq(0) for step in fill_steps)]
        with m.If(last_row):
            with m.If(d_n_index.last):
                m.d.sync += [*d_n_index.restart(), d_slot.eq(instr.slot_base), d_n_first.eq(1), *d_m_index.advance()]
            with m.Else():
                m.d.sync += [*d_n_index.advance(), d_slot.eq(d_slot + 1), d_n_first.eq(0)]
        # the row's meta is registered: it enters the lanes a cycle after the row (requant.py)
        m.d.comb += [*(self.shift[j].eq(shift[j]) for j in range(cfg.cols)), self.lane_valid.eq(active),
                     self.lane_slot.eq(d_slot)]
        m.d.sync += [self.lane_meta.row.eq(table["cur_row"][0]), self.lane_meta.addr.eq(table["cur_addr"][0] + d_n),
                     self.lane_meta.write.eq(table["cur_write"][0]),
                     self.lane_meta.layer_last.eq(last_row & d_n_index.last & d_m_index.last)]
        return m
