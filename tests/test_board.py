"""FPGA boards: the UART units, the UART host bridge in cocotb (the same host code as ``hwgen run-board``, outputs
bit-exact, cycles exact), bitstreams for one iCE40 and one ECP5 board (cached by design hash), and the errors: a
design that does not fit (analytic estimate, and nextpnr), unknown boards, unusable ports."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator
from onnx_helpers import mlp

import hwgen
from hwgen.board import protocol as P
from hwgen.board.uart import UartRx, UartTx

DIVISOR = 4


def hwgen_cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwgen", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def small_model() -> hwgen.Model:
    return hwgen.Model(mlp(k=10, n=5, seed=3))


@pytest.fixture(scope="module")
def systolic(small_model):
    return hwgen.compile(small_model, rows=2, cols=2, batch=4)


@pytest.fixture(scope="module")
def dataflow(small_model):
    return hwgen.compile(small_model, "dataflow")


def inputs(samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (samples, 10)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- UART units
def test_uart_frames_and_loopback() -> None:
    """Every bit lasts exactly DIVISOR cycles (start, 8 data LSB first, stop); what the transmitter sends the
    receiver gets back, byte for byte; a line held low is a break (brk), not a byte."""
    m = Module()
    m.submodules.tx = tx = UartTx(DIVISOR)
    m.submodules.rx = rx = UartRx(DIVISOR)
    hold_low = Signal()
    m.d.comb += rx.rx.eq(tx.tx & ~hold_low)
    sent = [0x00, 0xFF, 0x55, 0xA5, *np.random.default_rng(1).integers(0, 256, 12).tolist()]
    line: list[int] = []
    received: list[int] = []
    breaks: list[int] = []

    async def sender(ctx):
        for byte in sent:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
        await ctx.tick().repeat(12 * DIVISOR)
        ctx.set(hold_low, 1)
        await ctx.tick().repeat(25 * DIVISOR)
        ctx.set(hold_low, 0)
        await ctx.tick().repeat(12 * DIVISOR)

    async def monitor(ctx):
        async for _, _, level, valid, payload, brk in ctx.tick().sample(tx.tx, rx.o.valid, rx.o.payload, rx.brk):
            line.append(level)
            if valid:
                received.append(payload)
            breaks.append(brk)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(sender)
    sim.add_process(monitor)
    sim.run()
    assert received == sent
    assert sum(breaks) == 1
    first = line.index(0)
    expected = []
    for byte in sent:
        bits = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
        expected += [bit for bit in bits for _ in range(DIVISOR)]
    assert line[first:first + len(expected)] == expected


# ---------------------------------------------------------------------------------------------------- protocol
class ScriptedPort:
    """A serial port whose far end answers identify with ``info`` (or nothing): for the client's checks."""

    def __init__(self, info: P.BridgeInfo | None):
        self.info = info
        self.pending = bytearray()
        self.breaks = 0

    def write(self, data: bytes) -> int:
        if self.info is not None and data == bytes([P.CMD_IDENT]):
            self.pending += bytes([P.TAG_IDENT]) + self.info.pack()
        return len(data)

    def read(self, size: int = 1) -> bytes:
        data, self.pending = bytes(self.pending[:size]), self.pending[size:]
        return data

    @property
    def in_waiting(self) -> int:
        return len(self.pending)

    def send_break(self, duration: float = 0.25) -> None:
        self.breaks += 1

    def reset_input_buffer(self) -> None:
        self.pending.clear()


def test_client_refuses_another_design_and_a_silent_port() -> None:
    info = P.BridgeInfo(0x1234ABCD, 16, 34, P.FIFO_DEPTH, P.ACK_BYTES)
    assert P.BridgeInfo.unpack(info.pack()) == info
    port = ScriptedPort(info)
    assert P.BridgeClient(port).connect(0x1234ABCD) == info and port.breaks == 1
    with pytest.raises(P.BridgeError) as error:
        P.BridgeClient(ScriptedPort(info)).connect(0x0BADF00D)
    assert str(error.value) == ("the board runs design 1234abcd, not 0badf00d: build and program its bitstream "
                                "with `hwgen board` first")
    with pytest.raises(P.BridgeError) as error:
        P.BridgeClient(ScriptedPort(None), timeout=0.05).connect()
    assert str(error.value) == ("no 'i' answer from the bridge within 0.05 s (wrong port, wrong baud rate, or the "
                                "board is not programmed with an hwgen bitstream?)")


# ---------------------------------------------------------------------------------------------------- bridge (cocotb)
def test_uart_bridge_systolic_bit_exact(systolic) -> None:
    """One simulation, two sessions (each starts with a break): 4 samples preloaded (cycles = the analytic model's,
    outputs read back with 'R') and 6 samples streamed through s_axis/m_axis over the UART in two chunks."""
    from hwgen.board.sim import SIM_DIVISOR, simulate_bridge

    preloaded, streamed = simulate_bridge(systolic, [(inputs(4, 0), None), (inputs(6, 1), None)])
    assert preloaded.plan.reads and not preloaded.plan.x
    assert preloaded.mismatches == 0 and preloaded.result.cycles == systolic.predicted_cycles(4, stream=False)
    assert preloaded.result.flags == P.STATUS_DONE
    assert streamed.plan.x and not streamed.plan.reads
    assert streamed.mismatches == 0 and streamed.result.flags == P.STATUS_DONE
    assert len(streamed.result.y) == 6 * systolic.program.y_words and sum(streamed.result.y_last) == 6
    # the cycle counter ran while the UART delivered the samples: one frame per byte of every 'D'/'E' command
    x_bits = next(p["bits"] for p in systolic.manifest()["ports"] if p["name"] == "s_axis_tdata")
    frames = len(streamed.plan.x) * (1 + P.beat_bytes(x_bits))
    assert streamed.result.cycles > frames * 10 * SIM_DIVISOR


@pytest.mark.nightly
def test_uart_bridge_dataflow_bit_exact(dataflow) -> None:
    """The same bridge around the dataflow top (its own Verilator build, hence nightly; the ci tier builds its
    bitstreams): streamed, the run ends with the last expected output beat (the pipeline has no done)."""
    from hwgen.board.sim import simulate_bridge

    (run,) = simulate_bridge(dataflow, [(inputs(5, 2), None)])
    assert run.mismatches == 0 and not run.plan.wait_done
    assert sum(run.result.y_last) == 5 and run.result.flags == P.STATUS_BUSY


# ---------------------------------------------------------------------------------------------------- bitstreams
BITSTREAM_MARKS = {"icebreaker": ("hwgen_board.bin", b"\x7e\xaa\x99\x7e"),      # iCE40 sync word
                   "ulx3s-85f": ("hwgen_board.bit", b"\xff\xff\xbd\xb3")}       # ECP5 preamble


@pytest.mark.parametrize("board, arch", [("icebreaker", "dataflow"), ("ulx3s-85f", "dataflow"),
                                         pytest.param("ulx3s-85f", "systolic", marks=pytest.mark.nightly)])
def test_board_bitstream_built_and_cached(board: str, arch: str, request, tmp_path: Path) -> None:
    """The dataflow test design on one iCE40 and one ECP5 board (the 2×2 systolic array, 3–4× larger, nightly;
    it does not fit the icebreaker's iCE40UP5K: 6848 of 5280 logic cells)."""
    design = request.getfixturevalue(arch)
    out = design.write(tmp_path / "design")
    started = time.perf_counter()
    result = hwgen_cli("board", str(out), "--board", board, "-o", str(tmp_path / "build"))
    first = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    name, mark = BITSTREAM_MARKS[board]
    assert mark in (tmp_path / "build" / name).read_bytes()[:256]
    report = json.loads((tmp_path / "build" / "board.json").read_text())
    assert report["board"] == board and report["design"]["verilog_sha256"] == design.verilog_sha256
    assert report["placed"]["fmax_mhz"] >= report["clock_hz"] / 1e6
    assert all(0 < u["used"] <= u["available"] for u in report["placed"]["utilization"].values())
    assert f"fmax {report['placed']['fmax_mhz']:.1f} MHz (board clock {report['clock_hz'] / 1e6:g} MHz)" in \
        result.stdout
    # the same design again: the cached build, identical bitstream
    started = time.perf_counter()
    again = hwgen_cli("board", str(out), "--board", board, "-o", str(tmp_path / "again"))
    cached = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    assert "(cached in" in again.stdout
    assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "build" / name).read_bytes()
    if board == "ulx3s-85f":                # nextpnr placed the register-packed netlist (the pass's record kept)
        record = json.loads((tmp_path / "build" / "hwgen_board.ecp5_pack.json").read_text())
        assert record["cells_after"]["TRELLIS_FF"] == record["cells_before"]["TRELLIS_FF"] - record["ffs_removed"] \
            + record["ffs_duplicated"]
        assert report["ecp5_pack"]["ram_ports_absorbed"] == record["ram_ports_absorbed"]
        assert "--json hwgen_board.packed.json" in (tmp_path / "build" / "build_hwgen_board.sh").read_text()
    print(f"{board} {arch}: first build {first:.1f} s (cached: {report['cached']}), second {cached:.1f} s")


def test_ecp5_board_build_uses_block_ram_output_registers(small_model, tmp_path: Path) -> None:
    """The 2×2 systolic test design with activation and output banks deep enough for DP16KDs (512 words), on the
    ULX3S: the register after each bank's read port is inside its DP16KD (``REGMODE = "OUTREG"``) in the netlist
    nextpnr placed, and each PE's product register inside its MULT18X18D, as ``hwgen estimate --synth`` packs them."""
    design = hwgen.compile(small_model, rows=2, cols=2, batch=4, act_depth=512, out_depth=512)
    out = design.write(tmp_path / "design")
    result = hwgen_cli("board", str(out), "--board", "ulx3s-85f", "-o", str(tmp_path / "build"))
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "build" / "hwgen_board.ecp5_pack.json").read_text())
    rams = {cell: modes for cell, modes in record["block_registers"].items() if "REGMODE_A" in modes}
    outreg = sorted(cell for cell, modes in rams.items() if "OUTREG" in modes.values())
    banks = [cell for cell in rams if ".core.activations_" in cell or ".core.outputs_" in cell]
    assert len(banks) == 4 and set(banks) <= set(outreg), (banks, outreg)     # R = 2 banks of each
    assert record["ram_ports_absorbed"] >= len(outreg) and record["cells_after"]["DP16KD"] == len(rams)
    assert [outcome for _, port, outcome in record["ports"] if port == "P"] == ["absorbed"] * 4
    report = json.loads((tmp_path / "build" / "board.json").read_text())
    assert report["ecp5_pack"]["rams_outreg"] == len(outreg)
    assert report["placed"]["fmax_mhz"] >= report["clock_hz"] / 1e6
    assert (f"ECP5 register packing: {len(outreg)} block RAMs with output registers, 4 DSP registers absorbed "
            "(hwgen_board.ecp5_pack.json)") in result.stdout


def test_ecp5_board_script_packs_registers_between_yosys_and_nextpnr() -> None:
    """The ECP5 build script: Yosys writes hwgen_board.json, the packing step writes hwgen_board.packed.json (and
    its record), nextpnr-ecp5 places the packed netlist; iCE40 scripts are Amaranth's own."""
    from amaranth import Elaboratable, Module

    from hwgen.board.build import BUILD_NAME, _platform, find_board

    class Loopback(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            uart = platform.request("uart", 0)
            m.d.comb += uart.tx.o.eq(uart.rx.i)
            return m

    def script(board: str) -> list[str]:
        plan = _platform(find_board(board)).build(Loopback(), name=BUILD_NAME, do_build=False)
        return [line for line in plan.files[f"build_{BUILD_NAME}.sh"].splitlines() if line.startswith('"$')]

    yosys, pack, nextpnr, ecppack = script("ulx3s-85f")
    assert yosys.startswith('"$YOSYS"') and ecppack.startswith('"$ECPPACK"')
    assert pack == ('"$HWGEN_PYTHON" -m hwgen.estimate.ecp5_pack_run hwgen_board.json -o hwgen_board.packed.json '
                    '--record hwgen_board.ecp5_pack.json')
    assert nextpnr.startswith('"$NEXTPNR_ECP5"') and "--json hwgen_board.packed.json" in nextpnr
    assert not any("ecp5_pack" in line for line in script("icebreaker"))


def test_board_refuses_a_design_that_does_not_fit(example_dir: Path, tmp_path: Path) -> None:
    """Before any build: the analytic estimate against the device's capacity, both in the message."""
    from hwgen.board.bridge import bridge_config
    from hwgen.board.build import find_board, fit_estimate, uart_divisor

    design = hwgen.compile(example_dir / "digits_mlp.onnx", rows=4, cols=4, batch=8)
    out = design.write(tmp_path / "design")
    board = find_board("icebreaker")
    needs, _ = fit_estimate(design, board, bridge_config(design, uart_divisor(board.clock_hz, P.DEFAULT_BAUD)))
    result = hwgen_cli("board", str(out), "--board", "icebreaker", "-o", str(tmp_path / "build"))
    assert result.returncode == 2
    over = [f"{needs[key]:.0f} {unit} (the device has {capacity})"
            for key, unit, capacity in (("lut", "LUT4", 5280), ("ff", "FF", 5280), ("bram", "SB_RAM40_4K", 30))
            if needs[key] > capacity]
    assert result.stderr == (
        "error: the design does not fit the icebreaker (iCE40UP5K): the analytic estimate of the accelerator and "
        f"its UART bridge needs {' and '.join(over)}; use a smaller configuration or a larger board (--force tries "
        "place-and-route anyway)\n")
    assert needs["lut"] > 5280 and needs["bram"] > 30
    assert not (tmp_path / "build").exists()


def test_board_reports_nextpnr_running_out(dataflow, tmp_path: Path) -> None:
    """--force skips the estimate; nextpnr then finds the icestick's iCE40HX1K too small and says by how much."""
    out = dataflow.write(tmp_path / "design")
    result = hwgen_cli("board", str(out), "--board", "icestick", "-o", str(tmp_path / "build"), "--force")
    assert result.returncode == 2
    assert result.stderr.startswith("error: the design does not fit the icestick (iCE40HX1K): nextpnr needs ")
    assert "ICESTORM_LC (the device has 1280)" in result.stderr
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("board, message", [
    ("no-such-board", "--board no-such-board: unknown; boards with an open toolchain: "),
    ("artya7-35", ("--board artya7-35: its xc7a35ti needs the vendor's tools; hwgen board builds iCE40 and "
                   "ECP5 boards with the open toolchain (")),
    ("fomu-pvt", "--board fomu-pvt: the board has no UART resource for the host bridge"),
])
def test_board_lookup_errors(board: str, message: str) -> None:
    from hwgen.board.build import BoardError, find_board

    with pytest.raises(BoardError) as error:
        find_board(board)
    assert str(error.value).startswith(message)
    assert "icebreaker" in str(error.value) or "UART" in message


def test_board_refuses_an_unreachable_baud_rate(systolic, tmp_path: Path) -> None:
    out = systolic.write(tmp_path / "design")
    result = hwgen_cli("board", str(out), "--board", "icebreaker", "-o", str(tmp_path / "build"), "--baud", "2500000")
    assert result.returncode == 2
    assert result.stderr == "error: --baud 2500000: the 12 MHz clock cannot make it within 2% (divisor 4.80)\n"


def test_run_board_reports_a_port_it_cannot_open(systolic, tmp_path: Path) -> None:
    out = systolic.write(tmp_path / "design")
    np.save(tmp_path / "x.npy", inputs(2, 0))
    result = hwgen_cli("run-board", str(out), "--port", str(tmp_path / "ttyNONE"), "--inputs", str(tmp_path / "x.npy"),
                       "--output", str(tmp_path / "y.npy"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --port {tmp_path / 'ttyNONE'}: cannot open it (")
    assert not (tmp_path / "y.npy").exists()
