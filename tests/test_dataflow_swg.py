"""Sliding-window generator (hwgen.arch.dataflow.swg) in the Amaranth simulator: the windows of random images,
shapes, strides, paddings and lane counts, several images back to back under random stalls on both sides, equal
numpy's window extraction beat for beat (both orders: MVAU and depthwise)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import Clock, pack, receive, send, simulate, stream_ends, unpack

from hwgen.arch.dataflow.config import CodeType, Window
from hwgen.arch.dataflow.swg import SlidingWindow

CODE = CodeType(4, signed=True)


def expected_beats(images: np.ndarray, win: Window, lanes: int, depthwise: bool, pad: int) -> list[list[int]]:
    """Every window beat of ``images`` (N, H, W, C) in the generator's order."""
    kh, kw = win.kernel
    (oh, ow), cb = win.out_hw, win.channels // lanes
    padded = np.full((len(images), win.height + kh + win.pads[0] + win.pads[2],
                      win.width + kw + win.pads[1] + win.pads[3], win.channels), pad)
    padded[:, win.pads[0]:win.pads[0] + win.height, win.pads[1]:win.pads[1] + win.width] = images
    beats = []
    for image in padded:
        for oy in range(oh):
            for ox in range(ow):
                y0, x0 = oy * win.strides[0], ox * win.strides[1]
                order = ([(ky, kx, c) for ky in range(kh) for kx in range(kw) for c in range(cb)] if not depthwise
                         else [(ky, kx, c) for c in range(cb) for ky in range(kh) for kx in range(kw)])
                beats += [list(image[y0 + ky, x0 + kx, c * lanes:(c + 1) * lanes]) for ky, kx, c in order]
    return beats


@st.composite
def windows(draw):
    lanes = draw(st.sampled_from([1, 2, 3]))
    channels = lanes * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    height = draw(st.integers(max(1, kh - pads[0] - pads[2]), 6))
    width = draw(st.integers(max(1, kw - pads[1] - pads[3]), 6))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    win = Window(channels, height, width, (kh, kw), strides, (pads[0], pads[1], pads[2], pads[3]))
    return win, lanes, draw(st.booleans())


@settings(deadline=None)
@given(case=windows(), seed=st.integers(0, 2**16), p_valid=st.sampled_from([1.0, 0.6]),
       p_ready=st.sampled_from([1.0, 0.5]))
def test_windows_match_numpy(case, seed: int, p_valid: float, p_ready: float) -> None:
    win, lanes, depthwise = case
    rng = np.random.default_rng(seed)
    images = rng.integers(CODE.lo, CODE.hi + 1, size=(3, win.height, win.width, win.channels))
    pad = int(rng.integers(CODE.lo, CODE.hi + 1))
    want = expected_beats(images, win, lanes, depthwise, pad)
    dut = SlidingWindow(win, CODE, lanes, depthwise)
    clock = Clock()
    got = {}

    async def producer(ctx):
        ctx.set(dut.pad, pad)
        await send(ctx, stream_ends(dut.i), [(pack(beat, 4),) for beat in images.reshape(-1, lanes)], clock,
                   rng, p_valid)

    async def consumer(ctx):
        got["out"] = await receive(ctx, stream_ends(dut.o), len(want), Clock(), rng, p_ready)

    simulate(dut, producer, consumer)
    assert [unpack(raw, 4, lanes, True) for raw, in got["out"].beats] == want
