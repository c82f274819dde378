"""Quantization-aware training of a small MLP on scikit-learn's 8x8 digits.

Trains, deterministically and in a few seconds on CPU, the network

    QuantIdentity (8-bit unsigned input quantizer)
    -> QuantLinear 64->64 (4-bit weights) -> QuantReLU (4-bit)
    -> QuantLinear 64->32 (4-bit weights) -> QuantReLU (4-bit)
    -> QuantLinear 32->10 (4-bit weights)

with per-tensor scales and float biases, then writes next to this script:

* ``digits_mlp.onnx``: the QONNX export (TorchScript exporter, ``dynamo=False``),
* ``test_x.npy``: the held-out test inputs, float32 of shape (N, 64), pixels scaled to [0, 1],
* ``test_y.npy``: the matching int64 labels.

Run with ``python examples/digits_mlp/train.py`` (needs the ``brevitas`` extra).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import Uint8ActPerTensorFloat
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
EPOCHS = 60
BATCH_SIZE = 64
LEARNING_RATE = 1e-2
WEIGHT_BITS = 4
ACT_BITS = 4
INPUT_BITS = 8


class DigitsMLP(nn.Module):
    """64-64-32-10 quantized MLP whose quantizers chain through QuantTensors."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            QuantIdentity(
                act_quant=Uint8ActPerTensorFloat, bit_width=INPUT_BITS, return_quant_tensor=True
            ),
            QuantLinear(64, 64, bias=True, weight_bit_width=WEIGHT_BITS, return_quant_tensor=True),
            QuantReLU(bit_width=ACT_BITS, return_quant_tensor=True),
            QuantLinear(64, 32, bias=True, weight_bit_width=WEIGHT_BITS, return_quant_tensor=True),
            QuantReLU(bit_width=ACT_BITS, return_quant_tensor=True),
            QuantLinear(32, 10, bias=True, weight_bit_width=WEIGHT_BITS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_x, test_x, train_y, test_y) with pixels scaled to [0, 1]."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    return train_x, test_x, train_y, test_y


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``x``."""
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    """Plain Adam + cross-entropy QAT with a cosine learning-rate schedule."""
    generator = torch.Generator().manual_seed(SEED)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(tx), generator=generator).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss_fn(model(tx[idx]), ty[idx]).backward()
            optimizer.step()
        scheduler.step()


def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    start = time.perf_counter()

    train_x, test_x, train_y, test_y = load_split()
    model = DigitsMLP()
    train(model, train_x, train_y)
    print(f"train accuracy: {accuracy(model, train_x, train_y):.4f}")
    print(f"test accuracy:  {accuracy(model, test_x, test_y):.4f} (float simulation, N={len(test_y)})")

    onnx_path = OUT_DIR / "digits_mlp.onnx"
    export_qonnx(model, torch.from_numpy(test_x[:1]), export_path=str(onnx_path), dynamo=False)
    np.save(OUT_DIR / "test_x.npy", test_x)
    np.save(OUT_DIR / "test_y.npy", test_y)
    print(f"wrote {onnx_path.name} ({onnx_path.stat().st_size} bytes), test_x.npy, test_y.npy")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
