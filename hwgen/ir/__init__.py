"""hwgen's intermediate representation: integer types, float32 numerics of the source model, the graph."""
from .graph import FLOAT32, Graph, Node, Tensor
from .numerics import Chain, FloatOp, Quantizer
from .types import BipolarType, DType, IntType, int_range, quant_type

__all__ = ["FLOAT32", "BipolarType", "Chain", "DType", "FloatOp", "Graph", "IntType", "Node", "Quantizer", "Tensor",
           "int_range", "quant_type"]
