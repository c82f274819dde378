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
third, then it transfers one beat per cycle, ``done`` on the cycle after the last (``y_beats + 4`` cycles). Both
``done`` are registers: the controller's state follows them, and a ``done`` decoded from the handshake in front of
its state register was the controller's critical path. Both honour backpressure (valid/ready) and restart from their first beat whenever
``run`` is low.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..hdl import select
from .config import SystolicConfig, index_range


def beat_layouts(cfg: SystolicConfig) -> tuple[data.ArrayLayout, data.ArrayLayout]:
    """Payloads of an input beat (``C`` stored codes) and an output beat (``C`` sign-extended results)."""
    return data.ArrayLayout(unsigned(cfg.store_bits), cfg.cols), data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)


def _walk(m: Module, cfg: SystolicConfig, run, step, base, stride, words):
    """Counters over (sample, word): reset while ``run`` is low, advanced by ``step``; returns
    (bank, addr, last word of a sample, sample index). Sample m's word w is in bank m mod R, or ``(m + w) mod R``
    on the weight-stationary array, whose tensors rotate their words across the banks (compile.py ``Layout``)."""
    w = Signal(16)
    bank = Signal(index_range(cfg.rows))
    word_bank = Signal(index_range(cfg.rows))   # (m + w) mod R
    group = Signal(16)                      # (m // R) * stride
    sample = Signal(16)
    last_word = w == words - 1
    next_bank = Mux(bank == cfg.rows - 1, 0, bank + 1)
    with m.If(~run):
        m.d.sync += [w.eq(0), bank.eq(0), word_bank.eq(0), group.eq(0), sample.eq(0)]
    with m.Elif(step):
        m.d.sync += [w.eq(w + 1), word_bank.eq(Mux(word_bank == cfg.rows - 1, 0, word_bank + 1))]
        with m.If(last_word):
            m.d.sync += [w.eq(0), sample.eq(sample + 1), bank.eq(next_bank), word_bank.eq(next_bank)]
            with m.If(bank == cfg.rows - 1):
                m.d.sync += group.eq(group + stride)
    return word_bank if cfg.dataflow == "ws" else bank, base + group + w, last_word, sample


class StreamIn(wiring.Component):
    """Writes ``samples × words`` beats from ``x`` into the activation banks while ``run`` is high."""

    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        x_beat, _ = beat_layouts(cfg)
        super().__init__({
            "run": In(1), "done": Out(1), "x": In(stream.Signature(x_beat)),
            "base": In(16), "stride": In(16), "words": In(16), "samples": In(16),
            "write": Out(1), "bank": Out(index_range(cfg.rows)), "addr": Out(16), "data": Out(x_beat),
        })

    def elaborate(self, platform):
        m = Module()
        transfer = self.x.valid & self.x.ready
        bank, addr, last_word, sample = _walk(m, self.cfg, self.run, transfer, self.base, self.stride, self.words)
        with m.If(~self.run):
            m.d.sync += self.done.eq(0)
        with m.Elif(transfer & last_word & (sample == self.samples - 1)):
            m.d.sync += self.done.eq(1)
        m.d.comb += [self.x.ready.eq(self.run & ~self.done), self.write.eq(transfer), self.bank.eq(bank),
                     self.addr.eq(addr), self.data.eq(self.x.payload)]
        return m


class StreamOut(wiring.Component):
    """Reads ``samples × words`` scratchpad words (``addr``, ``read_en``) and sends them on ``y`` while ``run``.

    Three stages, so that nothing but a register drives a block RAM and nothing but a register follows one: the
    banks' address registers (loaded from ``addr`` unless ``read_en`` is low while streaming), the memories'
    outputs (a word read, held while ``read_en`` is low) and the banks' word registers (``act_words``/``out_words``,
    loaded while ``word_en``), from which the beat on ``y`` is selected. The stages move together: a stalled ``y``
    holds all three (``read_en = word_en``), so every word keeps its place."""

    def __init__(self, cfg: SystolicConfig):
        self.cfg = cfg
        _, y_beat = beat_layouts(cfg)
        super().__init__({
            "run": In(1), "done": Out(1),
            "y": Out(stream.Signature(data.StructLayout({"data": y_beat, "last": 1}))),
            "base": In(16), "stride": In(16), "words": In(16), "samples": In(16),
            "addr": Out(16), "read_en": Out(1), "word_en": Out(1), "passthrough": In(1),
            # every bank's word register: activation banks (codes) and output banks (accumulators)
            "act_words": In(data.ArrayLayout(unsigned(cfg.cols * cfg.store_bits), cfg.rows)),
            "out_words": In(data.ArrayLayout(unsigned(cfg.cols * cfg.acc_bits), cfg.rows)),
        })

    def elaborate(self, platform):
        m = Module()
        advance = ~self.y.valid | self.y.ready            # the beat on y (if any) leaves: every stage moves on
        addressed = Signal()                              # the address registers hold a word's address
        fetched = Signal()                                # the memories' outputs hold a word for a beat
        issued = Signal()                                 # every beat has been addressed
        issue = self.run & ~issued & advance
        bank, addr, last_word, sample = _walk(m, self.cfg, self.run, issue, self.base, self.stride, self.words)
        address_bank, address_last = Signal.like(bank), Signal()
        fetch_bank, fetch_last, beat_bank = Signal.like(bank), Signal(), Signal.like(bank)
        with m.If(~self.run):
            m.d.sync += [issued.eq(0), addressed.eq(0), fetched.eq(0), self.y.valid.eq(0), self.done.eq(0)]
        with m.Elif(issued & ~addressed & ~fetched & advance):       # the last beat leaves: nothing behind it
            m.d.sync += [self.y.valid.eq(0), self.done.eq(1)]
        with m.Elif(advance):
            m.d.sync += [addressed.eq(issue), address_bank.eq(bank), address_last.eq(last_word),
                         fetched.eq(addressed), fetch_bank.eq(address_bank), fetch_last.eq(address_last),
                         self.y.valid.eq(fetched), beat_bank.eq(fetch_bank), self.y.payload.last.eq(fetch_last)]
            with m.If(issue & last_word & (sample == self.samples - 1)):
                m.d.sync += issued.eq(1)
        cfg = self.cfg
        codes = data.View(beat_layouts(cfg)[0], select(m, beat_bank, list(self.act_words), unsigned(
            cfg.cols * cfg.store_bits), "codes_word"))
        accs = data.View(self.y.payload.data.shape(), select(m, beat_bank, list(self.out_words), unsigned(
            cfg.cols * cfg.acc_bits), "accs_word"))
        for j in range(cfg.cols):
            m.d.comb += self.y.payload.data[j].eq(Mux(self.passthrough, accs[j], codes[j].as_signed()))
        m.d.comb += [self.addr.eq(addr), self.read_en.eq(advance), self.word_en.eq(advance)]
        return m
