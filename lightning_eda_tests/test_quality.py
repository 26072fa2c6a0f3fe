"""The data-quality queries behind the asset checks: each one must notice the fault it exists for."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fixtures_store import START

from lightning_eda.store import database, quality


def test_a_clean_store_passes_every_query(con):
    assert sum(quality.out_of_range_coordinates(con).values()) == 0
    assert sum(quality.duplicate_keys(con).values()) == 0
    assert quality.row_count_mismatches(con) == []
    assert quality.flashes_outside_granule(con)[0] == 0  # 1.5 s early is allowed: flashes are written when they end
    assert quality.orphan_children(con) == {"groups_without_flash": 0, "events_without_group": 0}
    assert quality.failed_granules(con) == []


def test_out_of_range_and_missing_coordinates_are_counted(con):
    con.execute("UPDATE glm_event SET lon = 180.0 WHERE event_id = 100")
    con.execute("UPDATE glm_flash SET lat = NULL WHERE flash_id = 2")
    assert quality.out_of_range_coordinates(con) == {"glm_flash": 1, "glm_group": 0, "glm_event": 1}


def test_duplicates_are_counted(con):
    con.execute("INSERT INTO glm_flash SELECT * FROM glm_flash WHERE flash_id = 1")
    con.execute("INSERT INTO glm_file SELECT * FROM glm_file")
    counts = quality.duplicate_keys(con)
    assert counts["glm_flash"] == 1 and counts["glm_file"] == 1


def test_row_counts_that_disagree_with_glm_file_are_listed(con):
    con.execute("DELETE FROM glm_event WHERE event_id = 200")
    con.execute("INSERT INTO glm_flash VALUES ('ghost.nc', 7, NULL, NULL, 0, 0, NULL, NULL, false, 0, NULL)")
    rows = quality.row_count_mismatches(con)
    assert [(r[0], r[1]) for r in rows] == [("g1.nc", "loaded"), ("ghost.nc", "orphan")]
    assert rows[0][6:] == (2, 1)  # events expected, found


def test_rows_of_a_failed_granule_are_a_mismatch(con):
    con.execute("UPDATE glm_file SET status = 'failed', error = 'truncated'")
    assert [r[0] for r in quality.row_count_mismatches(con)] == ["g1.nc"]
    assert quality.failed_granules(con) == [("g1.nc", "truncated")]


def test_flashes_far_outside_their_granule_are_reported(con):
    con.execute("UPDATE glm_flash SET time_start = time_start - INTERVAL 10 SECOND WHERE flash_id = 1")
    con.execute("UPDATE glm_flash SET time_end = time_end + INTERVAL 30 SECOND WHERE flash_id = 2")
    count, examples = quality.flashes_outside_granule(con)
    assert count == 2 and {e[1] for e in examples} == {1, 2}


def test_orphans_are_counted(con):
    con.execute("DELETE FROM glm_flash WHERE flash_id = 2")
    con.execute("UPDATE glm_event SET parent_group_id = 999 WHERE event_id = 100")
    assert quality.orphan_children(con) == {"groups_without_flash": 1, "events_without_group": 1}


@pytest.mark.slow
def test_dagster_asset_materialize_runs_one_partition_from_the_shell(s3, tmp_path):
    """The documented `dagster asset materialize --partition` command ingests exactly that hour."""
    from lightning_eda.testing.lcfa_factory import lcfa_name, sample_tables, write_lcfa

    made = tmp_path / "made"
    made.mkdir()
    for slot in range(2):
        start = datetime(2024, 3, 7, 9, 2) + timedelta(seconds=20 * slot)
        s3.put_granule("noaa-goes16", write_lcfa(made / lcfa_name("G16", start), start=start, **sample_tables()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOES_", "S3_", "LIGHTNING_EDA_"))}
    env.pop("DAGSTER_HOME", None)
    env |= {"S3_BUCKET": "noaa-goes16", "AWS_ENDPOINT_URL_S3": s3.url, "LIGHTNING_EDA_DATA_DIR": str(tmp_path / "data")}
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "lightning_eda.definitions",
            "--select",
            "group:ingestor",
            "--partition",
            "2024-03-07-09:00",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with database.connect(tmp_path / "data" / "glm.duckdb", read_only=True) as db:
        assert db.execute("SELECT hour, count(*) FROM glm_file GROUP BY 1").fetchall() == [(datetime(2024, 3, 7, 9), 2)]


# --- the checks on the clustering tables -------------------------------------------------------------------------


def test_clean_clustering_tables_pass_both_checks(clustered):
    assert quality.feature_standardization(clustered)[0]
    assert quality.clustering_coverage(clustered)[0]


@pytest.mark.parametrize(
    "fault",
    [
        "UPDATE flash_features SET f_x = f_x + 0.5",  # not centred
        "UPDATE flash_features SET f_y = f_y * 3",  # not unit spread
        "UPDATE flash_features SET f_x = 'NaN'::DOUBLE WHERE flash_id = 1",  # not finite
        "DELETE FROM flash_features",  # nothing preprocessed
    ],
)
def test_features_that_are_not_z_scored_fail(clustered, fault):
    clustered.execute(fault)
    passed, facts = quality.feature_standardization(clustered)
    assert not passed, facts


@pytest.mark.parametrize(
    "fault",
    [
        "DELETE FROM flash_cluster WHERE flash_id = 4",  # a flash without a cluster
        "INSERT INTO flash_cluster VALUES ('g1.nc', 4, 0)",  # a flash in two clusters
        "UPDATE cluster_summary SET n_flashes = 3 WHERE cluster = 0",  # the summary does not add up
    ],
)
def test_flashes_not_clustered_exactly_once_fail(clustered, fault):
    clustered.execute(fault)
    passed, facts = quality.clustering_coverage(clustered)
    assert not passed, facts


def test_the_dagster_checks_report_the_planted_faults(tmp_path):
    """The asset checks themselves, invoked as Dagster invokes them, pass on clean tables and fail on planted faults."""
    import pandas as pd

    from lightning_eda.orchestration.checks import every_flash_clustered, features_standardized
    from lightning_eda.orchestration.resources import LightningDataResource
    from lightning_eda.store.parquet_store import ParquetStore

    store = ParquetStore(tmp_path)
    features = pd.DataFrame(
        {
            "source_file": "g1.nc",
            "flash_id": [1, 2, 3, 4],
            "time_start": pd.Timestamp(START),
            "time_end": pd.Timestamp(START),
            "lat": 30.0,
            "lon": -90.0,
            "energy": 1e-15,
            "quality_flag": 0,
            "area": 1e8,
            "row_id": [0, 1, 2, 3],
            "x_km": 0.0,
            "y_km": 0.0,
            "f_x": [-1.0, 1.0, -1.0, 1.0],
            "f_y": [1.0, -1.0, -1.0, 1.0],
            "f_t": 0.0,
            "storm": [0, 0, 1, 1],
        }
    )
    clusters = features[["source_file", "flash_id"]].assign(cluster=features["flash_id"] % 2)
    summary = pd.DataFrame(
        {
            "cluster": [0, 1],
            "lat": 30.0,
            "lon": -90.0,
            "n_flashes": [2, 2],
            "total_energy": 0.0,
            "time_start": pd.Timestamp(START),
            "time_end": pd.Timestamp(START),
            "flash_rate": 2.0,
            "mean_energy": 1e-15,
            "median_energy": 1e-15,
            "mean_area": 1e8,
            "median_area": 1e8,
            "extent_km": 1.0,
            "duration_min": 1.0,
            "n_jumps": 0,
            "first_jump": pd.NaT,
        }
    )
    store.write_analysis("flash_features", features)
    store.write_analysis("flash_cluster", clusters)
    store.write_analysis("cluster_summary", summary)
    data = LightningDataResource(data_dir=str(tmp_path))
    assert features_standardized(data=data).passed and every_flash_clustered(data=data).passed

    store.write_analysis("flash_features", features.assign(f_x=features["f_x"] + 0.5))
    store.write_analysis("flash_cluster", clusters[clusters["flash_id"] != 4])
    assert not features_standardized(data=data).passed
    assert not every_flash_clustered(data=data).passed
