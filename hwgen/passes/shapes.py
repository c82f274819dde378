"""Streamlining of data-movement ops: consecutive Reshapes and Transposes collapse into one."""
from __future__ import annotations

from ..ir import Graph, Node


class CollapseShapeOps:
    """Reshape→Reshape becomes one Reshape; Transpose→Transpose one Transpose (or nothing if they cancel)."""

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        for first in graph.nodes:
            users = graph.consumers(first.outputs[0])
            if first.op not in ("Reshape", "Transpose") or len(users) != 1 or users[0].op != first.op \
                    or first.outputs[0] in graph.outputs:
                continue
            second = users[0]
            if first.op == "Reshape":
                merged = Node("Reshape", second.name, first.inputs, second.outputs, dict(second.attrs),
                              first.source_ops + second.source_ops)
            else:
                perm = tuple(first.attrs["perm"][p] for p in second.attrs["perm"])
                merged = Node("Transpose", second.name, first.inputs, second.outputs, {"perm": perm},
                              first.source_ops + second.source_ops)
            nodes = [merged if n is second else n for n in graph.nodes if n is not first]
            return graph.with_nodes(nodes), True
        return graph, False
