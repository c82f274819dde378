"""hwgen.names: any string becomes a legal, unique, stable identifier."""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from hwgen.names import MAX_LEN, Namer, sanitize

IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
HOSTILE = ["module", "endmodule", "wire", "input", "always @(posedge clk)", "a;b", "`define X", "\\escaped ",
           "名前", "ünïcödé", "x" * 5000, "", "0start", "_", "__", "fc", "fc", "FC", "clk", "rst", "signal", "entity"]


def test_hostile_names_become_legal_unique_identifiers() -> None:
    namer = Namer()
    idents = [namer(name) for name in HOSTILE]
    for ident in idents:
        assert IDENT.match(ident), ident
        assert len(ident) <= MAX_LEN + 4
    distinct = list(dict.fromkeys(HOSTILE))
    assert len({namer(n) for n in distinct}) == len(distinct)
    assert namer("fc") == idents[HOSTILE.index("fc")]        # the same name gives the same identifier
    assert namer("module") != "module" and namer("clk") != "clk"


def test_sanitize_is_stable() -> None:
    assert sanitize("/layers/layers.1/Gemm") == sanitize("/layers/layers.1/Gemm")
    assert sanitize("weight_buffer") == "weight_buffer"
    assert sanitize("Weight") != sanitize("weight")


@given(st.lists(st.text(max_size=300), max_size=40))
def test_any_text_any_order(names: list[str]) -> None:
    namer = Namer()
    idents = [namer(n) for n in names]
    assert all(IDENT.match(i) and len(i) <= MAX_LEN + 4 for i in idents)
    assert len(set(idents)) == len(set(names))
