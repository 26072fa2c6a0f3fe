"""The DuckDB store: schema and the one transaction that replaces an hour of granules.

Rows are keyed by (source_file, id): GLM ids are unique only inside one granule. An hour is replaced as a whole inside
one transaction, so a rerun never duplicates rows and a failure (or a killed process) leaves the previous state.
All values reach SQL as bound parameters or registered frames, never as formatted strings.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Sequence

import duckdb
import pandas as pd

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS glm_file (
    source_file  VARCHAR NOT NULL,
    bucket       VARCHAR NOT NULL,
    product      VARCHAR NOT NULL,
    hour         TIMESTAMP NOT NULL,
    platform     VARCHAR,
    orbital_slot VARCHAR,
    time_start   TIMESTAMP,
    time_end     TIMESTAMP,
    n_flashes    INTEGER,
    n_groups     INTEGER,
    n_events     INTEGER,
    size_bytes   BIGINT,
    status       VARCHAR NOT NULL,
    error        VARCHAR,
    loaded_at    TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS glm_flash (
    source_file    VARCHAR NOT NULL,
    flash_id       INTEGER NOT NULL,
    time_start     TIMESTAMP,
    time_end       TIMESTAMP,
    lat            DOUBLE,
    lon            DOUBLE,
    energy         DOUBLE,
    area           DOUBLE,
    area_saturated BOOLEAN,
    quality_flag   SMALLINT
);
CREATE TABLE IF NOT EXISTS glm_group (
    source_file     VARCHAR NOT NULL,
    group_id        BIGINT NOT NULL,
    parent_flash_id INTEGER,
    time            TIMESTAMP,
    lat             DOUBLE,
    lon             DOUBLE,
    energy          DOUBLE,
    area            DOUBLE,
    area_saturated  BOOLEAN,
    quality_flag    SMALLINT
);
CREATE TABLE IF NOT EXISTS glm_event (
    source_file     VARCHAR NOT NULL,
    event_id        BIGINT NOT NULL,
    parent_group_id BIGINT,
    time            TIMESTAMP,
    lat             DOUBLE,
    lon             DOUBLE,
    energy          DOUBLE
);
"""

# Column types of the transform's CSV files, in file order; `source_file` comes first in each.
CSV_COLUMNS: dict[str, dict[str, str]] = {
    "glm_flash": {
        "source_file": "VARCHAR",
        "flash_id": "INTEGER",
        "time_start": "TIMESTAMP",
        "time_end": "TIMESTAMP",
        "lat": "DOUBLE",
        "lon": "DOUBLE",
        "energy": "DOUBLE",
        "area": "DOUBLE",
        "area_saturated": "BOOLEAN",
        "quality_flag": "SMALLINT",
    },
    "glm_group": {
        "source_file": "VARCHAR",
        "group_id": "BIGINT",
        "parent_flash_id": "INTEGER",
        "time": "TIMESTAMP",
        "lat": "DOUBLE",
        "lon": "DOUBLE",
        "energy": "DOUBLE",
        "area": "DOUBLE",
        "area_saturated": "BOOLEAN",
        "quality_flag": "SMALLINT",
    },
    "glm_event": {
        "source_file": "VARCHAR",
        "event_id": "BIGINT",
        "parent_group_id": "BIGINT",
        "time": "TIMESTAMP",
        "lat": "DOUBLE",
        "lon": "DOUBLE",
        "energy": "DOUBLE",
    },
}

FILE_COLUMNS = [
    "source_file",
    "bucket",
    "product",
    "hour",
    "platform",
    "orbital_slot",
    "time_start",
    "time_end",
    "n_flashes",
    "n_groups",
    "n_events",
    "size_bytes",
    "status",
    "error",
    "loaded_at",
]
DATA_TABLES = ("glm_flash", "glm_group", "glm_event")

# Two transactions replacing the same hour at once would each see the hour empty (snapshot isolation) and both insert
# it, duplicating every row. Another process cannot open the file while we write (DuckDB locks it), so serialising the
# replacements made inside this process is enough.
_REPLACE_LOCK = threading.Lock()


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SCHEMA_SQL)


def replace_hour(
    con: duckdb.DuckDBPyConnection,
    *,
    bucket: str,
    hour: datetime,
    files: pd.DataFrame,
    csvs: dict[str, Sequence[Path]],
) -> dict[str, int]:
    """Replace everything loaded for (bucket, hour) by ``files`` and the rows in ``csvs``, atomically.

    ``files`` has :data:`FILE_COLUMNS` (one row per granule, loaded or failed); ``csvs`` maps each data table to the
    CSV files of the granules that decoded. Returns the number of rows inserted per table.
    """
    ensure_schema(con)
    missing = [c for c in FILE_COLUMNS if c not in files.columns]
    if missing:
        raise ValueError(f"files frame lacks columns {missing}")
    new_files = files[FILE_COLUMNS]
    with _REPLACE_LOCK:
        return _replace_hour_locked(con, bucket=bucket, hour=hour, new_files=new_files, csvs=csvs)


def _replace_hour_locked(con, *, bucket: str, hour: datetime, new_files: pd.DataFrame, csvs) -> dict[str, int]:
    counts: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("new_files", new_files)
        stale = (
            "source_file IN (SELECT source_file FROM new_files) "
            "OR source_file IN (SELECT source_file FROM glm_file WHERE bucket = ? AND hour = ?)"
        )
        for table in DATA_TABLES:
            con.execute(f"DELETE FROM {table} WHERE {stale}", [bucket, hour])
        con.execute(
            "DELETE FROM glm_file WHERE source_file IN (SELECT source_file FROM new_files) "
            "OR (bucket = ? AND hour = ?)",
            [bucket, hour],
        )
        con.execute(f"INSERT INTO glm_file ({', '.join(FILE_COLUMNS)}) SELECT * FROM new_files")
        counts["glm_file"] = len(new_files)
        for table in DATA_TABLES:
            paths = [str(p) for p in csvs.get(table, [])]
            if not paths:
                counts[table] = 0
                continue
            columns = CSV_COLUMNS[table]
            before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            con.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"SELECT * FROM read_csv(?, header = true, columns = ?, auto_detect = false)",
                [paths, columns],
            )
            counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
        _check_counts(new_files, counts)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("new_files")
    return counts


def _check_counts(files: pd.DataFrame, counts: dict[str, int]) -> None:
    """Refuse to commit when the CSV rows disagree with the granules' own row counts (a truncated CSV, say)."""
    loaded = files[files["status"] == "loaded"]
    for table, column in (("glm_flash", "n_flashes"), ("glm_group", "n_groups"), ("glm_event", "n_events")):
        expected = int(loaded[column].sum())
        if counts[table] != expected:
            raise ValueError(f"{table}: the CSV files hold {counts[table]} rows, the granules {expected}")


def loaded_hours(con: duckdb.DuckDBPyConnection, bucket: str) -> set[datetime]:
    """Hours of ``bucket`` with at least one granule loaded: a backfill resumes after them."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'glm_file'").fetchone()[0]:
        return set()
    rows = con.execute("SELECT DISTINCT hour FROM glm_file WHERE bucket = ? AND status = 'loaded'", [bucket]).fetchall()
    return {row[0] for row in rows}


def hour_summary(con: duckdb.DuckDBPyConnection, *, bucket: str, hour: datetime) -> dict:
    """Counts and time span of one loaded hour, for run summaries and asset metadata."""
    row = con.execute(
        """
        SELECT count(*) AS files,
               count(*) FILTER (WHERE status = 'loaded') AS loaded,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               coalesce(sum(n_flashes) FILTER (WHERE status = 'loaded'), 0),
               coalesce(sum(n_groups) FILTER (WHERE status = 'loaded'), 0),
               coalesce(sum(n_events) FILTER (WHERE status = 'loaded'), 0),
               min(time_start), max(time_end)
        FROM glm_file WHERE bucket = ? AND hour = ?
        """,
        [bucket, hour],
    ).fetchone()
    keys = ["files", "loaded", "failed", "flashes", "groups", "events", "time_start", "time_end"]
    return dict(zip(keys, row))


def flash_preview(con: duckdb.DuckDBPyConnection, *, bucket: str, hour: datetime, limit: int = 10) -> pd.DataFrame:
    """The hour's first flashes, for a look at what was loaded."""
    return con.execute(
        "SELECT source_file, flash_id, time_start, lat, lon, energy, quality_flag FROM glm_flash "
        "WHERE source_file IN (SELECT source_file FROM glm_file WHERE bucket = ? AND hour = ?) "
        "ORDER BY time_start LIMIT ?",
        [bucket, hour, limit],
    ).df()


# --- tables written by the clustering assets --------------------------------------------------------------------

ANALYSIS_TABLES = ("flash_features", "feature_window", "flash_cluster", "cluster_summary")

EVALUATION_SQL = """
CREATE TABLE IF NOT EXISTS cluster_evaluation (
    k                      INTEGER PRIMARY KEY,
    inertia                DOUBLE,
    silhouette             DOUBLE,
    silhouette_sample_size INTEGER,
    n_points               INTEGER,
    window_start           TIMESTAMP,
    window_end             TIMESTAMP,
    evaluated_at           TIMESTAMP
);
"""


def latest_loaded_hour(con: duckdb.DuckDBPyConnection, bucket: str) -> datetime | None:
    ensure_schema(con)
    row = con.execute("SELECT max(hour) FROM glm_file WHERE bucket = ? AND status = 'loaded'", [bucket]).fetchone()
    return row[0]


def window_flashes(con: duckdb.DuckDBPyConnection, *, bucket: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Flashes of the granules loaded for hours in [start, end)."""
    ensure_schema(con)
    return con.execute(
        """
        SELECT fl.* FROM glm_flash fl
        JOIN glm_file f USING (source_file)
        WHERE f.bucket = ? AND f.status = 'loaded' AND f.hour >= ? AND f.hour < ?
        ORDER BY fl.time_start, fl.source_file, fl.flash_id
        """,
        [bucket, start, end],
    ).df()


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Replace one of the analysis tables by a frame (table names come from a fixed list, never from input)."""
    if table not in ANALYSIS_TABLES:
        raise ValueError(f"not an analysis table: {table!r}")
    con.register("replacement", frame)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM replacement")
    finally:
        con.unregister("replacement")


def upsert_evaluation(
    con: duckdb.DuckDBPyConnection,
    column: str,
    values: dict[int, float],
    *,
    n_points: int,
    window_start: datetime,
    window_end: datetime,
    sample_size: int | None = None,
) -> None:
    """Write one evaluator's column of ``cluster_evaluation``; rows of another window are dropped first."""
    if column not in ("inertia", "silhouette"):
        raise ValueError(f"not an evaluation column: {column!r}")
    con.execute(EVALUATION_SQL)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "DELETE FROM cluster_evaluation WHERE window_start IS DISTINCT FROM ? OR window_end IS DISTINCT FROM ? "
            "OR n_points IS DISTINCT FROM ?",
            [window_start, window_end, n_points],
        )
        con.execute(f"UPDATE cluster_evaluation SET {column} = NULL")
        for k, value in sorted(values.items()):
            con.execute(
                f"""
                INSERT INTO cluster_evaluation (k, {column}, n_points, window_start, window_end, evaluated_at)
                VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP)
                ON CONFLICT (k) DO UPDATE SET {column} = excluded.{column}, evaluated_at = excluded.evaluated_at
                """,
                [int(k), float(value), n_points, window_start, window_end],
            )
        if column == "silhouette":
            con.execute("UPDATE cluster_evaluation SET silhouette_sample_size = ?", [sample_size])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def read_evaluation(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    con.execute(EVALUATION_SQL)
    return con.execute("SELECT * FROM cluster_evaluation ORDER BY k").df()


def read_features(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, dict]:
    """The preprocessed flashes (row order = feature order) and the window they came from.

    Raises ``LookupError`` when the preprocessor has not written them yet.
    """
    try:
        frame = con.execute("SELECT * FROM flash_features ORDER BY row_id").df()
        window = con.execute("SELECT * FROM feature_window").df().iloc[0].to_dict()
    except (duckdb.CatalogException, IndexError) as exc:
        raise LookupError(f"no preprocessed flashes ({exc})") from None
    return frame, window


def read_clustered_flashes(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Flash positions with their cluster, the cluster summary and the window, for the map."""
    points = con.execute(
        "SELECT f.lat, f.lon, f.energy, c.cluster FROM flash_features f "
        "JOIN flash_cluster c USING (source_file, flash_id) ORDER BY f.row_id"
    ).df()
    summary = con.execute("SELECT * FROM cluster_summary ORDER BY cluster").df()
    window = con.execute("SELECT * FROM feature_window").df().iloc[0].to_dict()
    return points, summary, window
