"""Integration files every ``hwgen compile`` writes: one Verilog file per module, an AXI4 wrapper, a FuseSoC core,
a Vivado project/IP-packaging script with a clock constraint template, and the wrapper's register map.

::

    OUT/rtl/<top>.v, <top>__<sub>.v …   the accelerator core, one module per file (file stem = module name)
    OUT/rtl/<top>_axi.v                  AXI4-Lite control/status + AXI4-Stream data wrapper around <top>
    OUT/rtl/<top>_axi_tb.v               self-checking register-map testbench (FuseSoC ``sim`` target)
    OUT/rtl/<top>_rom.v, <top>_rom__*.v  with ``--rom``: the core with its memories initialized
    OUT/<top>_axi.core                   FuseSoC core: filesets, parameters, targets lint / sim / synth
    OUT/lint_waivers.vlt                 Verilator waivers for Amaranth's code only (never for the wrapper)
    OUT/vivado/<top>_axi.tcl             Vivado: project, synthesis, IP packaging (``vivado -mode batch -source``)
    OUT/vivado/<top>_axi.xdc             Vivado: clock constraint template
    OUT/regmap.md                        the wrapper's register map

Amaranth writes the core as one Verilog text whose submodules carry escaped hierarchical names
(``\\hwgen_systolic.core.array``). :func:`split_modules` renames them to plain identifiers (``.`` → ``__``:
``hwgen_systolic__core__array``) and gives each its own file, so every file holds one module named as the file,
and the ROM variant (``<top>_rom``) defines no module of the plain core a second time. Simulation and the
content hashes keep using the single text (:attr:`Design.verilog`); the split is a renaming, nothing else.

The register map (:func:`registers`) is one table that renders the wrapper's address decoder, ``regmap.md``, the
manifest's ``axi`` section and the FuseSoC testbench's expected values.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from . import __version__
from .errors import HwgenError
from .templates import render

#: Register-map version, in VERSION[31:24]; bumped whenever an offset or a field changes meaning.
REGMAP_VERSION = 1
#: ID register: ASCII "HWGN".
MAGIC = 0x4857474E
ARCH_CODES = {"systolic": 1, "dataflow": 2}
CONFIG_BASE = 0x80
#: Default Vivado part and clock period (ns) of the generated project and XDC (both arguments/templates to edit).
VIVADO_PART = "xc7z020clg400-1"
CLOCK_NS = 10.0
#: Load images of each architecture, in load order.
IMAGES = {"systolic": ("weights.load", "thresholds.load", "program.load"),
          "dataflow": ("weights.load", "thresholds.load", "parameters.load")}
RESP_OKAY, RESP_SLVERR = 0, 2
_MODULE = re.compile(r"((?:\(\*[^\n]*\*\)\n)*)module (\\[^\s]+|[A-Za-z_][A-Za-z0-9_$]*)(.*?\nendmodule\n)",
                     re.DOTALL)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


# ------------------------------------------------------------------------------------------------ Verilog files
def split_modules(verilog: str, top: str, name: str | None = None) -> dict[str, str]:
    """Amaranth's Verilog of ``top`` as ``{"<module>.v": text}``, one module per file, the top renamed ``name``.

    Submodule ``\\<top>.a.b`` becomes ``<name>__a__b`` (its instantiations follow; other characters than letters,
    digits and ``_``, such as the ``$`` of Amaranth's ``stream_in$161``, become ``_``, so every name is also a plain
    file name); each file starts with a header naming the generator. Raises :class:`HwgenError` if two modules would get the same name or a name is not a
    plain Verilog identifier.
    """
    name = name or top
    modules = _MODULE.findall(verilog)
    if not modules or modules[0][1] != top:
        raise HwgenError(f"generated Verilog: expected module '{top}' first")
    renamed = {}
    for _, module, _ in modules:
        plain = module.removeprefix("\\")
        if plain != top and not plain.startswith(top + "."):
            raise HwgenError(f"generated Verilog: module '{plain}' is not inside '{top}'")
        new = name + re.sub(r"[^A-Za-z0-9_]", "_", plain[len(top):].replace(".", "__"))
        if not _IDENTIFIER.fullmatch(new):
            raise HwgenError(f"generated Verilog: module '{plain}' has no plain identifier ('{new}')")
        if new in renamed.values():
            raise HwgenError(f"generated Verilog: two modules would both be named '{new}'")
        renamed[module] = new
    escaped = {old: new for old, new in renamed.items() if old.startswith("\\")}
    pattern = re.compile("|".join(re.escape(old) + r"(?=\s)" for old in sorted(escaped, key=len, reverse=True)))
    files = {}
    for attributes, module, body in modules:
        attributes = "".join(line + "\n" for line in attributes.splitlines() if line != "(* top =  1  *)")
        text = f"{attributes}module {renamed[module]}{body}"
        if escaped:
            text = pattern.sub(lambda match: escaped[match.group(0)], text)
        header = render("verilog_header.v.j2", module=renamed[module], version=__version__,
                        source=f"the Amaranth module {module.removeprefix(chr(92))} (amaranth.back.verilog)",
                        notes=[])
        files[f"{renamed[module]}.v"] = f"{header}\n{text}"
    return files


# ------------------------------------------------------------------------------------------------ register map
@dataclass(frozen=True)
class Field:
    """Bits ``[lsb + bits - 1 : lsb]`` of a register; ``signal`` is the wrapper's signal read back there."""

    name: str
    lsb: int
    bits: int
    access: str          # R, RW, W1 (write 1 to act, reads 0), W1C (reads the flag, write 1 to clear)
    signal: str
    doc: str


@dataclass(frozen=True)
class Register:
    """One 32-bit register at byte ``offset``; ``value`` is set for constants."""

    name: str
    offset: int
    access: str
    doc: str
    fields: tuple[Field, ...] = ()
    value: int | None = None
    reset: int = 0       # value after reset (registers that are not constants)

    @property
    def rw_mask(self) -> int:
        """The bits a write stores and a read returns (RW fields)."""
        return sum(((1 << f.bits) - 1) << f.lsb for f in self.fields if f.access == "RW")

    @property
    def const(self) -> str:
        """The wrapper's localparam for the offset."""
        return f"REG_{self.name}"


def _load_fields() -> dict[str, int]:
    """Field widths of the core's ``load`` payload (the host protocol every hwgen top shares)."""
    from amaranth import Shape

    from .arch.systolic.top import LOAD

    return {name: Shape.cast(field.shape).width for name, field in LOAD}


def config_words(design) -> list[tuple[str, int, str]]:
    """The hardware configuration read back at ``CONFIG_BASE + 4·i``: (name, value, meaning) per word."""
    s_bits, m_bits = core_stream_bits(design)
    words = [("s_axis_core_bits", s_bits, "s_axis_tdata bits the core uses (the rest of the bytes is ignored)"),
             ("m_axis_core_bits", m_bits, "m_axis_tdata bits the core drives (the bits above are 0)")]
    cfg = design.config
    if design.arch == "dataflow":
        words += [("layers", len(cfg.layers), "MVAU layers"),
                  ("in_lanes", cfg.in_lanes, "codes per s_axis beat"),
                  ("in_lane_bits", cfg.in_type.bits, "bits per input code"),
                  ("out_lanes", cfg.out_lanes, "codes per m_axis beat"),
                  ("out_lane_bits", cfg.out_type.bits, "bits per output code"),
                  ("in_beats", cfg.in_beats, "s_axis beats per sample"),
                  ("out_beats", cfg.out_beats, "m_axis beats per sample"),
                  ("ii_cycles", cfg.predicted_ii_cycles, "initiation interval (cycles per sample)"),
                  ("latency_cycles", cfg.predicted_latency_cycles, "first input to last output of a sample")]
        for index, layer in enumerate(cfg.layers):
            words += [(f"layer{index}_{key}", getattr(layer, key), text) for key, text in
                      (("mw", "input channels"), ("mh", "output channels"), ("simd", "input lanes per cycle"),
                       ("pe", "output channels per cycle"))]
        return words
    words += [("rows", cfg.rows, "array rows"), ("cols", cfg.cols, "array columns"),
              ("dataflow", ("os", "ws").index(cfg.dataflow), "0: output-stationary, 1: weight-stationary"),
              ("a_bits", cfg.a_bits, "activation code bits"), ("w_bits", cfg.w_bits, "weight bits"),
              ("k_max", cfg.k_max, "longest dot product"), ("out_bits", cfg.out_bits, "requantized output bits"),
              ("store_bits", cfg.store_bits, "bits per stored code (s_axis lane)"),
              ("acc_bits", cfg.acc_bits, "accumulator bits (m_axis lane)"),
              ("act_depth", cfg.act_depth, "words per activation bank"),
              ("weight_depth", cfg.weight_depth, "weights per weight bank"),
              ("slot_depth", cfg.slot_depth, "threshold slots per requant lane"),
              ("out_depth", cfg.out_depth, "words per output bank"),
              ("prog_depth", cfg.prog_depth, "program instructions"),
              ("acc_depth", cfg.acc_depth, "ws partial sums per column")]
    return words


def core_stream_bits(design) -> tuple[int, int]:
    """Bits of the core's ``s_axis_tdata`` and ``m_axis_tdata``."""
    from amaranth import Shape

    from .arch.dataflow.top import dataflow_signature
    from .arch.systolic.top import host_signature

    signature = (dataflow_signature if design.arch == "dataflow" else host_signature)(design.config)
    return tuple(Shape.cast(signature.members[name].shape).width for name in ("s_axis_tdata", "m_axis_tdata"))


def _version_word() -> int:
    numbers = [int(part) for part in re.findall(r"\d+", __version__)[:3]] + [0, 0, 0]
    major, minor, patch = (min(n, 255) for n in numbers[:3])
    return REGMAP_VERSION << 24 | major << 16 | minor << 8 | patch


def registers(design) -> list[Register]:
    """The AXI4-Lite register map of ``design``'s wrapper, by offset."""
    load = _load_fields()
    words = config_words(design)
    constants = [
        ("ID", 0x14, MAGIC, "ASCII \"HWGN\": an hwgen accelerator"),
        ("VERSION", 0x18, _version_word(), (f"[31:24] register-map version ({REGMAP_VERSION}), [23:0] hwgen "
                                            f"version major.minor.patch ({__version__})")),
        ("ARCH", 0x1C, ARCH_CODES[design.arch], "1: systolic array, 2: dataflow pipeline"),
        ("DESIGN_HASH", 0x20, int(design.verilog_sha256[:8], 16),
         "first 32 bits of the core's Verilog SHA-256 (manifest verilog_sha256): images must match it"),
        ("CONFIG_WORDS", 0x24, len(words), f"number of CONFIG words at 0x{CONFIG_BASE:02X} + 4·i"),
    ]
    regs = [
        Register("CONTROL", 0x00, "RW", "start, soft reset, interrupt enable", (
            Field("START", 0, 1, "W1", "1'b0", "start the core (a one-cycle start pulse); SLVERR while busy"),
            Field("SOFT_RESET", 1, 1, "W1", "1'b0", "reset the core and the wrapper's flags and counters (loaded "
                                                     "memories keep their contents)"),
            Field("IRQ_ENABLE", 2, 1, "RW", "irq_enable", "drive irq while STATUS.DONE is set"))),
        Register("STATUS", 0x04, "R/W1C", "core state (after reset: idle, loads accepted)", (
            Field("BUSY", 0, 1, "R", "busy", "the core runs (a dataflow pipeline stays busy until reset)"),
            Field("DONE", 1, 1, "W1C", "done_flag", "the run finished (systolic); cleared by START or by writing 1"),
            Field("LOAD_READY", 2, 1, "R", "load_ready", "LOAD_DATA writes are accepted (the core is idle)"),
            Field("READ_READY", 3, 1, "R", "read_ready", "READ_DATA reads are answered (systolic, idle)")),
                 reset=_status_reset(design.arch)),
        Register("CYCLES", 0x08, "R", "the core's cycle counter: start → done (dataflow: cycles since start)",
                 (Field("CYCLES", 0, 32, "R", "cycles", "clock cycles"),)),
        Register("IN_BEATS", 0x0C, "R", "s_axis transfers since the last START",
                 (Field("IN_BEATS", 0, 32, "R", "in_beats", "beats"),)),
        Register("OUT_BEATS", 0x10, "R", "m_axis transfers since the last START",
                 (Field("OUT_BEATS", 0, 32, "R", "out_beats", "beats"),)),
        *(Register(name, offset, "R", doc, value=value) for name, offset, value, doc in constants),
        Register("LOAD_SELECT", 0x40, "RW", "target, bank and lane of the next load or read", (
            Field("TARGET", 0, load["target"], "RW", "load_target", "memory: see the manifest's host_protocol"),
            Field("BANK", 8, load["bank"], "RW", "load_bank", "bank (array row/column, dataflow layer)"),
            Field("LANE", 16, load["lane"], "RW", "load_lane", "lane within the word"))),
        Register("LOAD_ADDR", 0x44, "RW", "word address of the next load or read",
                 (Field("ADDR", 0, load["addr"], "RW", "load_addr", "address"),)),
        Register("LOAD_DATA", 0x48, "RW", "writing it loads (target, bank, addr, lane, data) into the core; the "
                 "write answers once the core took it, SLVERR if the core is busy",
                 (Field("DATA", 0, load["data"], "RW", "load_data", "data (two's complement)"),)),
        Register("READ_DATA", 0x4C, "R", "reading it reads (target, bank, addr, lane) from the core (systolic "
                 "activations/outputs, idle only); SLVERR when the core cannot answer (busy, or dataflow)",
                 (Field("DATA", 0, 32, "R", "rdata_payload", "the element, sign-extended"),)),
    ]
    regs += [Register(f"CONFIG_{index}", CONFIG_BASE + 4 * index, "R", f"{name}: {doc}", value=value)
             for index, (name, value, doc) in enumerate(words)]
    for reg in regs:
        if reg.value is not None and not 0 <= reg.value < 1 << 32:
            raise HwgenError(f"register {reg.name}: value {reg.value} does not fit in 32 bits")
    return sorted(regs, key=lambda reg: reg.offset)


def _status_reset(arch: str) -> int:
    """STATUS after reset: LOAD_READY, and READ_READY on the systolic array."""
    return 0b0100 | (0b1000 if arch == "systolic" else 0)


def address_bits(regs: list[Register]) -> int:
    """Bits of the AXI4-Lite address: every register's offset fits (at least 8)."""
    return max(8, max(reg.offset for reg in regs).bit_length())


def axi_manifest(design) -> dict:
    """The manifest's ``axi`` section: wrapper top, ports' widths and every register."""
    regs = registers(design)
    s_bits, m_bits = core_stream_bits(design)
    return {"top": f"{design_top(design)}_axi", "address_bits": address_bits(regs), "data_bits": 32,
            "s_axis_tdata_bits": _bytes(s_bits) * 8, "m_axis_tdata_bits": _bytes(m_bits) * 8,
            "registers": [{k: v for k, v in asdict(reg).items() if v not in (None, ())} for reg in regs]}


def design_top(design) -> str:
    from .arch.dataflow.design import TOP_NAME as DATAFLOW_TOP
    from .design import TOP_NAME as SYSTOLIC_TOP

    return DATAFLOW_TOP if design.arch == "dataflow" else SYSTOLIC_TOP


def _bytes(bits: int) -> int:
    return -(-bits // 8)


# ------------------------------------------------------------------------------------------------ rendering
def wrapper_context(design) -> dict:
    """Everything the templates need about ``design``."""
    top = design_top(design)
    regs = registers(design)
    s_bits, m_bits = core_stream_bits(design)
    load = _load_fields()
    return {
        "version": __version__, "arch": design.arch, "core": top, "wrapper": f"{top}_axi", "registers": regs,
        "reg": {reg.name: reg for reg in regs}, "addr_bits": address_bits(regs),
        "s_bits": s_bits, "s_padded": _bytes(s_bits) * 8, "m_bits": m_bits, "m_padded": _bytes(m_bits) * 8,
        "load_fields": [{"name": name, "bits": bits} for name, bits in load.items()],
        "read_fields": [{"name": name, "bits": bits} for name, bits in load.items() if name != "data"],
        "resp_okay": RESP_OKAY, "resp_slverr": RESP_SLVERR, "config": config_words(design),
        "masks": {reg.name: reg.rw_mask for reg in regs},
        "unmapped": next(offset for offset in range(0, 1 << 16, 4) if offset not in {reg.offset for reg in regs}),
        "verilog_sha256": design.verilog_sha256, "vlnv": f"hwgen:generated:{top}_axi:{_semver()}",
        "ip_version": ".".join(_semver().split(".")[:2]), "part": VIVADO_PART, "clock_ns": CLOCK_NS,
        "config_base": CONFIG_BASE,
        "config_value": {name: value for name, value, _ in config_words(design)},
        "images": IMAGES[design.arch], "waivers": _core_waivers(),
        **({"batch": design.program.batch, "x_words": design.program.x_words, "y_words": design.program.y_words}
           if design.arch == "systolic" else {}),
        "module": f"{top}_axi", "source": f"rtl_templates/axi_wrapper.v.j2 for {top}", "notes": [],
    }


def _semver() -> str:
    """hwgen's version as major.minor.patch (FuseSoC VLNV, Vivado IP version)."""
    return ".".join(str(n) for n in ([int(part) for part in re.findall(r"\d+", __version__)[:3]] + [0, 0, 0])[:3])


def _core_waivers() -> dict[str, str]:
    """Verilator lint rules waived in Amaranth's files (hwgen.verilator.LINT_WAIVERS less the one-file rule the
    split removes)."""
    from .verilator import LINT_WAIVERS

    return {rule: reason for rule, reason in LINT_WAIVERS.items() if rule != "DECLFILENAME"}


def integration_files(design, rom_verilog: str | None = None) -> dict[str, str]:
    """The files :func:`hwgen.design.write_files` writes for ``design``: the split core (and ROM core), the AXI
    wrapper and its testbench, the FuseSoC core, the lint waivers, the Vivado script and XDC, and regmap.md."""
    context = wrapper_context(design)
    top, name = context["core"], context["wrapper"]
    core = split_modules(design.verilog, top)
    rom = split_modules(rom_verilog, top, f"{top}_rom") if rom_verilog is not None else {}
    rtl = {f"rtl/{file}": text for file, text in {**core, **rom}.items()}
    rtl[f"rtl/{name}.v"] = render("axi_wrapper.v.j2", **context)
    testbench = f"rtl/{name}_tb.v"
    files = {**rtl, testbench: render("axi_wrapper_tb.v.j2", **{**context, "module": f"{name}_tb"})}
    listing = {"core": sorted(f"rtl/{file}" for file in core), "rom": sorted(f"rtl/{file}" for file in rom),
               "wrapper": f"rtl/{name}.v", "testbench": testbench}
    patterns = [f"*rtl/{stem}{suffix}" for stem in [top] + ([f"{top}_rom"] if rom else []) for suffix in (".v", "__*.v")]
    context = {**context, "files": listing, "core_patterns": patterns}
    files[f"{name}.core"] = render("fusesoc.core.j2", **context)
    files["lint_waivers.vlt"] = render("lint_waivers.vlt.j2", **context)
    files[f"vivado/{name}.tcl"] = render("vivado_project.tcl.j2", **context)
    files[f"vivado/{name}.xdc"] = render("vivado_clock.xdc.j2", **context)
    files["regmap.md"] = render("regmap.md.j2", **context)
    return files


def manifest_files(design, rom: bool = False) -> dict:
    """The manifest's ``files`` entries for the integration files (paths relative to OUT/)."""
    top = design_top(design)
    name = f"{top}_axi"
    return {"verilog": f"rtl/{top}.v", "wrapper": f"rtl/{name}.v", "testbench": f"rtl/{name}_tb.v",
            "fusesoc": f"{name}.core", "lint_waivers": "lint_waivers.vlt", "vivado_tcl": f"vivado/{name}.tcl",
            "vivado_xdc": f"vivado/{name}.xdc", "regmap": "regmap.md", **({"rom": f"rtl/{top}_rom.v"} if rom else {})}


def core_sources(files: dict[str, str], top: str) -> str:
    """The core's files of an :func:`integration_files` result as one Verilog text (top module first)."""
    names = sorted(name for name in files if name.startswith((f"rtl/{top}.", f"rtl/{top}__")))
    return "".join(files[name] for name in names)


__all__ = ["Field", "Register", "axi_manifest", "config_words", "integration_files", "registers", "split_modules"]
