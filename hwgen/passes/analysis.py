"""Pure analyses of the integer graph: worst-case value bounds per channel, and the types they imply.

Bounds are exact (Python ints via int64 with an overflow guard): accumulator widths derived from them cannot
overflow, whatever the data (FINN DataType-bound style).
"""
from __future__ import annotations

import numpy as np

from ..errors import HwgenError
from ..ir import Graph, Node
from ..ir.fixed import round_shift, steps_bounds
from ..ir.types import DType, int_range

Bounds = tuple[np.ndarray, np.ndarray]     # (lo, hi): int64 arrays, shape () or (C,) along the tensor's axis
INT64_SAFE = 1 << 62


def _span(lo: np.ndarray, hi: np.ndarray) -> tuple[int, int]:
    return int(np.min(lo)), int(np.max(hi))


def weighted_bounds(weight: np.ndarray, lo: int, hi: int, reduce_axes: tuple[int, ...], where: str) -> Bounds:
    """Range of sum(w * x) over ``reduce_axes`` for x anywhere in [lo, hi]."""
    magnitude = float(np.abs(weight).astype(np.float64).sum(axis=reduce_axes).max(initial=0)) * max(abs(lo), abs(hi))
    if magnitude >= INT64_SAFE:
        raise HwgenError(f"{where}: worst-case accumulator exceeds 62 bits; reduce bit widths or layer size")
    w = weight.astype(np.int64)
    low = np.minimum(w * lo, w * hi).sum(axis=reduce_axes)
    high = np.maximum(w * lo, w * hi).sum(axis=reduce_axes)
    return low, high


def node_bounds(node: Node, inputs: list[Bounds], out_dtype: DType | None = None) -> Bounds:
    """Worst-case output bounds of ``node`` given its inputs' bounds."""
    op, a = node.op, node.attrs
    if op in ("Quantize", "Requant", "MultiThreshold"):
        dtype = a["quantizer"].dtype if "quantizer" in a else out_dtype
        return np.array(dtype.min), np.array(dtype.max)
    lo, hi = _span(*inputs[0])
    if op == "MatMul":
        zp = a["x_zero_point"]
        return weighted_bounds(a["weight"], lo - zp, hi - zp, (0,), f"node '{node.name}'")
    if op == "Conv":
        zp = a["x_zero_point"]
        padded = any(a["pads"])
        return weighted_bounds(a["weight"], min(lo - zp, 0) if padded else lo - zp,
                               max(hi - zp, 0) if padded else hi - zp, (1, 2, 3), f"node '{node.name}'")
    if op == "MaxPool":
        return inputs[0]
    if op == "SumPool":
        zp, count = a["x_zero_point"], a["window"]
        return np.array(count * min(lo - zp, 0)), np.array(count * max(hi - zp, 0))
    if op == "AddScaled":
        lo2, hi2 = _span(*inputs[1])
        terms = [sorted((a["ka"] * (lo - a["za"]), a["ka"] * (hi - a["za"]))),
                 sorted((a["kb"] * (lo2 - a["zb"]), a["kb"] * (hi2 - a["zb"])))]
        low, high = terms[0][0] + terms[1][0], terms[0][1] + terms[1][1]
        if max(abs(low), abs(high)) >= INT64_SAFE:
            raise HwgenError(f"node '{node.name}' (Add): rescaled sum exceeds 62 bits; the two inputs' scales are "
                             "too far apart")
        return np.array(low), np.array(high)
    if op in ("Reshape", "Transpose"):
        return np.array(lo), np.array(hi)
    if op == "FixedCast":
        return steps_bounds(a["steps"], *inputs[0])[:2]
    if op in ("FixedMatMul", "FixedConv"):         # every product rounded (monotone) before the sum
        weight = a["weight"].reshape(-1, a["weight"].shape[-1]).astype(np.int64)
        if op == "FixedConv" and any(a["pads"]):
            lo, hi = min(lo, 0), max(hi, 0)
        weighted_bounds(weight, lo, hi, (0,), f"node '{node.name}'")
        ends = [round_shift(weight * v, a["product_shift"], a["rounding"]) for v in (lo, hi)]
        return np.minimum(*ends).sum(axis=0), np.maximum(*ends).sum(axis=0)
    raise HwgenError(f"node '{node.name}': no bounds rule for op {op}")


def dtype_of(bounds: Bounds) -> DType:
    return int_range(*_span(*bounds))


def value_bounds(graph: Graph) -> dict[str, Bounds]:
    """Bounds of every integer tensor of ``graph``."""
    result: dict[str, Bounds] = {}
    for node in graph.nodes:
        if node.op == "Dequantize":
            continue
        ins = [result[i] for i in node.inputs if i in result]
        result[node.outputs[0]] = node_bounds(node, ins, graph.tensors[node.outputs[0]].dtype)
    return result
