"""Top level of the systolic accelerator: scratchpads, array, requant lanes, controller, host protocol.

::

   s_axis ─▶ StreamIn ─▶ act banks;  out/act banks ─▶ StreamOut ─▶ m_axis            (streamed programs)
            load ──▶ ┌──────────────┐  program memory ─▶ Controller ─┬─ feed addresses ─┐
                     │ host protocol│  act banks [R] (C codes/word) ──┼──(lane, − zx)──▶ │ R×C array │
            read ──▶ │  (idle only) │  weight banks [C] ──────────────┴────────────────▶ │ OS or WS  │
           rdata ◀── └──────────────┘  out banks [R] (C accs/word)                       └─────┬─────┘
     start/busy/done/cycles                    ▲                                              │ drain[C]
                                               └── writer ◀── requant lanes [C] ◀──────────────┘

Samples can also stream in and results out through ``s_axis``/``m_axis`` (one scratchpad word per beat, see
io.py) when the program says so: any number of samples then runs in one start → done, a chunk at a time.

Host protocol (shared by every hwgen design, see ``hwgen.verilator``): ``load`` writes one element
``(target, bank, addr, lane, data)``; ``read`` requests one element, answered in order on ``rdata``; both only
while idle (``load.ready``/``read.ready`` are low while busy). A load lands a cycle or two after its transfer:
``start`` may come on the next cycle. ``start`` runs the loaded program; ``cycles`` holds
the start → done cycle count. Targets: :data:`PROGRAM` (lane = 32-bit chunk of an instruction),
:data:`ACTIVATIONS` (bank = array row, lane = code within the word), :data:`WEIGHTS` (bank = array column),
:data:`THRESHOLDS` (bank = lane/column, lane = search stage; stage 0 words carry the negate flag above the
threshold), :data:`OUTPUTS` (read only; bank = array row, lane = accumulator within the word), :data:`BIASES`
(configurations with fixed-point lane stages: bank = lane/column, lane = stage, addr = channel slot).
"""
from __future__ import annotations

import operator
from functools import reduce

from amaranth import Cat, ClockDomain, ClockSignal, DomainRenamer, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .array import OutputStationaryArray, WeightStationaryArray
from .config import SystolicConfig
from .controller import INSTRUCTION, INSTRUCTION_CHUNKS, Controller, meta_layout
from ..hdl import copies, delayed, ram, replica, select
from .io import StreamIn, StreamOut, beat_layouts
from .requant import RequantLane
from .ws_controller import WeightStationaryController

PROGRAM, ACTIVATIONS, WEIGHTS, THRESHOLDS, OUTPUTS = 0, 1, 2, 3, 4
BIASES = 6          # fixed-point stage biases (bank = lane, lane = stage, addr = channel slot)
LOAD = data.StructLayout({"target": 3, "bank": 6, "addr": 16, "lane": 6, "data": 32})
READ = data.StructLayout({"target": 3, "bank": 6, "addr": 16, "lane": 6})


def host_members(x_bits: int, y_bits: int) -> dict:
    """The ports every hwgen top exposes to its host (see ``hwgen.verilator`` for the simulator side): the control
    streams, and AXI-Stream data in (``s_axis_*``, ``x_bits`` wide) and out (``m_axis_*``, ``y_bits``)."""
    return {
        "load": In(stream.Signature(LOAD)), "read": In(stream.Signature(READ)), "rdata": Out(stream.Signature(32)),
        "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32),
        "s_axis_tdata": In(x_bits), "s_axis_tvalid": In(1), "s_axis_tready": Out(1), "s_axis_tlast": In(1),
        "m_axis_tdata": Out(y_bits), "m_axis_tvalid": Out(1), "m_axis_tready": In(1), "m_axis_tlast": Out(1),
    }


def _stage_offset() -> int:
    """Bit offset of the first fixed-point stage field in an instruction (the ``s{k}_*`` fields are contiguous)."""
    return INSTRUCTION["s0_shift"].offset


def host_signature(cfg: SystolicConfig) -> wiring.Signature:
    x_beat, y_beat = beat_layouts(cfg)
    return wiring.Signature(host_members(x_beat.size, y_beat.size))


class SystolicTop(wiring.Component):
    """The accelerator; ``init`` (from ``compile.Program.memory_init``) pre-loads program, weights and thresholds
    into the memories' initial contents for ROM-style synthesis, so only inputs need loading at run time."""

    def __init__(self, cfg: SystolicConfig, init: dict | None = None):
        self.cfg = cfg
        self.init = init
        super().__init__(host_signature(cfg))

    def elaborate(self, platform):
        """The design runs in a ``core`` domain whose reset is ``rst`` registered once: a synchronised reset
        release, and no combinational path from the ``rst`` port into the registers (Verilator would otherwise
        re-evaluate every register's next state whenever it evaluates the inputs)."""
        outer = Module()
        outer.domains.core = ClockDomain("core", local=True)
        rst_q = Signal(init=1, reset_less=True)
        outer.d.sync += rst_q.eq(ResetSignal("sync"))
        outer.d.comb += [ClockSignal("core").eq(ClockSignal("sync")), ResetSignal("core").eq(rst_q)]
        outer.submodules.core = DomainRenamer("core")(self._core())
        return outer

    def _core(self) -> Module:
        m = Module()
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        ws = cfg.dataflow == "ws"
        m.submodules.controller = ctrl = WeightStationaryController(cfg) if ws else Controller(cfg)
        m.submodules.array = array = WeightStationaryArray(cfg) if ws else OutputStationaryArray(cfg)
        meta = meta_layout(cfg)
        init = self.init or {}
        lanes = [RequantLane(cfg, meta.size, init["thresholds"][j] if init else None,
                             init["biases"][j] if init and cfg.fixed_steps else None) for j in range(cols)]
        for j, lane in enumerate(lanes):
            m.submodules[f"lane_{j}"] = lane
        m.d.comb += [ctrl.start.eq(self.start), self.busy.eq(ctrl.busy), self.done.eq(ctrl.done),
                     self.cycles.eq(ctrl.cycles)]
        idle = ~ctrl.busy
        load = self.load.payload
        loading = self.load.valid & ~ctrl.load_busy     # (≡ load.ready, from a copy of busy beside the decode)
        m.d.comb += self.load.ready.eq(idle)

        # ---- stream engines (s_axis → activation banks, banks → m_axis)
        instr = ctrl.instr
        m.submodules.stream_in = s_in = StreamIn(cfg)
        m.submodules.stream_out = s_out = StreamOut(cfg)
        m.d.comb += [s_in.run.eq(ctrl.stream_in), s_in.start.eq(ctrl.stream_in_start),
                     ctrl.stream_in_done.eq(s_in.done), s_in.x.valid.eq(self.s_axis_tvalid),
                     self.s_axis_tready.eq(s_in.x.ready), s_in.x.payload.eq(self.s_axis_tdata),
                     s_in.base.eq(instr.in_base),
                     s_in.stride.eq(instr.kp_words), s_in.words.eq(instr.x_words), s_in.samples.eq(instr.samples),
                     s_out.run.eq(ctrl.stream_out), s_out.start.eq(ctrl.stream_out_start),
                     ctrl.stream_out_done.eq(s_out.done),
                     self.m_axis_tvalid.eq(s_out.y.valid), s_out.y.ready.eq(self.m_axis_tready),
                     self.m_axis_tdata.eq(s_out.y.payload.data), self.m_axis_tlast.eq(s_out.y.payload.last),
                     s_out.base.eq(instr.out_base), s_out.stride.eq(instr.out_words), s_out.words.eq(instr.y_words),
                     s_out.samples.eq(instr.samples)]
        streaming_in, streaming_out = ctrl.stream_in, ctrl.stream_out

        # the host's writes, registered (``loading`` depends on ``busy``, whose loads span the device)
        stored, stored_load = delayed(m, loading, 1, "stored"), data.View(LOAD, delayed(m, load.as_value(), 1, "load"))

        # ---- program memory: a host write lands a cycle after its transfer, from the stored copy and its chunk's
        # registered enable (so ``start`` may come on the cycle after the last load: FETCH reads a cycle later)
        program = ram(m, "program", shape=unsigned(32 * INSTRUCTION_CHUNKS), depth=cfg.prog_depth,
                      init=init.get("program", []))
        prog_rd = program.read_port()
        prog_wr = program.write_port(granularity=32)
        program_write = Signal(INSTRUCTION_CHUNKS)
        m.d.comb += program_write.eq(Mux(loading & (load.target == PROGRAM), 1 << load.lane, 0))
        m.d.comb += [prog_rd.addr.eq(ctrl.prog_addr), ctrl.prog_data.eq(prog_rd.data[:INSTRUCTION.size]),
                     prog_wr.addr.eq(stored_load.addr), prog_wr.data.eq(stored_load.data.replicate(INSTRUCTION_CHUNKS)),
                     prog_wr.en.eq(delayed(m, program_write, 1, "program_write_en"))]

        # ---- read requests (idle only): one outstanding, answered seven cycles later: the banks' address
        # registers, the memory read, its output register, each bank's requested output and code masked by its own
        # registered test of the request (is it this bank, which target, which lane) beside the bank, the two ORed
        # (the code sign-extended), the banks' elements ORed, then the answer
        reading = [Signal(name=f"read_stage{k}") for k in range(6)]
        m.d.comb += self.read.ready.eq(idle & ~self.rdata.valid & ~Cat(*reading).any())
        accepting = self.read.valid & self.read.ready
        m.d.sync += [now.eq(before) for before, now in zip([accepting, *reading], reading)]
        with m.If(self.rdata.valid & self.rdata.ready):
            m.d.sync += self.rdata.valid.eq(0)

        # ---- the feed pipeline (cfg.feed_latency cycles from the controller to the array): the scratchpad
        # addresses are registered, registered again in each bank's own address register, the memories read, their
        # outputs registered (nothing but routing after a block RAM's slow clock-to-output), each row's bank word
        # chosen and registered, the operands formed (lane select, − zx) and registered; the weights take the same
        # path without the selects. OS: every row reads the same lane (the feature fed), so each bank registers
        # that lane's code of its word and each row chooses its bank's code: no select stands in front of − zx
        # (OS: each row's base address, and the kernel walk's offset added beside each bank from its own copy)
        bank_addr = delayed(m, ctrl.bank_addr if ws else ctrl.bank_base, 1, "bank_addr")
        if not ws:              # the lane fed, for the banks' codes (a cycle of it in each bank's own register)
            feed_lane = delayed(m, ctrl.feed_lane, cfg.feed_latency - 4, "feed_lane")
        bank_read = delayed(m, ctrl.bank_read, 2, "bank_read", False)      # with the banks' address registers
        weight_addr = delayed(m, ctrl.weight_addr, 1, "weight_addr")
        if ws:
            m.d.comb += array.shift.eq(delayed(m, ctrl.weight_shift, cfg.feed_latency, "weight_shift", False))
        word_of = lambda width, count: data.ArrayLayout(unsigned(width), count)  # noqa: E731
        # host writes into the weight banks and the lanes land two cycles after their transfer: from the stored
        # copy of it, then from each bank's and each lane's own registers; like the banks' write enables, they have
        # no reset

        # ---- weight banks (one per column)
        for j in range(cols):
            mem = ram(m, f"weights_{j}", shape=unsigned(cfg.w_bits), depth=cfg.weight_depth,
                      init=init["weights"][j] if init else [])
            rd, wr = mem.read_port(), mem.write_port()
            # after the bank's address register and the memory: the output, word, row word and operand registers
            # (column 0's last register in two copies, OS: one for the column, one for PE(0, 0)'s multiplier)
            before = delayed(m, rd.data, cfg.feed_latency - 4, f"weight_{j}")
            weight, *mul = (copies(f"weight_{j}_operand", 2, before.shape(), reset_less=True) if j == 0 and not ws
                            else [Signal.like(before, name=f"weight_{j}_operand", reset_less=True)])
            m.d.sync += [register.eq(before) for register in (weight, *mul)]
            if mul:
                m.d.comb += array.w0_mul.eq(mul[0].as_signed())
            m.d.comb += [rd.addr.eq(replica(m, weight_addr, f"weight_read_addr_{j}")),
                         (array.w_top if ws else array.w)[j].eq(weight.as_signed()),
                         wr.addr.eq(replica(m, stored_load.addr, f"weight_write_addr_{j}")),
                         wr.data.eq(replica(m, stored_load.data, f"weight_write_data_{j}")),
                         wr.en.eq(delayed(m, stored & (stored_load.target == WEIGHTS) & (stored_load.bank == j), 1,
                                          f"weight_write_en_{j}"))]

        # ---- requant lanes, fed by the array's drain
        # the layer's fields each lane reads come from the lane's own copies (registered a cycle after the
        # instruction's latch, long before a value of the layer reaches the lanes)
        lane_valid, lane_acc, lane_slot, lane_meta = self._lane_inputs(m, ctrl, array)
        for j, lane in enumerate(lanes):
            m.d.comb += [lane.valid.eq(lane_valid), lane.acc.eq(lane_acc[j]), lane.slot.eq(lane_slot),
                         lane.meta.eq(lane_meta),
                         lane.base.eq(replica(m, instr.base[:len(lane.base)], f"lane{j}_base")),
                         lane.step.eq(replica(m, instr.step, f"lane{j}_step")),
                         lane.passthrough.eq(replica(m, instr.passthrough, f"lane{j}_passthrough")),
                         lane.wr_en.eq(delayed(m, stored & (stored_load.bank == j) &
                                               ((stored_load.target == THRESHOLDS) | (stored_load.target == BIASES)),
                                               1, f"lane{j}_write_en")),
                         lane.wr_stage.eq(replica(m, stored_load.lane, f"lane{j}_write_stage")),
                         lane.wr_addr.eq(replica(m, stored_load.addr, f"lane{j}_write_addr")),
                         lane.wr_data.eq(replica(m, stored_load.data, f"lane{j}_write_data"))]
            if cfg.fixed_steps:
                stages = instr.as_value()[_stage_offset():_stage_offset() + lane.stages.shape().size]
                m.d.comb += [lane.fixed.eq(replica(m, instr.fixed, f"lane{j}_fixed")),
                             lane.wr_bias.eq(replica(m, stored_load.target == BIASES, f"lane{j}_write_bias")),
                             lane.stages.eq(stages)]
        out_meta = data.View(meta, lanes[0].out_meta)
        writing = lanes[0].out_valid
        # the layer's last result leaves the lanes: registered from the lane's registers a cycle ahead (a flip-flop
        # beside the controller, whose state it moves)
        ahead_meta = data.View(meta, lanes[0].ahead_meta)
        m.d.comb += ctrl.layer_done.eq(replica(m, lanes[0].ahead_valid & ahead_meta.layer_last, "layer_done",
                                               reset_less=False))

        # ---- activation banks (one per row) and output banks
        act_word = word_of(cfg.store_bits, cols)
        out_word = word_of(cfg.acc_bits, cols)
        act_read = []
        out_read = []
        act_operands = []       # the words again (OS: the lane fed), registered beside the operand logic
        read_parts = []         # each bank's host read stage
        # every bank's ports are driven by registers of its own, placed beside its block RAMs: the read address
        # (held while a streamed read waits for the stalled beat ahead of it), the write address, data and enables
        # (a write lands a cycle after its source: results a layer writes are read from the next layer on, streamed
        # samples after the walk's first row, host writes by later host reads or runs; the write enables have no
        # reset, as the memories' ports had none: a load accepted while the core's reset is still high lands). Its
        # read enables and holds come from the bank's own copies of StreamOut's advance and of ``busy`` and
        # ``stream_out`` registered, a cycle late: the cycle after each change of either reads a word nothing uses,
        # or none (a run's first cycle FETCH reads as if idle; the first cycle of OUTPUT and the one after a run read
        # nothing, as StreamOut's first word and the next host read are read a cycle later), and only a register and
        # a LUT stand in front of a bank's enables. The words written are the same for every bank (each bank
        # registers its own copy):
        a_wdata, o_wdata = Signal(act_word), Signal(out_word)
        for j, lane in enumerate(lanes):
            m.d.comb += [a_wdata[j].eq(Mux(streaming_in, s_in.data[j], Mux(ctrl.busy, lane.out_value, load.data))),
                         o_wdata[j].eq(lane.out_value)]
        for i in range(rows):
            act = ram(m, f"activations_{i}", shape=unsigned(act_word.size), depth=cfg.act_depth)
            out = ram(m, f"outputs_{i}", shape=unsigned(out_word.size), depth=cfg.out_depth)
            a_rd, a_wr = act.read_port(), act.write_port(granularity=cfg.store_bits)
            o_rd, o_wr = out.read_port(), out.write_port()
            here = writing & out_meta.write & (out_meta.row == i)
            # (the load's handshake again, from the bank's own exact copy of busy)
            host_write = self.load.valid & ~ctrl.bank_busy[i] & (load.target == ACTIVATIONS) & (load.bank == i)
            stream_write = s_in.write & (s_in.bank == i)
            bank_streaming, bank_busy = replica(m, streaming_out, f"stream_out_{i}", reset_less=False), \
                replica(m, ctrl.busy, f"busy_{i}", reset_less=False)
            advance = s_out.read_en[i]
            # (not the inverse of a hold: the block RAMs' output registers, which the word registers become,
            # have no inverted enable)
            moving = Mux(bank_streaming, advance, 1)
            feed_addr = bank_addr[i] if ws else (bank_addr[i] + replica(m, ctrl.bank_offset, f"bank_offset_{i}"))[:16]
            a_raddr = replica(m, Mux(streaming_out, s_out.addr,
                                     Mux(ctrl.bank_busy[i], feed_addr, self.read.payload.addr)),
                              f"act_read_addr_{i}", enable=moving)
            o_raddr = replica(m, Mux(streaming_out, s_out.addr, self.read.payload.addr), f"out_read_addr_{i}",
                              enable=moving)
            m.d.comb += [
                a_rd.addr.eq(a_raddr), a_rd.en.eq(Mux(bank_streaming, advance, Mux(bank_busy, bank_read[i], 1))),
                a_wr.addr.eq(replica(m, Mux(streaming_in, s_in.addr, Mux(ctrl.bank_busy[i], out_meta.addr, load.addr)),
                                     f"act_write_addr_{i}")),
                # the three writers' enables ORed: each is gated by its own phase (the stream's input, the lanes'
                # results of a run, the host's load while idle), so none needs the phase as a select
                a_wr.en.eq(delayed(m, Mux(stream_write, (1 << cols) - 1, 0)
                                   | Mux(here & ~instr.passthrough, (1 << cols) - 1, 0)
                                   | Mux(host_write, 1 << load.lane, 0), 1, f"act_write_en_{i}")),
                a_wr.data.eq(replica(m, a_wdata, f"act_write_data_{i}")),
                o_rd.addr.eq(o_raddr), o_rd.en.eq(Mux(bank_streaming, advance, ~bank_busy)),   # idle: host reads
                o_wr.addr.eq(replica(m, out_meta.addr, f"out_write_addr_{i}")),
                o_wr.en.eq(delayed(m, here & instr.passthrough, 1, f"out_write_en_{i}")),
                o_wr.data.eq(replica(m, o_wdata, f"out_write_data_{i}")),
            ]
            # the memories' output registers (compute operands, host reads and streamed beats)
            a_reg = Signal.like(a_rd.data, name=f"act_word_{i}", reset_less=True)
            o_reg = Signal.like(o_rd.data, name=f"out_word_{i}", reset_less=True)
            with m.If(moving):
                m.d.sync += [a_reg.eq(a_rd.data), o_reg.eq(o_rd.data)]
            # the bank's stream stage: its word as StreamOut's results (the output word, or the activation word's
            # codes sign-extended), loaded as the bank's word register is while streaming
            stage = Signal(out_word, name=f"stream_word_{i}", reset_less=True)
            codes, extended = data.View(act_word, a_reg), Signal(out_word, name=f"stream_codes_{i}")
            m.d.comb += [extended[j].eq(codes[j].as_signed()) for j in range(cols)]
            with m.If(bank_streaming & advance):
                m.d.sync += stage.eq(Mux(replica(m, instr.passthrough, f"stream_passthrough_{i}"), o_reg, extended))
            m.d.comb += s_out.stages[i].eq(stage)
            act_read.append(a_reg)
            if ws:
                act_operands.append(delayed(m, a_reg, 1, f"act_operand_word_{i}"))
            else:
                lane = replica(m, feed_lane, f"bank{i}_lane")
                code = select(m, lane, list(data.View(act_word, a_reg)), unsigned(cfg.store_bits), f"bank{i}_code")
                act_operands.append(delayed(m, code, 1, f"act_operand_code_{i}"))
            out_read.append(o_reg)
            # the host read's stages beside the bank: the requested element of its word (an accumulator, or a code
            # sign-extended) if the request names the bank, else 0. Each half (the C accumulators, the C codes) is an
            # AND-OR under the bank's own registered one-hot pick (request names this bank, the outputs or not, lane
            # j), registered, then the halves ORed with the code sign-extended behind its register: nothing but a
            # C-input AND-OR follows a block RAM's output, each pick flag drives one gate per bit, and the banks'
            # elements are 32 bits wide with nothing but their OR between them and the answer (the sign extension's
            # fan-out in front of a register, and a 2·C-input AND-OR, were the 8×8 array's critical path)
            request = self.read.payload
            here_lane = [(request.bank == i) & (request.lane == j) for j in range(cols)]
            pick = replica(m, Cat(*(h & (request.target == OUTPUTS) for h in here_lane),
                                  *(h & (request.target != OUTPUTS) for h in here_lane)), f"read_pick_{i}",
                           enable=accepting)
            halves = []
            for half, (what, candidates) in enumerate((("output", data.View(out_word, o_reg)), ("code", codes))):
                picked = Signal.like(candidates[0], name=f"read_{what}_{i}", reset_less=True)
                with m.If(reading[2]):
                    m.d.sync += picked.eq(reduce(operator.or_, (Mux(pick[half * cols + j], value, 0)
                                                                for j, value in enumerate(candidates))))
                halves.append(picked)
            part = Signal(signed(32), name=f"read_part_{i}", reset_less=True)
            with m.If(reading[3]):
                m.d.sync += part.eq(halves[0].as_signed() | halves[1].as_signed())
            read_parts.append(part)
        # row 0's operand register in two copies: one for the array's row, one for PE(0, 0)'s multiplier (array.py)
        row0 = copies("row0_operand", 2, signed(cfg.operand_bits), reset_less=True)
        operands = [row0] + [[Signal(signed(cfg.operand_bits), name=f"row{i}_operand", reset_less=True)]
                             for i in range(1, rows)]
        m.d.comb += [*(array.a[i].eq(registers[0]) for i, registers in enumerate(operands)),
                     array.a0_mul.eq(row0[1])]
        if ws:
            self._ws_operands(m, ctrl, array, act_operands, operands)
        else:
            # implicit im2col: row i takes bank (i + rotate) mod R (its input pixel's slot), or 0 where the kernel
            # reads padding (the zero point, 0 after - zx); the selects arrive with the registered memory words and
            # codes, each bank's lane and each row's rotate from its own last register (a select's index drives
            # every bit it chooses among)
            feed_rotate = delayed(m, ctrl.feed_rotate, cfg.feed_latency - 3, "feed_rotate")  # for the row code
            row_valid = delayed(m, ctrl.row_valid, cfg.feed_latency - 3, "row_valid")      # (two cycles in ctrl)
            for i in range(rows):
                code = select(m, replica(m, feed_rotate, f"row{i}_rotate"),
                              [act_operands[(i + r) % rows] for r in range(rows)], unsigned(cfg.store_bits),
                              f"row{i}_bank_code")
                self._operand(m, i, operands[i], delayed(m, code, 1, f"row{i}_code").as_signed(), row_valid[i],
                              instr.zx)
            m.d.comb += [array.valid.eq(delayed(m, ctrl.feed_valid, cfg.feed_latency, "feed_valid", False)),
                         array.last.eq(delayed(m, ctrl.feed_last & ctrl.feed_valid, cfg.feed_latency, "feed_last"))]
            if cfg.max_pool:
                m.d.comb += array.max_mode.eq(instr.pool_max)
        if cfg.product_rounding:
            m.d.comb += [array.product_shift.eq(instr.product_shift),
                         array.product_rounding.eq(instr.product_rounding)]

        # ---- read answers (host): the banks' elements ORed (all but the requested bank's are 0), then answered
        read_word = Signal(32, name="read_word", reset_less=True)
        with m.If(reading[4]):
            m.d.sync += read_word.eq(reduce(operator.or_, read_parts))
        with m.If(reading[5]):
            m.d.sync += [self.rdata.valid.eq(1), self.rdata.payload.eq(read_word)]
        return m

    def _operand(self, m: Module, row: int, registers: list, code, valid, zx) -> None:
        """The operand register(s) of ``row``: its registered ``code`` − ``zx``, or 0 where ``valid`` is low
        (padding). ``zx`` from the row's own copy (the operand's bits of it: the subtraction's low bits are all the
        operand keeps), registered a cycle after the instruction's latch, long before the layer's first operand."""
        cfg = self.cfg
        zx_row = replica(m, zx[:cfg.operand_bits], f"row{row}_zx")
        m.d.sync += [register.eq(Mux(valid, code - zx_row, 0)) for register in registers]

    def _lane_inputs(self, m: Module, ctrl, array):
        """What enters the requant lanes (valid, values, slot, meta): the OS drain (timed by the array's
        ``captured``), or the WS column sums plus the partial sums kept in the per-column accumulator SRAM
        (written by the first K tile, added to by the next, released by the last). The WS controller times its
        accumulator and lane signals for an array whose sums leave one cycle after their operands entered it
        (ws_controller.py); they are delayed here by the feed pipeline and the PEs' extra stage. The accumulator
        SRAM is read one cycle earlier still, for its output register: an address is read two cycles before it
        is written, so the previous fold's write (``period ≥ 3`` cycles earlier) has landed, and only when a sum
        is coming. The first K tile's zero replaces the registered word in the adder's input (an AND in the adder's
        LUTs), so the register stays the memory's own output register."""
        cfg = self.cfg
        if cfg.dataflow == "os":
            m.d.comb += [array.shift.eq(ctrl.shift), ctrl.capturing.eq(array.capturing)]
            return ctrl.lane_valid, [array.drain[j] for j in range(cfg.cols)], ctrl.lane_slot, ctrl.lane_meta
        lag = cfg.feed_latency + cfg.pe_stages - 2
        acc_valid = delayed(m, ctrl.acc_valid, lag, "acc_valid", False)
        acc_read = delayed(m, ctrl.acc_valid, lag - 2, "acc_read", False)  # with the read address
        acc_first = delayed(m, ctrl.acc_first, lag, "acc_first")           # with the registered word
        acc_final = delayed(m, ctrl.acc_final, lag, "acc_final")
        acc_wr_addr = delayed(m, ctrl.acc_wr_addr, lag, "acc_wr_addr")
        acc_rd_addr = delayed(m, ctrl.acc_rd_addr, lag - 1, "acc_rd_addr")
        totals = []
        for j in range(cfg.cols):
            mem = ram(m, f"accumulators_{j}", shape=unsigned(cfg.acc_bits), depth=cfg.acc_depth)
            rd, wr = mem.read_port(), mem.write_port()
            total = Signal(signed(cfg.acc_bits), name=f"column_sum_{j}")
            word = Signal(signed(cfg.acc_bits), name=f"partial_{j}", reset_less=True)     # the output register
            m.d.sync += word.eq(rd.data.as_signed())
            partial = Mux(acc_first, 0, word)                                                # 0 on K tile 0
            m.d.comb += [total.eq(Mux(ctrl.instr.pool_max, Mux(array.out[j] > partial, array.out[j], partial),
                                      array.out[j] + partial)),
                         rd.addr.eq(acc_rd_addr), rd.en.eq(acc_read), wr.addr.eq(acc_wr_addr), wr.data.eq(total),
                         wr.en.eq(acc_valid & ~acc_final)]
            totals.append(total)
        return (acc_valid & acc_final, totals, delayed(m, ctrl.lane_slot, lag, "lane_slot"),
                delayed(m, ctrl.lane_meta, lag + 1, "lane_meta"))                  # a cycle late (requant.py)

    def _ws_operands(self, m: Module, ctrl, array, act_read, operands) -> None:
        """Row i takes bank row_bank[i]'s word into its row word register, then lane row_lane[i] of it into its
        operand register (the selects as the controller addressed them, one cycle after its fold cycle, delayed to
        meet the registered memory words); the array skews the rows. ``commit`` travels one cycle ahead of the
        operands."""
        cfg = self.cfg
        # the controller registered them with its bank addresses
        row_bank = delayed(m, ctrl.row_bank, cfg.feed_latency - 3, "row_bank")        # for the row word
        row_lane = delayed(m, ctrl.row_lane, cfg.feed_latency - 2, "row_lane")        # for the operand
        row_valid = delayed(m, ctrl.row_valid, cfg.feed_latency - 2, "row_valid")
        m.d.comb += array.commit.eq(delayed(m, ctrl.fold_start, cfg.feed_latency - 1, "fold_start", False))
        if cfg.max_pool:
            m.d.comb += array.max_mode.eq(ctrl.instr.pool_max)
        for i in range(cfg.rows):
            word = select(m, row_bank[i], act_read, act_read[0].shape(), f"row{i}_bank_word")
            codes = data.View(beat_layouts(cfg)[0], delayed(m, word, 1, f"row{i}_word"))
            code = select(m, row_lane[i], [c.as_signed() for c in codes], signed(cfg.store_bits), f"row{i}_code")
            self._operand(m, i, operands[i], code, row_valid[i], ctrl.instr.zx)
