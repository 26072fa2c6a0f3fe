"""The ingestor assets end to end: a local S3 server over HTTP, real granules under the real key layout, DuckDB on
disk."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import netCDF4
import numpy as np
from ingest_runs import run_hour

from lightning_eda.store import database
from lightning_eda.testing.real_minute import FIRST_THREE


def table_rows(db: Path, sql: str, params=()):
    with database.connect(db, read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def test_real_hour_loads_counts_per_table(hour_2018, tmp_path):
    result = run_hour(tmp_path)
    assert result.success
    db = tmp_path / "glm.duckdb"
    files = table_rows(db, "SELECT source_file, status, n_flashes, n_groups, n_events FROM glm_file ORDER BY 1")
    assert [(f, s) for f, s, *_ in files] == [(name, "loaded") for name in sorted(FIRST_THREE)]
    assert {f: tuple(n) for f, _, *n in files} == FIRST_THREE
    for table, index in (("glm_flash", 0), ("glm_group", 1), ("glm_event", 2)):
        per_file = dict(table_rows(db, f"SELECT source_file, count(*) FROM {table} GROUP BY 1"))
        assert per_file == {name: counts[index] for name, counts in FIRST_THREE.items()}, table
    # the index.html beside the granules was never downloaded
    assert not list(tmp_path.rglob("index.html"))
    load_meta = result.asset_materializations_for_node("load")[0].metadata
    assert load_meta["flashes"].value == 853 and load_meta["events"].value == 59797


def test_loaded_values_equal_an_independent_netcdf4_read(hour_2018, tmp_path, glm_dir):
    assert run_hour(tmp_path).success
    db = tmp_path / "glm.duckdb"
    for name in FIRST_THREE:
        with netCDF4.Dataset(glm_dir / name) as ds:  # netCDF4's own mask-and-scale: right for lat, lon and energy
            flash_lat = np.asarray(ds["flash_lat"][:], dtype=np.float64)
            flash_lon = np.asarray(ds["flash_lon"][:], dtype=np.float64)
            flash_energy = np.asarray(ds["flash_energy"][:], dtype=np.float64)
            flash_id = np.asarray(ds["flash_id"][:]).astype(np.int64)
            event_lat = np.asarray(ds["event_lat"][:], dtype=np.float64)
            event_energy = np.asarray(ds["event_energy"][:], dtype=np.float64)
            event_id = np.asarray(ds["event_id"][:]).astype(np.int64)
        rows = table_rows(
            db, "SELECT flash_id, lat, lon, energy FROM glm_flash WHERE source_file = ? ORDER BY flash_id", [name]
        )
        got = np.array(rows, dtype=np.float64)
        order = np.argsort(flash_id)
        np.testing.assert_array_equal(got[:, 0], flash_id[order])
        np.testing.assert_allclose(got[:, 1], flash_lat[order], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got[:, 2], flash_lon[order], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got[:, 3], flash_energy[order], rtol=1e-6, atol=1e-21)
        rows = table_rows(
            db, "SELECT event_id, lat, energy FROM glm_event WHERE source_file = ? ORDER BY event_id", [name]
        )
        got = np.array(rows, dtype=np.float64)
        order = np.argsort(event_id)
        np.testing.assert_array_equal(got[:, 0], event_id[order])
        np.testing.assert_allclose(got[:, 1], event_lat[order], rtol=0, atol=1e-4)
        np.testing.assert_allclose(got[:, 2], event_energy[order], rtol=1e-6, atol=1e-21)


def snapshot(db: Path) -> dict:
    tables = {}
    for table in ("glm_flash", "glm_group", "glm_event"):
        tables[table] = table_rows(db, f"SELECT * FROM {table} ORDER BY ALL")
    tables["glm_file"] = table_rows(db, "SELECT * EXCLUDE (loaded_at) FROM glm_file ORDER BY ALL")
    return tables


def test_second_run_changes_nothing(hour_2018, tmp_path):
    assert run_hour(tmp_path).success
    first = snapshot(tmp_path / "glm.duckdb")
    second_result = run_hour(tmp_path)
    assert second_result.success
    assert snapshot(tmp_path / "glm.duckdb") == first
    extract_meta = second_result.asset_materializations_for_node("extract")[0].metadata
    assert extract_meta["downloaded"].value == 0 and extract_meta["already_loaded"].value == 3


def test_times_are_utc_and_within_the_granule_span(hour_2018, tmp_path):
    assert run_hour(tmp_path).success
    rows = table_rows(
        tmp_path / "glm.duckdb",
        """SELECT min(date_diff('millisecond', f.time_start, fl.time_start)),
                  max(date_diff('millisecond', f.time_end, fl.time_end))
           FROM glm_flash fl JOIN glm_file f USING (source_file)""",
    )
    earliest_ms, latest_ms = rows[0]
    assert -2500 <= earliest_ms < 0  # some flashes start just before their granule (docs/glm_format.md)
    assert latest_ms <= 500


def test_parallel_transform_equals_the_sequential_one(tmp_path):
    """Several worker processes decode the same records, in the same order, as one process; a bad file stays local."""
    from datetime import timedelta

    from lightning_eda.ingest.decoding import transform_granules
    from lightning_eda.store.parquet_store import read_files, table_files
    from lightning_eda.testing.lcfa_factory import lcfa_name, sample_tables, write_lcfa

    raw = tmp_path / "raw"
    raw.mkdir()
    files = []
    for slot in range(7):
        start = datetime(2024, 3, 5, 1, 5) + timedelta(seconds=20 * slot)
        files.append(write_lcfa(raw / lcfa_name("G16", start), start=start, **sample_tables()))
    files[3].write_bytes(b"<html><body>503 Service Unavailable</body></html>")
    folders = {workers: tmp_path / f"parts{workers}" for workers in (1, 2)}
    for folder in folders.values():
        folder.mkdir()
    sequential = transform_granules(files, folders[1], tmp_path / "csv1", workers=1)
    parallel = transform_granules(files, folders[2], tmp_path / "csv2", workers=2)

    def comparable(records):
        return [(r.source_file, r.status, r.n_flashes, r.n_groups, r.n_events, r.time_start) for r in records]

    assert comparable(parallel) == comparable(sequential)
    assert [r.status for r in parallel] == ["loaded"] * 3 + ["failed"] + ["loaded"] * 3
    assert len(list(folders[2].glob("glm_event-*.parquet"))) > 1  # each decoder process wrote its own part
    for table in ("glm_flash", "glm_group", "glm_event"):
        one, two = (read_files(table_files(folders[w], table), table) for w in (1, 2))
        assert one.num_rows == 6 * {"glm_flash": 2, "glm_group": 3, "glm_event": 5}[table]
        assert one.to_pylist() == two.to_pylist(), table
    for one, two in zip(sequential, parallel, strict=True):
        for kind in one.csv:  # the CSVs asked for (LIGHTNING_EDA_CSV=1) are the same bytes too
            assert Path(one.csv[kind]).read_bytes() == Path(two.csv[kind]).read_bytes()


def test_a_granule_withdrawn_from_the_archive_is_not_reloaded(s3, tmp_path):
    """Transform decodes what the last extract listed, not every file an earlier run left in the raw folder."""
    from datetime import timedelta

    from lightning_eda.testing.lcfa_factory import lcfa_name, sample_tables, write_lcfa

    bucket = "noaa-goes16"
    made = tmp_path / "made"
    made.mkdir()
    keys = []
    for slot in range(3):
        start = datetime(2024, 3, 6, 7, 1) + timedelta(seconds=20 * slot)
        keys.append(s3.put_granule(bucket, write_lcfa(made / lcfa_name("G16", start), start=start, **sample_tables())))
    key = "2024-03-06-07:00"
    assert run_hour(tmp_path / "data", key, bucket).success
    s3.admin.delete_object(Bucket=bucket, Key=keys[1])
    assert run_hour(tmp_path / "data", key, bucket).success
    names = [r[0] for r in table_rows(tmp_path / "data" / "glm.duckdb", "SELECT source_file FROM glm_file ORDER BY 1")]
    assert names == [keys[0].rsplit("/", 1)[1], keys[2].rsplit("/", 1)[1]]


def test_endpoint_credentials_are_never_shown():
    from lightning_eda.ingest.archive import _without_userinfo

    assert _without_userinfo("https://user:secret@mirror.example:9000/") == "https://mirror.example:9000/"
    assert _without_userinfo("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def test_replaying_a_moment_fetches_only_granules_ended_by_then_and_keeps_those_already_loaded(real_granules, tmp_path):
    """``ended_by`` (``--recent`` at a replayed LIGHTNING_EDA_NOW) leaves later granules out as unpublished, except
    those the store holds: a replay inside an hour loaded whole must not shrink it."""
    from lightning_eda.ingest.archive import LocalArchive, extract_hour
    from lightning_eda.testing.real_minute import BUCKET, HOUR_2018

    mirror = tmp_path / "mirror" / BUCKET / "GLM-L2-LCFA" / "2018" / "183" / "04"
    mirror.mkdir(parents=True)
    names = sorted(FIRST_THREE)
    for path in real_granules:
        if path.name in FIRST_THREE:
            (mirror / path.name).write_bytes(path.read_bytes())
    archive = LocalArchive(tmp_path / "mirror", BUCKET, "GLM-L2-LCFA")
    at_33_20 = datetime(2018, 7, 2, 4, 33, 20)  # the first granule ends 04:33:20, the others at 04:33:40 and 04:34:00
    early = extract_hour(archive, HOUR_2018, tmp_path / "raw", ended_by=at_33_20)
    assert early.listed_names == names[:1] and [p.name for p in early.files] == names[:1]
    last = names[2]
    held = {last: (mirror / last).stat().st_size}  # the store holds the last one already
    replay = extract_hour(archive, HOUR_2018, tmp_path / "raw", ended_by=at_33_20, skip=held)
    assert sorted(replay.listed_names) == [names[0], last] and replay.already_loaded == [last]
