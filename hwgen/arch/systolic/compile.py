"""IR → systolic program, memory images and exact cycle model.

The streamlined IR the array runs is ``Quantize → layers → Dequantize`` where every layer is a MatMul, Conv,
SumPool or a residual Add (``AddScaled``) followed by its MultiThreshold (the last MatMul may leave raw
accumulators), or a MaxPool: the host quantizes inputs, the array runs every layer with its requantization, and
the host dequantizes what the last layer leaves.

Pooling runs on the array itself, as a convolution whose weight is a stack of identity matrices (``W[(ky, kx, c),
n] = [c = n]``), so the im2col address generation, padding, strided grids, tiling, drain and exact cycle model
are the conv's, on both dataflows: a SumPool (AveragePool / GlobalAveragePool) is that conv with the SumPool's zero point, then its
MultiThreshold in the requant lanes; a MaxPool runs the PEs in max mode (``acc = max(acc, a·w)``, pe.py) on
operands ``code - min_code`` (padding enters as 0, the type's minimum, and never wins), then an identity
requantizer (thresholds 1 … max - min, base = min) writes the codes back. Why not a separate C-lane pooling unit:
it needs no new datapath, address generator or sequencer state, and it is as fast as such a unit when R ≈ C (R
pixels per cycle, K = kh·kw·C reads per output-channel tile, against one word of C lanes per cycle); the price is
a comparator per PE and kh·kw·C·⌈C/cols⌉ weight words (0/1) per pooling layer. Weights, thresholds and the
program are data loaded at run time, so one generated array runs any model whose weights fit its scratchpads.

Memory layout (``R`` rows, ``C`` columns):

- activations: every code tensor is an image of slots (``Layout``: pixel (y, x) of sample n at slot ``n·slots +
  y·pitch + x``; a 2-D tensor is one slot per sample), its channel at storage position ``p`` in word ``base +
  (slot // R) · stride + p // C``, lane ``p % C``, of bank ``slot % R`` (OS) or ``(slot + p // C) % R`` (WS);
  every code tensor gets a region (``regions``: the lowest one free of every tensor still needed, so a residual's
  skip input survives), pitch and slots are picked per tensor for its readers (``plan_layouts``);
- weights: bank ``n % C``, word ``w_base + (n // C) · kp + k`` with k over the layer's features in the order the
  controller reads them (``feed_weight``: kernel position, then ``cgp`` channel positions); ``kp`` = the features
  (OS) or the features padded to whole folds of R (WS), zero rows for padding;
- thresholds: lane ``n % C``, slot ``slot_base + n // C``, heap order over the search stages (see requant.py);
- outputs (accumulators of a last layer without threshold): the activations' layout with ``⌈channels / C⌉`` words
  per slot and base 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from math import ceil
from operator import mul

import numpy as np

from ...compat import cached_property
from ...errors import HwgenError
from ...ir import BipolarType, Graph, Node
from ...ir.fixed import ROUNDING, FixedStep, apply_steps, product_matmul, round_shift
from ...model import HOST_OPS
from ...passes.analysis import value_bounds
from ..fixed import FixedStage, encode_stage, identity_fields
from ..lanes import pack_lanes, unpack_lanes
from ..requant import REQUANT_OPS, Segment, chain_after, fixed_segments, is_flatten, is_thresholds, requant_chain
from .config import MAX_FIXED_STEPS, SystolicConfig
from .controller import CONV_FIELDS, FIXED_FIELDS, INSTRUCTION, INSTRUCTION_CHUNKS
from .top import ACTIVATIONS, BIASES, OUTPUTS, PROGRAM, THRESHOLDS, WEIGHTS



@dataclass(frozen=True)
class GemmLayer:
    """One layer as the array runs it: ``(x - zx) @ weight`` then thresholds, fixed-point stages (``steps``) or
    neither (passthrough: the last layer's accumulators).

    ``x`` is the concatenation of the ``inputs`` (IR code tensors, ``splits`` features each): a residual Add of two
    code tensors is a GEMM over both with weight ``[[ka·I], [kb·I]]`` (zero points folded into the thresholds).
    ``product_shift > 0`` rounds every product ``(x - zx)·w`` by ``2^product_shift`` with ``product_rounding``
    before it is summed (hls4ml's products assigned to a coarser accumulator type, ``FixedMatMul``).
    """

    name: str                            # the IR node's name (MatMul or AddScaled)
    weight: np.ndarray                   # (K, N) int64, K = sum(splits)
    zx: int
    thresholds: np.ndarray | None        # (N or 1, L) ascending, descending channels already negated
    negate: np.ndarray | None            # (N or 1,) bool
    base: int
    step: int
    acc_range: tuple[int, int]
    in_bits: int                         # signed bits the input codes need
    out_bits: int                        # signed bits the output codes need (accumulator if passthrough)
    requant: str | None                  # the IR MultiThreshold node's name, if any
    inputs: tuple[str, ...]              # IR tensors holding the input codes
    splits: tuple[int, ...]              # features of each input
    output: str                          # IR tensor this layer's results stand for
    conv: Conv | None = None             # convolution geometry (rows of ``weight`` in (ky, kx, c) order)
    pool: str | None = None              # "max" (PEs in max mode) or "sum": a pooling layer (identity weights)
    steps: tuple[FixedStep, ...] = ()    # fixed-point stages (multiply-free casts, hwgen.arch.fixed), if any
    product_shift: int = 0
    product_rounding: str = "TRN"

    @property
    def passthrough(self) -> bool:
        """Whether the accumulators themselves are the results (no thresholds, no stages)."""
        return self.thresholds is None and not self.steps

    # Derived figures the compiler checks for every array configuration are computed once per layer (a sweep
    # compiles one model's layers for thousands of configurations); the fields never change (frozen, and the
    # arrays are never written in place), so they hold for the layer's lifetime.
    @cached_property
    def stages(self) -> tuple[FixedStage, ...]:
        return tuple(FixedStage.of(step) for step in self.steps)

    @cached_property
    def stage_fields(self) -> tuple[dict, ...]:
        """Every fixed-point stage's instruction fields (``encode_stage``); a ``ValueError`` if one does not fit
        the lanes."""
        return tuple(encode_stage(stage) for stage in self.stages)

    @cached_property
    def weight_bits(self) -> int:
        """Signed bits the weights need."""
        return _signed_bits(int(self.weight.min()), int(self.weight.max()))

    @cached_property
    def acc_bits(self) -> int:
        """Signed bits the accumulator range needs."""
        return _signed_bits(*self.acc_range)

    @cached_property
    def stage_value_bits(self) -> int:
        """The lanes' ``fixed_bits`` the fixed-point stages need (biases and stage results in ``fixed_bits``
        signed bits, sums and shifted values in one more), from the accumulator range; 0 without stages."""
        lo, hi = np.array(self.acc_range[0]), np.array(self.acc_range[1])
        need = 0
        for step in self.steps:
            bias = np.asarray(step.bias, np.int64)
            v_lo, v_hi = lo + bias, hi + bias
            if step.relu:
                v_lo, v_hi = np.maximum(v_lo, 0), np.maximum(v_hi, 0)
            shift = step.frac - step.to.frac
            q_lo, q_hi = round_shift(v_lo, shift, step.to.rounding), round_shift(v_hi, shift, step.to.rounding)
            values = [int(np.min(a)) for a in (v_lo, q_lo)] + [int(np.max(a)) for a in (v_hi, q_hi)]
            need = max(need, _signed_bits(min(values), max(values)) - 1, _signed_bits(int(bias.min()), int(bias.max())),
                       step.to.width + (0 if step.to.signed else 1))
            lo, hi, _ = step.bounds(lo, hi)
        return need

    @property
    def k(self) -> int:
        return self.weight.shape[0]

    @property
    def n(self) -> int:
        return self.weight.shape[1]

    @property
    def search_bits(self) -> int:
        return 0 if self.thresholds is None else max(1, int(self.thresholds.shape[1]).bit_length())


@dataclass(frozen=True)
class Conv:
    """A layer's convolution geometry: group ``group`` of a ``groups``-way grouped conv over a (C, H, W) input.

    A MatMul over a flattened (C, H, W) image is the conv whose kernel covers the whole image (``flat_out``)."""

    in_shape: tuple[int, int, int]       # C, H, W of the whole input tensor
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)    # top, left, bottom, right
    groups: int = 1
    group: int = 0
    flat_out: bool = False

    @property
    def cg(self) -> int:
        """Input channels per group."""
        return self.in_shape[0] // self.groups

    @property
    def out_hw(self) -> tuple[int, int]:
        from ...kernels import pool_geometry
        return tuple(pool_geometry(self.in_shape[1 + a], self.kernel[a], self.strides[a], self.pads[a],
                                   self.pads[a + 2], 1, False)[0] for a in (0, 1))


@dataclass(frozen=True)
class Layout:
    """Where a code tensor's values sit in its activation region.

    Values live in *slots* (one per pixel, or per sample of a 2-D tensor): pixel (y, x) of sample n is slot
    ``n · slots + y · pitch + x``; the channel stored at position ``p`` is in word ``base + (slot // R) · stride +
    p // C`` (lane ``p % C``) of bank ``slot % R`` (output-stationary) or ``(slot + p // C) % R`` (weight-stationary:
    a pixel's words rotate across the banks, so the rows of a fold read a pixel's words in parallel). ``pitch ≥ w``
    and ``slots ≥ (h - 1)·pitch + w`` are picked per tensor (``plan_layouts``) so that its readers walk it without
    bank conflicts and with as few pixels that are not outputs as possible; the slots in between hold nothing (the
    image written is exactly C·H·W codes)."""

    channels: int
    h: int = 1
    w: int = 1
    pitch: int = 1                       # slots per image row
    slots: int = 1                       # slots per sample
    positions: tuple[int, ...] | None = None   # storage position of each channel (None: channel c at c)

    @property
    def stored(self) -> int:
        """Storage positions a slot spans (channels, plus the padding of grouped outputs)."""
        return self.channels if self.positions is None else max(self.positions) + 1

    def position(self, channel):
        return channel if self.positions is None else np.asarray(self.positions)[channel]

    def slot(self, n, y, x):
        return n * self.slots + y * self.pitch + x


@dataclass(frozen=True)
class Feed:
    """How a layer reads its input: for each output pixel, ``kernel`` positions × ``cg`` channel positions (from
    storage position ``c_lo``) of the input pixels the kernel covers. A dense layer is the 1×1 kernel over one
    pixel per sample; a residual Add (``add``) the 1×2 kernel whose second position is the same pixel of the second
    input (whose region the controller reaches as that position's slot offset)."""

    kernel: tuple[int, int]
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)     # top, left, bottom, right
    strides: tuple[int, int] = (1, 1)
    c_lo: int = 0
    cg: int = 1
    out_hw: tuple[int, int] = (1, 1)
    add: bool = False

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def lattice(self) -> tuple[int, int]:
        """(lat_h, lat_w): the last output pixel's position on the input's stride-1 output grid."""
        return (self.out_hw[0] - 1) * self.strides[0], (self.out_hw[1] - 1) * self.strides[1]

    def deltas(self, pitch: int, rows: int) -> np.ndarray:
        """Slot offset of every kernel position from the pixel's own slot (the Add's second input: a region away,
        shown as a large multiple of R, a bank offset of 0 that no other offset equals)."""
        if self.add:
            return np.array([0, rows << 32], np.int64)
        ky, kx = np.divmod(np.arange(self.taps), self.kernel[1])
        return (ky - self.pads[0]) * pitch + (kx - self.pads[1])


def feed_of(layer: GemmLayer, shapes: dict[str, Layout]) -> Feed:
    """``layer``'s feed over its input(s) of the given shapes."""
    source = shapes[layer.inputs[0]]
    if len(layer.inputs) > 1:
        other = shapes[layer.inputs[1]]
        return Feed((1, 2), cg=max(source.stored, other.stored), out_hw=(source.h, source.w), add=True)
    conv = layer.conv
    if conv is None:
        if source.h * source.w != 1:
            raise HwgenError(f"node '{layer.name}': a dense layer over a {source.h}×{source.w} image")
        return Feed((1, 1), cg=source.stored)
    stored = source.position(conv.group * conv.cg + np.arange(conv.cg))
    c_lo = int(np.min(stored))
    return Feed(conv.kernel, conv.pads, conv.strides, c_lo, int(np.max(stored)) - c_lo + 1, conv.out_hw)


def feed_weight(layer: GemmLayer, feed: Feed, shapes: dict[str, Layout], cgp: int) -> np.ndarray:
    """``layer``'s weight with rows in the order the feed reads them: (kernel position, channel position) with
    ``cgp ≥ cg`` rows per kernel position, zero rows for positions that hold no channel of the layer."""
    weight = np.zeros((feed.taps, cgp, layer.n), np.int64)
    source = shapes[layer.inputs[0]]
    if feed.add:
        other = shapes[layer.inputs[1]]
        weight[0, source.position(np.arange(source.channels))] = layer.weight[:source.channels]
        weight[1, other.position(np.arange(other.channels))] = layer.weight[source.channels:]
    elif layer.conv is None:
        weight[0, source.position(np.arange(source.channels))] = layer.weight
    else:
        conv = layer.conv
        stored = source.position(conv.group * conv.cg + np.arange(conv.cg)) - feed.c_lo
        weight[:, stored] = layer.weight.reshape(feed.taps, conv.cg, layer.n)
    return weight.reshape(feed.taps * cgp, layer.n)


def plan_shapes(layers, cols: int) -> dict[str, Layout]:
    """Channels, image size and channel positions of every code tensor (pitch and slots compact): the input as the
    first layer reads it, a conv's output its own ``OH × OW`` image, grouped outputs padded to whole words per group
    (when a group's channels are not a multiple of C)."""
    first = layers[0]
    if first.conv is not None:
        # the whole (C, H, W) input, not ``splits[0]`` (a conv's K = KH·KW·C/groups, one group's im2col row)
        c, h, w = first.conv.in_shape
        placed = {first.inputs[0]: Layout(c, h, w, w, h * w)}
    else:
        placed = {first.inputs[0]: Layout(first.splits[0])}
    for layer in layers:
        source = placed[layer.inputs[0]]
        conv = layer.conv
        if len(layer.inputs) > 1:
            other = placed[layer.inputs[1]]
            if (source.h, source.w) != (other.h, other.w):
                raise HwgenError(f"node '{layer.name}' (Add): its inputs are {source.h}×{source.w} and "
                                 f"{other.h}×{other.w} images; the systolic array adds images of one size")
            out = replace(source, channels=layer.n, positions=None)
        elif conv is None:
            out = Layout(layer.n)
        else:
            if tuple(conv.in_shape[1:]) != (source.h, source.w):
                raise HwgenError(f"node '{layer.name}': its {conv.in_shape[1]}×{conv.in_shape[2]} input is "
                                 f"stored as a {source.h}×{source.w} image")
            ho, wo = conv.out_hw
            positions = None
            if conv.groups > 1 and layer.n % cols:
                per = ceil(layer.n / cols) * cols
                positions = tuple(g * per + j for g in range(conv.groups) for j in range(layer.n))
            out = Layout(layer.n * conv.groups, ho, wo, wo, ho * wo, positions)
        if layer.output in placed:
            if placed[layer.output] != out:
                raise HwgenError(f"node '{layer.name}': its groups disagree on the output layout")
            continue
        placed[layer.output] = out
    return placed


def os_walk(feed: Feed, source: Layout, rows: int) -> tuple[int, int, int]:
    """The output-stationary walk of a layer over ``source``: ``(walk_w, walk_s, last)``, pixels per row and per
    sample and the last output's position in a sample. The walk covers the stride-1 output grid; a pixel at
    position p of sample n reads slot ``n·slots + (p // walk_w)·pitch + p % walk_w`` (+ the kernel's offsets), and
    ``walk_w ≡ pitch``, ``walk_s ≡ slots`` (mod R) put pixel m of the walk in bank ``m mod R``: R rows of a tile
    read R banks. Pixels past the output's width or height (when the pitch or slots do not match) are computed and
    not written."""
    lat_h, lat_w = feed.lattice
    walk_w = lat_w + 1 + (source.pitch - lat_w - 1) % rows
    last = lat_h * walk_w + lat_w
    walk_s = last + 1 + (source.slots - last - 1) % rows
    return walk_w, walk_s, last


def os_rows(feed: Feed, source: Layout, rows: int, samples: int) -> int:
    """Pixels an output-stationary layer computes for ``samples`` samples (the GEMM's M)."""
    _, walk_s, last = os_walk(feed, source, rows)
    return (samples - 1) * walk_s + last + 1


def ws_conflict(feed: Feed, pitch: int, cgp: int, rows: int, cols: int) -> bool:
    """Whether two rows of a weight-stationary fold would read different words of one bank: row i of fold f reads
    feature ``f·R + i`` = (kernel position t, channel c) at slot offset δ_t, word ``w = (c_lo + c) // C``, bank
    ``(s + δ_t + w) mod R`` for the pixel's slot s. A 1×1 kernel never conflicts: a fold reads at most R
    consecutive words, in distinct banks."""
    if feed.taps == 1:
        return False
    k = np.arange(ceil(feed.taps * cgp / rows) * rows)
    tap, c = np.divmod(k, cgp)
    valid = (c < feed.cg) & (tap < feed.taps)
    delta = feed.deltas(pitch, rows)[np.minimum(tap, feed.taps - 1)]
    word = (feed.c_lo + c) // cols
    fold = k // rows
    bank = (delta + word) % rows
    read = np.unique(np.stack([fold, bank, delta, word])[:, valid], axis=1)
    return read.shape[1] != np.unique(read[:2], axis=1).shape[1]


def ws_channel_rows(feed: Feed, pitch: int, rows: int, cols: int) -> int:
    """Rows per kernel position on the weight-stationary array (``cgp``): the channels, or the fewest more with
    which no fold reads two words of one bank (at most a multiple of R: a fold within one kernel position reads
    consecutive words, distinct banks)."""
    cg = feed.cg
    if feed.kernel == (1, 1):               # never a conflict (ws_conflict): no options to try
        return cg
    options = [cg] + [p for p in (1 << (cg - 1).bit_length(),) if p <= rows and rows % p == 0 and p > cg]
    for cgp in options:
        if not ws_conflict(feed, pitch, cgp, rows, cols):
            return cgp
    return ceil(cg / rows) * rows


def _n_tiles(layer: GemmLayer, cols: int) -> int:
    return ceil(layer.n / cols)


def _fit(least: int, residue: int, rows: int) -> int:
    """The smallest value ≥ ``least`` that is ≡ ``residue`` (mod ``rows``)."""
    return least + (residue - least) % rows


def _os_layout(shape: Layout, users: list, rows: int, cols: int) -> tuple[int, int]:
    """(pitch, slots) of a tensor on the output-stationary array: each reader offers the pitch and slots its walk
    wants (:func:`os_walk`); the pair with the fewest cycles over every reader (R samples) wins."""
    h, w = shape.h, shape.w
    users = users or [(None, Feed((1, 1)))]
    candidates = []
    for pitch in sorted({_fit(w, feed.lattice[1] + 1, rows) for _, feed in users}):
        for _, feed in users:
            lat_h, lat_w = feed.lattice
            walk_w = _fit(lat_w + 1, pitch, rows)
            candidates.append((pitch, _fit((h - 1) * pitch + w, lat_h * walk_w + lat_w + 1, rows)))
    if len(set(candidates)) == 1:               # one choice (e.g. every tensor of an MLP): nothing to compare
        return candidates[0]
    period = 2 * rows + cols - 1

    def cost(candidate: tuple[int, int]) -> tuple[int, int]:
        probe = replace(shape, pitch=candidate[0], slots=candidate[1])
        return sum(ceil(os_rows(feed, probe, rows, rows) / rows) * _n_tiles(layer, cols) *
                   max(feed.taps * feed.cg, period) for layer, feed in users if layer is not None), candidate[1]
    return min(candidates, key=cost)


def ws_min_period(rows: int, cols: int) -> int:
    """The shortest WS fold (cycles): the next fold's weights shift in behind this fold's commits
    (``2R + C - 1``, ws_controller.py), and an accumulator address is read two cycles before it is written
    (its output register, top.py), after the previous fold's write: at least 3."""
    return max(2 * rows + cols - 1, 3)


def _ws_layout(shape: Layout, users: list, rows: int, cols: int) -> tuple[int, int]:
    """(pitch, slots) of a tensor on the weight-stationary array: compact, or with ``pitch ≡ kw`` (mod R) for a
    conv reader (:func:`ws_conflict`); the pitch with the fewest cycles over every reader (R samples) wins."""
    h, w = shape.h, shape.w
    pitches = sorted({w} | {_fit(w, feed.kernel[1], rows) for _, feed in users if not feed.add})
    period = ws_min_period(rows, cols)

    def cost(pitch: int) -> tuple[int, int]:
        return sum(ceil(feed.taps * ws_channel_rows(feed, pitch, rows, cols) / rows) * _n_tiles(layer, cols) *
                   max(rows * feed.out_hw[0] * feed.out_hw[1], period) for layer, feed in users), pitch
    pitch = pitches[0] if len(pitches) == 1 else min(pitches, key=cost)
    return pitch, (h - 1) * pitch + w


def plan_layouts(layers, rows: int, cols: int, dataflow: str) -> dict[str, Layout]:
    """Every code tensor's layout (:class:`Layout`): its shape, and the pitch and slots per sample its readers walk
    fastest. Output-stationary readers want ``pitch ≡`` their walk's width and ``slots ≡`` its pixels per sample
    (mod R, :func:`os_walk`), weight-stationary ones ``pitch ≡ kw`` (mod R: then the kernel positions of a fold sit
    in consecutive banks, :func:`ws_conflict`); the two inputs of a residual Add share one layout. Among the
    candidates every reader offers, the one with the fewest array cycles (estimated for R samples) wins."""
    return _plan_layouts(layers, rows, cols, dataflow)[0]


class SameLayers:
    """A cache key standing for a sequence of layers by identity: a :class:`GemmLayer` holds numpy arrays, so it
    has no value hash, and a model's layers are built once and then only read. An entry of a cache keyed by this
    holds the layers, so no other object can take their ids while it exists."""

    __slots__ = ("layers", "_ids", "_hash")

    def __init__(self, layers):
        self.layers = tuple(layers)
        self._ids = tuple(map(id, self.layers))     # while both keys hold their layers, equal ids: same objects
        self._hash = hash(self._ids)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, SameLayers) and self._ids == other._ids


@lru_cache(maxsize=256)
def _column_facts(key: SameLayers, cols: int) -> tuple[tuple[int, ...], int]:
    """Output-channel tiles of every layer on C columns and the threshold slots per lane
    (:func:`threshold_slots`), per model and C."""
    return tuple(ceil(layer.n / cols) for layer in key.layers), threshold_slots(key.layers, cols)


def _one_slot(shape: Layout, readers) -> bool:
    """Whether a tensor's layout is one slot per sample (pitch = slots = 1) on every array: a 1×1 image whose
    readers all read one pixel per output (lattice (0, 0)) with kernels one wide (or add it). Then every
    candidate :func:`_os_layout` and :func:`_ws_layout` offer is (1, 1), whatever R and C."""
    return (shape.h == shape.w == 1
            and all(feed.lattice == (0, 0) and (feed.add or feed.kernel[1] == 1) for _, feed in readers))


@lru_cache(maxsize=256)
def _tensor_groups(key: SameLayers, cols: int) -> tuple[dict[str, Layout], tuple[Feed, ...], tuple,
                                                        dict[str, Layout] | None]:
    """What :func:`plan_layouts` decides from the layers and the column count alone (cached per model and C; do
    not mutate): the shapes, the feeds, per group of tensors sharing a layout (the inputs of an Add) its root
    tensor, shape, members and readers ``(layer, feed)``, and when every group is one slot per sample
    (:func:`_one_slot`: dense models) the layouts themselves, the same for every R and dataflow."""
    layers = key.layers
    shapes = plan_shapes(layers, cols)
    feeds = tuple(feed_of(layer, shapes) for layer in layers)
    tied = {t: t for t in shapes}                   # union-find: the inputs of an Add share a layout

    def root(t: str) -> str:
        while tied[t] != t:
            t = tied[t]
        return t

    for layer in layers:
        if len(layer.inputs) > 1:
            tied[root(layer.inputs[1])] = root(layer.inputs[0])
    readers: dict[str, list] = {}
    for layer, feed in zip(layers, feeds):
        for t in dict.fromkeys(layer.inputs):
            readers.setdefault(root(t), []).append((layer, feed))
    groups = tuple((t, shape, tuple(m for m in shapes if root(m) == t), tuple(readers.get(t, [])))
                   for t, shape in shapes.items() if root(t) == t)
    fixed = None
    if all(_one_slot(shape, readers) for _, shape, _, readers in groups):
        fixed = {member: replace(shapes[member], pitch=1, slots=1) for _, _, members, _ in groups
                 for member in members}
    return shapes, feeds, groups, fixed


def _plan_layouts(layers, rows: int, cols: int, dataflow: str) -> tuple[dict[str, Layout], tuple[Feed, ...]]:
    """:func:`plan_layouts` and every layer's feed (a feed reads its input's channels and image size, not the
    pitch and slots chosen here)."""
    shapes, feeds, groups, fixed = _tensor_groups(SameLayers(layers), cols)
    if fixed is not None:
        return dict(fixed), feeds
    choose = _os_layout if dataflow == "os" else _ws_layout
    layouts = {}
    for _, shape, members, readers in groups:
        pitch, slots = choose(shape, list(readers), rows, cols)
        for member in members:
            layout = shapes[member]
            layouts[member] = layout if (layout.pitch, layout.slots) == (pitch, slots) else \
                replace(layout, pitch=pitch, slots=slots)
    return layouts, feeds


def _signed_bits(lo: int, hi: int) -> int:
    """Bits of a two's-complement value holding every integer in [lo, hi]."""
    return max((-min(lo, 0) - 1).bit_length(), max(hi, 0).bit_length()) + 1


def _is_flatten(graph: Graph, node: Node) -> bool:
    return is_flatten(node)


def _source(graph: Graph, tensor: str) -> str:
    """The tensor a chain of flattens starts from."""
    producer = graph.producer(tensor)
    while producer is not None and _is_flatten(graph, producer):
        tensor = producer.inputs[0]
        producer = graph.producer(tensor)
    return tensor


def _span(bounds, tensor: str) -> tuple[int, int]:
    return int(np.min(bounds[tensor][0])), int(np.max(bounds[tensor][1]))


def _threshold_fields(node: Node, offset: int = 0) -> dict:
    """GemmLayer fields of a MultiThreshold ``node`` (``offset`` added to the accumulator it compares)."""
    t = node.attrs["thresholds"].astype(np.int64) + offset
    negate = node.attrs["descending"].astype(bool)
    dtype = node.attrs["quantizer"].dtype
    return {"thresholds": np.where(negate[:, None], -t[:, ::-1], t), "negate": negate,
            "base": int(node.attrs["base"]), "step": int(node.attrs["step"]), "requant": node.name,
            "out_bits": _signed_bits(dtype.min, dtype.max) if not isinstance(dtype, BipolarType) else 2}


def _segment_fields(segment: Segment, offset: int = 0) -> dict:
    """GemmLayer fields of a segment of fixed-point stages (``offset``: as in :func:`_threshold_fields`)."""
    steps = segment.steps
    if offset:
        steps = (replace(steps[0], bias=np.asarray(steps[0].bias, np.int64) - offset),) + steps[1:]
    lo, hi = segment.out_range
    return {"thresholds": None, "negate": None, "base": 0, "step": 1, "requant": segment.requant, "steps": steps,
            "out_bits": _signed_bits(int(np.min(lo)), int(np.max(hi)))}


def _diagonal_layer(segment: Segment, shape: tuple[int, ...]) -> GemmLayer:
    """A segment reading stored codes: the GEMM ``x @ diag(mult)`` (the identity without a multiply), then its
    stages; ``shape`` is the (N, C[, H, W]) shape of the codes."""
    channels = shape[1]
    mult = np.ones(channels, np.int64) if segment.mult is None else np.broadcast_to(segment.mult, (channels,))
    in_lo, in_hi = int(np.min(segment.in_range[0])), int(np.max(segment.in_range[1]))
    acc = (int(np.min(segment.acc_range[0])), int(np.max(segment.acc_range[1])))
    conv = Conv(tuple(shape[1:]), (1, 1)) if len(shape) == 4 else None
    fields = _segment_fields(segment)
    return GemmLayer(segment.name, np.diag(mult).astype(np.int64), 0, fields.pop("thresholds"), fields.pop("negate"),
                     fields.pop("base"), fields.pop("step"), acc, _signed_bits(in_lo, in_hi), fields.pop("out_bits"),
                     fields.pop("requant"), (segment.input,), (channels,), segment.output, conv, **fields)


def _identity_layer(graph: Graph, bounds, node: Node) -> GemmLayer:
    """A MultiThreshold on codes as the GEMM ``x @ I`` followed by its thresholds."""
    source = _source(graph, node.inputs[0])
    shape = graph.tensors[source].shape
    channels = shape[1]
    lo, hi = _span(bounds, source)
    conv = Conv(tuple(shape[1:]), (1, 1)) if len(shape) == 4 else None
    fields = _threshold_fields(node)
    return GemmLayer(node.name, np.eye(channels, dtype=np.int64), 0, fields["thresholds"], fields["negate"],
                     fields["base"], fields["step"], (lo, hi), _signed_bits(lo, hi), fields["out_bits"], node.name,
                     (source,), (channels,), node.outputs[0], conv)


def _pool_conv(node: Node, shape: tuple[int, ...]) -> Conv:
    """The conv geometry of a pooling node over an NCHW input of ``shape``; refuses what the array cannot run."""
    a = node.attrs
    if len(shape) != 4:
        raise HwgenError(f"node '{node.name}' ({node.op}): input shape {shape}; the systolic array pools NCHW images")
    if node.op == "SumPool" and a["global"]:
        return Conv(tuple(shape[1:]), tuple(shape[2:]))
    if tuple(a.get("dilations", (1, 1))) != (1, 1):
        raise HwgenError(f"node '{node.name}' ({node.op}): dilation {tuple(a['dilations'])}; the systolic array "
                         "pools with dilation 1")
    kernel, strides, pads = tuple(a["kernel"]), tuple(a["strides"]), tuple(a["pads"])
    from ...kernels import pool_geometry
    for axis in (0, 1):
        if pool_geometry(shape[2 + axis], kernel[axis], strides[axis], pads[axis], pads[axis + 2], 1,
                         bool(a["ceil_mode"]))[1]:
            raise HwgenError(f"node '{node.name}' ({node.op}): ceil_mode adds a partial window at the end; the "
                             "systolic array pools whole windows (pad the input instead)")
    return Conv(tuple(shape[1:]), kernel, strides, pads)


def pool_weight(conv: Conv) -> np.ndarray:
    """A pooling layer's weight: row (ky, kx, c) selects channel c, ``(KH·KW·C, C)`` of 0/1."""
    channels = conv.in_shape[0]
    return np.tile(np.eye(channels, dtype=np.int64), (conv.kernel[0] * conv.kernel[1], 1))


def maxpool_layer(name: str, conv: Conv, lo: int, hi: int, source: str, output: str) -> GemmLayer:
    """A MaxPool over codes in [lo, hi] as the max-mode conv over ``code - lo`` (every operand ≥ 0, so padding,
    fed as 0, never wins) with identity weights, then the identity requantizer ``lo + #{i ∈ 1 … hi - lo: acc ≥
    i}`` that writes the pooled codes back."""
    bits = _signed_bits(lo, hi)
    return GemmLayer(name, pool_weight(conv), lo, np.arange(1, hi - lo + 1, dtype=np.int64)[None, :],
                     np.zeros(1, bool), lo, 1, (0, hi - lo), bits, bits, name, (source,),
                     (conv.cg * conv.kernel[0] * conv.kernel[1],), output, conv, "max")


def _slice_steps(steps: tuple[FixedStep, ...], cols: slice) -> tuple[FixedStep, ...]:
    """One group's steps (per-channel biases sliced)."""
    return tuple(replace(s, bias=s.bias if np.ndim(s.bias) == 0 else np.asarray(s.bias)[cols]) for s in steps)


def gemm_layers(graph: Graph, max_thresholds: int | None = None) -> list[GemmLayer]:
    """The GEMM layers of ``graph`` in order (a grouped conv gives one per group); refuses (naming the node)
    anything the array does not run yet. ``max_thresholds``: see :func:`hwgen.arch.requant.is_thresholds`.

    Every layer but the last is requantized: by thresholds (one MultiThreshold) or by fixed-point stages (a run
    of casts, hwgen.arch.requant; a per-channel multiply in the run adds a diagonal layer). A requantizer reading
    stored codes without a GEMM before it (a residual's skip branch, hls4ml's pooling casts) runs after an
    identity GEMM."""
    bounds = value_bounds(graph)
    # a flatten of a (1, *dims) tensor to (1, K) is an address reinterpretation (MatMul weights reordered)
    nodes = [n for n in graph.nodes if n.op not in HOST_OPS and not _is_flatten(graph, n)]
    quantize = [n for n in graph.nodes if n.op == "Quantize"]
    if len(graph.outputs) != 1:
        raise HwgenError(f"the systolic array runs single-output models; this one has {len(graph.outputs)}")
    if not quantize:
        raise HwgenError("the model has no input quantizer")
    available = {quantize[0].outputs[0]}          # code tensors held in the activation scratchpad
    layers: list[GemmLayer] = []
    consumed: set[str] = set()                    # outputs of requantizer nodes already part of a layer

    def add_segments(segments: list[Segment], shape: tuple[int, ...]) -> None:
        for segment in segments:
            layers.append(_diagonal_layer(segment, shape))
        available.add(segments[-1].output)

    for position, node in enumerate(nodes):
        if node.outputs[0] in consumed:
            continue
        if node.op in REQUANT_OPS and _source(graph, node.inputs[0]) in available:
            # a requantizer of codes (e.g. a residual's skip branch): an identity 1×1 GEMM into the requant lanes
            chain = requant_chain(graph, node)
            consumed.update(n.outputs[0] for n in chain)
            if is_thresholds(chain, max_thresholds):
                layers.append(_identity_layer(graph, bounds, node))
                available.add(node.outputs[0])
            else:
                source = _source(graph, node.inputs[0])
                add_segments(fixed_segments(chain, bounds[source], source, mult_first=True),
                             graph.tensors[source].shape)
            continue
        if node.op == "MaxPool":
            source = _source(graph, node.inputs[0])
            if source not in available:
                raise HwgenError(f"node '{node.name}' (MaxPool): its input is not a requantized activation")
            layers.append(maxpool_layer(node.name, _pool_conv(node, graph.tensors[source].shape),
                                        *_span(bounds, source), source, node.outputs[0]))
            available.add(node.outputs[0])
            continue
        if node.op not in ("MatMul", "AddScaled", "Conv", "SumPool", "FixedMatMul", "FixedConv"):
            raise HwgenError(f"node '{node.name}' ({node.op}): the systolic array runs Conv, MatMul, pooling and "
                             "residual Add layers with threshold or fixed-point requantization; this op is not "
                             "supported on it yet")
        inputs = tuple(_source(graph, t) for t in node.inputs)
        for direct, tensor in zip(node.inputs, inputs):
            if tensor not in available:
                raise HwgenError(f"node '{node.name}' ({node.op}): its input is not a requantized activation")
        rest = nodes[position + 1:]
        chain = chain_after(graph, node.outputs[0])
        if not chain and (rest or node.op == "AddScaled"):
            culprit = next((n for n in rest if node.outputs[0] in n.inputs), node)
            raise HwgenError(f"node '{culprit.name}' ({culprit.op}): the systolic array needs a threshold or "
                             "fixed-point requantizer after every layer but the last MatMul")
        consumed.update(n.outputs[0] for n in chain)
        acc_lo, acc_hi = _span(bounds, node.outputs[0])
        offset = 0
        conv: Conv | None = None
        groups = 1
        product = {}
        if node.op in ("FixedMatMul", "FixedConv"):
            product = {"product_shift": int(node.attrs["product_shift"]), "product_rounding": node.attrs["rounding"]}
        if node.op in ("MatMul", "FixedMatMul"):
            weight = node.attrs["weight"].astype(np.int64)
            zx = int(node.attrs.get("x_zero_point", 0))
            in_lo, in_hi = _span(bounds, inputs[0])
            shape = graph.tensors[inputs[0]].shape
            images = {layer.output for layer in layers if layer.output in graph.tensors
                      and len(graph.tensors[layer.output].shape) == 4}
            if len(shape) == 4 and inputs[0] in images:   # over a flattened conv output: a whole-image conv
                c, h, w = shape[1:]
                weight = weight.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
                conv = Conv((c, h, w), (h, w), flat_out=True)
            elif len(graph.tensors[node.inputs[0]].shape) != 2:
                raise HwgenError(f"node '{node.name}' ({node.op}): input shape "
                                 f"{graph.tensors[node.inputs[0]].shape}; the systolic array takes 2-D (batch, "
                                 "features) inputs")
            else:
                shape = (0, int(np.prod(shape[1:])))      # a flattened model input: samples of K features
        elif node.op == "Conv":
            a = node.attrs
            if tuple(a["dilations"]) != (1, 1):
                raise HwgenError(f"node '{node.name}' (Conv): dilation {tuple(a['dilations'])}; the systolic array "
                                 "runs dilation 1")
            full = a["weight"].astype(np.int64)            # (M, C/g, KH, KW)
            groups = int(a["groups"])
            shape = graph.tensors[inputs[0]].shape
            zx = int(a["x_zero_point"])
            in_lo, in_hi = _span(bounds, inputs[0])
            conv = Conv(tuple(shape[1:]), tuple(full.shape[2:]), tuple(a["strides"]), tuple(a["pads"]), groups)
            weight = full.transpose(2, 3, 1, 0).reshape(-1, full.shape[0])     # (KH·KW·C/g, M), (ky, kx, c)
        elif node.op == "FixedConv":
            a = node.attrs
            if a.get("layout", "NHWC") != "NCHW":
                raise HwgenError(f"node '{node.name}' (FixedConv): a channels-last convolution whose input is not "
                                 "a channels-first image; the systolic array runs NCHW images")
            full = a["weight"].astype(np.int64)            # (KH, KW, C, M)
            shape = graph.tensors[inputs[0]].shape
            zx = 0
            in_lo, in_hi = _span(bounds, inputs[0])
            conv = Conv(tuple(shape[1:]), tuple(full.shape[:2]), tuple(a["strides"]), tuple(a["pads"]))
            weight = full.reshape(-1, full.shape[3])      # (KH·KW·C, M) in (ky, kx, c) order
        elif node.op == "SumPool":
            shape = graph.tensors[inputs[0]].shape
            zx = int(node.attrs["x_zero_point"])
            in_lo, in_hi = _span(bounds, inputs[0])
            conv = _pool_conv(node, shape)
            weight = pool_weight(conv)
        else:
            a = node.attrs
            if _signed_bits(-max(a["ka"], a["kb"]), max(a["ka"], a["kb"])) > 16:
                raise HwgenError(f"node '{node.name}' (Add): its inputs' scales need integer factors {a['ka']} and "
                                 f"{a['kb']} to be added exactly; give both branches the same (or power-of-two "
                                 "related) scale")
            width = graph.tensors[inputs[0]].shape[1]
            eye = np.eye(width, dtype=np.int64)
            weight, zx = np.vstack([a["ka"] * eye, a["kb"] * eye]), 0
            offset = a["ka"] * a["za"] + a["kb"] * a["zb"]            # acc computed without zero points
            acc_lo, acc_hi = acc_lo + offset, acc_hi + offset
            in_lo = min(_span(bounds, t)[0] for t in inputs)
            in_hi = max(_span(bounds, t)[1] for t in inputs)
        segments: list[Segment] = []
        if not chain:
            fields = {"thresholds": None, "negate": None, "base": 0, "step": 1, "requant": None,
                      "out_bits": _signed_bits(acc_lo, acc_hi)}
            output = node.outputs[0]
        elif is_thresholds(chain, max_thresholds):
            fields = _threshold_fields(chain[0], offset)
            output = chain[0].outputs[0]
        else:
            first, *segments = fixed_segments(chain, bounds[node.outputs[0]], node.outputs[0])
            fields = _segment_fields(first, offset)
            output = first.output
        available.add(output)
        n_group = weight.shape[1] // groups
        for g in range(groups):
            cols_g = slice(g * n_group, (g + 1) * n_group)
            group = dict(fields)
            for key in ("thresholds", "negate"):
                value = fields[key]
                group[key] = value if value is None or value.shape[0] == 1 else value[cols_g]
            if fields.get("steps") and groups > 1:
                group["steps"] = _slice_steps(fields["steps"], cols_g)
            layers.append(GemmLayer(
                node.name if groups == 1 else f"{node.name}#g{g}", weight[:, cols_g], zx, group.pop("thresholds"),
                group.pop("negate"), group.pop("base"), group.pop("step"), (acc_lo, acc_hi),
                _signed_bits(in_lo, in_hi), group.pop("out_bits"), group.pop("requant"), inputs,
                tuple(int(np.prod(graph.tensors[t].shape[1:])) if node.op in ("MatMul", "FixedMatMul") else
                      graph.tensors[t].shape[1] for t in node.inputs) if conv is None else
                (conv.cg * conv.kernel[0] * conv.kernel[1],), output,
                None if conv is None else replace(conv, group=g), "sum" if node.op == "SumPool" else None,
                **group, **product))
        if segments:
            add_segments(segments, graph.tensors[node.outputs[0]].shape)
    if not layers:
        raise HwgenError("the model has no GEMM layer to run on the systolic array")
    dequantized = _source(graph, graph.producer(graph.outputs[0]).inputs[0])
    if dequantized != layers[-1].output:
        raise HwgenError("the model's output is not the last layer's result")
    if layers[-1].requant is None and len(layers[-1].inputs) > 1:
        raise HwgenError(f"node '{layers[-1].name}': a residual Add needs a requantizer")
    for layer in layers:
        if layer.requant is None and layer.output != layers[-1].output:
            raise HwgenError(f"node '{layer.name}' (MatMul): only the last layer may skip requantization")
    return layers


def to_outputs(layer: GemmLayer, layers) -> bool:
    """Whether ``layer``'s results go to the output banks (``acc_bits`` wide, read back or streamed): the last
    layer's, unless thresholds requantize them (its accumulators, or the codes of its fixed-point stages)."""
    return layer.thresholds is None and layer.output == layers[-1].output


def regions(layers: list[GemmLayer] | tuple[GemmLayer, ...]) -> dict[str, int]:
    """Activation-scratchpad region of every code tensor: the lowest region free of every tensor still needed."""
    placed = {layers[0].inputs[0]: 0}
    for index, layer in enumerate(layers):
        if to_outputs(layer, layers) or layer.output in placed:
            continue                          # last results go to the output banks; groups share a region
        later = {t for other in layers[index + 1:] for t in other.inputs}
        busy = {placed[t] for t in set(layer.inputs) | later if t in placed}
        placed[layer.output] = next(r for r in range(len(placed) + 1) if r not in busy)
    return placed


@dataclass(frozen=True)
class Plan:
    """What the compiler decides for a model on an array shape before it writes memory images: every tensor's
    layout, every layer's feed, its rows per kernel position (``cgp``: ``cg``, or more on the weight-stationary
    array, :func:`ws_channel_rows`) and its weight rows per output-channel tile (``kp``: the features, padded to
    whole folds of R on the weight-stationary array)."""

    layouts: dict[str, Layout]
    feeds: tuple[Feed, ...]
    channel_rows: tuple[int, ...]
    kp: tuple[int, ...]
    cols: int
    placement: dict[str, int]            # code tensor → activation region (:func:`regions`)
    key: SameLayers = field(compare=False, repr=False)   # the layers planned: the key of their per-model facts

    @cached_property
    def stride(self) -> int:
        """Words per slot in every activation region: the widest tensor's."""
        return max(ceil(layout.stored / self.cols) for layout in self.layouts.values())

    @cached_property
    def slots(self) -> int:
        """Slots every region holds per sample: the largest tensor's."""
        return max(layout.slots for layout in self.layouts.values())

    @cached_property
    def pixels(self) -> int:
        """Output pixels per sample of the layer with the most (the weight-stationary array's M per sample)."""
        return max(feed.out_hw[0] * feed.out_hw[1] for feed in self.feeds)


def plan(layers, rows: int, cols: int, dataflow: str) -> Plan:
    """The :class:`Plan` of ``layers`` on an R×C array of ``dataflow`` (do not mutate: plans, and the layouts of
    plans, that do not depend on R are shared, :func:`_plan_any_rows`)."""
    key = SameLayers(layers)
    shared = _plan_any_rows(key, cols)
    if shared is None:
        return _new_plan(key, rows, cols, dataflow)
    if dataflow == "os":
        return shared
    return _ws_plan(key, shared.layouts, shared.feeds, rows, cols, shared)


def _new_plan(key: SameLayers, rows: int, cols: int, dataflow: str) -> Plan:
    layouts, feeds = _plan_layouts(key.layers, rows, cols, dataflow)
    if dataflow == "ws":
        return _ws_plan(key, layouts, feeds, rows, cols)
    return Plan(layouts, feeds, tuple(feed.cg for feed in feeds), tuple(feed.taps * feed.cg for feed in feeds), cols,
                _facts(key).regions, key)


def _ws_plan(key: SameLayers, layouts: dict[str, Layout], feeds: tuple[Feed, ...], rows: int, cols: int,
             shared: Plan | None = None) -> Plan:
    """The weight-stationary plan with these layouts and feeds: per layer its rows per kernel position
    (:func:`ws_channel_rows`) and K padded to whole folds of R. ``shared``: a plan with the same layouts, feeds
    and C, whose derived figures (they read nothing else) this one takes instead of computing them again."""
    cgp = tuple(ws_channel_rows(feed, layouts[layer.inputs[0]].pitch, rows, cols)
                for layer, feed in zip(key.layers, feeds))
    kp = tuple(ceil(feed.taps * c / rows) * rows for feed, c in zip(feeds, cgp))
    planned = Plan(layouts, feeds, cgp, kp, cols, _facts(key).regions, key)
    if shared is not None:
        for figure in ("stride", "slots", "pixels"):     # what their cached_property would store
            planned.__dict__[figure] = getattr(shared, figure)
    return planned


@lru_cache(maxsize=256)
def _plan_any_rows(key: SameLayers, cols: int) -> Plan | None:
    """When a model's layouts on C columns are the same for every R and dataflow (every tensor one slot per sample:
    :func:`_tensor_groups`' fixed layouts, dense models), its output-stationary plan, which is then the same for
    every R (the feeds are per C, and the OS rows per kernel position ``cg`` and K ``taps · cg`` read only them);
    else None. A weight-stationary plan shares its layouts, feeds and derived figures (:func:`_ws_plan`). One
    plan per model and C, not one per point of a sweep over R × C × dataflow."""
    if _tensor_groups(key, cols)[3] is None:
        return None
    return _new_plan(key, 1, cols, "os")


def weight_words(layers, kp, cols: int) -> int:
    """Words each weight bank needs for ``layers`` (``kp``: their padded K)."""
    return sum(ceil(layer.n / cols) * k for layer, k in zip(layers, kp))


def threshold_slots(layers, cols: int) -> int:
    """Slots each requant lane needs: one per group of C output channels of every layer with thresholds or
    fixed-point stages (their biases)."""
    return sum(ceil(layer.n / cols) for layer in layers if not layer.passthrough)


@dataclass(frozen=True)
class _Facts:
    """What the compiler reads of a model's layers on every configuration, computed once per model: the
    scratchpad regions, the widths and features the smallest configuration needs, and the largest figures
    :func:`compile_layers` checks against a configuration."""

    regions: dict[str, int]              # do not mutate (shared by every Plan of the model)
    a_bits: int
    w_bits: int
    search_bits: int
    max_pool: bool
    product_rounding: bool
    fixed_steps: int
    stage_value_bits: int
    in_bits: int
    acc_bits: int
    out_bits: int                        # of the layers writing the output banks (0: none)
    stages_encode: bool                  # every fixed-point stage fits the lanes' instruction fields


@lru_cache(maxsize=64)
def _facts(key: SameLayers) -> _Facts:
    layers = key.layers
    stored = [layer.in_bits for layer in layers] + [layer.out_bits for layer in layers
                                                     if not layer.passthrough and not to_outputs(layer, layers)]
    try:
        for layer in layers:
            layer.stage_fields
        encodes = True
    except ValueError:
        encodes = False
    return _Facts(
        regions(layers), max(stored) - 1, max(layer.weight_bits for layer in layers),
        max([layer.search_bits for layer in layers] + [1]), any(layer.pool == "max" for layer in layers),
        any(layer.product_shift for layer in layers), max(len(layer.steps) for layer in layers),
        max(layer.stage_value_bits for layer in layers), max(layer.in_bits for layer in layers),
        max(layer.acc_bits for layer in layers),
        max([layer.out_bits for layer in layers if to_outputs(layer, layers)] + [0]), encodes)


def default_config(layers: list[GemmLayer], rows: int = 8, cols: int = 8, dataflow: str = "os",
                   batch: int = 64, planned: Plan | None = None, **overrides) -> SystolicConfig:
    """The smallest configuration that runs ``layers`` on ``batch`` samples per run; ``overrides`` win.
    ``planned``: the layers' :func:`plan` on this array shape, if the caller has it."""
    planned = planned or plan(layers, rows, cols, dataflow)
    key = planned.key
    facts = _facts(key)
    n_tiles, slots = _column_facts(key, cols)
    words = planned.stride
    groups = ceil(batch * planned.slots / rows)
    last = layers[-1]
    out = planned.layouts[last.output]
    out_words = ceil(out.stored / cols)
    cfg = SystolicConfig(
        rows=rows, cols=cols, dataflow=dataflow, a_bits=max(1, facts.a_bits), w_bits=facts.w_bits,
        k_max=max(planned.kp), out_bits=facts.search_bits,
        act_depth=max(2, (max(planned.placement.values()) + 1) * groups * words),
        weight_depth=max(2, sum(map(mul, n_tiles, planned.kp))), slot_depth=max(2, slots),
        out_depth=max(2, ceil(batch * out.slots / rows) * out_words if to_outputs(last, layers) else 2),
        prog_depth=max(2, 2 * len(layers)), acc_depth=max(2, batch * planned.pixels),
        max_pool=facts.max_pool, product_rounding=facts.product_rounding, fixed_steps=facts.fixed_steps)
    # the lanes' fixed-point values are acc_bits + 2 wide: a larger k_max widens them where stages need it
    need = facts.stage_value_bits
    while need > cfg.fixed_bits and cfg.k_max < (1 << 16):
        cfg = replace(cfg, k_max=min(1 << 16, 2 * cfg.k_max))
    return replace(cfg, **overrides) if overrides else cfg


def split(offset: int, rows: int, stride: int) -> tuple[int, int]:
    """A slot offset as the walkers add it (walk.py): (whole groups of R slots in words, modulo 2^16; slots mod R)."""
    groups, residue = divmod(offset, rows)
    return (groups * stride) & 0xFFFF, residue


@dataclass(frozen=True)
class Program:
    """A compiled model for one configuration: memory images, instructions and where results land."""

    cfg: SystolicConfig
    layers: tuple[GemmLayer, ...]
    batch: int                                             # samples per run (capacity)
    region_words: int                                      # words per activation region
    stride: int                                            # words per slot (group of R slots: R·stride words)
    placement: dict[str, int]                              # code tensor → activation region
    plan: Plan                                             # layouts, feeds and padded K

    @cached_property
    def weights(self) -> list[tuple[int, int, int, int, int]]:
        """Load rows ``(target, bank, addr, lane, value)`` of the weight banks: every word, zeros and padding
        included (memories start undefined). Built on first use: the cycle model and the estimates never read
        them (a design-space sweep compiles thousands of points without their images)."""
        cols, plan = self.cfg.cols, self.plan
        rows: list[tuple[int, int, int, int, int]] = []
        w_base = 0
        for layer, k_pad, feed, cgp in zip(self.layers, plan.kp, plan.feeds, plan.channel_rows):
            weight = feed_weight(layer, feed, plan.layouts, cgp)
            n_tiles = ceil(layer.n / cols)
            padded = np.zeros((k_pad, n_tiles * cols), np.int64)
            padded[:weight.shape[0], :layer.n] = weight
            # word w_base + t·k_pad + k of bank j holds padded[k, t·cols + j]
            t, j, k = np.meshgrid(np.arange(n_tiles), np.arange(cols), np.arange(k_pad), indexing="ij")
            values = padded[k, t * cols + j]
            rows += zip([WEIGHTS] * values.size, j.ravel().tolist(), (w_base + t * k_pad + k).ravel().tolist(),
                        [0] * values.size, values.ravel().tolist())
            w_base += n_tiles * k_pad
        return rows

    @cached_property
    def thresholds(self) -> list[tuple[int, int, int, int, int]]:
        """Load rows of the requant lanes' memories (:func:`threshold_rows`), built on first use."""
        return threshold_rows(self.layers, self.cfg)

    @property
    def layouts(self) -> dict[str, Layout]:
        return self.plan.layouts

    def base(self, tensor: str) -> int:
        """First word of a code tensor's activation region."""
        return self.placement[tensor] * self.region_words

    @property
    def x_layout(self) -> Layout:
        return self.layouts[self.layers[0].inputs[0]]

    @property
    def y_layout(self) -> Layout:
        return self.layouts[self.layers[-1].output]

    @property
    def streams(self) -> bool:
        """Whether runs can stream their inputs and results (neither is an image: a convolution's input or output
        occupies several slots of its region and is preloaded and read back)."""
        return self.x_layout.slots <= 1 and self.y_layout.slots <= 1

    def segments(self, samples: int, stream: bool) -> list[tuple[int, int]]:
        """``(samples per chunk, chunks)`` of a run: one chunk of inputs preloaded by the host, or (``stream``)
        chunks of ``batch`` samples and a last partial one, streamed through ``s_axis``/``m_axis``."""
        if samples < 1 or (not stream and samples > self.batch):
            raise HwgenError(f"a run preloads 1 to {self.batch} samples (batch); got {samples} (stream them instead)")
        if not stream:
            return [(samples, 1)]
        for what, layout in (("inputs", self.x_layout), ("results", self.y_layout)):
            if layout.slots > 1:
                raise HwgenError(f"{what} that are images (a convolution's input or output) are preloaded and read "
                                 f"back, not streamed; run at most {self.batch} samples (batch) at a time")
        full, tail = divmod(samples, self.batch)
        return [(self.batch, full)] * (full > 0) + [(tail, 1)] * (tail > 0)

    def instructions(self, samples: int, stream: bool = False) -> list[dict]:
        """The program for a run of ``samples`` samples (see :meth:`segments`): every segment is the layers'
        instructions for its chunk size, its last layer looping back ``chunks`` times."""
        program: list[dict] = []
        parts = self.segments(samples, stream)
        for index, (chunk, repeat) in enumerate(parts):
            body = self._layer_instructions(chunk)
            body[0]["stream_in"] = int(stream)
            body[-1].update(stream_out=int(stream), last_layer=1, repeat=repeat, loop_to=len(program),
                            end=int(index == len(parts) - 1))
            program += body
        return program

    def _walk_fields(self, index: int, samples: int) -> dict:
        """Layer ``index``'s implicit-im2col geometry (see controller.py, ws_controller.py and walk.py): the kernel
        walk, the pixel walk over its input and the drain's walk over its output, and the rows it computes."""
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        layer, feed = self.layers[index], self.plan.feeds[index]
        source, out = self.layouts[layer.inputs[0]], self.layouts[layer.output]
        pitch = source.pitch
        kh, kw = feed.kernel
        pt, pl = feed.pads[:2]
        sy, sx = feed.strides
        oh, ow = feed.out_hw
        lat_h, lat_w = feed.lattice
        out_stride = ceil(out.stored / cols) if to_outputs(layer, self.layers) else self.stride
        c0_word = feed.c_lo // cols
        group_word = 0 if layer.conv is None else int(out.position(layer.conv.group * layer.n)) // cols

        def pair(name: str, offset: int, stride: int = self.stride) -> dict:
            words, residue = split(offset, rows, stride)
            return {f"{name}_words": words, f"{name}_r": residue}

        if feed.add:            # the second kernel position is the second input's region, no coordinate offset
            taps = {**pair("d0", 0), "dx_words": (self.base(layer.inputs[1]) - self.base(layer.inputs[0])) & 0xFFFF,
                    "dx_r": 0, **pair("dy", 0), "x0": 0, "y0": 0, "sx": 0, "sy": 0}
        else:
            taps = {**pair("d0", -pt * pitch - pl), **pair("dx", 1), **pair("dy", pitch - (kw - 1)), "x0": -pl,
                    "y0": -pt, "sx": 1, "sy": 1}
        if cfg.dataflow == "os":
            walk_w, walk_s, last = os_walk(feed, source, rows)
            m_rows = (samples - 1) * walk_s + last + 1
            pixels = {"walk_w": walk_w, "walk_s": walk_s, "px_sx": 1, "px_sy": 1, **pair("in_x", 1),
                      **pair("in_row", pitch), **pair("in_sample", source.slots), "lat_sx": sx, "lat_sy": sy,
                      "lat_w": lat_w, "lat_h": lat_h}
        else:
            m_rows = samples * oh * ow
            pixels = {"walk_w": ow, "walk_s": oh * ow, "px_sx": sx, "px_sy": sy, **pair("in_x", sx),
                      **pair("in_row", sy * pitch), **pair("in_sample", source.slots), "lat_sx": 1, "lat_sy": 1,
                      "lat_w": ow - 1, "lat_h": oh - 1}
        return {"samples": m_rows, "kh": kh, "kw": kw, "cg": feed.cg, "cgp": self.plan.channel_rows[index],
                "c0_word": c0_word, "c0_lane": feed.c_lo % cols, "c0_word_r": c0_word % rows, **taps,
                "lim_x": source.w - 1, "lim_y": source.h - 1, **pixels,
                **pair("out_x", 1, out_stride), **pair("out_row", out.pitch, out_stride),
                **pair("out_sample", out.slots, out_stride), "out_word_r": group_word % rows,
                "pool_max": int(layer.pool == "max")}

    def _layer_instructions(self, samples: int, fixed: bool = True) -> list[dict]:
        """One instruction per layer for a run of ``samples``; ``fixed=False`` leaves out the fixed-point stage
        fields (the cycle model does not read them)."""
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        result, slot_base, w_base = [], 0, 0
        for index, layer in enumerate(self.layers):
            kp = self.plan.kp[index]
            out = self.layouts[layer.output]
            n_tiles = ceil(layer.n / cols)
            passthrough = to_outputs(layer, self.layers)          # results to the output banks
            walk = self._walk_fields(index, samples)
            m_rows = walk["samples"]
            group_word = 0 if layer.conv is None else int(out.position(layer.conv.group * layer.n)) // cols
            ws = cfg.dataflow == "ws"
            instr = {
                "m_tiles": ceil(m_rows / rows), "n_tiles": n_tiles, "kp": kp,
                "period": max(m_rows, ws_min_period(rows, cols)) if ws else self.period(kp),
                "k_tiles": kp // rows if ws else 1, "in_base": self.base(layer.inputs[0]), "kp_words": self.stride,
                "out_base": group_word + (0 if passthrough else self.base(layer.output)),
                "out_words": ceil(out.stored / cols) if passthrough else self.stride, "w_base": w_base,
                "slot_base": slot_base, "zx": layer.zx,
                "base": layer.base, "step": layer.step, "passthrough": int(passthrough), "last_layer": 0,
                "stream_in": 0, "stream_out": 0, "x_words": ceil(self.x_layout.stored / cols),
                "y_words": ceil(self.y_layout.stored / cols), "repeat": 1, "loop_to": 0, "end": 0, **walk,
                **(self._fixed_fields(layer) if fixed else {})}
            result.append(instr)
            w_base += n_tiles * kp
            slot_base += 0 if layer.passthrough else n_tiles
        return result

    def _fixed_fields(self, layer: GemmLayer) -> dict:
        """Product rounding, the lanes' mode and every fixed-point stage's fields (unused: the identity)."""
        cfg = self.cfg
        fields = {"product_shift": layer.product_shift, "product_rounding": ROUNDING.index(layer.product_rounding),
                  "fixed": int(bool(layer.steps))}
        stages = layer.stage_fields
        for k in range(MAX_FIXED_STEPS):
            values = stages[k] if k < len(stages) else identity_fields(cfg.fixed_bits)
            fields.update({f"s{k}_{name}": value for name, value in values.items()})
        return fields

    @property
    def x_words(self) -> int:
        """Scratchpad words (input beats) per sample: its slots × words per slot."""
        return self.x_layout.slots * ceil(self.x_layout.stored / self.cfg.cols)

    @property
    def y_words(self) -> int:
        """Scratchpad words (output beats) per sample."""
        return self.y_layout.slots * ceil(self.y_layout.stored / self.cfg.cols)

    def period(self, kp: int) -> int:
        """OS cycles between tile starts: the feed's kp reads, or the drain of the tile before (see controller)."""
        return max(kp, 2 * self.cfg.rows + self.cfg.cols - 1)

    @cached_property
    def _cycles(self) -> dict[tuple[int, bool], int]:
        return {}

    def predict_cycles(self, samples: int, stream: bool = False) -> int:
        """Exact start → done cycles of a run of ``samples`` samples (equals the RTL's cycle counter); the
        derivations are in controller.py (os), ws_controller.py (ws) and io.py (streams, every input always
        valid and the output always ready). Memoized per run shape."""
        key = (samples, bool(stream))
        if key not in self._cycles:
            self._cycles[key] = self._predict_cycles(samples, stream)
        return self._cycles[key]

    @cached_property
    def _cycle_terms(self) -> tuple[tuple[int, ...], ...]:
        """Per layer, what the cycle model reads of its instructions (:meth:`_layer_instructions`) that does not
        depend on the samples: OS ``(walk_s, last + 1, n_tiles, period, kp)``, the rows computed for ``s`` samples
        being ``(s − 1)·walk_s + last + 1`` (:func:`os_walk`); WS ``(output pixels, n_tiles · k_tiles)``, rows
        ``s · pixels``."""
        cfg, planned = self.cfg, self.plan
        rows, cols, layouts = cfg.rows, cfg.cols, planned.layouts
        if cfg.dataflow == "ws":
            return tuple((feed.out_hw[0] * feed.out_hw[1], ceil(layer.n / cols) * (kp // rows))
                         for layer, kp, feed in zip(self.layers, planned.kp, planned.feeds))
        drain = 2 * rows + cols - 1                        # period(kp) = max(kp, drain)
        terms = []
        for layer, kp, feed in zip(self.layers, planned.kp, planned.feeds):
            _, walk_s, last = os_walk(feed, layouts[layer.inputs[0]], rows)
            terms.append((walk_s, last + 1, ceil(layer.n / cols), max(kp, drain), kp))
        return tuple(terms)

    @cached_property
    def _cycle_constants(self) -> tuple[int, int]:
        """What the cycle model adds per layer whatever the samples (OS ``4R + C + 1 + pipeline``, WS ``2R + C +
        pipeline + 1``; pipeline: the feed from controller to array, the PEs' stages, the lanes) and the WS array's
        shortest fold (:func:`ws_min_period`), in cycles: read off the configuration once per program, not once per
        prediction (an analytic point asks for one sample and for a batch)."""
        cfg = self.cfg
        pipeline = cfg.feed_latency + cfg.pe_stages + cfg.lane_latency
        fixed = (2 * cfg.rows + 1 if cfg.dataflow == "ws" else 4 * cfg.rows + 1) + cfg.cols + pipeline
        return fixed, ws_min_period(cfg.rows, cfg.cols)

    def _predict_cycles(self, samples: int, stream: bool) -> int:
        """The cycle formulas of the controllers over the instructions of every chunk (:data:`~hwgen.design.
        CYCLE_FORMULAS`), from :attr:`_cycle_terms` and :attr:`_cycle_constants` (equal to reading ``m_tiles``,
        ``n_tiles``, ``k_tiles``, ``kp``, ``period`` and ``samples`` off :meth:`_layer_instructions`, without
        building them)."""
        rows = self.cfg.rows
        ws = self.cfg.dataflow == "ws"
        fixed, min_period = self._cycle_constants
        total = 0
        for chunk, repeat in self.segments(samples, stream):
            cycles = chunk * (self.x_words + self.y_words) + 7 if stream else 0
            if ws:                  # R + (folds − 1)·period + samples + R + C + pipeline + 1 per layer
                for pixels, folds in self._cycle_terms:
                    m_rows = chunk * pixels
                    cycles += (folds - 1) * max(m_rows, min_period) + m_rows + fixed
            else:                   # (tiles − 1)·period + kp + 4R + C + 1 + pipeline per layer
                for walk_s, first, n_tiles, period, kp in self._cycle_terms:
                    tiles = ceil(((chunk - 1) * walk_s + first) / rows) * n_tiles
                    cycles += (tiles - 1) * period + kp + fixed
            total += repeat * cycles
        return total

    def program_rows(self, samples: int, stream: bool = False) -> list[tuple[int, int, int, int, int]]:
        """Load rows writing the program of :meth:`instructions`."""
        program = self.instructions(samples, stream)
        if len(program) > self.cfg.prog_depth:
            raise HwgenError(f"the program has {len(program)} instructions, the configuration has "
                             f"prog_depth={self.cfg.prog_depth}")
        rows = []
        for address, instr in enumerate(program):
            word = pack_instruction(instr)
            for chunk in range(INSTRUCTION_CHUNKS):
                rows.append((PROGRAM, 0, address, chunk, (word >> (32 * chunk)) & 0xFFFFFFFF))
        return rows

    def memory_init(self, samples: int) -> dict:
        """Initial contents of program (for ``samples`` per run), weight and threshold memories (ROM-style)."""
        cfg = self.cfg
        weights = [[0] * cfg.weight_depth for _ in range(cfg.cols)]
        for _, bank, addr, _, value in self.weights:
            weights[bank][addr] = value & ((1 << cfg.w_bits) - 1)
        thresholds = [[[0] * (cfg.slot_depth << b) for b in range(cfg.search_stages)] for _ in range(cfg.cols)]
        biases = [[[0] * cfg.slot_depth for _ in range(cfg.fixed_steps)] for _ in range(cfg.cols)]
        for target, lane, addr, stage, value in self.thresholds:
            if target == BIASES:
                bits = cfg.fixed_bits
                value &= (1 << bits) - 1
                biases[lane][stage][addr] = value - (1 << bits) if value >> (bits - 1) else value
            else:
                thresholds[lane][stage][addr] = value
        program = [0] * cfg.prog_depth
        for _, _, addr, chunk, value in self.program_rows(samples):
            program[addr] |= value << (32 * chunk)
        return {"program": program, "weights": weights, "thresholds": thresholds, "biases": biases}

    def _places(self, layout: Layout, samples: int, base: int, stride: int) -> tuple:
        """Bank, word and lane of every value of a tensor, in the golden model's (n, c, y, x) order."""
        cfg = self.cfg
        n, c, y, x = np.meshgrid(np.arange(samples), np.arange(layout.channels), np.arange(layout.h),
                                 np.arange(layout.w), indexing="ij")
        slot, pos = layout.slot(n, y, x).ravel(), layout.position(c).ravel()
        word = pos // cfg.cols
        bank = (slot + word * (cfg.dataflow == "ws")) % cfg.rows
        return bank, base + (slot // cfg.rows) * stride + word, pos % cfg.cols

    def input_rows(self, codes: np.ndarray) -> list[tuple[int, int, int, int, int]]:
        """Load rows placing input codes (samples × features, features in (C, H, W) order for an image) in the
        first activation region: exactly one row per code, no padding and no im2col copy."""
        banks, addrs, lanes = self._places(self.x_layout, len(codes), self.base(self.layers[0].inputs[0]),
                                           self.stride)
        return list(zip([ACTIVATIONS] * codes.size, banks.tolist(), addrs.tolist(), lanes.tolist(),
                        codes.astype(np.int64).ravel().tolist()))

    def output_reads(self, samples: int) -> list[tuple[int, int, int, int]]:
        """Read requests for the last layer's results, in the golden model's order (sample, channel, y, x)."""
        last = self.layers[-1]
        layout = self.y_layout
        passthrough = last.thresholds is None
        stride = ceil(layout.stored / self.cfg.cols) if passthrough else self.stride
        banks, addrs, lanes = self._places(layout, samples, 0 if passthrough else self.base(last.output), stride)
        return list(zip([OUTPUTS if passthrough else ACTIVATIONS] * banks.size, banks.tolist(), addrs.tolist(),
                        lanes.tolist()))

    def input_beats(self, codes: np.ndarray) -> list[int]:
        """``s_axis`` beats of a streamed run: per sample its words of ``C`` codes (zero-padded)."""
        cfg = self.cfg
        layout = self.x_layout
        words = ceil(layout.stored / cfg.cols)
        padded = np.zeros((len(codes), words * cfg.cols), np.int64)
        padded[:, :layout.channels] = codes
        return pack_lanes(padded.reshape(-1, cfg.cols), cfg.store_bits)

    def output_codes(self, beats: list[int], samples: int) -> np.ndarray:
        """The last layer's results (samples × N) from the ``m_axis`` beats of a streamed run."""
        cfg = self.cfg
        values = unpack_lanes(beats, cfg.cols, cfg.acc_bits, signed=True)
        return values.reshape(samples, self.y_words * cfg.cols)[:, :self.layers[-1].n]


def products(x: np.ndarray, layer: GemmLayer) -> np.ndarray:
    """``x @ layer.weight``, every product rounded first when the layer rounds products."""
    if layer.product_shift:
        return product_matmul(x, layer.weight, layer.product_shift, layer.product_rounding)
    return x @ layer.weight


def run_layers(layers: list[GemmLayer] | tuple[GemmLayer, ...], codes: np.ndarray) -> np.ndarray:
    """What the array computes, in numpy: the reference for the hardware's own tests. ``codes``: samples ×
    features ((C, H, W) flattened for an image); returns the last layer's results in the same flattened order."""
    from ...golden import multithreshold
    from ...kernels import windows

    first = layers[0]
    codes = codes.astype(np.int64)
    if first.conv is not None:
        codes = codes.reshape(len(codes), *first.conv.in_shape)
    env = {first.inputs[0]: codes}
    samples = len(codes)
    for layer in layers:
        conv = layer.conv
        if conv is None:
            if env[layer.inputs[0]].ndim == 4:        # a residual Add of images: per pixel, over both inputs' channels
                x = np.concatenate([np.moveaxis(env[t], 1, -1) for t in layer.inputs], axis=-1)
                acc = np.moveaxis(products(x - layer.zx, layer), -1, 1)
            else:
                x = np.concatenate([env[t].reshape(samples, -1) for t in layer.inputs], axis=1)
                acc = products(x - layer.zx, layer)
            channels = slice(0, layer.n)
        else:
            x = env[layer.inputs[0]].reshape(samples, *conv.in_shape)
            x = x[:, conv.group * conv.cg:(conv.group + 1) * conv.cg] - layer.zx
            win = windows(x, conv.kernel, conv.strides, conv.pads, (1, 1), False, 0)     # N C OH OW KH KW
            patches = win.transpose(0, 2, 3, 4, 5, 1).reshape(*win.shape[:1], *win.shape[2:4], -1)
            if layer.pool == "max":                  # the PEs' max mode: max over k of (x - zx)·w, from 0
                acc = np.max(patches[..., :, None] * layer.weight, axis=-2, initial=0).transpose(0, 3, 1, 2)
            else:
                acc = products(patches, layer).transpose(0, 3, 1, 2)                   # N, n, OH, OW
            channels = slice(conv.group * layer.n, (conv.group + 1) * layer.n)
        if layer.steps:
            result = apply_steps(layer.steps, acc, 1)
        elif layer.thresholds is None:
            result = acc
        else:
            signed = np.moveaxis(acc, 1, -1)
            signed = np.where(np.broadcast_to(layer.negate, (layer.n,)), -signed, signed)
            result = np.moveaxis(multithreshold(signed, layer.thresholds, np.zeros(layer.thresholds.shape[0], bool),
                                                layer.base, layer.step, -1 if layer.thresholds.shape[0] > 1
                                                else None), -1, 1)
        if conv is None or conv.groups == 1:
            env[layer.output] = result
        else:
            if layer.output not in env:
                env[layer.output] = np.zeros((samples, conv.groups * layer.n, *result.shape[2:]), np.int64)
            env[layer.output][:, channels] = result
    return env[layers[-1].output].reshape(samples, -1)


def pack_instruction(fields: dict) -> int:
    """An instruction as the integer the program memory holds (StructLayout order, first field at bit 0)."""
    word = 0
    # a GEMM instruction may leave the im2col and fixed-point fields out (0)
    optional = {name for name, _ in CONV_FIELDS} | {name for name, _ in FIXED_FIELDS}
    for name, entry in INSTRUCTION:
        width = entry.shape.width
        value = int(fields[name] if name in fields or name not in optional else 0)
        if entry.shape.signed:
            if not -(1 << (width - 1)) <= value < (1 << (width - 1)):
                raise HwgenError(f"instruction field {name}={value} does not fit {width} signed bits")
        elif not 0 <= value < (1 << width):
            raise HwgenError(f"instruction field {name}={value} does not fit {width} bits")
        word |= (value & ((1 << width) - 1)) << entry.offset
    return word


def threshold_rows(layers, cfg: SystolicConfig) -> list[tuple[int, int, int, int, int]]:
    """Load rows of the requant lanes' memories: every thresholded layer's thresholds (heap order over the
    search stages, negate flag in stage 0) and every fixed-point layer's biases (one per stage and channel;
    zero for the identity stages after its own), one slot per group of C channels in layer order."""
    cols, stages, tbits = cfg.cols, cfg.search_stages, cfg.threshold_bits
    infinity = (1 << (tbits - 1)) - 1
    rows: list[tuple[int, int, int, int, int]] = []
    slot_base = 0
    for layer in layers:
        if layer.passthrough:
            continue
        n_tiles = ceil(layer.n / cols)
        if layer.steps:
            for k in range(cfg.fixed_steps):
                bias = np.broadcast_to(layer.steps[k].bias if k < len(layer.steps) else 0, (layer.n,))
                rows += [(BIASES, n % cols, slot_base + n // cols, k, int(bias[n]) & 0xFFFFFFFF)
                         for n in range(layer.n)]
            slot_base += n_tiles
            continue
        table = np.broadcast_to(layer.thresholds, (layer.n, layer.thresholds.shape[1]))
        negate = np.broadcast_to(layer.negate, (layer.n,))
        full = np.full((layer.n, (1 << stages) - 1), infinity, np.int64)
        full[:, :table.shape[1]] = np.clip(table, -infinity, infinity)
        for n in range(layer.n):
            lane, slot = n % cols, slot_base + n // cols
            for b in range(stages):
                for prefix in range(1 << b):
                    index = (prefix << (stages - b)) | (1 << (stages - b - 1))
                    value = int(full[n, index - 1]) & ((1 << tbits) - 1)
                    if b == 0 and negate[n]:
                        value |= 1 << tbits
                    rows.append((THRESHOLDS, lane, (slot << b) | prefix, b, value))
        slot_base += n_tiles
    return rows


def compile_layers(layers: list[GemmLayer], cfg: SystolicConfig, planned: Plan | None = None) -> Program:
    """``layers`` compiled for ``cfg`` (instructions and placement; the memory images are built on first use);
    refuses models that do not fit, naming what and by how much. ``planned``: the layers' :func:`plan` on
    ``cfg``'s array shape and dataflow, if the caller has it."""
    cols, rows = cfg.cols, cfg.rows
    planned = planned or plan(layers, rows, cols, cfg.dataflow)
    kp = planned.kp
    if max(kp) > cfg.k_max:
        raise HwgenError(f"layer K of {max(kp)} exceeds the array's k_max={cfg.k_max}")
    key = planned.key
    n_tiles, slots = _column_facts(key, cols)
    need_weights = sum(map(mul, n_tiles, kp))                   # weight_words
    if need_weights > cfg.weight_depth:
        raise HwgenError(f"weights need {need_weights} words per bank, the configuration has "
                         f"weight_depth={cfg.weight_depth}")
    if slots > cfg.slot_depth:
        raise HwgenError(f"thresholds need {slots} slots per lane, the configuration has slot_depth={cfg.slot_depth}")
    if len(layers) > cfg.prog_depth:
        raise HwgenError(f"{len(layers)} layers exceed prog_depth={cfg.prog_depth}")
    facts = _facts(key)
    fits = ((cfg.max_pool or not facts.max_pool) and facts.in_bits <= cfg.store_bits and facts.w_bits <= cfg.w_bits
            and facts.search_bits <= cfg.search_stages and facts.acc_bits <= cfg.acc_bits
            and (cfg.product_rounding or not facts.product_rounding) and facts.stages_encode
            and facts.fixed_steps <= cfg.fixed_steps and facts.stage_value_bits <= cfg.fixed_bits
            and facts.out_bits <= cfg.acc_bits)
    for layer in () if fits else layers:        # the layer-by-layer checks name the first layer that does not fit
        if layer.pool == "max" and not cfg.max_pool:
            raise HwgenError(f"node '{layer.name}': MaxPool needs PEs with a max mode; the configuration has "
                             "max_pool=False")
        if layer.in_bits > cfg.store_bits:
            raise HwgenError(f"node '{layer.name}': input codes need {layer.in_bits} bits, the array stores "
                             f"{cfg.store_bits} (a_bits={cfg.a_bits})")
        w_need = layer.weight_bits
        if w_need > cfg.w_bits:
            raise HwgenError(f"node '{layer.name}': weights need {w_need} bits, the array has w_bits={cfg.w_bits}")
        if layer.search_bits > cfg.search_stages:
            raise HwgenError(f"node '{layer.requant}': {layer.search_bits}-bit requantizer, the array's lanes "
                             f"search {cfg.search_stages} bits (out_bits)")
        if layer.acc_bits > cfg.acc_bits:
            raise HwgenError(f"node '{layer.name}': accumulator needs {layer.acc_bits} bits, the "
                             f"array has {cfg.acc_bits}")
        if layer.product_shift and not cfg.product_rounding:
            raise HwgenError(f"node '{layer.name}': its products are rounded (hls4ml accumulator type), the array "
                             "has no product rounding (product_rounding=1)")
        try:
            layer.stage_fields
        except ValueError as exc:
            raise HwgenError(f"node '{layer.requant}': a fixed-point stage does not fit the lanes ({exc})") from None
        if len(layer.steps) > cfg.fixed_steps:
            raise HwgenError(f"node '{layer.requant}': {len(layer.steps)} fixed-point stages, the array's lanes "
                             f"have fixed_steps={cfg.fixed_steps}")
        if layer.stage_value_bits > cfg.fixed_bits:
            raise HwgenError(f"node '{layer.requant}': fixed-point stage values need {layer.stage_value_bits} bits, "
                             f"the lanes hold {cfg.fixed_bits} (acc_bits + 2; raise k_max or a_bits)")
        if to_outputs(layer, layers) and layer.out_bits > cfg.acc_bits:
            raise HwgenError(f"node '{layer.requant}': output codes need {layer.out_bits} bits, the output banks "
                             f"hold {cfg.acc_bits}")

    stride = planned.stride
    per_sample = planned.slots
    placement = planned.placement
    count = max(placement.values()) + 1
    batch = rows * (cfg.act_depth // count // stride) // per_sample
    if cfg.dataflow == "ws":
        batch = min(batch, cfg.acc_depth // planned.pixels)
    if batch < 1:
        raise HwgenError(f"act_depth={cfg.act_depth} cannot hold {count} regions of one sample ({per_sample} "
                         f"slots of {stride} words)" if cfg.dataflow == "os" or cfg.acc_depth >= planned.pixels
                         else f"acc_depth={cfg.acc_depth} cannot hold one sample's {planned.pixels} output pixels")
    last = layers[-1]
    if last.thresholds is None:
        out = planned.layouts[last.output]
        out_words = ceil(out.stored / cols)
        batch = min(batch, rows * (cfg.out_depth // out_words) // out.slots)
        if batch < 1:
            raise HwgenError(f"out_depth={cfg.out_depth} cannot hold one sample's results ({out.slots} slots of "
                             f"{out_words} words)")
    return Program(cfg, tuple(layers), batch, cfg.act_depth // count, stride, placement, planned)
