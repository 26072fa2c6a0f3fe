"""A run's reads do not grow with the store: the window's steps read the window's hour folders only, and users'
queries filtering on the views' ``hour`` column read the matching folders only.

Proved with a store whose other hours' files are garbage: a read that touched them would fail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from lightning_eda.goes.satellites import BucketSpan
from lightning_eda.ingest.decoding import transform_granule
from lightning_eda.ingest.hourly import files_table
from lightning_eda.store import catalog, database
from lightning_eda.store.parquet_store import HourKey, ParquetStore

BUCKET, PRODUCT = "noaa-goes16", "GLM-L2-LCFA"
WINDOW_HOUR = datetime(2019, 7, 1, 18)
OTHER_HOURS = [WINDOW_HOUR + timedelta(hours=h) for h in (1, 2, 30)]  # after the window's: see the users' test


@pytest.fixture
def store_with_garbage_hours(tmp_path, real_granules):
    """The window's hour from a real granule; three later hours committed the same way, then every one of their
    Parquet files overwritten with bytes that are no Parquet."""
    busy = next(path for path in real_granules if path.stat().st_size > 100_000)
    record, tables = transform_granule(busy)
    tables["glm_file"] = files_table([record])
    store = ParquetStore(tmp_path / "data")
    store.ensure()
    for hour in [WINDOW_HOUR, *OTHER_HOURS]:
        store.commit(HourKey(BUCKET, PRODUCT, hour), store.stage(tables))
    for hour in OTHER_HOURS:
        for path in store.hour_dir(HourKey(BUCKET, PRODUCT, hour)).glob("*.parquet"):
            path.write_bytes(b"not parquet: a read of this hour fails")
    return store, tables["glm_flash"].num_rows


def test_window_hours_are_the_committed_hours_in_the_window(store_with_garbage_hours):
    store, _ = store_with_garbage_hours
    keys = database.window_hours(store, BUCKET, WINDOW_HOUR - timedelta(hours=3), WINDOW_HOUR + timedelta(hours=2))
    assert keys == [HourKey(BUCKET, PRODUCT, WINDOW_HOUR), HourKey(BUCKET, PRODUCT, OTHER_HOURS[0])]
    assert database.window_hours(store, BUCKET, WINDOW_HOUR + timedelta(minutes=30), OTHER_HOURS[0]) == [keys[0]]
    assert database.window_hours(store, "other-bucket", WINDOW_HOUR, OTHER_HOURS[-1]) == []


def test_the_window_read_touches_only_the_windows_files(store_with_garbage_hours):
    store, flashes = store_with_garbage_hours
    start, end = WINDOW_HOUR, WINDOW_HOUR + timedelta(hours=1)
    with catalog.open_views(store, hours=database.window_hours(store, BUCKET, start, end)) as con:
        rows = database.window_flashes(con, spans=[BucketSpan(BUCKET, start, end)])
    assert len(rows) == flashes > 0
    assert "hour" not in rows.columns  # the window's columns are the table's, as before


def test_a_window_over_a_garbage_hour_fails_loudly(store_with_garbage_hours):
    """The garbage is real: a window that includes one of those hours cannot be read."""
    store, _ = store_with_garbage_hours
    start, end = WINDOW_HOUR, OTHER_HOURS[0] + timedelta(hours=1)
    with catalog.open_views(store, hours=database.window_hours(store, BUCKET, start, end)) as con:
        with pytest.raises(duckdb.Error):
            database.window_flashes(con, spans=[BucketSpan(BUCKET, start, end)])


def test_users_queries_filtering_on_hour_read_only_that_hours_files(store_with_garbage_hours):
    """glm.duckdb's views glob the whole store; a filter on ``hour`` prunes the other folders before reading."""
    store, flashes = store_with_garbage_hours
    catalog.refresh_database(store.data_dir)
    with duckdb.connect(str(catalog.database_path(store.data_dir)), read_only=True) as con:
        for table in ("glm_flash", "glm_group", "glm_event", "glm_file"):
            assert con.execute(f"SELECT count(*) FROM {table} WHERE hour = ?", [WINDOW_HOUR]).fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM glm_flash WHERE hour < ?", [OTHER_HOURS[0]]).fetchone()[0] == flashes
        with pytest.raises(duckdb.Error):
            con.execute("SELECT count(*) FROM glm_flash").fetchone()
