"""IR → systolic program, memory images and exact cycle model.

The streamlined IR the array runs is ``Quantize → layers → Dequantize`` where every layer is a MatMul, Conv,
SumPool or a residual Add (``AddScaled``) followed by its MultiThreshold (the last MatMul may leave raw
accumulators), or a MaxPool: the host quantizes inputs, the array runs every layer with its requantization, and
the host dequantizes what the last layer leaves.

Pooling runs on the array itself, as a convolution whose weight is a stack of identity matrices (``W[(ky, kx, c),
n] = [c = n]``), so the im2col address generation, padding, strided grids, tiling, drain and exact cycle model
are the conv's: a SumPool (AveragePool / GlobalAveragePool) is that conv with the SumPool's zero point, then its
MultiThreshold in the requant lanes; a MaxPool runs the PEs in max mode (``acc = max(acc, a·w)``, pe.py) on
operands ``code - min_code`` (padding enters as 0, the type's minimum, and never wins), then an identity
requantizer (thresholds 1 … max - min, base = min) writes the codes back. Why not a separate C-lane pooling unit:
it needs no new datapath, address generator or sequencer state, and it is as fast as such a unit when R ≈ C (R
pixels per cycle, K = kh·kw·C reads per output-channel tile, against one word of C lanes per cycle); the price is
a comparator per PE and kh·kw·C·⌈C/cols⌉ weight words (0/1) per pooling layer. Weights, thresholds and the program are data loaded at run time, so one generated array runs
any model whose weights fit its scratchpads.

Memory layout (``R`` rows, ``C`` columns):

- activations: bank ``m % R``, word ``base + (m // R) · stride + k // C``, lane ``k % C``; every code tensor gets a
  region (``regions``: the lowest one free of every tensor still needed, so a residual's skip input survives);
- weights: bank ``n % C``, word ``w_base + (n // C) · kp + k``; ``K`` padded to ``kp`` (a multiple of ``C`` for
  OS, of ``R`` for WS) with zero rows;
- thresholds: lane ``n % C``, slot ``slot_base + n // C``, heap order over the search stages (see requant.py);
- outputs (accumulators of a last layer without threshold): bank ``m % R``, word ``(m // R) · words + n // C``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil

import numpy as np

from ...errors import HwgenError
from ...ir import BipolarType, Graph, Node
from ...model import HOST_OPS
from ...passes.analysis import value_bounds
from ..lanes import pack_lanes, unpack_lanes
from .config import SystolicConfig
from .controller import CONV_FIELDS, INSTRUCTION, INSTRUCTION_CHUNKS
from .top import ACTIVATIONS, OUTPUTS, PROGRAM, THRESHOLDS, WEIGHTS



@dataclass(frozen=True)
class GemmLayer:
    """One layer as the array runs it: ``(x - zx) @ weight`` then thresholds (or passthrough).

    ``x`` is the concatenation of the ``inputs`` (IR code tensors, ``splits`` features each): a residual Add of two
    code tensors is a GEMM over both with weight ``[[ka·I], [kb·I]]`` (zero points folded into the thresholds).
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

    @property
    def k(self) -> int:
        return self.weight.shape[0]

    @property
    def n(self) -> int:
        return self.weight.shape[1]

    @property
    def search_bits(self) -> int:
        return 0 if self.thresholds is None else max(1, int(self.thresholds.shape[1]).bit_length())

    def padded_weight(self, cols: int) -> np.ndarray:
        """The weight with the first input's features padded to whole words of ``cols`` codes (zero rows)."""
        if len(self.splits) == 1:
            return self.weight
        first = ceil(self.splits[0] / cols) * cols
        padded = np.zeros((first + self.splits[1], self.n), np.int64)
        padded[:self.splits[0]] = self.weight[:self.splits[0]]
        padded[first:] = self.weight[self.splits[0]:]
        return padded


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

    Values live in *slots* (one per pixel, or per sample of a 2-D tensor); slot ``s`` is bank ``s % R``, words
    ``base + (s // R) · stride + p // C`` (lane ``p % C``) for the channel stored at position ``p``. Pixel (y, x) of
    sample n is slot ``n · slots + y · sy · grid_w + x · sx``: images sit on a grid of ``grid_h × grid_w`` slots,
    possibly spread out (``sy``, ``sx`` > 1: the output of a strided conv keeps its input's grid)."""

    channels: int
    h: int = 1
    w: int = 1
    slots: int = 1                       # slots per sample
    grid_w: int = 1
    sy: int = 1
    sx: int = 1
    positions: tuple[int, ...] | None = None   # storage position of each channel (None: channel c at c)

    @property
    def grid_h(self) -> int:
        return self.slots // self.grid_w

    @property
    def stored(self) -> int:
        """Storage positions a slot spans (channels, plus the padding of grouped outputs)."""
        return self.channels if self.positions is None else max(self.positions) + 1

    def position(self, channel):
        return channel if self.positions is None else np.asarray(self.positions)[channel]

    def slot(self, n, y, x):
        return n * self.slots + y * self.sy * self.grid_w + x * self.sx

    @property
    def grid(self) -> tuple:
        return (self.h, self.w, self.slots, self.grid_w, self.sy, self.sx)


def effective_conv(layer: GemmLayer, source: Layout) -> Conv | None:
    """The conv geometry the array runs ``layer`` with on an input laid out as ``source``; None for a plain GEMM
    over samples (one slot per sample)."""
    if layer.conv is None:
        if source.slots == 1 or len(layer.inputs) > 1:
            return None
        return Conv((layer.k, 1, 1), (1, 1), flat_out=True)
    c = layer.conv
    if source.slots == 1 and c.kernel == (1, 1) and c.groups == 1 and c.in_shape[1:] == (1, 1):
        return None
    return c


def plan_layouts(layers, cols: int) -> dict[str, Layout]:
    """Layout of every code tensor: the input image compact (H·W slots per sample), a conv's output on its input's
    grid, grouped outputs padded to whole words per group (when a group's channels are not a multiple of C)."""
    first = layers[0]
    if first.conv is not None:
        # the whole (C, H, W) input, not ``splits[0]`` (a conv's K = KH·KW·C/groups, one group's im2col row);
        # a 1×1 image is one slot per sample, the same layout as a dense input of C features
        c, h, w = first.conv.in_shape
        placed = {first.inputs[0]: Layout(c, h, w, h * w, w)}
    else:
        placed = {first.inputs[0]: Layout(first.splits[0])}
    for layer in layers:
        source = placed[layer.inputs[0]]
        conv = effective_conv(layer, source)
        if len(layer.inputs) > 1:
            other = placed[layer.inputs[1]]
            if source.grid != other.grid:
                raise HwgenError(f"node '{layer.name}' (Add): its inputs are laid out on different pixel grids "
                                 f"({source.grid} and {other.grid}); the systolic array adds tensors of one grid")
            out = replace(source, channels=layer.n, positions=None)
        elif conv is None:
            out = Layout(layer.n)
        else:
            ho, wo = conv.out_hw
            if conv.flat_out:
                ho = wo = 1
            sy, sx = source.sy * conv.strides[0], source.sx * conv.strides[1]
            if (ho - 1) * sy > source.grid_h - 1 or (wo - 1) * sx > source.grid_w - 1:
                raise HwgenError(f"node '{layer.name}' (Conv): its {ho}×{wo} output does not fit its input's pixel "
                                 f"grid (padding beyond (kernel - 1) / 2 is not supported on the systolic array)")
            positions = None
            if conv.groups > 1 and layer.n % cols:
                per = ceil(layer.n / cols) * cols
                positions = tuple(g * per + j for g in range(conv.groups) for j in range(layer.n))
            out = Layout(layer.n * conv.groups, ho, wo, source.slots, source.grid_w, sy, sx, positions)
        if layer.output in placed:
            if placed[layer.output] != out:
                raise HwgenError(f"node '{layer.name}': its groups disagree on the output layout")
            continue
        placed[layer.output] = out
    return placed


def storage_weight(layer: GemmLayer, layouts: dict[str, Layout], cols: int) -> tuple[np.ndarray, dict]:
    """``layer``'s weight with rows in the order the feed reads them (zero rows for padding), and the feed's
    geometry: ``conv`` (or None), ``c_lo``/``cg`` (storage channel range read at every kernel position),
    ``split`` (words of the first input of a residual Add)."""
    source = layouts[layer.inputs[0]]
    conv = effective_conv(layer, source)
    if len(layer.inputs) > 1:
        sa, sb = source, layouts[layer.inputs[1]]
        first = ceil(sa.stored / cols) * cols
        weight = np.zeros((first + sb.stored, layer.n), np.int64)
        weight[sa.position(np.arange(sa.channels))] = layer.weight[:sa.channels]
        weight[first + sb.position(np.arange(sb.channels))] = layer.weight[sa.channels:]
        return weight, {"conv": None, "split": first // cols}
    if conv is None:
        weight = np.zeros((source.stored, layer.n), np.int64)
        weight[source.position(np.arange(source.channels))] = layer.weight
        return weight, {"conv": None, "split": None}
    channels = conv.group * conv.cg + np.arange(conv.cg)
    stored = source.position(channels)
    c_lo = int(stored.min())
    cg = int(stored.max()) - c_lo + 1
    taps = conv.kernel[0] * conv.kernel[1]
    weight = np.zeros((taps, cg, layer.n), np.int64)
    weight[:, stored - c_lo] = layer.weight.reshape(taps, conv.cg, layer.n)
    return weight.reshape(taps * cg, layer.n), {"conv": conv, "split": None, "c_lo": c_lo, "cg": cg}


def _signed_bits(lo: int, hi: int) -> int:
    """Bits of a two's-complement value holding every integer in [lo, hi]."""
    return max((-min(lo, 0) - 1).bit_length(), max(hi, 0).bit_length()) + 1


def _is_flatten(graph: Graph, node: Node) -> bool:
    return node.op == "Reshape" and len(node.attrs["shape"]) == 2


def _source(graph: Graph, tensor: str) -> str:
    """The tensor a chain of flattens starts from."""
    producer = graph.producer(tensor)
    while producer is not None and _is_flatten(graph, producer):
        tensor = producer.inputs[0]
        producer = graph.producer(tensor)
    return tensor


def _span(bounds, tensor: str) -> tuple[int, int]:
    return int(np.min(bounds[tensor][0])), int(np.max(bounds[tensor][1]))


def _requantizer(graph: Graph, nodes: list[Node], node: Node) -> Node | None:
    """The MultiThreshold reading ``node``'s accumulators (through flattens), if any."""
    found = [n for n in nodes if n.op == "MultiThreshold" and _source(graph, n.inputs[0]) == node.outputs[0]]
    return found[0] if len(found) == 1 else None


def _identity_layer(graph: Graph, bounds, node: Node) -> GemmLayer:
    """A MultiThreshold on codes as the GEMM ``x @ I`` followed by its thresholds."""
    source = _source(graph, node.inputs[0])
    shape = graph.tensors[source].shape
    channels = shape[1]
    lo, hi = _span(bounds, source)
    t = node.attrs["thresholds"].astype(np.int64)
    negate = node.attrs["descending"].astype(bool)
    dtype = node.attrs["quantizer"].dtype
    out_bits = _signed_bits(dtype.min, dtype.max) if not isinstance(dtype, BipolarType) else 2
    conv = Conv(tuple(shape[1:]), (1, 1)) if len(shape) == 4 else None
    return GemmLayer(node.name, np.eye(channels, dtype=np.int64), 0, np.where(negate[:, None], -t[:, ::-1], t),
                     negate, int(node.attrs["base"]), int(node.attrs["step"]), (lo, hi), _signed_bits(lo, hi),
                     out_bits, node.name, (source,), (channels,), node.outputs[0], conv)


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


def gemm_layers(graph: Graph) -> list[GemmLayer]:
    """The GEMM layers of ``graph`` in order (a grouped conv gives one per group); refuses (naming the node)
    anything the array does not run yet."""
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
    consumed: set[str] = set()                    # MultiThreshold nodes already part of a layer
    for position, node in enumerate(nodes):
        if node.name in consumed:
            continue
        if node.op == "MultiThreshold" and _source(graph, node.inputs[0]) in available:
            # a requantizer of codes (e.g. a residual's skip branch): an identity 1×1 GEMM into the requant lanes
            layers.append(_identity_layer(graph, bounds, node))
            available.add(node.outputs[0])
            continue
        if node.op == "MaxPool":
            source = _source(graph, node.inputs[0])
            if source not in available:
                raise HwgenError(f"node '{node.name}' (MaxPool): its input is not a requantized activation")
            layers.append(maxpool_layer(node.name, _pool_conv(node, graph.tensors[source].shape),
                                        *_span(bounds, source), source, node.outputs[0]))
            available.add(node.outputs[0])
            continue
        if node.op not in ("MatMul", "AddScaled", "Conv", "SumPool"):
            what = {"MultiThreshold": "a requantizer of codes (no GEMM before it)"}.get(node.op, "this op")
            raise HwgenError(f"node '{node.name}' ({node.op}): the systolic array runs Conv, MatMul, pooling and "
                             f"residual Add layers with threshold requantization; {what} is not supported on it "
                             "yet")
        inputs = tuple(_source(graph, t) for t in node.inputs)
        for direct, tensor in zip(node.inputs, inputs):
            if tensor not in available:
                raise HwgenError(f"node '{node.name}' ({node.op}): its input is not a requantized activation")
        rest = nodes[position + 1:]
        requant = _requantizer(graph, rest, node)
        if requant is None and (rest or node.op == "AddScaled"):
            culprit = next((n for n in rest if node.outputs[0] in n.inputs), node)
            raise HwgenError(f"node '{culprit.name}' ({culprit.op}): the systolic array needs a threshold "
                             "requantizer after every layer but the last MatMul")
        if requant is not None:
            consumed.add(requant.name)
        acc_lo, acc_hi = _span(bounds, node.outputs[0])
        offset = 0
        conv: Conv | None = None
        groups = 1
        if node.op == "MatMul":
            weight, zx = node.attrs["weight"].astype(np.int64), int(node.attrs["x_zero_point"])
            in_lo, in_hi = _span(bounds, inputs[0])
            shape = graph.tensors[inputs[0]].shape
            images = {layer.output for layer in layers if len(graph.tensors[layer.output].shape) == 4}
            if len(shape) == 4 and inputs[0] in images:   # over a flattened conv output: a whole-image conv
                c, h, w = shape[1:]
                weight = weight.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
                conv = Conv((c, h, w), (h, w), flat_out=True)
            elif len(graph.tensors[node.inputs[0]].shape) != 2:
                raise HwgenError(f"node '{node.name}' (MatMul): input shape {graph.tensors[node.inputs[0]].shape}; "
                                 "the systolic array takes 2-D (batch, features) inputs")
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
        thresholds = negate = None
        base, step = 0, 1
        if requant is not None:
            t = requant.attrs["thresholds"].astype(np.int64) + offset
            negate = requant.attrs["descending"].astype(bool)
            thresholds = np.where(negate[:, None], -t[:, ::-1], t)
            base, step = int(requant.attrs["base"]), int(requant.attrs["step"])
            dtype = requant.attrs["quantizer"].dtype
            out_bits = _signed_bits(dtype.min, dtype.max) if not isinstance(dtype, BipolarType) else 2
        else:
            out_bits = _signed_bits(acc_lo, acc_hi)
        output = requant.outputs[0] if requant is not None else node.outputs[0]
        available.add(output)
        n_group = weight.shape[1] // groups
        for g in range(groups):
            cols_g = slice(g * n_group, (g + 1) * n_group)
            t_g = thresholds if thresholds is None or thresholds.shape[0] == 1 else thresholds[cols_g]
            n_g = negate if negate is None or negate.shape[0] == 1 else negate[cols_g]
            layers.append(GemmLayer(
                node.name if groups == 1 else f"{node.name}#g{g}", weight[:, cols_g], zx, t_g, n_g, base, step,
                (acc_lo, acc_hi), _signed_bits(in_lo, in_hi), out_bits, requant.name if requant else None, inputs,
                tuple(int(np.prod(graph.tensors[t].shape[1:])) if node.op == "MatMul" else
                      graph.tensors[t].shape[1] for t in node.inputs) if conv is None else
                (conv.cg * conv.kernel[0] * conv.kernel[1],), output,
                None if conv is None else replace(conv, group=g), "sum" if node.op == "SumPool" else None))
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


def regions(layers: list[GemmLayer] | tuple[GemmLayer, ...]) -> dict[str, int]:
    """Activation-scratchpad region of every code tensor: the lowest region free of every tensor still needed."""
    placed = {layers[0].inputs[0]: 0}
    for index, layer in enumerate(layers):
        if layer.thresholds is None or layer.output in placed:
            continue                          # passthrough results go to the output banks; groups share a region
        later = {t for other in layers[index + 1:] for t in other.inputs}
        busy = {placed[t] for t in set(layer.inputs) | later if t in placed}
        placed[layer.output] = next(r for r in range(len(placed) + 1) if r not in busy)
    return placed


def region_stride(layers, cols: int) -> int:
    """Words per slot in every activation region: the widest tensor's words per slot."""
    return max(ceil(layout.stored / cols) for layout in plan_layouts(layers, cols).values())


def slots_per_sample(layers, cols: int) -> int:
    """Slots every region holds per sample: the largest pixel grid."""
    return max(layout.slots for layout in plan_layouts(layers, cols).values())


def padded_k(layer: GemmLayer, rows: int, cols: int, dataflow: str, layouts: dict | None = None) -> int:
    """Weight rows per output-channel tile: the feed's K (storage order, first input of an Add padded to whole
    words) padded to the column count (OS reads C features a word) or the row count (WS)."""
    layouts = layouts or plan_layouts_upto(layer, cols)
    step = cols if dataflow == "os" else rows
    return ceil(storage_weight(layer, layouts, cols)[0].shape[0] / step) * step


def plan_layouts_upto(layer: GemmLayer, cols: int) -> dict[str, Layout]:
    """Layouts for a lone layer (its input laid out as if it were the model's first layer)."""
    return plan_layouts([layer], cols)


def weight_words(layers, kp: list[int], cols: int) -> int:
    """Words each weight bank needs for ``layers`` (``kp``: their padded K)."""
    return sum(ceil(layer.n / cols) * k for layer, k in zip(layers, kp))


def threshold_slots(layers, cols: int) -> int:
    """Slots each requant lane needs: one per group of C output channels of every thresholded layer."""
    return sum(ceil(layer.n / cols) for layer in layers if layer.thresholds is not None)


def weight_bits(layer: GemmLayer) -> int:
    return _signed_bits(int(layer.weight.min()), int(layer.weight.max()))


def default_config(layers: list[GemmLayer], rows: int = 8, cols: int = 8, dataflow: str = "os",
                   batch: int = 64, **overrides) -> SystolicConfig:
    """The smallest configuration that runs ``layers`` on ``batch`` samples per run; ``overrides`` win."""
    layouts = plan_layouts(layers, cols)
    kp = [padded_k(layer, rows, cols, dataflow, layouts) for layer in layers]
    words = region_stride(layers, cols)
    slots = slots_per_sample(layers, cols)
    m_tiles = ceil(batch * slots / rows)
    stored = [layer.in_bits for layer in layers] + [layer.out_bits for layer in layers if layer.requant]
    a_bits = max(stored) - 1
    w_bits = max(weight_bits(layer) for layer in layers)
    search = max([layer.search_bits for layer in layers] + [1])
    last = layers[-1]
    out_words = ceil(layouts[last.output].stored / cols)
    cfg = SystolicConfig(
        rows=rows, cols=cols, dataflow=dataflow, a_bits=max(1, a_bits), w_bits=w_bits, k_max=max(kp),
        out_bits=search, act_depth=max(2, (max(regions(layers).values()) + 1) * m_tiles * words),
        weight_depth=max(2, weight_words(layers, kp, cols)), slot_depth=max(2, threshold_slots(layers, cols)),
        out_depth=max(2, m_tiles * out_words if last.requant is None else 2),
        prog_depth=max(2, 2 * len(layers)), acc_depth=max(2, m_tiles * rows),
        max_pool=any(layer.pool == "max" for layer in layers))
    return replace(cfg, **overrides) if overrides else cfg


def _divmod_words(offset: int, rows: int, words: int) -> tuple[int, int]:
    """A slot offset as (whole groups of R slots, in words; remaining slots)."""
    return (offset // rows) * words, offset % rows


@dataclass(frozen=True)
class Program:
    """A compiled model for one configuration: memory images, instructions and where results land."""

    cfg: SystolicConfig
    layers: tuple[GemmLayer, ...]
    weights: list[tuple[int, int, int, int, int]]          # load rows: (target, bank, addr, lane, value)
    thresholds: list[tuple[int, int, int, int, int]]
    batch: int                                             # samples per run (capacity)
    region_words: int                                      # words per activation region
    stride: int                                            # words per slot (group of R slots: R·stride words)
    placement: dict[str, int]                              # code tensor → activation region
    layouts: dict[str, Layout] = None                      # code tensor → its slots and channel positions

    def kp(self, layer: GemmLayer) -> int:
        """Weight rows per output-channel tile (K padded)."""
        cfg = self.cfg
        return padded_k(layer, cfg.rows, cfg.cols, cfg.dataflow, self.layouts)

    def base(self, tensor: str) -> int:
        """First word of a code tensor's activation region."""
        return self.placement[tensor] * self.region_words

    @property
    def x_layout(self) -> Layout:
        return self.layouts[self.layers[0].inputs[0]]

    @property
    def y_layout(self) -> Layout:
        return self.layouts[self.layers[-1].output]

    def segments(self, samples: int, stream: bool) -> list[tuple[int, int]]:
        """``(samples per chunk, chunks)`` of a run: one chunk of inputs preloaded by the host, or (``stream``)
        chunks of ``batch`` samples and a last partial one, streamed through ``s_axis``/``m_axis``."""
        if samples < 1 or (not stream and samples > self.batch):
            raise HwgenError(f"a run preloads 1 to {self.batch} samples (batch); got {samples} (stream them instead)")
        if not stream:
            return [(samples, 1)]
        if self.y_layout.slots > 1:
            raise HwgenError("results that are images (the last layer a convolution) are read back, not streamed; "
                             "preload the samples instead")
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

    def _conv_fields(self, layer: GemmLayer, feed: dict) -> dict:
        """The feed's implicit-im2col geometry (see controller.py): kernel walk, slot offsets of the kernel
        positions as (words, slots mod R), the per-row pixel grid and the input's extent on it."""
        cfg = self.cfg
        rows, words = cfg.rows, self.stride
        source = self.layouts[layer.inputs[0]]
        conv = feed["conv"]
        kh, kw = conv.kernel
        pt, pl = conv.pads[:2]
        sy, sx = source.sy, source.sx
        d0 = _divmod_words(-pt * sy * source.grid_w - pl * sx, rows, words)
        dx = _divmod_words(sx, rows, words)
        dy = _divmod_words(sy * source.grid_w - (kw - 1) * sx, rows, words)
        return {"conv": 1, "kh": kh, "kw": kw, "cg": feed["cg"], "c0_word": feed["c_lo"] // cfg.cols,
                "c0_lane": feed["c_lo"] % cfg.cols, "d0_words": d0[0], "d0_r": d0[1], "dx_words": dx[0],
                "dx_r": dx[1], "dy_words": dy[0], "dy_r": dy[1], "x0": -pl * sx, "y0": -pt * sy, "sx": sx,
                "sy": sy, "lim_x": (source.w - 1) * sx, "lim_y": (source.h - 1) * sy, "grid_w": source.grid_w,
                "grid_h": source.grid_h, "tile_x": rows % source.grid_w,
                "tile_y": (rows // source.grid_w) % source.grid_h, "pool_max": int(layer.pool == "max")}

    def _layer_instructions(self, samples: int) -> list[dict]:
        cfg = self.cfg
        result, slot_base, w_base = [], 0, 0
        for layer in self.layers:
            kp = self.kp(layer)
            source = self.layouts[layer.inputs[0]]
            out = self.layouts[layer.output]
            # rows of the GEMM: every slot of the grid, up to the last sample's last output pixel
            m_rows = (samples - 1) * source.slots + int(out.slot(0, out.h - 1, out.w - 1)) + 1
            m_tiles = ceil(m_rows / cfg.rows)
            n_tiles = ceil(layer.n / cfg.cols)
            passthrough = layer.thresholds is None
            ws = cfg.dataflow == "ws"
            second = layer.inputs[-1]
            _, feed = storage_weight(layer, self.layouts, cfg.cols)
            group_word = 0 if layer.conv is None else \
                int(out.position(layer.conv.group * layer.n)) // cfg.cols
            instr = {
                "m_tiles": m_tiles, "n_tiles": n_tiles, "kp": kp,
                "period": self.ws_period(m_rows) if ws else self.period(kp),
                "samples": m_rows, "k_tiles": kp // cfg.rows if ws else 1,
                "in_base": self.base(layer.inputs[0]), "in_base2": self.base(second),
                "split_words": feed["split"] if feed["split"] is not None else 0xFFFF,
                "kp_words": self.stride,
                "out_base": group_word + (0 if passthrough else self.base(layer.output)),
                "out_words": ceil(out.stored / cfg.cols) if passthrough else self.stride, "w_base": w_base,
                "slot_base": slot_base, "zx": layer.zx,
                "base": layer.base, "step": layer.step, "passthrough": int(passthrough), "last_layer": 0,
                "stream_in": 0, "stream_out": 0, "x_words": ceil(self.x_layout.stored / cfg.cols),
                "y_words": ceil(self.y_layout.stored / cfg.cols), "repeat": 1, "loop_to": 0, "end": 0}
            instr.update({name: 0 for name, _ in CONV_FIELDS})
            if feed["conv"] is not None:
                instr.update(self._conv_fields(layer, feed))
            result.append(instr)
            w_base += n_tiles * kp
            slot_base += 0 if passthrough else n_tiles
        return result

    @property
    def x_words(self) -> int:
        """Scratchpad words (input beats) per sample: its slots × words per slot."""
        return self.x_layout.slots * ceil(self.x_layout.stored / self.cfg.cols)

    @property
    def y_words(self) -> int:
        """Scratchpad words (output beats) per sample."""
        return self.y_layout.slots * ceil(self.y_layout.stored / self.cfg.cols)

    def ws_period(self, samples: int) -> int:
        """WS cycles between fold starts: the samples, or the next fold's weight preload behind this fold's
        commits, rounded up to a multiple of R so rows in consecutive folds never share a bank (ws_controller)."""
        rows = self.cfg.rows
        return ceil(max(samples, 2 * rows + self.cfg.cols - 1) / rows) * rows

    def period(self, kp: int) -> int:
        """Cycles between tile starts: the feed's kp reads, or the drain of the tile before (see controller)."""
        return max(kp, 2 * self.cfg.rows + self.cfg.cols - 1)

    def predict_cycles(self, samples: int, stream: bool = False) -> int:
        """Exact start → done cycles of a run of ``samples`` samples (equals the RTL's cycle counter); the
        derivations are in controller.py (os), ws_controller.py (ws) and io.py (streams, every input always
        valid and the output always ready)."""
        cfg = self.cfg
        total = 0
        for chunk, repeat in self.segments(samples, stream):
            cycles = chunk * (self.x_words + self.y_words) + 1 if stream else 0
            for instr in self._layer_instructions(chunk):
                if cfg.dataflow == "ws":
                    folds = instr["n_tiles"] * instr["k_tiles"]
                    cycles += cfg.rows + (folds - 1) * instr["period"] + instr["samples"] + cfg.rows + cfg.cols + \
                        cfg.search_stages + 3
                else:
                    tiles = instr["m_tiles"] * instr["n_tiles"]
                    cycles += (tiles - 1) * instr["period"] + instr["kp"] + 2 * cfg.rows + cfg.cols + \
                        cfg.search_stages + 2
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
        for _, lane, addr, stage, value in self.thresholds:
            thresholds[lane][stage][addr] = value
        program = [0] * cfg.prog_depth
        for _, _, addr, chunk, value in self.program_rows(samples):
            program[addr] |= value << (32 * chunk)
        return {"program": program, "weights": weights, "thresholds": thresholds}

    @staticmethod
    def _logical(layout: Layout, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Slot and storage position of every value of a tensor, in the golden model's (n, c, y, x) order."""
        n, c, y, x = np.meshgrid(np.arange(samples), np.arange(layout.channels), np.arange(layout.h),
                                 np.arange(layout.w), indexing="ij")
        return layout.slot(n, y, x).ravel(), layout.position(c).ravel()

    def input_rows(self, codes: np.ndarray) -> list[tuple[int, int, int, int, int]]:
        """Load rows placing input codes (samples × features, features in (C, H, W) order for an image) in the
        first activation region: exactly one row per code, no padding and no im2col copy."""
        cfg = self.cfg
        base = self.base(self.layers[0].inputs[0])
        slot, pos = self._logical(self.x_layout, len(codes))
        banks, addrs, lanes = slot % cfg.rows, base + (slot // cfg.rows) * self.stride + pos // cfg.cols, pos % cfg.cols
        return list(zip([ACTIVATIONS] * codes.size, banks.tolist(), addrs.tolist(), lanes.tolist(),
                        codes.astype(np.int64).ravel().tolist()))

    def output_reads(self, samples: int) -> list[tuple[int, int, int, int]]:
        """Read requests for the last layer's results, in the golden model's order (sample, channel, y, x)."""
        cfg = self.cfg
        last = self.layers[-1]
        layout = self.y_layout
        passthrough = last.thresholds is None
        n_words = ceil(layout.stored / cfg.cols) if passthrough else self.stride
        base = 0 if passthrough else self.base(last.output)
        slot, pos = self._logical(layout, samples)
        target = OUTPUTS if passthrough else ACTIVATIONS
        return list(zip([target] * slot.size, (slot % cfg.rows).tolist(),
                        (base + (slot // cfg.rows) * n_words + pos // cfg.cols).tolist(), (pos % cfg.cols).tolist()))

    def input_beats(self, codes: np.ndarray) -> list[int]:
        """``s_axis`` beats of a streamed run: per sample, per pixel, its words of ``C`` codes (zero-padded)."""
        cfg = self.cfg
        layout = self.x_layout
        words = ceil(layout.stored / cfg.cols)
        pixels = codes.reshape(len(codes), layout.channels, layout.h * layout.w).transpose(0, 2, 1)
        padded = np.zeros((len(codes), layout.h * layout.w, words * cfg.cols), np.int64)
        padded[:, :, :layout.channels] = pixels
        return pack_lanes(padded.reshape(-1, cfg.cols), cfg.store_bits)

    def output_codes(self, beats: list[int], samples: int) -> np.ndarray:
        """The last layer's results (samples × N) from the ``m_axis`` beats of a streamed run."""
        cfg = self.cfg
        values = unpack_lanes(beats, cfg.cols, cfg.acc_bits, signed=True)
        return values.reshape(samples, self.y_words * cfg.cols)[:, :self.layers[-1].n]


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
                acc = np.moveaxis((x - layer.zx) @ layer.weight, -1, 1)
            else:
                x = np.concatenate([env[t].reshape(samples, -1) for t in layer.inputs], axis=1)
                acc = (x - layer.zx) @ layer.weight
            channels = slice(0, layer.n)
        else:
            x = env[layer.inputs[0]].reshape(samples, *conv.in_shape)
            x = x[:, conv.group * conv.cg:(conv.group + 1) * conv.cg] - layer.zx
            win = windows(x, conv.kernel, conv.strides, conv.pads, (1, 1), False, 0)     # N C OH OW KH KW
            patches = win.transpose(0, 2, 3, 4, 5, 1).reshape(*win.shape[:1], *win.shape[2:4], -1)
            if layer.pool == "max":                  # the PEs' max mode: max over k of (x - zx)·w, from 0
                acc = np.max(patches[..., :, None] * layer.weight, axis=-2, initial=0).transpose(0, 3, 1, 2)
            else:
                acc = (patches @ layer.weight).transpose(0, 3, 1, 2)                  # N, n, OH, OW
            channels = slice(conv.group * layer.n, (conv.group + 1) * layer.n)
        if layer.thresholds is None:
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
    optional = {name for name, _ in CONV_FIELDS}         # a GEMM instruction may leave the im2col fields out (0)
    for name, field in INSTRUCTION:
        width = field.shape.width
        value = int(fields[name] if name in fields or name not in optional else 0)
        if field.shape.signed:
            if not -(1 << (width - 1)) <= value < (1 << (width - 1)):
                raise HwgenError(f"instruction field {name}={value} does not fit {width} signed bits")
        elif not 0 <= value < (1 << width):
            raise HwgenError(f"instruction field {name}={value} does not fit {width} bits")
        word |= (value & ((1 << width) - 1)) << field.offset
    return word


def compile_layers(layers: list[GemmLayer], cfg: SystolicConfig) -> Program:
    """Memory images for ``layers`` on ``cfg``; refuses models that do not fit, naming what and by how much."""
    cols, rows = cfg.cols, cfg.rows
    layouts = plan_layouts(layers, cols)
    stored = [storage_weight(layer, layouts, cols) for layer in layers]
    kp = [padded_k(layer, rows, cols, cfg.dataflow, layouts) for layer in layers]
    if cfg.dataflow == "ws":
        for layer, (_, feed) in zip(layers, stored):
            if feed["conv"] is not None:
                raise HwgenError(f"node '{layer.name}': convolutions and pooling run on the output-stationary array "
                                 "(--dataflow os); the weight-stationary controller does not generate im2col "
                                 "addresses yet")
    if max(kp) > cfg.k_max:
        raise HwgenError(f"layer K of {max(kp)} exceeds the array's k_max={cfg.k_max}")
    need_weights = weight_words(layers, kp, cols)
    if need_weights > cfg.weight_depth:
        raise HwgenError(f"weights need {need_weights} words per bank, the configuration has "
                         f"weight_depth={cfg.weight_depth}")
    slots = threshold_slots(layers, cols)
    if slots > cfg.slot_depth:
        raise HwgenError(f"thresholds need {slots} slots per lane, the configuration has slot_depth={cfg.slot_depth}")
    if len(layers) > cfg.prog_depth:
        raise HwgenError(f"{len(layers)} layers exceed prog_depth={cfg.prog_depth}")
    for layer in layers:
        if layer.pool == "max" and not cfg.max_pool:
            raise HwgenError(f"node '{layer.name}': MaxPool needs PEs with a max mode; the configuration has "
                             "max_pool=False")
        if layer.in_bits > cfg.store_bits:
            raise HwgenError(f"node '{layer.name}': input codes need {layer.in_bits} bits, the array stores "
                             f"{cfg.store_bits} (a_bits={cfg.a_bits})")
        w_need = weight_bits(layer)
        if w_need > cfg.w_bits:
            raise HwgenError(f"node '{layer.name}': weights need {w_need} bits, the array has w_bits={cfg.w_bits}")
        if layer.search_bits > cfg.search_stages:
            raise HwgenError(f"node '{layer.requant}': {layer.search_bits}-bit requantizer, the array's lanes "
                             f"search {cfg.search_stages} bits (out_bits)")
        if _signed_bits(*layer.acc_range) > cfg.acc_bits:
            raise HwgenError(f"node '{layer.name}': accumulator needs {_signed_bits(*layer.acc_range)} bits, the "
                             f"array has {cfg.acc_bits}")

    weights: list[tuple[int, int, int, int, int]] = []
    w_base = 0
    for layer, k_pad, (weight, _) in zip(layers, kp, stored):
        n_tiles = ceil(layer.n / cols)
        padded = np.zeros((k_pad, n_tiles * cols), np.int64)
        padded[:weight.shape[0], :layer.n] = weight
        for t in range(n_tiles):         # every word, zeros and padding included: memories start undefined
            for j in range(cols):
                column = padded[:, t * cols + j]
                weights.extend((WEIGHTS, j, w_base + t * k_pad + k, 0, int(column[k])) for k in range(k_pad))
        w_base += n_tiles * k_pad

    thresholds: list[tuple[int, int, int, int, int]] = []
    stages = cfg.search_stages
    tbits = cfg.threshold_bits
    infinity = (1 << (tbits - 1)) - 1
    slot_base = 0
    for layer in layers:
        if layer.thresholds is None:
            continue
        n_tiles = ceil(layer.n / cols)
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
                    thresholds.append((THRESHOLDS, lane, (slot << b) | prefix, b, value))
        slot_base += n_tiles

    stride = region_stride(layers, cols)
    per_sample = slots_per_sample(layers, cols)
    placement = regions(layers)
    count = max(placement.values()) + 1
    batch = rows * (cfg.act_depth // count // stride) // per_sample
    if cfg.dataflow == "ws":
        batch = min(batch, cfg.acc_depth // per_sample)
    if batch < 1:
        raise HwgenError(f"act_depth={cfg.act_depth} cannot hold {count} regions of one sample ({per_sample} "
                         f"slots of {stride} words)")
    last = layers[-1]
    if last.thresholds is None:
        out_words = ceil(layouts[last.output].stored / cols)
        last_slots = layouts[last.inputs[0]].slots
        batch = min(batch, rows * (cfg.out_depth // out_words) // last_slots)
        if batch < 1:
            raise HwgenError(f"out_depth={cfg.out_depth} cannot hold one sample's results ({last_slots} slots of "
                             f"{out_words} words)")
    return Program(cfg, tuple(layers), weights, thresholds, batch, cfg.act_depth // count, stride, placement,
                   layouts)
