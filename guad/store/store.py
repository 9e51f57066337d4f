"""The DuckDB store: scans, scoring runs, scores, operating points, reviews.

Concurrency design (why it is built this way)
---------------------------------------------
DuckDB lets ONE process open a file read-write or MANY processes open it read-only, never
both; a conflicting open fails at once with "IO Error: Could not set lock on file". Within
one process, a read-only and a read-write connection to the same file cannot coexist either
("different configuration"). The app (many readers, an occasional small write) must keep
working while a scoring job writes, so:

1. Every access is a short-lived connection: open, run one unit of work, close. Nothing,
   the app included, holds a connection between calls, so the file is locked only for the
   milliseconds a query or a batch takes.
2. A write batch is ONE transaction (BEGIN ... COMMIT), followed by CHECKPOINT and close.
   A reader can only open the file when no writer holds it, i.e. between batches, and then
   sees committed data only: never half a batch. CHECKPOINT folds the WAL into the file so
   the next reader does not replay it.
3. Opening retries on the lock error with bounded, jittered exponential backoff (2 ms
   doubling to 100 ms) until a deadline (30 s read, 120 s write by default); only then
   does it raise StoreBusyError. Readers therefore never fail because a batch is being
   written, and the writer never fails because a reader is open.
4. Inside one process (Streamlit serves sessions from threads) accesses to one file are
   serialised by a lock, so a session's write never meets another session's open reader
   in the same process.

The price: each call pays an open (a few ms to tens of ms), and a writer with a steady
stream of readers may wait a few backoff rounds. The alternatives were worse: a long-lived
reader blocks the writer outright; having the writer publish Parquet snapshots doubles
storage and the code paths; a server process owning the file is a second thing to run.
Do not call duckdb.connect on the file yourself; use `read()` / `write()`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pandas as pd

from guad.errors import GuadError, ImportDataError

SCHEMA = Path(__file__).with_name("schema.sql")
LABELS = ("normal", "benign", "critical")
SPLITS = ("train", "val", "test")
MODELS = ("cmm", "fgm")
VERDICTS = ("true_miss", "label_error", "not_critical", "other")  # a missed critical's review
MANIFEST_REQUIRED = ("scan_id", "site", "split", "label")
MANIFEST_OPTIONAL = ("finding", "path", "lesion_ml", "seed", "size")
SCORES_REQUIRED = ("scan_id", "model", "score")

_LOCK_MARKERS = ("could not set lock", "different configuration")
_process_locks: dict[str, threading.RLock] = {}
_process_locks_guard = threading.Lock()


class StoreBusyError(GuadError):
    """The database stayed locked by another process past the retry deadline."""


def _is_lock_error(exc: Exception) -> bool:
    return any(m in str(exc).lower() for m in _LOCK_MARKERS)


def _process_lock(path: Path) -> threading.RLock:
    with _process_locks_guard:
        return _process_locks.setdefault(str(path), threading.RLock())


def _first(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """The first row of a query, or None. Fetches everything: DuckDB 2 refuses further work
    on a connection whose last result was not read to the end (fetchone() leaves it open)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def run_key(model: str, checkpoint_hash: str, sampler: str, t0: int | None,
            seed: int | None, params: dict | None = None) -> str:
    """Deterministic id of a scoring run: the same job (same model, weights, sampler, t0,
    seed, params) always gets the same id, so rerunning it resumes it. '<model>-<16 hex>'."""
    spec = {"model": model, "checkpoint_hash": checkpoint_hash, "sampler": sampler,
            "t0": t0, "seed": seed, "params": params or {}}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    return f"{model}-{digest[:16]}"


class Store:
    """A DuckDB file. Cheap to construct; it opens nothing until a method is called.

    read_timeout / write_timeout: seconds to keep retrying a locked file.
    """

    def __init__(self, path: str | os.PathLike, read_timeout: float = 30.0,
                 write_timeout: float = 120.0):
        self.path = Path(path).resolve()
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.lock_waits = 0  # how many times an open met a lock (diagnostics, tests)

    # ------------------------------------------------------------------ connections
    def _connect(self, read_only: bool, timeout: float) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise GuadError(f"{self.path}: no database here; create it with "
                            "`python -m guad import --db FILE --manifest FILE`")
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                if not _is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"{self.path}: still locked by another process after {timeout:.0f} s "
                        f"({'reading' if read_only else 'writing'}); is a job stuck?") from exc
                self.lock_waits += 1
                # jitter so that a reader and a writer retrying in step do not collide forever
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.1)

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one unit of work; closed on exit. Do not keep it."""
        with _process_lock(self.path):
            con = self._connect(True, self.read_timeout)
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside ONE transaction: committed and checkpointed on a
        clean exit, rolled back on an exception (nothing half-written); closed either way."""
        with _process_lock(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._connect(False, self.write_timeout)
            try:
                con.begin()
                try:
                    yield con
                except BaseException:
                    con.rollback()
                    raise
                con.commit()
                con.execute("CHECKPOINT")
            finally:
                con.close()

    def init(self) -> "Store":
        """Create the file and the schema if missing (idempotent). Returns self."""
        with self.write() as con:
            con.execute(SCHEMA.read_text())
        return self

    def _query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.read() as con:
            return con.execute(sql, params or []).df()

    # ------------------------------------------------------------------ paths
    def _rel(self, p: str | None) -> str | None:
        """Path as stored: relative to the database's folder where possible."""
        if not isinstance(p, (str, os.PathLike)) or p == "":
            return None  # None, or pandas' NaN / NA for a missing path
        try:
            return os.path.relpath(Path(p).resolve(), self.path.parent)
        except ValueError:  # another drive (Windows)
            return str(Path(p).resolve())

    def resolve(self, stored: str | None) -> str | None:
        """Stored path -> absolute path."""
        if not isinstance(stored, str) or stored == "":
            return None
        return str((self.path.parent / stored).resolve())

    # ------------------------------------------------------------------ import
    def import_tables(self, scans: pd.DataFrame, scores: pd.DataFrame | None = None,
                      source: str = "scores") -> dict:
        """Upsert validated scans (from `read_manifest`) and optionally scores (from
        `read_scores`) in ONE transaction: all or nothing. A scan_id already in the store
        is updated (labels may be corrected). Scores go into one run per model whose id is
        derived from the scores' content, so importing the same file twice writes nothing
        twice. Raises ImportDataError for a score whose scan is neither in `scans` nor in
        the store. Returns counts {'scans': n, 'scores': n, 'runs': [run_id, ...]}."""
        scans = scans.copy()
        scans["path"] = [self._rel(p) for p in scans["path"]]
        for col in ("lesion_ml", "seed", "synth_size"):  # optional for callers' own frames
            if col not in scans:
                scans[col] = None
        out = {"scans": len(scans), "scores": 0, "runs": []}
        with self.write() as con:
            con.execute(SCHEMA.read_text())
            con.register("new_scans", scans)
            con.execute("""
                INSERT OR REPLACE INTO scans (scan_id, site, split, label, finding, path,
                                              lesion_ml, seed, synth_size)
                SELECT scan_id, site, split, label, finding, path, lesion_ml, seed, synth_size
                FROM new_scans""")
            if scores is not None and len(scores):
                con.register("new_scores", scores)
                unknown = _first(con, """
                    SELECT n.row, n.scan_id FROM new_scores n
                    ANTI JOIN scans s USING (scan_id) ORDER BY n.row LIMIT 1""")
                if unknown:
                    raise ImportDataError(f"{source} line {unknown[0]}: score for unknown scan "
                                          f"{unknown[1]!r} (not in the manifest or the store)")
                for model, g in scores.groupby("model", sort=True):
                    content = g[["scan_id", "score"]].sort_values("scan_id").to_csv(index=False)
                    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
                    rid = run_key(model, f"external:{digest}", "import", None, None)
                    con.execute("""
                        INSERT OR IGNORE INTO scoring_runs
                            (run_id, model, checkpoint_hash, sampler, note, finished)
                        VALUES (?, ?, ?, 'import', ?, current_timestamp)""",
                                [rid, model, f"external:{digest}", f"imported from {source}"])
                    con.register("g", g.assign(run_id=rid))
                    con.execute("""
                        INSERT OR IGNORE INTO scores (scan_id, model, run_id, score, status)
                        SELECT scan_id, model, run_id, score, 'ok' FROM g""")
                    con.unregister("g")
                    out["runs"].append(rid)
                out["scores"] = len(scores)
        return out

    # ------------------------------------------------------------------ scoring runs
    def ensure_run(self, model: str, checkpoint_hash: str, sampler: str,
                   t0: int | None = None, seed: int | None = None,
                   params: dict | None = None, note: str | None = None) -> str:
        """Register a scoring run (or find the same one from an earlier, interrupted
        attempt) and return its deterministic run_id."""
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        rid = run_key(model, checkpoint_hash, sampler, t0, seed, params)
        with self.write() as con:
            con.execute("""
                INSERT OR IGNORE INTO scoring_runs
                    (run_id, model, checkpoint_hash, sampler, t0, seed, params, note)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                        [rid, model, checkpoint_hash, sampler, t0, seed,
                         json.dumps(params or {}, sort_keys=True, default=str), note])
        return rid

    def missing_scans(self, run_id: str, split: str | None = None,
                      retry_failed: bool = False) -> list[str]:
        """scan_ids (sorted) that `run_id` has not scored yet; with retry_failed, also
        those it failed on. split: restrict to 'train'|'val'|'test'."""
        done = "s.status = 'ok'" if retry_failed else "TRUE"
        sql = f"""
            SELECT c.scan_id FROM scans c
            WHERE (? IS NULL OR c.split = ?)
              AND NOT EXISTS (SELECT 1 FROM scores s
                              WHERE s.scan_id = c.scan_id AND s.run_id = ? AND {done})
            ORDER BY c.scan_id"""
        return self._query(sql, [split, split, run_id])["scan_id"].tolist()

    def write_scores(self, run_id: str, rows: pd.DataFrame | list[dict]) -> int:
        """Write one batch of scores for `run_id` in ONE transaction. Returns rows written.

        rows: scan_id, score, and optionally status ('ok'|'failed'; default: 'ok' when
        score is finite, else 'failed'), error, seconds, maps_path. An existing ok row is
        never overwritten (a rerun writes nothing twice); a failed row is replaced by a
        new ok one (a retry that succeeded)."""
        df = pd.DataFrame(rows).copy()
        if "scan_id" not in df or "score" not in df:
            raise ValueError("write_scores: rows need scan_id and score")
        score = pd.to_numeric(df["score"], errors="coerce").astype("float64")
        finite = np.isfinite(score.to_numpy())
        if "status" not in df:
            df["status"] = np.where(finite, "ok", "failed")
        bad = (df["status"] == "ok") & ~finite
        if bad.any():
            raise ValueError(f"write_scores: status 'ok' with a non-finite score for scan "
                             f"{df.loc[bad, 'scan_id'].iloc[0]!r}")
        df["score"] = score.where(df["status"] == "ok")  # failed -> NULL
        for col in ("error", "seconds", "maps_path"):
            if col not in df:
                df[col] = None
        df["maps_path"] = [self._rel(p) for p in df["maps_path"]]
        with self.write() as con:
            row = _first(con, "SELECT model FROM scoring_runs WHERE run_id = ?", [run_id])
            if row is None:
                raise ValueError(f"write_scores: unknown run {run_id!r}; call ensure_run first")
            con.register("batch", df.assign(model=row[0], run_id=run_id))
            unknown = _first(con, "SELECT scan_id FROM batch ANTI JOIN scans USING (scan_id) "
                                  "LIMIT 1")
            if unknown:
                raise ValueError(f"write_scores: unknown scan {unknown[0]!r}")
            n = _first(con, """
                INSERT INTO scores (scan_id, model, run_id, score, status, error, seconds,
                                    maps_path)
                SELECT scan_id, model, run_id, score, status, error,
                       CAST(seconds AS DOUBLE), maps_path FROM batch
                ON CONFLICT (scan_id, model, run_id) DO UPDATE SET
                    score = excluded.score, status = excluded.status, error = excluded.error,
                    seconds = excluded.seconds, maps_path = excluded.maps_path,
                    written_at = excluded.written_at
                WHERE scores.status = 'failed' AND excluded.status = 'ok'""")[0]
        return int(n)

    def finish_run(self, run_id: str) -> None:
        with self.write() as con:
            con.execute("UPDATE scoring_runs SET finished = current_timestamp WHERE run_id = ?",
                        [run_id])

    # ------------------------------------------------------------------ reads
    def scans(self, split: str | None = None) -> pd.DataFrame:
        df = self._query("SELECT * FROM scans WHERE (? IS NULL OR split = ?) ORDER BY scan_id",
                         [split, split])
        df["path"] = [self.resolve(p) for p in df["path"]]
        return df

    def runs(self) -> pd.DataFrame:
        """Scoring runs with their ok / failed counts, newest first."""
        return self._query("""
            SELECT r.*, count(*) FILTER (WHERE s.status = 'ok') AS n_ok,
                   count(*) FILTER (WHERE s.status = 'failed') AS n_failed
            FROM scoring_runs r LEFT JOIN scores s USING (run_id)
            GROUP BY ALL ORDER BY r.started DESC, r.run_id DESC""")

    def scores(self, run_id: str | None = None) -> pd.DataFrame:
        return self._query("SELECT * FROM scores WHERE (? IS NULL OR run_id = ?) "
                           "ORDER BY run_id, scan_id", [run_id, run_id])

    def frame(self, run_ids: dict[str, str] | None = None) -> pd.DataFrame:
        """Scans joined with one ok score per model: the app's and the report's input.

        Columns: scan_id, site, split, label, finding, critical (bool), score_cmm,
        score_fgm (float64, NaN when that model has no ok score), run_cmm, run_fgm, path
        (absolute or None), lesion_ml. By default each scan takes its latest ok score per
        model (the run started last); run_ids={'cmm': id, 'fgm': id} pins the runs instead.
        One row per scan, ordered by scan_id.
        """
        run_ids = run_ids or {}
        pin_cmm, pin_fgm = run_ids.get("cmm"), run_ids.get("fgm")
        df = self._query("""
            WITH latest AS (
                SELECT s.scan_id, s.model, s.score, s.run_id FROM scores s
                JOIN scoring_runs r USING (run_id)
                WHERE s.status = 'ok'
                  AND (s.model <> 'cmm' OR ? IS NULL OR s.run_id = ?)
                  AND (s.model <> 'fgm' OR ? IS NULL OR s.run_id = ?)
                QUALIFY row_number() OVER (PARTITION BY s.scan_id, s.model
                                           ORDER BY r.started DESC, s.run_id DESC) = 1)
            SELECT c.scan_id, c.site, c.split, c.label, c.finding,
                   c.label = 'critical' AS critical,
                   m.score AS score_cmm, f.score AS score_fgm,
                   m.run_id AS run_cmm, f.run_id AS run_fgm, c.path, c.lesion_ml
            FROM scans c
            LEFT JOIN latest m ON m.scan_id = c.scan_id AND m.model = 'cmm'
            LEFT JOIN latest f ON f.scan_id = c.scan_id AND f.model = 'fgm'
            ORDER BY c.scan_id""", [pin_cmm, pin_cmm, pin_fgm, pin_fgm])
        df["critical"] = df["critical"].astype(bool)
        for col in ("score_cmm", "score_fgm"):
            df[col] = df[col].astype("float64")
        df["path"] = [self.resolve(p) for p in df["path"]]
        return df

    def maps_paths(self) -> dict[str, str]:
        """scan_id -> absolute folder of its saved viewer maps (the newest ok score row that
        names one); scans without saved maps are absent."""
        df = self._query("""
            SELECT scan_id, maps_path FROM scores
            WHERE status = 'ok' AND maps_path IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY scan_id ORDER BY written_at DESC) = 1""")
        return {r.scan_id: self.resolve(r.maps_path) for r in df.itertuples(index=False)}

    # ------------------------------------------------------------------ decisions, reviews
    def save_operating_point(self, name: str, rule: str, c_cmm: float, c_fgm: float,
                             target: str | None = None, author: str | None = None,
                             note: str | None = None) -> int:
        """Record an operating point; returns its op_id."""
        for c, n in ((c_cmm, "c_cmm"), (c_fgm, "c_fgm")):
            if c is None or math.isnan(float(c)):
                raise ValueError(f"{n} must be a number (-inf for 'exclude nothing')")
        with self.write() as con:
            return int(_first(con, """
                INSERT INTO operating_points (name, rule, target, c_cmm, c_fgm, author, note)
                VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING op_id""",
                                   [name, rule, target, float(c_cmm), float(c_fgm), author,
                                    note])[0])

    def operating_points(self) -> pd.DataFrame:
        return self._query("SELECT * FROM operating_points ORDER BY created DESC, op_id DESC")

    def add_review(self, scan_id: str, verdict: str, comment: str | None = None,
                   reviewer: str | None = None) -> int:
        """Record a reviewer's verdict on a scan; returns its review_id."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        with self.write() as con:
            if _first(con, "SELECT 1 FROM scans WHERE scan_id = ?", [scan_id]) is None:
                raise ValueError(f"unknown scan {scan_id!r}")
            return int(_first(con, """
                INSERT INTO reviews (scan_id, verdict, comment, reviewer)
                VALUES (?, ?, ?, ?) RETURNING review_id""",
                                   [scan_id, verdict, comment, reviewer])[0])

    def reviews(self, scan_id: str | None = None) -> pd.DataFrame:
        return self._query("SELECT * FROM reviews WHERE (? IS NULL OR scan_id = ?) "
                           "ORDER BY created, review_id", [scan_id, scan_id])


# ---------------------------------------------------------------------- reading CSV tables
def _read_csv(path: str | os.PathLike, what: str) -> pd.DataFrame:
    try:
        # everything as text: we validate each cell ourselves and name the row
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise ImportDataError(f"{path}: {what} file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ImportDataError(f"{path}: not a readable CSV {what}: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    return df


def _check_columns(df: pd.DataFrame, required, path, what) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ImportDataError(f"{path}: {what} is missing column(s) {', '.join(missing)} "
                              f"(line 1 has: {', '.join(df.columns) or 'nothing'})")


def _line(i: int) -> int:
    return i + 2  # 0-based data row -> file line (line 1 is the header)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a cohort manifest or a user's labels CSV.

    Required columns scan_id, site, split, label; optional finding, path, lesion_ml, seed
    (paths relative to the manifest's folder are made absolute). Raises ImportDataError
    naming the file line for: a missing column, an empty scan_id or site, a duplicate
    scan_id, an unknown split or label, a non-numeric lesion_ml or seed.
    Returns a DataFrame with exactly the columns scan_id, site, split, label, finding, path,
    lesion_ml (float64), seed (Int64), synth_size (Int64, from the optional `size` column of a
    synthetic manifest), and a 'row' column (file line)."""
    path = Path(path)
    df = _read_csv(path, "manifest")
    _check_columns(df, MANIFEST_REQUIRED, path, "manifest")
    for col in MANIFEST_OPTIONAL:
        if col not in df:
            df[col] = ""
    df = df.apply(lambda s: s.str.strip())
    seen: dict[str, int] = {}
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{path} line {_line(i)}"
        if not r.scan_id:
            raise ImportDataError(f"{where}: empty scan_id")
        if r.scan_id in seen:
            raise ImportDataError(f"{where}: duplicate scan_id {r.scan_id!r} "
                                  f"(first on line {seen[r.scan_id]})")
        seen[r.scan_id] = _line(i)
        if not r.site:
            raise ImportDataError(f"{where} (scan {r.scan_id!r}): empty site")
        if r.split not in SPLITS:
            raise ImportDataError(f"{where} (scan {r.scan_id!r}): unknown split {r.split!r}; "
                                  f"expected one of {', '.join(SPLITS)}")
        if r.label not in LABELS:
            raise ImportDataError(f"{where} (scan {r.scan_id!r}): unknown label {r.label!r}; "
                                  f"expected one of {', '.join(LABELS)}")
        for col, conv in (("lesion_ml", float), ("seed", int), ("size", int)):
            v = getattr(r, col)
            try:
                if v:
                    x = conv(v)
                    if col == "lesion_ml" and not math.isfinite(x):
                        raise ValueError
            except ValueError:
                raise ImportDataError(f"{where} (scan {r.scan_id!r}): {col} {v!r} is not "
                                      f"{'a number' if conv is float else 'an integer'}") from None
    out = df[list(MANIFEST_REQUIRED) + list(MANIFEST_OPTIONAL)].copy()
    out["finding"] = out["finding"].replace("", None)
    out["path"] = [str((path.parent / p).resolve()) if p else None for p in out["path"]]
    out["lesion_ml"] = pd.to_numeric(out["lesion_ml"].replace("", None)).astype("float64")
    out["seed"] = pd.to_numeric(out["seed"].replace("", None)).astype("Int64")
    out["synth_size"] = pd.to_numeric(out.pop("size").replace("", None)).astype("Int64")
    out["row"] = [_line(i) for i in range(len(out))]
    return out


def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate scores computed elsewhere: columns scan_id, model ('cmm'|'fgm'),
    score (finite number). Raises ImportDataError naming the line for a missing column, an
    unknown model, a non-numeric / NaN / infinite score, or a duplicate (scan_id, model).
    Returns scan_id, model, score (float64), row (file line)."""
    path = Path(path)
    df = _read_csv(path, "scores")
    _check_columns(df, SCORES_REQUIRED, path, "scores")
    df = df[list(SCORES_REQUIRED)].apply(lambda s: s.str.strip())
    seen: dict[tuple, int] = {}
    values = np.empty(len(df))
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{path} line {_line(i)}"
        if not r.scan_id:
            raise ImportDataError(f"{where}: empty scan_id")
        if r.model not in MODELS:
            raise ImportDataError(f"{where} (scan {r.scan_id!r}): unknown model {r.model!r}; "
                                  f"expected one of {', '.join(MODELS)}")
        try:
            values[i] = float(r.score)
        except ValueError:
            raise ImportDataError(f"{where} (scan {r.scan_id!r}): score {r.score!r} is not a "
                                  "number") from None
        if not math.isfinite(values[i]):
            raise ImportDataError(f"{where} (scan {r.scan_id!r}): score {r.score!r} is not a "
                                  "finite number")
        key = (r.scan_id, r.model)
        if key in seen:
            raise ImportDataError(f"{where}: duplicate {r.model} score for scan {r.scan_id!r} "
                                  f"(first on line {seen[key]})")
        seen[key] = _line(i)
    out = df.copy()
    out["score"] = values
    out["row"] = [_line(i) for i in range(len(out))]
    return out
