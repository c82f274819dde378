"""Seed rows for the ASIC estimates: two small edge models through ``estimate --target sky130|osu018``.

1. A small convolutional autoencoder encoder of the hls4ml ECON-T kind (CMS HGCAL trigger data compression:
   48 sensor cells as 3×4×4 → 3×3 stride-2 conv, 8 filters → 16-value latent), quantized a8w6, on a 4×4
   systolic array and as a dataflow pipeline of its layers (the closest to ECON-T's architecture hwgen builds:
   its sliding window needs 36 cycles per inference); printed beside the published ECON-T ASIC figures (65 nm LP
   CMOS: 3.6 mm², 95 mW, 2.4 nJ per inference at 40 MHz — hls4ml ECON-T paper, Di Guglielmo et al., IEEE TNS
   2021). Different process nodes, architectures (ECON-T is fully unrolled, one inference per 25 ns clock, its
   weights in logic) and memories, so this is a sanity check of magnitudes, not a like-for-like comparison.
2. The 2-bit intrusion-detection MLP (CAN-IDS size: 64 features → 64 → 32 → 16 → 2, weights and activations
   2 bits) on the dataflow architecture, fully parallel enough for a few cycles per inference: latency at fmax and
   energy per inference.

::

    python examples/asic_seed_rows.py            # analytic figures (milliseconds per estimate)
    python examples/asic_seed_rows.py --synth    # Yosys + Liberty area, OpenSTA fmax (minutes; cached)

Needs the ``brevitas`` extra (the models are trained for a few steps on random data and exported to QONNX).
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np

ECONT_65NM = {"area_mm2": 3.6, "power_mw": 95.0, "energy_nj": 2.4}
ECONT_SYSTOLIC = "ECON-T-kind encoder (4×4 systolic, a8w6)"
ECONT_DATAFLOW = "ECON-T-kind encoder (dataflow, 36 cycles)"


def _export(model, shape: tuple[int, ...], path: Path) -> None:
    import torch
    from brevitas.export import export_qonnx

    x = torch.from_numpy(np.random.default_rng(0).normal(size=(32, *shape)).astype(np.float32))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    model.eval()
    export_qonnx(model, x[:1], export_path=str(path), dynamo=False)


def econt_encoder(path: Path) -> None:
    """ECON-T-style encoder: 3×4×4 input (8 bits), conv 3×3 stride 2 → 8×2×2, ReLU (8 bits), dense 32 → 16."""
    import torch
    from brevitas import nn as qnn
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(3, 8, 3, stride=2, padding=1, weight_bit_width=6),
        qnn.QuantReLU(bit_width=8, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(32, 16, bias=True, weight_bit_width=6),
    )
    _export(model, (3, 4, 4), path)


def ids_mlp(path: Path) -> None:
    """2-bit IDS MLP: 64 → 64 → 32 → 16 → 2, weights and activations 2 bits (inputs 2 bits unsigned)."""
    import torch
    from brevitas import nn as qnn
    from torch import nn

    torch.manual_seed(0)
    widths = (64, 64, 32, 16, 2)
    layers: list[nn.Module] = [qnn.QuantIdentity(bit_width=2, return_quant_tensor=True)]
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        last = i == len(widths) - 2
        layers.append(qnn.QuantLinear(fan_in, fan_out, bias=last, weight_bit_width=2,
                                      return_quant_tensor=not last))
        if not last:
            layers.append(qnn.QuantReLU(bit_width=2, return_quant_tensor=True))
    _export(nn.Sequential(*layers), (64,), path)


def row(name: str, doc: dict) -> str:
    m = doc["metrics"]

    def v(key: str, fmt: str = "{:.3g}") -> str:
        return fmt.format(m[key]["value"]) + ("*" if m[key]["method"] != "analytic" else "")

    return (f"| {name} | {doc['target']} | {m['area']['value'] / 1e6:.3f}{'*' if m['area']['method'] != 'analytic' else ''}"
            f" | {v('cells', '{:,.0f}')} | {v('fmax', '{:.0f}')} | {v('latency')} | {v('throughput', '{:,.0f}')} | "
            f"{v('power_dynamic')} | {v('power_leakage')} | {v('energy_per_inference')} |")


def main() -> None:
    import hwgen

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth", action="store_true", help="Yosys area and OpenSTA timing (cached)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        econt_encoder(tmp / "econt.onnx")
        ids_mlp(tmp / "ids.onnx")
        econt = hwgen.compile(tmp / "econt.onnx", rows=4, cols=4, batch=1)
        # the same encoder as a pipeline of its own layers (FINN-style, ECON-T's kind of architecture): its
        # convolution's sliding window takes 36 cycles per inference at the most unrolled folding
        econt_pipeline = hwgen.compile(tmp / "econt.onnx", arch="dataflow", target_cycles=36)
        ids = hwgen.compile(tmp / "ids.onnx", arch="dataflow", target_cycles=16)
        designs = {ECONT_SYSTOLIC: (econt, tmp / "econt"), ECONT_DATAFLOW: (econt_pipeline, tmp / "econt_dataflow"),
                   "2-bit IDS MLP (dataflow)": (ids, tmp / "ids")}
        print("| design | target | area mm² | cells | fmax MHz | latency µs | inferences/s | dynamic mW | "
              "leakage µW | energy nJ/inference |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        docs = {}
        for name, (design, out) in designs.items():
            out.mkdir(parents=True, exist_ok=True)       # synthesis logs (the estimate needs no written design)
            for target in ("sky130", "osu018"):
                doc = design.estimate(target, synth=args.synth, out_dir=out).to_dict()
                docs[name, target] = doc
                print(row(name, doc))
        e = ECONT_65NM
        print(f"| ECON-T ASIC (published) | 65 nm LP | {e['area_mm2']} | | 40 | 0.025 | 40,000,000 | "
              f"{e['power_mw']} | | {e['energy_nj']} |")
        print("\n(* synthesized / timed figures; others analytic)")
        for name, target in itertools.product((ECONT_SYSTOLIC, ECONT_DATAFLOW), ("sky130", "osu018")):
            doc = docs[name, target]
            nj = doc["metrics"]["energy_per_inference"]["value"]
            mm2 = doc["metrics"]["area"]["value"] / 1e6
            print(f"{name} on {target}: area {mm2 / e['area_mm2']:.2f}× and energy/inference "
                  f"{nj / e['energy_nj']:.2f}× the 65 nm ASIC's; at the LHC's 40 MHz inference rate it would "
                  f"need {40e6 / doc['metrics']['throughput']['value']:.0f} copies")
        ids_doc = docs["2-bit IDS MLP (dataflow)", "sky130"]
        print(f"IDS MLP on sky130: latency {ids_doc['metrics']['latency']['value']:.3f} µs at "
              f"{ids_doc['metrics']['fmax']['value']:.0f} MHz, {ids_doc['metrics']['energy_per_inference']['value']:.3f}"
              " nJ per inference")


if __name__ == "__main__":
    main()
