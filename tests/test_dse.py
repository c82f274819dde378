"""Design-space sweeps (hwgen.dse): spec parsing, hashing, analytic sweeps, the store, Pareto fronts, reports,
the CLI, Dask."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.dse import (
    Constraint,
    Objective,
    Point,
    Space,
    Store,
    build_report,
    evaluate,
    front,
    pareto_mask,
    run_sweep,
)
from hwgen.dse.space import canonical_params

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx"
SPEC = {
    "name": "small",
    "models": [str(MODEL)],
    "targets": ["ecp5-25k"],
    "architectures": {
        "systolic": {"rows": [4, 8], "cols": [8, 16], "dataflow": ["os", "ws"]},
        # target_cycles 16 with at most 64 MAC lanes does not fit the 64×64 layer: a failing point
        "dataflow": {"target_cycles": [16, 64, 256, None], "max_lanes": [None, 64]},
    },
    "constraints": ["lut <= 20000"],
    "objectives": {"cycles": "min", "lut": "min"},
}


def small_space(**changes) -> Space:
    return Space.from_dict({**SPEC, **changes})


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dse") / "small.sqlite"
    summary = run_sweep(small_space(), path, workers=1)
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (15, 14, 1, 0)
    return path


def rows_by_hash(path: Path, evaluator: str = "analytic") -> dict[str, dict]:
    with Store(path) as store:
        return {r["point_hash"]: r for r in store.rows(evaluator)}


def comparable(rows: dict[str, dict]) -> dict[str, tuple]:
    return {h: (r["status"], r["error"], r["label"], json.dumps(r["metrics"], sort_keys=True)) for h, r in rows.items()}


# ------------------------------------------------------------------------------------------------ the spec
def test_yaml_and_python_spaces_are_the_same(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.onnx").write_bytes(MODEL.read_bytes())
    spec = {**SPEC, "models": ["m/model.onnx"]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    from_yaml = Space.from_yaml(tmp_path / "spec.yaml")
    python = small_space()
    assert sorted(p.hash for p in from_yaml.points()) == sorted(p.hash for p in python.points())
    assert len(python.points()) == 15 and python.size() == 16     # max_lanes without target_cycles merges
    assert python.constraints == [Constraint("lut", "<=", 20000.0)]
    assert python.objectives == [Objective("cycles", "min"), Objective("lut", "min")]
    ranged = Space(models=[MODEL], architectures={"systolic": {"rows": {"from": 2, "to": 16, "times": 2},
                                                               "cols": {"from": 4, "to": 12, "step": 4}}})
    assert sorted({(p.params["rows"], p.params["cols"]) for p in ranged.points()}) == \
        [(r, c) for r in (2, 4, 8, 16) for c in (4, 8, 12)]


@pytest.mark.parametrize("change, message", [
    ({"architectures": {"systolic": {"rowz": [4]}}}, "architectures.systolic.rowz: unknown axis 'rowz'"),
    ({"architectures": {"systolic": {"rows": [4, "x"]}}}, "architectures.systolic.rows[1]: expected a positive"),
    ({"architectures": {"systolic": {"dataflow": "xs"}}}, "architectures.systolic.dataflow: 'xs' is not one of"),
    ({"architectures": {"systolic": {"rows": None}}}, "architectures.systolic.rows: null is not a value"),
    ({"architectures": {"tpu": {}}}, "unknown architecture 'tpu'"),
    ({"architectures": {"dataflow": {"target_cycles": {"from": 8, "to": 4, "step": 1}}}},
     "architectures.dataflow.target_cycles: empty or endless range"),
    ({"targets": ["ecp5-99k"]}, "targets[0]: unknown target 'ecp5-99k'"),
    ({"constraints": ["lut < lots"]}, "constraints[0]: 'lut < lots' is not 'METRIC OP NUMBER'"),
    ({"constraints": ["luts <= 5"]}, "constraints[0]: unknown metric 'luts'"),
    ({"objectives": {"cycles": "least"}}, "objectives.cycles: 'least' is not min or max"),
    ({"objectives": ["min speed"]}, "objectives[0]: unknown metric 'speed'"),
    ({"sampels": 2}, "unknown key sampels"),
    ({"samples": 0}, "samples: expected a positive integer"),
])
def test_bad_specs_name_the_key_and_value(change: dict, message: str) -> None:
    with pytest.raises(hwgen.HwgenError) as info:
        small_space(**change)
    assert message in str(info.value)


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [a.onnx\narchitectures: {}\n")
    with pytest.raises(hwgen.HwgenError, match=r"bad.yaml: not valid YAML at line \d"):
        Space.from_yaml(path)
    path.write_text(f"models: [{MODEL}]\narchitectures: {{systolic: {{cols: [8, -1]}}}}\n")
    with pytest.raises(hwgen.HwgenError, match=r"bad.yaml: architectures.systolic.cols\[1\]: expected a positive "
                                               r"integer, got -1"):
        Space.from_yaml(path)


def test_point_hash_is_stable() -> None:
    point = Point("/any/path/model.onnx", "ab" * 32, "systolic", canonical_params("systolic", {"cols": 16}),
                  "ecp5-25k")
    # the key: model contents, arch, canonical parameters (defaults filled in), target, samples — never the path
    assert point.params == {"batch": 64, "cols": 16, "dataflow": "os", "rows": 8}
    assert point.hash == "c61255b891cac8b1aa6a2c868f558e94b2992563be7f2f34d8eb01a50e51e110"
    moved = Point("elsewhere.onnx", "ab" * 32, "systolic", canonical_params("systolic", {"rows": 8, "cols": 16,
                                                                                       "batch": 64}), "ecp5-25k")
    assert moved.hash == point.hash
    assert Point(point.model, point.model_sha256, "systolic", canonical_params("systolic", {"cols": 8}),
                 "ecp5-25k").hash != point.hash
    reordered = small_space(architectures={"dataflow": {"max_lanes": [None, 64], "target_cycles": [16, 64, 256,
                                                                                                   None]},
                                           "systolic": {"dataflow": ["os", "ws"], "cols": [8, 16], "rows": [4, 8]}})
    assert {p.hash for p in reordered.points()} == {p.hash for p in small_space().points()}


def test_point_hash_golden_value() -> None:
    """The hash is part of the store format (changing it orphans every stored result): sha256 of the key's
    canonical JSON."""
    import hashlib

    point = Point("m.onnx", "0" * 64, "dataflow", {"target_cycles": 64}, "ice40-up5k", 1)
    assert point.key == {"model_sha256": "0" * 64, "arch": "dataflow", "params": {"target_cycles": 64},
                         "target": "ice40-up5k", "samples": 1}
    canonical = json.dumps(point.key, sort_keys=True, separators=(",", ":"))
    assert point.hash == hashlib.sha256(canonical.encode()).hexdigest() == \
        "253e6d7ec9efb1e5e1904836ef82c8cb25cbe21bd4f4d9a5837c37a3790ec238"


# ------------------------------------------------------------------------------------------------ evaluation
def test_analytic_dataflow_equals_full_compile() -> None:
    """The analytic evaluator's dataflow shortcut (no load images) gives what hwgen.compile(...).estimate gives."""
    model = hwgen.load(MODEL)
    for params in ({"target_cycles": 64}, {"target_cycles": 256, "max_lanes": 16}, {}):
        point = Point(str(MODEL), "x" * 64, "dataflow", params, "ice40-up5k")
        result = evaluate(point)
        design = hwgen.compile(model, "dataflow", **params)
        expected = design.estimate("ice40-up5k").metrics
        assert {k: result["metrics"][k] for k in expected} == {k: m["value"] for k, m in expected.items()}
        assert result["metrics"]["cycles"] == design.predicted_cycles(1)
        assert result["metrics"]["ii_cycles"] == design.program.predicted_ii_cycles
    point = Point(str(MODEL), "x" * 64, "systolic", canonical_params("systolic", {"rows": 4, "dataflow": "ws"}),
                  "ecp5-25k", samples=3)
    design = hwgen.compile(model, rows=4, dataflow="ws")
    result = evaluate(point)
    assert result["metrics"]["cycles"] == design.predicted_cycles(3)
    assert result["metrics"]["lut"] == design.estimate("ecp5-25k").value("lut")
    assert result["units"]["lut"] == {"unit": "LUT4", "method": "analytic"}


JET = ROOT / "examples" / "hls4ml_jet_tagger" / "jet_tagger.fml"


@pytest.fixture(scope="module")
def cnn_models(tmp_path_factory) -> dict[str, Path]:
    """The conv test models (conv_models.py: padded, strided and depthwise convs + FC; a residual block)."""
    from conv_models import digits_cnn, residual_cnn

    out = tmp_path_factory.mktemp("dse_cnn")
    made = {}
    for name, make in (("digits_cnn", digits_cnn), ("residual_cnn", residual_cnn)):
        make(out / f"{name}.onnx")
        made[name] = out / f"{name}.onnx"
    return made


def explicit_result(model, arch: str, params: dict, target: str | None, samples: int) -> dict:
    """Every metric of a point, with units, the slow way: ``hwgen.compile`` (load images and all) and
    ``Design.estimate``, the way a user gets them one design at a time (the ``analytic`` evaluator must agree)."""
    design = hwgen.compile(model, arch, **params)
    macs = sum(layer.macs for layer in design.model.layers)
    if arch == "dataflow":
        program = design.program
        mac_units = sum(layer.pe * layer.simd for layer in design.config.layers)
        steady = {"ii_cycles": (program.predicted_ii_cycles, "cycles")}
        utilization = macs / (mac_units * program.predicted_ii_cycles)
    else:
        batch = design.program.batch
        mac_units = design.config.rows * design.config.cols
        steady = {"batch": (batch, "samples")}
        utilization = macs * batch / (mac_units * design.predicted_cycles(batch, stream=False))
    cycles = design.predicted_cycles(samples)
    figures = {**steady, "cycles": (cycles, "cycles"), "predicted_cycles": (cycles, "cycles"),
               "macs": (macs, "MAC"), "mac_units": (mac_units, "MAC units"), "utilization": (utilization, "fraction")}
    metrics = {name: float(value) for name, (value, _) in figures.items()}
    units = {name: {"unit": unit, "method": "analytic"} for name, (_, unit) in figures.items()}
    if target is not None:
        for name, m in design.estimate(target).metrics.items():
            metrics[name] = float(m["value"])
            units[name] = {"unit": m["unit"], "method": m["method"]}
    return {"metrics": metrics, "units": units}


EXPLICIT_POINTS = [
    # model, arch, params, targets, samples
    ("mlp", "systolic", {"rows": 3, "cols": 5, "dataflow": "os"}, ("ecp5-25k", "sky130", None), 1),
    ("mlp", "systolic", {"rows": 8, "cols": 8, "dataflow": "ws", "batch": 16}, ("ice40-up5k", "osu018"), 3),
    ("mlp", "systolic", {"rows": 1, "cols": 16, "dataflow": "ws"}, ("xc7", "xcup"), 100),
    ("mlp", "systolic", {"rows": 16, "cols": 2, "dataflow": "os", "act_depth": 4096}, ("ecp5-85k",), 1),
    ("mlp", "dataflow", {"target_cycles": 64}, ("ecp5-25k", "ice40-up5k", "osu018"), 1),
    ("mlp", "dataflow", {"target_cycles": 256, "max_lanes": 16}, ("xc7", "sky130"), 7),
    ("mlp", "dataflow", {}, ("ecp5-25k",), 1),
    ("jet", "dataflow", {"target_cycles": 16}, ("ecp5-25k", "sky130"), 1),
    ("jet", "dataflow", {}, ("xcup",), 2),
    ("digits_cnn", "systolic", {"rows": 4, "cols": 4, "dataflow": "os"}, ("ecp5-25k", "osu018"), 1),
    ("digits_cnn", "systolic", {"rows": 2, "cols": 8, "dataflow": "ws", "batch": 8}, ("xc7",), 5),
    ("digits_cnn", "dataflow", {"target_cycles": 4096}, ("ecp5-25k", "sky130"), 3),
    ("residual_cnn", "systolic", {"rows": 8, "cols": 3, "dataflow": "ws"}, ("ice40-hx8k",), 1),
    ("residual_cnn", "systolic", {"rows": 4, "cols": 8, "dataflow": "os"}, ("osu018",), 1),
    ("residual_cnn", "dataflow", {"target_cycles": 4096, "max_lanes": 16}, ("ecp5-85k",), 2),
    ("residual_cnn", "dataflow", {"target_cycles": 1024}, ("ice40-up5k",), 1),
    ("residual_cnn", "dataflow", {}, ("xcup", "osu018"), 1),
]


@pytest.mark.parametrize("case", EXPLICIT_POINTS, ids=lambda c: f"{c[0]}-{c[1]}-" + "-".join(
    f"{k}{v}" for k, v in c[2].items()))
def test_analytic_evaluator_equals_compile_and_estimate(case, cnn_models) -> None:
    """Every metric (value, unit, method) the analytic evaluator gives equals what ``hwgen.compile(...)`` and
    ``Design.estimate`` give for the same point: its caches and shortcuts change the speed, never a figure. Each
    point is evaluated twice, after other points of the same model (warm caches), and the second time must agree
    with the first."""
    name, arch, params, targets, samples = case
    path = {"mlp": MODEL, "jet": JET, **cnn_models}[name]
    model = hwgen.load(path)
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    for target in targets:
        expected = explicit_result(model, arch, params, target, samples)
        point = Point(str(path), sha, arch, canonical_params(arch, params), target, samples)
        for _ in range(2):
            result = evaluate(point)
            assert result["status"] == "ok", result["error"]
            assert result["metrics"] == expected["metrics"]
            assert result["units"] == expected["units"]


def instruction_cycles(program, samples: int, stream: bool) -> int:
    """The controllers' cycle formulas (hwgen.design.CYCLE_FORMULAS) read off the program's instructions."""
    cfg = program.cfg
    pipeline = cfg.feed_latency + cfg.pe_stages + cfg.lane_latency
    total = 0
    for chunk, repeat in program.segments(samples, stream):
        cycles = chunk * (program.x_words + program.y_words) + 7 if stream else 0
        for instr in program.instructions(chunk, stream)[:len(program.layers)]:
            if cfg.dataflow == "ws":
                cycles += cfg.rows + (instr["n_tiles"] * instr["k_tiles"] - 1) * instr["period"] + instr["samples"] \
                    + cfg.rows + cfg.cols + pipeline + 1
            else:
                cycles += (instr["m_tiles"] * instr["n_tiles"] - 1) * instr["period"] + instr["kp"] + 4 * cfg.rows \
                    + 1 + cfg.cols + pipeline
        total += repeat * cycles
    return total


def test_systolic_cycle_model_reads_what_the_instructions_say(cnn_models) -> None:
    """``Program.predict_cycles`` (per-layer terms, no instructions built) equals the cycle formulas evaluated on
    the instructions the controller runs, for dense and conv models, both dataflows, preloaded and streamed."""
    for path in (MODEL, cnn_models["digits_cnn"], cnn_models["residual_cnn"]):
        model = hwgen.load(path)
        for rows, cols, dataflow in itertools.product((1, 3, 8), (2, 5, 16), ("os", "ws")):
            program = hwgen.compile(model, rows=rows, cols=cols, dataflow=dataflow, batch=8).program
            streams = (False, True) if program.streams else (False,)
            for stream in streams:
                for samples in ((1, 3, 8, 21) if stream else (1, 3, program.batch)):
                    assert program.predict_cycles(samples, stream) == instruction_cycles(program, samples, stream)


def test_systolic_layout_shortcuts_choose_what_the_costing_chooses(cnn_models) -> None:
    """The layouts ``plan`` takes from the per-model caches (one slot per sample for dense models, single
    candidates) equal those of costing every reader's candidates for the array at hand."""
    from hwgen.arch.systolic import compile as systolic

    def costed(layers, rows, cols, dataflow):
        shapes, _, groups, _ = systolic._tensor_groups.__wrapped__(systolic.SameLayers(layers), cols)
        layouts = {}
        for _, shape, members, readers in groups:
            choose = systolic._os_layout if dataflow == "os" else systolic._ws_layout
            pitch, slots = choose(shape, list(readers), rows, cols)
            layouts.update({m: dataclasses.replace(shapes[m], pitch=pitch, slots=slots) for m in members})
        return layouts

    for path in (MODEL, cnn_models["digits_cnn"], cnn_models["residual_cnn"]):
        layers = systolic.gemm_layers(hwgen.load(path).graph)
        for rows, cols, dataflow in itertools.product((1, 2, 3, 5, 8, 13), (1, 4, 7, 16), ("os", "ws")):
            assert systolic.plan_layouts(layers, rows, cols, dataflow) == costed(layers, rows, cols, dataflow)


def test_systolic_plans_shared_across_rows_equal_new_plans(cnn_models) -> None:
    """``plan`` takes a dense model's plan on C columns from a per-(model, C) cache (OS: the plan itself, WS: its
    layouts, feeds and derived figures): equal, figure for figure, to the plan built for the array at hand."""
    from hwgen.arch.systolic import compile as systolic

    for path in (MODEL, cnn_models["digits_cnn"], cnn_models["residual_cnn"]):
        layers = systolic.gemm_layers(hwgen.load(path).graph)
        key = systolic.SameLayers(layers)
        for rows, cols, dataflow in itertools.product((1, 2, 3, 5, 8, 13), (1, 4, 7, 16), ("os", "ws")):
            planned, fresh = systolic.plan(layers, rows, cols, dataflow), systolic._new_plan(key, rows, cols, dataflow)
            assert planned == fresh
            assert (planned.stride, planned.slots, planned.pixels) == (fresh.stride, fresh.slots, fresh.pixels)
        assert (systolic._plan_any_rows(key, 4) is not None) == (path == MODEL)     # dense: shared


def test_sweep_results_equal_points_evaluated_alone(cnn_models) -> None:
    """The sub-results a worker shares between the points of a sweep (per model, per column count, per lane
    geometry, per memory: ``clear_point_caches``' caches) change the speed, never a figure: every metric and unit
    of a few hundred varied points evaluated one after another (the bundled example spec's points on both its
    targets and an ASIC one, the conv models over rows × cols × dataflow; a configuration's targets in a row share
    its design, ``_hardware``) equals the same point evaluated alone, in a worker that has evaluated nothing else
    (every point cache emptied first)."""
    from hwgen.dse.evaluate import clear_point_caches

    spec = Space.from_yaml(ROOT / "examples" / "sweep_digits.yaml")
    points = [dataclasses.replace(p, target=target) for p in spec.points() for target in (p.target, "osu018")
              if p.arch == "systolic" or target != "osu018"]
    for path in (cnn_models["digits_cnn"], cnn_models["residual_cnn"]):
        sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        points += [Point(str(path), sha, "systolic", canonical_params("systolic", {"rows": rows, "cols": cols,
                                                                                   "dataflow": dataflow}), target)
                   for rows, cols, dataflow in itertools.product((1, 3, 8), (2, 5, 16), ("os", "ws"))
                   for target in ("ecp5-25k", "xc7")]
    assert len(points) > 500
    clear_point_caches()
    in_sweep = [evaluate(p) for p in points]
    assert sum(r["status"] == "ok" for r in in_sweep) > 400
    for point, result in zip(points, in_sweep):
        clear_point_caches()
        alone = evaluate(point)
        assert (result["status"], result["error"]) == (alone["status"], alone["error"]), point
        assert (result["metrics"], result["units"]) == (alone["metrics"], alone["units"]), point


@pytest.mark.parametrize("arch, params", [("dataflow", {"target_cycles": 8, "max_lanes": 16}),
                                          ("systolic", {"rows": 4, "cols": 4, "k_max": 8})])
def test_analytic_evaluator_fails_as_compile_does(arch: str, params: dict) -> None:
    with pytest.raises(hwgen.HwgenError) as raised:
        hwgen.compile(MODEL, arch, **params).estimate("ecp5-25k")
    point = Point(str(MODEL), "f" * 64, arch, canonical_params(arch, params), "ecp5-25k")
    result = evaluate(point)
    assert (result["status"], result["error"], result["metrics"]) == ("failed", str(raised.value), {})


def test_analytic_sweep_records_failures_and_resumes(small_store: Path, tmp_path: Path) -> None:
    rows = rows_by_hash(small_store)
    assert len(rows) == 15
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["params"] == {"max_lanes": 64, "target_cycles": 16}
    assert "cannot run in 16 cycles per inference with at most 64 MAC lanes" in failed[0]["error"]
    assert failed[0]["metrics"] == {}
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert all(r["metrics"]["cycles"] > 0 and r["metrics"]["lut"] > 0 and r["hwgen_version"] == hwgen.__version__
               for r in ok)
    # resuming evaluates nothing; --retry-failed evaluates only the failed point again
    store = tmp_path / "copy.sqlite"
    with sqlite3.connect(small_store) as source, sqlite3.connect(store) as copy:
        source.backup(copy)
    again = run_sweep(small_space(), store, workers=1)
    assert (again.skipped, again.done, again.failed) == (15, 0, 0)
    retried = run_sweep(small_space(), store, workers=1, retry_failed=True)
    assert (retried.skipped, retried.done, retried.failed) == (14, 0, 1)
    grown = run_sweep(small_space(targets=["ecp5-25k", "ice40-up5k"]), store, workers=1)
    assert (grown.skipped, grown.done + grown.failed) == (15, 15)
    with Store(store) as db:
        assert db.count() == 30 and len(db.sweeps()) == 4


def test_process_pool_equals_in_process(small_store: Path, tmp_path: Path) -> None:
    run_sweep(small_space(), tmp_path / "pool.sqlite", workers=2, chunk=2)
    assert comparable(rows_by_hash(tmp_path / "pool.sqlite")) == comparable(rows_by_hash(small_store))


def test_dask_local_cluster_equals_local(small_store: Path, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        summary = run_sweep(small_space(), tmp_path / "dask.sqlite", scheduler=cluster.scheduler_address)
    assert (summary.done, summary.failed) == (14, 1)
    assert comparable(rows_by_hash(tmp_path / "dask.sqlite")) == comparable(rows_by_hash(small_store))


def _sweep_in_child(spec: dict, store: str) -> None:
    run_sweep(Space.from_dict(spec), store, workers=1, chunk=1)


def _big_spec(rows: list[int]) -> dict:
    return {"models": [str(MODEL)], "targets": ["ecp5-25k"],
            "architectures": {"systolic": {"rows": rows, "cols": list(range(1, 13)), "dataflow": ["os", "ws"]}}}


def test_kill_9_then_resume_equals_a_clean_run(tmp_path: Path) -> None:
    spec = _big_spec(list(range(1, 25)))            # 576 points, committed one by one: ~0.3 s after the import
    store = tmp_path / "killed.sqlite"
    child = multiprocessing.get_context("fork").Process(target=_sweep_in_child, args=(spec, str(store)))
    child.start()
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and child.is_alive():
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=5) as db:
                    committed = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                committed = 0
            if committed >= 5:
                break
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL
    with Store(store) as db:
        kept = db.count()
        assert 5 <= kept < 576, "the sweep should have been killed part way"
        assert db.sweeps()[0]["finished"] is None
        assert db.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    resumed = run_sweep(Space.from_dict(spec), store, workers=1)
    assert resumed.skipped == kept and resumed.done + resumed.failed == 576 - kept
    clean = tmp_path / "clean.sqlite"
    run_sweep(Space.from_dict(spec), clean, workers=1)
    assert comparable(rows_by_hash(store)) == comparable(rows_by_hash(clean))


def test_a_chunk_is_stored_whole_or_not_at_all(tmp_path: Path) -> None:
    """A sweep commits each chunk of results in one transaction: a row the store refuses rolls back the chunk."""
    points = small_space().points()[:3]
    results = [evaluate(p) for p in points]
    bad = {**results[2], "status": "unknown"}                 # violates the results table's CHECK constraint
    with Store(tmp_path / "chunks.sqlite") as db:
        with pytest.raises(sqlite3.IntegrityError):
            db.put_many([results[0], results[1], bad], [p.label for p in points])
        assert db.count() == 0
        db.put_many(results, [p.label for p in points])
        assert db.count() == 3
        assert {r["point_hash"]: json.loads(json.dumps(r["metrics"])) for r in db.rows()} == \
            {r["hash"]: r["metrics"] for r in results}


def test_concurrent_writers_do_not_corrupt_the_store(tmp_path: Path) -> None:
    store = tmp_path / "shared.sqlite"
    specs = [_big_spec([1, 2, 3]), _big_spec([2, 3, 4])]           # 72 points each, 48 in common
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_sweep_in_child, args=(spec, str(store))) for spec in specs]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    with Store(store) as db:
        assert db.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.count() == 96
        assert db.db.execute("SELECT COUNT(DISTINCT point_hash) FROM results").fetchone()[0] == 96
        assert [s["finished"] is not None for s in db.sweeps()] == [True, True]


# ------------------------------------------------------------------------------------------------ Pareto
def test_pareto_mask_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    for trial in range(20):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 4))
        values = rng.integers(0, 8, size=(n, k)).astype(float)          # many ties
        senses = [rng.choice(["min", "max"]) for _ in range(k)]
        signed = values * np.array([1 if s == "min" else -1 for s in senses])
        expected = [not any(np.all(signed[j] <= signed[i]) and np.any(signed[j] < signed[i]) for j in range(n))
                    for i in range(n)]
        assert pareto_mask(values, senses).tolist() == expected


def test_front_respects_constraints_and_missing_metrics() -> None:
    def row(name, status="ok", **metrics):
        return {"point_hash": name, "label": name, "status": status, "metrics": metrics}

    rows = [row("a", cycles=10, lut=100), row("b", cycles=20, lut=50), row("c", cycles=30, lut=60),
            row("d", cycles=5, lut=9000), row("e", cycles=1), row("f", "failed"), row("g", cycles=40, lut=10)]
    result = front(rows, [Objective("cycles", "min"), Objective("lut", "min")], [Constraint("lut", "<=", 1000)])
    assert [r["label"] for r in result["front"]] == ["a", "b", "g"]
    assert (result["failed"], result["infeasible"], result["missing_constraint_metric"]) == (1, 1, 1)
    result = front(rows, [Objective("cycles", "min"), Objective("lut", "max")])
    assert [r["label"] for r in result["front"]] == ["d"]


# ------------------------------------------------------------------------------------------------ reports, CLI
def test_sweep_report_writes_csv_json_and_plots(small_store: Path, tmp_path: Path) -> None:
    report = build_report(small_store, tmp_path / "report")
    names = sorted(p.name for p in report.files)
    assert names == sorted(["results.csv", "results.json", "pareto.csv", "pareto.json", "pareto_cycles_vs_lut.png",
                            "pareto_cycles_vs_lut.svg", "utilization.png", "utilization.svg"])
    assert (tmp_path / "report" / "pareto_cycles_vs_lut.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert data["schema_version"] == 1 and len(data["rows"]) == 15
    assert data["objectives"] == ["min cycles", "min lut"] and data["constraints"] == ["lut <= 20000"]
    front_rows = json.loads((tmp_path / "report" / "pareto.json").read_text())["rows"]
    assert front_rows and all(r["metrics"]["lut"] <= 20000 for r in front_rows)
    lines = (tmp_path / "report" / "pareto.csv").read_text().splitlines()
    assert len(lines) == len(front_rows) + 1 and "cycles" in lines[0].split(",")
    # the front is non-dominated among the feasible rows
    feasible = [r for r in data["rows"] if r["status"] == "ok" and r["metrics"]["lut"] <= 20000]
    for r in front_rows:
        assert not any(o["metrics"]["cycles"] <= r["metrics"]["cycles"] and o["metrics"]["lut"] <= r["metrics"]["lut"]
                       and (o["metrics"]["cycles"], o["metrics"]["lut"]) != (r["metrics"]["cycles"],
                                                                             r["metrics"]["lut"]) for o in feasible)
    assert len(report.table().rows) == len(front_rows)


def test_cli_sweep_and_report(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from hwgen.cli import app
    spec = {**SPEC, "architectures": {"dataflow": {"target_cycles": [64, 256]}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(tmp_path / "spec.yaml"), "--store", str(tmp_path / "r.sqlite"),
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "2 points: 2 evaluated, 0 failed, 0 skipped" in result.output
    result = runner.invoke(app, ["sweep-report", str(tmp_path / "r.sqlite")])
    assert result.exit_code == 0, result.output
    assert "Pareto front" in result.output and (tmp_path / "r_report" / "pareto.csv").is_file()
    result = runner.invoke(app, ["sweep", str(tmp_path / "spec.yaml"), "--store", str(tmp_path / "r.sqlite"),
                                 "--evaluator", "magic"])
    assert result.exit_code == 2 and "unknown evaluator 'magic'" in result.output


def test_import_hwgen_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, hwgen, hwgen.cli, hwgen.dse; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'yaml', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_example_spec_parses() -> None:
    space = Space.from_yaml(ROOT / "examples" / "sweep_digits.yaml")
    points = space.points()
    assert len(points) > 200 and {p.arch for p in points} == {"systolic", "dataflow"}
    assert all(Path(p.model).is_file() for p in points) and Path(space.resolve(space.inputs)).is_file()
    assert len(list(itertools.islice(points, 3))) == 3
    # examples/sweep_digits.py declares the same space in Python
    spec = importlib.util.spec_from_file_location("sweep_digits", ROOT / "examples" / "sweep_digits.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert [p.hash for p in example.SPACE.points()] == [p.hash for p in points]
    assert example.SPACE.constraints == space.constraints and example.SPACE.objectives == space.objectives
