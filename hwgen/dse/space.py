"""A design space: models × architectures × parameters × targets, with constraints and objectives.

YAML (the same structure as :meth:`Space.from_dict`; relative paths are relative to the YAML file)::

    name: digits                          # optional, shown in reports
    models: [digits_mlp/digits_mlp.onnx]  # one or more ONNX files (model variants)
    targets: [ecp5-25k, ice40-up5k]       # hwgen.estimate targets; null: cycles only (default: [ecp5-25k])
    samples: 1                            # samples per inference for the `cycles` metric (default 1)
    inputs: digits_mlp/test_x.npy         # `sim` evaluator: inputs (the first `samples` are simulated)
    architectures:
      systolic:                           # every axis: a value, a list, or {from, to, step} / {from, to, times}
        rows: {from: 2, to: 16, times: 2}
        cols: [4, 8, 16]
        dataflow: [os, ws]
        batch: 64
        act_depth: [1024, 2048]           # any SystolicConfig field (scratchpad depths, bit widths)
      dataflow:
        target_cycles: [16, 64, 256, 1024]
        max_lanes: [null, 64]
    constraints: ["lut <= 5000", "throughput >= 1e5"]
    objectives: {cycles: min, lut: min}   # or a list: ["min cycles", "max throughput"]

The points are the cartesian product per architecture (each architecture's own axes), times models, times
targets. A :class:`Point` is plain JSON-ready data; its :attr:`Point.hash` identifies it in the store and depends
only on the model file's *contents* (sha256), the architecture, the canonical parameters (compile defaults filled
in, ``null`` axes dropped), the target and ``samples`` — not on paths, axis order or YAML formatting.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..compat import cached_property
from ..errors import HwgenError

SPEC_KEYS = ("name", "models", "targets", "samples", "inputs", "architectures", "constraints", "objectives")
SYSTOLIC_DEFAULTS = {"rows": 8, "cols": 8, "dataflow": "os", "batch": 64}   # hwgen.compile's defaults
SYSTOLIC_FIELDS = ("a_bits", "w_bits", "k_max", "out_bits", "act_depth", "weight_depth", "slot_depth",
                   "out_depth", "prog_depth", "acc_depth")
AXES = {
    "systolic": ("rows", "cols", "dataflow", "batch") + SYSTOLIC_FIELDS,
    "dataflow": ("target_cycles", "max_lanes", "fold"),
}
NULLABLE = {"target_cycles", "max_lanes", "fold"}
CHOICES = {"dataflow": ("os", "ws")}
DEFAULT_TARGETS = ("ecp5-25k",)

# Metric name → (unit, what produces it). Constraints and objectives may name any of these; rows that lack a
# metric (e.g. ``area`` before the ASIC estimates exist, or any estimate with ``targets: [null]``) are left out
# of the Pareto front and counted in the report.
METRICS = {
    "cycles": ("cycles", "cycle model (analytic) or Verilator (sim): `samples` samples"),
    "predicted_cycles": ("cycles", "cycle model"),
    "latency_cycles": ("cycles", "estimate: one sample"),
    "ii_cycles": ("cycles", "dataflow: initiation interval"),
    "batch": ("samples", "systolic: samples per run"),
    "macs": ("MAC", "model: multiply-accumulates per inference"),
    "mac_units": ("MAC units", "systolic rows·cols; dataflow Σ PE·SIMD"),
    "utilization": ("fraction", "steady-state MAC-unit utilization"),
    "lut": ("LUT", "estimate"), "ff": ("FF", "estimate"), "carry": ("carry", "estimate"),
    "dsp": ("DSP", "estimate"), "bram": ("BRAM", "estimate"),
    "util_lut": ("%", "estimate"), "util_ff": ("%", "estimate"), "util_carry": ("%", "estimate"),
    "util_dsp": ("%", "estimate"), "util_bram": ("%", "estimate"),
    "fmax": ("MHz", "estimate"), "latency": ("µs", "estimate"), "throughput": ("inferences/s", "estimate"),
    "area": ("µm²", "ASIC estimate (when available)"),
    "power": ("mW", "power estimate (when available)"),
    "energy_per_inference": ("nJ", "power estimate (when available)"),
    "bit_exact": ("bool", "sim"), "mismatches": ("codes", "sim"), "sim_seconds": ("s", "sim"),
}
_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
            "!=": operator.ne}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|!=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. ``lut <= 5000``."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str, where: str = "constraints") -> Constraint:
        match = _CONSTRAINT.match(str(text))
        if not match:
            raise HwgenError(f"{where}: {text!r} is not 'METRIC OP NUMBER' (OP one of {' '.join(_COMPARE)})")
        name, op, number = match.groups()
        _check_metric(name, where)
        try:
            bound = float(number)
        except ValueError:
            raise HwgenError(f"{where}: {number!r} in {text!r} is not a number") from None
        return cls(name, op, bound)

    def holds(self, metrics: Mapping[str, Any]) -> bool | None:
        """True/False, or None when the row has no such metric."""
        value = metrics.get(self.metric)
        return None if value is None else bool(_COMPARE[self.op](float(value), self.bound))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Objective:
    metric: str
    sense: str          # "min" or "max"

    def __str__(self) -> str:
        return f"{self.sense} {self.metric}"


@dataclass(frozen=True)
class Point:
    """One design point. ``model`` is the path the evaluator loads; ``model_sha256`` what the hash uses."""

    model: str
    model_sha256: str
    arch: str
    params: dict
    target: str | None
    samples: int = 1

    @property
    def key(self) -> dict:
        return {"model_sha256": self.model_sha256, "arch": self.arch, "params": self.params,
                "target": self.target, "samples": self.samples}

    @cached_property
    def hash(self) -> str:
        """:func:`point_hash` of :attr:`key` (computed once per point: the sweep, the store and the evaluator all
        ask for it)."""
        return point_hash(self.key)

    @property
    def label(self) -> str:
        """A short configuration label for tables and plots, e.g. ``S 8×8 os`` or ``D tc=64 ml=16``."""
        p = self.params
        if self.arch == "systolic":
            extra = " ".join(f"{k}={v}" for k, v in p.items() if k not in ("rows", "cols", "dataflow", "batch"))
            text = f"S {p['rows']}×{p['cols']} {p['dataflow']}" + (f" b{p['batch']}" if p["batch"] != 64 else "")
            return f"{text} {extra}".strip()
        parts = ["D"] + [f"{short}={p[k]}" for k, short in (("target_cycles", "tc"), ("max_lanes", "ml"))
                         if k in p]
        if "fold" in p:
            parts.append("fold=" + hashlib.sha256(json.dumps(p["fold"]).encode()).hexdigest()[:6])
        return " ".join(parts) if len(parts) > 1 else "D unfolded"

    def as_dict(self) -> dict:
        return {"model": self.model, "model_sha256": self.model_sha256, "arch": self.arch, "params": self.params,
                "target": self.target, "samples": self.samples}

    @classmethod
    def from_dict(cls, data: Mapping) -> Point:
        """The point of :meth:`as_dict`'s data; a ``hash`` entry (:meth:`task` data, the hash the sweep computed)
        is taken as the point's hash rather than computed again."""
        point = cls(data["model"], data["model_sha256"], data["arch"], dict(data["params"]), data["target"],
                    data.get("samples", 1))
        if "hash" in data:
            point.__dict__["hash"] = data["hash"]
        return point

    def task(self) -> dict:
        """:meth:`as_dict` plus the point's ``hash``: what a sweep sends to its workers."""
        return {**self.as_dict(), "hash": self.hash}


def point_hash(key: Mapping) -> str:
    """sha256 (hex, 64 characters) of the canonical JSON of a point's key: sorted keys, no whitespace."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Space:
    """A declared design space (Python or YAML). ``architectures``: arch → axis → values (a value, a list, or
    ``{"from", "to", "step"|"times"}``)."""

    models: list[str | Path]
    architectures: dict[str, dict[str, Any]]
    targets: list[str | None] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    constraints: list[Constraint] = field(default_factory=list)
    objectives: list[Objective] = field(default_factory=list)
    samples: int = 1
    inputs: str | Path | None = None
    name: str = "sweep"
    base: Path | None = None          # relative model/inputs paths resolve against this (the YAML's folder)

    def __post_init__(self) -> None:
        if isinstance(self.models, (str, Path)):
            self.models = [self.models]
        if not isinstance(self.models, list) or not self.models:
            raise HwgenError("models: expected a non-empty list of ONNX paths")
        for index, model in enumerate(self.models):
            if not isinstance(model, (str, Path)):
                raise HwgenError(f"models[{index}]: expected a path, got {model!r}")
        if not isinstance(self.architectures, Mapping) or not self.architectures:
            raise HwgenError(f"architectures: expected a mapping with one or more of {', '.join(AXES)}")
        self.architectures = {arch: _check_axes(arch, axes) for arch, axes in self.architectures.items()}
        if self.targets is None or isinstance(self.targets, str):
            self.targets = [self.targets]
        if not isinstance(self.targets, list) or not self.targets:
            raise HwgenError("targets: expected a list of target names (or [null] for cycles only)")
        for index, name in enumerate(self.targets):
            check_target(name, f"targets[{index}]")
        self.constraints = [c if isinstance(c, Constraint) else Constraint.parse(c, f"constraints[{i}]")
                            for i, c in enumerate(self.constraints or [])]
        self.objectives = parse_objectives(self.objectives)
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise HwgenError(f"samples: expected a positive integer, got {self.samples!r}")
        if not isinstance(self.name, str):
            raise HwgenError(f"name: expected a string, got {self.name!r}")

    # ------------------------------------------------------------------------------------------------ parsing
    @classmethod
    def from_dict(cls, spec: Mapping, base: Path | None = None) -> Space:
        if not isinstance(spec, Mapping):
            raise HwgenError(f"sweep spec: expected a mapping at the top level, got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise HwgenError(f"sweep spec: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"known: {', '.join(SPEC_KEYS)}")
        for key in ("models", "architectures"):
            if key not in spec:
                raise HwgenError(f"sweep spec: missing '{key}'")
        kwargs = {k: spec[k] for k in SPEC_KEYS if k in spec}
        return cls(base=base, **kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Space:
        import yaml

        path = Path(path)
        try:
            spec = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise HwgenError(f"{path}: cannot read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise HwgenError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', exc)})") from None
        try:
            return cls.from_dict(spec, base=path.resolve().parent)
        except HwgenError as exc:
            raise HwgenError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        """The spec as JSON-ready data (paths resolved), as stored with each sweep."""
        return {"name": self.name, "models": [str(self.resolve(m)) for m in self.models],
                "targets": list(self.targets), "samples": self.samples,
                "inputs": None if self.inputs is None else str(self.resolve(self.inputs)),
                "architectures": self.architectures, "constraints": [str(c) for c in self.constraints],
                "objectives": [str(o) for o in self.objectives]}

    def resolve(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() or self.base is None else self.base / path

    # ------------------------------------------------------------------------------------------------ points
    def points(self) -> list[Point]:
        """Every distinct point (by hash), in a deterministic order (model, arch, axes as declared, target)."""
        result, seen = [], set()
        for model in self.models:
            path = self.resolve(model)
            sha = file_sha256(path)
            for arch, axes in self.architectures.items():
                names = list(axes)
                for combo in itertools.product(*(axes[name] for name in names)):
                    params = canonical_params(arch, dict(zip(names, combo)))
                    for target in self.targets:
                        point = Point(str(path), sha, arch, params, target, self.samples)
                        if point.hash not in seen:
                            seen.add(point.hash)
                            result.append(point)
        return result

    def size(self) -> int:
        """Points before duplicates are merged (the product of the axes)."""
        per_model = 0
        for axes in self.architectures.values():
            combos = 1
            for values in axes.values():
                combos *= len(values)
            per_model += combos
        return per_model * len(self.models) * len(self.targets)


def canonical_params(arch: str, params: Mapping) -> dict:
    """Parameters with ``hwgen.compile``'s defaults filled in and ``None`` dropped, keys sorted."""
    merged = dict(SYSTOLIC_DEFAULTS) if arch == "systolic" else {}
    merged.update({k: v for k, v in params.items() if v is not None})
    if arch == "dataflow" and "target_cycles" not in merged:
        merged.pop("max_lanes", None)          # hwgen.compile ignores a lane budget without a cycle target
    return dict(sorted(merged.items()))


def parse_objectives(value) -> list[Objective]:
    """``{metric: min|max}``, ``["min cycles", "lut"]`` (bare names minimize) or Objective instances."""
    if value is None:
        return []
    items: list[tuple[str, str, str]] = []
    if isinstance(value, Mapping):
        items = [(str(k), str(v), f"objectives.{k}") for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        for index, entry in enumerate(value):
            if isinstance(entry, Objective):
                items.append((entry.metric, entry.sense, f"objectives[{index}]"))
                continue
            words = str(entry).replace(":", " ").split()
            if len(words) == 1:
                words = ["min", words[0]]
            if len(words) != 2:
                raise HwgenError(f"objectives[{index}]: {entry!r} is not 'min METRIC' or 'max METRIC'")
            sense, name = (words if words[0] in ("min", "max", "minimize", "maximize") else words[::-1])
            items.append((name, sense, f"objectives[{index}]"))
    else:
        raise HwgenError(f"objectives: expected a mapping metric → min|max or a list, got {value!r}")
    result = []
    for name, sense, where in items:
        sense = {"minimize": "min", "maximize": "max"}.get(sense, sense)
        if sense not in ("min", "max"):
            raise HwgenError(f"{where}: {sense!r} is not min or max")
        _check_metric(name, where)
        result.append(Objective(name, sense))
    return result


def check_target(name, where: str = "target") -> None:
    """Refuse an unknown target, listing the known ones. Targets are the FPGA parts of ``hwgen.estimate`` and,
    once the ASIC estimates exist, whatever ``hwgen.estimate.ASIC_TARGETS`` names: the evaluator only calls
    ``design.estimate(target)`` and stores every metric the estimate returns."""
    if name is None:
        return
    known = known_targets()
    if name not in known:
        raise HwgenError(f"{where}: unknown target {name!r}; known: {', '.join(known)} (or null: no estimate)")


def known_targets() -> list[str]:
    from .. import estimate

    return list(estimate.TARGETS) + list(getattr(estimate, "ASIC_TARGETS", ()))


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a model file's bytes (cached by path, size and modification time)."""
    try:
        stat = path.stat()
    except OSError:
        raise HwgenError(f"model {path}: no such file") from None
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


def _check_metric(name: str, where: str) -> None:
    if name not in METRICS:
        raise HwgenError(f"{where}: unknown metric {name!r}; known: {', '.join(METRICS)}")


def _check_axes(arch: str, axes) -> dict[str, list]:
    if arch not in AXES:
        raise HwgenError(f"architectures: unknown architecture {arch!r}; available: {', '.join(AXES)}")
    if axes is None:
        axes = {}
    if not isinstance(axes, Mapping):
        raise HwgenError(f"architectures.{arch}: expected a mapping axis → values, got {axes!r}")
    result = {}
    for name, raw in axes.items():
        where = f"architectures.{arch}.{name}"
        if name not in AXES[arch]:
            raise HwgenError(f"{where}: unknown axis {name!r} for {arch}; available: {', '.join(AXES[arch])}")
        values = _expand(raw, where)
        for index, value in enumerate(values):
            _check_value(name, value, f"{where}[{index}]" if len(values) > 1 or isinstance(raw, list) else where)
        result[name] = values
    return result


def _expand(raw, where: str) -> list:
    if isinstance(raw, Mapping) and "from" in raw:
        extra = sorted(set(raw) - {"from", "to", "step", "times"})
        if extra or "to" not in raw or ("step" in raw) == ("times" in raw):
            raise HwgenError(f"{where}: a range is {{from, to, step}} or {{from, to, times}}, got {dict(raw)!r}")
        start, stop = raw["from"], raw["to"]
        step, times = raw.get("step"), raw.get("times")
        for key, value in (("from", start), ("to", stop), ("step", step), ("times", times)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise HwgenError(f"{where}.{key}: expected an integer, got {value!r}")
        if (step is not None and step < 1) or (times is not None and times < 2) or start < 1 or stop < start:
            raise HwgenError(f"{where}: empty or endless range {dict(raw)!r}")
        values, value = [], start
        while value <= stop:
            values.append(value)
            value = value + step if step is not None else value * times
        return values
    if isinstance(raw, (list, tuple)):
        if not raw:
            raise HwgenError(f"{where}: empty list of values")
        return list(raw)
    return [raw]


def _check_value(name: str, value, where: str) -> None:
    if value is None:
        if name not in NULLABLE:
            raise HwgenError(f"{where}: null is not a value of {name}")
        return
    if name in CHOICES:
        if value not in CHOICES[name]:
            raise HwgenError(f"{where}: {value!r} is not one of {', '.join(CHOICES[name])}")
        return
    if name == "fold":
        if not isinstance(value, (list, Mapping, str)):
            raise HwgenError(f"{where}: expected a fold (list of {{pe, simd}}, mapping or JSON path), got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HwgenError(f"{where}: expected a positive integer, got {value!r}")
