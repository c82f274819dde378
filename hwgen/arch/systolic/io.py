"""Stream engines: samples in from ``s_axis`` to the activation banks, results out from the banks to ``m_axis``.

A program that streams (``stream_in`` on a segment's first layer, ``stream_out`` on its last) runs any number of
samples in one start → done, one chunk of at most ``batch`` samples at a time (compile.py, ``Program.segments``).

::

    s_axis ──▶ StreamIn ──(bank m % R, word base + (m // R)·stride + w)──▶ activation banks
                                                                           │ (all banks read the same word)
    m_axis ◀── StreamOut ◀── bank (m % R) of the registered word ◀─────────┘ (or the output banks: passthrough)

One beat is one scratchpad word: ``C`` codes in (lane ``j`` at bits ``[j·s, (j+1)·s)``, ``s = store_bits``), ``C``
results out (``acc_bits`` each, sign-extended); beats run sample by sample, ``words`` beats per sample, ``last``
on a sample's final beat. Timing with an always-valid input and an always-ready output: StreamIn takes one beat per
cycle and raises ``done`` on the cycle after the last transfer (``x_beats + 1`` cycles); StreamOut addresses in the
first cycle (the banks' address registers), reads in the second, the banks' word registers take the word in the
third, their stream stages in the fourth, the beat register the bank's stage in the fifth, then it transfers one
beat per cycle, ``done`` on the cycle after the last (``y_beats + 6`` cycles). Both ``done`` are registers: the
controller's state follows them, and a ``done`` decoded from the handshake in front of its state register was the
controller's critical path. Both honour backpressure (valid/ready) and restart from their first beat whenever
``run`` is low.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..hdl import copies, select
from .config import SystolicConfig, index_range
from .walk import Index


def beat_layouts(cfg: SystolicConfig) -> tuple[data.ArrayLayout, data.ArrayLayout]:
    """Payloads of an input beat (``C`` stored codes) and an output beat (``C`` sign-extended results)."""
    return data.ArrayLayout(unsigned(cfg.store_bits), cfg.cols), data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)


def _walk(m: Module, cfg: SystolicConfig, run, step, base, stride, words, samples):
    """Counters over (sample, word): reset while ``run`` is low, advanced by ``step``; returns (bank, addr, last
    word of a sample, last sample). Sample m's word w is in bank m mod R, or ``(m + w) mod R`` on the
    weight-stationary array, whose tensors rotate their words across the banks (compile.py ``Layout``), at
    ``base + (m // R) · stride + w``. Everything returned is a register: the address is counted (one adder per
    step, not base + group + w), and the last word / last sample / last bank tests are flags set with their
    counters (walk.Index, prepared from ``words`` and ``samples`` while ``run`` is low), not compares of the
    counters against the instruction's fields minus one in front of the engines' enables."""
    word, sample = Index("stream_word"), Index("stream_sample")
    bank = Signal(index_range(cfg.rows))
    last_bank = Signal()                    # bank = R - 1
    word_bank = Signal(index_range(cfg.rows))   # (m + w) mod R
    sample_addr = Signal(16)                # base + (m // R) * stride
    addr = Signal(16)                       # sample_addr + w
    next_bank = Mux(last_bank, 0, bank + 1)
    with m.If(~run):
        m.d.sync += [*word.start(words), *word.prepare(words), *sample.start(samples), *sample.prepare(samples),
                     bank.eq(0), last_bank.eq(cfg.rows == 1), word_bank.eq(0), sample_addr.eq(base), addr.eq(base)]
    with m.Elif(step):
        m.d.sync += word_bank.eq(Mux(word_bank == cfg.rows - 1, 0, word_bank + 1))
        with m.If(word.last):
            m.d.sync += [*word.restart(), *sample.advance(), bank.eq(next_bank), word_bank.eq(next_bank),
                         last_bank.eq(bank == cfg.rows - 2 if cfg.rows > 1 else 1)]
            with m.If(last_bank):
                m.d.sync += [sample_addr.eq(sample_addr + stride), addr.eq(sample_addr + stride)]
            with m.Else():
                m.d.sync += addr.eq(sample_addr)
        with m.Else():
            m.d.sync += [*word.advance(), addr.eq(addr + 1)]
    return word_bank if cfg.dataflow == "ws" else bank, addr, word.last, sample.last


class StreamIn(wiring.Component):
    """Writes ``samples × words`` beats from ``x`` into the activation banks while ``run`` is high.

    ``x.ready`` is a register (``open``: run and not done): it rises with ``run``, told a cycle ahead by ``start``,
    and falls with the last transfer. The walk restarts while it is low and steps on every valid beat while it is
    high, so the walk's registers are enabled by ``x.valid`` and that register alone (an enable decoded from
    ``run``, ``done`` and the handshake in front of them was the critical path). A beat leaves for the banks from
    registers (``write``, ``bank``, ``addr``, ``data``: a cycle after its transfer), so the walk drives only them
    and the port's beat only the data register, not the R banks across the device (the 8×8 array's path ran from
    the walk's flags through its enables, pulled apart by the banks its outputs fed)."""

    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        x_beat, _ = beat_layouts(cfg)
        super().__init__({
            "run": In(1), "start": In(1), "done": Out(1), "x": In(stream.Signature(x_beat)),
            "base": In(16), "stride": In(16), "words": In(16), "samples": In(16),
            "write": Out(1), "bank": Out(index_range(cfg.rows)), "addr": Out(16), "data": Out(x_beat),
        })

    def elaborate(self, platform):
        m = Module()
        open_ = Signal()                # ≡ run & ~done
        transfer = self.x.valid & open_
        bank, addr, last_word, last_sample = _walk(m, self.cfg, open_, self.x.valid, self.base, self.stride,
                                                   self.words, self.samples)
        ending = transfer & last_word & last_sample
        with m.If(~self.run):
            m.d.sync += self.done.eq(0)
        with m.Elif(ending):
            m.d.sync += self.done.eq(1)
        with m.If(self.start):
            m.d.sync += open_.eq(1)
        with m.Elif(ending):
            m.d.sync += open_.eq(0)
        data_r = Signal.like(self.data, reset_less=True)
        m.d.sync += [self.write.eq(transfer), self.bank.eq(bank), self.addr.eq(addr), data_r.eq(self.x.payload)]
        m.d.comb += [self.x.ready.eq(open_), self.data.eq(data_r)]
        return m


class StreamOut(wiring.Component):
    """Reads ``samples × words`` scratchpad words (``addr``, ``read_en``) and sends them on ``y`` while ``run``.

    Five stages, so that nothing but a register drives a block RAM and nothing but a register follows one: the
    banks' address registers (loaded from ``addr`` unless ``read_en`` is low while streaming), the memories'
    outputs (a word read, held while ``read_en`` is low), the banks' word registers (loaded while ``read_en``),
    the banks' stream stages (``stages``: the word as results, beside the bank, so the choice of the activation or
    output word is not in front of the R:1 select) and the beat register (the stage of the sample's bank, chosen
    among the R banks': the beat on ``y`` comes from a register, not from a multiplexer across the device). The
    walk restarts while a register is low and steps while it is high (``issuing``: set by ``start`` a cycle ahead of
    ``run``, cleared by the last address or by ``run`` low). The stages move together, on a
    register: a skid register behind them takes the beat that ``y`` refuses (``y.ready`` low), and while it holds
    one the stages stand still, so every word keeps its place. ``y.ready`` reaches that register and ``done`` alone,
    not the walk's and the banks' enables (the handshake in front of them all was the critical path); with ``y``
    always ready the skid register stays empty and the stages move every cycle."""

    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        _, y_beat = beat_layouts(cfg)
        super().__init__({
            "run": In(1), "start": In(1), "done": Out(1),
            "y": Out(stream.Signature(data.StructLayout({"data": y_beat, "last": 1}))),
            "base": In(16), "stride": In(16), "words": In(16), "samples": In(16),
            # every bank's own copy of the pipeline's advance (the beat on y leaves or none is there): it enables
            # the bank's address register, memory read and word register
            "addr": Out(16), "read_en": Out(data.ArrayLayout(unsigned(1), cfg.rows)),
            # every bank's stream stage: its word as results (accumulators, or codes sign-extended), loaded from
            # the bank's word register while streaming as the bank's read_en says (top.py)
            "stages": In(data.ArrayLayout(unsigned(cfg.cols * cfg.acc_bits), cfg.rows)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        ready = self.y.ready
        # the skid register holds a beat (y refused it), in a copy per bank and one for the walk too: the stages move
        # while it is empty
        skid, *skid_copies, walk_skid = Signal(), *copies("y_skid", cfg.rows + 1)
        advance = ~skid
        addressed = Signal()                              # the address registers hold a word's address
        fetched = Signal()                                # the memories' outputs hold a word
        worded = Signal()                                 # the word registers hold a word
        staged = Signal()                                 # the stream stages hold a word (of bank stage_bank)
        beat = Signal()                                   # the beat register holds a beat
        beat_payload = Signal.like(self.y.payload)
        skid_payload = Signal.like(self.y.payload)

        def set_skid(value):                              # the skid flag and every copy of it
            return [skid.eq(value), *(c.eq(value) for c in (*skid_copies, walk_skid))]

        # beats remain to be addressed: a register, set by ``start`` as ``run`` rises; the walk restarts while it is
        # low and steps while it is high and the walk's copy of the skid flag is low, so its enables read its own
        # flip-flops (an enable decoded from ``run``, a controller register, in front of the walk was the path)
        issuing = Signal()
        issue = issuing & ~walk_skid
        bank, addr, last_word, last_sample = _walk(m, cfg, issuing, issue, self.base, self.stride, self.words,
                                                   self.samples)
        address_bank, address_last = Signal.like(bank), Signal()
        fetch_bank, fetch_last, word_bank, word_last = Signal.like(bank), Signal(), Signal.like(bank), Signal()
        stage_bank, stage_last = Signal.like(bank), Signal()
        results = select(m, stage_bank, list(self.stages), unsigned(cfg.cols * cfg.acc_bits), "stage_word")
        # the last beat leaves y (the skid's, with no beat behind it; or the beat, or none, with the skid empty)
        # and nothing is behind it
        ends = ~issuing & ~addressed & ~fetched & ~worded & ~staged & Mux(skid, ready & ~beat, ~beat | ready)
        with m.If(~self.run):
            m.d.sync += [issuing.eq(0), addressed.eq(0), fetched.eq(0), worded.eq(0), staged.eq(0), beat.eq(0),
                         *set_skid(0), self.done.eq(0)]
        with m.Else():
            m.d.sync += set_skid(~ready & (skid | beat))  # y refuses the beat it offers: the skid takes it
            with m.If(ends):
                m.d.sync += self.done.eq(1)
            with m.If(advance):
                m.d.sync += [addressed.eq(issue), address_bank.eq(bank), address_last.eq(last_word),
                             fetched.eq(addressed), fetch_bank.eq(address_bank), fetch_last.eq(address_last),
                             worded.eq(fetched), word_bank.eq(fetch_bank), word_last.eq(fetch_last),
                             staged.eq(worded), stage_bank.eq(word_bank), stage_last.eq(word_last),
                             beat.eq(staged), beat_payload.last.eq(stage_last), beat_payload.data.eq(results),
                             skid_payload.eq(beat_payload)]         # loaded while the skid is empty
                with m.If(issue & last_word & last_sample):
                    m.d.sync += issuing.eq(0)
        with m.If(self.start):
            m.d.sync += issuing.eq(1)
        m.d.comb += [self.y.valid.eq(skid | beat), self.y.payload.eq(Mux(skid, skid_payload, beat_payload)),
                     self.addr.eq(addr), *(self.read_en[i].eq(~skid_copies[i]) for i in range(cfg.rows))]
        return m
