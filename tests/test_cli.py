"""The CLI and Python API on the bundled example: layer table, golden outputs, N-sample convention."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import hwgen


def hwgen_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwgen", *args], capture_output=True, text=True, timeout=300)


def test_check_prints_layer_table(example_dir: Path) -> None:
    result = hwgen_cli("check", str(example_dir / "digits_mlp.onnx"))
    assert result.returncode == 0, result.stderr
    assert "digits_mlp.onnx: 7 layers, all supported" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if " MatMul " in line]
    assert [r[2:5] for r in rows] == [["64→64", "UINT8→INT16", "16"], ["64→32", "UINT4→INT12", "12"],
                                      ["32→10", "UINT4→INT11", "11"]]


def test_golden_cli_matches_api(example_dir: Path, tmp_path: Path) -> None:
    model = hwgen.load(example_dir / "digits_mlp.onnx")
    x = np.load(example_dir / "test_x.npy")
    labels = np.load(example_dir / "test_y.npy")
    out = tmp_path / "y.npy"
    result = hwgen_cli("golden", str(example_dir / "digits_mlp.onnx"), "--inputs", str(example_dir / "test_x.npy"),
                       "--output", str(out), "--labels", str(example_dir / "test_y.npy"))
    assert result.returncode == 0, result.stderr
    y = np.load(out)
    assert y.dtype == np.float32 and y.shape == (len(x), 10)
    np.testing.assert_array_equal(y, model.run(x))
    accuracy = np.mean(y.argmax(1) == labels)
    assert f"golden top-1 accuracy: {100 * accuracy:.2f}% on {len(x)} samples" in result.stdout
    assert accuracy >= 0.9

    codes = tmp_path / "codes.npy"
    result = hwgen_cli("golden", str(example_dir / "digits_mlp.onnx"), "--inputs", str(example_dir / "test_x.npy"),
                       "--output", str(codes), "--int-output")
    assert result.returncode == 0, result.stderr
    c = np.load(codes)
    assert c.dtype == np.int64 and c.shape == (len(x), 10)
    np.testing.assert_array_equal(c, model.run_codes(x))
    # the float output is the host dequantizer applied to exactly these codes
    dequant = model.graph.nodes[-1]
    np.testing.assert_array_equal(dequant.attrs["chain"].evaluate(c, dequant.attrs["axis"]), y)


def test_batch_convention(example_dir: Path) -> None:
    model = hwgen.load(example_dir / "digits_mlp.onnx")
    x = np.load(example_dir / "test_x.npy")[:7]
    batched = model.run(x)
    one_by_one = np.concatenate([model.run(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(batched, one_by_one)
    assert model.input_shape == (1, 64) and model.output_shape == (1, 10)


def test_check_report(example_dir: Path) -> None:
    report = hwgen.load(example_dir / "digits_mlp.onnx").check()
    assert report["supported"] and report["issues"] == []
    assert [row["op"] for row in report["layers"]] == ["Quantize", "MatMul", "MultiThreshold", "MatMul",
                                                       "MultiThreshold", "MatMul", "Dequantize"]
    assert [row["runs_on"] for row in report["layers"]] == ["host"] + ["hardware"] * 5 + ["host"]


def test_version() -> None:
    result = hwgen_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hwgen {hwgen.__version__}"
