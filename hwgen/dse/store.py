"""The results store: one SQLite file (stdlib ``sqlite3``), resumable, idempotent, safe for concurrent writers.

Schema (``schema_version`` 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)              -- schema_version, created
    sweeps(id INTEGER PRIMARY KEY, name, spec JSON, evaluator, hwgen_version, points, started, finished,
           done, failed, skipped)                        -- one row per `hwgen sweep` run
    results(point_hash, evaluator, hwgen_version,        -- PRIMARY KEY (point_hash, evaluator, hwgen_version)
            status 'ok'|'failed', error, label, model, model_sha256, arch, target, samples,
            params JSON, metrics JSON {name: value}, units JSON {name: {unit, method}},
            seconds REAL (evaluation wall time), sweep_id, created)

Query metrics with SQLite's JSON functions, e.g.
``SELECT label, json_extract(metrics, '$.lut') FROM results WHERE status = 'ok'``.

Durability: WAL journal; every chunk of results (what one worker task returns) is committed in one transaction
as soon as it arrives, so a sweep killed at any moment (even ``kill -9``) keeps every point it reported (progress
is reported after the commit) and a restart computes only the rest.
Concurrent sweeps on one store wait for each other's short write transactions (``busy_timeout``) and cannot
duplicate a row (primary key; ``INSERT ... ON CONFLICT``), so they never corrupt it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from .. import __version__
from ..errors import HwgenError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, spec TEXT NOT NULL, evaluator TEXT NOT NULL,
    hwgen_version TEXT NOT NULL, points INTEGER NOT NULL, started TEXT NOT NULL, finished TEXT,
    done INTEGER, failed INTEGER, skipped INTEGER);
CREATE TABLE IF NOT EXISTS results (
    point_hash TEXT NOT NULL, evaluator TEXT NOT NULL, hwgen_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')), error TEXT, label TEXT NOT NULL,
    model TEXT NOT NULL, model_sha256 TEXT NOT NULL, arch TEXT NOT NULL, target TEXT, samples INTEGER NOT NULL,
    params TEXT NOT NULL, metrics TEXT NOT NULL, units TEXT NOT NULL, seconds REAL, sweep_id INTEGER,
    created TEXT NOT NULL,
    PRIMARY KEY (point_hash, evaluator, hwgen_version));
CREATE INDEX IF NOT EXISTS results_status ON results (evaluator, hwgen_version, status);
"""
COLUMNS = ("point_hash", "evaluator", "hwgen_version", "status", "error", "label", "model", "model_sha256", "arch",
           "target", "samples", "params", "metrics", "units", "seconds", "sweep_id", "created")


_UPSERT = (f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
           "ON CONFLICT (point_hash, evaluator, hwgen_version) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[3:])
           + " WHERE results.status = 'failed' OR excluded.status = 'ok'")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """A results store at ``path`` (created if missing). Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise HwgenError(f"{self.path}: no such results store")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout = 60000")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.executescript(_SCHEMA)          # idempotent (IF NOT EXISTS)
        except sqlite3.DatabaseError as exc:
            raise HwgenError(f"{self.path}: not a hwgen results store ({exc})") from None
        version = self.meta("schema_version")
        if version is None:
            with self.transaction():
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (_now(),))
        elif int(version) != SCHEMA_VERSION:
            raise HwgenError(f"{self.path}: store schema_version {version}, this hwgen reads {SCHEMA_VERSION}")

    # ------------------------------------------------------------------------------------------------ plumbing
    def transaction(self):
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # ------------------------------------------------------------------------------------------------ sweeps
    def begin_sweep(self, name: str, spec: dict, evaluator: str, points: int) -> int:
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO sweeps (name, spec, evaluator, hwgen_version, points, started) VALUES (?, ?, ?, ?, ?, ?)",
                (name, json.dumps(spec, sort_keys=True), evaluator, __version__, points, _now()))
        return int(cursor.lastrowid)

    def finish_sweep(self, sweep_id: int, done: int, failed: int, skipped: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE sweeps SET finished = ?, done = ?, failed = ?, skipped = ? WHERE id = ?",
                            (_now(), done, failed, skipped, sweep_id))

    def sweeps(self) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM sweeps ORDER BY id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) | {"spec": json.loads(row[names.index("spec")])} for row in cursor]

    # ------------------------------------------------------------------------------------------------ results
    def statuses(self, evaluator: str, version: str = __version__) -> dict[str, str]:
        """point hash → status of every stored result of ``evaluator`` under hwgen ``version``."""
        rows = self.db.execute("SELECT point_hash, status FROM results WHERE evaluator = ? AND hwgen_version = ?",
                               (evaluator, version))
        return dict(rows.fetchall())

    def put(self, result: dict, label: str, sweep_id: int | None = None) -> None:
        """Store one evaluation result (``evaluate`` output) in its own transaction. An ``ok`` row is never
        replaced by a ``failed`` one (a concurrent sweep may have finished the point)."""
        self.put_many([result], [label], sweep_id)

    def put_many(self, results: list[dict], labels: list[str], sweep_id: int | None = None) -> None:
        """Store evaluation results (``labels``: one per result) in one transaction: all of them or, if the
        process dies while writing, none (a sweep stores each chunk of points its workers return this way; one
        commit per chunk rather than per point). Rows are written as :meth:`put` writes them."""
        created = _now()
        rows = []
        units, units_json = None, None           # the points of a chunk mostly share their units: encoded once
        for result, label in zip(results, labels, strict=True):
            point = result["point"]
            if result["units"] != units:
                units, units_json = result["units"], json.dumps(result["units"], sort_keys=True)
            rows.append((result["hash"], result["evaluator"], result["hwgen_version"], result["status"],
                         result["error"], label, Path(point["model"]).name, point["model_sha256"], point["arch"],
                         point["target"], point["samples"], json.dumps(point["params"], sort_keys=True),
                         json.dumps(result["metrics"], sort_keys=True), units_json,
                         result["seconds"], sweep_id, created))
        with self.transaction():
            self.db.executemany(_UPSERT, rows)

    def rows(self, evaluator: str | None = None, version: str | None = None) -> list[dict]:
        """Stored results (JSON columns decoded), ordered by label then hash."""
        query, args = "SELECT * FROM results", []
        conditions = []
        if evaluator is not None:
            conditions.append("evaluator = ?")
            args.append(evaluator)
        if version is not None:
            conditions.append("hwgen_version = ?")
            args.append(version)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        cursor = self.db.execute(query + " ORDER BY arch, label, target, point_hash", args)
        names = [d[0] for d in cursor.description]
        result = []
        for row in cursor:
            record = dict(zip(names, row))
            for key in ("params", "metrics", "units"):
                record[key] = json.loads(record[key])
            result.append(record)
        return result

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM results WHERE status = ?", (status,)).fetchone()[0]


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): takes the write lock up front, so two writers
    queue on ``busy_timeout`` rather than fail with a deadlock on lock upgrade."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
