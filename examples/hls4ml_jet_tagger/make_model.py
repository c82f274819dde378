"""A jet-tagging-style MLP made with PyTorch and converted by hls4ml; writes ``jet_tagger.fml`` and the test set.

The network is the one of hls4ml's jet-tagging studies (Duarte et al., JINST 13 (2018) P07027): 16 high-level
features → Dense 64 → ReLU → Dense 32 → ReLU → Dense 32 → ReLU → Dense 5, every tensor ``ap_fixed<16,6>`` (hls4ml's
default precision: weights, biases, accumulators, results), ``io_parallel``, Vivado back end, ``ReuseFactor`` 16
on every Dense layer. It is trained here on a synthetic five-class problem (Gaussian classes in 16 correlated
features, seeded) instead of the LHC jet data set, so nothing is downloaded; the hardware only sees the weights.

Writes next to this script:

* ``jet_tagger.fml``: the model as ``hls4ml.utils.serialization.serialize_model`` writes it, re-packed
  byte-reproducibly (``hwgen.frontend.hls4ml.canonical_fml``);
* ``test_x.npy`` / ``test_y.npy``: 512 held-out inputs (float32, standardized features) and their labels.

Run with ``python examples/hls4ml_jet_tagger/make_model.py`` (needs ``torch`` from the ``brevitas`` extra and
hls4ml from the ``test`` extra; about 20 s on two cores).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
FEATURES, CLASSES = 16, 5
TRAIN, TEST = 20000, 512
EPOCHS, BATCH, LEARNING_RATE = 20, 256, 3e-3
PRECISION = "ap_fixed<16,6>"
REUSE_FACTOR = 16


def synthetic_jets(rng: np.random.Generator, count: int, means: np.ndarray, mixing: np.ndarray):
    """``count`` samples of five Gaussian classes sharing a random correlation (``mixing``)."""
    labels = rng.integers(0, CLASSES, size=count)
    x = means[labels] + rng.normal(size=(count, FEATURES)) @ mixing
    return x.astype(np.float32), labels.astype(np.int64)


def jet_tagger() -> nn.Sequential:
    return nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32),
                         nn.ReLU(), nn.Linear(32, CLASSES))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), BATCH):
            batch = order[start:start + BATCH]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            optimizer.step()


def convert(model: nn.Module, output_dir: Path):
    """The hls4ml ModelGraph: ap_fixed<16,6> everywhere, io_parallel, ReuseFactor 16 on every layer."""
    import hls4ml

    config = hls4ml.utils.config_from_pytorch_model(model, (FEATURES,), granularity="name",
                                                    default_precision=PRECISION, default_reuse_factor=REUSE_FACTOR)
    return hls4ml.converters.convert_from_pytorch_model(model, hls_config=config, output_dir=str(output_dir),
                                                        backend="Vivado", io_type="io_parallel")


def main() -> None:
    from hls4ml.utils.serialization import serialize_model

    from hwgen.frontend.hls4ml import canonical_fml

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(SEED)
    means = rng.normal(size=(CLASSES, FEATURES)) * 0.25
    mixing = rng.normal(size=(FEATURES, FEATURES)) / np.sqrt(FEATURES)
    x, y = synthetic_jets(rng, TRAIN + TEST, means, mixing)
    mean, std = x[:TRAIN].mean(axis=0), x[:TRAIN].std(axis=0)
    x = ((x - mean) / std).astype(np.float32)
    model = jet_tagger()
    train(model, x[:TRAIN], y[:TRAIN])
    model.eval()
    test_x, test_y = x[TRAIN:], y[TRAIN:]
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(test_x)).argmax(1).numpy() == test_y).mean())
    with tempfile.TemporaryDirectory(prefix="jet_tagger_") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)                   # the model records its (relative) output directory: keep the file stable
        try:
            hls_model = convert(model, Path("jet_tagger_hls4ml_prj"))
            serialize_model(hls_model, "jet_tagger.fml")
        finally:
            os.chdir(cwd)
        (OUT_DIR / "jet_tagger.fml").write_bytes(canonical_fml((Path(tmp) / "jet_tagger.fml").read_bytes()))
    np.save(OUT_DIR / "test_x.npy", test_x)
    np.save(OUT_DIR / "test_y.npy", test_y)
    print(f"float test accuracy {100 * accuracy:.1f} % on {TEST} samples; wrote jet_tagger.fml, test_x.npy, "
          f"test_y.npy into {OUT_DIR}")


if __name__ == "__main__":
    main()
