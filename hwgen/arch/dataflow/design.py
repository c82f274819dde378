"""A model compiled to the dataflow architecture: Verilog, manifest, images, Verilator simulation, II and latency.

The same interface as the systolic :class:`hwgen.design.Design` (``verilog``, ``simulate``, ``manifest``,
``write``), for a pipeline that never stops: the harness loads weights, thresholds and zero points, pulses
``start``, streams every sample in back to back and stops once every output beat is out. From the transfer
cycles it measures

- ``latency_cycles``: the first sample's first input transfer → its last output transfer;
- ``ii_cycles``: (t_last − t_first) / (N − 1) over the samples' last-output transfers;
- ``cycles``: the first input transfer → the last output transfer, all samples,

and checks each against the analytic model (cycles.py): ``cycles = latency + (N − 1) · II``.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from ... import __version__
from ...design import (SCHEMA_VERSION, SimResult, check_codes, format_rows, golden_codes, model_sha256, read_rows,
                       unit_rows, write_files)
from ...compat import lazy_module
from ...errors import HwgenError
from ...model import Model
from ...names import display
from .compile import MAX_FUSED_THRESHOLDS, DataflowProgram
from .config import DataflowConfig
from .loader import BIASES, PARAMETERS, THRESHOLDS, WEIGHTS
from .top import DataflowTop, dataflow_signature

TOP_NAME = "hwgen_dataflow"
UNITS = {"Quantize": "host: input quantizer", "Dequantize": "host: output dequantizer", "MatMul": "MVAU",
         "FixedMatMul": "MVAU (rounded products)", "MultiThreshold": "MVAU thresholds (fused)",
         "FixedCast": "MVAU fixed-point stages (fused)", "Reshape": "stream order (layout only)",
         "Conv": "sliding-window generator + MVAU (depthwise: vector-vector unit)",
         "FixedConv": "sliding-window generator + MVAU (rounded products)",
         "MaxPool": "sliding-window generator + pooling unit (max)",
         "SumPool": "sliding-window generator + pooling unit (sum, thresholds)",
         "AddScaled": "duplicate + skip FIFO + add unit"}


@lru_cache(maxsize=8)
def render_verilog(config: DataflowConfig) -> str:
    """Verilog of one dataflow structure; weights and thresholds are loaded at run time."""
    from amaranth.back import verilog

    from ...design import _ZERO_INIT

    return _ZERO_INIT.sub("", verilog.convert(DataflowTop(config), name=TOP_NAME, emit_src=False))


class DataflowDesign:
    """A model on one dataflow configuration (one MVAU per layer, PE/SIMD folding)."""

    arch = "dataflow"

    def __init__(self, model: Model, program: DataflowProgram, images: tuple[Path, ...] = ()):
        self.model = model
        self.program = program
        self.config = program.config
        self.layers = program.layers
        self.images = images        # image files to load instead of the compiled rows (a written design)

    @property
    def verilog(self) -> str:
        return render_verilog(self.config)

    def verilog_rom(self) -> str:
        """The design with weights, thresholds and zero points as memory initial contents (ROM-style synthesis)."""
        from amaranth.back import verilog

        return verilog.convert(DataflowTop(self.config, self.program.memory_init()), name=TOP_NAME, emit_src=False)

    @property
    def verilog_sha256(self) -> str:
        return hashlib.sha256(self.verilog.encode()).hexdigest()

    def predicted_cycles(self, samples: int, stream: bool | None = None) -> int:
        """Cycles from the first input transfer to the last output transfer of ``samples`` samples streamed back
        to back (exact): ``latency + (samples − 1) · II``."""
        return self.config.predicted_cycles(samples)

    def simulate(self, x: np.ndarray, *, wave: Path | None = None, max_cycles: int | None = None,
                 stream: bool | None = None, backend: str = "native", **_) -> SimResult:
        """Stream ``x`` (N, *input_shape[1:]) through the Verilated pipeline; outputs, codes and the report (with
        measured and predicted ``ii_cycles`` and ``latency_cycles``). ``backend``: ``native``, ``cocotb`` (the
        AXI-Stream testbench) or ``axi`` (the AXI wrapper, :mod:`hwgen.axi_sim`)."""
        from ... import verilator

        from ...design import BACKENDS, _simulate_axi

        if backend not in BACKENDS:
            raise HwgenError(f"unknown simulation backend {backend!r}; available: {', '.join(BACKENDS)}")
        if stream is False:
            raise HwgenError("the dataflow architecture always streams (drop --preload)")
        x = np.asarray(x, np.float32)
        if x.ndim == 0 or len(x) == 0:
            raise HwgenError("simulate needs at least one sample (inputs of shape (N, ...) with N ≥ 1)")
        if backend == "cocotb":
            return self._simulate_cocotb(x, max_cycles=max_cycles, **_)
        if backend == "axi":
            return _simulate_axi(self, x, wave=wave, stream=stream, max_cycles=max_cycles,
                                 backpressure=_.get("backpressure", 0.25), seed=_.get("seed", 0))
        samples = len(x)
        program = self.program
        codes_in, expected = golden_codes(self.model, x)
        started = time.perf_counter()
        trace = verilator.trace_format(wave)
        binary = verilator.build(self.verilog, TOP_NAME, trace=trace)
        build_seconds = time.perf_counter() - started
        predicted = self.predicted_cycles(samples)
        beats, last = program.pack_inputs(codes_in)
        with tempfile.TemporaryDirectory(prefix="hwgen-sim-") as tmp:
            loads = list(self.images)
            if not loads:
                loads = [Path(tmp) / "static.load"]
                loads[0].write_text(format_rows(program.load_rows))
            result = verilator.run(binary, loads, [], max_cycles=max_cycles or 4 * predicted + 1000 + 4 * len(beats),
                                   wave=wave, x=beats, x_last=[int(b) for b in last],
                                   y_beats=samples * self.config.out_beats, stop_after_y=True)
        outputs, codes, mismatches = check_codes(self.model, program.unpack_outputs(result.y), expected)
        finished = result.y_cycles[result.y_last == 1]          # each sample's last-output transfer
        first = int(result.x_starts[0])
        cycles = int(finished[-1]) - first
        report = {
            "schema_version": SCHEMA_VERSION, "hwgen_version": __version__, "arch": self.arch, "samples": samples,
            "io": "streamed", "cycles": cycles, "predicted_cycles": predicted,
            "latency_cycles": int(finished[0]) - first,
            "predicted_latency_cycles": program.predicted_latency_cycles,
            "ii_cycles": (int(finished[-1]) - int(finished[0])) / (samples - 1) if samples > 1 else None,
            "predicted_ii_cycles": program.predicted_ii_cycles,
            "bit_exact": mismatches == 0, "mismatches": mismatches, "sim_seconds": round(result.seconds, 6),
            "build_seconds": round(build_seconds, 6), "run_seconds": round(result.run_seconds, 6),
            "sim_cycles": result.sim_cycles,
            "sim_cycles_per_second": round(result.sim_cycles / result.run_seconds, 1) if result.run_seconds > 0
            else None,
            "verilator_version": verilator.version(), "verilog_sha256": self.verilog_sha256,
        }
        return SimResult(outputs, codes, report)

    def _simulate_cocotb(self, x: np.ndarray, *, max_cycles: int | None, backpressure: float = 0.25,
                         seed: int = 0) -> SimResult:
        """The cocotb AXI-Stream testbench with random backpressure; a scoreboard checks every output beat."""
        from ... import cocotb_backend

        if not 0 <= backpressure < 1:
            raise HwgenError(f"backpressure must be a probability in [0, 1), got {backpressure}")
        cfg, program = self.config, self.program
        samples = len(x)
        codes_in, expected = golden_codes(self.model, x)
        started = time.perf_counter()
        build_dir = cocotb_backend.build(self.verilog, TOP_NAME)
        build_seconds = time.perf_counter() - started
        beats, last = program.pack_inputs(codes_in)
        y_beats = program.pack_outputs(expected)
        y_last = [int((i + 1) % cfg.out_beats == 0) for i in range(len(y_beats))]
        predicted = self.predicted_cycles(samples)
        limit = max_cycles or int(4 * (predicted + len(beats)) / (1 - backpressure) ** 2) + 1000
        loads = read_rows(self.images) if self.images else program.load_rows
        result = cocotb_backend.run(build_dir, TOP_NAME, loads, x=beats, x_last=[int(b) for b in last],
                                    expected=y_beats, expected_last=y_last,
                                    expected_mask=[(1 << (cfg.out_lanes * cfg.out_type.bits)) - 1] * len(y_beats),
                                    max_cycles=limit, backpressure=backpressure, seed=seed, stop_after_y=True)
        outputs, codes, mismatches = check_codes(self.model, program.unpack_outputs(result.y), expected)
        report = {
            "schema_version": SCHEMA_VERSION, "hwgen_version": __version__, "arch": self.arch, "backend": "cocotb",
            "samples": samples, "io": "streamed", "io_cycles": result.io_cycles, "predicted_cycles": predicted,
            "bit_exact": mismatches + result.tlast_errors == 0, "mismatches": mismatches + result.tlast_errors,
            "backpressure": backpressure, "seed": seed, "sim_seconds": round(result.seconds, 6),
            "build_seconds": round(build_seconds, 6), "verilog_sha256": self.verilog_sha256,
        }
        return SimResult(outputs, codes, report)

    def estimate(self, target: str, synth: bool = False, out_dir: Path | None = None):
        """FPGA resources, fmax, latency and throughput on ``target`` (see :mod:`hwgen.estimate`)."""
        return estimate_config(self.config, self.model, target, synth, out_dir)

    # ------------------------------------------------------------------------------------------------ outputs
    def manifest(self, rom: bool = False) -> dict:
        """Everything a user or tool needs to drive the design; ``rom``: the files include the ROM core."""
        from ...integration import axi_manifest, manifest_files

        cfg = self.config
        graph = self.model.graph
        from ...design import _layout_fields, _signature_ports
        from ..systolic.top import LOAD, READ

        return {
            "schema_version": SCHEMA_VERSION, "hwgen_version": __version__,
            "model": {"file": self.model.path.name if self.model.path else None, "sha256": model_sha256(self.model)},
            "arch": self.arch, "top": TOP_NAME,
            "config": {"layers": [_plain(asdict(layer)) for layer in cfg.layers]},
            "fold": [{"name": row["name"], "pe": row["pe"], "simd": row["simd"]} for row in self.program.fold_report()],
            "layers": self.program.fold_report(),
            "ports": _signature_ports(dataflow_signature(cfg)),
            "host_protocol": {"load": _layout_fields(LOAD), "read": _layout_fields(READ), "rdata_bits": 32,
                              "targets": {"weights": WEIGHTS, "thresholds": THRESHOLDS, "parameters": PARAMETERS,
                                          "biases": BIASES}},
            "streams": {"in_lanes": cfg.in_lanes, "in_lane_bits": cfg.in_type.bits, "in_beats_per_sample": cfg.in_beats,
                        "out_lanes": cfg.out_lanes, "out_lane_bits": cfg.out_type.bits,
                        "out_beats_per_sample": cfg.out_beats},
            "fifo_depths": list(cfg.fifo_depths),
            "datatypes": {name: str(t.dtype) for name, t in sorted(graph.tensors.items())},
            "units": unit_rows(graph, UNITS, MAX_FUSED_THRESHOLDS),
            "cycle_model": {"ii_cycles": self.program.predicted_ii_cycles,
                            "latency_cycles": self.program.predicted_latency_cycles,
                            "formula": "II = max over layers of vectors·(MW/SIMD)·(MH/PE) (and a sliding-window "
                                       "generator's input beats); N samples take latency + (N − 1)·II cycles from "
                                       "first input to last output",
                            "model": "timing.py (cycle-level)" if cfg.convolutional else "cycles.py (closed form)"},
            "sources": [list(s) for s in cfg.sources],
            "files": {"weights": "weights.load", "thresholds": "thresholds.load", "parameters": "parameters.load",
                      "biases": "biases.load", "model": self.model.source_name, "report": "report.md",
                      **manifest_files(self, rom)},
            "axi": axi_manifest(self),
            "verilog_sha256": self.verilog_sha256,
        }

    def report_markdown(self) -> str:
        manifest = self.manifest()
        lines = [f"# {display(manifest['model']['file'] or 'model')} on the dataflow architecture", "",
                 f"hwgen {__version__}; Verilog sha256 `{self.verilog_sha256[:16]}…`", "",
                 "| layer | unit | MW | MH | vectors | SIMD | PE | cycles/sample |",
                 "|---|---|---|---|---|---|---|---|"]
        for row in manifest["layers"]:
            lines.append(f"| {display(row['name']).replace('|', chr(92) + '|')} | {row['unit']} | {row['mw']} | "
                         f"{row['mh']} | {row['vectors']} | {row['simd']} | {row['pe']} | {row['cycles']} |")
        lines += ["", f"- initiation interval: {self.program.predicted_ii_cycles} cycles; latency: "
                      f"{self.program.predicted_latency_cycles} cycles (exact, analytic)",
                  f"- FIFO depths: {', '.join(map(str, self.config.fifo_depths))}", ""]
        return "\n".join(lines)

    def write(self, out_dir: str | Path, rom: bool = False) -> Path:
        """Write the core's Verilog (``rtl/``, one module per file), ``manifest.json``, the images, ``model.onnx``,
        ``report.md`` and the integration files (:mod:`hwgen.integration`) into ``out_dir``; ``rom``: also the core
        ``hwgen_dataflow_rom`` with its memories initialized."""
        from ...integration import integration_files

        program = self.program
        files = {"manifest.json": json.dumps(self.manifest(rom), indent=2, sort_keys=True) + "\n",
                 "weights.load": format_rows(program.weights), "thresholds.load": format_rows(program.thresholds),
                 "parameters.load": format_rows(program.parameters), "biases.load": format_rows(program.biases),
                 self.model.source_name: self.model.source_bytes(),
                 "report.md": self.report_markdown(),
                 **integration_files(self, self.verilog_rom() if rom else None)}
        return write_files(out_dir, files)


_report = lazy_module("hwgen.estimate.report")         # imported on first use


def estimate_cycles(config: DataflowConfig):
    """The cycle model an estimate of ``config`` uses: latency = one sample, throughput = one sample per II."""
    return _report().Cycles(config.predicted_latency_cycles, 1, config.predicted_ii_cycles,
                            "dataflow cycle model: latency = one sample, throughput = one sample per II")


def analytic_columns(config: DataflowConfig, target: str):
    """``estimate_config(config, model, target).metrics`` (analytic) alone, as columns (see
    :func:`hwgen.estimate.report.analytic_columns`): they depend on the structure, not on the model's values."""
    return _report().analytic_columns(config, target, estimate_cycles(config))


def estimate_config(config: DataflowConfig, model: Model, target: str, synth: bool = False,
                    out_dir: Path | None = None):
    """The estimate of ``model`` on ``config``: it needs the structure only (the Verilog only with ``synth``)."""
    from ...estimate import estimate

    cycles = estimate_cycles(config)
    design = {"top": TOP_NAME, "model_sha256": model_sha256(model)}
    verilog = render_verilog(config) if synth or (out_dir and (Path(out_dir) / "activity.json").is_file()) else None
    if verilog is not None:
        design["design_verilog_sha256"] = hashlib.sha256(verilog.encode()).hexdigest()   # which run's activity
    return estimate(config, target, synth=synth, cycles=cycles, verilog=verilog if synth else None,
                    top=TOP_NAME, out_dir=out_dir, design=design)


def open_dataflow(out_dir: Path, manifest: dict, model: Model) -> DataflowDesign:
    """The dataflow design written into ``out_dir`` (recompiled with the manifest's folding)."""
    from .compile import compile_dataflow

    files = manifest["files"]
    program = compile_dataflow(model, fold=[{"pe": f["pe"], "simd": f["simd"]} for f in manifest["fold"]])
    design = DataflowDesign(model, program, tuple(out_dir / files[k] for k in ("weights", "thresholds", "parameters",
                                                                               "biases") if k in files))
    read_rows(design.images)          # readable now rather than in the middle of a simulation
    return design


def _plain(value):
    """``asdict`` output with tuples as lists (JSON-ready)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
