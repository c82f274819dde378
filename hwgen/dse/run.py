"""Running a sweep: the points not yet stored, evaluated in-process, on a local process pool, or on Dask.

``run_sweep(space, store)`` expands the space, skips every point whose hash the store already holds for this
evaluator and hwgen version (failed points too, unless ``retry_failed``), evaluates the rest in chunks and stores
each chunk of results as it arrives (one transaction per chunk). ``workers=1`` evaluates in this process;
``workers=N`` uses a ``ProcessPoolExecutor``; ``scheduler="tcp://host:port"`` (or a ``dask.distributed.Client``)
sends the chunks to an existing Dask cluster, whose workers must be able to read the model (and inputs) paths.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from ..errors import HwgenError
from .evaluate import EVALUATORS, evaluate_points, setup_worker
from .space import Point, Space
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class SweepSummary:
    """What one run did: ``total`` points in the space, ``skipped`` (already stored), ``done`` and ``failed``
    (evaluated now), ``seconds`` of wall time."""

    sweep_id: int
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float

    @property
    def points_per_second(self) -> float:
        evaluated = self.done + self.failed
        return evaluated / self.seconds if self.seconds > 0 else 0.0


# progress(done, failed, todo) after every stored chunk
Progress = Callable[[int, int, int], None]


def pending(space: Space, store: Store, evaluator: str, retry_failed: bool = False) -> tuple[list[Point], int]:
    """(points to evaluate, how many are skipped because the store already has them)."""
    points = space.points()
    stored = store.statuses(evaluator)
    todo = [p for p in points if p.hash not in stored or (retry_failed and stored[p.hash] == "failed")]
    return todo, len(points) - len(todo)


def run_sweep(space: Space, store: str | Path | Store, evaluator: str = "analytic", *, workers: int | None = None,
              scheduler=None, retry_failed: bool = False, chunk: int | None = None,
              progress: Progress | None = None, on_start: Callable[[int, int], None] | None = None) -> SweepSummary:
    """Evaluate every point of ``space`` missing from ``store``; see the module docstring.

    ``workers``: local processes (default: CPU count; 1 = in this process). ``scheduler``: a Dask scheduler
    address or ``Client``. ``chunk``: points per task (default: chosen from the count and workers).
    ``on_start(todo, skipped)`` is called once the pending points are known.
    """
    if evaluator not in EVALUATORS:
        raise HwgenError(f"unknown evaluator {evaluator!r}; available: {', '.join(EVALUATORS)}")
    if workers is not None and workers < 1:
        raise HwgenError(f"--workers must be at least 1, got {workers}")
    owned = not isinstance(store, Store)
    db = Store(store) if owned else store
    try:
        started = time.perf_counter()
        todo, skipped = pending(space, db, evaluator, retry_failed)
        if on_start is not None:
            on_start(len(todo), skipped)
        sweep_id = db.begin_sweep(space.name, space.to_dict(), evaluator, len(todo) + skipped)
        inputs = None if space.inputs is None else str(space.resolve(space.inputs))
        if evaluator == "sim" and inputs is None and todo:
            raise HwgenError("the sim evaluator needs inputs: add 'inputs: FILE.npy' to the spec")
        labels = {p.hash: p.label for p in todo}
        done = failed = 0

        def store_results(results: list[dict]) -> None:
            nonlocal done, failed
            db.put_many(results, [labels[result["hash"]] for result in results], sweep_id)   # one transaction
            for result in results:
                if result["status"] == "ok":
                    done += 1
                else:
                    failed += 1
                    log.info("point %s failed: %s", labels[result["hash"]], result["error"])
            if progress is not None:
                progress(done, failed, len(todo))

        payload = [p.task() for p in todo]
        if todo:
            if scheduler is not None:
                _run_dask(scheduler, payload, evaluator, inputs, chunk, store_results)
            else:
                count = workers or os.cpu_count() or 1
                if count == 1 or len(todo) == 1:
                    size = chunk or 16
                    for start in range(0, len(payload), size):
                        store_results(evaluate_points(payload[start:start + size], evaluator, inputs))
                else:
                    _run_pool(count, payload, evaluator, inputs, chunk, store_results)
        db.finish_sweep(sweep_id, done, failed, skipped)
        return SweepSummary(sweep_id, len(todo) + skipped, skipped, done, failed, time.perf_counter() - started)
    finally:
        if owned:
            db.close()


def _chunks(payload: list[dict], workers: int, chunk: int | None) -> list[list[dict]]:
    """Tasks of ``chunk`` points (default: ~8 tasks per worker, 1..64 points each: few enough to amortize the
    per-task overhead, many enough for an even spread and a live progress bar)."""
    size = chunk or max(1, min(64, len(payload) // (8 * workers)))
    return [payload[start:start + size] for start in range(0, len(payload), size)]


def _run_pool(workers: int, payload: list[dict], evaluator: str, inputs: str | None, chunk: int | None,
              store_results: Callable[[list[dict]], None]) -> None:
    tasks = _chunks(payload, workers, chunk)
    models = sorted({(p["model"], p["model_sha256"]) for p in payload})
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=setup_worker,
                             initargs=(models,)) as pool:
        # at most 2 tasks in flight per worker: a kill loses little and memory stays flat for huge sweeps
        queue = iter(tasks)
        running = set()
        for task in queue:
            running.add(pool.submit(evaluate_points, task, evaluator, inputs))
            if len(running) >= 2 * workers:
                break
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                store_results(future.result())
                task = next(queue, None)
                if task is not None:
                    running.add(pool.submit(evaluate_points, task, evaluator, inputs))


def _run_dask(scheduler, payload: list[dict], evaluator: str, inputs: str | None, chunk: int | None,
              store_results: Callable[[list[dict]], None]) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise HwgenError("--scheduler needs dask.distributed: pip install 'hwgen[dse]'") from None
    owned = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout="30s") if owned else scheduler
    except (OSError, TimeoutError, ValueError) as exc:
        raise HwgenError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({exc})") from None
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        tasks = _chunks(payload, workers, chunk)
        futures = client.map(evaluate_points, tasks, evaluator=evaluator, inputs=inputs, pure=False)
        for future in as_completed(futures):
            store_results(future.result())
            future.release()
    finally:
        if owned:
            client.close()
