"""The one place that turns untrusted ONNX node/tensor names into hardware identifiers.

Names in a model are arbitrary strings: Verilog syntax, keywords, duplicates, non-ASCII text, thousands of
characters. Everything generated from them (module, signal, file and memory-image names) goes through
:class:`Namer`, which yields identifiers legal in Verilog-2005, SystemVerilog, VHDL and as file names, unique
within one namer, and stable (the same names in the same order give the same identifiers).
"""
from __future__ import annotations

import hashlib
import re

MAX_LEN = 48

# Verilog-2005 + SystemVerilog-2017 + VHDL-2008 reserved words (lower case; VHDL is case-insensitive).
_RESERVED = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic before begin bind
bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle checker class clocking cmos config
const constraint context continue cover covergroup coverpoint cross deassign default defparam design disable dist
do edge else end endcase endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable endtask enum event
eventually expect export extends extern final first_match for force foreach forever fork forkjoin function
generate genvar global highz0 highz1 if iff ifnone ignore_bins illegal_bins implements implies import incdir
include initial inout input inside instance int integer interconnect interface intersect join join_any join_none
large let liblist library local localparam logic longint macromodule matches medium modport module nand negedge
nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output package packed parameter pmos
posedge primitive priority program property protected pull0 pull1 pulldown pullup pulsestyle_ondetect
pulsestyle_onevent pure rand randc randcase randsequence rcmos real realtime ref reg reject_on release repeat
restrict return rnmos rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with scalared
sequence shortint shortreal showcancelled signed small soft solve specify specparam static string strong strong0
strong1 struct super supply0 supply1 sync_accept_on sync_reject_on table tagged task this throughout time
timeprecision timeunit tran tranif0 tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0
unsigned until until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0 weak1 while
wildcard wire with within wor xnor xor
abs access after architecture array attribute block body buffer bus component configuration constant entity exit
file group guarded impure in inertial is label linkage literal loop map mod next of on open others out port
postponed procedure process range record register rem report rol ror select severity shared signal sla sll sra srl
subtype then to transport units variable
clk rst
""".split())


def sanitize(name: str, prefix: str = "n") -> str:
    """A legal identifier derived from ``name`` (not yet unique; see :class:`Namer`).

    Keeps ASCII letters, digits and single underscores; starts with a letter; avoids reserved words; names longer
    than ``MAX_LEN`` or changed by sanitizing keep a short hash of the original so distinct inputs stay distinct.
    """
    text = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    changed = text != name
    if not text or not text[0].isalpha():
        text = f"{prefix}_{text}" if text else prefix
    if text in _RESERVED:
        text, changed = f"{text}_", True
    if len(text) > MAX_LEN or changed:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:6]
        text = f"{text[:MAX_LEN - 7].rstrip('_')}_{digest}"
    return text


class Namer:
    """Hands out unique sanitized identifiers; asking twice for the same name gives the same identifier."""

    def __init__(self) -> None:
        self._given: dict[str, str] = {}
        self._used: set[str] = set(_RESERVED)

    def __call__(self, name: str, prefix: str = "n") -> str:
        if name in self._given:
            return self._given[name]
        base = ident = sanitize(name, prefix)
        suffix = 1
        while ident in self._used:
            suffix += 1
            ident = f"{base}_{suffix}"
        self._used.add(ident)
        self._given[name] = ident
        return ident


def display(name: str, width: int = 80) -> str:
    """A name fit to show in a table: one line of at most ``width`` characters (long names keep head and tail).
    Markup is the caller's to escape (``rich.markup.escape``, ``|`` in Markdown)."""
    text = " ".join(name.split())
    if len(text) > width:
        head = (width - 1) * 2 // 3
        text = text[:head] + "…" + text[-(width - 1 - head):]
    return text
