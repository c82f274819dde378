"""The systolic array in Amaranth's simulator: bit-exact with the numpy model of its layers, and the cycle counter
equal to the compiler's prediction, over random layer chains and array shapes (1×N, N×1, non-square)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from amaranth_host import simulate_run
from hwgen.arch.systolic.compile import GemmLayer, compile_layers, default_config, run_layers
from hwgen.arch.systolic.config import SystolicConfig
from hwgen.arch.systolic.top import SystolicTop


def random_layers(rng: np.random.Generator, dims: list[int], in_bits: int, w_bits: int, out_bits: list[int],
                  thresholded_last: bool) -> list[GemmLayer]:
    layers = []
    for index, (k, n) in enumerate(zip(dims, dims[1:])):
        lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
        weight = rng.integers(lo, hi + 1, size=(k, n))
        zx = int(rng.integers(0, 3))
        a_hi = (1 << in_bits) - 1 if index == 0 else (1 << out_bits[index - 1]) - 1
        bound = int(np.abs(weight).sum(axis=0).max()) * max(zx, a_hi - zx)      # tight worst case
        last = index == len(dims) - 2
        if last and not thresholded_last:
            layers.append(GemmLayer(f"fc{index}", weight, zx, None, None, 0, 1, (-bound, bound),
                                    a_hi.bit_length() + 1, (2 * bound).bit_length() + 1, None, (f"t{index}",), (k,),
                                    f"t{index + 1}"))
            continue
        bits = out_bits[index]
        bipolar = bits == 1 and bool(rng.integers(0, 2))
        spread = max(1, int(np.sqrt(k)) * 8 * max(1, a_hi // 4))
        per_channel = bool(rng.integers(0, 2))
        rows = n if per_channel else 1
        thresholds = np.sort(rng.integers(-spread, spread + 1, size=(rows, (1 << bits) - 1)), axis=1)
        negate = rng.random(rows) < 0.3
        base, step = (-1, 2) if bipolar else (0, 1)
        layers.append(GemmLayer(f"fc{index}", weight, zx, thresholds, negate, base, step, (-bound, bound),
                                a_hi.bit_length() + 1, bits + 1 if not bipolar else 2, f"rq{index}", (f"t{index}",),
                                (k,), f"t{index + 1}"))
        out_bits[index] = bits if not bipolar else 1
    return layers


def check(layers: list[GemmLayer], cfg: SystolicConfig, codes: np.ndarray, stream: bool = False,
          stall_seed: int | None = None) -> None:
    """Bit-exact and (without stalls) exactly the predicted cycles; ``stream`` sends the samples through the
    AXI streams in chunks of the program's batch instead of preloading them."""
    program = compile_layers(layers, cfg)
    samples = len(codes)
    loads = program.weights + program.thresholds + program.program_rows(samples, stream)
    expected = run_layers(layers, codes)
    if stream:
        run = simulate_run(SystolicTop(cfg), loads, [], program.input_beats(codes), stall_seed=stall_seed)
        np.testing.assert_array_equal(program.output_codes(run.beats, samples), expected)
        assert run.lasts == ([0] * (program.y_words - 1) + [1]) * samples
    else:
        run = simulate_run(SystolicTop(cfg), loads + program.input_rows(codes), program.output_reads(samples))
        np.testing.assert_array_equal(run.values.reshape(expected.shape), expected)
    if stall_seed is None:
        assert run.cycles == program.predict_cycles(samples, stream)


@given(rows=st.integers(1, 4), cols=st.integers(1, 4), depth=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       dataflow=st.sampled_from(["os", "ws"]), data=st.data())
def test_random_chains_bit_exact_with_exact_cycles(rows, cols, depth, seed, dataflow, data) -> None:
    rng = np.random.default_rng(seed)
    dims = [data.draw(st.integers(1, 11)) for _ in range(depth + 1)]
    out_bits = [data.draw(st.integers(1, 4)) for _ in range(depth)]
    in_bits = data.draw(st.integers(1, 6))
    layers = random_layers(rng, dims, in_bits, data.draw(st.integers(2, 6)), out_bits, data.draw(st.booleans()))
    samples = data.draw(st.integers(1, 3 * rows + 1))
    stream = data.draw(st.booleans())
    batch = data.draw(st.integers(1, samples)) if stream else samples      # streamed: chunks of `batch` samples
    cfg = default_config(layers, rows=rows, cols=cols, dataflow=dataflow, batch=batch)
    check(layers, cfg, rng.integers(0, 1 << in_bits, size=(samples, dims[0])), stream)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_streams_under_random_backpressure(dataflow: str) -> None:
    """Samples streamed in chunks with s_axis_tvalid and m_axis_tready dropping at random: still bit-exact."""
    rng = np.random.default_rng(11)
    layers = random_layers(rng, [9, 5, 6], 4, 4, [3, 4], True)
    cfg = default_config(layers, rows=2, cols=3, dataflow=dataflow, batch=3)
    check(layers, cfg, rng.integers(0, 16, size=(8, 9)), stream=True, stall_seed=4)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("rows, cols", [(1, 5), (5, 1), (3, 2)])
def test_worst_case_extremes(rows: int, cols: int, dataflow: str) -> None:
    """All inputs and weights at their extreme codes, the largest K the configuration allows."""
    k_max, in_bits, w_bits = 30, 8, 8          # 30: a multiple of every column count used
    weight = np.full((k_max, 4), -(1 << (w_bits - 1)))
    weight[:, 1] = (1 << (w_bits - 1)) - 1
    bound = k_max * (1 << (w_bits - 1)) * ((1 << in_bits) + 2)
    layer = GemmLayer("big", weight, 0, None, None, 0, 1, (-bound, bound), in_bits + 1,
                      (2 * bound).bit_length() + 1, None, ("x",), (k_max,), "y")
    cfg = default_config([layer], rows=rows, cols=cols, dataflow=dataflow, batch=4, k_max=k_max)
    codes = np.array([[(1 << in_bits) - 1] * k_max, [0] * k_max, [(1 << in_bits) - 1, 0] * (k_max // 2),
                      [1] * k_max])
    check([layer], cfg, codes)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_broken_pe_is_detected(dataflow: str) -> None:
    """A deliberately broken multiplier (test hook) makes the outputs differ: the check bites."""
    rng = np.random.default_rng(5)
    layers = random_layers(rng, [6, 4], 4, 4, [4], False)
    codes = rng.integers(0, 16, size=(3, 6))
    cfg = default_config(layers, rows=2, cols=2, dataflow=dataflow, batch=3, broken_pe=(1, 1))
    with pytest.raises(AssertionError):
        check(layers, cfg, codes)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_rom_style_design_needs_only_inputs(dataflow: str) -> None:
    """With program, weights and thresholds as initial memory contents, loading just the inputs gives the same
    results and cycles as the run-time-loaded design."""
    rng = np.random.default_rng(9)
    layers = random_layers(rng, [7, 5, 4], 5, 4, [3, 3], True)
    cfg = default_config(layers, rows=2, cols=3, dataflow=dataflow, batch=4)
    program = compile_layers(layers, cfg)
    codes = rng.integers(0, 32, size=(program.batch, 7))
    top = SystolicTop(cfg, program.memory_init(program.batch))
    run = simulate_run(top, program.input_rows(codes), program.output_reads(program.batch))
    expected = run_layers(layers, codes)
    np.testing.assert_array_equal(run.values.reshape(expected.shape), expected)
    assert run.cycles == program.predict_cycles(program.batch)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("rows, cols", [(2, 3), (3, 2)])
def test_dense_residual_add(rows: int, cols: int, dataflow: str) -> None:
    """A residual block (skip branch rescaled ×2 by the Add) runs as a GEMM over both inputs; the skip tensor keeps
    its own scratchpad region while the branch is computed."""
    import hwgen
    from hwgen.arch.systolic.compile import gemm_layers, regions
    from onnx_helpers import residual_mlp

    model = hwgen.Model(residual_mlp(skip_scale_ratio=2.0))
    layers = gemm_layers(model.graph)
    assert [len(layer.inputs) for layer in layers] == [1, 1, 2, 1]
    placement = regions(layers)
    assert placement[layers[0].output] != placement[layers[1].output]      # h survives until the Add
    x = np.random.default_rng(3).normal(size=(7, 8)).astype(np.float32)
    env = hwgen.golden.run(model.graph, x, keep=True)
    codes = env[model.graph.nodes[0].outputs[0]]
    np.testing.assert_array_equal(run_layers(layers, codes), model.run_codes(x))
    check(layers, default_config(layers, rows=rows, cols=cols, dataflow=dataflow, batch=7), codes)
