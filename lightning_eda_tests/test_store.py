"""The Parquet store as users meet it: readers holding glm.duckdb, late granules, deleted or old databases, settings."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import materialize

from lightning_eda import cli
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.resources import build_resources
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.store.schemas import GLM_SCHEMAS, conform
from lightning_eda.testing.lcfa_factory import lcfa_name, sample_tables, write_lcfa

BUCKET = "store-tests"
PRODUCT = "GLM-L2-LCFA"
SAMPLE_EVENTS = 5  # lcfa_factory.sample_tables(): 2 flashes, 3 groups, 5 events per granule


def key(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%d-%H:%M")


def publish(s3, folder: Path, hour: datetime, slots) -> list[str]:
    """Put small granules into the 20 s slots ``slots`` of ``hour``; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for slot in slots:
        start = hour + timedelta(seconds=20 * slot)
        path = write_lcfa(folder / lcfa_name("G16", start), start=start, **sample_tables())
        s3.put_granule(BUCKET, path)
        names.append(path.name)
    return names


def ingest(data_dir: Path, hour: datetime, **data_options):
    result = materialize(
        [extract, transform, load],
        partition_key=key(hour),
        resources=build_resources(data_dir, bucket=BUCKET, data_options=data_options),
        raise_on_error=False,
    )
    assert result.success
    return result


def meta(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def query(db: Path, sql: str, params=()):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


HOUR_A = datetime(2024, 5, 1, 10)
HOUR_B = datetime(2024, 5, 1, 11)

# A user's session in another process: open glm.duckdb (read-write like the DuckDB CLI, or read-only), keep it open,
# answer "count" with the hours and events it sees, until "quit".
READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read-only")
for line in sys.stdin:
    if line.strip() == "quit":
        break
    hours = con.execute("SELECT count(*) FROM glm_hour").fetchone()[0]
    events = con.execute("SELECT count(*) FROM glm_event").fetchone()[0]
    print(hours, events, flush=True)
"""


@pytest.mark.parametrize("mode", ["read-write", "read-only"])
def test_a_reader_holding_glm_duckdb_never_blocks_a_load_and_sees_the_new_hour(s3, tmp_path, mode):
    publish(s3, tmp_path / "made", HOUR_A, range(2))
    publish(s3, tmp_path / "made", HOUR_B, range(3))
    data = tmp_path / "data"
    ingest(data, HOUR_A)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(data / "glm.duckdb"), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reader.stdin.write("count\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["1", str(2 * SAMPLE_EVENTS)]  # the file is open and locked now
        # the load neither waits for the lock nor fails: its views already read the new hour, nothing to rewrite
        result = ingest(data, HOUR_B)
        assert meta(result, "load")["database_status"] == "up to date"
        reader.stdin.write("count\n")
        reader.stdin.flush()
        # the connection opened before the load sees the new hour on its next query
        assert reader.stdout.readline().split() == ["2", str(5 * SAMPLE_EVENTS)]
        reader.stdin.write("quit\n")
        reader.stdin.flush()
        assert reader.wait(timeout=60) == 0, reader.stderr.read()
    finally:
        reader.kill()
    assert query(data / "glm.duckdb", "SELECT hour, loaded, complete FROM glm_hour ORDER BY 1") == [
        (HOUR_A, 2, True),
        (HOUR_B, 3, True),
    ]


def test_a_granule_published_after_the_first_ingest_reaches_the_store_on_the_next_run(s3, tmp_path):
    hour = datetime(2024, 5, 2, 7)
    publish(s3, tmp_path / "made", hour, range(2))
    data = tmp_path / "data"
    ingest(data, hour)
    assert query(data / "glm.duckdb", "SELECT loaded, complete FROM glm_hour") == [(2, True)]
    late = publish(s3, tmp_path / "made", hour, [5])  # NOAA publishes one more granule of that hour
    again = ingest(data, hour)  # the schedule's revisit of the hour, or `lightning-eda run`
    assert meta(again, "extract")["downloaded"] == 1 and meta(again, "extract")["already_loaded"] == 2
    assert meta(again, "transform")["granules"] == 1 and meta(again, "transform")["kept_from_store"] == 2
    assert query(data / "glm.duckdb", "SELECT loaded, complete FROM glm_hour") == [(3, True)]
    assert late[0] in {row[0] for row in query(data / "glm.duckdb", "SELECT source_file FROM glm_file")}
    version = ParquetStore(data).current(HourKey(BUCKET, PRODUCT, hour)).version
    third = ingest(data, hour)  # nothing new: nothing is decoded and no version is written
    assert meta(third, "transform")["staged"] == "nothing changed"
    assert ParquetStore(data).current(HourKey(BUCKET, PRODUCT, hour)).version == version


def test_nothing_but_the_store_is_kept_and_the_settings_add_csvs_or_drop_granules(s3, tmp_path):
    hour = datetime(2024, 5, 3, 1)
    names = publish(s3, tmp_path / "made", hour, range(3))
    plain = tmp_path / "plain"
    ingest(plain, hour)
    assert sorted(p.name for p in plain.iterdir()) == ["glm.duckdb", "raw", "store"]
    assert not any((plain / "store" / ".staging").iterdir())

    with_csv = tmp_path / "with_csv"
    ingest(with_csv, hour, write_csv=True, keep_raw=False)
    csvs = sorted(p.name for p in (with_csv / "csv").rglob("*.csv"))
    assert len(csvs) == 3 * len(names) and all(c.endswith(("_flashes.csv", "_groups.csv", "_events.csv")) for c in csvs)
    assert not list((with_csv / "raw").rglob("*.nc")), "LIGHTNING_EDA_KEEP_RAW=0 drops granules once loaded"
    again = ingest(with_csv, hour, keep_raw=False)  # and a rerun does not fetch them again
    assert meta(again, "extract")["downloaded"] == 0 and meta(again, "extract")["already_loaded"] == 3


def test_a_deleted_glm_duckdb_is_rebuilt_by_the_next_run_or_one_command(s3, tmp_path, monkeypatch, capsys):
    hour = datetime(2024, 5, 4, 2)
    publish(s3, tmp_path / "made", hour, range(2))
    data = tmp_path / "data"
    ingest(data, hour)
    (data / "glm.duckdb").unlink()
    monkeypatch.setenv("LIGHTNING_EDA_DATA_DIR", str(data))
    assert cli.main(["rebuild-db"]) == 0
    assert "created" in capsys.readouterr().out
    assert query(data / "glm.duckdb", "SELECT count(*) FROM glm_event") == [(2 * SAMPLE_EVENTS,)]
    (data / "glm.duckdb").unlink()
    ingest(data, hour)
    assert query(data / "glm.duckdb", "SELECT count(*) FROM glm_event") == [(2 * SAMPLE_EVENTS,)]


# The previous version's schema: glm.duckdb held the rows itself.
LEGACY_SCHEMA = """
CREATE TABLE glm_file (source_file VARCHAR NOT NULL, bucket VARCHAR NOT NULL, product VARCHAR NOT NULL,
    hour TIMESTAMP NOT NULL, platform VARCHAR, orbital_slot VARCHAR, time_start TIMESTAMP, time_end TIMESTAMP,
    n_flashes INTEGER, n_groups INTEGER, n_events INTEGER, size_bytes BIGINT, status VARCHAR NOT NULL, error VARCHAR,
    loaded_at TIMESTAMP NOT NULL);
CREATE TABLE glm_flash (source_file VARCHAR NOT NULL, flash_id INTEGER NOT NULL, time_start TIMESTAMP,
    time_end TIMESTAMP, lat DOUBLE, lon DOUBLE, energy DOUBLE, area DOUBLE, area_saturated BOOLEAN,
    quality_flag SMALLINT);
CREATE TABLE glm_group (source_file VARCHAR NOT NULL, group_id BIGINT NOT NULL, parent_flash_id INTEGER,
    time TIMESTAMP, lat DOUBLE, lon DOUBLE, energy DOUBLE, area DOUBLE, area_saturated BOOLEAN, quality_flag SMALLINT);
CREATE TABLE glm_event (source_file VARCHAR NOT NULL, event_id BIGINT NOT NULL, parent_group_id BIGINT,
    time TIMESTAMP, lat DOUBLE, lon DOUBLE, energy DOUBLE);
CREATE TABLE cluster_evaluation (k INTEGER PRIMARY KEY, inertia DOUBLE, silhouette DOUBLE,
    silhouette_sample_size INTEGER, n_points INTEGER, window_start TIMESTAMP, window_end TIMESTAMP,
    evaluated_at TIMESTAMP);
"""


def legacy_database(path: Path, source: Path) -> dict:
    """A glm.duckdb as the previous version wrote it, holding the hours of the store at ``source``; its contents."""
    with catalog.connect_store(source) as views:
        # the previous version's data tables had no hour column (the views' is the hour folder's)
        tables = {
            t: views.sql(f"SELECT * {'' if t == 'glm_file' else 'EXCLUDE (hour)'} FROM {t}").to_arrow_table()
            for t in GLM_SCHEMAS
        }
    with duckdb.connect(str(path)) as con:
        con.execute(LEGACY_SCHEMA)
        for table, rows in tables.items():
            con.from_arrow(rows).insert_into(table)
        con.execute(
            "INSERT INTO cluster_evaluation VALUES (2, 10.0, 0.5, NULL, 4, '2024-05-05 03:00', "
            "'2024-05-05 04:00', '2024-05-05 05:00'), (3, 5.0, NULL, NULL, 4, '2024-05-05 03:00', "
            "'2024-05-05 04:00', '2024-05-05 05:00')"
        )
        return {
            t: sorted(
                con.execute(
                    f"SELECT * EXCLUDE (loaded_at) FROM {t}" if t == "glm_file" else f"SELECT * FROM {t}"
                ).fetchall()
            )
            for t in tables
        }


def test_a_glm_duckdb_of_the_previous_version_is_migrated_on_first_run(s3, tmp_path):
    old_hour, new_hour = datetime(2024, 5, 5, 3), datetime(2024, 5, 5, 4)
    publish(s3, tmp_path / "made", old_hour, range(2))
    publish(s3, tmp_path / "made", new_hour, range(1))
    ingest(tmp_path / "source", old_hour)
    data = tmp_path / "data"
    data.mkdir()
    before = legacy_database(data / "glm.duckdb", tmp_path / "source")
    ingest(data, new_hour)  # the first run of the new version
    with duckdb.connect(str(data / "glm.duckdb"), read_only=True) as con:
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
        assert {kinds[t] for t in before} == {"VIEW"}, kinds
        for table, rows in before.items():
            sql = (
                f"SELECT * EXCLUDE (loaded_at) FROM {table}"
                if table == "glm_file"
                else f"SELECT * EXCLUDE (hour) FROM {table}"
            )
            hours_sql = f"{sql} WHERE source_file IN (SELECT source_file FROM glm_file WHERE hour = ?)"
            assert sorted(con.execute(hours_sql, [old_hour]).fetchall()) == rows, table
        assert con.execute("SELECT k, inertia, silhouette FROM cluster_evaluation ORDER BY k").fetchall() == [
            (2, 10.0, 0.5),
            (3, 5.0, None),
        ]
        assert con.execute("SELECT hour, loaded FROM glm_hour ORDER BY 1").fetchall() == [(old_hour, 2), (new_hour, 1)]


def test_an_old_glm_duckdb_held_open_is_refused_with_one_line_saying_how_to_migrate(s3, tmp_path):
    hour = datetime(2024, 5, 6, 3)
    publish(s3, tmp_path / "made", hour, range(1))
    ingest(tmp_path / "source", hour)
    data = tmp_path / "data"
    data.mkdir()
    legacy_database(data / "glm.duckdb", tmp_path / "source")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('open', flush=True); sys.stdin.readline()",
            str(data / "glm.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(catalog.CatalogBusy) as refused:
            catalog.refresh_database(data)
        message = str(refused.value)
        assert "\n" not in message and "lightning-eda rebuild-db" in message and "close it" in message
    finally:
        holder.kill()
        holder.wait()
    with duckdb.connect(str(data / "glm.duckdb"), read_only=True) as con:  # nothing was dropped or shadowed
        assert con.execute("SELECT count(*) FROM glm_file").fetchone() == (1,)
        assert con.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = 'glm_file'"
        ).fetchone() == ("BASE TABLE",)


def test_a_partitions_checks_read_its_own_hour_only(s3, tmp_path):
    # After every hour the checks run; reading the whole store each time would cost more and more as it grows.
    from dagster import AssetSelection

    from lightning_eda.orchestration.checks import load_checks
    from lightning_eda.store.parquet_store import write_manifest

    first, second = datetime(2024, 7, 1, 10), datetime(2024, 7, 1, 11)
    publish(s3, tmp_path / "src", first, range(3))
    publish(s3, tmp_path / "src", second, range(2))
    data_dir = tmp_path / "data"
    resources = build_resources(data_dir, bucket=BUCKET)
    assert materialize([extract, transform, load], partition_key=key(first), resources=resources).success
    # plant a fault in the first hour: a flash far outside the globe
    store = ParquetStore(data_dir)
    flash_file = store.current(HourKey(BUCKET, PRODUCT, first)).files("glm_flash")[0]
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE (95.0 AS lat) FROM read_parquet('{flash_file}')) TO '{flash_file}.new' "
            "(FORMAT parquet)"
        )
    Path(f"{flash_file}.new").replace(flash_file)
    write_manifest(flash_file.parent)  # a wrong value as its writer committed it, not a damaged file

    def checks(**kwargs) -> dict:
        result = materialize(
            [extract, transform, load, load_checks], resources=resources, raise_on_error=False, **kwargs
        )
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    second_hour = checks(partition_key=key(second), selection=AssetSelection.assets(extract, transform, load))
    assert second_hour["coordinates_in_range"].passed  # the first hour's fault is not this hour's
    assert second_hour["coordinates_in_range"].metadata["glm_flash_bad"].value == 0
    assert second_hour["row_counts_match_glm_file"].passed
    # the checks alone, as the UI's "Execute" on the check runs them, for the first hour's partition
    first_hour = checks(selection=AssetSelection.checks_for_assets(load), tags={"dagster/partition": key(first)})
    assert not first_hour["coordinates_in_range"].passed
    assert first_hour["coordinates_in_range"].metadata["glm_flash_bad"].value == 6  # 3 granules × 2 flashes


# --- the one cast into the store's types ---------------------------------------------------------------------------


def flash_rows(flash_id: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_file": "a.nc",
            "flash_id": np.array(flash_id, dtype=np.int64),
            "time_start": pd.to_datetime(["2019-06-01 12:00:00.123456789"] * len(flash_id)),
            "time_end": pd.to_datetime(["2019-06-01 12:00:01"] * len(flash_id)),
            **{name: np.ones(len(flash_id)) for name in ("lat", "lon", "energy", "area")},
            "area_saturated": False,
            "quality_flag": np.zeros(len(flash_id), dtype=np.int64),
        }
    )


def test_conform_narrows_what_fits_and_truncates_times_to_microseconds():
    table = conform(flash_rows([1, 65_535]), GLM_SCHEMAS["glm_flash"])
    assert table.drop_columns("geometry").schema == GLM_SCHEMAS["glm_flash"]  # plus the GeoParquet point
    assert table.column("flash_id").to_pylist() == [1, 65_535]
    assert table.column("time_start")[0].as_py() == datetime(2019, 6, 1, 12, 0, 0, 123456)


@pytest.mark.parametrize(
    "column, values, message",
    [
        ("flash_id", [1, 2**31 + 5], "column 'flash_id': cannot store int64 as int32"),
        ("quality_flag", [0, 2**15], "column 'quality_flag': cannot store int64 as int16"),
        ("flash_id", [1.0, 2.5], "column 'flash_id': cannot store double as int32"),
    ],
)
def test_conform_refuses_an_overflow_or_a_lossy_cast_naming_the_column(column, values, message):
    """A planted value that the store's type cannot hold raises instead of wrapping or truncating."""
    rows = flash_rows([1, 2]).assign(**{column: values})
    with pytest.raises(ValueError, match=message):
        conform(rows, GLM_SCHEMAS["glm_flash"])


def test_an_analysis_table_with_an_overflowing_id_is_not_written(tmp_path):
    store = ParquetStore(tmp_path)
    store.ensure()
    before = store.analysis_file("flash_cluster").read_bytes()
    rows = pa.table({"source_file": ["a.nc"], "flash_id": pa.array([2**31], pa.int64()), "cluster": [0]})
    with pytest.raises(ValueError, match="column 'flash_id'"):
        store.write_analysis("flash_cluster", rows)
    assert store.analysis_file("flash_cluster").read_bytes() == before
