"""SQL views over the Parquet store: in ``glm.duckdb`` for users, in memory for the pipeline's own reads.

``glm.duckdb`` holds nothing but views (and a one-row ``lightning_eda_catalog`` table saying which store they read),
so it can be deleted at any time: the next run, or ``lightning-eda rebuild-db``, makes it again. Its views read
the Parquet files at query time, so a connection opened before a load sees the new hour on its next query, and the
pipeline never needs the file: a user may hold it open (read-write or read-only) for as long as they like.

A ``glm.duckdb`` written by the previous version (real tables, no views) is migrated on first use: every hour is
written into the store, the counts are compared, and only then are the tables replaced by views.
No Dagster here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lightning_eda.files import atomic_write
from lightning_eda.store.parquet_store import (
    FORMAT_VERSION,
    HourKey,
    ParquetStore,
)
from lightning_eda.store.schemas import ANALYSIS_SCHEMAS, DATA_TABLES, GLM_SCHEMAS
from lightning_eda.store.track_hours import TRACK_TABLES, TrackHours

log = logging.getLogger(__name__)

DATABASE_FILE_NAME = "glm.duckdb"
CATALOG_TABLE = "lightning_eda_catalog"

_HIVE = "hive_partitioning = true, hive_types = {'bucket': VARCHAR, 'product': VARCHAR, 'hour': VARCHAR}"
_HOUR_COLUMN = "try_strptime(hour, '%Y-%m-%dT%H') AS hour"  # try_: the empty sentinel folder's hour is '_'
_FILE_COLUMNS = [
    "source_file",
    "bucket",
    "product",
    _HOUR_COLUMN,
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


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_statements(
    store: ParquetStore, hour: HourKey | None = None, *, hours: Sequence[HourKey] | None = None
) -> list[str]:
    """``CREATE OR REPLACE VIEW`` for every table users query, reading ``store`` by absolute path.

    With ``hour`` (or several ``hours``), the GLM tables hold those hours only, listed file by file: what a
    partition's checks and a window's steps read, so their cost stays that of their hours however long the store
    grows (a glob over the whole store lists every hour folder, 8,760 a year, on every query).
    Every GLM table has the hour folder's ``hour`` as a TIMESTAMP column: a query filtering on it reads the matching
    folders' files only (DuckDB prunes hive partitions on it).
    """
    if hour is not None:
        hours = [hour]

    def scan(table: str) -> str:
        if hours is not None:
            paths = dict.fromkeys(path for key in hours for path in store.hour_files(table, key))  # one sentinel
            files = ", ".join(_quote(path) for path in paths or [store.sentinel_file(table)])
            return f"read_parquet([{files}], {_HIVE})"
        return f"read_parquet({_quote(store.glob(table))}, {_HIVE})"

    # Each hour folder holds exactly one version at every instant (it is swapped in whole), so a plain scan is right.
    statements = [
        f"CREATE OR REPLACE VIEW glm_file AS SELECT {', '.join(_FILE_COLUMNS)} FROM {scan('glm_file')}",
    ]
    for table in DATA_TABLES:  # the schema's columns (the files' GeoParquet geometry stays out) and the hour
        columns = ", ".join(GLM_SCHEMAS[table].names)
        statements.append(f"CREATE OR REPLACE VIEW {table} AS SELECT {columns}, {_HOUR_COLUMN} FROM {scan(table)}")
    statements.append(
        """CREATE OR REPLACE VIEW glm_hour AS
           SELECT bucket, product, hour, count(*) AS granules,
                  count(*) FILTER (WHERE status = 'loaded') AS loaded,
                  count(*) FILTER (WHERE status = 'failed') AS failed,
                  count(*) FILTER (WHERE status = 'missing') AS missing,
                  count(*) FILTER (WHERE status = 'missing') = 0 AS complete,
                  max(loaded_at) AS loaded_at
           FROM glm_file GROUP BY ALL"""
    )
    for table in ANALYSIS_SCHEMAS:
        path = store.analysis_file(table).resolve()
        statements.append(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet({_quote(str(path))})")
    statements.append(
        """CREATE OR REPLACE VIEW cluster_evaluation AS
           SELECT coalesce(e.k, s.k) AS k, e.inertia, s.silhouette, s.silhouette_sample_size,
                  coalesce(e.n_points, s.n_points) AS n_points,
                  coalesce(e.window_start, s.window_start) AS window_start,
                  coalesce(e.window_end, s.window_end) AS window_end,
                  greatest(e.evaluated_at, s.evaluated_at) AS evaluated_at
           FROM elbow_scores e FULL JOIN silhouette_scores s
             ON e.k = s.k AND e.n_points = s.n_points
            AND e.window_start = s.window_start AND e.window_end = s.window_end"""
    )
    return statements + track_view_statements(TrackHours(store))


_TRACK_HIVE = "hive_partitioning = true, hive_types = {'bucket': VARCHAR, 'hour': VARCHAR}"


def track_view_statements(tracks: TrackHours) -> list[str]:
    """The storm tracks' views: every tracked hour's rows (one tracking per bucket and hour, the latest run's).

    ``track_summary`` keeps each track's row of the latest hour it was open in: that row covers its whole life up to
    then. ``track_jump`` is the jumps of ``track_rate``. The empty sentinel hour keeps them answering before any hour
    is tracked.
    """

    def scan(table: str) -> str:
        return f"read_parquet({_quote(tracks.glob(table))}, {_TRACK_HIVE})"

    statements = [
        f"CREATE OR REPLACE VIEW {table} AS SELECT * EXCLUDE (bucket, hour) FROM {scan(table)}"
        for table in TRACK_TABLES
        if table != "track_summary"
    ]
    statements.append(
        f"""CREATE OR REPLACE VIEW track_summary AS
           SELECT * EXCLUDE (bucket, hour, latest) FROM (
             SELECT *, row_number() OVER (PARTITION BY bucket, track_id ORDER BY hour DESC) AS latest
             FROM {scan("track_summary")} WHERE hour <> '_'
           ) WHERE latest = 1"""
    )
    statements.append(
        "CREATE OR REPLACE VIEW track_jump AS SELECT track_id, period_start, flash_rate, dfrdt, threshold "
        "FROM track_rate WHERE jump"
    )
    return statements


def attach_views(
    con: duckdb.DuckDBPyConnection,
    store: ParquetStore,
    hour: HourKey | None = None,
    *,
    hours: Sequence[HourKey] | None = None,
) -> duckdb.DuckDBPyConnection:
    store.ensure()
    TrackHours(store).ensure()
    for statement in view_statements(store, hour, hours=hours):
        con.execute(statement)
    return con


def open_views(
    store: ParquetStore, hour: HourKey | None = None, *, hours: Sequence[HourKey] | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the store's views: the pipeline's reads never touch ``glm.duckdb`` or its lock.

    With ``hour`` (or ``hours``), the GLM tables hold those hours only.
    """
    return attach_views(duckdb.connect(":memory:"), store, hour, hours=hours)


def connect_store(data_dir: str | Path, *, hours: Sequence[HourKey] | None = None) -> duckdb.DuckDBPyConnection:
    """:func:`open_views` of the store in ``data_dir`` (its GLM tables holding ``hours`` only, when given)."""
    return open_views(ParquetStore(data_dir), hours=hours)


def database_path(data_dir: str | Path) -> Path:
    """Where ``glm.duckdb`` lives: directly in the data folder."""
    return Path(data_dir) / DATABASE_FILE_NAME


@dataclass(frozen=True)
class CatalogStatus:
    state: str  # "up to date", "created", "refreshed", "migrated" or "stale"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.state}{': ' + self.detail if self.detail else ''}"


class CatalogBusy(RuntimeError):
    """glm.duckdb must be migrated or its views remade, and another process holds it: the message says what to do."""


MARKER_NAME = "glm_duckdb.json"


def _marker(store: ParquetStore) -> Path:
    """Beside the store, what the views in glm.duckdb were last made for: readable while the file is locked."""
    return store.root / MARKER_NAME


def _made_for(store: ParquetStore, path: Path) -> dict:
    """What glm.duckdb's views depend on: the layout's version, where the store and the file are, the views' SQL."""
    digest = hashlib.sha256("\n".join(view_statements(store)).encode()).hexdigest()
    return {
        "format_version": FORMAT_VERSION,
        "store": str(store.root.resolve()),
        "database": str(path.resolve()),
        "views": digest,
    }


def _views_made_for(store: ParquetStore, path: Path) -> bool:
    try:
        made = json.loads(_marker(store).read_text())
    except (FileNotFoundError, ValueError):
        return False
    return made == _made_for(store, path)


def refresh_database(data_dir: str | Path, *, force: bool = False) -> CatalogStatus:
    """Make ``<data_dir>/glm.duckdb`` hold the views of the store, without ever waiting for it.

    The file is opened only when its views are missing, out of date, or when it still holds the previous version's
    tables (which are then migrated). When another process holds a file whose views are current, nothing needs
    doing: they read every new hour as it is committed. When one that needs work is held, :class:`CatalogBusy`
    says how to finish. ``force`` remakes the views even when they look current.
    """
    store = ParquetStore(data_dir)
    store.ensure()
    path = database_path(data_dir)
    with _among_loaders(store):
        return _refresh_locked(store, path, force)


@contextmanager
def _among_loaders(store: ParquetStore) -> Iterator[None]:
    """Loads of several partitions finishing together take turns at making glm.duckdb (for milliseconds).

    Only this project's processes take this lock; a user holding glm.duckdb never does.
    """
    with open(store.root / "glm_duckdb.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _refresh_locked(store: ParquetStore, path: Path, force: bool) -> CatalogStatus:
    existed = path.exists()
    if existed and not force and _views_made_for(store, path):
        return CatalogStatus("up to date")
    try:
        with duckdb.connect(str(path)) as con:
            legacy = _legacy_tables(con)
            detail = migrate_tables(con, store) if legacy else ""
            for table in legacy:
                con.execute(f"DROP TABLE {table}")
            attach_views(con, store)
            con.execute(f"CREATE OR REPLACE TABLE {CATALOG_TABLE} (format_version INTEGER, store VARCHAR)")
            con.execute(f"INSERT INTO {CATALOG_TABLE} VALUES (?, ?)", [FORMAT_VERSION, str(store.root.resolve())])
            con.execute("CHECKPOINT")
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        if not _is_lock_error(exc):
            raise
        if _marker(store).exists() and not force:  # views made by an earlier run: they still read every new hour
            log.warning("%s is held open; its views were made for another store or version", path)
            return CatalogStatus(
                "stale", "held open by another process; run `lightning-eda rebuild-db` once it is closed"
            )
        raise CatalogBusy(
            f"{path} needs its views made or its tables of an earlier lightning_eda migrated, and another process "
            "holds it open: close it, then run `lightning-eda rebuild-db` (or any run); nothing was changed"
        ) from None
    atomic_write(_marker(store), lambda handle: handle.write(json.dumps(_made_for(store, path)).encode()))
    if legacy:
        return CatalogStatus("migrated", detail)
    return CatalogStatus("refreshed" if existed else "created")


def _legacy_tables(con) -> list[str]:
    """Tables of the previous version (base tables, not views), the data tables first."""
    names = {
        row[0] for row in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
    }
    order = [*GLM_SCHEMAS, "cluster_evaluation", *ANALYSIS_SCHEMAS]
    return [t for t in order if t in names]


def _is_lock_error(exc: Exception) -> bool:
    """DuckDB's words for "another process (or connection of this one) holds the file"."""
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "different configuration" in text


def migrate_tables(con: duckdb.DuckDBPyConnection, store: ParquetStore) -> str:
    """Copy every hour of the previous version's tables into the store, checking row counts before anything is
    dropped."""
    tables = set(_legacy_tables(con))
    hours = []
    if "glm_file" in tables:
        hours = con.execute("SELECT DISTINCT bucket, product, hour FROM glm_file ORDER BY ALL").fetchall()
    copied = {table: 0 for table in GLM_SCHEMAS}
    for bucket, product, hour in hours:
        key = HourKey(bucket, product, hour)
        params = [bucket, product, hour]
        files_sql = "SELECT * FROM glm_file WHERE bucket = ? AND product = ? AND hour = ?"
        staged = {"glm_file": con.sql(files_sql, params=params).to_arrow_table()}
        for table in DATA_TABLES:
            if table in tables:
                sql = f"SELECT t.* FROM {table} t SEMI JOIN ({files_sql}) f USING (source_file)"
                staged[table] = con.sql(sql, params=params).to_arrow_table()
            else:
                staged[table] = GLM_SCHEMAS[table].empty_table()
        for table, data in staged.items():
            copied[table] += data.num_rows
        store.commit(key, store.stage(staged))
    for table in GLM_SCHEMAS:
        if table in tables:
            expected = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            if table != "glm_file":  # rows of granules missing from glm_file had no hour to go to
                expected = con.execute(
                    f"SELECT count(*) FROM {table} SEMI JOIN glm_file USING (source_file)"
                ).fetchall()[0][0]
            if copied[table] != expected:
                raise RuntimeError(f"migration of {table}: copied {copied[table]} rows of {expected}; nothing dropped")
    for table in ANALYSIS_SCHEMAS:
        if table in tables:
            store.write_analysis(table, con.sql(f"SELECT * FROM {table}").to_arrow_table())
    if "cluster_evaluation" in tables:
        for table, column in (("elbow_scores", "inertia"), ("silhouette_scores", "silhouette")):
            rows = con.sql(f"SELECT * FROM cluster_evaluation WHERE {column} IS NOT NULL").to_arrow_table()
            store.write_analysis(table, rows)
    log.info("migrated %d hours of glm.duckdb into %s", len(hours), store.root)
    return f"{len(hours)} hours ({copied['glm_event']} events) moved from glm.duckdb's tables into {store.root}"
