"""Configuration of the dataflow generator: the hardware STRUCTURE only (frozen, hashable, keys the build cache).

A :class:`DataflowConfig` is a chain of :class:`LayerConfig`: per layer an optional sliding-window generator
(swg.py: a convolution's or pooling's windows out of a pixel stream) and one MVAU (with its thresholds or
fixed-point stages) or, for depthwise convolutions and pooling, its vector-vector form (``depthwise``). Weights, thresholds and zero points are data written through the ``load`` port at run time, so they
are not part of the configuration: one Verilator build serves every weight set of the same structure.

Shapes follow FINN: a layer multiplies an ``MW``-long input vector by an ``MW × MH`` matrix; ``SIMD`` input lanes
and ``PE`` output channels are computed per cycle, so one vector takes ``SF · NF`` cycles with ``SF = MW / SIMD``
(synapse fold) and ``NF = MH / PE`` (neuron fold).

Widths come from worst-case bounds of the data types (never from the weights at hand):
``|code − zero point| ≤ hi − lo`` of the input type (the zero point is a code of that type), ``|w| ≤ 2^(wbits−1)``,
so ``|acc| ≤ MW · (hi − lo) · 2^(wbits−1)`` (``MW`` for bipolar XNOR layers) and the accumulator cannot overflow.

Images stream pixel by pixel, channels innermost (NHWC): a layer with ``vectors`` > 1 takes (or, through its
sliding-window generator, makes) one input vector per output pixel and emits ``MH`` codes per pixel, so the next
layer sees the output image in the same order. A depthwise layer (FINN's VVAU) computes ``MH`` channels
independently over ``MW`` window taps: ``PE`` channels per cycle, one tap per step, every step taking a fresh
input beat of ``PE`` channels (the generator emits depthwise windows channel group by channel group).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import lcm

import numpy as np
from amaranth import Shape, signed, unsigned

from ...compat import cached_property, lazy_module
from ...ir.fixed import ROUNDING
from ...kernels import pool_geometry
from ...ir.types import int_range
from ..fixed import FixedStage

INDEX_BITS = 22          # load rows address memory elements by Cat(lane[6], addr[16])
MAX_LAYERS = 64          # load rows name the layer in the 6-bit bank field


def bits_for(count: int) -> int:
    """Index bits for ``count`` entries (at least 1: no zero-width wires)."""
    return max(1, (count - 1).bit_length())


def _check_range(field: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{field} must be an integer in {lo}..{hi}, got {value!r}")


@dataclass(frozen=True)
class CodeType:
    """The integer type of the codes on a stream: ``bits`` wide, two's complement if ``signed``; ``bipolar`` codes
    are -1/+1 held in one bit (1 ↔ +1), as in FINN's BIPOLAR."""

    bits: int
    signed: bool = False
    bipolar: bool = False

    def __post_init__(self) -> None:
        _check_range("bits", self.bits, 1, 48)
        if self.bipolar and (self.bits != 1 or self.signed):
            raise ValueError(f"a bipolar code type has bits=1 and signed=False, got bits={self.bits}, "
                             f"signed={self.signed}")

    @classmethod
    def of_range(cls, lo: int, hi: int) -> CodeType:
        """The narrowest type holding every integer in ``[lo, hi]``."""
        dtype = int_range(int(lo), int(hi))
        return cls(dtype.bits, dtype.signed)

    @property
    def lo(self) -> int:
        return -1 if self.bipolar else -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return 1 if self.bipolar else (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def shape(self) -> Shape:
        """How a code is stored on streams and in memories."""
        return signed(self.bits) if self.signed else unsigned(self.bits)

    @property
    def value_shape(self) -> Shape:
        """The shape of the value a code stands for (bipolar codes decode to signed(2))."""
        return signed(2) if self.bipolar else self.shape

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Codes → raw ``bits``-wide field values (int64, non-negative)."""
        values = np.asarray(values, np.int64)
        if values.size and (values.min() < self.lo or values.max() > self.hi or
                            (self.bipolar and np.any(values == 0))):
            raise ValueError(f"values outside the {self} range [{self.lo}, {self.hi}]")
        raw = (values > 0) if self.bipolar else values
        return raw.astype(np.int64) & ((1 << self.bits) - 1)

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Raw field values → codes."""
        raw = np.asarray(raw, np.int64) & ((1 << self.bits) - 1)
        if self.bipolar:
            return 2 * raw - 1
        if self.signed:
            return np.where(raw >> (self.bits - 1) != 0, raw - (1 << self.bits), raw)
        return raw

    def __str__(self) -> str:
        return "BIPOLAR" if self.bipolar else f"{'INT' if self.signed else 'UINT'}{self.bits}"


@dataclass(frozen=True)
class Window:
    """A sliding window over a ``channels × height × width`` image streamed pixel by pixel (NHWC): ``kernel``,
    ``strides``, ``pads`` (top, left, bottom, right; padded positions read as the layer's zero point)."""

    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width"):
            _check_range(name, getattr(self, name), 1, 1 << 16)
        for name, values, lo in (("kernel", self.kernel, 1), ("strides", self.strides, 1), ("pads", self.pads, 0)):
            if not isinstance(values, tuple) or len(values) != (4 if name == "pads" else 2):
                raise ValueError(f"{name} must be a tuple of {4 if name == 'pads' else 2} integers, got {values!r}")
            for value in values:
                _check_range(name, value, lo, 1 << 12)
        if any(size + self.pads[a] + self.pads[a + 2] < self.kernel[a]
               for a, size in enumerate((self.height, self.width))):
            raise ValueError(f"the {self.kernel} window does not fit the padded {self.height}×{self.width} image")

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def out_hw(self) -> tuple[int, int]:
        size = (self.height, self.width)
        return tuple(pool_geometry(size[a], self.kernel[a], self.strides[a], self.pads[a], self.pads[a + 2], 1,
                                   False)[0] for a in (0, 1))

    @property
    def pixels(self) -> int:
        """Output pixels (windows) per image."""
        return self.out_hw[0] * self.out_hw[1]

    @property
    def padded(self) -> bool:
        return any(self.pads)

    @property
    def buffer_rows(self) -> int:
        """Image rows the line buffer holds: a window's rows plus the next stride's (written while the window's
        are read), and enough that during the last output row the next image's first windows' rows can be written
        (no stall between images); at most two images."""
        kh, sh, pt = self.kernel[0], self.strides[0], self.pads[0]
        last_low = min(max(0, (self.out_hw[0] - 1) * sh - pt), self.height)
        return min(2 * self.height, max(kh + sh, self.height + kh - pt - last_low))


@dataclass(frozen=True)
class LayerFold:
    """Folding of one layer: ``pe`` output channels × ``simd`` input lanes per cycle."""

    pe: int = 1
    simd: int = 1

    def __post_init__(self) -> None:
        _check_range("pe", self.pe, 1, 1 << 16)
        _check_range("simd", self.simd, 1, 1 << 16)


@dataclass(frozen=True)
class LayerConfig:
    """One layer's hardware: an MVAU (``mw`` × ``mh``, folded by ``pe``/``simd``) and, if ``thresholds > 0``, a
    multi-threshold unit emitting ``base + step · #{j : ±acc ≥ T[c, j]}`` (``per_channel`` threshold rows or one
    shared row), or if ``stages``, fixed-point stages (hwgen.arch.fixed: bias per channel, shift, rounding,
    overflow; an hls4ml layer's casts). Neither passes the accumulator through (a last layer dequantized on the
    host). ``bipolar`` layers have ±1 weights and ±1 inputs with zero point 0 and use XNOR-popcount.
    ``product_shift > 0`` rounds every product by ``2^product_shift`` (``product_rounding``) before the sum
    (hls4ml's products assigned to a coarser accumulator type).

    ``vectors`` input vectors per inference (the output pixels of a convolution), made by a sliding-window
    generator when ``window`` is set. ``depthwise``: channel-wise over ``mw`` taps (``simd`` = 1, ``pe`` channels
    per input beat); ``pool`` ``"max"`` (emits the largest code, no thresholds) or ``"sum"`` (sums the codes minus
    the zero point, then thresholds) is a depthwise layer without weights. ``add`` (a residual Add): a depthwise
    layer over two taps, its two input streams interleaved beat by beat (zip), weight ``k_a``/``k_b`` per channel."""

    mw: int
    mh: int
    pe: int
    simd: int
    in_type: CodeType
    weight_bits: int = 2                 # signed weight width (ignored by bipolar layers: 1 bit, 1 ↔ +1)
    bipolar: bool = False
    thresholds: int = 0                  # L thresholds per channel (0: passthrough)
    per_channel: bool = True
    base: int = 0
    step: int = 1
    stages: tuple[FixedStage, ...] = ()
    product_shift: int = 0
    product_rounding: str = "TRN"
    vectors: int = 1
    window: Window | None = None
    depthwise: bool = False
    pool: str | None = None
    add: bool = False

    def __post_init__(self) -> None:
        _check_range("mw", self.mw, 1, 1 << 16)
        _check_range("vectors", self.vectors, 1, 1 << 20)
        self._check_geometry()
        _check_range("mh", self.mh, 1, 1 << 16)
        _check_range("pe", self.pe, 1, self.mh)
        _check_range("simd", self.simd, 1, self.mw)
        if self.mh % self.pe:
            raise ValueError(f"pe must divide mh={self.mh}, got pe={self.pe}")
        if self.mw % self.simd:
            raise ValueError(f"simd must divide mw={self.mw}, got simd={self.simd}")
        if not isinstance(self.in_type, CodeType):
            raise TypeError(f"in_type must be a CodeType, got {self.in_type!r}")
        _check_range("weight_bits", self.weight_bits, 1, 16)
        if self.bipolar and not self.in_type.bipolar:
            raise ValueError(f"a bipolar (XNOR) layer needs bipolar inputs, got in_type={self.in_type}")
        _check_range("thresholds", self.thresholds, 0, 1023)
        _check_range("base", self.base, -(1 << 20), 1 << 20)
        _check_range("step", self.step, 1, 1 << 10)
        if self.stages and self.thresholds:
            raise ValueError("a layer has thresholds or fixed-point stages, not both")
        if not isinstance(self.stages, tuple) or not all(isinstance(s, FixedStage) for s in self.stages):
            raise TypeError(f"stages must be a tuple of FixedStage, got {self.stages!r}")
        _check_range("product_shift", self.product_shift, 0, 62)
        if self.product_rounding not in ROUNDING:
            raise ValueError(f"product_rounding must be one of {', '.join(ROUNDING)}, got {self.product_rounding!r}")
        if self.product_shift and self.bipolar:
            raise ValueError("a bipolar (XNOR) layer has no products to round")
        if self.acc_bits > 48:
            raise ValueError(f"accumulator width {self.acc_bits} bits (mw={self.mw}, in_type={self.in_type}, "
                             f"weight_bits={self.weight_bits}) exceeds 48")
        if self.thresholds and self.threshold_bits > 32:
            raise ValueError(f"thresholds need {self.threshold_bits} bits (accumulator {self.acc_bits} bits); the "
                             "load port writes at most 32")
        for memory, (rows, depth, lanes) in (("weight", self.weight_memory), ("threshold", self.threshold_memory),
                                             ("bias", self.bias_memory)):
            if bits_for(rows) + bits_for(depth) + bits_for(lanes) > INDEX_BITS:
                raise ValueError(f"the {memory} memories ({rows} × {depth} words × {lanes} lanes) need more than "
                                 f"{INDEX_BITS} index bits of the load port; fold the layer differently")

    def _check_geometry(self) -> None:
        if self.pool not in (None, "max", "sum"):
            raise ValueError(f"pool must be None, 'max' or 'sum', got {self.pool!r}")
        if self.pool and not self.depthwise:
            raise ValueError("a pooling layer is depthwise")
        if self.depthwise and self.simd != 1:
            raise ValueError(f"a depthwise layer takes one tap per step (simd=1), got simd={self.simd}")
        if self.pool == "max" and (self.thresholds or self.stages or self.product_shift):
            raise ValueError("a max-pooling layer emits codes: no thresholds, stages or product rounding")
        if self.pool and self.bipolar and self.pool != "max":
            raise ValueError("a bipolar layer has no sum pooling")
        window = self.window
        if self.add and (not self.depthwise or window is not None or self.mw != 2 or self.pool):
            raise ValueError("an add layer is depthwise over its two inputs (mw=2), without window or pooling")
        if window is None:
            if self.depthwise and not self.add:
                raise ValueError("a depthwise layer needs a window")
            return
        if not isinstance(window, Window):
            raise TypeError(f"window must be a Window, got {window!r}")
        if self.vectors != window.pixels:
            raise ValueError(f"vectors must be the window's {window.pixels} output pixels, got {self.vectors}")
        if self.depthwise:
            if (self.mw, self.mh) != (window.taps, window.channels):
                raise ValueError(f"a depthwise layer over a {window.kernel} window of {window.channels} channels "
                                 f"has mw={window.taps}, mh={window.channels}; got mw={self.mw}, mh={self.mh}")
        elif self.mw != window.taps * window.channels:
            raise ValueError(f"mw must be the window's {window.taps} taps × {window.channels} channels, got "
                             f"{self.mw}")
        elif window.channels % self.simd:
            raise ValueError(f"simd must divide the window's {window.channels} channels (one pixel's channels per "
                             f"beat), got simd={self.simd}")
        if window.padded and self.bipolar:
            raise ValueError("a bipolar layer cannot pad its window (no bipolar code stands for 0)")

    @property
    def fold(self) -> LayerFold:
        return LayerFold(self.pe, self.simd)

    @property
    def sf(self) -> int:
        """Synapse fold: input beats (``simd`` codes each) per vector."""
        return self.mw // self.simd

    @property
    def nf(self) -> int:
        """Neuron fold: output beats (``pe`` results each) per vector."""
        return self.mh // self.pe

    @property
    def steps(self) -> int:
        """Steps (cycles) the unit needs per input vector."""
        return self.sf * self.nf

    @property
    def cycles(self) -> int:
        """Cycles the unit needs per inference (its initiation interval): steps per vector × vectors."""
        return self.steps * self.vectors

    @property
    def in_lanes(self) -> int:
        """Codes per input beat: ``simd`` (``pe`` channels for a depthwise layer)."""
        return self.pe if self.depthwise else self.simd

    @property
    def in_codes(self) -> int:
        """Input codes per inference (of each input of an add layer): the window's image, else ``mw`` per
        vector."""
        if self.add:
            return self.mh * self.vectors
        if self.window is not None:
            return self.window.channels * self.window.height * self.window.width
        return self.mw * self.vectors

    @property
    def out_codes(self) -> int:
        """Output codes per inference (``mh`` per vector)."""
        return self.mh * self.vectors

    @property
    def weighted(self) -> bool:
        """Whether the unit has weight memories (pooling layers have none)."""
        return self.pool is None

    @property
    def operand_bound(self) -> int:
        """Largest ``|code − zero point|`` (the zero point is itself a code of the input type)."""
        return 1 if self.bipolar else self.in_type.hi - self.in_type.lo

    @property
    def operand_shape(self) -> Shape:
        return signed(int_range(-self.operand_bound, self.operand_bound).bits)

    @property
    def weight_shape(self) -> Shape:
        return unsigned(1) if self.bipolar else signed(self.weight_bits)

    @property
    def product_bound(self) -> int:
        """Largest ``|product|`` entering the sum: ``|x · w|``, divided by ``2^product_shift`` (rounded up: no
        quantization mode rounds past it) when products are rounded; a pooling layer's operands themselves."""
        weight = 1 if self.bipolar or self.pool else 1 << (self.weight_bits - 1)
        product = self.operand_bound * weight
        return -(-product >> self.product_shift)

    @property
    def acc_bound(self) -> int:
        """Largest ``|accumulator|`` any input vector and weight set of these types can produce."""
        return self.mw * self.product_bound

    @property
    def requantized(self) -> bool:
        """Whether the layer emits codes (thresholds, fixed-point stages or max pooling), not its accumulators."""
        return bool(self.thresholds or self.stages or self.pool == "max")

    @property
    def biased_stages(self) -> tuple[int, ...]:
        """Indices of the fixed-point stages with a per-channel bias (one bias memory entry each)."""
        return tuple(k for k, stage in enumerate(self.stages) if stage.bias_bits)

    @property
    def bias_bits(self) -> int:
        return max([self.stages[k].bias_bits for k in self.biased_stages] + [1])

    @property
    def bias_memory(self) -> tuple[int, int, int]:
        """(memories = PE, words each = channel groups, entries per word = biased stages)."""
        return self.pe, self.nf, max(1, len(self.biased_stages))

    @property
    def acc_bits(self) -> int:
        return int_range(-self.acc_bound, self.acc_bound).bits

    @property
    def threshold_bits(self) -> int:
        """Thresholds are clipped to ``[−acc_bound, acc_bound + 1]`` (comparisons against ±acc unchanged)."""
        return int_range(-self.acc_bound, self.acc_bound + 1).bits

    @property
    def out_type(self) -> CodeType:
        """Type of the codes this layer emits: thresholded codes, or the accumulator when passing through."""
        if self.pool == "max":
            return self.in_type
        if self.stages:
            last = self.stages[-1]
            return CodeType(last.width, last.signed)
        if not self.thresholds:
            return CodeType(self.acc_bits, True)
        if (self.base, self.step, self.thresholds) == (-1, 2, 1):
            return CodeType(1, bipolar=True)
        return CodeType.of_range(self.base, self.base + self.step * self.thresholds)

    @property
    def weight_memory(self) -> tuple[int, int, int]:
        """(memories = PE, words each, weights per word = SIMD)."""
        return self.pe, self.steps, self.simd

    @property
    def threshold_memory(self) -> tuple[int, int, int]:
        """(memories = PE, words each = channel groups, entries per word = L thresholds + the negate flag)."""
        return self.pe, self.nf if self.per_channel else 1, self.thresholds + 1

    @property
    def cost(self) -> float:
        """Folding cost: the layer's analytic LUT count (:func:`hwgen.estimate.fpga.fold_cost`)."""
        from ...estimate.fpga import fold_cost

        return fold_cost(self)


@dataclass(frozen=True)
class DataflowConfig:
    """Layers streaming into each other. ``sources[i]``: the layers whose outputs layer ``i`` reads (−1: the
    model input; two for an add layer, the chain's input first); empty: a chain, layer ``i`` reads layer ``i−1``.
    A consumer reads its producer's output (``mh`` codes per vector, ``vectors`` pixels) as its window's image,
    as its vectors (a 1×1 convolution, an add) or as one flat vector. A layer read by several is duplicated.

    The cycle model's figures (bound, FIFO depths, II, latency) are computed once per instance (cached
    properties: the fields are frozen)."""

    layers: tuple[LayerConfig, ...]
    sources: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.layers, tuple) or not self.layers:
            raise ValueError(f"layers must be a non-empty tuple of LayerConfig, got {self.layers!r}")
        _check_range("number of layers", len(self.layers), 1, MAX_LAYERS)
        if not self.sources:
            object.__setattr__(self, "sources", tuple((index - 1,) for index in range(len(self.layers))))
        if len(self.sources) != len(self.layers) or self.sources[0] != (-1,):
            raise ValueError(f"sources must name one or two producers per layer, the first layer reading the "
                             f"model input (-1); got {self.sources!r}")
        for index, layer in enumerate(self.layers[:-1]):
            if not layer.requantized:
                raise ValueError(f"layers[{index}] passes its accumulator through; only the last layer may")
        for index, (layer, sources) in enumerate(zip(self.layers, self.sources)):
            if len(sources) != (2 if layer.add else 1) or not all(-1 <= s < index for s in sources):
                raise ValueError(f"layers[{index}] must read {2 if layer.add else 1} earlier layer(s), got "
                                 f"sources {sources}")
            if index and -1 in sources:
                raise ValueError(f"layers[{index}]: only the first layer reads the model input")
            for source in sources if index else ():
                self._check_edge(source, index)
        read = {s for sources in self.sources for s in sources}
        for index, layer in enumerate(self.layers[:-1]):
            if index not in read:
                raise ValueError(f"layers[{index}]'s output is read by no layer; only the last layer's is the "
                                 "output")

    def _check_edge(self, index: int, consumer: int) -> None:
        a, b = self.layers[index], self.layers[consumer]
        if b.window is not None:
            image = (b.window.channels, b.window.height * b.window.width)
            if image != (a.mh, a.vectors):
                raise ValueError(f"layers[{consumer}]'s window reads {image[0]} channels × {image[1]} pixels; "
                                 f"layers[{index}] emits {a.mh} × {a.vectors}")
        elif b.add and (b.mh, b.vectors) != (a.mh, a.vectors):
            raise ValueError(f"layers[{consumer}] adds {b.vectors} vectors of {b.mh} codes; layers[{index}] emits "
                             f"{a.vectors} of {a.mh}")
        elif not b.add and b.vectors > 1 and (b.mw, b.vectors) != (a.mh, a.vectors):
            raise ValueError(f"layers[{consumer}] takes {b.vectors} vectors of {b.mw} codes; layers[{index}] "
                             f"emits {a.vectors} of {a.mh}")
        elif b.vectors == 1 and not b.add and b.mw != a.out_codes:
            raise ValueError(f"layers[{consumer}].mw must equal layers[{index}]'s {a.out_codes} output codes, "
                             f"got {b.mw}")
        if a.out_type != b.in_type:
            raise ValueError(f"layers[{consumer}].in_type must be layers[{index}]'s output type {a.out_type}, got "
                             f"{b.in_type}")

    @property
    def chain(self) -> bool:
        """Whether every layer reads the one before it."""
        return all(sources == (index - 1,) for index, sources in enumerate(self.sources))

    @property
    def edges(self) -> tuple[tuple[int, int, int], ...]:
        """Every stream between layers: (producer, consumer, the consumer's input port), consumers in order; each
        has its width converters and FIFO (chain: edge ``i`` feeds layer ``i + 1``)."""
        return tuple((source, index, port) for index, sources in enumerate(self.sources) if index
                     for port, source in enumerate(sources))

    def readers(self, index: int) -> int:
        """How many streams read layer ``index``'s output."""
        return sum(sources.count(index) for sources in self.sources)

    @property
    def in_type(self) -> CodeType:
        return self.layers[0].in_type

    @property
    def out_type(self) -> CodeType:
        return self.layers[-1].out_type

    @property
    def in_lanes(self) -> int:
        """Codes per input beat (the first layer's input lanes)."""
        return self.layers[0].in_lanes

    @property
    def out_lanes(self) -> int:
        """Codes per output beat (PE of the last layer)."""
        return self.layers[-1].pe

    @property
    def in_beats(self) -> int:
        """Input beats per sample."""
        return self.layers[0].in_codes // self.in_lanes

    @property
    def out_beats(self) -> int:
        """Output beats per sample."""
        return self.layers[-1].nf * self.layers[-1].vectors

    @property
    def convolutional(self) -> bool:
        """Whether any layer runs over an image (several vectors or a sliding window): its cycle model is the
        timing model (timing.py), as are branching pipelines; a plain chain of vectors has the closed form of
        cycles.py."""
        return not self.chain or any(layer.vectors > 1 or layer.window is not None for layer in self.layers)

    def boundary(self, index: int, consumer: int | None = None) -> tuple[int, int]:
        """(upsize ratio, downsize ratio) of the width converter between layer ``index`` and ``consumer``
        (default ``index + 1``): ``PE`` codes → ``lcm(PE, SIMD)`` codes → ``SIMD`` codes; a ratio of 1 means that
        stage is absent."""
        pe = self.layers[index].pe
        simd = self.layers[index + 1 if consumer is None else consumer].in_lanes
        wide = lcm(pe, simd)
        return wide // pe, wide // simd

    @cached_property
    def predicted_bound(self) -> int:
        """The initiation interval's lower bound: the most cycles any unit needs per inference (an MVAU's steps, or
        a sliding-window generator's input beats, one per cycle)."""
        return max(max(layer.cycles, layer.in_codes // layer.in_lanes if layer.window else 0)
                   for layer in self.layers)

    @cached_property
    def fifo_depths(self) -> tuple[int, ...]:
        """Depth (words of ``lcm(PE, SIMD)`` codes) of the FIFO in front of each layer after the first
        (cycles.py; timing.py over images)."""
        return (_timing() if self.convolutional else _cycles()).fifo_depths(self)

    @cached_property
    def predicted_ii_cycles(self) -> int:
        """Steady-state cycles between consecutive samples' last outputs (cycles.py; timing.py over images)."""
        if self.convolutional:
            timing = _timing()
            finished = timing.run(self, timing.STEADY + 3)
            return finished[-1] - finished[-2]
        return _cycles().ii_cycles(self)

    @cached_property
    def predicted_latency_cycles(self) -> int:
        """Cycles from a sample's first input transfer to its last output transfer, pipeline idle (cycles.py;
        timing.py over images)."""
        if self.convolutional:
            return _timing().run(self, 1)[0]
        return _cycles().latency_cycles(self)

    def predicted_cycles(self, samples: int) -> int:
        """Cycles from the first input transfer to the last output transfer of ``samples`` samples streamed back
        to back."""
        if self.convolutional:
            from .timing import run
            return run(self, samples)[-1]
        return self.predicted_latency_cycles + (samples - 1) * self.predicted_ii_cycles


# the cycle models import this module: reached on first use
_cycles = lazy_module("hwgen.arch.dataflow.cycles")
_timing = lazy_module("hwgen.arch.dataflow.timing")
