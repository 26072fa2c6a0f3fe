"""Bad granules under an hour's prefix (truncated, empty, HTML, missing variables) are recorded as failed and the
good ones load; a granule republished broken loses its old rows."""

from __future__ import annotations

from datetime import timedelta

from dagster import DagsterInstance
from reliability_helpers import HOUR_2019, KEY_2019, files_by_status, meta, rows, rows_per_file, run, run_messages

from lightning_eda.cli import failure_message
from lightning_eda.testing import lcfa_factory
from lightning_eda.testing.real_minute import FIRST_THREE, KEY_2018


def test_bad_granules_are_recorded_as_failed_and_the_good_ones_load(bad_hour, s3, tmp_path):
    bucket, bad, good = bad_hour["bucket"], bad_hour["bad"], bad_hour["good"]
    instance = DagsterInstance.ephemeral()
    result = run(tmp_path, bucket, KEY_2018, instance=instance)
    assert result.success, failure_message(result)
    db = tmp_path / "glm.duckdb"

    status = files_by_status(db)
    assert set(status) == set(bad) | set(good)
    for name, why in bad.items():
        state, error = status[name]
        assert state == "failed", f"{why}: {name} should have failed"
        assert error and name in error, f"{why}: the error should name the file, got {error!r}"
    for name in good:
        assert status[name] == ("loaded", None), name
    # empty granules load as zero rows; no row of a failed granule reaches the tables
    assert rows_per_file(db) == {name: n for name, n in good.items() if n != (0, 0, 0)}
    n_columns = rows(db, "SELECT source_file, n_flashes, n_groups, n_events FROM glm_file WHERE status = 'loaded'")
    assert {name: tuple(n) for name, *n in n_columns} == good

    # the run says which granules failed: transform's metadata and log, load's metadata
    transform_meta, load_meta = meta(result, "transform"), meta(result, "load")
    assert transform_meta["failed_granules"] == len(bad) and transform_meta["granules"] == len(good)
    assert all(name in transform_meta["failures"] for name in bad)
    assert load_meta["granules_failed"] == len(bad) and load_meta["granules_loaded"] == len(good)
    messages = run_messages(instance, result)
    for name in bad:
        assert any(name in m and "failed" in m for m in messages), f"no log line names {name}"

    # a granule that loaded before and is now republished truncated: its old rows (and old CSVs) must not survive
    victim = next(iter(FIRST_THREE))
    s3.put_granule(bucket, bad_hour["real"][victim].read_bytes()[:5000], name=victim)
    try:
        again = run(tmp_path, bucket, KEY_2018)
        assert again.success, failure_message(again)
        assert files_by_status(db)[victim][0] == "failed"
        assert victim not in rows_per_file(db)
        assert set(rows_per_file(db)) == {n for n, c in good.items() if c != (0, 0, 0) and n != victim}
    finally:
        s3.put_granule(bucket, bad_hour["real"][victim])


def test_an_hour_where_every_granule_fails_to_decode_is_a_failed_run(s3, tmp_path):
    bucket = "rel-all-bad"
    for i, body in enumerate([b"", b"<html>Access Denied</html>", b"\x89HDF\r\n\x1a\n" + b"\0" * 100]):
        s3.put_granule(bucket, body, name=lcfa_factory.lcfa_name("G16", HOUR_2019 + timedelta(seconds=20 * i)))
    result = run(tmp_path, bucket, KEY_2019)
    assert not result.success
    message = failure_message(result)
    assert message.startswith("transform:") and "all 3 granules" in message and "failed to decode" in message
    assert not result.asset_materializations_for_node("load")
    db = tmp_path / "glm.duckdb"
    assert not db.exists() or not rows(db, "SELECT * FROM glm_file")


def test_an_hour_mixing_whole_and_fractional_second_times_loads(s3, tmp_path):
    # real granules end on a tenth of a second when they are short (docs/glm_format.md;
    # e.g. ..._e20210820634005_...)
    bucket = "rel-fractional"
    staging = tmp_path / "staging"
    staging.mkdir()
    names = []
    for start, seconds in ((HOUR_2019, 20.0), (HOUR_2019 + timedelta(seconds=20), 10.5)):
        name = lcfa_factory.lcfa_name("G16", start, seconds)
        path = lcfa_factory.write_lcfa(staging / name, start=start, seconds=seconds)
        s3.put_granule(bucket, path)
        names.append(name)
    result = run(tmp_path / "data", bucket, KEY_2019)
    assert result.success, failure_message(result)
    ends = rows(tmp_path / "data" / "glm.duckdb", "SELECT source_file, time_end FROM glm_file ORDER BY 1")
    assert ends == [(names[0], HOUR_2019 + timedelta(seconds=20)), (names[1], HOUR_2019 + timedelta(seconds=30.5))]
