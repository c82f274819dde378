"""What requantizes a layer's results, read off the IR: thresholds, or fixed-point stages.

After a GEMM (MatMul, Conv, their fixed-point forms), or on stored codes, the IR has either one ``MultiThreshold``
(run by the architectures' threshold units) or a run of fixed-point casts: ``FixedCast`` nodes and
``MultiThreshold`` nodes made from casts, which keep their ``steps`` (hls4ml's accumulator wrap, result cast,
activation, BatchNorm). A run of casts becomes :class:`Segment`\\ s of :class:`~hwgen.arch.fixed.FixedStage`
hardware. A stage has no multiplier: a per-channel multiply (BatchNorm's scale) starts a new segment, which the
architectures run as a diagonal GEMM (weight ``diag(scale)``) whose accumulators the segment's stages requantize
— exact, since the multiply comes before any rounding of that cast. Each segment's steps are simplified for its
input range (:func:`hwgen.ir.fixed.simplify_steps`: exact left shifts merge into the next cast).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import HwgenError
from ..ir import Graph, Node
from ..ir.fixed import FixedStep, simplify_steps

REQUANT_OPS = ("FixedCast", "MultiThreshold")


def is_flatten(node: Node) -> bool:
    return node.op == "Reshape" and len(node.attrs["shape"]) == 2


def is_cast_run(node: Node) -> bool:
    """Whether ``node`` is a fixed-point cast (a FixedCast, or a MultiThreshold that keeps its casts)."""
    return node.op == "FixedCast" or (node.op == "MultiThreshold" and "steps" in node.attrs)


def requant_chain(graph: Graph, first: Node) -> list[Node]:
    """The requantizer starting at ``first``: ``[first]`` for a MultiThreshold that was not made from casts (and
    for any MultiThreshold followed by no cast), else the run of casts from ``first`` through flattens."""
    chain = [first]
    tensor = first.outputs[0]
    while True:
        users = graph.consumers(tensor)
        if len(users) == 1 and is_flatten(users[0]):
            tensor = users[0].outputs[0]
            continue
        if not (is_cast_run(first) and len(users) == 1 and is_cast_run(users[0])):
            return chain
        chain.append(users[0])
        tensor = users[0].outputs[0]


def chain_after(graph: Graph, tensor: str) -> list[Node]:
    """The requantizer reading ``tensor`` (through flattens), or ``[]``."""
    users = graph.consumers(tensor)
    while len(users) == 1 and is_flatten(users[0]):
        users = graph.consumers(users[0].outputs[0])
    return requant_chain(graph, users[0]) if len(users) == 1 and users[0].op in REQUANT_OPS else []


def runs_as_stages(graph: Graph, node: Node, max_thresholds: int | None = None) -> bool:
    """Whether requantizer ``node`` runs as fixed-point stages (a FixedCast, or a MultiThreshold made from casts
    next to another cast, or with more than ``max_thresholds`` thresholds) rather than as thresholds."""
    if node.op == "FixedCast":
        return True
    if not is_cast_run(node):
        return False
    producer = graph.producer(node.inputs[0])
    while producer is not None and is_flatten(producer):
        producer = graph.producer(producer.inputs[0])
    return (producer is not None and is_cast_run(producer)) or \
        not is_thresholds(requant_chain(graph, node), max_thresholds)


def is_thresholds(chain: list[Node], max_thresholds: int | None = None) -> bool:
    """Whether the threshold units run ``chain`` (one MultiThreshold) rather than fixed-point stages.

    With ``max_thresholds``, a MultiThreshold made from multiply-free casts with more thresholds than that runs as
    its casts instead (an architecture comparing every threshold in parallel: ``2^bits - 1`` comparators per
    channel against an adder, a shifter and a clamp)."""
    if len(chain) != 1 or chain[0].op != "MultiThreshold":
        return False
    node = chain[0]
    if max_thresholds is None or "steps" not in node.attrs or node.attrs["thresholds"].shape[1] <= max_thresholds:
        return True
    return any(np.any(np.asarray(step.mult) != 1) for step in node.attrs["steps"])


@dataclass(frozen=True)
class Segment:
    """Fixed-point stages after an optional per-channel multiply.

    The first segment of a run requantizes its GEMM's accumulators (``mult`` is None); a later one reads the codes
    of ``input`` and runs as ``diag(mult)`` before its stages. Ranges are per channel (arrays of shape () or (C,)).
    """

    name: str                          # the IR node holding the segment's first step
    requant: str                       # the IR node holding its last step
    mult: np.ndarray | None            # per-channel multiply (int64, () or (C,)), or None
    steps: tuple[FixedStep, ...]       # multiply-free, simplified for ``acc_range``
    input: str                         # the code tensor the segment reads (its GEMM's accumulators: first segment)
    output: str                        # the code tensor its results stand for (synthetic names end in '#k')
    in_range: tuple[np.ndarray, np.ndarray]     # bounds of the codes of ``input`` (unused for the first segment)
    acc_range: tuple[np.ndarray, np.ndarray]    # bounds after the multiply: what the first stage reads
    out_range: tuple[np.ndarray, np.ndarray]


def fixed_segments(chain: list[Node], acc: tuple[np.ndarray, np.ndarray], source: str,
                   mult_first: bool = False) -> list[Segment]:
    """The segments of a run of casts ``chain`` reading values in ``acc`` (per-channel bounds) from ``source``.

    ``mult_first``: the run reads stored codes (no GEMM before it), so a multiply in its first step is the first
    segment's diagonal weight; after a GEMM, a first-step multiply is refused (fold it into the GEMM instead).
    """
    for node in chain:
        if not is_cast_run(node):
            raise HwgenError(f"node '{node.name}' ({node.op}): thresholds between fixed-point casts; hwgen runs a "
                             "run of casts as fixed-point stages only")
    segments: list[Segment] = []
    lo, hi = (np.asarray(b, np.int64) for b in acc)
    current: dict = {"name": chain[0].name, "mult": None, "steps": [], "input": source, "in": (lo, hi),
                     "acc": (lo, hi)}
    tensor = source

    def close(node: Node, output: str) -> None:
        steps = simplify_steps(tuple(current["steps"]), *current["acc"])
        segments.append(Segment(current["name"], node.name, current["mult"], steps, current["input"], output,
                                current["in"], current["acc"], (lo, hi)))

    for node in chain:
        for index, step in enumerate(node.attrs["steps"]):
            mult = np.asarray(step.mult, np.int64)
            if np.any(mult != 1):
                if current["steps"] or (not segments and not mult_first):
                    if not current["steps"]:
                        raise HwgenError(f"node '{node.name}': a per-channel multiply right after a GEMM's "
                                         "rounded products; hwgen runs multiplies as a diagonal GEMM on codes")
                    output = f"{node.outputs[0]}#{index}" if index else tensor
                    close(previous, output)
                    tensor = output
                ends = (lo * mult, hi * mult)
                acc_lo, acc_hi = np.minimum(*ends), np.maximum(*ends)
                current = {"name": node.name, "mult": mult, "steps": [], "input": tensor, "in": (lo, hi),
                           "acc": (acc_lo, acc_hi)}
                lo, hi = acc_lo, acc_hi
                step = replace(step, mult=np.array(1, np.int64))
            current["steps"].append(step)
            lo, hi, _ = step.bounds(lo, hi)
            previous = node
        tensor = node.outputs[0]
    close(chain[-1], chain[-1].outputs[0])
    return segments
