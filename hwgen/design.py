"""``hwgen.compile(model) -> Design``: a generated accelerator, its program and images, simulation and outputs.

A :class:`Design` is what every architecture produces: the Amaranth top component with its configuration, the
program and memory images for one model, and the analytic cycle model. ``write`` emits the Verilog (``rtl/``),
``manifest.json``, the memory images and ``report.md``; ``simulate`` runs the Verilog in Verilator and checks the
result bit for bit against the golden model on every call.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import __version__, golden
from .arch.lanes import pack_lanes
from .arch.systolic.compile import Plan, Program, compile_layers, default_config, gemm_layers, plan
from .arch.systolic.config import SystolicConfig
from .arch.systolic.controller import INSTRUCTION
from .arch.systolic.top import (ACTIVATIONS, LOAD, OUTPUTS, PROGRAM, READ, THRESHOLDS, WEIGHTS, SystolicTop,
                                host_signature)
from .compat import lazy_module
from .errors import HwgenError
from .model import Model, as_model, load
from .names import display

SCHEMA_VERSION = 1
TOP_NAME = "hwgen_systolic"
ARCHS = ("systolic", "dataflow")
BACKENDS = ("native", "cocotb", "axi")
CYCLE_FORMULAS = {
    "os": "sum over layers of (tiles - 1) * period + kp + 4*rows + cols + 3*lane_stages + 12, "
          "period = max(kp, 2*rows + cols - 1), tiles = m_tiles * n_tiles",
    "ws": "sum over layers of rows + (folds - 1) * period + samples + rows + cols + 3*lane_stages + 13, "
          "folds = n_tiles * k_tiles, period = max(samples, 2*rows + cols - 1, 3)",
    "stream": "per chunk: samples * (x_words + y_words) + 7 more (every beat valid/ready at once)",
}
UNITS = {"Quantize": "host: input quantizer", "Dequantize": "host: output dequantizer", "MatMul": "systolic array",
         "Conv": "systolic array (implicit im2col address generation)",
         "AddScaled": "systolic array", "Reshape": "address generation (layout only)",
         "MultiThreshold": "requant lanes",
         "MaxPool": "systolic array (PEs in max mode, im2col windows) + identity requant",
         "SumPool": "systolic array (im2col windows, 0/1 weights)",
         "FixedMatMul": "systolic array (rounded products)",
         "FixedConv": "systolic array (implicit im2col address generation, rounded products)",
         "FixedCast": "requant lanes (fixed-point stages)"}


@dataclass(frozen=True)
class SimResult:
    """Outputs of a simulation (float32, as ``hwgen golden`` writes them) and its report."""

    outputs: np.ndarray
    codes: np.ndarray
    report: dict = field(repr=False)


class Design:
    """A compiled model on one hardware configuration."""

    arch = "systolic"

    def __init__(self, model: Model, config: SystolicConfig, images: tuple[Path, ...] = (),
                 layers: list | None = None, planned: Plan | None = None):
        """``layers`` (the model's :func:`gemm_layers`) and ``planned`` (their plan on ``config``'s array) when
        the caller has them already."""
        self.model = model
        self.config = config
        self.layers = layers if layers is not None else gemm_layers(model.graph)
        self.program: Program = compile_layers(self.layers, config, planned)
        self.images = images        # memory-image files to load instead of the compiled ones (a written design)

    # ------------------------------------------------------------------------------------------------ hardware
    @property
    def verilog(self) -> str:
        """The design's Verilog, memories empty: their contents are loaded at run time."""
        return render_verilog(self.config)

    def verilog_rom(self) -> str:
        """The same design with program (for a full batch), weights and thresholds as memory initial contents,
        for ROM-style synthesis: at run time only inputs are loaded. Its ``start`` runs ``program.batch`` samples."""
        from amaranth.back import verilog

        top = SystolicTop(self.config, self.program.memory_init(self.program.batch))
        return verilog.convert(top, name=TOP_NAME, emit_src=False)

    @property
    def verilog_sha256(self) -> str:
        return hashlib.sha256(self.verilog.encode()).hexdigest()

    def predicted_cycles(self, samples: int, stream: bool | None = None) -> int:
        """Exact start → done cycles to process ``samples`` samples (``stream``: see :meth:`simulate`)."""
        return self.program.predict_cycles(samples, self._streams(samples, stream))

    def _streams(self, samples: int, stream: bool | None) -> bool:
        return samples > self.program.batch if stream is None else stream

    # ------------------------------------------------------------------------------------------------ simulation
    def simulate(self, x: np.ndarray, *, wave: Path | None = None, max_cycles: int | None = None,
                 stream: bool | None = None, backend: str = "native", backpressure: float = 0.25,
                 seed: int = 0) -> SimResult:
        """Run ``x`` (N, *input_shape[1:]) through the Verilated design in one start → done; outputs, codes and
        the report.

        Up to ``program.batch`` samples are preloaded into the scratchpad and results read back afterwards, so
        ``cycles`` is compute alone (what SCALE-Sim reports); more samples, or ``stream=True``, stream through
        ``s_axis``/``m_axis`` a chunk of at most ``batch`` samples at a time, and ``cycles`` includes that I/O.

        ``backend="cocotb"`` runs the cocotb testbench (``sim/cocotb``, :mod:`hwgen.cocotb_backend`) instead of the
        native harness: always streamed, with random backpressure on both streams (``backpressure``: probability
        per cycle and side, 0 for none; ``seed``), a scoreboard checking every output beat, and ``io_cycles`` (first
        ``s_axis`` → last ``m_axis`` transfer, both included) in the report. Backpressure makes ``cycles`` exceed
        ``predicted_cycles`` (exact without it); ``bit_exact`` stays the criterion.

        ``backend="axi"`` runs the same streamed job through the AXI wrapper ``hwgen_systolic_axi`` instead
        (:mod:`hwgen.axi_sim`): loads over AXI4-Lite, cocotbext-axi streams with the same random backpressure.
        """
        if backend not in BACKENDS:
            raise HwgenError(f"unknown simulation backend {backend!r}; available: {', '.join(BACKENDS)}")
        x = np.asarray(x, np.float32)
        if x.ndim == 0 or len(x) == 0:
            raise HwgenError("simulate needs at least one sample (inputs of shape (N, ...) with N ≥ 1)")
        if backend == "cocotb":
            return self._simulate_cocotb(x, wave=wave, max_cycles=max_cycles, stream=stream,
                                         backpressure=backpressure, seed=seed)
        if backend == "axi":
            return _simulate_axi(self, x, wave=wave, stream=stream, max_cycles=max_cycles,
                                 backpressure=backpressure, seed=seed)
        from . import verilator

        samples = len(x)
        stream = self._streams(samples, stream)
        program = self.program
        codes_in, expected = self._golden_codes(x)
        start = time.perf_counter()
        trace = verilator.trace_format(wave)
        binary = verilator.build(self.verilog, TOP_NAME, trace=trace)
        build_seconds = time.perf_counter() - start
        predicted = program.predict_cycles(samples, stream)
        with tempfile.TemporaryDirectory(prefix="hwgen-sim-") as tmp:
            static = [Path(tmp) / "static.load"]
            if self.images:
                static = list(self.images)
            else:
                _write_rows(static[0], program.weights + program.thresholds)
            dynamic = Path(tmp) / "run.load"
            limit = max_cycles or 4 * predicted + 1000
            if stream:
                _write_rows(dynamic, program.program_rows(samples, stream=True))
                beats, last = self._input_beats(codes_in)
                result = verilator.run(binary, [*static, dynamic], [], max_cycles=limit, wave=wave,
                                       x=beats, x_last=last, y_beats=samples * program.y_words)
                codes = program.output_codes(result.y, samples)
            else:
                _write_rows(dynamic, program.program_rows(samples) + program.input_rows(codes_in))
                result = verilator.run(binary, [*static, dynamic], program.output_reads(samples), max_cycles=limit,
                                       wave=wave)
                codes = result.values.view(np.int32).astype(np.int64)
        outputs, codes, mismatches = self._check(codes, expected)
        report = self._report(samples, stream, result.cycles, predicted, mismatches, seconds=result.seconds,
                              build_seconds=build_seconds, run_seconds=result.run_seconds,
                              sim_cycles=result.sim_cycles)
        return SimResult(outputs, codes, report)

    def _golden_codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return golden_codes(self.model, x)

    def _input_beats(self, codes_in: np.ndarray) -> tuple[list[int], list[int]]:
        """``s_axis`` beats of a streamed run and their tlast (each sample's last beat)."""
        program = self.program
        return program.input_beats(codes_in), ([0] * (program.x_words - 1) + [1]) * len(codes_in)

    def _expected_beats(self, expected: np.ndarray) -> tuple[list[int], list[int], list[int]]:
        """The ``m_axis`` beats the golden model predicts, their tlast, and per beat the mask of the tdata bits
        that carry results (lanes past the last layer's N channels are padding, not compared)."""
        cfg, program = self.config, self.program
        samples = len(expected)
        flat = np.asarray(expected, np.int64).reshape(samples, -1)
        lanes = program.y_words * cfg.cols
        padded = np.zeros((samples, lanes), np.int64)
        padded[:, :flat.shape[1]] = flat
        mask = np.zeros((samples, lanes), np.int64)
        mask[:, :flat.shape[1]] = -1
        beats = pack_lanes(padded.reshape(-1, cfg.cols), cfg.acc_bits)
        masks = pack_lanes(mask.reshape(-1, cfg.cols), cfg.acc_bits)
        return beats, ([0] * (program.y_words - 1) + [1]) * samples, masks

    def _static_rows(self) -> list[tuple[int, int, int, int, int]]:
        """Weight and threshold load rows: the written images of an opened design, else the compiled ones."""
        return read_rows(self.images) if self.images else self.program.weights + self.program.thresholds

    def _check(self, codes: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        return check_codes(self.model, codes, expected)

    def _report(self, samples: int, stream: bool, cycles: int, predicted: int, mismatches: int, *, seconds: float,
                build_seconds: float, run_seconds: float, sim_cycles: int) -> dict:
        from . import verilator

        return {
            "schema_version": SCHEMA_VERSION, "hwgen_version": __version__, "samples": samples,
            "io": "streamed" if stream else "preloaded", "cycles": cycles, "predicted_cycles": predicted,
            "bit_exact": mismatches == 0, "mismatches": mismatches, "sim_seconds": round(seconds, 6),
            "build_seconds": round(build_seconds, 6), "run_seconds": round(run_seconds, 6),
            "sim_cycles": sim_cycles,
            # simulation speed: start → done cycles over their wall time (loading and parsing excluded)
            "sim_cycles_per_second": round(cycles / run_seconds, 1) if run_seconds > 0 else None,
            "verilator_version": verilator.version(), "verilog_sha256": self.verilog_sha256,
        }

    def _simulate_cocotb(self, x: np.ndarray, *, wave: Path | None, max_cycles: int | None, stream: bool | None,
                         backpressure: float, seed: int) -> SimResult:
        """:meth:`simulate` with ``backend="cocotb"``."""
        from . import cocotb_backend

        if stream is False:
            raise HwgenError("the cocotb backend always streams through s_axis/m_axis (drop --preload)")
        if wave is not None:
            raise HwgenError("waveforms come from the native backend (--backend native)")
        if not 0 <= backpressure < 1:
            raise HwgenError(f"backpressure must be a probability in [0, 1), got {backpressure}")
        samples = len(x)
        program = self.program
        codes_in, expected = self._golden_codes(x)
        started = time.perf_counter()
        build_dir = cocotb_backend.build(self.verilog, TOP_NAME)
        build_seconds = time.perf_counter() - started
        predicted = program.predict_cycles(samples, True)
        beats, last = self._input_beats(codes_in)
        y_beats, y_last, y_mask = self._expected_beats(expected)
        # backpressure p stretches the streamed part by up to 1 / (1 - p) per side
        limit = max_cycles or int(4 * predicted / (1 - backpressure) ** 2) + 1000
        result = cocotb_backend.run(build_dir, TOP_NAME, self._static_rows() + program.program_rows(samples, True),
                                    x=beats, x_last=last, expected=y_beats, expected_last=y_last,
                                    expected_mask=y_mask, max_cycles=limit, backpressure=backpressure, seed=seed)
        outputs, codes, mismatches = self._check(program.output_codes(result.y, samples), expected)
        report = self._report(samples, True, result.cycles, predicted, mismatches + result.tlast_errors,
                              seconds=result.seconds, build_seconds=build_seconds, run_seconds=result.run_seconds,
                              sim_cycles=result.sim_cycles)
        report.update(backend="cocotb", io_cycles=result.io_cycles, backpressure=backpressure, seed=seed)
        return SimResult(outputs, codes, report)

    # ------------------------------------------------------------------------------------------------ estimates
    def estimate(self, target: str, synth: bool = False, out_dir: Path | None = None):
        """FPGA resources or ASIC area/power, fmax, latency (µs) and throughput (inferences/s) on ``target``
        (:mod:`hwgen.estimate`; ASIC energy from the program's operation counts or ``out_dir/activity.json``);
        latency is one preloaded sample, throughput ``program.batch`` preloaded samples, both from
        :meth:`predicted_cycles`. ``synth``: Yosys / nextpnr figures, their logs under ``out_dir/synth/``."""
        from .estimate import estimate

        cycles, workload = self._estimate_inputs(target)
        design = {"top": TOP_NAME, "model_sha256": self._model_sha256()}
        if out_dir is not None and (Path(out_dir) / "activity.json").is_file():
            design["design_verilog_sha256"] = self.verilog_sha256    # which simulation the activity is of
        return estimate(self.config, target, synth=synth, cycles=cycles, verilog=self.verilog if synth else None,
                        top=TOP_NAME, out_dir=out_dir, workload=workload, design=design)

    def analytic_columns(self, target: str):
        """``estimate(target).metrics`` (analytic), without the rest of the report, as columns (see
        :func:`hwgen.estimate.report.analytic_columns`)."""
        return _estimate_report().analytic_columns(self.config, target, *self._estimate_inputs(target))

    def _estimate_inputs(self, target):
        """The cycle model an estimate uses (latency: 1 sample; throughput: a full batch; preloaded) and, for an
        ASIC target, the operation counts its energy comes from."""
        batch = self.program.batch
        cycles = _estimate_report().Cycles(
            self.predicted_cycles(1, stream=False), batch, self.predicted_cycles(batch, stream=False),
            f"Design.predicted_cycles: latency = 1 sample, throughput = {batch} samples, preloaded")
        workload = None
        if (_targets().target(target) if isinstance(target, str) else target).kind == "asic":      # ASIC energy
            from .estimate.power import systolic_workload      # (with the power model's templates: ASIC only)

            workload = systolic_workload(self.config, self.layers, cycles.batch_cycles / batch,
                                         self.program.instructions(batch), batch)
        return cycles, workload

    # ------------------------------------------------------------------------------------------------ outputs
    def manifest(self, rom: bool = False) -> dict:
        """Everything a user or tool needs to drive the design (JSON-ready, deterministic); ``rom``: the files
        include the ROM core."""
        from .integration import axi_manifest, manifest_files

        cfg = self.config
        graph = self.model.graph
        instructions = self.program.instructions(self.program.batch)
        layer_rows = []
        for layer, instr in zip(self.layers, instructions):
            layer_rows.append({
                "matmul": layer.name, "requant": layer.requant, "k": layer.k, "n": layer.n,
                "input_zero_point": layer.zx, "accumulator_range": list(layer.acc_range),
                "input_bits": layer.in_bits, "output_bits": layer.out_bits,
                "output": "accumulator" if layer.passthrough else "codes",
                "thresholds_per_channel": 0 if layer.thresholds is None else int(layer.thresholds.shape[1]),
                "fixed_point_stages": [str(step.to) for step in layer.steps],
                "product_shift": layer.product_shift,
                "tiles": instr["m_tiles"] * instr["n_tiles"], "period_cycles": instr["period"]})
        return {
            "schema_version": SCHEMA_VERSION,
            "hwgen_version": __version__,
            "model": {"file": self.model.path.name if self.model.path else None, "sha256": self._model_sha256()},
            "arch": "systolic",
            "top": TOP_NAME,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "derived": {"acc_bits": cfg.acc_bits, "store_bits": cfg.store_bits, "operand_bits": cfg.operand_bits,
                        "threshold_bits": cfg.threshold_bits, "search_stages": cfg.search_stages,
                        "lane_stages": cfg.lane_stages, "fixed_bits": cfg.fixed_bits,
                        "batch_per_run": self.program.batch},
            "ports": _ports(cfg),
            "host_protocol": {
                "load": _layout_fields(LOAD), "read": _layout_fields(READ), "rdata_bits": 32,
                "targets": {"program": PROGRAM, "activations": ACTIVATIONS, "weights": WEIGHTS,
                            "thresholds": THRESHOLDS, "outputs": OUTPUTS},
                "instruction": _layout_fields(INSTRUCTION)},
            "memories": {
                "program": {"banks": 1, "depth": cfg.prog_depth, "word_bits": 32 * -(-INSTRUCTION.size // 32)},
                "activations": {"banks": cfg.rows, "depth": cfg.act_depth, "word_bits": cfg.cols * cfg.store_bits,
                                "region_words": self.program.region_words, "stride": self.program.stride,
                                "regions": dict(sorted(self.program.placement.items()))},
                "weights": {"banks": cfg.cols, "depth": cfg.weight_depth, "word_bits": cfg.w_bits},
                "streams": {"x_words_per_sample": self.program.x_words, "x_lane_bits": cfg.store_bits,
                            "y_words_per_sample": self.program.y_words, "y_lane_bits": cfg.acc_bits,
                            "lanes": cfg.cols},
                "thresholds": {"banks": cfg.cols, "stages": cfg.search_stages, "slots": cfg.slot_depth,
                               "word_bits": cfg.threshold_bits, "stage0_negate_bit": cfg.threshold_bits},
                "outputs": {"banks": cfg.rows, "depth": cfg.out_depth, "word_bits": cfg.cols * cfg.acc_bits}},
            "datatypes": {name: str(t.dtype) for name, t in sorted(graph.tensors.items())},
            "units": unit_rows(graph, UNITS),
            "layers": layer_rows,
            "program": instructions,
            "cycle_model": {
                "formula": CYCLE_FORMULAS[cfg.dataflow], "streamed_chunk_extra": CYCLE_FORMULAS["stream"],
                "batch_per_run": self.program.batch,
                "cycles_per_full_run": self.program.predict_cycles(self.program.batch)},
            "files": {"weights": "weights.load", "thresholds": "thresholds.load", "program": "program.load",
                      "model": self.model.source_name, "report": "report.md", **manifest_files(self, rom)},
            "axi": axi_manifest(self),
            "verilog_sha256": self.verilog_sha256,
        }

    def _model_sha256(self) -> str:
        return model_sha256(self.model)

    def report_markdown(self) -> str:
        cfg = self.config
        manifest = self.manifest()
        lines = [f"# {display(manifest['model']['file'] or 'model')} on a {cfg.rows}×{cfg.cols} systolic array ({cfg.dataflow})",
                 "", f"hwgen {__version__}; Verilog sha256 `{self.verilog_sha256[:16]}…`", "",
                 "| layer | K | N | output | tiles | period (cycles) |", "|---|---|---|---|---|---|"]
        for row in manifest["layers"]:
            name = display(row["matmul"]).replace("|", "\\|")
            lines.append(f"| {name} | {row['k']} | {row['n']} | {row['output']} | {row['tiles']} | "
                         f"{row['period_cycles']} |")
        lines += ["", f"- accumulator: {cfg.acc_bits} bits; activations stored in {cfg.store_bits} bits",
                  f"- samples per run: {self.program.batch}; cycles per full run: "
                  f"{self.program.predict_cycles(self.program.batch)} (exact, analytic)",
                  f"- scratchpads: activations {cfg.rows}×{cfg.act_depth} words, weights {cfg.cols}×"
                  f"{cfg.weight_depth}, thresholds {cfg.cols} lanes × {cfg.slot_depth} slots × "
                  f"{cfg.search_stages} stages, outputs {cfg.rows}×{cfg.out_depth}", ""]
        return "\n".join(lines)

    def write(self, out_dir: str | Path, rom: bool = False) -> Path:
        """Write the design into ``out_dir`` (created; files replaced atomically as a whole): the core's Verilog
        (``rtl/``, one module per file), manifest, images (``program.load``: ``program.batch`` samples per start,
        streamed unless the inputs or results are images, then preloaded and read back), model, report and the
        integration files (:mod:`hwgen.integration`); with ``rom`` also the core ``hwgen_systolic_rom`` (weights,
        thresholds and program in the memories' initial contents)."""
        from .integration import integration_files

        program = self.program
        files = {"manifest.json": json.dumps(self.manifest(rom), indent=2, sort_keys=True) + "\n",
                 "weights.load": format_rows(program.weights), "thresholds.load": format_rows(program.thresholds),
                 "program.load": format_rows(program.program_rows(program.batch, stream=program.streams)),
                 self.model.source_name: self.model.source_bytes(),
                 "report.md": self.report_markdown(),
                 **integration_files(self, self.verilog_rom() if rom else None)}
        return write_files(out_dir, files)


# the estimators, imported on first use (``import hwgen`` stays free of them)
_estimate_report = lazy_module("hwgen.estimate.report")
_targets = lazy_module("hwgen.estimate.targets")


def unit_rows(graph, units: dict[str, str], max_thresholds: int | None = None) -> list[dict]:
    """The manifest's ``units``: which unit runs every node (a MultiThreshold made from fixed-point casts runs as
    the unit of its FixedCast neighbours when they run together as fixed-point stages)."""
    from .arch.requant import runs_as_stages

    rows = []
    for node in graph.nodes:
        op = "FixedCast" if node.op == "MultiThreshold" and runs_as_stages(graph, node, max_thresholds) else node.op
        rows.append({"node": node.name, "op": node.op, "onnx_ops": list(node.source_ops), "unit": units[op]})
    return rows


def _simulate_axi(design, x: np.ndarray, *, wave, stream, max_cycles, backpressure: float, seed: int) -> SimResult:
    """``simulate(backend="axi")`` of either architecture (:mod:`hwgen.axi_sim`)."""
    from . import axi_sim

    if stream is False:
        raise HwgenError("the axi backend always streams through s_axis/m_axis (drop --preload)")
    if wave is not None:
        raise HwgenError("waveforms come from the native backend (--backend native)")
    return axi_sim.simulate(design, x, backpressure=backpressure, seed=seed, max_cycles=max_cycles)


def golden_codes(model: Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The golden model on ``x``: input codes (samples × K) and the last hardware layer's expected codes."""
    graph = model.graph
    env = golden.run(graph, x, keep=True)
    codes_in = env[next(n for n in graph.nodes if n.op == "Quantize").outputs[0]].reshape(len(x), -1)
    return codes_in, env[graph.producer(graph.outputs[0]).inputs[0]]


def check_codes(model: Model, codes: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Dequantized outputs (float32), ``codes`` shaped like ``expected`` and the number that differ from it."""
    graph = model.graph
    codes = codes.reshape(expected.shape)
    dequant = graph.producer(graph.outputs[0])
    outputs = dequant.attrs["chain"].evaluate(codes, dequant.attrs["axis"])
    return outputs.astype(np.float32), codes, int(np.sum(codes != expected))


def model_sha256(model: Model) -> str:
    return hashlib.sha256(model.source_bytes()).hexdigest()


def write_files(out_dir: str | Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (name → contents; a name may lie in a subfolder, ``rtl/top.v``) into ``out_dir``, created if
    needed, replaced as a whole: the files are staged beside it first, so a failure leaves nothing half-written.
    A subfolder replaces the folder of the same name whole (no stale files from an earlier design remain in it)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, contents in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(contents) if isinstance(contents, bytes) else path.write_text(contents)
        if out_dir.exists():
            for item in staging.iterdir():
                target = out_dir / item.name
                if item.is_dir() and target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
            shutil.rmtree(staging)
        else:
            os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def format_rows(rows) -> str:
    """Load rows as the harness reads them: ``target bank addr lane value`` per line."""
    return "".join(f"{t} {b} {a} {lane} {v}\n" for t, b, a, lane, v in rows)


def read_rows(paths) -> list[tuple[int, ...]]:
    """The load rows of image files written by :func:`format_rows`, in order."""
    rows = []
    for path in paths:
        rows += [tuple(int(v) for v in line.split()) for line in Path(path).read_text().splitlines() if line.strip()]
    return rows


_ZERO_INIT = re.compile(r"\n  initial begin\n(?:    [\w$\\.]+\[\d+\] = \d+'h0+;\n)+  end(?=\n)")


@lru_cache(maxsize=8)
def render_verilog(config: SystolicConfig) -> str:
    """Verilog of one hardware configuration (``amaranth.back.verilog``); the same for every model it runs.

    Every memory is written (program, weights, thresholds, inputs) before it is read, so its contents at power-up
    do not matter: the all-zero ``initial`` blocks Amaranth writes for each word are dropped. That keeps the file
    a fraction of the size and lets synthesis treat the scratchpads as plain RAM.
    """
    from amaranth.back import verilog

    return _ZERO_INIT.sub("", verilog.convert(SystolicTop(config), name=TOP_NAME, emit_src=False))


def compile(model: Model | str | Path, arch: str = "systolic", *, rows: int = 8, cols: int = 8,
            dataflow: str = "os", batch: int = 64, fold=None, target_cycles: int | None = None,
            max_lanes: int | None = None, **overrides):
    """Generate a design for ``model``: a path (ONNX, or hls4ml ``.fml``), a loaded :class:`~hwgen.Model` or an
    hls4ml ``ModelGraph``.

    ``arch="systolic"``: an R×C array (``rows``, ``cols``, ``dataflow``, ``batch`` and configuration
    ``overrides``). ``arch="dataflow"``: one MVAU per layer, folded by ``fold`` (list or name → ``{"pe", "simd"}``
    or a JSON file), or for ``target_cycles`` per sample at least cost (``max_lanes`` MACs per layer at most), or
    fully folded.
    """
    if arch not in ARCHS:
        raise HwgenError(f"unknown architecture {arch!r}; available: {', '.join(ARCHS)}")
    loaded = as_model(model)
    if arch == "dataflow":
        from .arch.dataflow import compile_dataflow
        from .arch.dataflow.design import DataflowDesign

        if overrides:
            raise HwgenError(f"--set {', '.join(overrides)}: the dataflow architecture has no such configuration "
                             "fields (use --fold or --target-cycles)")
        return DataflowDesign(loaded, compile_dataflow(loaded, fold=fold, target_cycles=target_cycles,
                                                       max_lanes=max_lanes))
    if fold is not None or target_cycles is not None:
        raise HwgenError("--fold and --target-cycles apply to --arch dataflow")
    return systolic_design(loaded, gemm_layers(loaded.graph), rows=rows, cols=cols, dataflow=dataflow, batch=batch,
                           **overrides)


def systolic_design(model: Model, layers: list, *, rows: int, cols: int, dataflow: str, batch: int,
                    **overrides) -> Design:
    """:func:`compile` of ``model`` for the systolic array, its :func:`gemm_layers` given (a sweep computes them
    once per model)."""
    try:
        planned = plan(layers, rows, cols, dataflow)
        config = default_config(layers, rows=rows, cols=cols, dataflow=dataflow, batch=batch, planned=planned,
                                **overrides)
    except (TypeError, ValueError) as exc:
        raise HwgenError(f"invalid configuration: {exc}") from exc
    return Design(model, config, layers=layers, planned=planned)


def open_design(out_dir: str | Path) -> Design:
    """The design written by ``Design.write`` into ``out_dir`` (checked against its manifest)."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise HwgenError(f"{out_dir}: no manifest.json; is this a folder written by `hwgen compile`?")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise HwgenError(f"{manifest_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise HwgenError(f"{manifest_path}: schema_version {manifest.get('schema_version')}, this hwgen reads "
                         f"{SCHEMA_VERSION}")
    model = load(out_dir / manifest["files"]["model"])
    if manifest.get("arch") == "dataflow":
        from .arch.dataflow.design import open_dataflow

        design = open_dataflow(out_dir, manifest, model)
        if design.verilog_sha256 != manifest["verilog_sha256"]:
            raise HwgenError(f"{out_dir}: the design no longer matches its manifest's verilog_sha256 (regenerate with `hwgen compile`)")
        return design
    config = dict(manifest["config"])
    if config.get("broken_pe") is not None:
        config["broken_pe"] = tuple(config["broken_pe"])
    files = manifest["files"]
    design = Design(model, SystolicConfig(**config), (out_dir / files["weights"], out_dir / files["thresholds"]))
    if design.verilog_sha256 != manifest["verilog_sha256"]:
        raise HwgenError(f"{out_dir}: the design no longer matches its manifest's verilog_sha256 (regenerate with `hwgen compile`)")
    return design


def _write_rows(path: Path, rows) -> None:
    path.write_text(format_rows(rows))


def _layout_fields(layout) -> list[dict]:
    from amaranth import Shape

    return [{"name": name, "offset": f.offset, "bits": Shape.cast(f.shape).width,
             "signed": Shape.cast(f.shape).signed} for name, f in layout]


def _ports(cfg: SystolicConfig) -> list[dict]:
    return _signature_ports(host_signature(cfg))


def _signature_ports(signature) -> list[dict]:
    """Top-level ports as they appear in the Verilog (Amaranth joins signature paths with ``__``)."""
    from amaranth import Shape
    from amaranth.lib.wiring import Flow

    ports = [{"name": "clk", "dir": "in", "bits": 1}, {"name": "rst", "dir": "in", "bits": 1}]
    for path, member, _ in signature.flatten(signature.create()):
        ports.append({"name": "__".join(str(p) for p in path), "dir": "in" if member.flow == Flow.In else "out",
                      "bits": Shape.cast(member.shape).width})
    return ports


__all__ = ["Design", "SimResult", "compile", "open_design"]
