"""Streamlining of data-movement ops: consecutive Reshapes/Transposes collapse, identities disappear."""
from __future__ import annotations

from dataclasses import replace

from ..ir import Graph, Node


class CollapseShapeOps:
    """Reshape→Reshape becomes one Reshape, Transpose→Transpose one Transpose; identity ones are removed."""

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        for node in graph.nodes:
            if node.op in ("Reshape", "Transpose") and self._identity(graph, node) \
                    and node.outputs[0] not in graph.outputs:
                return self._bypass(graph, node), True
            users = graph.consumers(node.outputs[0])
            if node.op not in ("Reshape", "Transpose") or len(users) != 1 or users[0].op != node.op \
                    or node.outputs[0] in graph.outputs:
                continue
            second = users[0]
            attrs = dict(second.attrs)
            if node.op == "Transpose":
                attrs["perm"] = tuple(node.attrs["perm"][p] for p in second.attrs["perm"])
            merged = Node(node.op, second.name, node.inputs, second.outputs, attrs,
                          node.source_ops + second.source_ops)
            return graph.with_nodes([merged if n is second else n for n in graph.nodes if n is not node]), True
        return graph, False

    @staticmethod
    def _identity(graph: Graph, node: Node) -> bool:
        if node.op == "Transpose":
            return node.attrs["perm"] == tuple(range(len(node.attrs["perm"])))
        return graph.tensors[node.inputs[0]].shape == graph.tensors[node.outputs[0]].shape

    @staticmethod
    def _bypass(graph: Graph, node: Node) -> Graph:
        src, dst = node.inputs[0], node.outputs[0]
        nodes = [replace(n, inputs=tuple(src if i == dst else i for i in n.inputs)) for n in graph.nodes
                 if n is not node]
        return graph.with_nodes(nodes)
