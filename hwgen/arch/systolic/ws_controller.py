"""Controller for the weight-stationary array: folds of (output-channel tile, K tile), accumulated in SRAM.

For every layer and every fold ``(n_tile, k_tile)``::

    PRELOAD  R cycles   read W[k_tile·R + R-1-r, n_tile·C + j] from weight bank j; it shifts down column j
    SETTLE   1 cycle    the last shift lands
    COMMIT   1 cycle    every PE makes the shifted weight active
    STREAM   M + R + C  row i reads sample t - i, feature k_tile·R + i (valid while 0 ≤ t - i < M). The R rows read
                        R consecutive samples, which sit in R different activation banks (bank = m mod R), so the
                        skew costs no registers: bank ``(t - i) mod R`` serves row ``i`` (a rotating crossbar).
                        Column sums for sample ``m`` come out aligned at stream cycle ``m + R + C``; the first K tile
                        writes them to the per-column accumulator SRAM, later ones add to it, and the last one
                        sends ``sum`` to the requant lanes with sample ``m``'s write address.

After the last fold the layer ends when its last sample leaves the lanes. Exact cycles of one run
(``compile.Program.predict_cycles``)::

    Σ_layers [ n_tiles · k_tiles · (2R + C + M + 2) + B + 3 ]
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
            "weight_addr": Out(unsigned(16)), "weight_shift": Out(1), "commit": Out(1),
            "bank_addr": Out(data.ArrayLayout(unsigned(16), rows)),
            "row_bank": Out(data.ArrayLayout(unsigned(max(1, (rows - 1).bit_length())), rows)),
            "row_lane": Out(data.ArrayLayout(unsigned(max(1, (cfg.cols - 1).bit_length())), rows)),
            "row_valid": Out(data.ArrayLayout(unsigned(1), rows)),
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
        lag = rows + cols                              # stream cycle at which sample 0's sums come out

        r = Signal(index_range(rows))                  # preload step
        t = Signal(16)                                 # stream cycle
        t_q, t_r = Signal(16), Signal(index_range(rows))          # t // R, t % R
        row_base = Signal(16)                          # in_base + (t // R) * kp_words
        row_base2 = Signal(16)                         # the same for the second input of a residual Add
        n_tile, k_tile = Signal(16), Signal(16)
        w_fold = Signal(16)                            # w_base + n_tile * kp + k_tile * R
        k0_word, k0_lane = Signal(16), Signal(index_range(cols))  # (k_tile * R) // C, % C
        out_q, out_r = Signal(16), Signal(index_range(rows))      # (t - lag) // R, % R
        out_base_row = Signal(16)                      # out_base + out_q * out_words

        last_k = k_tile == instr.k_tiles - 1
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM():
            sequence_program(m, self, layer, [n_tile.eq(0), k_tile.eq(0), w_fold.eq(self.prog_data.w_base),
                                              k0_word.eq(0), k0_lane.eq(0), r.eq(0)], "PRELOAD")
            with m.State("PRELOAD"):
                m.d.comb += [self.weight_addr.eq(w_fold + (rows - 1) - r), self.weight_shift.eq(1)]
                m.d.sync += r.eq(r + 1)
                with m.If(r == rows - 1):
                    m.d.sync += r.eq(0)
                    m.next = "SETTLE"
            with m.State("SETTLE"):
                m.next = "COMMIT"
            with m.State("COMMIT"):
                m.d.comb += self.commit.eq(1)
                m.d.sync += [t.eq(0), t_q.eq(0), t_r.eq(0), row_base.eq(instr.in_base), row_base2.eq(instr.in_base2),
                             out_q.eq(0), out_r.eq(0),
                             out_base_row.eq(instr.out_base)]
                m.next = "STREAM"
            with m.State("STREAM"):
                self._stream(m, t, t_r, row_base, row_base2, k0_word, k0_lane)
                m.d.sync += t.eq(t + 1)
                with m.If(t_r == rows - 1):
                    m.d.sync += [t_r.eq(0), t_q.eq(t_q + 1), row_base.eq(row_base + instr.kp_words),
                                 row_base2.eq(row_base2 + instr.kp_words)]
                with m.Else():
                    m.d.sync += t_r.eq(t_r + 1)
                # aligned column sums of sample t - lag
                m_out = t - lag
                out_valid = (t >= lag) & (m_out < instr.samples)
                m.d.comb += [self.acc_valid.eq(out_valid), self.acc_first.eq(k_tile == 0), self.acc_final.eq(last_k),
                             self.acc_wr_addr.eq(m_out), self.acc_rd_addr.eq(t + 1 - lag),
                             self.lane_slot.eq(instr.slot_base + n_tile),
                             self.lane_meta.row.eq(out_r), self.lane_meta.addr.eq(out_base_row + n_tile),
                             self.lane_meta.layer_last.eq(last_k & (n_tile == instr.n_tiles - 1) &
                                                          (m_out == instr.samples - 1))]
                with m.If(out_valid):
                    with m.If(out_r == rows - 1):
                        m.d.sync += [out_r.eq(0), out_q.eq(out_q + 1), out_base_row.eq(out_base_row + instr.out_words)]
                    with m.Else():
                        m.d.sync += out_r.eq(out_r + 1)
                with m.If(t == instr.period - 1):
                    m.d.sync += w_fold.eq(w_fold + rows)
                    with m.If(last_k):
                        m.d.sync += [k_tile.eq(0), k0_word.eq(0), k0_lane.eq(0), n_tile.eq(n_tile + 1)]
                        with m.If(n_tile == instr.n_tiles - 1):
                            m.next = "WAIT"
                        with m.Else():
                            m.next = "PRELOAD"
                    with m.Else():
                        lane_sum = k0_lane + rows
                        m.d.sync += [k_tile.eq(k_tile + 1), k0_word.eq(k0_word + lane_sum // cols),
                                     k0_lane.eq(lane_sum % cols)]
                        m.next = "PRELOAD"
        return m

    def _stream(self, m: Module, t, t_r, row_base, row_base2, k0_word, k0_lane) -> None:
        """Row i reads sample t - i, feature k0 + i; bank (t - i) mod R serves it."""
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        instr = self.instr
        row_addr = []
        for i in range(rows):
            wraps = t_r < i                                    # sample t - i is in the previous group of R
            base = Mux(wraps, row_base - instr.kp_words, row_base)
            base2 = Mux(wraps, row_base2 - instr.kp_words, row_base2)
            feature = k0_lane + i
            word = Signal(16, name=f"row{i}_word")
            addr = Signal(16, name=f"row{i}_addr")
            m.d.comb += [word.eq(k0_word + feature // cols),
                         addr.eq(Mux(word < instr.split_words, base + word, base2 + word - instr.split_words)),
                         self.row_lane[i].eq(feature % cols),
                         self.row_bank[i].eq(Mux(wraps, t_r + rows - i, t_r - i)),
                         self.row_valid[i].eq((t >= i) & (t - i < instr.samples))]
            row_addr.append(addr)
        for b in range(rows):
            with m.Switch(t_r):
                for rv in range(rows):
                    with m.Case(rv):
                        m.d.comb += self.bank_addr[b].eq(row_addr[(rv - b) % rows])
