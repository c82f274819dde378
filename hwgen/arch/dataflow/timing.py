"""Cycle-level timing model of a dataflow pipeline over images: the control of every unit, stepped cycle by cycle.

A chain of plain vector layers has the closed-form model of cycles.py. Once layers run over images (sliding-window
generators, several vectors per inference) the units' interplay (line buffers filling and draining, an MVAU taking
input only in its first pass, bursts of a depthwise layer) has no simple closed form, so this module runs the
handshakes themselves: every unit's valid/ready logic and counters as the RTL has them (each class names the
module it mirrors), without the data, over the pipeline's graph (duplicates, zips, per-edge converters and FIFOs).
It is exact by construction; the Amaranth and Verilator tests check it against the hardware cycle for cycle, and
it equals the closed form on plain chains.

Each cycle: the ``ready`` signals are computed from the output end backwards (a unit's input ready may depend on
its output ready combinationally, as in the RTL), then the ``valid`` signals forwards (a duplicate's and a zip's
are combinational), then every link transfers where valid and ready, then every unit updates its registers.

- :func:`fifo_depths`: the FIFO depths the pipeline needs, from a run with unbounded FIFOs and samples released
  one initiation interval apart (the bound ``max`` unit cycles per inference): the deepest a FIFO's memory gets
  when a word is written, plus its output register and one.
- :func:`run`: the last-output cycle of each of ``samples`` samples streamed back to back into the sized pipeline
  (input always valid, output always ready), relative to the first input transfer. Once the spacing of consecutive
  samples repeats (:data:`STEADY` times), later samples are extrapolated at that spacing.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import DataflowConfig, LayerConfig
from .fifo import MIN_DEPTH
from .mvau import latency

STEADY = 3           # equal sample spacings after which the pipeline is taken as periodic


class _Unit:
    """A unit's handshakes: ``ready(o_ready) → i_ready`` per input, ``valid(i_valid, o_ready) → o_valid`` per
    output (both combinational, as in the RTL), ``update(i_valid, i_xfer, o_ready, o_xfer)`` at the clock edge (lists,
    one entry per link). Most units are :class:`_Stage`: one input, one output, a registered output valid, and
    scalar arguments (the model's inner loop)."""


class _Stage(_Unit):
    o_valid = False


class _Source(_Unit):
    """``s_axis``: ``beats`` per sample, sample ``k`` valid from cycle ``k · pace`` (0: back to back)."""

    def __init__(self, beats: int, samples: int, pace: int):
        self.beats, self.total, self.pace = beats, beats * samples, pace
        self.sent = 0
        self.first = None
        self.now = 0

    def ready(self, o_ready):
        return []

    def valid(self, i_valid, o_ready):
        return [self.sent < self.total and self.now >= (self.sent // self.beats) * self.pace]

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        if o_xfer[0]:
            if self.first is None:
                self.first = self.now
            self.sent += 1
        self.now += 1


class _MVAU(_Stage):
    """mvau.py: a rigid pipeline; ``advance = ~o.valid | o.ready`` moves every stage."""

    def __init__(self, layer: LayerConfig):
        self.sf, self.nf, self.depthwise = layer.sf, layer.nf, layer.depthwise
        self.pipe = [False] * (latency(layer) - 1)      # output tokens in s1, s2(, acc)
        self.o_valid = False
        self.s = 0                                      # step within the vector: nf · SF + sf
        self.steps = layer.steps

    def i_ready(self, o_ready: bool) -> bool:
        return (not self.o_valid or o_ready) and (self.depthwise or self.s < self.sf)

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        if self.o_valid and not o_ready:
            return
        fire = i_valid if self.depthwise or self.s < self.sf else True
        last = fire and self.s % self.sf == self.sf - 1
        self.o_valid = self.pipe[-1]
        self.pipe = [last] + self.pipe[:-1]
        if fire:
            self.s = 0 if self.s == self.steps - 1 else self.s + 1


class _SWG(_Stage):
    """swg.py: the line-buffer writer and the window reader, one beat each per cycle."""

    def __init__(self, layer: LayerConfig):
        win = layer.window
        lanes = layer.in_lanes
        self.height, self.rows = win.height, win.buffer_rows
        self.cb = win.channels // lanes
        self.row_beats = win.width * self.cb
        self.image_beats = win.height * self.row_beats
        self.need, self.low = (a.tolist() for a in window_schedule(win, lanes, layer.depthwise))
        self.j = 0                 # reader: beat within the image's windows
        self.w = 0                 # writer: beats of its image written
        self.diff = 0              # writer's image − reader's image
        self.o_valid = False

    def i_ready(self, o_ready: bool) -> bool:
        return self.diff * self.height + self.w // self.row_beats - self.low[self.j] < self.rows

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        advance = not self.o_valid or o_ready
        need = self.need[self.j]
        fire = advance and (self.diff > 0 or (self.diff == 0 and max(need, 0) < self.w))
        if advance:
            self.o_valid = fire
        if fire:
            self.j += 1
            if self.j == len(self.need):
                self.j = 0
                self.diff -= 1
        if i_xfer:
            self.w += 1
            if self.w == self.image_beats:
                self.w = 0
                self.diff += 1


@lru_cache(maxsize=256)
def window_schedule(win, lanes: int, depthwise: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per emitted beat of one image's windows (swg.py order): the image beat it reads (−1: padding) and the
    reader's lowest needed row at that beat."""
    kh, kw = win.kernel
    oh, ow = win.out_hw
    cb = win.channels // lanes
    oy, ox, ky, kx, c = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw), np.arange(cb),
                                    indexing="ij")
    if depthwise:                                   # (oy, ox, cb, ky, kx)
        oy, ox, ky, kx, c = (a.transpose(0, 1, 4, 2, 3) for a in (oy, ox, ky, kx, c))
    top = oy * win.strides[0] - win.pads[0]
    y = top + ky
    x = ox * win.strides[1] - win.pads[1] + kx
    pad = (y < 0) | (y >= win.height) | (x < 0) | (x >= win.width)
    need = np.where(pad, -1, (y * win.width + x) * cb + c).ravel()
    return need, np.clip(top, 0, win.height).ravel()


class _Upsizer(_Stage):
    """dwc.Upsizer: ``ratio`` beats → one word, the closing beat taken only into a free output register."""

    def __init__(self, ratio: int):
        self.ratio, self.count, self.o_valid = ratio, 0, False

    def i_ready(self, o_ready: bool) -> bool:
        return self.count != self.ratio - 1 or not self.o_valid or o_ready

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        if o_xfer:
            self.o_valid = False
        if i_xfer:
            if self.count == self.ratio - 1:
                self.o_valid, self.count = True, 0
            else:
                self.count += 1


class _Downsizer(_Stage):
    """dwc.Downsizer: one word → ``ratio`` beats; the next word taken with the last beat's transfer."""

    def __init__(self, ratio: int):
        self.ratio, self.group, self.o_valid = ratio, 0, False

    def i_ready(self, o_ready: bool) -> bool:
        return not self.o_valid or (self.group == self.ratio - 1 and o_ready)

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        if o_xfer:
            self.group += 1
            if self.group == self.ratio:
                self.o_valid, self.group = False, 0
        if i_xfer:
            self.o_valid, self.group = True, 0


class _FIFO(_Stage):
    """fifo.py (amaranth's SyncFIFOBuffered): a memory of ``depth − 1`` words (``None``: unbounded) and an output
    register filled from it whenever the register is free or being read."""

    def __init__(self, depth: int | None):
        self.inner_depth = None if depth is None else depth - 1
        self.inner = 0
        self.o_valid = False
        self.deepest = 0           # the memory's level at a write, at most

    def i_ready(self, o_ready: bool) -> bool:
        return self.inner_depth is None or self.inner != self.inner_depth

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        inner_read = self.inner != 0 and (not self.o_valid or o_ready)
        if i_xfer:
            self.deepest = max(self.deepest, self.inner)
        self.inner += int(i_xfer) - int(inner_read)
        if inner_read:
            self.o_valid = True
        elif o_ready:
            self.o_valid = False


class _Duplicate(_Unit):
    """branch.Duplicate: a beat goes out on every output at once, when all are ready."""

    def ready(self, o_ready):
        return [all(o_ready)]

    def valid(self, i_valid, o_ready):
        return [i_valid[0] and all(r for j, r in enumerate(o_ready) if j != k) for k in range(len(o_ready))]

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        pass


class _Zip(_Unit):
    """branch.Zip: one beat of each input in turn, the first input first."""

    def __init__(self):
        self.phase = 0

    def ready(self, o_ready):
        return [self.phase == 0 and o_ready[0], self.phase == 1 and o_ready[0]]

    def valid(self, i_valid, o_ready):
        return [i_valid[self.phase]]

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        if o_xfer[0]:
            self.phase ^= 1


class _Sink(_Unit):
    """``m_axis``, always ready."""

    def ready(self, o_ready):
        return [True]

    def valid(self, i_valid, o_ready):
        return []

    def update(self, i_valid, i_xfer, o_ready, o_xfer) -> None:
        pass


def _network(cfg: DataflowConfig, source: _Source, depths) -> tuple[list, list[list[int]], list[list[int]], int]:
    """The pipeline's units in topological order with their input and output links (indices), and the number of
    links (``None`` depths: unbounded FIFOs). The last link is ``m_axis``."""
    units, ins, outs = [], [], []
    links = 0

    def add(unit, inputs: list[int], outputs: int) -> list[int]:
        nonlocal links
        created = list(range(links, links + outputs))
        links += outputs
        units.append(unit)
        ins.append(inputs)
        outs.append(created)
        return created

    layer_out: list[list[int]] = []
    edge_index = 0
    for index, layer in enumerate(cfg.layers):
        entries = []
        for port, src in enumerate(cfg.sources[index]):
            if src < 0:
                link = add(source, [], 1)[0]
            else:
                link = layer_out[src].pop(0)
                up, down = cfg.boundary(src, index)
                if up > 1:
                    link = add(_Upsizer(up), [link], 1)[0]
                link = add(_FIFO(None if depths is None else depths[edge_index]), [link], 1)[0]
                if down > 1:
                    link = add(_Downsizer(down), [link], 1)[0]
                edge_index += 1
            entries.append(link)
        if layer.add:
            entries = add(_Zip(), entries, 1)
        if layer.window is not None:
            entries = add(_SWG(layer), entries, 1)
        link = add(_MVAU(layer), entries, 1)[0]
        readers = max(1, cfg.readers(index))
        layer_out.append(list(add(_Duplicate(), [link], readers)) if readers > 1 else [link])
    add(_Sink(), [layer_out[-1][0]], 0)
    return units, ins, outs, links


def _simulate(cfg: DataflowConfig, samples: int, pace: int, depths) -> tuple[list[int], list]:
    """Run ``samples`` samples; each one's last-output cycle (relative to the first input transfer) and the units."""
    source = _Source(cfg.in_beats, samples, pace)
    units, ins, outs, links = _network(cfg, source, depths)
    out_link = ins[-1][0]
    order = list(zip(units, ins, outs))
    backwards = order[::-1]
    out_beats = cfg.out_beats
    finished: list[int] = []
    sent = 0
    bound = 64 + 8 * (samples + 2) * (max(cfg.predicted_bound, pace) + cfg.in_beats) + 64 * sum(
        layer.steps + 4 for layer in cfg.layers)
    ready = [False] * links
    valid = [False] * links
    stages = [(unit, i[0] if i else -1, o[0] if o else -1, isinstance(unit, _Stage)) for unit, i, o in order]
    while len(finished) < samples:
        if source.now > bound:
            raise RuntimeError("the dataflow timing model did not finish (deadlock?)")
        for (unit, i, o), (_, i0, o0, stage) in zip(backwards, stages[::-1]):    # ready: m_axis back to s_axis
            if stage:
                ready[i0] = unit.i_ready(ready[o0])
            else:
                for link, value in zip(i, unit.ready([ready[k] for k in o])):
                    ready[link] = value
        for (unit, i, o), (_, i0, o0, stage) in zip(order, stages):              # valid: from s_axis on
            if stage:
                valid[o0] = unit.o_valid
            else:
                for link, value in zip(o, unit.valid([valid[k] for k in i], [ready[k] for k in o])):
                    valid[link] = value
        now = source.now
        out = valid[out_link] and ready[out_link]
        for (unit, i, o), (_, i0, o0, stage) in zip(order, stages):
            if stage:
                unit.update(valid[i0], valid[i0] and ready[i0], ready[o0], valid[o0] and ready[o0])
            else:
                unit.update([valid[k] for k in i], [valid[k] and ready[k] for k in i], [ready[k] for k in o],
                            [valid[k] and ready[k] for k in o])
        if out:
            sent += 1
            if sent % out_beats == 0:
                finished.append(now - source.first)
                if _steady(finished) and len(finished) < samples:
                    step = finished[-1] - finished[-2]
                    finished += [finished[-1] + step * (k + 1) for k in range(samples - len(finished))]
    return finished, units


def _steady(finished: list[int]) -> bool:
    gaps = np.diff(finished[-STEADY - 1:])
    return len(gaps) == STEADY and bool(np.all(gaps == gaps[0]))


@lru_cache(maxsize=256)
def fifo_depths(cfg: DataflowConfig) -> tuple[int, ...]:
    """Depth of the FIFO in front of each layer after the first (see the module docstring)."""
    _, units = _simulate(cfg, STEADY + 2, cfg.predicted_bound, None)
    return tuple(max(MIN_DEPTH, unit.deepest + 2) for unit in units if isinstance(unit, _FIFO))


@lru_cache(maxsize=256)
def _head(cfg: DataflowConfig) -> tuple[int, ...]:
    """The first :data:`STEADY` + 3 samples' last-output cycles, streamed back to back."""
    finished, _ = _simulate(cfg, STEADY + 3, 0, cfg.fifo_depths)
    return tuple(finished)


def run(cfg: DataflowConfig, samples: int) -> tuple[int, ...]:
    """Each sample's last-output cycle, ``samples`` samples streamed back to back into ``cfg``'s pipeline. One
    simulation per configuration serves every count: a sample's timing does not depend on the samples behind it
    (every unit and FIFO serves them in order), and past the periodic head later samples follow at its spacing."""
    head = _head(cfg)
    if samples <= len(head):
        return head[:samples]
    if not _steady(list(head)):                  # not periodic yet: simulate them all
        return tuple(_simulate(cfg, samples, 0, cfg.fifo_depths)[0])
    step = head[-1] - head[-2]
    return head + tuple(head[-1] + step * (k + 1) for k in range(samples - len(head)))
