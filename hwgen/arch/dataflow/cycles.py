"""Exact cycle model of a dataflow pipeline, and the FIFO depths it relies on.

Between layer ``i`` and ``i + 1`` (top.py): ``PE → ·up → lcm`` (upsizer), a FIFO of ``lcm``-code words, then
``lcm → /down → SIMD`` (downsizer). ``V_i = MH_i / lcm`` words per vector.

Timing rules of the units (each unit's docstring draws it):

- layer ``i`` (mvau.py): one step per cycle, ``SF·NF`` steps per vector; pass 0 takes one input beat per step;
  output beat ``b`` is valid ``latency(i)`` (4, or 3 passing through) cycles after the issue of its last step; the
  unit is rigid: an output stall freezes its whole pipeline (also the next vector's steps already issued).
- upsizer (dwc.py): takes every beat on arrival; the word is on its output one cycle after the group's last beat.
- FIFO (fifo.py): a word written at t is readable at t + 2, and one cycle after the previous word is read.
- downsizer (dwc.py): takes a word when it is readable and its previous word's last group is being taken, and
  offers the word's ``down`` groups in the cycles after.

Since the FIFO comes before the downsizer, **no producer ever waits** while the FIFO has room: its output beats of
a vector are valid (and taken) at ``T + j·SF``, the FIFO words written at :func:`word_writes`.

**II.** With ``s_axis`` always valid and ``m_axis`` always ready, every layer repeats its schedule every
``II = max_i SF_i · NF_i`` cycles (exactly, from the first sample on): a layer's timing depends only on the cycle
``A`` it takes the last beat of pass 0 (its first output beat is valid at ``A + latency``, the others ``SF``
apart), and ``A`` of vector ``k + 1`` is ``max(A_k + SF·NF, arrivals of vector k + 1)``, which is ``A_0 + (k+1)·II``
when every earlier layer is periodic — provided the FIFO never holds the producer (:func:`fifo_depths`) during the
first samples. Over a long run a layer faster than the slowest one fills its FIFO and then waits on it (its
output stalls); the FIFO holds at least one vector, so the slower consumer still finds its vector there and the
pace stays ``II``.

**Latency** (first input transfer at cycle 0 → last output transfer, idle pipeline):
``A_0 = SF_0 − 1`` (input beats transfer one per cycle); for every layer ``T_i = A_i + latency(i)`` is its first
output beat; ``A_{i+1}`` is :func:`last_arrival` (the downsizer recurrence ``C_w = max(P_w + 2, C_{w−1} + down)``
over the words' write cycles ``P_w``, then the last word's ``down`` groups); the last layer ends at
``T_L + (NF_L − 1)·SF_L``.
"""
from __future__ import annotations

from .config import DataflowConfig, LayerConfig
from .fifo import LATENCY as FIFO_LATENCY
from .fifo import MIN_DEPTH
from .mvau import latency


def ii_cycles(cfg: DataflowConfig) -> int:
    """Steady-state cycles between consecutive samples' last outputs."""
    return cfg.predicted_bound


def word_writes(first_valid: int, layer: LayerConfig, up: int) -> list[int]:
    """Cycles the FIFO words of one vector are written, when the layer's first output beat of the vector is valid
    at ``first_valid``: word ``w`` is beats ``w·up … w·up + up − 1``, one beat every ``SF`` cycles (the producer
    never waits), plus the upsizer's output register."""
    sf, register = layer.sf, 1 if up > 1 else 0
    return [first_valid + ((w + 1) * up - 1) * sf + register for w in range(layer.nf // up)]


def last_arrival(first_valid: int, layer: LayerConfig, up: int, down: int) -> int:
    """Cycle the next layer, idle, takes the last beat of a vector from the converter ``PE → ·up → FIFO → /down``,
    when the layer's first output beat of the vector is valid at ``first_valid``."""
    take = None                                  # cycle the downsizer (or, without one, the consumer) takes a word
    for written in word_writes(first_valid, layer, up):
        readable = written + FIFO_LATENCY
        take = readable if take is None else max(readable, take + down)
    return take + (down if down > 1 else 0)


def latency_cycles(cfg: DataflowConfig) -> int:
    """Cycles from a sample's first input transfer to its last output transfer, with an idle pipeline."""
    arrival = cfg.layers[0].sf - 1       # the last input beat of layer 0, taken one per cycle from cycle 0
    for index, layer in enumerate(cfg.layers[:-1]):
        up, down = cfg.boundary(index)
        arrival = last_arrival(arrival + latency(layer), layer, up, down)
    last = cfg.layers[-1]
    return arrival + latency(last) + (last.nf - 1) * last.sf


def fifo_depths(cfg: DataflowConfig) -> tuple[int, ...]:
    """Depth (``lcm(PE, SIMD)``-code words) of the FIFO in front of each layer after the first.

    Word ``n`` (counted over all vectors) is written at ``P_n`` and taken out of the FIFO's output register at
    ``C_n``; it leaves the memory for that register at ``max(P_n + 1, C_{n−1})``, so the memory (``depth − 1``
    words) has room for word ``n`` — the writer never waits — if ``C_{n−depth} < P_n`` (and ``depth ≥ 3``). In the
    periodic schedule ``P_n − P_{n−V} = II`` (``V`` words per vector) and words are written ≥ 1 cycle apart, so
    ``depth = V + j`` suffices when ``Λ < II + j`` for the longest wait ``Λ = max C_n − P_n``: the consumer takes
    word ``w`` of a vector ``(V − w)·r`` cycles (``r = down`` beats per word; without a downsizer ``r = 1`` and
    ``V − 1 − w``) before its last pass-0 beat ``A`` at the latest, and ``A = max_u P_u + 2 + (V − u)·r``; with the
    writes ``g = SF·up`` apart that gives ``Λ ≤ 2 + (V − 1)·|g − r|`` (< ``II + 2``, since ``V·g`` and ``V·r`` are
    at most ``II``: ``j ≤ 2``)."""
    depths = []
    ii = ii_cycles(cfg)
    for index, producer in enumerate(cfg.layers[:-1]):
        up, down = cfg.boundary(index)
        words = producer.nf // up
        wait = FIFO_LATENCY + (words - 1) * abs(producer.sf * up - down)
        depths.append(max(MIN_DEPTH, words + max(0, wait - ii + 1)))
    return tuple(depths)
