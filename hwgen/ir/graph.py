"""The typed integer graph: tensors with shapes and integer types, nodes in topological order.

Between the host-side ``Quantize`` (float input → codes) and ``Dequantize`` (integer → float output) every tensor
is an integer tensor. Shapes carry the batch as their first dimension (nominally 1; execution takes any N).
``axis`` is the channel axis that per-channel parameters broadcast along (``None`` if there are none).
Graphs are immutable by convention: passes build new node lists instead of editing nodes in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .types import BipolarType, DType, IntType

FLOAT32 = "FLOAT32"


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType | str                 # an integer type, or FLOAT32 for host-side inputs/outputs
    axis: int | None = None            # channel axis (per-channel parameters broadcast along it)
    source: str | None = None          # the ONNX tensor whose integer codes this is, if any

    @property
    def is_float(self) -> bool:
        return self.dtype == FLOAT32


@dataclass(frozen=True)
class Node:
    op: str                             # Quantize, MatMul, Conv, MaxPool, SumPool, AddScaled, Requant,
                                        # MultiThreshold, Dequantize, Reshape, Transpose; fixed point
                                        # (ir/fixed.py): FixedCast, FixedMatMul, FixedConv
    name: str                           # the ONNX node it came from (unsanitized; see hwgen.names)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    source_ops: tuple[str, ...] = ()    # ONNX op types this node implements

    def with_attrs(self, **attrs: Any) -> Node:
        return replace(self, attrs={**self.attrs, **attrs})


@dataclass(frozen=True)
class Graph:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    tensors: dict[str, Tensor]
    name: str = "model"

    def producer(self, tensor: str) -> Node | None:
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def with_nodes(self, nodes: list[Node] | tuple[Node, ...], tensors: dict[str, Tensor] | None = None) -> Graph:
        used = set(self.inputs) | set(self.outputs)
        for node in nodes:
            used.update(node.inputs)
            used.update(node.outputs)
        all_tensors = self.tensors if tensors is None else tensors
        return replace(self, nodes=tuple(nodes), tensors={k: v for k, v in all_tensors.items() if k in used})


def is_int(dtype: DType | str) -> bool:
    return isinstance(dtype, (IntType, BipolarType))
