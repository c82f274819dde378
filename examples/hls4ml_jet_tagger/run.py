"""End to end: the hls4ml jet tagger → hwgen dataflow design → Verilator, bit-exact with hls4ml's C simulation →
estimates for Xilinx UltraScale+ (``xcup``).

    python examples/hls4ml_jet_tagger/run.py [--samples N] [--out DIR] [--reuse-factor R] [--estimate-only]

1. ``jet_tagger.fml`` (made by ``make_model.py``: 16 → 64 → 32 → 32 → 5, ``ap_fixed<16,6>``, ReuseFactor 16) is
   loaded with hls4ml and its C simulation compiled (g++); ``--reuse-factor R`` sets another ReuseFactor on every
   Dense layer first;
2. ``hwgen compile --from-hls4ml jet_tagger.fml --arch dataflow``: one MVAU per Dense layer, folded to its
   ReuseFactor (II = R cycles), products truncated to the 16-bit accumulator and the casts as fixed-point stages;
3. ``hwgen simulate``: N test inputs through the Verilated pipeline; the outputs are compared with the golden model
   (by ``simulate``) and here with hls4ml's ``predict``, every output of every sample;
4. ``hwgen estimate --target xcup``: LUT, FF, DSP, BRAM, fmax, latency and II.

Writes the design into DIR (default ``./jet_tagger_design``) and the figures into ``DIR/results.json``; prints a
summary. ``--estimate-only`` skips steps 1 and 3 (no C simulation, no Verilator): a quick look at other reuse
factors. Needs hls4ml and g++ (the ``test`` extra) and Verilator (installed with hwgen).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def hwgen_cli(*args) -> None:
    """Run one ``hwgen`` command, echoing its output; stop on failure."""
    result = subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], capture_output=True, text=True,
                            check=False)
    sys.stdout.write(result.stdout)
    if result.returncode:
        sys.exit(f"hwgen {args[0]} failed:\n{result.stderr}")


def hls4ml_model(fml: Path, workdir: Path, reuse_factor: int | None, csim: bool = True):
    """The ModelGraph of ``fml`` (optionally with another ReuseFactor, saved as ``workdir/jet_tagger.fml``), its C
    simulation compiled in ``workdir`` if ``csim``."""
    from hls4ml.utils.serialization import deserialize_model, serialize_model

    model = deserialize_model(fml, output_dir=workdir)
    model.config.config["OutputDir"] = str(workdir / "hls4ml_prj")
    if reuse_factor is not None:
        for layer in model.get_layers():
            if layer.class_name == "Dense":
                layer.set_attr("reuse_factor", reuse_factor)
        serialize_model(model, str(workdir / "jet_tagger.fml"))
        model = deserialize_model(workdir / "jet_tagger.fml", output_dir=workdir)
        model.config.config["OutputDir"] = str(workdir / "hls4ml_prj")
    if csim:
        model.compile()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="test inputs to simulate (at most 512)")
    parser.add_argument("--out", type=Path, default=Path("jet_tagger_design"), help="design folder to write")
    parser.add_argument("--reuse-factor", type=int, default=None, help="another ReuseFactor for every Dense layer")
    parser.add_argument("--estimate-only", action="store_true", help="compile and estimate only")
    args = parser.parse_args()

    from hwgen.frontend.hls4ml import fixed_output_type
    from hwgen.model import load_fml

    x = np.load(HERE / "test_x.npy")[:args.samples]
    labels = np.load(HERE / "test_y.npy")[:args.samples]
    out = args.out.resolve()
    with tempfile.TemporaryDirectory(prefix="jet_tagger_") as tmp:
        workdir = Path(tmp)
        hls_model = hls4ml_model(HERE / "jet_tagger.fml", workdir, args.reuse_factor, not args.estimate_only)
        fml = workdir / "jet_tagger.fml" if args.reuse_factor is not None else HERE / "jet_tagger.fml"
        if args.estimate_only:
            hwgen_cli("compile", "--from-hls4ml", fml, "--arch", "dataflow", "-o", out)
            hwgen_cli("estimate", out, "--target", "xcup")
            return
        csim = hls_model.predict(np.ascontiguousarray(x, np.float64)).reshape(len(x), -1)
        np.save(workdir / "x.npy", x)
        np.save(workdir / "labels.npy", labels)
        hwgen_cli("compile", "--from-hls4ml", fml, "--arch", "dataflow", "-o", out)
        hwgen_cli("simulate", out, "--inputs", workdir / "x.npy", "--output", out / "rtl_y.npy",
                  "--labels", workdir / "labels.npy")
        hwgen_cli("estimate", out, "--target", "xcup")
        frac = fixed_output_type(load_fml(fml).imported).frac

    sim = json.loads((out / "sim_report.json").read_text())
    estimate = json.loads((out / "estimate_xcup.json").read_text())
    rtl = np.load(out / "rtl_y.npy").reshape(len(x), -1).astype(np.float64)
    mismatches = int(np.sum(np.ldexp(rtl, frac) != np.ldexp(csim, frac)))
    manifest = json.loads((out / "manifest.json").read_text())
    results = {
        "samples": len(x), "outputs_compared": int(rtl.size), "mismatches_vs_hls4ml_csim": mismatches,
        "bit_exact_vs_golden": sim["bit_exact"], "rtl_top1_accuracy": float(np.mean(rtl.argmax(1) == labels)),
        "ii_cycles": {"measured": sim["ii_cycles"], "predicted": sim["predicted_ii_cycles"]},
        "latency_cycles": {"measured": sim["latency_cycles"], "predicted": sim["predicted_latency_cycles"]},
        "fold": manifest["fold"],
        "xcup": {f"{name} ({metric['unit']}, {metric['method']})": metric["value"]
                 for name, metric in estimate["metrics"].items()
                 if name in ("lut", "ff", "dsp", "bram", "fmax", "latency_cycles", "latency", "throughput")},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if mismatches or not sim["bit_exact"]:
        sys.exit("the RTL outputs differ from hls4ml's C simulation")


if __name__ == "__main__":
    main()
