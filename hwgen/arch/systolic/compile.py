"""IR → systolic program, memory images and exact cycle model.

The streamlined IR the array runs is ``Quantize → layers → Dequantize`` where every layer is a MatMul or a
residual Add (``AddScaled``) followed by its MultiThreshold (the last MatMul may leave raw accumulators): the
host quantizes inputs, the array runs every layer with its requantization, and the host dequantizes what the
last layer leaves. Weights, thresholds and the program are data loaded at run time, so one generated array runs
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
from .controller import INSTRUCTION, INSTRUCTION_CHUNKS
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


def gemm_layers(graph: Graph) -> list[GemmLayer]:
    """The GEMM layers of ``graph`` in order; refuses (naming the node) anything the array does not run yet."""
    bounds = value_bounds(graph)
    # a flatten of a (1, *dims) tensor to (1, K) keeps the row-major feature order the scratchpads use
    nodes = [n for n in graph.nodes if n.op not in HOST_OPS and not _is_flatten(graph, n)]
    quantize = [n for n in graph.nodes if n.op == "Quantize"]
    if len(graph.outputs) != 1:
        raise HwgenError(f"the systolic array runs single-output models; this one has {len(graph.outputs)}")
    if not quantize:
        raise HwgenError("the model has no input quantizer")
    available = {quantize[0].outputs[0]}          # code tensors held in the activation scratchpad
    layers: list[GemmLayer] = []
    index = 0
    while index < len(nodes):
        node = nodes[index]
        if node.op not in ("MatMul", "AddScaled"):
            raise HwgenError(f"node '{node.name}' ({node.op}): the systolic array runs MatMul and residual Add "
                             "layers with threshold requantization; this op is not supported on it yet")
        inputs = tuple(_source(graph, t) for t in node.inputs)
        for direct, tensor in zip(node.inputs, inputs):
            if tensor not in available:
                raise HwgenError(f"node '{node.name}' ({node.op}): its input is not a requantized activation")
            if len(graph.tensors[direct].shape) != 2:
                raise HwgenError(f"node '{node.name}' ({node.op}): input shape {graph.tensors[direct].shape}; the "
                                 "systolic array takes 2-D (batch, features) inputs")
        requant: Node | None = None
        if index + 1 < len(nodes) and nodes[index + 1].op == "MultiThreshold" \
                and _source(graph, nodes[index + 1].inputs[0]) == node.outputs[0]:
            requant = nodes[index + 1]
            index += 1
        elif index + 1 < len(nodes) or node.op == "AddScaled":
            culprit = nodes[index + 1] if index + 1 < len(nodes) else node
            raise HwgenError(f"node '{culprit.name}' ({culprit.op}): the systolic array needs a threshold "
                             "requantizer after every layer but the last MatMul")
        index += 1
        acc_lo, acc_hi = _span(bounds, node.outputs[0])
        offset = 0
        if node.op == "MatMul":
            weight, zx = node.attrs["weight"].astype(np.int64), int(node.attrs["x_zero_point"])
            in_lo, in_hi = _span(bounds, inputs[0])
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
        layers.append(GemmLayer(node.name, weight, zx, thresholds, negate, base, step, (acc_lo, acc_hi),
                                _signed_bits(in_lo, in_hi), out_bits, requant.name if requant else None, inputs,
                                tuple(graph.tensors[t].shape[1] for t in node.inputs), output))
    if not layers:
        raise HwgenError("the model has no GEMM layer to run on the systolic array")
    dequantized = _source(graph, graph.producer(graph.outputs[0]).inputs[0])
    if dequantized != layers[-1].output:
        raise HwgenError("the model's output is not the last layer's result")
    if layers[-1].requant is None and len(layers[-1].inputs) > 1:
        raise HwgenError(f"node '{layers[-1].name}': a residual Add needs a requantizer")
    for layer in layers[:-1]:
        if layer.requant is None:
            raise HwgenError(f"node '{layer.name}' (MatMul): only the last layer may skip requantization")
    return layers


def regions(layers: list[GemmLayer] | tuple[GemmLayer, ...]) -> dict[str, int]:
    """Activation-scratchpad region of every code tensor: the lowest region free of every tensor still needed."""
    placed = {layers[0].inputs[0]: 0}
    for index, layer in enumerate(layers):
        if layer.thresholds is None:
            continue                                              # passthrough results go to the output banks
        later = {t for other in layers[index + 1:] for t in other.inputs}
        busy = {placed[t] for t in set(layer.inputs) | later if t in placed}
        placed[layer.output] = next(r for r in range(len(placed) + 1) if r not in busy)
    return placed


def region_stride(layers, cols: int) -> int:
    """Words per group of samples in every activation region: the widest tensor's words per sample."""
    widths = [split for layer in layers for split in layer.splits] + [layer.n for layer in layers]
    return max(ceil(width / cols) for width in widths)


def padded_k(layer: GemmLayer, rows: int, cols: int, dataflow: str) -> int:
    """Weight rows per output-channel tile: K (first input padded to whole words) padded to the column count (OS
    reads C features a word) or the row count (WS)."""
    step = cols if dataflow == "os" else rows
    return ceil(layer.padded_weight(cols).shape[0] / step) * step


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
    kp = [padded_k(layer, rows, cols, dataflow) for layer in layers]
    words = region_stride(layers, cols)
    m_tiles = ceil(batch / rows)
    stored = [layer.in_bits for layer in layers] + [layer.out_bits for layer in layers if layer.requant]
    a_bits = max(stored) - 1
    w_bits = max(weight_bits(layer) for layer in layers)
    search = max([layer.search_bits for layer in layers] + [1])
    last = layers[-1]
    cfg = SystolicConfig(
        rows=rows, cols=cols, dataflow=dataflow, a_bits=max(1, a_bits), w_bits=w_bits, k_max=max(kp),
        out_bits=search, act_depth=max(2, (max(regions(layers).values()) + 1) * m_tiles * words),
        weight_depth=max(2, weight_words(layers, kp, cols)), slot_depth=max(2, threshold_slots(layers, cols)),
        out_depth=max(2, m_tiles * ceil(last.n / cols) if last.requant is None else 2),
        prog_depth=max(2, 2 * len(layers)), acc_depth=max(2, m_tiles * rows))
    return replace(cfg, **overrides) if overrides else cfg


@dataclass(frozen=True)
class Program:
    """A compiled model for one configuration: memory images, instructions and where results land."""

    cfg: SystolicConfig
    layers: tuple[GemmLayer, ...]
    weights: list[tuple[int, int, int, int, int]]          # load rows: (target, bank, addr, lane, value)
    thresholds: list[tuple[int, int, int, int, int]]
    batch: int                                             # samples per run (capacity)
    region_words: int                                      # words per activation region
    stride: int                                            # words per group of R samples within a region
    placement: dict[str, int]                              # code tensor → activation region

    def kp(self, layer: GemmLayer) -> int:
        """Weight rows per output-channel tile (K padded)."""
        cfg = self.cfg
        return padded_k(layer, cfg.rows, cfg.cols, cfg.dataflow)

    def base(self, tensor: str) -> int:
        """First word of a code tensor's activation region."""
        return self.placement[tensor] * self.region_words

    def segments(self, samples: int, stream: bool) -> list[tuple[int, int]]:
        """``(samples per chunk, chunks)`` of a run: one chunk of inputs preloaded by the host, or (``stream``)
        chunks of ``batch`` samples and a last partial one, streamed through ``s_axis``/``m_axis``."""
        if samples < 1 or (not stream and samples > self.batch):
            raise HwgenError(f"a run preloads 1 to {self.batch} samples (batch); got {samples} (stream them instead)")
        if not stream:
            return [(samples, 1)]
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

    def _layer_instructions(self, samples: int) -> list[dict]:
        cfg = self.cfg
        m_tiles = ceil(samples / cfg.rows)
        result, slot_base, w_base = [], 0, 0
        for layer in self.layers:
            kp = self.kp(layer)
            n_tiles = ceil(layer.n / cfg.cols)
            passthrough = layer.thresholds is None
            ws = cfg.dataflow == "ws"
            second = layer.inputs[-1]
            result.append({
                "m_tiles": m_tiles, "n_tiles": n_tiles, "kp": kp,
                "period": self.ws_period(samples) if ws else self.period(kp),
                "samples": samples, "k_tiles": kp // cfg.rows if ws else 1,
                "in_base": self.base(layer.inputs[0]), "in_base2": self.base(second),
                "split_words": ceil(layer.splits[0] / cfg.cols) if len(layer.inputs) > 1 else 0xFFFF,
                "kp_words": self.stride,
                "out_base": 0 if passthrough else self.base(layer.output),
                "out_words": n_tiles if passthrough else self.stride, "w_base": w_base, "slot_base": slot_base,
                "zx": layer.zx,
                "base": layer.base, "step": layer.step, "passthrough": int(passthrough), "last_layer": 0,
                "stream_in": 0, "stream_out": 0, "x_words": self.x_words, "y_words": self.y_words,
                "repeat": 1, "loop_to": 0, "end": 0})
            w_base += n_tiles * kp
            slot_base += 0 if passthrough else n_tiles
        return result

    @property
    def x_words(self) -> int:
        """Scratchpad words (input beats) per sample."""
        return ceil(self.layers[0].splits[0] / self.cfg.cols)

    @property
    def y_words(self) -> int:
        """Scratchpad words (output beats) per sample."""
        return ceil(self.layers[-1].n / self.cfg.cols)

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
                    cycles += cfg.rows + (folds - 1) * instr["period"] + chunk + cfg.rows + cfg.cols + \
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

    def input_rows(self, codes: np.ndarray) -> list[tuple[int, int, int, int, int]]:
        """Load rows placing input codes (samples × K) in the first activation region."""
        cfg = self.cfg
        base = self.base(self.layers[0].inputs[0])
        m, k = np.meshgrid(np.arange(codes.shape[0]), np.arange(codes.shape[1]), indexing="ij")
        banks, addrs, lanes = m % cfg.rows, base + (m // cfg.rows) * self.stride + k // cfg.cols, k % cfg.cols
        return list(zip([ACTIVATIONS] * codes.size, banks.ravel().tolist(), addrs.ravel().tolist(),
                        lanes.ravel().tolist(), codes.astype(np.int64).ravel().tolist()))

    def output_reads(self, samples: int) -> list[tuple[int, int, int, int]]:
        """Read requests for the last layer's results, row-major over (sample, channel)."""
        cfg = self.cfg
        last = self.layers[-1]
        passthrough = last.thresholds is None
        n_words = ceil(last.n / cfg.cols) if passthrough else self.stride
        base = 0 if passthrough else self.base(last.output)
        m, n = np.meshgrid(np.arange(samples), np.arange(last.n), indexing="ij")
        target = OUTPUTS if passthrough else ACTIVATIONS
        return list(zip([target] * m.size, (m % cfg.rows).ravel().tolist(),
                        (base + (m // cfg.rows) * n_words + n // cfg.cols).ravel().tolist(),
                        (n % cfg.cols).ravel().tolist()))


    def input_beats(self, codes: np.ndarray) -> list[int]:
        """``s_axis`` beats of a streamed run: per sample, its ``x_words`` words of ``C`` codes (zero-padded)."""
        cfg = self.cfg
        padded = np.zeros((len(codes), self.x_words * cfg.cols), np.int64)
        padded[:, :codes.shape[1]] = codes
        return pack_lanes(padded.reshape(-1, cfg.cols), cfg.store_bits)

    def output_codes(self, beats: list[int], samples: int) -> np.ndarray:
        """The last layer's results (samples × N) from the ``m_axis`` beats of a streamed run."""
        cfg = self.cfg
        values = unpack_lanes(beats, cfg.cols, cfg.acc_bits, signed=True)
        return values.reshape(samples, self.y_words * cfg.cols)[:, :self.layers[-1].n]


def run_layers(layers: list[GemmLayer] | tuple[GemmLayer, ...], codes: np.ndarray) -> np.ndarray:
    """What the array computes, in numpy: the reference for the hardware's own tests."""
    from ...golden import multithreshold

    env = {layers[0].inputs[0]: codes.astype(np.int64)}
    for layer in layers:
        acc = (np.concatenate([env[t] for t in layer.inputs], axis=1) - layer.zx) @ layer.weight
        if layer.thresholds is None:
            return acc
        signed = np.where(np.broadcast_to(layer.negate, (layer.n,)), -acc, acc)
        env[layer.output] = multithreshold(signed, layer.thresholds, np.zeros(layer.thresholds.shape[0], bool),
                                           layer.base, layer.step, 1 if layer.thresholds.shape[0] > 1 else None)
    return env[layers[-1].output]


def pack_instruction(fields: dict) -> int:
    """An instruction as the integer the program memory holds (StructLayout order, first field at bit 0)."""
    word = 0
    for name, field in INSTRUCTION:
        width = field.shape.width
        value = int(fields[name])
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
    kp = [padded_k(layer, rows, cols, cfg.dataflow) for layer in layers]
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
    for layer, k_pad in zip(layers, kp):
        n_tiles = ceil(layer.n / cols)
        weight = layer.padded_weight(cols)
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
    placement = regions(layers)
    count = max(placement.values()) + 1
    batch = rows * (cfg.act_depth // count // stride)
    if cfg.dataflow == "ws":
        batch = min(batch, cfg.acc_depth)
    if batch < 1:
        raise HwgenError(f"act_depth={cfg.act_depth} cannot hold {count} regions of {stride} words (one sample "
                         "group each)")
    last = layers[-1]
    if last.thresholds is None:
        batch = min(batch, rows * (cfg.out_depth // ceil(last.n / cols)))
        if batch < 1:
            raise HwgenError(f"out_depth={cfg.out_depth} cannot hold one sample group of {ceil(last.n / cols)} words")
    return Program(cfg, tuple(layers), weights, thresholds, batch, cfg.act_depth // count, stride, placement)
