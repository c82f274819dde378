"""Streamlining of data-movement ops: consecutive Reshapes/Transposes collapse, identities disappear."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

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


class AbsorbPermutationIntoMatMul:
    """Transpose/Reshape chains feeding a 2-D MatMul (or FixedMatMul, whose rounded products are summed in any
    order) only reorder features: fold the order into the weights.

    ``MatMul(shape_ops(S))`` with ``S`` of shape ``(1, *dims)`` becomes ``MatMul(Reshape(S → (1, K)))`` with the
    weight rows permuted, so the data path keeps every tensor in its natural row-major order (what both hardware
    architectures store) and the reordering costs nothing at run time.
    """

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        for node in graph.nodes:
            if node.op not in ("MatMul", "FixedMatMul") or len(graph.tensors[node.inputs[0]].shape) != 2:
                continue
            chain = self._chain(graph, node.inputs[0])
            if not chain or (len(chain) == 1 and chain[0].op == "Reshape"):
                continue                       # nothing to absorb (a lone flatten is already in order)
            source = graph.tensors[chain[0].inputs[0]]
            order = np.arange(int(np.prod(source.shape))).reshape(source.shape)
            for op in chain:
                order = order.reshape(op.attrs["shape"]) if op.op == "Reshape" else order.transpose(op.attrs["perm"])
            order = order.reshape(-1)
            weight = np.empty_like(node.attrs["weight"])
            weight[order] = node.attrs["weight"]
            flat = graph.tensors[node.inputs[0]].shape
            flatten = Node("Reshape", chain[-1].name, (source.name,), chain[-1].outputs, {"shape": flat},
                           tuple(s for op in chain for s in op.source_ops))
            matmul = node.with_attrs(weight=weight)
            dropped = {id(op) for op in chain}
            nodes = []
            for n in graph.nodes:
                if n is chain[-1]:
                    nodes.append(flatten)
                elif n is node:
                    nodes.append(matmul)
                elif id(n) not in dropped:
                    nodes.append(n)
            return graph.with_nodes(nodes), True
        return graph, False

    @staticmethod
    def _chain(graph: Graph, tensor: str) -> list[Node]:
        """The Reshape/Transpose nodes (each used once) between a non-shape producer and ``tensor``, in order."""
        chain: list[Node] = []
        producer = graph.producer(tensor)
        while producer is not None and producer.op in ("Reshape", "Transpose") \
                and len(graph.consumers(producer.outputs[0])) == 1 and producer.outputs[0] not in graph.outputs:
            chain.insert(0, producer)
            producer = graph.producer(producer.inputs[0])
        return chain


NHWC = (0, 2, 3, 1)                      # NCHW → NHWC
ELEMENTWISE = ("FixedCast", "MultiThreshold")


class SinkTransposes:
    """Channels-last transposes move toward the output, so channels-last graphs (hls4ml's) compute channels-first.

    A ``Transpose`` NCHW → NHWC used by one per-channel elementwise op (FixedCast, MultiThreshold) moves past it
    (the op's channel axis follows the permutation); one feeding a channels-last ``FixedConv`` makes it a
    channels-first one (``layout`` NCHW) followed by the transpose. The transposes then meet their inverses
    (around a MaxPool, :class:`CollapseShapeOps` removes them) or a flatten into a MatMul
    (:class:`AbsorbPermutationIntoMatMul`), and every image stays NCHW as in ONNX models: what the systolic
    array's convolutions read.
    """

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        for node in graph.nodes:
            if node.op != "Transpose" or tuple(node.attrs["perm"]) != NHWC or node.outputs[0] in graph.outputs:
                continue
            users = graph.consumers(node.outputs[0])
            if len(users) != 1:
                continue
            user = users[0]
            if user.op in ELEMENTWISE:
                axis = user.attrs.get("axis")
                moved = user.with_attrs(axis=None if axis is None else NHWC[axis])
                return self._swap(graph, node, moved, graph.tensors[node.inputs[0]].shape, moved.attrs["axis"]), True
            if user.op == "FixedConv" and user.attrs.get("layout", "NHWC") == "NHWC":
                out = graph.tensors[user.outputs[0]].shape
                return self._swap(graph, node, user.with_attrs(layout="NCHW"), (out[0], out[3], out[1], out[2]), 1), True
        return graph, False

    @staticmethod
    def _swap(graph: Graph, transpose: Node, op: Node, shape: tuple[int, ...], axis: int | None) -> Graph:
        """``op`` reads the transpose's input into a new tensor of ``shape``; the transpose makes ``op``'s output."""
        out = graph.tensors[op.outputs[0]]
        inner = f"{out.name}:nchw"
        tensors = {**graph.tensors, inner: replace(out, name=inner, shape=shape, axis=axis, source=None)}
        first = replace(op, inputs=(transpose.inputs[0],), outputs=(inner,))
        second = replace(transpose, inputs=(inner,), outputs=op.outputs)
        nodes = []
        for n in graph.nodes:
            if n is transpose:
                continue
            nodes += [first, second] if n.outputs == op.outputs else [n]
        return graph.with_nodes(nodes, tensors)
