"""Streamlining of fixed-point casts (``FixedCast``, from hls4ml models): fuse them, then turn them into thresholds.

A ``FixedCast`` is monotone on its input's worst-case range when every step is (rounding, ReLU and saturation
always are; WRAP and SAT_ZERO only where nothing overflows, see :meth:`hwgen.ir.fixed.FixedStep.bounds`).
Consecutive monotone casts compose into one monotone cast, and a monotone cast with a result of at most
``MAX_THRESHOLD_BITS`` bits is a ``MultiThreshold`` (found by the same bisection and verification as float
requantizers). A cast that can wrap stays a ``FixedCast``: it is not monotone, so no threshold form exists, and it
is cheap in hardware as it is (add a rounding increment, drop the low bits, keep the low W bits). A
``MultiThreshold`` made from casts keeps them (``steps``), so a lowering may run the casts instead of the
thresholds (hwgen.arch.fixed: a few adders and bit slices against 2^bits - 1 comparisons).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ir.fixed import apply_steps, steps_bounds
from .analysis import value_bounds
from .thresholds import MAX_THRESHOLD_BITS, thresholds_for


def _monotone(node: Node, bounds: dict) -> bool:
    return steps_bounds(node.attrs["steps"], *bounds[node.inputs[0]])[2]


class FuseFixedCasts:
    """FixedCast → FixedCast (the first used only by the second) becomes one FixedCast when both are monotone."""

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        changed = False
        while True:                    # fuse whole runs at once, so thresholds see the complete composition
            fused = self._fuse_one(graph)
            if fused is None:
                return graph, changed
            graph, changed = fused, True

    @staticmethod
    def _fuse_one(graph: Graph) -> Graph | None:
        bounds = None
        for node in graph.nodes:
            if node.op != "FixedCast" or node.outputs[0] in graph.outputs:
                continue
            users = graph.consumers(node.outputs[0])
            if len(users) != 1 or users[0].op != "FixedCast":
                continue
            second = users[0]
            axes = {a for a in (node.attrs["axis"], second.attrs["axis"]) if a is not None}
            if len(axes) > 1:
                continue
            bounds = bounds or value_bounds(graph)
            if not (_monotone(node, bounds) and _monotone(second, bounds)):
                continue
            merged = Node("FixedCast", second.name, node.inputs, second.outputs,
                          {"steps": node.attrs["steps"] + second.attrs["steps"], "axis": next(iter(axes), None)},
                          node.source_ops + second.source_ops)
            return graph.with_nodes([merged if n is second else n for n in graph.nodes if n is not node])
        return None


class FixedCastToThresholds:
    """Monotone FixedCast nodes with at most MAX_THRESHOLD_BITS-bit results → MultiThreshold."""

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        if not any(n.op == "FixedCast" and n.attrs["steps"][-1].to.width <= MAX_THRESHOLD_BITS for n in graph.nodes):
            return graph, False
        bounds = value_bounds(graph)
        nodes, changed = [], False
        for node in graph.nodes:
            steps = node.attrs.get("steps")
            if node.op == "FixedCast" and steps[-1].to.width <= MAX_THRESHOLD_BITS and _monotone(node, bounds):
                lo, hi = bounds[node.inputs[0]]
                channels = max(max(np.size(s.mult), np.size(s.bias)) for s in steps)

                def code(acc: np.ndarray, steps=steps) -> np.ndarray:       # acc: (channels, k)
                    return apply_steps(steps, acc, 0)

                attrs = thresholds_for(node, lo, hi, code, channels, steps[-1].to.dtype)
                attrs["quantizer"] = steps[-1].to
                attrs["steps"] = steps          # the casts it stands for: hardware may run them instead
                node = Node("MultiThreshold", node.name, node.inputs, node.outputs, attrs, node.source_ops)
                changed = True
            nodes.append(node)
        return graph.with_nodes(nodes), changed
