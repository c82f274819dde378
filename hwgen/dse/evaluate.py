"""Evaluators: one design point → its metrics (or the error that stopped it).

- ``analytic`` (default): compile, exact cycle model, analytic estimate on the point's target. No Verilog is
  rendered. A dataflow point builds only its :class:`~hwgen.arch.dataflow.DataflowConfig` (folding and cycle
  model) and skips the weight/threshold load images, which nothing here reads and which cost ~5× the rest; a
  systolic point builds its configuration and program (no images: they are built on first use) and the estimate
  only its metrics (:func:`hwgen.estimate.report.analytic_columns`). What depends on the model alone (its lowered
  layers, their widths and regions, the dataflow layers' ranked foldings), on the model and the column count
  (tensor shapes and feeds; a dense model's plan) or on the column count and the PE and lane widths and depths
  (the PEs' paths, the requant lanes, the WS accumulators: :mod:`hwgen.estimate.fpga`) is cached per worker, so a
  point costs 80–120 µs of arithmetic on those (``benchmarks/dse_throughput.py``); a configuration's next targets
  (listed one after another) reuse its design, cycle model and components (the benchmark's two-target pass);
  ``tests/test_dse.py`` checks
  that every metric equals what ``hwgen.compile(...).estimate(...)`` gives, and what the point gives evaluated
  alone in a fresh worker.
- ``synth``: the same with ``estimate(synth=True)`` (Yosys, and nextpnr where it exists); tool figures replace
  the analytic ones.
- ``sim``: compiles the full design and runs Verilator on the spec's ``inputs`` (its first ``samples``):
  measured ``cycles``, ``bit_exact``, ``mismatches``, plus the analytic metrics.

Every function here runs inside a worker (a local process or a Dask worker): the imported :class:`~hwgen.Model`
is cached per (path, sha256) in the worker process (``_model``), so each model is imported once per worker.
Errors of a point (``HwgenError``, configuration ``ValueError``s, anything else but interrupts) are returned as a
failed result with the message; they never stop the sweep.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import __version__
from ..compat import lazy_module
from ..design import systolic_design
from ..errors import HwgenError
from .space import Point

EVALUATORS = ("analytic", "synth", "sim")


@dataclass(frozen=True)
class ModelEntry:
    """A loaded model and what every point of it shares (computed once per worker)."""

    model: object                 # hwgen.Model
    macs: int                     # multiply-accumulates per inference
    gemm_layers: tuple
    dataflow: object | None           # the dataflow layers before folding (arch.dataflow.compile.Unfolded), or None
    dataflow_error: str | None        # why the dataflow architecture refuses the model


@lru_cache(maxsize=16)
def _model(path: str, sha256: str) -> ModelEntry:
    """The model at ``path`` (``sha256`` makes an edited file a new cache entry)."""
    from .. import load
    from ..arch.dataflow.compile import unfolded
    from ..arch.systolic.compile import gemm_layers

    model = load(path)
    layers = tuple(gemm_layers(model.graph))
    try:
        dataflow, error = unfolded(model), None
    except HwgenError as exc:
        dataflow, error = None, str(exc)
    return ModelEntry(model, sum(layer.macs for layer in model.layers), layers, dataflow, error)


def setup_worker(models: list[tuple[str, str]] | tuple = ()) -> None:
    """What a sweep's worker process does before its first point (the local pool's initializer): import the sweep's
    ``models`` (``(path, sha256)`` pairs; one that fails to load is left to its points, which report why), then
    ``gc.freeze()``. Everything alive then (the imported modules, the models, their lowered layers) lives as long as
    the worker, and frozen objects are never walked again by the garbage collector: without it every full collection
    walks the ~74k objects of the imports and the model, ~36 ms, once every ~1,000 points
    (``benchmarks/dse_throughput.py``). Only for a process that exists to evaluate points: the objects frozen are
    never freed, so the library never calls this in a caller's own process (``run_sweep(workers=1)`` does not)."""
    for path, sha256 in models:
        try:
            _model(path, sha256)
        except Exception:           # noqa: BLE001 (the model's points fail with the message)
            pass
    gc.freeze()


def evaluate_points(points: list[dict], evaluator: str = "analytic", inputs: str | None = None) -> list[dict]:
    """Evaluate plain-data points (``Point.task()`` or ``Point.as_dict()``); one result dict per point, in order
    (picklable in and out, so local process pools and Dask workers call this directly)."""
    return [evaluate(Point.from_dict(p), evaluator, inputs) for p in points]


def evaluate(point: Point, evaluator: str = "analytic", inputs: str | None = None) -> dict:
    """One point → ``{"hash", "status": "ok"|"failed", "metrics", "units", "error", "seconds", ...}``."""
    if evaluator not in EVALUATORS:
        raise HwgenError(f"unknown evaluator {evaluator!r}; available: {', '.join(EVALUATORS)}")
    started = time.perf_counter()
    metrics: dict[str, float | None] = {}
    units: dict[str, dict] = {}
    error = None
    try:
        entry = _model(point.model, point.model_sha256)
        if evaluator == "sim":
            _simulate(entry, point, inputs, metrics, units)
        else:
            _analytic(entry, point, evaluator == "synth", metrics, units)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:          # a point's failure is data, not the end of the sweep
        message = str(exc).strip() or type(exc).__name__
        error = message if isinstance(exc, HwgenError) else f"{type(exc).__name__}: {message}"
    return {"hash": point.hash, "point": point.as_dict(), "evaluator": evaluator, "hwgen_version": __version__,
            "status": "failed" if error else "ok", "metrics": metrics if not error else {},
            "units": units if not error else {}, "error": error,
            "seconds": round(time.perf_counter() - started, 6)}


def _put(metrics: dict, units: dict, name: str, value, unit: str, method: str = "analytic") -> None:
    metrics[name] = None if value is None else float(value)
    units[name] = {"unit": unit, "method": method}


# The unit entries of the metrics every analytic point has besides its estimate's: one dict per metric shared by
# every result (do not mutate), as an FPGA target's are (:func:`hwgen.estimate.report.analytic_columns`)
_ARCH_UNITS = {name: {"unit": unit, "method": "analytic"} for name, unit in (("ii_cycles", "cycles"),
                                                                               ("batch", "samples"))}
_PERFORMANCE_UNITS = {name: {"unit": unit, "method": "analytic"} for name, unit in (
    ("cycles", "cycles"), ("predicted_cycles", "cycles"), ("macs", "MAC"), ("mac_units", "MAC units"),
    ("utilization", "fraction"))}


def _analytic(entry: ModelEntry, point: Point, synth: bool, metrics: dict, units: dict) -> None:
    hardware = _hardware(entry, point)
    if point.arch == "dataflow":
        design, config = None, hardware
        latency, ii = config.predicted_latency_cycles, config.predicted_ii_cycles
        cycles = latency + (point.samples - 1) * ii
        mac_units = sum(layer.pe * layer.simd for layer in config.layers)
        metrics["ii_cycles"], units["ii_cycles"] = float(ii), _ARCH_UNITS["ii_cycles"]
        steady_cycles, steady_samples = ii, 1
    else:
        design = hardware
        config = design.config
        cycles = design.predicted_cycles(point.samples)
        batch = design.program.batch
        steady_samples, steady_cycles = batch, design.predicted_cycles(batch, stream=False)
        mac_units = config.rows * config.cols
        metrics["batch"], units["batch"] = float(batch), _ARCH_UNITS["batch"]
    metrics.update(cycles=float(cycles), predicted_cycles=float(cycles), macs=float(entry.macs),
                   mac_units=float(mac_units),
                   utilization=float(entry.macs * steady_samples / (mac_units * steady_cycles)))
    units.update(_PERFORMANCE_UNITS)
    if point.target is None:
        return
    if synth:
        if design is not None:
            figures = design.estimate(point.target, synth=True).metrics
        else:
            from ..arch.dataflow.design import estimate_config

            figures = estimate_config(config, entry.model, point.target, True).metrics
        for name, m in figures.items():          # _put, inlined: a value of an estimate is never None
            metrics[name] = float(m["value"])
            units[name] = {"unit": m["unit"], "method": m["method"]}
        return
    if design is not None:
        columns = design.analytic_columns(point.target)
    else:
        columns = _dataflow_design().analytic_columns(config, point.target)
    metrics.update(zip(columns.names, columns.values))       # floats; an FPGA target's unit entries are shared
    units.update(zip(columns.names, columns.units))


# the hardware of the last point evaluated in this process: ((model, sha256, arch, params), design or dataflow
# configuration); a space lists a configuration's targets one after another (Space.points), so its other targets
# reuse the compiled design, its cycle model and its components instead of building them again
_last_hardware: list = [None, None]


def _hardware(entry: ModelEntry, point: Point):
    """The point's :class:`~hwgen.design.Design` (systolic) or dataflow configuration, shared with the point
    before it when only the target differs."""
    key = (point.model, point.model_sha256, point.arch, point.params)
    if _last_hardware[0] == key:
        return _last_hardware[1]
    if point.arch == "dataflow":
        hardware = _dataflow_config(entry, point.params)
    else:
        hardware = _systolic_design(entry, point.params)
    _last_hardware[:] = key, hardware
    return hardware


def _systolic_design(entry: ModelEntry, params: dict):
    """``hwgen.compile(model, "systolic", **params)`` with the model's GEMM layers computed once per worker."""
    if "fold" in params or "target_cycles" in params:
        raise HwgenError("--fold and --target-cycles apply to --arch dataflow")
    shape = {"rows": 8, "cols": 8, "dataflow": "os", "batch": 64}
    return systolic_design(entry.model, list(entry.gemm_layers), **{**shape, **params})


# imported on first use: ``import hwgen.dse`` stays light
_dataflow_design = lazy_module("hwgen.arch.dataflow.design")


def _dataflow_config(entry: ModelEntry, params: dict):
    """The dataflow configuration ``hwgen.compile(arch="dataflow", ...)`` builds, without its load images."""
    if entry.dataflow is None:
        raise HwgenError(entry.dataflow_error or "the dataflow architecture cannot run this model")
    return entry.dataflow.fold(params.get("fold"), params.get("target_cycles"), params.get("max_lanes"))


def _simulate(entry: ModelEntry, point: Point, inputs: str | None, metrics: dict, units: dict) -> None:
    from .. import compile as compile_design

    if inputs is None:
        raise HwgenError("the sim evaluator needs inputs (spec key 'inputs' or --inputs)")
    x = _inputs(inputs)[:point.samples]
    if len(x) < point.samples:
        raise HwgenError(f"inputs {inputs}: {len(x)} samples, the spec asks for samples={point.samples}")
    design = compile_design(entry.model, point.arch, **point.params)
    _analytic(entry, point, False, metrics, units)
    report = design.simulate(x).report
    _put(metrics, units, "cycles", report["cycles"], "cycles", "simulated")
    _put(metrics, units, "predicted_cycles", report["predicted_cycles"], "cycles")
    _put(metrics, units, "bit_exact", 1.0 if report["bit_exact"] else 0.0, "bool", "simulated")
    _put(metrics, units, "mismatches", report["mismatches"], "codes", "simulated")
    _put(metrics, units, "sim_seconds", report["sim_seconds"], "s", "simulated")
    if report.get("ii_cycles") is not None:
        _put(metrics, units, "ii_cycles", report["ii_cycles"], "cycles", "simulated")


def clear_point_caches() -> None:
    """Empty the caches that the points of a sweep fill (keyed by a point's configuration, memory geometry, PE and
    lane geometry or instruction-field widths) and keep those of the models (imported models, their lowered layers,
    the dataflow layers' ranked foldings): afterwards evaluating points costs what it costs in a fresh worker that
    has imported the models. For benchmarks (``benchmarks/dse_throughput.py``), which time the same points more
    than once, and for tests that compare a point evaluated in a sweep with the point evaluated alone."""
    from ..arch.dataflow import timing
    from ..estimate import fpga, memmap, report

    _last_hardware[:] = None, None

    for cache in (fpga.components, fpga._instruction_used, fpga._pe_paths, fpga._requant_lanes, fpga._accumulators,
                  fpga._mapped, memmap.map_memory, memmap._choice, memmap._word_plans, report._config_json,
                  timing._head, timing.fifo_depths, timing.window_schedule):
        cache.cache_clear()


@lru_cache(maxsize=4)
def _inputs(path: str) -> np.ndarray:
    try:
        return np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise HwgenError(f"inputs {path}: cannot read a .npy array ({exc})") from None
