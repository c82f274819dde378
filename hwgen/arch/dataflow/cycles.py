"""Exact cycle model of a dataflow pipeline, and the FIFO depths it relies on.

Timing rules of the units (each unit's docstring draws it):

- layer ``i`` (mvau.py): one step per cycle, ``SF·NF`` steps per vector; pass 0 takes one input beat per step;
  output beat ``b`` is valid ``latency(i)`` (4, or 3 passing through) cycles after the issue of its last step; the
  unit is rigid, so after beat ``b`` is taken at cycle ``a_b`` beat ``b + 1`` is valid at ``a_b + SF``.
- width converter (dwc.py), ``PE → lcm → SIMD``: the upsizer takes every beat on arrival except the last of a group,
  which waits for its output register to empty and leaves it one cycle later; the downsizer takes a word at
  ``max(valid, previous + r_down)`` and writes its groups in the ``r_down`` cycles after.
- FIFO (fifo.py): a beat written at t is readable at t + 2; the FIFOs never fill during one inference.

**II.** With ``s_axis`` always valid and ``m_axis`` always ready, every layer repeats its schedule every
``SF·NF`` cycles and the slowest one sets the pace: ``II = max_i SF_i · NF_i`` (exactly, from the first sample on),
provided each layer's input FIFO holds one vector of its input beats plus the slack its producer needs to refill it
(:func:`fifo_depths`): a consumer reads a whole vector in its pass 0 (SF cycles) while the producer wrote it over
its own period, so the FIFO must have the vector ready when pass 0 starts.

**Latency** (first input transfer at cycle 0 → last output transfer, idle pipeline):
``A_0 = SF_0 − 1`` (input beats transfer one per cycle); for every layer ``T_i = A_i + latency(i)`` is its first
output beat; ``A_{i+1} = W_i + 2`` with ``W_i`` the cycle the width converter writes the last beat of the vector
into layer ``i+1``'s FIFO (:func:`last_write`: ``T_i + (NF_i − 1)·SF_i`` without converter,
``T_i + (NF_i − 1)·SF_i + 1`` for a pure upsizer, ``T_i + (NF_i − 1)·max(SF_i, r) + r`` for a pure downsizer by
``r``, a short recurrence over the groups for both); the last layer ends at ``T_L + (NF_L − 1)·SF_L``.
"""
from __future__ import annotations

from .config import DataflowConfig, LayerConfig
from .fifo import LATENCY as FIFO_LATENCY
from .fifo import MIN_DEPTH
from .mvau import latency


def ii_cycles(cfg: DataflowConfig) -> int:
    """Steady-state cycles between consecutive samples' last outputs."""
    return max(layer.cycles for layer in cfg.layers)


def last_write(first_valid: int, layer: LayerConfig, up: int, down: int) -> int:
    """Cycle the converter ``PE → ·up → /down`` writes the last beat of a vector into the next FIFO, when the
    layer's first output beat of the vector is valid at ``first_valid`` and the FIFO always accepts."""
    valid = first_valid                  # cycle the layer's current output beat is valid
    register_free = word_free = -1       # upsizer output register / downsizer word free from this cycle on
    written = first_valid
    for beat in range(layer.nf):
        accept = valid
        if up > 1 and beat % up != up - 1:
            valid = accept + layer.sf    # collected into the upsizer's group, taken on arrival
            continue
        if up > 1:                       # the group's last beat: needs the upsizer's output register
            accept = max(valid, register_free)
            word = accept + 1
        else:
            word = accept
        if down > 1:                     # the downsizer takes the word, then writes `down` beats
            take = max(word, word_free)
            word_free = written = take + down
        else:
            take = written = word
        if up > 1:
            register_free = take
        else:
            accept = take
        valid = accept + layer.sf
    return written


def latency_cycles(cfg: DataflowConfig) -> int:
    """Cycles from a sample's first input transfer to its last output transfer, with an idle pipeline."""
    arrival = cfg.layers[0].sf - 1       # the last input beat of layer 0, taken one per cycle from cycle 0
    for index, layer in enumerate(cfg.layers[:-1]):
        up, down = cfg.boundary(index)
        arrival = last_write(arrival + latency(layer), layer, up, down) + FIFO_LATENCY
    last = cfg.layers[-1]
    return arrival + latency(last) + (last.nf - 1) * last.sf


def fifo_depths(cfg: DataflowConfig) -> tuple[int, ...]:
    """Depth (beats of ``SIMD`` codes) of the FIFO in front of each layer after the first: one input vector
    (``SF``) plus the cycles its producer needs to answer a freed slot (latency, converter, FIFO)."""
    depths = []
    for index, layer in enumerate(cfg.layers[1:]):
        producer = cfg.layers[index]
        up, down = cfg.boundary(index)
        slack = latency(producer) + (1 if up > 1 else 0) + down + FIFO_LATENCY
        depths.append(max(MIN_DEPTH, layer.sf + slack))
    return tuple(depths)
