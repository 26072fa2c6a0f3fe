"""Fixtures of the data-quality tests: real DuckDB tables shaped like the store's views, so that a test can plant its
fault with one UPDATE or DELETE."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from lightning_eda.store import catalog

START = datetime(2024, 3, 5, 1, 0, 0)


@pytest.fixture
def con(tmp_path):
    """Tables shaped like the store's views, holding one clean granule: 2 flashes, 2 groups, 2 events.

    Real tables (not views over Parquet) so that each test can plant its fault with one UPDATE or DELETE.
    """
    connection = duckdb.connect(str(tmp_path / "quality.duckdb"))
    with catalog.connect_store(tmp_path / "empty_store") as views:
        for table in ("glm_file", "glm_flash", "glm_group", "glm_event"):
            empty = views.sql(f"SELECT * FROM {table}").to_arrow_table()  # noqa: F841 - read by DuckDB below
            connection.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")
    connection.execute(
        "INSERT INTO glm_file VALUES ('g1.nc', 'noaa-goes16', 'GLM-L2-LCFA', ?, 'G16', 'GOES-East', ?, ?, 2, 2, 2, "
        "1000, 'loaded', NULL, now()::TIMESTAMP)",
        [START, START, START + timedelta(seconds=20)],
    )
    for flash_id, offset in ((1, -1.5), (2, 5.0)):
        t = START + timedelta(seconds=offset)
        connection.execute(
            "INSERT INTO glm_flash VALUES ('g1.nc', ?, ?, ?, 30.0, -90.0, 1e-14, 1e8, false, 0, ?)",
            [flash_id, t, t, START],
        )
        connection.execute(
            "INSERT INTO glm_group VALUES ('g1.nc', ?, ?, ?, 30.0, -90.0, 1e-14, 1e8, false, 0, ?)",
            [flash_id * 10, flash_id, t, START],
        )
        connection.execute(
            "INSERT INTO glm_event VALUES ('g1.nc', ?, ?, ?, 30.0, -90.0, 1e-15, ?)",
            [flash_id * 100, flash_id * 10, t, START],
        )
    yield connection
    connection.close()


@pytest.fixture
def clustered(con):
    """Four z-scored features (mean 0, std 1 in both columns), each in one cluster, and a summary that adds up."""
    con.execute(
        "CREATE TABLE flash_features AS SELECT * FROM (VALUES ('g1.nc', 1, -1.0::DOUBLE, 1.0::DOUBLE), "
        "('g1.nc', 2, 1.0, -1.0), ('g1.nc', 3, -1.0, -1.0), ('g1.nc', 4, 1.0, 1.0)) t(source_file, flash_id, f_x, f_y)"
    )
    con.execute(
        "CREATE TABLE flash_cluster AS SELECT source_file, flash_id, flash_id % 2 AS cluster FROM flash_features"
    )
    con.execute("CREATE TABLE cluster_summary AS SELECT * FROM (VALUES (0, 2), (1, 2)) t(cluster, n_flashes)")
    return con
