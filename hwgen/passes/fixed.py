"""Streamlining of fixed-point casts (``FixedCast``, from hls4ml models): fuse them, then turn them into thresholds.

A ``FixedCast`` is monotone on its input's worst-case range when every step is (rounding, ReLU and saturation
always are; WRAP and SAT_ZERO only where nothing overflows, see :meth:`hwgen.ir.fixed.FixedStep.bounds`).
Consecutive monotone casts compose into one monotone cast, and a monotone cast with a result of at most
``MAX_THRESHOLD_BITS`` bits is a ``MultiThreshold`` (found by the same bisection and verification as float
requantizers). A cast that can wrap stays a ``FixedCast``: it is not monotone, so no threshold form exists, and it
is cheap in hardware as it is (add a rounding increment, drop the low bits, keep the low W bits). A
``MultiThreshold`` made from casts keeps them (``steps``), so a lowering may run the casts instead of the
thresholds (hwgen.arch.fixed: a few adders and bit slices against 2^bits - 1 comparisons).

A plain ``MultiThreshold`` on codes (an hls4ml lookup-table activation, hwgen.frontend.hls4ml_tables) after a
monotone cast or another ``MultiThreshold`` absorbs it: a monotone function of a monotone function is monotone, so
the pair is one ``MultiThreshold`` on the first node's input with the second's output levels — the activation then
runs in the requantizer of the layer before it instead of as a layer of its own.
"""
from __future__ import annotations

import numpy as np

from ..golden import multithreshold
from ..ir import Graph, Node
from ..ir.fixed import apply_steps, steps_bounds
from .analysis import value_bounds
from .thresholds import MAX_THRESHOLD_BITS, thresholds_for


def _monotone(node: Node, bounds: dict) -> bool:
    return steps_bounds(node.attrs["steps"], *bounds[node.inputs[0]])[2]


class _FuseRuns:
    """A pass fusing one pair of nodes at a time (``_fuse_one``) until none is left: whole runs at once, so
    thresholds see the complete composition."""

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        changed = False
        while True:
            fused = self._fuse_one(graph)
            if fused is None:
                return graph, changed
            graph, changed = fused, True


class FuseFixedCasts(_FuseRuns):
    """FixedCast → FixedCast (the first used only by the second) becomes one FixedCast when both are monotone."""

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


def _channels(node: Node) -> int:
    """Channels a FixedCast or MultiThreshold distinguishes (1: the same function for every channel)."""
    if node.op == "MultiThreshold":
        return int(node.attrs["thresholds"].shape[0])
    return max(max(np.size(s.mult), np.size(s.bias)) for s in node.attrs["steps"])


def _evaluate(node: Node, x: np.ndarray) -> np.ndarray:
    """``node`` (FixedCast or MultiThreshold) on ``x`` of shape (channels, k), channel axis 0."""
    if node.op == "FixedCast":
        return apply_steps(node.attrs["steps"], x, 0)
    a = node.attrs
    return multithreshold(x, a["thresholds"], a["descending"], a["base"], a["step"],
                          0 if a["thresholds"].shape[0] > 1 else None)


class AbsorbIntoNextThresholds(_FuseRuns):
    """A monotone FixedCast or a MultiThreshold whose only user is a plain MultiThreshold (one not made from casts)
    merges into it: ``MT2(f(x))`` is one MultiThreshold on ``x`` with MT2's levels, found by bisection on the exact
    composition over x's worst-case range."""

    @staticmethod
    def _fuse_one(graph: Graph) -> Graph | None:
        bounds = None
        for node in graph.nodes:
            if node.op != "MultiThreshold" or "steps" in node.attrs or node.attrs["step"] <= 0:
                continue
            first = graph.producer(node.inputs[0])
            if first is None or first.op not in ("FixedCast", "MultiThreshold") or first.outputs[0] in graph.outputs \
                    or len(graph.consumers(first.outputs[0])) != 1:
                continue
            per_channel = {(n.attrs["axis"], _channels(n)) for n in (first, node) if _channels(n) > 1}
            if len(per_channel) > 1:                       # per-channel along different axes (or counts)
                continue
            bounds = bounds or value_bounds(graph)
            if first.op == "FixedCast" and not _monotone(first, bounds):
                continue
            count = max(_channels(first), _channels(node))

            def code(x: np.ndarray, first=first, node=node) -> np.ndarray:       # x: (channels, k)
                return _evaluate(node, _evaluate(first, x))

            lo, hi = bounds[first.inputs[0]]
            a = node.attrs
            axis = next(iter(per_channel))[0] if per_channel else a["axis"]
            probe = Node(node.op, node.name, first.inputs, node.outputs, {"axis": axis}, node.source_ops)
            levels = (int(a["base"]), int(a["step"]), int(a["thresholds"].shape[1]))
            attrs = thresholds_for(probe, lo, hi, code, count, a.get("quantizer").dtype if "quantizer" in a else
                                   graph.tensors[node.outputs[0]].dtype, levels)
            if "quantizer" in a:
                attrs["quantizer"] = a["quantizer"]
            merged = Node("MultiThreshold", node.name, first.inputs, node.outputs, attrs,
                          first.source_ops + node.source_ops)
            return graph.with_nodes([merged if n is node else n for n in graph.nodes if n is not first])
        return None
