"""Controller for the weight-stationary array: folds of (output-channel tile, K tile), pipelined back to back,
accumulated in SRAM.

Per layer: PRELOAD (R cycles) reads fold 0's weights W[k_tile·R + R-1-r, n_tile·C + j] from weight bank j; they
shift down column j. Then STREAM runs the folds every ``P`` cycles (``P = period``, a multiple of R, at least
``M`` and ``2R + C - 1``), with no gap between them:

- row i reads sample t - i, feature k_tile·R + i at fold cycle t (valid while 0 ≤ t - i < M). The R rows read R
  consecutive samples, which sit in R different activation banks (bank = m mod R), so the skew costs no
  registers: bank ``(t - i) mod R`` serves row ``i`` (a rotating crossbar). For t < i row i still works on the
  previous fold (its last samples), with that fold's features; since P is a multiple of R the banks never clash.
- row i's first operand of a fold carries ``commit``: each PE switches to the preloaded weight as that operand
  reaches it, along the data's wavefront, so folds follow each other without draining the array;
- the next fold's weights shift in during fold cycles R + C - 1 … 2R + C - 2, after the last PE committed this
  fold's weights (cycle R + C - 2) and before the next fold's first commit (which needs P ≥ 2R + C - 1);
- column sums for sample m of a fold come out aligned at fold cycle m + R + C (``lag``; for t < lag the sums are
  the previous fold's): the first K tile writes them to the per-column accumulator SRAM, later ones add to it,
  and the last one sends the total to the requant lanes with sample m's write address.

The last fold streams for M + R + C cycles (its last sums); the layer ends when its last sample leaves the lanes.
Exact cycles of one run (``compile.Program.predict_cycles``)::

    Σ_layers [ R + (F - 1)·P + M + R + C + B + 3 ],   F = n_tiles · k_tiles folds
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from .config import SystolicConfig, index_range
from .controller import controller_members, meta_layout, sequence_program


class WeightStationaryController(wiring.Component):
    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        slot_bits = max(1, (cfg.slot_depth - 1).bit_length())
        rows = cfg.rows
        super().__init__({
            **controller_members(cfg),
            "weight_addr": Out(unsigned(16)), "weight_shift": Out(1),
            "bank_addr": Out(data.ArrayLayout(unsigned(16), rows)),
            "row_bank": Out(data.ArrayLayout(unsigned(max(1, (rows - 1).bit_length())), rows)),
            "row_lane": Out(data.ArrayLayout(unsigned(max(1, (cfg.cols - 1).bit_length())), rows)),
            "row_valid": Out(data.ArrayLayout(unsigned(1), rows)),
            "row_commit": Out(data.ArrayLayout(unsigned(1), rows)),
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
        t_q, t_r = Signal(16), Signal(index_range(rows))          # t // R, t % R
        row_base = Signal(16)                          # in_base + (t // R) * kp_words
        row_base2 = Signal(16)                         # the same for the second input of a residual Add
        # this fold and the previous one (rows still reading it for t < i, sums coming out of it for t < lag)
        n_tile, k_tile = Signal(16), Signal(16)
        w_fold = Signal(16)                            # w_base + n_tile * kp + k_tile * R
        k0_word, k0_lane = Signal(16), Signal(index_range(cols))  # (k_tile * R) // C, % C
        has_prev = Signal()
        p_n_tile = Signal(16)
        p_first, p_final = Signal(), Signal()
        p_k0_word, p_k0_lane = Signal(16), Signal(index_range(cols))
        p_row_base, p_row_base2 = Signal(16), Signal(16)          # row bases of the previous fold's last group
        # output engine: sample (t - lag) mod P, its bank row and word
        o_sample = Signal(16)
        o_r = Signal(index_range(rows))
        o_base_row = Signal(16)                        # out_base + (o_sample // R) * out_words

        first_k = k_tile == 0
        last_k = k_tile == instr.k_tiles - 1
        last_fold = last_k & (n_tile == instr.n_tiles - 1)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM():
            sequence_program(m, self, layer, [n_tile.eq(0), k_tile.eq(0), w_fold.eq(self.prog_data.w_base),
                                              k0_word.eq(0), k0_lane.eq(0), r.eq(0), has_prev.eq(0)], "PRELOAD")
            with m.State("PRELOAD"):
                m.d.comb += [self.weight_addr.eq(w_fold + (rows - 1) - r), self.weight_shift.eq(1)]
                m.d.sync += r.eq(r + 1)
                with m.If(r == rows - 1):
                    m.d.sync += [r.eq(0), t.eq(0), t_q.eq(0), t_r.eq(0), row_base.eq(instr.in_base),
                                 row_base2.eq(instr.in_base2), o_sample.eq(instr.period - lag)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                self._stream(m, t, t_q, t_r, row_base, row_base2, k0_word, k0_lane, has_prev, p_row_base,
                             p_row_base2, p_k0_word, p_k0_lane)
                # the next fold's weights, behind this fold's commits
                preloading = ~last_fold & (t >= rows + cols - 1) & (t < 2 * rows + cols - 1)
                m.d.comb += [self.weight_addr.eq(w_fold + (3 * rows + cols - 2) - t),
                             self.weight_shift.eq(preloading)]
                m.d.sync += t.eq(t + 1)
                with m.If(t_r == rows - 1):
                    m.d.sync += [t_r.eq(0), t_q.eq(t_q + 1), row_base.eq(row_base + instr.kp_words),
                                 row_base2.eq(row_base2 + instr.kp_words)]
                with m.Else():
                    m.d.sync += t_r.eq(t_r + 1)
                # aligned column sums of sample o_sample, of this fold (t ≥ lag) or the previous one
                current = t >= lag
                out_n = Mux(current, n_tile, p_n_tile)
                out_valid = Mux(current, 1, has_prev) & (o_sample < instr.samples)
                m.d.comb += [self.acc_valid.eq(out_valid), self.acc_first.eq(Mux(current, first_k, p_first)),
                             self.acc_final.eq(Mux(current, last_k, p_final)), self.acc_wr_addr.eq(o_sample),
                             self.acc_rd_addr.eq(Mux(o_sample == instr.period - 1, 0, o_sample + 1)),
                             self.lane_slot.eq(instr.slot_base + out_n),
                             self.lane_meta.row.eq(o_r), self.lane_meta.addr.eq(o_base_row + out_n),
                             self.lane_meta.layer_last.eq(current & last_fold & (o_sample == instr.samples - 1))]
                with m.If(o_sample == instr.period - 1):
                    m.d.sync += [o_sample.eq(0), o_r.eq(0), o_base_row.eq(instr.out_base)]
                with m.Else():
                    m.d.sync += o_sample.eq(o_sample + 1)
                    with m.If(o_r == rows - 1):
                        m.d.sync += [o_r.eq(0), o_base_row.eq(o_base_row + instr.out_words)]
                    with m.Else():
                        m.d.sync += o_r.eq(o_r + 1)
                with m.If(last_fold & (t == instr.samples + (lag - 1))):
                    m.next = "WAIT"
                with m.Elif(~last_fold & (t == instr.period - 1)):
                    m.d.sync += [t.eq(0), t_q.eq(0), t_r.eq(0), row_base.eq(instr.in_base),
                                 row_base2.eq(instr.in_base2), w_fold.eq(w_fold + rows),
                                 has_prev.eq(1), p_n_tile.eq(n_tile), p_first.eq(first_k), p_final.eq(last_k),
                                 p_k0_word.eq(k0_word), p_k0_lane.eq(k0_lane), p_row_base.eq(row_base),
                                 p_row_base2.eq(row_base2)]
                    with m.If(last_k):
                        m.d.sync += [k_tile.eq(0), k0_word.eq(0), k0_lane.eq(0), n_tile.eq(n_tile + 1)]
                    with m.Else():
                        lane_sum = k0_lane + rows
                        m.d.sync += [k_tile.eq(k_tile + 1), k0_word.eq(k0_word + lane_sum // cols),
                                     k0_lane.eq(lane_sum % cols)]
        return m

    def _stream(self, m: Module, t, t_q, t_r, row_base, row_base2, k0_word, k0_lane, has_prev, p_row_base,
                p_row_base2, p_k0_word, p_k0_lane) -> None:
        """Row i reads sample t - i, feature k0 + i (of the previous fold when t < i); bank (t - i) mod R serves
        it; its sample 0 carries the fold's commit."""
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        instr = self.instr
        row_addr = []
        for i in range(rows):
            wraps = t_r < i                                    # sample t - i is in the previous group of R
            previous = wraps & (t_q == 0)                      # … of the previous fold
            base = Mux(previous, p_row_base, Mux(wraps, row_base - instr.kp_words, row_base))
            base2 = Mux(previous, p_row_base2, Mux(wraps, row_base2 - instr.kp_words, row_base2))
            feature = Mux(previous, p_k0_lane, k0_lane) + i
            word = Signal(16, name=f"row{i}_word")
            addr = Signal(16, name=f"row{i}_addr")
            m.d.comb += [word.eq(Mux(previous, p_k0_word, k0_word) + feature // cols),
                         addr.eq(Mux(word < instr.split_words, base + word, base2 + word - instr.split_words)),
                         self.row_lane[i].eq(feature % cols),
                         self.row_bank[i].eq(Mux(wraps, t_r + rows - i, t_r - i)),
                         self.row_valid[i].eq(Mux(previous, has_prev & (t + instr.period - i < instr.samples),
                                                  t - i < instr.samples)),
                         self.row_commit[i].eq(t == i)]
            row_addr.append(addr)
        for b in range(rows):
            with m.Switch(t_r):
                for rv in range(rows):
                    with m.Case(rv):
                        m.d.comb += self.bank_addr[b].eq(row_addr[(rv - b) % rows])
