"""Small brevitas CNNs without pooling for the systolic conv tests (QONNX export, cached by the test session)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _export(model, shape: tuple[int, ...], path: Path, seed: int) -> np.ndarray:
    import torch
    from brevitas.export import export_qonnx

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, *shape)).astype(np.float32)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(x))
    model.eval()
    export_qonnx(model, torch.from_numpy(x[:1]), export_path=str(path), dynamo=False)
    return x


def digits_cnn(path: Path, seed: int = 0) -> np.ndarray:
    """w4a4 digits-sized CNN (1×8×8): padded conv, strided conv, depthwise-separable block, flatten + FC."""
    import torch
    from brevitas import nn as qnn
    from torch import nn

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(1, 6, 3, padding=1, weight_bit_width=4)
            self.act1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.conv2 = qnn.QuantConv2d(6, 6, 3, stride=2, padding=1, weight_bit_width=4)
            self.act2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.dw = qnn.QuantConv2d(6, 6, 3, padding=1, groups=6, weight_bit_width=4)
            self.act3 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pw = qnn.QuantConv2d(6, 8, 1, weight_bit_width=4, weight_scaling_per_output_channel=True)
            self.act4 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(8 * 4 * 4, 10, bias=True, weight_bit_width=4)

        def forward(self, x):
            x = self.act2(self.conv2(self.act1(self.conv1(self.inp(x)))))
            x = self.act4(self.pw(self.act3(self.dw(x))))
            return self.fc(torch.flatten(x, 1))

    return _export(Net(), (1, 8, 8), path, seed)


def residual_cnn(path: Path, seed: int = 0) -> np.ndarray:
    """w8a8 per-channel residual block: conv-BN-ReLU-conv-BN + skip (one shared quantizer), then a 1×1 conv."""
    import torch
    from brevitas import nn as qnn
    from torch import nn

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.stem = qnn.QuantConv2d(3, 8, 3, padding=1, weight_bit_width=8,
                                        weight_scaling_per_output_channel=True)
            self.stem_act = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(8, 8, 3, padding=1, weight_bit_width=8,
                                         weight_scaling_per_output_channel=True)
            self.bn1 = nn.BatchNorm2d(8)
            self.act1 = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
            self.conv2 = qnn.QuantConv2d(8, 8, 3, padding=1, weight_bit_width=8,
                                         weight_scaling_per_output_channel=True)
            self.bn2 = nn.BatchNorm2d(8)
            self.add_quant = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.act_out = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
            self.head = qnn.QuantConv2d(8, 4, 1, weight_bit_width=8)

        def forward(self, x):
            skip = self.stem_act(self.stem(self.inp(x)))
            y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(skip)))))
            return self.head(self.act_out(self.add_quant(y) + self.add_quant(skip)))

    return _export(Net(), (3, 6, 6), path, seed)
