"""Self-check of the test-model zoo (:mod:`modelzoo`) and its reference runner (:mod:`reference`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from modelzoo import NAMES, build
from reference import code_ranges, run_reference


def test_names_are_unique() -> None:
    assert len(set(NAMES)) == len(NAMES) >= 14


@pytest.mark.parametrize("name", NAMES)
def test_model_builds_and_runs(name: str, zoo_dir: Path) -> None:
    zoo = build(name, zoo_dir)
    assert zoo.name == name and zoo.path.is_file()
    assert zoo.inputs.dtype == np.float32 and 16 <= len(zoo.inputs) <= 64
    n = len(zoo.inputs)

    ref = run_reference(zoo)
    (output,) = onnx.load(zoo.path, load_external_data=False).graph.output
    output_shape = tuple(d.dim_value for d in output.type.tensor_type.shape.dim[1:])
    assert ref.outputs.dtype == np.float32 and ref.outputs.shape == (n, *output_shape)
    assert np.isfinite(ref.outputs).all() and np.ptp(ref.outputs) > 0

    ranges = code_ranges(zoo)
    assert ref.codes and set(ref.codes) == set(ranges)
    for tensor, codes in ref.codes.items():
        assert codes.dtype == np.int64 and codes.shape[0] == n, tensor
        assert ranges[tensor].contains(codes), (tensor, ranges[tensor], codes.min(), codes.max())
        # Calibrated scales: no activation is constant (all clipped or all zero).
        assert len(np.unique(codes)) > 1, tensor


def test_build_reuses_cache(tmp_path: Path) -> None:
    zoo_cache = tmp_path
    first = build(NAMES[0], zoo_cache)
    mtime = first.path.stat().st_mtime_ns
    again = build(NAMES[0], zoo_cache)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.inputs, first.inputs)
