"""FINN's CNV 2w2a (brevitas_examples, 32×32×3 input, two MaxPools) on the systolic array in Verilator, both
dataflows: bit-exact against the golden model, cycles equal to the prediction. The weight-stationary run is in the
nightly tier (the ci tier covers every conv feature on both dataflows with the small models of
test_systolic_conv_verilator.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelzoo import build

import hwgen

# start → done cycles of one sample on 4×32 (exact, analytic; the RTL's counter must equal them)
CYCLES = {"os": 637_784, "ws": 876_413}


@pytest.mark.parametrize("dataflow", ["os", pytest.param("ws", marks=pytest.mark.nightly)])
def test_finn_cnv_2w2a_bit_exact_with_exact_cycles(dataflow: str, zoo_dir: Path) -> None:
    """One sample on a 4×32 array (32 columns because CNV's 1.6 M weights need ≤ 65 536 words per weight bank)."""
    model = build("cnv_2w2a_qonnx", zoo_dir)
    design = hwgen.compile(model.path, rows=4, cols=32, dataflow=dataflow, batch=1)
    assert [layer.pool for layer in design.layers].count("max") == 2
    report = design.simulate(np.asarray(model.inputs, np.float32)[:1]).report
    assert report["bit_exact"] and report["mismatches"] == 0, report
    assert report["cycles"] == report["predicted_cycles"] == design.predicted_cycles(1) == CYCLES[dataflow]
