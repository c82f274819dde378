"""``sweep-report``: the Pareto front of a store as data (CSV, JSON) first, then a Rich table and plots.

Files written into the report folder:

- ``results.csv`` / ``results.json`` — every row (ok and failed) of the chosen evaluator;
- ``pareto.csv`` / ``pareto.json`` — the front (feasible ``ok`` rows with every objective, non-dominated);
- ``pareto_<a>_vs_<b>.png`` / ``.svg`` — every objective pair: all feasible points, infeasible ones faded, the
  front highlighted, connected and labelled by configuration;
- ``utilization.png`` / ``.svg`` — roofline-style: steady-state MAC utilization vs MAC units (array size), one
  series per systolic dataflow and one for the dataflow architecture.

JSON documents carry ``schema_version`` and the objectives/constraints used.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from ..errors import HwgenError
from .pareto import feasible, front
from .space import METRICS, Constraint, Objective, parse_objectives
from .store import Store

SCHEMA_VERSION = 1
BASE_COLUMNS = ("point_hash", "status", "label", "arch", "model", "target", "evaluator", "hwgen_version", "samples")


@dataclass
class SweepReport:
    rows: list[dict]
    front: dict
    objectives: list[Objective]
    constraints: list[Constraint]
    evaluator: str
    files: list[Path]

    def table(self, limit: int = 40):
        from rich import box
        from rich.markup import escape
        from rich.table import Table

        shown = self.front["front"]
        title = (f"Pareto front: {len(shown)} of {self.front['candidates']} feasible points "
                 f"({', '.join(map(str, self.objectives)) or 'no objectives'})")
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        metrics = [o.metric for o in self.objectives]
        extra = [m for m in ("cycles", "lut", "dsp", "bram", "fmax", "throughput") if m not in metrics]
        for column in ["configuration", "target", *metrics, *extra]:
            table.add_column(column, justify="left" if column in ("configuration", "target") else "right")
        for row in shown[:limit]:
            values = [_fmt(row["metrics"].get(m)) for m in [*metrics, *extra]]
            table.add_row(escape(row["label"]), str(row["target"]), *values)
        if len(shown) > limit:
            table.caption = f"… {len(shown) - limit} more in pareto.csv"
        return table


def _fmt(value) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def latest_spec(store: Store, evaluator: str | None) -> dict | None:
    sweeps = [s for s in store.sweeps() if evaluator is None or s["evaluator"] == evaluator]
    return sweeps[-1] if sweeps else None


def build_report(store_path: str | Path, out_dir: str | Path | None = None, *, evaluator: str | None = None,
                 objectives=None, constraints: Sequence[str] | None = None, plots: bool = True) -> SweepReport:
    """Read ``store_path``, compute the front and write the files into ``out_dir`` (default:
    ``<store stem>_report/`` beside the store). Objectives and constraints default to the latest sweep's spec."""
    store_path = Path(store_path)
    with Store(store_path, create=False) as store:
        sweep = latest_spec(store, evaluator)
        if sweep is None:
            raise HwgenError(f"{store_path}: no sweep{' with evaluator ' + evaluator if evaluator else ''} stored")
        evaluator = evaluator or sweep["evaluator"]
        rows = store.rows(evaluator)
    spec = sweep["spec"]
    chosen = parse_objectives(objectives if objectives else spec.get("objectives") or [])
    if not chosen:
        chosen = parse_objectives(["min cycles", "min lut"])
    limits = [Constraint.parse(c, f"constraints[{i}]")
              for i, c in enumerate(constraints if constraints is not None else spec.get("constraints", []))]
    result = front(rows, chosen, limits)
    out = Path(out_dir) if out_dir is not None else store_path.with_name(f"{store_path.stem}_report")
    out.mkdir(parents=True, exist_ok=True)
    header = {"schema_version": SCHEMA_VERSION, "store": str(store_path), "evaluator": evaluator,
              "objectives": [str(o) for o in chosen], "constraints": [str(c) for c in limits],
              "counts": {k: v for k, v in result.items() if k != "front"} | {"rows": len(rows),
                                                                             "front": len(result["front"])}}
    files = [
        _write(out / "results.csv", _csv(rows)),
        _write(out / "results.json", json.dumps(header | {"rows": [_plain(r) for r in rows]}, indent=1,
                                                sort_keys=True) + "\n"),
        _write(out / "pareto.csv", _csv(result["front"])),
        _write(out / "pareto.json", json.dumps(header | {"rows": [_plain(r) for r in result["front"]]}, indent=1,
                                               sort_keys=True) + "\n"),
    ]
    if plots:
        files += _plots(out, rows, result["front"], chosen, limits)
    return SweepReport(rows, result, chosen, limits, evaluator, files)


def _plain(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "sweep_id"}


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _csv(rows: list[dict]) -> str:
    params = sorted({k for r in rows for k in r["params"]})
    metrics = sorted({k for r in rows for k in r["metrics"]}, key=lambda m: (m not in METRICS, m))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*BASE_COLUMNS, *params, *metrics, "error", "seconds"])
    for r in rows:
        writer.writerow([r[c] for c in BASE_COLUMNS]
                        + [json.dumps(r["params"][p]) if isinstance(r["params"].get(p), (list, dict))
                           else r["params"].get(p, "") for p in params]
                        + ["" if r["metrics"].get(m) is None else r["metrics"][m] for m in metrics]
                        + [r["error"] or "", r["seconds"]])
    return buffer.getvalue()


def _plots(out: Path, rows: list[dict], front_rows: list[dict], objectives: list[Objective],
           constraints: list[Constraint]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    ok = [r for r in rows if r["status"] == "ok"]
    on_front = {(r["point_hash"]) for r in front_rows}
    for a, b in combinations(objectives, 2):
        have = [r for r in ok if r["metrics"].get(a.metric) is not None and r["metrics"].get(b.metric) is not None]
        fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
        for arch, marker in (("systolic", "o"), ("dataflow", "s")):
            good = [r for r in have if r["arch"] == arch and feasible(r["metrics"], constraints)]
            bad = [r for r in have if r["arch"] == arch and not feasible(r["metrics"], constraints)]
            if good:
                ax.scatter([r["metrics"][a.metric] for r in good], [r["metrics"][b.metric] for r in good], s=18,
                           marker=marker, alpha=0.6, label=f"{arch}")
            if bad:
                ax.scatter([r["metrics"][a.metric] for r in bad], [r["metrics"][b.metric] for r in bad], s=12,
                           marker=marker, color="0.75", alpha=0.5, label=f"{arch} (infeasible)")
        best = sorted((r for r in have if r["point_hash"] in on_front), key=lambda r: r["metrics"][a.metric])
        if best:
            xs, ys = [r["metrics"][a.metric] for r in best], [r["metrics"][b.metric] for r in best]
            ax.plot(xs, ys, "-", color="crimson", linewidth=1, zorder=3)
            ax.scatter(xs, ys, s=60, facecolors="none", edgecolors="crimson", linewidths=1.5, zorder=4,
                       label="Pareto front")
            labels: dict[tuple[float, float], list[str]] = {}      # one label per position (ties share it)
            for r, x, y in zip(best, xs, ys):
                labels.setdefault((x, y), []).append(f"{r['label']} {r['target'] or ''}".strip())
            for (x, y), names in list(labels.items())[:25]:
                ax.annotate(names[0] + (f" (+{len(names) - 1})" if len(names) > 1 else ""), (x, y), fontsize=6,
                            xytext=(4, 3), textcoords="offset points")
        ax.set_xlabel(_axis(a))
        ax.set_ylabel(_axis(b))
        _log_if_wide(ax, [r["metrics"][a.metric] for r in have], [r["metrics"][b.metric] for r in have])
        ax.set_title(f"{b.metric} vs {a.metric} ({len(have)} points, {len(best)} on the front)")
        ax.grid(True, alpha=0.3)
        if have:
            ax.legend(fontsize=7)
        fig.tight_layout()
        for suffix in ("png", "svg"):
            path = out / f"pareto_{a.metric}_vs_{b.metric}.{suffix}"
            fig.savefig(path, metadata={"Date": None} if suffix == "svg" else {"Software": None})
            files.append(path)
        plt.close(fig)
    util = [r for r in ok if r["metrics"].get("utilization") is not None and r["metrics"].get("mac_units")]
    if util:
        fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
        series = {}
        for r in util:
            key = f"systolic {r['params'].get('dataflow')}" if r["arch"] == "systolic" else "dataflow"
            series.setdefault(key, []).append((r["metrics"]["mac_units"], r["metrics"]["utilization"]))
        for key, points in sorted(series.items()):
            points.sort()
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=16, alpha=0.7, label=key)
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="peak (every MAC unit busy)")
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("MAC units (systolic rows·cols; dataflow Σ PE·SIMD)")
        ax.set_ylabel("steady-state utilization (MACs / (units · cycles))")
        ax.set_title("utilization vs array size")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        for suffix in ("png", "svg"):
            path = out / f"utilization.{suffix}"
            fig.savefig(path, metadata={"Date": None} if suffix == "svg" else {"Software": None})
            files.append(path)
        plt.close(fig)
    return files


def _axis(objective: Objective) -> str:
    unit = METRICS.get(objective.metric, ("", ""))[0]
    return f"{objective.metric} ({unit}, {'lower' if objective.sense == 'min' else 'higher'} is better)"


def _log_if_wide(ax, xs: list[float], ys: list[float]) -> None:
    for values, setter in ((xs, ax.set_xscale), (ys, ax.set_yscale)):
        positive = [v for v in values if v > 0]
        if positive and len(positive) == len(values) and max(positive) / min(positive) > 50:
            setter("log")
