"""``hwgen.load(path) -> Model``: an imported, streamlined model and its golden execution.

A model comes from an ONNX file (``load``), or from hls4ml: a ``.fml`` file written by hls4ml's
``serialize_model`` (``load`` too) or an in-memory ``ModelGraph`` (:meth:`Model.from_hls4ml`). Either way it keeps
its source as bytes (``source_name``, :meth:`Model.source_bytes`), which a written design carries so that
``open_design`` can load it again.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx

from . import golden
from .errors import HwgenError
from .frontend.importer import import_model
from .frontend.read import read_model
from .ir import Graph, Node
from .ir.graph import is_int
from .passes import streamline

HOST_OPS = ("Quantize", "Dequantize")


@dataclass(frozen=True)
class Layer:
    """One row of the layer table (``hwgen check``)."""

    name: str
    op: str                         # IR op
    source_ops: tuple[str, ...]     # ONNX ops it implements
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_type: str
    output_type: str
    acc_bits: int | None            # accumulator width (bits) of MatMul/Conv/SumPool/AddScaled outputs
    macs: int                       # multiply-accumulates per sample
    runs_on: str                    # "host" or "hardware"

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


class Model:
    """A quantized model imported into hwgen's integer IR.

    ``imported`` is the graph as imported (requantizers as float32 chains); ``graph`` the streamlined integer
    graph (thresholds) that hardware implements. Both give bit-identical results.
    """

    source_name = "model.onnx"          # the file name a written design keeps the source under

    def __init__(self, onnx_model: onnx.ModelProto, path: Path | None = None):
        self.path = path
        self.onnx_model = onnx_model
        self.imported: Graph = import_model(onnx_model)
        self.graph: Graph = streamline(self.imported)
        self._source: bytes | None = None

    @classmethod
    def from_graph(cls, imported: Graph, source_name: str, source: bytes, path: Path | None = None) -> Model:
        """A model imported by another front end: its IR, and its source file's name and bytes."""
        model = cls.__new__(cls)
        model.path, model.onnx_model = path, None
        model.imported, model.graph = imported, streamline(imported)
        model.source_name, model._source = source_name, source
        return model

    @classmethod
    def from_hls4ml(cls, hls_model, path: Path | None = None) -> Model:
        """The model of an hls4ml ``ModelGraph`` (its source: the model as hls4ml serializes it, ``model.fml``)."""
        from .frontend.hls4ml import fml_bytes, from_hls4ml

        return cls.from_graph(from_hls4ml(hls_model), "model.fml", fml_bytes(hls_model), path)

    def source_bytes(self) -> bytes:
        """The source model's file contents (ONNX: deterministic serialization)."""
        if self._source is not None:
            return self._source
        return self.onnx_model.SerializeToString(deterministic=True)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.tensors[self.graph.inputs[0]].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.graph.tensors[self.graph.outputs[0]].shape

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float32 outputs for a batch ``x`` of shape (N, *input_shape[1:]); shape (N, *output_shape[1:])."""
        return golden.run(self.graph, x)[self.graph.outputs[0]]

    def run_codes(self, x: np.ndarray) -> np.ndarray:
        """Integer codes (int64) of the last hardware layer: what the output dequantizer reads."""
        env = golden.run(self.graph, x, keep=True)
        return env[self.graph.producer(self.graph.outputs[0]).inputs[0]]

    def codes(self, x: np.ndarray, graph: Graph | None = None) -> dict[str, np.ndarray]:
        """Integer codes of every quantized activation, keyed by the ONNX tensor that holds them."""
        graph = graph or self.graph
        env = golden.run(graph, x, keep=True)
        return {t.source: env[name] for name, t in graph.tensors.items()
                if t.source is not None and is_int(t.dtype)}

    @cached_property
    def layers(self) -> list[Layer]:
        graph = self.graph
        rows = []
        for node in graph.nodes:
            tin = graph.tensors[node.inputs[0]]
            tout = graph.tensors[node.outputs[0]]
            acc_bits = tout.dtype.bits if node.op in ("MatMul", "Conv", "SumPool", "AddScaled", "FixedMatMul",
                                                      "FixedConv") else None
            rows.append(Layer(node.name, node.op, node.source_ops, tin.shape, tout.shape, str(tin.dtype),
                              str(tout.dtype), acc_bits, _macs(node, tout.shape),
                              "host" if node.op in HOST_OPS else "hardware"))
        return rows

    def check(self) -> dict:
        """Support report: every op is supported (or loading would have failed) and the layer table."""
        return {"supported": True, "issues": [], "layers": [layer.as_dict() for layer in self.layers]}


def _macs(node: Node, out_shape: tuple[int, ...]) -> int:
    if node.op in ("MatMul", "FixedMatMul"):
        weight = node.attrs["weight"]
        return int(np.prod(out_shape[1:-1], dtype=np.int64)) * weight.size
    if node.op == "Conv":
        weight = node.attrs["weight"]
        return int(np.prod(out_shape[2:])) * weight.size
    if node.op == "FixedConv":                     # weight (KH, KW, C, M); output NHWC, or NCHW after streamlining
        spatial = out_shape[2:] if node.attrs.get("layout", "NHWC") == "NCHW" else out_shape[1:3]
        return int(np.prod(spatial)) * node.attrs["weight"].size
    return 0


def load(path: str | Path) -> Model:
    """Read, validate, import and streamline an ONNX model (or an hls4ml ``.fml`` model); raises
    :class:`hwgen.HwgenError` on bad input."""
    path = Path(path)
    if path.suffix == ".fml":
        return load_fml(path)
    return Model(read_model(path), path)


def load_fml(path: str | Path) -> Model:
    """An hls4ml model saved with hls4ml's ``serialize_model`` (``.fml``), imported and streamlined."""
    from .frontend.hls4ml import canonical_fml, read_hls4ml
    from .frontend.hls4ml import from_hls4ml as import_hls4ml

    path = Path(path)
    hls_model = read_hls4ml(path)
    return Model.from_graph(import_hls4ml(hls_model), "model.fml", canonical_fml(path.read_bytes()), path)


def as_model(model) -> Model:
    """A :class:`Model` from a Model, a path (ONNX or ``.fml``) or an hls4ml ``ModelGraph``."""
    if isinstance(model, Model):
        return model
    if isinstance(model, (str, Path)):
        return load(model)
    if hasattr(model, "get_layers") and hasattr(model, "config"):
        return Model.from_hls4ml(model)
    raise HwgenError(f"expected a model path, a hwgen.Model or an hls4ml ModelGraph, got {type(model).__name__}")
