"""Controller: runs a program of GEMM layers on the output-stationary array.

Each instruction describes one layer ``C[M×N] = (A - zx)[M×K] · W[K×N]`` tiled into ``m_tiles × n_tiles`` tiles of
``rows × cols`` outputs; ``K`` is padded to ``kp`` (a multiple of ``cols``; padded weights are zero).

Two engines run concurrently:

- **feed** issues, for every tile, ``kp`` reads (one ``k`` per cycle) of the activation banks (row ``i`` ← sample
  ``m_tile·R + i``) and weight banks (column ``j`` ← channel ``n_tile·C + j``), and starts a new tile every
  ``period`` cycles. The compiler sets ``period = max(kp, 2R + C - 1)``: a tile's first capture then comes after the
  previous tile has drained, so consecutive tiles overlap (tile t+1 streams in while tile t finishes in the array
  and drains through the requant lanes).
- **drain** starts on the cycle the array reports the tile captured, shifts the shadow registers down for ``R``
  cycles, feeding one row per cycle to the ``C`` requant lanes with the row's write address.

A layer ends when its last row leaves the lanes (``layer_done``); the next instruction is then fetched. Cycles
of one run (start → done), exactly (``compile.Program.predict_cycles``)::

    Σ_layers [ 2 (fetch, latch) + (T - 1)·period + kp (last tile's reads) + R + C (through the array)
               + R - 1 (drain) + B + 1 (lanes) ] − 1 + 1 (done)
    = Σ_layers [ (T - 1)·period + kp + 2R + C + B + 2 ]

with ``T = m_tiles · n_tiles`` and ``B`` the lanes' search stages.

**Convolutions (implicit im2col, ``conv``).** An image is stored one pixel per *slot* (compile.Layout): pixel
(y, x) of sample n is slot ``n·S + y·sy·grid_w + x·sx``, bank ``slot % R``, channels along the lanes of
``words`` consecutive words, so the activation image is exactly C·H·W codes. A conv is the GEMM whose rows are
the slots of its input's grid (the output stays on that grid, strided outputs spread out by the stride) and whose
K runs over (ky, kx, c). Row i of tile t computes slot ``v = t·R + i`` and reads, for kernel position (ky, kx),
slot ``v + δ`` with ``δ = (ky - pt)·sy·grid_w + (kx - pl)·sx`` — the same δ for every row, so the R rows read R
consecutive slots, i.e. R different banks: bank b serves row ``(b - δ) mod R`` at word ``row_base + ⌊δ/R⌋·words
+ c_word`` (+ ``words`` when ``b < δ mod R``), and row i takes bank ``(i + δ) mod R`` (``feed_rotate``). No bank
conflicts, no stalls, no copy. δ is kept as (words, slots mod R) and stepped per kx and per ky with constants from
the instruction; every row keeps its pixel (x, y) on the grid (advanced by R slots per M tile) and is fed 0 —
the zero point after ``- zx`` — where ``(y + dy, x + dx)`` falls outside the input (padding). The drain and the
cycle formula are those of a GEMM with ``m_tiles = ⌈rows / R⌉``, rows = ``(N - 1)·S`` + the last sample's slots up
to its last output pixel.

**Pooling (``pool_max``).** MaxPool, AveragePool and GlobalAveragePool are conv instructions like any other
(compile.py: 0/1 weights selecting each window's channel, a global pool is the conv whose kernel is the image):
the same address generation, padding, drain and cycle formula. ``pool_max`` switches every PE to
``acc = max(acc, a·w)`` for the layer (pe.py); it changes only between layers, when the array is empty.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import stage_fields
from .config import MAX_FIXED_STEPS, SystolicConfig, index_range

# implicit im2col (OS, see the module docstring): kernel walk, slot offsets as (words, slots mod R), pixel grid
CONV_FIELDS = (
    ("conv", unsigned(1)), ("kh", unsigned(8)), ("kw", unsigned(8)), ("cg", unsigned(16)),
    ("c0_word", unsigned(16)), ("c0_lane", unsigned(7)),
    ("d0_words", signed(16)), ("d0_r", unsigned(7)), ("dx_words", signed(16)), ("dx_r", unsigned(7)),
    ("dy_words", signed(16)), ("dy_r", unsigned(7)),
    ("x0", signed(16)), ("y0", signed(16)), ("sx", unsigned(8)), ("sy", unsigned(8)),
    ("lim_x", unsigned(16)), ("lim_y", unsigned(16)), ("grid_w", unsigned(16)), ("grid_h", unsigned(16)),
    ("tile_x", unsigned(16)), ("tile_y", unsigned(16)),
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
    "in_base": unsigned(16), "in_base2": unsigned(16), "split_words": unsigned(16),
    "kp_words": unsigned(16), "out_base": unsigned(16), "out_words": unsigned(16),
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
                              "layer_last": unsigned(1)})


def controller_members(cfg: SystolicConfig) -> dict:
    """Ports both controllers share: run control, program fetch, the lanes' layer end and the stream engines."""
    return {
        "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32),
        "prog_addr": Out(index_range(cfg.prog_depth)), "prog_data": In(INSTRUCTION), "instr": Out(INSTRUCTION),
        "layer_done": In(1), "stream_in": Out(1), "stream_in_done": In(1), "stream_out": Out(1),
        "stream_out_done": In(1),
    }


def sequence_program(m: Module, ctrl: wiring.Component, layer: Signal, latch: list, first_state: str) -> None:
    """The states both controllers share; call inside ``with m.FSM():``.

    IDLE waits for ``start``; FETCH presents instruction ``layer`` to the program memory; LATCH copies it into
    ``ctrl.instr`` (plus the caller's ``latch`` assignments) and enters ``first_state``, through INPUT when the
    instruction streams its samples in; WAIT holds until the layer's last result leaves the lanes, then fetches
    the next instruction, or (a segment's last layer) goes through OUTPUT when it streams results out and then
    repeats the segment, goes on to the next one or finishes the run. (Each controller also counts ``cycles``
    while ``busy``, outside its FSM.)

    Cycles each chunk adds when streaming: ``x_beats`` (INPUT: one beat per cycle, the state ends with the last
    transfer) + ``y_beats + 1`` (OUTPUT: one cycle of read latency, then one beat per cycle).
    """
    chunk = Signal(16)
    instr = ctrl.instr
    m.d.comb += [ctrl.stream_in.eq(0), ctrl.stream_out.eq(0)]

    def end_of_segment():
        with m.If(chunk + 1 < instr.repeat):
            m.d.sync += [chunk.eq(chunk + 1), layer.eq(instr.loop_to)]
            m.next = "FETCH"
        with m.Elif(instr.end):
            m.d.sync += [ctrl.busy.eq(0), ctrl.done.eq(1)]
            m.next = "IDLE"
        with m.Else():
            m.d.sync += [chunk.eq(0), layer.eq(layer + 1)]
            m.next = "FETCH"

    with m.State("IDLE"):
        with m.If(ctrl.start):
            m.d.sync += [layer.eq(0), chunk.eq(0), ctrl.busy.eq(1), ctrl.done.eq(0), ctrl.cycles.eq(0)]
            m.next = "FETCH"
    with m.State("FETCH"):
        m.next = "LATCH"
    with m.State("LATCH"):
        m.d.sync += [ctrl.instr.eq(ctrl.prog_data), *latch]
        with m.If(ctrl.prog_data.stream_in):
            m.next = "INPUT"
        with m.Else():
            m.next = first_state
    with m.State("INPUT"):
        m.d.comb += ctrl.stream_in.eq(1)
        with m.If(ctrl.stream_in_done):
            m.next = first_state
    with m.State("WAIT"):
        with m.If(ctrl.layer_done):
            with m.If(~instr.last_layer):
                m.d.sync += layer.eq(layer + 1)
                m.next = "FETCH"
            with m.Elif(instr.stream_out):
                m.next = "OUTPUT"
            with m.Else():
                end_of_segment()
    with m.State("OUTPUT"):
        m.d.comb += ctrl.stream_out.eq(1)
        with m.If(ctrl.stream_out_done):
            end_of_segment()


class Controller(wiring.Component):
    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        slot_bits = max(1, (cfg.slot_depth - 1).bit_length())
        super().__init__({
            **controller_members(cfg),
            "bank_addr": Out(data.ArrayLayout(unsigned(16), cfg.rows)), "weight_addr": Out(unsigned(16)),
            "feed_valid": Out(1), "feed_last": Out(1), "feed_lane": Out(index_range(cfg.cols)),
            "feed_rotate": Out(index_range(cfg.rows)),                  # row i reads bank (i + rotate) mod R
            "row_valid": Out(data.ArrayLayout(unsigned(1), cfg.rows)),  # 0: padding, the operand is 0 (x - zx)
            "captured": In(1), "shift": Out(1),
            "lane_valid": Out(1), "lane_slot": Out(unsigned(slot_bits)), "lane_meta": Out(meta_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        instr = self.instr
        layer = Signal(index_range(cfg.prog_depth))
        m.d.comb += self.prog_addr.eq(layer)

        # ---- feed engine state
        k = Signal(16)
        k_lane = Signal(index_range(cfg.cols))
        k_word = Signal(16)
        count = Signal(16)
        m_tile = Signal(16)
        n_tile = Signal(16)
        row_base = Signal(16)           # in_base + m_tile * kp_words
        row_base2 = Signal(16)          # in_base2 + m_tile * kp_words (second input of a residual Add)
        w_tile_base = Signal(16)        # w_base + n_tile * kp

        # ---- drain engine state
        draining = Signal()
        r = Signal(index_range(cfg.rows))
        d_m = Signal(16)
        d_n = Signal(16)
        d_row_base = Signal(16)         # out_base + d_m * out_words

        # ---- implicit im2col state: kernel position (ky, kx) and channel c of the feature k being read, the slot
        # offset of (ky, kx) from a row's own slot as (words, slots mod R), and every row's pixel on the grid
        rows = cfg.rows
        c = Signal(16)
        kx, ky = Signal(8), Signal(8)
        d_words, d_r = Signal(signed(16)), Signal(index_range(rows))
        dx, dy = Signal(signed(18)), Signal(signed(18))
        grid_x = [Signal(16, name=f"row{i}_x") for i in range(rows)]
        grid_y = [Signal(16, name=f"row{i}_y") for i in range(rows)]

        def kernel_start(source):
            return [c.eq(0), kx.eq(0), ky.eq(0), k_lane.eq(source.c0_lane), k_word.eq(source.c0_word),
                    d_words.eq(source.d0_words), d_r.eq(source.d0_r), dx.eq(source.x0), dy.eq(source.y0)]

        def add_offset(words, r):
            """Slot offset += (words, r): r carries into a word group when it reaches R."""
            total = d_r + r
            return [d_r.eq(Mux(total >= rows, total - rows, total)),
                    d_words.eq(d_words + words + Mux(total >= rows, instr.kp_words, 0))]

        # rows' pixels at the layer's start: slot i is pixel (i // grid_w, i % grid_w) of the grid (mod its height)
        start_grid = []
        x_prev = y_prev = None
        for i in range(rows):
            if i == 0:
                x_now, y_now = 0, 0
            else:
                wrap = x_prev + 1 >= self.prog_data.grid_w
                x_now = Mux(wrap, 0, x_prev + 1)
                y_next = y_prev + wrap
                y_now = Mux(y_next >= self.prog_data.grid_h, 0, y_next)
            xs, ys = Signal(16, name=f"row{i}_x_start"), Signal(16, name=f"row{i}_y_start")
            m.d.comb += [xs.eq(x_now), ys.eq(y_now)]
            start_grid += [grid_x[i].eq(xs), grid_y[i].eq(ys)]
            x_prev, y_prev = xs, ys

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM():
            sequence_program(m, self, layer, [
                k.eq(0), count.eq(0), m_tile.eq(0), n_tile.eq(0),
                row_base.eq(self.prog_data.in_base), row_base2.eq(self.prog_data.in_base2),
                w_tile_base.eq(self.prog_data.w_base), d_m.eq(0), d_n.eq(0), d_row_base.eq(self.prog_data.out_base),
                *kernel_start(self.prog_data), *start_grid],
                "FEED")
            with m.State("FEED"):
                issuing = k < instr.kp
                m.d.comb += [self.feed_valid.eq(issuing), self.feed_last.eq(k == instr.kp - 1),
                             self.feed_lane.eq(k_lane), self.weight_addr.eq(w_tile_base + k)]
                with m.If(instr.conv):
                    # row i reads slot (tile's first) + i + offset: bank (i + d_r) mod R; bank b serves row
                    # (b - d_r) mod R, one word group further on when b < d_r
                    word = row_base + d_words + k_word
                    m.d.comb += self.feed_rotate.eq(d_r)
                    for b in range(rows):                      # (d_r < R: bank R-1 never wraps)
                        m.d.comb += self.bank_addr[b].eq(word + Mux(b < d_r, instr.kp_words, 0) if b < rows - 1
                                                         else word)
                    for i in range(rows):
                        y, x = grid_y[i] + dy, grid_x[i] + dx
                        m.d.comb += self.row_valid[i].eq((y >= 0) & (y <= instr.lim_y) & (x >= 0) &
                                                         (x <= instr.lim_x))
                    with m.If(issuing):
                        m.d.sync += k.eq(k + 1)
                        with m.If(c == instr.cg - 1):           # next kernel position
                            m.d.sync += [c.eq(0), k_lane.eq(instr.c0_lane), k_word.eq(instr.c0_word)]
                            with m.If(kx == instr.kw - 1):
                                m.d.sync += [kx.eq(0), ky.eq(ky + 1), dx.eq(instr.x0), dy.eq(dy + instr.sy),
                                             *add_offset(instr.dy_words, instr.dy_r)]
                            with m.Else():
                                m.d.sync += [kx.eq(kx + 1), dx.eq(dx + instr.sx),
                                             *add_offset(instr.dx_words, instr.dx_r)]
                        with m.Else():
                            m.d.sync += c.eq(c + 1)
                            with m.If(k_lane == cfg.cols - 1):
                                m.d.sync += [k_lane.eq(0), k_word.eq(k_word + 1)]
                            with m.Else():
                                m.d.sync += k_lane.eq(k_lane + 1)
                with m.Else():
                    address = Mux(k_word < instr.split_words, row_base + k_word, row_base2 + k_word - instr.split_words)
                    m.d.comb += [self.feed_rotate.eq(0), self.row_valid.eq((1 << rows) - 1)]
                    for b in range(rows):
                        m.d.comb += self.bank_addr[b].eq(address)
                    with m.If(issuing):
                        m.d.sync += k.eq(k + 1)
                        with m.If(k_lane == cfg.cols - 1):
                            m.d.sync += [k_lane.eq(0), k_word.eq(k_word + 1)]
                        with m.Else():
                            m.d.sync += k_lane.eq(k_lane + 1)
                with m.If(count == instr.period - 1):
                    m.d.sync += [count.eq(0), k.eq(0), *kernel_start(instr)]
                    with m.If(n_tile == instr.n_tiles - 1):
                        m.d.sync += [n_tile.eq(0), w_tile_base.eq(instr.w_base)]
                        with m.If(m_tile == instr.m_tiles - 1):
                            m.next = "WAIT"
                        with m.Else():
                            m.d.sync += [m_tile.eq(m_tile + 1), row_base.eq(row_base + instr.kp_words),
                                         row_base2.eq(row_base2 + instr.kp_words)]
                            for i in range(rows):        # every row moves R slots on along the grid
                                x_sum = grid_x[i] + instr.tile_x
                                wrap = x_sum >= instr.grid_w
                                y_sum = grid_y[i] + instr.tile_y + wrap
                                m.d.sync += [grid_x[i].eq(Mux(wrap, x_sum - instr.grid_w, x_sum)),
                                             grid_y[i].eq(Mux(y_sum >= instr.grid_h, y_sum - instr.grid_h, y_sum))]
                    with m.Else():
                        m.d.sync += [n_tile.eq(n_tile + 1), w_tile_base.eq(w_tile_base + instr.kp)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)

        # ---- drain engine: R cycles per captured tile, rows bottom-first
        active = self.captured | draining
        r_now = Signal(index_range(cfg.rows))
        m.d.comb += r_now.eq(Mux(self.captured, 0, r))
        last_row = active & (r_now == cfg.rows - 1)
        if cfg.rows > 1:
            with m.If(self.captured):
                m.d.sync += [draining.eq(1), r.eq(1)]
            with m.Elif(draining):
                m.d.sync += r.eq(r + 1)
                with m.If(r == cfg.rows - 1):
                    m.d.sync += [draining.eq(0), r.eq(0)]
        last_tile = (d_n == instr.n_tiles - 1) & (d_m == instr.m_tiles - 1)
        with m.If(last_row):
            with m.If(d_n == instr.n_tiles - 1):
                m.d.sync += [d_n.eq(0), d_m.eq(d_m + 1), d_row_base.eq(d_row_base + instr.out_words)]
            with m.Else():
                m.d.sync += d_n.eq(d_n + 1)
        m.d.comb += [self.shift.eq(active), self.lane_valid.eq(active),
                     self.lane_slot.eq(instr.slot_base + d_n),
                     self.lane_meta.row.eq(cfg.rows - 1 - r_now),
                     self.lane_meta.addr.eq(d_row_base + d_n),
                     self.lane_meta.layer_last.eq(last_row & last_tile)]
        return m
