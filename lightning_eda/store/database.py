"""Queries over the store's views.

Every read takes a DuckDB connection holding the views of :mod:`lightning_eda.store.catalog`: the pipeline's own
in-memory one (:func:`~lightning_eda.store.catalog.connect_store`), or ``glm.duckdb`` itself. Values reach SQL as
bound parameters, never as formatted strings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from lightning_eda.goes.satellites import BucketSpan
from lightning_eda.store.parquet_store import HourKey, ParquetStore


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open ``glm.duckdb`` (or any DuckDB file) as a user does."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


def complete_hours(con: duckdb.DuckDBPyConnection, bucket: str, product: str) -> set[datetime]:
    """Hours whose every listed granule is loaded or failed for good: a resumed backfill skips only these."""
    rows = con.execute(
        "SELECT hour FROM glm_hour WHERE bucket = ? AND product = ? AND complete AND loaded > 0", [bucket, product]
    ).fetchall()
    return {row[0] for row in rows}


def hour_summary(con: duckdb.DuckDBPyConnection, *, bucket: str, hour: datetime) -> dict:
    """Counts and time span of one hour, for run summaries and asset metadata."""
    row = con.execute(
        """
        SELECT count(*) AS files,
               count(*) FILTER (WHERE status = 'loaded') AS loaded,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'missing') AS missing,
               coalesce(sum(n_flashes) FILTER (WHERE status = 'loaded'), 0),
               coalesce(sum(n_groups) FILTER (WHERE status = 'loaded'), 0),
               coalesce(sum(n_events) FILTER (WHERE status = 'loaded'), 0),
               min(time_start), max(time_end),
               string_agg(DISTINCT error, '; ') FILTER (WHERE status = 'missing')
        FROM glm_file WHERE bucket = ? AND hour = ?
        """,
        [bucket, hour],
    ).fetchone()
    keys = [
        "files",
        "loaded",
        "failed",
        "missing",
        "flashes",
        "groups",
        "events",
        "time_start",
        "time_end",
        "why_missing",
    ]
    return dict(zip(keys, row, strict=True))


def incomplete_note(summary: dict) -> str | None:
    """Why an hour of :func:`hour_summary` is incomplete, for logs and run summaries (None when it is complete)."""
    if not summary["missing"]:
        return None
    return f"{summary['missing']} granules missing ({summary['why_missing']}); the next run of this hour fetches them"


def flash_preview(con: duckdb.DuckDBPyConnection, *, bucket: str, hour: datetime, limit: int = 10) -> pd.DataFrame:
    """The hour's first flashes, for a look at what was loaded."""
    return con.execute(
        "SELECT source_file, flash_id, time_start, lat, lon, energy, quality_flag FROM glm_flash "
        "WHERE source_file IN (SELECT source_file FROM glm_file WHERE bucket = ? AND hour = ?) "
        "ORDER BY time_start LIMIT ?",
        [bucket, hour, limit],
    ).df()


def _minute_cuts(span: BucketSpan) -> tuple[datetime | None, datetime | None]:
    """The span's ends that fall inside an hour (None on a whole hour, where the hour's granules count whole)."""
    return tuple(None if moment.minute == moment.second == moment.microsecond == 0 else moment for moment in span.ends)


def window_flashes(con: duckdb.DuckDBPyConnection, *, spans: Sequence[BucketSpan]) -> pd.DataFrame:
    """Flashes of the granules loaded in each span's bucket and hours; an end inside an hour cuts by ``time_start``.

    On a whole hour the window takes the hour's granules whole, so consecutive hourly windows share no flash. Both
    tables are filtered on their hour folders, so DuckDB reads the window's files only, whatever the views hold
    (give it :func:`window_span_hours`' views and it does not even list the others).
    """
    clauses, params = [], []
    for span in spans:
        clause = "f.bucket = ? AND f.hour >= ? AND f.hour < ? AND fl.hour >= ? AND fl.hour < ?"
        params += [span.bucket, span.first_hour, span.end, span.first_hour, span.end]
        after, before = _minute_cuts(span)
        if after is not None:
            clause += " AND fl.time_start >= ?"
            params.append(after)
        if before is not None:
            clause += " AND fl.time_start < ?"
            params.append(before)
        clauses.append(f"({clause})")
    return con.execute(
        f"""
        SELECT fl.* EXCLUDE (hour) FROM glm_flash fl
        JOIN glm_file f USING (source_file, hour)
        WHERE f.status = 'loaded' AND ({" OR ".join(clauses)})
        ORDER BY fl.time_start, fl.source_file, fl.flash_id
        """,
        params,
    ).df()


def window_hours(store: ParquetStore, bucket: str, start: datetime, end: datetime) -> list[HourKey]:
    """The committed hours of ``bucket`` (every product's) that overlap [start, end), from their folders alone.

    Why: a window's steps read these hours' files and no others, so a run costs the same in a store of one day or
    of years (listing or scanning every hour folder grows with the store).
    """
    first = start.replace(minute=0, second=0, microsecond=0)
    count = max(0, -(-int((end - first).total_seconds()) // 3600))
    hours = [first + timedelta(hours=i) for i in range(count)]
    return [
        key
        for product in _products(store, bucket)
        for key in (HourKey(bucket, product, hour) for hour in hours)
        if store.current(key) is not None
    ]


def window_span_hours(store: ParquetStore, spans: Sequence[BucketSpan]) -> list[HourKey]:
    """:func:`window_hours` of every span (each its own real bucket)."""
    return [key for span in spans for key in window_hours(store, span.bucket, span.first_hour, span.end)]


def latest_loaded_hour_in_store(store: ParquetStore, bucket: str) -> datetime | None:
    """The latest hour with a loaded granule in ``bucket``, from the hour folders: newest first, reading each
    ``glm_file`` until one has a loaded granule (usually the first), instead of scanning every hour's."""
    products = _products(store, bucket)
    hours = sorted({hour for product in products for hour in store.hours(bucket, product)}, reverse=True)
    for hour in hours:
        for product in products:
            files = store.read(HourKey(bucket, product, hour), "glm_file")
            if "loaded" in files["status"].to_pylist():
                return hour
    return None


def _products(store: ParquetStore, bucket: str) -> list[str]:
    """The products of ``bucket`` with a folder in the store."""
    bucket_dir = store.glm_root / HourKey(bucket, "", datetime.min).parts[0]
    if not bucket_dir.is_dir():
        return []
    names = (child.name for child in bucket_dir.iterdir())
    return sorted(name.removeprefix("product=") for name in names if name.startswith("product="))


# --- the clustering tables ----------------------------------------------------------------------------------------


def read_features(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The preprocessed flashes, in feature order."""
    return con.execute("SELECT * FROM flash_features ORDER BY row_id").df()


def read_window_row(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The row of ``feature_window``, or None before the preprocessor has written one."""
    rows = con.execute("SELECT * FROM feature_window").df()
    return None if rows.empty else rows.iloc[0].to_dict()


def read_cluster_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT * FROM cluster_summary ORDER BY cluster").df()


def read_clustered_flashes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Flash positions and energies with their cluster, for the map."""
    return con.execute(
        "SELECT f.lat, f.lon, f.energy, c.cluster FROM flash_features f "
        "JOIN flash_cluster c USING (source_file, flash_id) ORDER BY f.row_id"
    ).df()


def read_storm_rates(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flashes per minute of each cluster, and the flagged lightning jumps, for the rate plot."""
    per_minute = con.execute("SELECT * FROM storm_rate ORDER BY cluster, minute").df()
    jumps = con.execute("SELECT * FROM lightning_jump WHERE jump ORDER BY cluster, time").df()
    return per_minute, jumps


def loaded_granule_rows(
    store: ParquetStore, *, spans: Sequence[BucketSpan], product: str, tables: tuple[str, ...]
) -> Iterator[dict[str, pd.DataFrame]]:
    """Hour by hour over the spans, the rows of ``tables`` of the granules loaded in that hour of the span's bucket
    (the window's hour folders only: listing every hour's cost 8,760 reads a year); an end inside an hour cuts the
    rows by their time (``time_start`` or ``time``)."""
    for span in spans:
        for key in window_hours(store, span.bucket, span.first_hour, span.end):
            if key.product == product:
                yield hour_granule_rows(store, key, span, tables)


def hour_granule_rows(
    store: ParquetStore, key: HourKey, span: BucketSpan, tables: tuple[str, ...]
) -> dict[str, pd.DataFrame]:
    """The rows of ``tables`` of the granules loaded in one committed hour, cut to the span's ends."""
    files = store.read(key, "glm_file").to_pandas()
    names = pd.Index(files["source_file"].astype(str).unique())
    loaded = set(files.loc[files["status"] == "loaded", "source_file"].astype(str))
    rows = {}
    for table in tables:
        frame = store.read(key, table).to_pandas()
        # The hour's file names as one set of categories for every table: joins and filters then compare
        # the codes, never millions of strings (casting an hour's events to str alone took 1.6 s).
        source = frame["source_file"]
        if not isinstance(source.dtype, pd.CategoricalDtype):
            source = source.astype("category")
        frame["source_file"] = source.cat.set_categories(names)
        rows[table] = _cut_rows(frame[frame["source_file"].isin(loaded)], span)
    return rows


def _cut_rows(frame: pd.DataFrame, span: BucketSpan) -> pd.DataFrame:
    """The rows inside the span's ends that fall inside an hour (by ``time_start``, else ``time``)."""
    after, before = _minute_cuts(span)
    if after is None and before is None:
        return frame
    time = frame["time_start" if "time_start" in frame else "time"]
    keep = pd.Series(True, index=frame.index)
    if after is not None:
        keep &= time >= after
    if before is not None:
        keep &= time < before
    return frame[keep]


def read_evaluation(
    con: duckdb.DuckDBPyConnection,
    *,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    n_points: int | None = None,
) -> pd.DataFrame:
    """``cluster_evaluation`` by k; given a window and its number of points, only that window's scores count."""
    if window_start is None:
        return con.execute("SELECT * FROM cluster_evaluation ORDER BY k").df()
    return con.execute(
        "SELECT * FROM cluster_evaluation WHERE window_start = ? AND window_end = ? AND n_points = ? ORDER BY k",
        [window_start, window_end, n_points],
    ).df()


def read_window_tracks(con: duckdb.DuckDBPyConnection, *, start: datetime, end: datetime) -> pd.DataFrame:
    """``track_summary`` of the tracks with a storm in [start, end): each track's latest row."""
    return con.execute(
        """
        SELECT * FROM track_summary
        WHERE track_id IN (SELECT track_id FROM storm_track WHERE frame_start >= ? AND frame_start < ?)
        ORDER BY track_id
        """,
        [start, end],
    ).df()
