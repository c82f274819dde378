"""Golden-model throughput vs the references it is checked against, measured in one run.

Prints samples/s of hwgen's integer golden model, qonnx ``execute_onnx`` (QONNX) and onnxruntime with graph
optimizations off (QCDQ), and their ratios, on FINN's TFC 2w2a and CNV 2w2a (random weights) and the bundled
digits MLP. Usage: ``.venv/bin/python benchmarks/golden_speed.py [--samples N]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import hwgen  # noqa: E402
from modelzoo import ZooModel, build  # noqa: E402
from reference import run_reference  # noqa: E402


def rate(fn, samples: int) -> float:
    start = time.perf_counter()
    fn()
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "hwgen-bench-zoo"
    cache.mkdir(exist_ok=True)
    example = ROOT / "examples" / "digits_mlp"
    models = [ZooModel("digits_mlp", example / "digits_mlp.onnx", "qonnx", np.load(example / "test_x.npy"))]
    models += [build(name, cache) for name in ("tfc_2w2a_qonnx", "tfc_2w2a_qcdq", "cnv_2w2a_qonnx")]
    print(f"{'model':20s} {'reference':>12s} {'ref samples/s':>14s} {'golden samples/s':>17s} {'speedup':>8s}")
    for zoo in models:
        n = min(args.samples, len(zoo.inputs)) if zoo.name.startswith("cnv") else args.samples
        x = np.resize(zoo.inputs, (n,) + zoo.inputs.shape[1:]).astype(np.float32)
        zoo_n = ZooModel(zoo.name, zoo.path, zoo.dialect, x)
        model = hwgen.load(zoo.path)
        model.run(x[:1])                                  # warm-up
        golden = rate(lambda: model.run(x), n)
        reference = rate(lambda: run_reference(zoo_n), n)
        engine = "qonnx" if zoo.dialect == "qonnx" else "onnxruntime"
        print(f"{zoo.name:20s} {engine:>12s} {reference:14.1f} {golden:17.1f} {golden / reference:7.1f}x")


if __name__ == "__main__":
    main()
