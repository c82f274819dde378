"""Streamlining passes (qonnx/FINN style): each is a class with ``apply(graph) -> (graph, changed)``."""
from __future__ import annotations

from ..errors import HwgenError
from ..ir import Graph
from .fixed import AbsorbIntoNextThresholds, FixedCastToThresholds, FuseFixedCasts
from .shapes import AbsorbPermutationIntoMatMul, CollapseShapeOps, SinkTransposes
from .thresholds import AbsorbIntoThresholds

DEFAULT_PASSES = (SinkTransposes(), CollapseShapeOps(), AbsorbPermutationIntoMatMul(), AbsorbIntoThresholds(),
                  FuseFixedCasts(), AbsorbIntoNextThresholds(), FixedCastToThresholds())
MAX_ITERATIONS = 100


def streamline(graph: Graph, passes=DEFAULT_PASSES) -> Graph:
    """Run ``passes`` in order, repeatedly, until none changes the graph."""
    for _ in range(MAX_ITERATIONS):
        changed = False
        for p in passes:
            graph, did = p.apply(graph)
            changed |= did
        if not changed:
            return graph
    raise HwgenError(f"streamlining did not converge in {MAX_ITERATIONS} iterations")


__all__ = ["DEFAULT_PASSES", "AbsorbIntoNextThresholds", "AbsorbIntoThresholds", "AbsorbPermutationIntoMatMul", "CollapseShapeOps",
           "FixedCastToThresholds", "FuseFixedCasts", "SinkTransposes", "streamline"]
