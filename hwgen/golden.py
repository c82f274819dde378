"""The golden model: numpy execution of the integer IR, the reference every design is compared with.

Integer ops run exactly in int64 (through float64 BLAS where every partial sum is provably below 2^52). Only the
host-side ``Quantize`` and ``Dequantize`` nodes touch floats, with the source model's float32 semantics. Each op
has one registered executor; an op without one raises an error naming it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import kernels
from .errors import HwgenError
from .ir import Graph, Node
from .ir.fixed import apply_steps, product_matmul
from .ir.numerics import F32

Executor = Callable[[Node, list[np.ndarray]], np.ndarray]
EXECUTORS: dict[str, Executor] = {}


def executes(op: str):
    def register(fn: Executor) -> Executor:
        EXECUTORS[op] = fn
        return fn
    return register


def run(graph: Graph, x: np.ndarray, keep: bool = False) -> dict[str, np.ndarray]:
    """Execute ``graph`` on a batch ``x`` of shape (N, *input_shape[1:]).

    Returns the graph outputs (float32), plus every intermediate tensor if ``keep``.
    """
    (inp,) = graph.inputs
    expected = graph.tensors[inp].shape[1:]
    x = np.asarray(x)
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise HwgenError(f"input '{inp}' must have shape (N, {', '.join(map(str, expected))}), got {x.shape}")
    env: dict[str, np.ndarray] = {inp: x.astype(F32)}
    for node in graph.nodes:
        fn = EXECUTORS.get(node.op)
        if fn is None:
            raise HwgenError(f"node '{node.name}': the golden model has no executor for op {node.op}")
        env[node.outputs[0]] = fn(node, [env[i] for i in node.inputs])
    return env if keep else {o: env[o] for o in graph.outputs}


def _axis(node: Node) -> int | None:
    return node.attrs.get("axis")


@executes("Quantize")
def _quantize(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    value = ins[0].reshape((ins[0].shape[0],) + tuple(node.attrs["shape"][1:]))
    for op in node.attrs["pre"]:
        value = op.apply(value, None)
    return node.attrs["quantizer"].quantize(value, _axis(node))


@executes("Requant")
def _requant(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return node.attrs["quantizer"].quantize(node.attrs["chain"].evaluate(ins[0], _axis(node)), _axis(node))


@executes("MultiThreshold")
def _multithreshold(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return multithreshold(ins[0], node.attrs["thresholds"], node.attrs["descending"], node.attrs["base"],
                          node.attrs["step"], _axis(node))


def multithreshold(acc: np.ndarray, thresholds: np.ndarray, descending: np.ndarray, base: int, step: int,
                   axis: int | None) -> np.ndarray:
    """``base + step * #{j : acc >= T[c, j]}`` (``acc <= T[c, j]`` on descending channels); rows sorted ascending."""
    per_channel = thresholds.shape[0] > 1
    moved = np.moveaxis(acc, axis, -1) if per_channel else acc[..., None]
    count = np.empty(moved.shape, np.int64)
    for c in range(moved.shape[-1]):
        row = thresholds[c if per_channel else 0]
        if descending[c if per_channel else 0]:
            count[..., c] = row.size - np.searchsorted(row, moved[..., c], side="left")
        else:
            count[..., c] = np.searchsorted(row, moved[..., c], side="right")
    out = base + step * count
    return np.moveaxis(out, -1, axis) if per_channel else out[..., 0]


@executes("Dequantize")
def _dequantize(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return node.attrs["chain"].evaluate(ins[0], _axis(node))


@executes("MatMul")
def _matmul(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    weight = node.attrs["weight"]
    x = ins[0] - node.attrs["x_zero_point"]
    bound = int(np.abs(weight).sum(axis=0).max(initial=0)) * int(np.abs(x).max(initial=0))
    return kernels.matmul(x, weight, bound)


@executes("Conv")
def _conv(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    a = node.attrs
    weight = a["weight"]
    x = ins[0] - a["x_zero_point"]
    bound = int(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max(initial=0)) * int(np.abs(x).max(initial=0))
    return kernels.conv2d(x, weight, a["strides"], a["pads"], a["dilations"], a["groups"], bound)


@executes("MaxPool")
def _maxpool(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    a = node.attrs
    win = kernels.windows(ins[0], a["kernel"], a["strides"], a["pads"], a["dilations"], a["ceil_mode"],
                          np.iinfo(np.int64).min)
    return win.max(axis=(-2, -1))


@executes("SumPool")
def _sumpool(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    a = node.attrs
    x = ins[0] - a["x_zero_point"]
    if a["global"]:
        return x.sum(axis=(2, 3), keepdims=True)
    return kernels.windows(x, a["kernel"], a["strides"], a["pads"], (1, 1), a["ceil_mode"], 0).sum(axis=(-2, -1))


@executes("AddScaled")
def _addscaled(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    a = node.attrs
    return a["ka"] * (ins[0] - a["za"]) + a["kb"] * (ins[1] - a["zb"])


@executes("Reshape")
def _reshape(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return ins[0].reshape((ins[0].shape[0],) + tuple(node.attrs["shape"][1:]))


@executes("Transpose")
def _transpose(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return ins[0].transpose(node.attrs["perm"])


@executes("FixedCast")
def _fixed_cast(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return apply_steps(node.attrs["steps"], ins[0], _axis(node))


@executes("FixedMatMul")
def _fixed_matmul(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return product_matmul(ins[0], node.attrs["weight"], node.attrs["product_shift"], node.attrs["rounding"])


@executes("FixedConv")
def _fixed_conv(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    """Channels-last (N, H, W, C) convolution (``layout`` NCHW: channels-first in and out), weight (KH, KW, C, M),
    every product rounded as in FixedMatMul."""
    a = node.attrs
    kh, kw, c, m = a["weight"].shape
    nchw = a.get("layout", "NHWC") == "NCHW"
    win = kernels.windows(ins[0] if nchw else ins[0].transpose(0, 3, 1, 2), (kh, kw), a["strides"], a["pads"],
                          (1, 1), False, 0)
    patches = win.transpose(0, 2, 3, 4, 5, 1).reshape(*win.shape[:1], *win.shape[2:4], kh * kw * c)
    out = product_matmul(patches, a["weight"].reshape(-1, m), a["product_shift"], a["rounding"])
    return out.transpose(0, 3, 1, 2) if nchw else out
