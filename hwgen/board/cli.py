"""``hwgen board`` and ``hwgen run-board`` (registered on the main Typer app in :mod:`hwgen.cli`)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from .protocol import DEFAULT_BAUD


def board(design_dir: Path = typer.Argument(..., help="Folder written by `hwgen compile`."),
          board_name: str = typer.Option(..., "--board", help="amaranth-boards board with an iCE40 or ECP5 and a "
                                                              "UART, e.g. icebreaker, ulx3s-85f, icestick."),
          output: Path = typer.Option(..., "-o", "--output", help="Folder for the bitstream, logs and board.json."),
          baud: int = typer.Option(DEFAULT_BAUD, "--baud", help="UART baud rate of the host bridge."),
          force: bool = typer.Option(False, "--force", help="Build even if the analytic estimate says the design "
                                                            "does not fit, and write a bitstream that misses the "
                                                            "board clock."),
          ) -> None:
    """Bitstream for DESIGN_DIR behind a UART host bridge (YoWASP Yosys/nextpnr); prints utilization and fmax."""
    from rich import box
    from rich.table import Table

    from ..cli import console, user_errors
    from ..design import open_design
    from .build import build

    with user_errors():
        design = open_design(design_dir)
        with console.status(f"hwgen board {board_name}") as status:
            result = build(design, board_name, output, baud=baud, force=force,
                           progress=lambda message: status.update(message))
    report = result.report
    placed = report["placed"]
    table = Table(title=f"{report['board']} ({report['device']}): placed by nextpnr", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in ("resource", "used", "available", "%"):
        table.add_column(column, justify="left" if column == "resource" else "right")
    for bel, use in placed["utilization"].items():
        table.add_row(bel, str(use["used"]), str(use["available"]), f"{100 * use['used'] / use['available']:.1f}")
    console.print(table)
    clock = report["clock_hz"] / 1e6
    fmax = placed["fmax_mhz"]
    needs, capacity = report["estimate"]["needs"], report["estimate"]["capacity"]
    timing = "fmax unknown" if fmax is None else f"fmax {fmax:.1f} MHz"
    console.print(f"{timing} (board clock {clock:g} MHz{'' if fmax and fmax >= clock else ', FAILS TIMING'}); "
                  f"analytic estimate {needs['lut']:.0f}/{capacity['lut']} LUT4, {needs['bram']:.0f}/"
                  f"{capacity['bram']} BRAM; UART {baud} baud (divisor {report['uart']['divisor']})")
    if "ecp5_pack" in report:
        pack = report["ecp5_pack"]
        console.print(f"ECP5 register packing: {pack['rams_outreg']} block RAMs with output registers, "
                      f"{pack['dsp_inputs_absorbed'] + pack['dsp_outputs_absorbed']} DSP registers absorbed "
                      f"({pack['record']})")
    console.print(f"wrote {result.bitstream} ({'cached' if result.cached else 'built'} in {result.seconds:.1f} s), "
                  f"{output / 'board.json'}")


def run_board(design_dir: Path = typer.Argument(..., help="Folder written by `hwgen compile` (and built with "
                                                          "`hwgen board`)."),
              port: str = typer.Option(..., "--port", help="Serial port of the board (e.g. /dev/ttyUSB0), or a "
                                                          "pyserial URL (socket://HOST:PORT, rfc2217://...)."),
              inputs: Path = typer.Option(..., "--inputs", help="N samples stacked on the batch axis (.npy)."),
              output: Path = typer.Option(..., "--output", help="Where to write the outputs (.npy)."),
              baud: int = typer.Option(DEFAULT_BAUD, "--baud", help="UART baud rate the bitstream was built with."),
              stream: bool | None = typer.Option(
                  None, "--stream/--preload",
                  help="systolic: stream samples through AXI-Stream (default beyond one batch) or preload them into "
                       "the scratchpad (cycles then count compute alone)."),
              timeout: float = typer.Option(5.0, "--timeout", help="Seconds without a byte from the board before "
                                                                   "giving up."),
              labels: Path | None = typer.Option(None, "--labels", help="Class labels (.npy): also print top-1 "
                                                                          "accuracy."),
              ) -> None:
    """Run INPUTS on the board over its UART bridge, check them against golden; write OUTPUT and board_run.json."""
    from ..cli import (
        atomic_path,
        console,
        load_array,
        load_labels,
        print_accuracy,
        save_array,
        user_errors,
    )
    from ..design import check_codes, open_design
    from ..errors import HwgenError
    from .protocol import BridgeClient, decode_run, design_id, plan_run

    with user_errors():
        design = open_design(design_dir)
        x = load_array(inputs, "inputs")
        y = load_labels(labels, x)
        plan, _, expected = plan_run(design, x, stream)
        try:
            import serial
        except ImportError:
            raise HwgenError("run-board needs pyserial: pip install 'hwgen[board]'") from None
        try:
            link = serial.serial_for_url(port, baudrate=baud, timeout=0.05)
        except (serial.SerialException, ValueError) as exc:
            raise HwgenError(f"--port {port}: cannot open it ({exc})") from None
        with link:
            client = BridgeClient(link, timeout=timeout)
            info = client.connect(design_id(design.verilog_sha256))
            result = client.execute(plan)
        outputs, _, mismatches = check_codes(design.model, decode_run(design, plan, result, len(x)), expected)
        save_array(output, outputs)
        preloaded = bool(plan.reads)
        report = {"schema_version": 1, "port": port, "baud": baud, "design_id": f"{info.design_id:08x}",
                  "samples": len(x), "io": "preloaded" if preloaded else "streamed", "cycles": result.cycles,
                  "predicted_cycles": design.predicted_cycles(len(x), stream=False) if preloaded else None,
                  "bit_exact": mismatches == 0, "mismatches": mismatches, "bytes_sent": result.bytes_sent,
                  "bytes_received": result.bytes_received, "seconds": round(result.seconds, 3)}
        with atomic_path(design_dir / "board_run.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    cycles = (f"{result.cycles} cycles start → done (predicted {report['predicted_cycles']})" if preloaded else
              f"cycle counter {result.cycles} (includes waiting for the UART)")
    console.print(f"wrote {output} {tuple(outputs.shape)}; {len(x)} samples {report['io']} on the board, {cycles}, "
                  f"{'bit-exact' if not mismatches else str(mismatches) + ' MISMATCHES'}, "
                  f"{result.bytes_sent} bytes out / {result.bytes_received} in, {result.seconds:.2f} s")
    if y is not None:
        print_accuracy(outputs, y, "board")
    if mismatches:
        raise typer.Exit(1)
