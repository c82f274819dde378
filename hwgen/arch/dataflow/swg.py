"""Sliding-window generator (FINN's ConvolutionInputGenerator) with a line buffer.

An image arrives pixel by pixel, channels innermost (NHWC), ``lanes`` channels per beat (``CB = C / lanes`` beats
per pixel). For every output pixel (raster order) the generator emits the window's beats: in ``(ky, kx, channel
beat)`` order for an MVAU (its input vector is the window in ``(ky, kx, c)`` order), or ``(channel beat, ky, kx)``
for a depthwise layer (all taps of ``lanes`` channels, then the next channels). Padded positions emit the ``pad``
code (the layer's zero point) and read nothing.

::

    i ─▶ writer ─▶ line buffer: D rows × W pixels × CB beats ─▶ reader ─▶ read port ─▶ o
         (row slot, beat)      (row slots used circularly)      (oy, ox, ky, kx, cb)   (+ pad mux)

The buffer holds ``D`` image rows (``Window.buffer_rows``): the rows of the current output row's windows and the
next stride's rows, which the writer fills while the reader works, and during an image's last output row the
next image's first rows (at most two images). Writer and reader run independently on the same circular row
slots:

- the reader's lowest needed row is ``low = clamp(oy·SH − PT, 0, H)``; the writer may write row ``r`` of an image
  ``d`` images ahead of the reader's (``d`` ∈ {−1, 0, 1, 2}, ``diff``) when ``d·H + r − low < D``;
- a window beat of row ``y``, column ``x`` is readable when the writer is images ahead, or in the same image
  and past that beat (``(y·W + x)·CB + cb`` < beats written); a padded position once the writer has begun the
  image (so the generator's timing is relative to its input, never to reset);
- when the reader moves to the next output row, ``low`` (and the slot it sits in) moves by the rows no longer
  needed; at the end of an image it moves to the next image's row 0, so rows no window needs are skipped.

Timing (the cycle-level model, timing.py, mirrors it): the writer takes a beat in any cycle it has room (``i.ready``);
a beat written at cycle ``t`` is readable from ``t + 1``. The reader issues a beat (a memory read, or the pad)
when it is readable and the output register is free (``~o.valid | o.ready``); the beat is valid on ``o`` the
cycle after. One beat per cycle at most on each side.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..systolic.config import index_range
from .config import CodeType, Window


def _wrap(m: Module, value, limit: int, name: str) -> Signal:
    """``value mod limit`` for ``0 ≤ value < 2·limit`` (one conditional subtract)."""
    result = Signal(index_range(limit), name=name)
    m.d.comb += result.eq(Mux(value >= limit, value - limit, value))
    return result


class SlidingWindow(wiring.Component):
    """Windows of ``window`` out of a stream of ``code`` codes, ``lanes`` per beat; ``depthwise`` orders each
    window channel group by channel group. ``pad``: the raw code emitted for padded positions."""

    def __init__(self, window: Window, code: CodeType, lanes: int, depthwise: bool = False):
        if window.channels % lanes:
            raise ValueError(f"lanes must divide the window's {window.channels} channels, got {lanes}")
        self.window, self.code, self.lanes, self.depthwise = window, code, lanes, depthwise
        beat = data.ArrayLayout(code.shape, lanes)
        super().__init__({"i": In(stream.Signature(beat)), "o": Out(stream.Signature(beat)),
                          "pad": In(code.shape)})

    def elaborate(self, platform):
        m = Module()
        win = self.window
        kh, kw = win.kernel
        sh, sw = win.strides
        pt, pl = win.pads[0], win.pads[1]
        height, width = win.height, win.width
        cb_count = win.channels // self.lanes
        row_beats = width * cb_count
        rows = win.buffer_rows
        oh, ow = win.out_hw
        beat = data.ArrayLayout(self.code.shape, self.lanes)
        m.submodules.buffer = buffer = Memory(shape=beat, depth=max(2, rows * row_beats), init=[])
        wr, rd = buffer.write_port(), buffer.read_port()

        # ---- relation of the writer's image to the reader's: -1 … +2 images ahead
        diff = Signal(signed(3))
        wr_done, rd_done = Signal(), Signal()
        m.d.sync += diff.eq(diff + wr_done - rd_done)

        # ---- reader position: output pixel (oy, ox), tap (ky, kx), channel beat cb
        oy, ox = Signal(index_range(oh)), Signal(index_range(ow))
        ky, kx, cb = Signal(index_range(kh)), Signal(index_range(kw)), Signal(index_range(cb_count))
        span = max(height, width) + max(win.pads) + max(kh, kw) + max(sh, sw)
        top = Signal(signed(span.bit_length() + 1), init=-pt)          # oy·SH − PT
        left = Signal(signed(span.bit_length() + 1), init=-pl)         # ox·SW − PL
        low = Signal(index_range(height + 1))                           # lowest row the reader needs
        low_slot = Signal(index_range(rows))
        m.d.comb += low.eq(Mux(top < 0, 0, Mux(top > height, height, top)))
        y, x = Signal.like(top), Signal.like(left)
        m.d.comb += [y.eq(top + ky), x.eq(left + kx)]
        pad = Signal()
        m.d.comb += pad.eq((y < 0) | (y >= height) | (x < 0) | (x >= width))

        # ---- writer position: row in its image, beat within the row, the row's slot
        wr_row = Signal(index_range(height))
        wr_pos = Signal(index_range(row_beats))
        wr_slot = Signal(index_range(rows))
        written = Signal(index_range(height * row_beats + 1))          # beats of the writer's image written
        m.d.comb += written.eq(wr_row * row_beats + wr_pos)
        ahead = Signal(signed((4 * height + rows).bit_length() + 2))
        m.d.comb += ahead.eq(diff * height + wr_row - low)
        m.d.comb += self.i.ready.eq(ahead < rows)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += wr_pos.eq(Mux(wr_pos == row_beats - 1, 0, wr_pos + 1))
            with m.If(wr_pos == row_beats - 1):
                m.d.sync += [wr_row.eq(Mux(wr_row == height - 1, 0, wr_row + 1)),
                             wr_slot.eq(Mux(wr_slot == rows - 1, 0, wr_slot + 1))]
                m.d.comb += wr_done.eq(wr_row == height - 1)
        m.d.comb += [wr.addr.eq(wr_slot * row_beats + wr_pos), wr.data.eq(self.i.payload),
                     wr.en.eq(self.i.valid & self.i.ready)]

        # ---- reader: issue a beat when readable and the output register is free
        need = Signal(range(height * row_beats + 1))
        m.d.comb += need.eq((y * width + x) * cb_count + cb)
        readable = (diff > 0) | ((diff == 0) & (Mux(pad, 0, need) < written))      # pads: once the image began
        advance = ~self.o.valid | self.o.ready
        fire = Signal()
        m.d.comb += fire.eq(advance & readable)
        slot = _wrap(m, low_slot + (y - low), rows, "read_slot")
        m.d.comb += [rd.addr.eq(slot * row_beats + x * cb_count + cb), rd.en.eq(advance)]
        pad_q = Signal()
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(fire), pad_q.eq(pad)]
        m.d.comb += self.o.payload.eq(Mux(pad_q, Cat(*[self.pad] * self.lanes), rd.data))

        # counters in emission order; the innermost first
        order = [(cb, cb_count), (kx, kw), (ky, kh)] if not self.depthwise else [(kx, kw), (ky, kh), (cb, cb_count)]
        next_top = Signal.like(top)
        next_low = Signal.like(low)
        m.d.comb += [next_top.eq(top + sh), next_low.eq(Mux(next_top < 0, 0, Mux(next_top > height, height, next_top)))]
        next_row_slot = _wrap(m, low_slot + (next_low - low), rows, "next_row_slot")
        last_low = min(max(0, (oh - 1) * sh - pt), height)               # low of the last output row
        next_image_slot = _wrap(m, low_slot + (height - last_low) % rows, rows, "next_image_slot")
        last_tap = Signal()
        m.d.comb += last_tap.eq((cb == cb_count - 1) & (kx == kw - 1) & (ky == kh - 1))
        with m.If(fire):
            carry = None
            for counter, count in order:
                step = Mux(counter == count - 1, 0, counter + 1)
                if carry is None:
                    m.d.sync += counter.eq(step)
                    carry = counter == count - 1
                else:
                    with m.If(carry):
                        m.d.sync += counter.eq(step)
                    carry = carry & (counter == count - 1)
            with m.If(last_tap):
                m.d.sync += [ox.eq(Mux(ox == ow - 1, 0, ox + 1)), left.eq(Mux(ox == ow - 1, -pl, left + sw))]
                with m.If(ox == ow - 1):
                    m.d.sync += oy.eq(Mux(oy == oh - 1, 0, oy + 1))
                    with m.If(oy == oh - 1):               # end of the image: low moves to the next image's row 0
                        m.d.sync += [top.eq(-pt), low_slot.eq(next_image_slot)]
                        m.d.comb += rd_done.eq(1)
                    with m.Else():
                        m.d.sync += [top.eq(next_top), low_slot.eq(next_row_slot)]
        return m
