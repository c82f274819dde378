"""IR → dataflow configuration, memory images, and the host's stream packing.

``compile_dataflow(model_or_layers, fold=…, target_cycles=…)`` takes the GEMM layers the systolic compiler finds
(``gemm_layers``: every MatMul with its MultiThreshold, the last one possibly passing its accumulator through) and
returns a :class:`DataflowProgram`: the structural :class:`DataflowConfig` (build it with
``DataflowTop(program.config)``), the load rows writing weights, thresholds and zero points (mapping in loader.py),
the chosen folding, the exact cycle model, and the packing of input codes into ``s_axis`` beats and of ``m_axis``
beats back into output codes.

Convolutions and pooling (:func:`dataflow_layers`): a convolution's GEMM runs on an MVAU fed by a sliding-window
generator (none for a 1×1 stride-1 convolution: its vectors are the pixels; none for a MatMul over a flattened
image: one vector of the whole image in NHWC order, the weight rows already in that order); a depthwise
convolution (one input channel per group) and pooling run on the depthwise unit; other grouped convolutions run on
one MVAU with block-diagonal weights. Images stream NHWC: the host transposes an image input and output.

Types: the first layer's input type is the model's quantized input type (or, for bare layers, signed
``in_bits``); every later layer's is the previous layer's output type ``base + step · [0, L]``. A layer is bipolar
(XNOR-popcount) when its inputs are bipolar, its weights all ±1 and its zero point 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ...errors import HwgenError
from ...ir import BipolarType
from ..systolic.compile import GemmLayer, gemm_layers
from ..lanes import pack_lanes, unpack_lanes
from .config import CodeType, DataflowConfig, LayerConfig, LayerFold, Window
from .folding import auto_fold_configs, parse_fold, reuse_fold
from .loader import BIASES, PARAMETERS, THRESHOLDS, WEIGHTS, element_row

LoadRow = tuple[int, int, int, int, int]
# a MultiThreshold made from fixed-point casts with more thresholds than this (outputs wider than 4 bits) runs as
# its casts: the MVAU compares every threshold in parallel, 2^bits - 1 comparators per PE against a few adders
MAX_FUSED_THRESHOLDS = 15


@dataclass(frozen=True)
class DataflowProgram:
    """A compiled model for one dataflow configuration."""

    config: DataflowConfig
    layers: tuple[GemmLayer, ...]
    weights: list[LoadRow]            # (WEIGHTS, layer, addr, lane, value)
    thresholds: list[LoadRow]         # (THRESHOLDS, layer, addr, lane, value)
    parameters: list[LoadRow]         # (PARAMETERS, layer, 0, 0, zero point)
    biases: list[LoadRow] = field(default_factory=list)      # (BIASES, layer, addr, lane, value): fixed stages
    in_image: tuple[int, int, int] | None = None     # (C, H, W) of an image input (streamed NHWC)
    out_image: tuple[int, int, int] | None = None    # (C, H, W) of an image output

    @property
    def load_rows(self) -> list[LoadRow]:
        """Every row the host writes before ``start``."""
        return self.weights + self.thresholds + self.parameters + self.biases

    @property
    def folds(self) -> tuple[LayerFold, ...]:
        return tuple(layer.fold for layer in self.config.layers)

    @property
    def predicted_ii_cycles(self) -> int:
        """Steady-state cycles between consecutive samples' last outputs (cycles.py)."""
        return self.config.predicted_ii_cycles

    @property
    def predicted_latency_cycles(self) -> int:
        """Cycles from a sample's first input transfer to its last output transfer, pipeline idle (cycles.py)."""
        return self.config.predicted_latency_cycles

    def fold_report(self) -> list[dict]:
        """Per layer: node name, shape, folding, cycles per inference and the folding cost (LUTs, see
        :attr:`LayerConfig.cost <hwgen.arch.dataflow.config.LayerConfig.cost>`)."""
        return [{"name": gemm.name, "unit": unit_kind(layer), "mw": layer.mw, "mh": layer.mh, "vectors": layer.vectors,
                 "pe": layer.pe, "simd": layer.simd, "cycles": layer.cycles, "cost_lut": round(layer.cost, 1)}
                for gemm, layer in zip(self.layers, self.config.layers)]

    def pack_inputs(self, codes: np.ndarray) -> tuple[list[int], list[bool]]:
        """Input codes (samples × MW₀) → ``s_axis`` beats (``tdata`` as ints) and their ``tlast`` flags."""
        cfg = self.config
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != cfg.layers[0].in_codes:
            raise HwgenError(f"inputs must be (samples, {cfg.layers[0].in_codes}) codes, got shape {codes.shape}")
        if self.in_image is not None:           # NCHW → NHWC
            codes = codes.reshape(len(codes), *self.in_image).transpose(0, 2, 3, 1).reshape(len(codes), -1)
        beats = pack_lanes(cfg.in_type.encode(codes).reshape(-1, cfg.in_lanes), cfg.in_type.bits)
        last = [(index % cfg.in_beats) == cfg.in_beats - 1 for index in range(len(beats))]
        return beats, last

    def unpack_outputs(self, beats: Sequence[int]) -> np.ndarray:
        """``m_axis`` beats (``tdata`` as ints, whole samples) → output codes (samples × MH_last), int64."""
        cfg = self.config
        if len(beats) % cfg.out_beats:
            raise HwgenError(f"{len(beats)} output beats are not whole samples of {cfg.out_beats} beats")
        raw = unpack_lanes(list(beats), cfg.out_lanes, cfg.out_type.bits, signed=False)
        codes = cfg.out_type.decode(raw).reshape(-1, cfg.layers[-1].out_codes)
        if self.out_image is not None:          # NHWC → NCHW
            c, h, w = self.out_image
            codes = codes.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(codes), -1)
        return codes

    def pack_outputs(self, codes: np.ndarray) -> list[int]:
        """Output codes (samples × MH_last) → the ``m_axis`` beats the pipeline sends for them."""
        cfg = self.config
        codes = np.asarray(codes, np.int64)
        if self.out_image is not None:
            codes = codes.reshape(-1, *self.out_image).transpose(0, 2, 3, 1)
        return pack_lanes(cfg.out_type.encode(codes).reshape(-1, cfg.out_lanes), cfg.out_type.bits)

    def memory_init(self) -> list[dict]:
        """Initial memory contents per layer (ROM-style designs): ``weights``/``thresholds`` per PE as lists of
        words, and the ``zero_point``; pass to ``DataflowTop(config, init=...)``."""
        result = []
        for layer, gemm in zip(self.config.layers, self.layers):
            init = {"zero_point": gemm.zx}
            if layer.weighted:
                init["weights"] = weight_image(layer, gemm).tolist()
            if layer.thresholds:
                init["thresholds"] = threshold_image(layer, gemm).tolist()
            if layer.biased_stages:
                init["biases"] = bias_image(layer, gemm).tolist()
            result.append(init)
        return result


def weight_image(layer: LayerConfig, gemm: GemmLayer) -> np.ndarray:
    """Stored weights, (PE, SF·NF words, SIMD): word ``nf·SF + sf`` lane ``s`` of PE ``p`` is W[sf·SIMD + s,
    nf·PE + p] (bipolar: 1 ↔ +1)."""
    w = gemm.weight.reshape(layer.sf, layer.simd, layer.nf, layer.pe).transpose(3, 2, 0, 1)
    w = w.reshape(layer.pe, layer.steps, layer.simd)
    return (w > 0).astype(np.int64) if layer.bipolar else w


def threshold_image(layer: LayerConfig, gemm: GemmLayer) -> np.ndarray:
    """Stored threshold words, (PE, words, L + 1): word ``nf`` of PE ``p`` holds channel ``nf·PE + p``'s
    thresholds (clipped to the comparable range) then its negate flag; per-tensor thresholds are one word."""
    bound = layer.acc_bound
    table = np.clip(gemm.thresholds, -bound, bound + 1)
    words = np.concatenate([table, gemm.negate.astype(np.int64).reshape(-1, 1)], axis=1)
    if not layer.per_channel:
        return np.broadcast_to(words, (layer.pe, 1, layer.thresholds + 1)).copy()
    return words.reshape(layer.nf, layer.pe, -1).transpose(1, 0, 2)


def bias_image(layer: LayerConfig, gemm: GemmLayer) -> np.ndarray:
    """Stored bias words, (PE, NF words, biased stages): word ``nf`` of PE ``p`` holds channel ``nf·PE + p``'s
    bias of every stage that has one."""
    table = np.stack([np.broadcast_to(np.asarray(gemm.steps[k].bias, np.int64), (gemm.n,))
                      for k in layer.biased_stages], axis=1)
    return table.reshape(layer.nf, layer.pe, -1).transpose(1, 0, 2)


def _rows(target: int, bank: int, memory: tuple[int, int, int], image: np.ndarray) -> list[LoadRow]:
    return [element_row(target, bank, memory, p, word, lane, int(image[p, word, lane]))
            for p, word, lane in np.ndindex(*image.shape)]


def code_type(dtype) -> CodeType:
    """The stream code type of an IR integer type."""
    if isinstance(dtype, BipolarType):
        return CodeType(1, bipolar=True)
    return CodeType.of_range(dtype.min, dtype.max)


def unit_kind(layer: LayerConfig) -> str:
    """The unit a layer runs on, as reports name it."""
    kind = "add" if layer.add else f"{layer.pool}pool" if layer.pool else "VVAU" if layer.depthwise else "MVAU"
    return f"SWG+{kind}" if layer.window is not None else kind


def _group_base(name: str) -> str:
    return name.split("#")[0]


def dataflow_layers(layers: Sequence[GemmLayer]) -> list[GemmLayer]:
    """The GEMM layers as the dataflow pipeline runs them: a grouped convolution's per-group layers merged back
    into one (a depthwise layer: weight ``(taps, C)``; otherwise block-diagonal ``(taps·C, M)`` weights, rows in
    ``(ky, kx, c)`` order); refuses, by node, what the dataflow does not run."""
    merged: list[GemmLayer] = []
    index = 0
    while index < len(layers):
        gemm = layers[index]
        if len(gemm.inputs) > 1:              # a residual Add: weight [[ka·I], [kb·I]] → (2, C) per-channel taps
            channels = gemm.n
            if len(gemm.inputs) != 2 or gemm.k != 2 * channels:
                raise HwgenError(f"node '{gemm.name}' (Add): the dataflow add unit adds two tensors of equal shape")
            merged.append(replace(gemm, weight=np.stack([np.diag(gemm.weight[:channels]),
                                                         np.diag(gemm.weight[channels:])])))
            index += 1
            continue
        conv = gemm.conv
        if conv is None or conv.groups == 1:
            merged.append(gemm)
            index += 1
            continue
        group = layers[index:index + conv.groups]
        name = _group_base(gemm.name)
        if gemm.steps:
            raise HwgenError(f"node '{name}': the dataflow architecture runs grouped convolutions with threshold "
                             "requantization only")
        fields = {}
        if gemm.thresholds is not None:          # every group's rows (a shared row is repeated), one row if all equal
            rows = np.concatenate([np.broadcast_to(g.thresholds, (g.n, g.thresholds.shape[1])) for g in group])
            negate = np.concatenate([np.broadcast_to(g.negate, (g.n,)) for g in group])
            shared = bool(np.all(rows == rows[0]) and np.all(negate == negate[0]))
            fields = {"thresholds": rows[:1] if shared else rows, "negate": negate[:1] if shared else negate}
        taps = conv.kernel[0] * conv.kernel[1]
        if conv.cg == 1 and all(g.n == 1 for g in group):        # depthwise: one channel per group
            weight = np.concatenate([g.weight for g in group], axis=1)              # (taps, C)
        else:
            n_group = gemm.n
            weight = np.zeros((taps, conv.in_shape[0], n_group * conv.groups), np.int64)
            for g, part in enumerate(group):
                weight[:, g * conv.cg:(g + 1) * conv.cg, g * n_group:(g + 1) * n_group] = \
                    part.weight.reshape(taps, conv.cg, n_group)
            weight = weight.reshape(taps * conv.in_shape[0], -1)
        acc = (min(g.acc_range[0] for g in group), max(g.acc_range[1] for g in group))
        merged.append(replace(gemm, name=name, weight=weight, acc_range=acc, **fields,
                              conv=replace(conv, group=0), splits=(weight.shape[0],)))
        index += conv.groups
    return merged


def _depthwise(gemm: GemmLayer) -> bool:
    conv = gemm.conv
    return gemm.pool is not None or (conv is not None and conv.groups > 1 and conv.cg == 1
                                     and gemm.weight.shape[0] == conv.kernel[0] * conv.kernel[1])


def _geometry(gemm: GemmLayer) -> dict:
    """A layer's vectors per inference, window and unit (LayerConfig fields)."""
    conv = gemm.conv
    if conv is None or conv.flat_out:
        return {}
    c, h, w = conv.in_shape
    window = Window(c, h, w, conv.kernel, conv.strides, conv.pads)
    depthwise = _depthwise(gemm)
    if not depthwise and window.kernel == (h, w) and not window.padded:
        return {}                               # one window, the whole image in stream order: a plain vector
    fields = {"vectors": window.pixels, "depthwise": depthwise, "pool": gemm.pool}
    if depthwise or window.kernel != (1, 1) or window.strides != (1, 1) or window.padded:
        fields["window"] = window
    return fields


def layer_sources(layers: Sequence[GemmLayer]) -> tuple[tuple[int, ...], ...]:
    """The layers each layer reads (−1: the model input), from the tensors they consume and produce."""
    producer = {layers[0].inputs[0]: -1}
    sources = []
    for index, gemm in enumerate(layers):
        try:
            sources.append(tuple(producer[tensor] for tensor in gemm.inputs))
        except KeyError as error:
            raise HwgenError(f"node '{gemm.name}': its input {error} is not produced by an earlier layer") from None
        producer[gemm.output] = index
    if any(-1 in row for row in sources[1:]):
        raise HwgenError("the model input feeds more than the first layer; the dataflow pipeline streams it once")
    return tuple(sources)


def layer_configs(layers: Sequence[GemmLayer], in_type: CodeType) -> list[LayerConfig]:
    """Each layer's structure, fully folded (PE = SIMD = 1); refuses what the dataflow does not run, by node."""
    configs: list[LayerConfig] = []
    first_type = in_type
    for index, (gemm, sources) in enumerate(zip(layers, layer_sources(layers))):
        types = {first_type if s < 0 else configs[s].out_type for s in sources}
        if len(types) > 1:
            raise HwgenError(f"node '{gemm.name}' (Add): its inputs are codes of different types "
                             f"({', '.join(sorted(map(str, types)))}); the dataflow add unit needs one type (give "
                             "both branches the same quantizer)")
        in_type = types.pop()
        geometry = _geometry(gemm)
        if len(sources) > 1:
            geometry = {"add": True, "depthwise": True, "vectors": configs[sources[0]].vectors}
        pool = geometry.get("pool")
        bipolar = (in_type.bipolar and gemm.zx == 0 and pool is None and bool(np.all(np.abs(gemm.weight) == 1)))
        lo, hi = (-1, 1) if in_type.bipolar else (in_type.lo, in_type.hi)
        if not bipolar and not lo <= gemm.zx <= hi:
            raise HwgenError(f"node '{gemm.name}': input zero point {gemm.zx} is not a code of its {in_type} inputs")
        if pool == "max":
            requant = {}
        else:
            levels = 0 if gemm.thresholds is None else gemm.thresholds.shape[1]
            requant = {"thresholds": levels, "per_channel": levels > 0 and gemm.thresholds.shape[0] > 1,
                       "base": gemm.base, "step": gemm.step, "stages": gemm.stages,
                       "product_shift": gemm.product_shift, "product_rounding": gemm.product_rounding}
        mw, mh = gemm.weight.shape
        if geometry.get("depthwise") and not geometry.get("add"):
            window = geometry["window"]
            mw, mh = window.taps, window.channels
        try:
            layer = LayerConfig(mw=mw, mh=mh, pe=1, simd=1, in_type=in_type,
                                weight_bits=1 if bipolar or pool else gemm.weight_bits, bipolar=bipolar,
                                **requant, **geometry)
        except ValueError as error:
            raise HwgenError(f"node '{gemm.name}': {error}") from None
        if pool != "max" and not -layer.acc_bound <= gemm.acc_range[0] <= gemm.acc_range[1] <= layer.acc_bound:
            raise HwgenError(f"node '{gemm.name}': accumulator range {gemm.acc_range} exceeds the worst case "
                             f"±{layer.acc_bound} of its types")
        if index + 1 < len(layers) and not layer.requantized:
            raise HwgenError(f"node '{gemm.name}': only the last layer may skip requantization")
        configs.append(layer)
    return configs


def fold_config(configs: Sequence[LayerConfig], names: Sequence[str], fold=None, target_cycles: int | None = None,
                max_lanes: int | None = None, reuse: dict[str, int] | None = None,
                sources: tuple[tuple[int, ...], ...] = ()) -> DataflowConfig:
    """The unfolded layer ``configs`` folded as :func:`compile_dataflow` describes (no memory images)."""
    if fold is not None and target_cycles is not None:
        raise HwgenError("give either a fold or a target cycle count, not both")
    if target_cycles is not None:
        return DataflowConfig(auto_fold_configs(configs, target_cycles, names, max_lanes), sources)
    if fold is not None:
        folds = parse_fold(fold, names)
    elif reuse:
        folds = reuse_fold(configs, names, reuse)
    else:
        folds = tuple(LayerFold() for _ in configs)
    folded = []
    for name, layer, choice in zip(names, configs, folds):
        if (layer.pe, layer.simd) == (choice.pe, choice.simd):
            folded.append(layer)                # already checked at this folding
            continue
        try:
            folded.append(replace(layer, pe=choice.pe, simd=choice.simd))
        except ValueError as error:
            raise HwgenError(f"fold of '{name}' ({layer.mw}×{layer.mh}): {error}") from None
    return DataflowConfig(tuple(folded), sources)


def reuse_factors(graph) -> dict[str, int]:
    """hls4ml ReuseFactors of the graph's GEMM nodes, by node name (empty for other models)."""
    return {node.name: int(node.attrs["reuse_factor"]) for node in graph.nodes
            if node.op in ("MatMul", "FixedMatMul") and "reuse_factor" in node.attrs}


@dataclass(frozen=True)
class Unfolded:
    """A model's dataflow layers before folding: the GEMM layers as the pipeline runs them
    (:func:`dataflow_layers`), their fully folded configurations, what each reads, and hls4ml ReuseFactors."""

    layers: tuple[GemmLayer, ...]
    configs: tuple[LayerConfig, ...]
    sources: tuple[tuple[int, ...], ...]
    reuse: dict[str, int] = field(default_factory=dict)

    def fold(self, fold=None, target_cycles: int | None = None, max_lanes: int | None = None) -> DataflowConfig:
        """The configuration at a folding (see :func:`compile_dataflow`)."""
        return fold_config(self.configs, [layer.name for layer in self.layers], fold, target_cycles, max_lanes,
                           self.reuse, self.sources)


def unfolded(model_or_layers, input_type: CodeType | None = None) -> Unfolded:
    """A ``hwgen.Model`` (or its ``gemm_layers``) as dataflow layers; ``input_type``: the first layer's input code
    type (default: the model's, or signed ``in_bits`` for layers)."""
    reuse = {}
    if hasattr(model_or_layers, "graph"):
        graph = model_or_layers.graph
        layers = dataflow_layers(gemm_layers(graph, MAX_FUSED_THRESHOLDS))
        in_type = input_type or code_type(graph.tensors[layers[0].inputs[0]].dtype)
        reuse = reuse_factors(graph)
    else:
        layers = dataflow_layers(list(model_or_layers))
        if not layers:
            raise HwgenError("no layers to compile")
        in_type = input_type or CodeType(layers[0].in_bits, True)
    return Unfolded(tuple(layers), tuple(layer_configs(layers, in_type)), layer_sources(layers), reuse)


def compile_dataflow(model_or_layers, fold=None, target_cycles: int | None = None, max_lanes: int | None = None,
                     input_type: CodeType | None = None) -> DataflowProgram:
    """Compile a ``hwgen.Model`` (or its ``gemm_layers``) for the dataflow architecture.

    ``fold``: explicit folding (see ``folding.parse_fold``); ``target_cycles``: pick the cheapest folding meeting
    that many cycles per inference with at most ``max_lanes`` MAC lanes per layer (``folding.auto_fold``);
    neither: an hls4ml model's ReuseFactors (``folding.reuse_fold``: II = the largest reuse factor), else fully
    folded (PE = SIMD = 1).
    ``input_type``: the first layer's input code type (default: the model's, or signed ``in_bits`` for layers).
    """
    if fold is not None and target_cycles is not None:
        raise HwgenError("give either a fold or a target cycle count, not both")
    plan = unfolded(model_or_layers, input_type)
    layers = plan.layers
    config = plan.fold(fold, target_cycles, max_lanes)
    folded = config.layers
    weights, thresholds, parameters, biases = [], [], [], []
    for index, (layer, gemm) in enumerate(zip(folded, layers)):
        if layer.weighted:
            weights += _rows(WEIGHTS, index, layer.weight_memory, weight_image(layer, gemm))
        if layer.thresholds:
            thresholds += _rows(THRESHOLDS, index, layer.threshold_memory, threshold_image(layer, gemm))
        if layer.biased_stages:
            biases += _rows(BIASES, index, layer.bias_memory, bias_image(layer, gemm))
        if not layer.bipolar:
            parameters.append((PARAMETERS, index, 0, 0, gemm.zx & 0xFFFFFFFF))
    conv = layers[0].conv                       # an image input streams NHWC (also into a whole-image kernel)
    in_image = conv.in_shape if conv is not None and not conv.flat_out else None
    out_image = None
    if folded[-1].vectors > 1:                  # the image's size: the last convolution's output
        index = len(layers) - 1
        while layers[index].conv is None:
            index = config.sources[index][0]
        out_image = (folded[-1].mh, *layers[index].conv.out_hw)
    return DataflowProgram(config, tuple(layers), weights, thresholds, parameters, biases, in_image, out_image)
