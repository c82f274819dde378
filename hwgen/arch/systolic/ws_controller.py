"""Controller for the weight-stationary array: folds of (output-channel tile, K tile), pipelined back to back,
accumulated in SRAM.

A layer's samples M are the pixels of its output (a dense layer: one per sample), its features K the kernel
positions × input channels in (ky, kx, c) order, ``cgp`` rows per kernel position (``cg`` channels, padded when
needed to keep a fold's reads in distinct banks, compile.py ``ws_channel_rows``), ``kp = k_tiles · R``.

Per layer: PRELOAD (R cycles) reads fold 0's weights W[k_tile·R + R-1-r, n_tile·C + j] from weight bank j; they
shift down column j; meanwhile a walker (walk.py) describes fold 0's R features, one per cycle: each row's kernel
position (slot offset δ and coordinate offset), channel word and lane. Then STREAM runs the folds every ``P``
cycles (``P = period = max(M, 2R + C - 1)``), with no gap between them:

- at fold cycle t every row reads pixel t of the walk (valid while t < M): row i the slot ``s(t) + δ_i`` at word
  ``word_i``, i.e. bank ``(s(t) + δ_i + word_i) mod R`` (tensors are stored with their words rotated across the
  banks, compile.py ``Layout``), which the compiler keeps distinct for every row reading a different word; each bank
  takes the address of the row that reads it. Rows reading outside the input (padding) are fed 0. The array skews
  row i by i cycles, so the rows of consecutive folds never meet in a bank;
- ``commit`` with every fold's first sample makes each PE switch to the preloaded weight as that sample reaches it,
  along the data's wavefront, so folds follow each other without draining the array;
- the next fold's weights shift in during fold cycles R + C - 1 … 2R + C - 2, after the last PE committed this
  fold's weights (cycle R + C - 2) and before the next fold's first commit (which needs P ≥ 2R + C - 1); the
  walker describes the next fold's features during fold cycles 0 … R - 1;
- column sums for sample m of a fold come out aligned at fold cycle m + R + C (``lag``; for t < lag the sums are
  the previous fold's): the first K tile writes them to the per-column accumulator SRAM, later ones add to it
  (max mode: take the larger), and the last one sends the total to the requant lanes with sample m's write
  address, walked over the output tensor's slots.

The last fold streams for M + R + C cycles (its last sums); the layer ends when its last sample leaves the lanes.
Exact cycles of one run (``compile.Program.predict_cycles``)::

    Σ_layers [ R + (F - 1)·P + M + R + C + L_feed + P_pe + L_lane + 1 ]
    = Σ_layers [ R + (F - 1)·P + M + R + C + 3S + 13 ],   F = n_tiles · k_tiles folds

(``L_feed = cfg.feed_latency = 8``: the controller's registered row reads (``_read``) and top.py's seven stages,
``P_pe = cfg.pe_stages``, ``L_lane = cfg.lane_latency = 3S + 2``). The controller itself is timed for operands that
reach the array one cycle after it addresses them and sums that leave it at fold cycle m + R + C; top.py delays
everything that meets the data (row selects, ``commit``, weight shifts, the accumulator and lane signals) by the
feed pipeline and the PEs' second stage.
"""
from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from .config import SystolicConfig, index_range
from .controller import Sequencer, controller_members, last_indices, meta_layout
from .walk import FeatureWalk, PixelWalk, feature_layout, mod_add, slot_add


class WeightStationaryController(wiring.Component):
    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        slot_bits = max(1, (cfg.slot_depth - 1).bit_length())
        rows = cfg.rows
        super().__init__({
            **controller_members(cfg),
            "weight_addr": Out(unsigned(16)), "weight_shift": Out(1),
            "bank_addr": Out(data.ArrayLayout(unsigned(16), rows)),
            "bank_read": Out(data.ArrayLayout(unsigned(1), rows)),     # bank b's read enable (its data is used)
            "row_bank": Out(data.ArrayLayout(unsigned(max(1, (rows - 1).bit_length())), rows)),
            "row_lane": Out(data.ArrayLayout(unsigned(max(1, (cfg.cols - 1).bit_length())), rows)),
            "row_valid": Out(data.ArrayLayout(unsigned(1), rows)),
            "fold_start": Out(1),
            "acc_valid": Out(1), "acc_first": Out(1), "acc_final": Out(1),
            "acc_rd_addr": Out(unsigned(16)), "acc_wr_addr": Out(unsigned(16)),
            "lane_slot": Out(unsigned(slot_bits)), "lane_meta": Out(meta_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        instr = self.instr
        layer = Signal(index_range(cfg.prog_depth))
        m.d.comb += self.prog_addr.eq(layer)
        lag = rows + cols                              # fold cycle at which sample 0's sums come out

        r = Signal(index_range(rows))                  # preload step (PRELOAD)
        t = Signal(16)                                 # fold cycle
        n_tile, k_tile = Signal(16), Signal(16)
        w_fold = Signal(16)                            # w_base + n_tile * kp + k_tile * R
        word_r = Signal(index_range(rows))             # (output word of this N tile) mod R
        has_prev = Signal()
        p_n_tile, p_word_r = Signal(16), Signal(index_range(rows))
        p_first, p_final = Signal(), Signal()
        o_sample = Signal(16)                          # output engine: sample (t - lag) mod P
        o_wrap = Signal()                              # o_sample = period - 1 (set a cycle ahead)
        features = FeatureWalk(cfg)
        pixels = PixelWalk(rows, "in")
        dest = PixelWalk(rows, "out")
        layout = feature_layout(cfg)
        cur = [Signal(layout, name=f"row{i}_feature") for i in range(rows)]
        nxt = [Signal(layout, name=f"row{i}_next_feature") for i in range(rows)]

        def describe(index, into) -> None:
            """Row ``index`` of ``into`` takes the walker's feature, and the walker moves on."""
            with m.Switch(index):
                for i in range(rows):
                    with m.Case(i):
                        m.d.sync += [getattr(into[i], name).eq(value)
                                     for name, value in features.descriptor(instr).items()]
            features.step(m, instr)

        last, prepare_last = last_indices(instr, ("k_tiles", "n_tiles", "period", "samples"))
        # the fold's position as flags, updated with the counters they stand for (the fold boundary's enables then
        # come from flip-flops, not from 16-bit compares): k_tile = 0, k_tile = k_tiles - 1, n_tile = n_tiles - 1,
        # and t = period - 1 (set a cycle ahead); the last fold's last sums come out at t = stream_end
        first_k, last_k, last_n, fold_end = Signal(), Signal(), Signal(), Signal()
        k_single, k_two, k_penult = Signal(), Signal(), Signal()   # k_tiles = 1, = 2; k_tile = k_tiles - 2
        stream_end = Signal(16)
        describing = Signal()                          # t < R: the walker describes the next fold's row r = t
        last_fold = last_k & last_n
        reading = Signal()                             # STREAM: the rows read pixel t
        self._read(m, t, reading, pixels, cur)
        sequencer = Sequencer(self, layer, "PRELOAD")
        with m.FSM():
            sequencer.states(m)
            with m.State("PRELOAD"):
                m.d.comb += [self.weight_addr.eq(w_fold + (rows - 1) - r), self.weight_shift.eq(1)]
                m.d.sync += r.eq(r + 1)
                describe(r, cur)
                with m.If(r == rows - 1):
                    m.d.sync += [r.eq(0), t.eq(0), fold_end.eq(0), describing.eq(1), o_sample.eq(instr.period - lag),
                                 o_wrap.eq(0),                        # (lag ≥ 2)
                                 *pixels.start(instr, instr.in_base), *dest.start(instr, instr.out_base)]
                    with m.If(k_single):                         # fold 1 starts the next N tile's features
                        m.d.sync += features.start(instr)
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += reading.eq(1)
                pixels.step(m, instr)
                with m.If(describing):                           # the next fold's features, row r at t = r
                    with m.If(~last_fold):
                        describe(r, nxt)
                    m.d.sync += r.eq(r + 1)
                    with m.If(r == rows - 1):
                        m.d.sync += [r.eq(0), describing.eq(0)]
                # the next fold's weights, behind this fold's commits
                preloading = ~last_fold & (t >= rows + cols - 1) & (t < 2 * rows + cols - 1)
                m.d.comb += [self.weight_addr.eq(w_fold + (3 * rows + cols - 2) - t),
                             self.weight_shift.eq(preloading), self.fold_start.eq(t == 0)]
                m.d.sync += [t.eq(t + 1), fold_end.eq(t + 1 == last["period"])]
                # aligned column sums of sample o_sample, of this fold (t ≥ lag) or the previous one
                current = t >= lag
                out_n = Mux(current, n_tile, p_n_tile)
                out_valid = Mux(current, 1, has_prev) & (o_sample < instr.samples)
                m.d.comb += [self.acc_valid.eq(out_valid), self.acc_first.eq(Mux(current, first_k, p_first)),
                             self.acc_final.eq(Mux(current, last_k, p_final)), self.acc_wr_addr.eq(o_sample),
                             self.acc_rd_addr.eq(Mux(o_wrap, 0, o_sample + 1)),
                             self.lane_slot.eq(instr.slot_base + out_n),
                             self.lane_meta.row.eq(mod_add(dest.r, Mux(current, word_r, p_word_r), rows)),
                             self.lane_meta.addr.eq(dest.addr + out_n), self.lane_meta.write.eq(1),
                             self.lane_meta.layer_last.eq(current & last_fold & (o_sample == last["samples"]))]
                with m.If(o_wrap):                                # (period ≥ 3: 0 is never the last)
                    m.d.sync += [o_sample.eq(0), o_wrap.eq(0), *dest.start(instr, instr.out_base)]
                with m.Else():
                    m.d.sync += [o_sample.eq(o_sample + 1), o_wrap.eq(o_sample + 1 == last["period"])]
                    dest.step(m, instr)
                with m.If(last_fold & (t == stream_end)):
                    m.next = "WAIT"
                with m.Elif(~last_fold & fold_end):
                    m.d.sync += [t.eq(0), fold_end.eq(0), describing.eq(1), *pixels.start(instr, instr.in_base),
                                 w_fold.eq(w_fold + rows),
                                 *(c.eq(n) for c, n in zip(cur, nxt)),
                                 has_prev.eq(1), p_n_tile.eq(n_tile), p_word_r.eq(word_r), p_first.eq(first_k),
                                 p_final.eq(last_k)]
                    with m.If(last_k):
                        m.d.sync += [k_tile.eq(0), first_k.eq(1), last_k.eq(k_single),
                                     k_penult.eq(k_two),
                                     n_tile.eq(n_tile + 1), last_n.eq(n_tile + 1 == last["n_tiles"]),
                                     word_r.eq(mod_add(word_r, 1, rows))]
                    with m.Else():
                        m.d.sync += [k_tile.eq(k_tile + 1), first_k.eq(0), last_k.eq(k_penult),
                                     k_penult.eq(k_tile + 2 == last["k_tiles"])]
                    # the walker restarts for the fold after the new one when that fold starts the next N tile
                    with m.If(Mux(last_k, k_single, k_penult)):        # the new fold is the last K tile
                        m.d.sync += features.start(instr)
        sequencer.decode(m, [
            n_tile.eq(0), k_tile.eq(0), w_fold.eq(instr.w_base), r.eq(0), has_prev.eq(0), first_k.eq(1),
            last_k.eq(instr.k_tiles == 1), k_single.eq(instr.k_tiles == 1), k_two.eq(instr.k_tiles == 2),
            k_penult.eq(instr.k_tiles == 2),
            last_n.eq(instr.n_tiles == 1), stream_end.eq(instr.samples + (lag - 1)),
            word_r.eq(instr.out_word_r), *features.start(instr), *features.prepare(instr, instr.kp_words),
            *pixels.prepare(instr, instr.kp_words), *dest.prepare(instr, instr.out_words), *prepare_last])
        return m

    def _read(self, m: Module, t, reading, pixels: PixelWalk, cur: list) -> None:
        """Every row reads pixel t of the walk at its feature's slot offset and word; each bank takes the address
        of the row reading it (the compiler guarantees rows in one bank read one word).

        Two stages: each row's slot sum (address, bank) and its padding test (coordinate adders, bounds compares)
        are registered, then every bank picks the address of the row reading it from those registers. The reads
        (``bank_addr``, ``row_bank``, ``row_lane``, ``row_valid``) therefore leave the controller one cycle after
        fold cycle t: ``cfg.feed_latency`` counts that register for the WS dataflow."""
        cfg = self.cfg
        rows = cfg.rows
        instr = self.instr
        reads = []
        for i, feature in enumerate(cur):
            addr, slot_r = slot_add(pixels.addr + feature.word, pixels.r, feature.d_words, feature.d_r,
                                    instr.kp_words, rows)
            bank = Signal(index_range(rows), name=f"row{i}_bank", reset_less=True)
            address = Signal(16, name=f"row{i}_addr", reset_less=True)
            lane = Signal.like(self.row_lane[i], name=f"row{i}_lane", reset_less=True)
            valid = Signal(name=f"row{i}_valid")
            x, y = pixels.x + feature.dx, pixels.y + feature.dy
            m.d.sync += [bank.eq(mod_add(slot_r, feature.word_r, rows)), address.eq(addr), lane.eq(feature.lane),
                         valid.eq(reading & feature.valid & (t < instr.samples) & (x >= 0) & (x <= instr.lim_x)
                                  & (y >= 0) & (y <= instr.lim_y))]
            m.d.comb += [self.row_bank[i].eq(bank), self.row_lane[i].eq(lane), self.row_valid[i].eq(valid)]
            reads.append((bank, address, valid))
        for b in range(rows):
            hits = [(valid & (bank == b), address) for bank, address, valid in reads]      # rows reading bank b
            m.d.comb += [self.bank_addr[b].eq(reduce(or_, [Mux(hit, address, 0) for hit, address in hits])),
                         self.bank_read[b].eq(reduce(or_, [hit for hit, _ in hits]))]
