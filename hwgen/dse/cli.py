"""``hwgen sweep`` and ``hwgen sweep-report`` (registered on the main Typer app in :mod:`hwgen.cli`)."""
from __future__ import annotations

from pathlib import Path

import typer


def sweep(spec: Path = typer.Argument(..., help="Sweep spec (YAML): models, architectures and axes, targets, "
                                                 "constraints, objectives."),
          store: Path = typer.Option(..., "--store", help="SQLite results store (created; resumed if it exists)."),
          evaluator: str = typer.Option("analytic", "--evaluator", help="analytic (fast), synth (Yosys/nextpnr) "
                                                                         "or sim (Verilator on the spec's inputs)."),
          workers: int | None = typer.Option(None, "--workers", help="Local worker processes (default: CPU "
                                                                         "count; 1: in this process)."),
          scheduler: str | None = typer.Option(None, "--scheduler", help="Run on an existing Dask cluster, "
                                                                             "e.g. tcp://HOST:8786."),
          retry_failed: bool = typer.Option(False, "--retry-failed", help="Evaluate stored failed points again."),
          ) -> None:
    """Evaluate every point of SPEC not yet in STORE; failures are stored with their error."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..cli import console, user_errors
    from .run import run_sweep
    from .space import Space

    with user_errors():
        space = Space.from_yaml(spec)
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("failed {task.fields[failed]}"), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), console=console, transient=False)
        task = bar.add_task(f"sweep {space.name} ({evaluator})", total=None, failed=0)

        def started(todo: int, skipped: int) -> None:
            bar.update(task, total=todo)
            if skipped:
                console.print(f"{skipped} points already in {store}: skipped")

        def advanced(done: int, failed: int, todo: int) -> None:
            bar.update(task, completed=done + failed, failed=failed)

        with bar:
            summary = run_sweep(space, store, evaluator, workers=workers, scheduler=scheduler,
                                retry_failed=retry_failed, progress=advanced, on_start=started)
    console.print(f"{summary.total} points: {summary.done} evaluated, {summary.failed} failed, {summary.skipped} "
                  f"skipped; {summary.seconds:.1f} s ({summary.points_per_second:.0f} points/s); wrote {store}")


def sweep_report(store: Path = typer.Argument(..., help="SQLite store written by `hwgen sweep`."),
                 output: Path | None = typer.Option(None, "-o", "--output", help="Report folder (default: "
                                                                                    "<store>_report beside it)."),
                 evaluator: str | None = typer.Option(None, "--evaluator", help="Rows of this evaluator "
                                                                                   "(default: the latest sweep's)."),
                 objective: list[str] = typer.Option([], "--objective", help="Override the spec's objectives, "
                                                     "e.g. --objective 'min cycles' --objective 'min lut'."),
                 constraint: list[str] | None = typer.Option(None, "--constraint", help="Override the spec's "
                                                                "constraints, e.g. --constraint 'lut <= 5000'."),
                 ) -> None:
    """Print the Pareto front and write CSV, JSON and plots (PNG and SVG)."""
    from ..cli import console, user_errors
    from .report import build_report

    with user_errors():
        report = build_report(store, output, evaluator=evaluator, objectives=objective or None,
                              constraints=constraint or None)
    console.print(report.table())
    counts = report.front
    console.print(f"{len(report.rows)} rows ({report.evaluator}); left out: {counts['failed']} failed, "
                  f"{counts['infeasible']} infeasible, "
                  f"{counts['missing_constraint_metric'] + counts['missing_objective_metric']} without a metric")
    folder = report.files[0].parent if report.files else output
    console.print(f"wrote {len(report.files)} files into {folder}/")
