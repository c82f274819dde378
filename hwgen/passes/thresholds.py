"""Streamlining: absorb a requantizer's float chain into integer thresholds (FINN's MultiThreshold).

``Requant(acc) = quantizer(chain(acc))`` is monotone in ``acc`` per channel, so it equals
``base + step * #{j : acc >= T[c, j]}`` for integer thresholds ``T`` (``acc <= T`` where the chain decreases,
e.g. a BatchNorm with negative gamma). The thresholds are found by bisection on the exact float32 function over
the accumulator's worst-case range, then verified at every step edge and on random points, so the pass is
bit-exact by construction and refuses (with the node named) a requantizer that is not monotone.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import HwgenError
from ..golden import multithreshold
from ..ir import BipolarType, DType, Graph, Node
from .analysis import value_bounds

MAX_THRESHOLD_BITS = 10      # wider outputs stay in Requant form (2^bits - 1 thresholds per channel)


def thresholds_for(node: Node, lo: np.ndarray, hi: np.ndarray, code: Callable | None = None, channels: int = 1,
                   dtype: DType | None = None, levels: tuple[int, int, int] | None = None) -> dict:
    """MultiThreshold attributes equivalent to the Requant ``node`` for inputs in [lo, hi] (per channel).

    Other monotone requantizers (``FixedCast``, lookup-table activations) pass their ``code`` function (int64
    inputs of shape (channels, k) → output codes), the number of ``channels`` it distinguishes and the output
    ``dtype``; ``levels`` = (base, step, count) when every output is ``base + step · j`` for j in 0 … count (else
    every code of ``dtype``: base = its minimum, step 1).
    """
    if code is None:
        chain, q = node.attrs["chain"], node.attrs["quantizer"]
        channels, dtype = max(chain.channels, q.channels), q.dtype

        def code(acc: np.ndarray) -> np.ndarray:      # acc: (channels, k)
            return q.quantize(chain.evaluate(acc, 0), 0)
    if channels == 1:
        lo, hi = np.array([np.min(lo)]), np.array([np.max(hi)])
    else:
        lo, hi = np.broadcast_to(lo, (channels,)).astype(np.int64), np.broadcast_to(hi, (channels,)).astype(np.int64)
    bipolar = isinstance(dtype, BipolarType)
    if levels is not None:
        base, step, count = levels
        levels = base + step * np.arange(1, count + 1)
    else:
        base, step = (-1, 2) if bipolar else (dtype.min, 1)
        levels = np.array([1]) if bipolar else np.arange(dtype.min + 1, dtype.max + 1)
    descending = code(lo[:, None])[:, 0] > code(hi[:, None])[:, 0]
    sign = np.where(descending, -1, 1)[:, None]
    # search b = sign * acc over [min, max] for the smallest b with code(sign * b) >= level
    b_lo = np.where(descending, -hi, lo)[:, None] * np.ones((1, levels.size), np.int64)
    b_hi = np.where(descending, -lo, hi)[:, None] + 1 + np.zeros((1, levels.size), np.int64)
    target = levels[None, :]
    while np.any(b_lo < b_hi):
        mid = (b_lo + b_hi) // 2
        ok = code(sign * np.minimum(mid, b_hi - 1)) >= target
        active = b_lo < b_hi
        b_hi = np.where(active & ok, mid, b_hi)
        b_lo = np.where(active & ~ok, mid + 1, b_lo)
    thresholds = np.sort(sign * b_lo, axis=1)
    attrs = {"thresholds": thresholds, "descending": descending, "base": base, "step": step,
             "axis": node.attrs["axis"]}
    _verify(node, code, attrs, lo, hi)
    return attrs


def _verify(node: Node, code, attrs: dict, lo: np.ndarray, hi: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    t = attrs["thresholds"]
    probes = [np.clip(t, lo[:, None], hi[:, None]), np.clip(t - 1, lo[:, None], hi[:, None]),
              np.clip(t + 1, lo[:, None], hi[:, None]), lo[:, None], hi[:, None]]
    span = (hi - lo).astype(np.float64)
    probes.append(lo[:, None] + np.floor(rng.random((lo.size, 256)) * (span[:, None] + 1)).astype(np.int64))
    acc = np.concatenate(probes, axis=1)
    got = multithreshold(acc, t, attrs["descending"], attrs["base"], attrs["step"], 0 if t.shape[0] > 1 else None)
    if not np.array_equal(got, code(acc)):
        raise HwgenError(f"node '{node.name}': requantizer is not monotone in its accumulator; it cannot be "
                         "expressed as thresholds")


class AbsorbIntoThresholds:
    """Requant nodes with at most MAX_THRESHOLD_BITS-bit outputs → MultiThreshold."""

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        if not any(self._eligible(n) for n in graph.nodes):
            return graph, False
        bounds = value_bounds(graph)
        nodes = []
        for node in graph.nodes:
            if self._eligible(node):
                lo, hi = bounds[node.inputs[0]]
                attrs = thresholds_for(node, lo, hi)
                attrs["quantizer"] = node.attrs["quantizer"]
                node = Node("MultiThreshold", node.name, node.inputs, node.outputs, attrs, node.source_ops)
            nodes.append(node)
        return graph.with_nodes(nodes), True

    @staticmethod
    def _eligible(node: Node) -> bool:
        return node.op == "Requant" and node.attrs["quantizer"].dtype.bits <= MAX_THRESHOLD_BITS
