"""Integer numpy kernels shared by the golden model and the bounds analysis (NCHW layout, int64 values)."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

EXACT_F64 = 1 << 52     # integer sums below this magnitude are exact in float64 (fast BLAS path)


def matmul(x: np.ndarray, weight: np.ndarray, bound: int) -> np.ndarray:
    """``x @ weight`` exactly; through float64 BLAS when every partial sum is below 2^52 (``bound``)."""
    if bound < EXACT_F64:
        return np.rint(np.matmul(x.astype(np.float64), weight.astype(np.float64))).astype(np.int64)
    return np.matmul(x.astype(np.int64), weight.astype(np.int64))


def pool_geometry(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int,
                  ceil_mode: bool) -> tuple[int, int]:
    """(output size, extra padding at the end) of one spatial axis, with ONNX's ceil_mode rule."""
    span = dilation * (kernel - 1) + 1
    total = size + pad_lo + pad_hi - span
    if total < 0:
        raise ValueError(f"window {span} larger than padded input {size + pad_lo + pad_hi}")
    out = (-(-total // stride) if ceil_mode else total // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1
    extra = max(0, (out - 1) * stride + span - (size + pad_lo + pad_hi))
    return out, extra


def windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int],
            dilations: tuple[int, int], ceil_mode: bool, fill: int) -> np.ndarray:
    """Sliding windows of an NCHW tensor: shape (N, C, OH, OW, KH, KW); pads are (top, left, bottom, right)."""
    geo = [pool_geometry(x.shape[2 + a], kernel[a], strides[a], pads[a], pads[a + 2], dilations[a], ceil_mode)
           for a in (0, 1)]
    padded = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2] + geo[0][1]), (pads[1], pads[3] + geo[1][1])),
                    constant_values=fill)
    span = tuple(dilations[a] * (kernel[a] - 1) + 1 for a in (0, 1))
    view = sliding_window_view(padded, span, axis=(2, 3))
    view = view[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]
    return view[:, :, :geo[0][0], :geo[1][0]]


def conv2d(x: np.ndarray, weight: np.ndarray, strides: tuple[int, int], pads: tuple[int, int, int, int],
           dilations: tuple[int, int], groups: int, bound: int) -> np.ndarray:
    """Grouped 2-D convolution of an NCHW integer tensor (already zero-point corrected; pads with 0)."""
    n, c = x.shape[:2]
    m, cg, kh, kw = weight.shape
    win = windows(x, (kh, kw), strides, pads, dilations, False, 0)        # N C OH OW KH KW
    oh, ow = win.shape[2:4]
    win = win.reshape(n, groups, cg, oh, ow, kh, kw).transpose(0, 3, 4, 1, 2, 5, 6)
    win = win.reshape(n * oh * ow, groups, cg * kh * kw)
    wg = weight.reshape(groups, m // groups, cg * kh * kw).transpose(0, 2, 1)   # G, K, M/G
    out = np.stack([matmul(win[:, g], wg[g], bound) for g in range(groups)], axis=1)  # (NOHOW, G, M/G)
    return out.reshape(n, oh, ow, m).transpose(0, 3, 1, 2)
