"""A backfill's run of several hours (BackfillPolicy.multi_run): each hour commits on its own, a failed hour fails
alone, and running the batch again completes it without loading anything twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from ingest_runs import resources_for
from reliability_helpers import HOUR_2019, SAMPLE_COUNTS, rows, rows_per_file, synthetic

from lightning_eda import settings
from lightning_eda.definitions import ingest_assets, ingest_checks
from lightning_eda.goes.layout import parse_granule_name
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.partitions import partition_key_for_hour

HOURS = [HOUR_2019 + timedelta(hours=h) for h in range(4)]
KEYS = [partition_key_for_hour(h) for h in HOURS]
BAD = KEYS[2]
GRANULES_PER_HOUR = 2
RANGE_TAGS = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}


def run_batch(data_dir, bucket, instance):
    """The run a backfill launches for a batch of the four hours (the same tags), in process."""
    return materialize(
        [*ingest_assets, *ingest_checks],
        resources=resources_for(data_dir, bucket),
        instance=instance,
        tags=RANGE_TAGS,
        raise_on_error=False,
    )


def materialized(instance, asset) -> set[str]:
    return set(instance.get_materialized_partitions(AssetKey(asset)))


def metadata_by_partition(result, node: str) -> dict[str, dict]:
    return {
        m.partition: {k: v.value for k, v in m.metadata.items()} for m in result.asset_materializations_for_node(node)
    }


@pytest.fixture
def batch_hours(s3, tmp_path):
    """Four hours of small granules; every granule of the third hour is not a granule at all (an HTML error page, an
    empty file), so its transform fails."""
    bucket = "batch-hours"
    good = {}
    for hour, key in zip(HOURS, KEYS, strict=True):
        for i in range(GRANULES_PER_HOUR):
            start = hour + timedelta(seconds=20 * i)
            name, body = synthetic(tmp_path / "granules", start)
            good[name] = body
            if key == BAD:
                body = [b"<html>Access Denied</html>", b""][i]
            s3.put_granule(bucket, body, name=name)
    return bucket, good


def test_a_batch_commits_each_hour_alone_and_a_rerun_completes_the_failed_one(s3, batch_hours, tmp_path):
    bucket, good = batch_hours
    data_dir = tmp_path / "data"
    db = data_dir / "glm.duckdb"
    instance = DagsterInstance.ephemeral()

    first = run_batch(data_dir, bucket, instance)
    assert not first.success
    others = set(KEYS) - {BAD}
    # the other hours are committed, and each shows as its own materialization of load; the failed one does not
    assert materialized(instance, "load") == others
    assert {m.partition for m in first.asset_materializations_for_node("load")} == others
    loaded_hours = {str(h)[:13] for (h,) in rows(db, "SELECT DISTINCT hour FROM glm_file")}
    assert loaded_hours == {f"{h:%Y-%m-%d %H}" for h in HOURS if partition_key_for_hour(h) != BAD}
    failure = next(e for e in first.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data.error
    assert BAD in failure.message and "1 of 4 hours failed" in failure.message and "transform:" in failure.message
    # transform must hand its output on for the other hours, so Dagster records its failed hour too: with the reason
    assert "all 2 granules" in metadata_by_partition(first, "transform")[BAD]["failed"]
    # the daemon's retry starts from extract: the failed hour may have failed there
    assert instance.get_run_by_id(first.run_id).tags["dagster/retry_strategy"] == "ALL_STEPS"

    # NOAA republishes the hour; the batch runs again (what that retry runs) and completes it
    for name, body in good.items():
        if partition_key_for_hour(parse_granule_name(name).start) == BAD:
            s3.put_granule(bucket, body, name=name)
    second = run_batch(data_dir, bucket, instance)
    assert second.success
    assert materialized(instance, "load") == set(KEYS)
    transformed = metadata_by_partition(second, "transform")
    assert transformed[BAD]["granules"] == GRANULES_PER_HOUR
    for key in others:  # committed hours are found unchanged: nothing decoded again
        assert transformed[key]["granules"] == 0 and transformed[key]["kept_from_store"] == GRANULES_PER_HOUR
    # every granule once, with its rows, and nothing else
    assert rows_per_file(db) == {name: SAMPLE_COUNTS for name in good}
    assert rows(db, "SELECT count(*), count(DISTINCT source_file) FROM glm_file") == [(len(good), len(good))]
    # the checks ran over the batch's hours
    checks = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
    assert checks["files_intact"] and checks["no_duplicate_keys"] and checks["row_counts_match_glm_file"]
    instance.dispose()


def test_a_batch_where_every_hour_fails_fails_at_extract(s3, tmp_path):
    s3.create_bucket("batch-empty")  # no hour published
    result = run_batch(tmp_path / "data", "batch-empty", DagsterInstance.ephemeral())
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "extract"
    assert "every hour of the batch failed" in failure.step_failure_data.error.message
    assert not result.asset_materializations_for_node("load")


def test_the_ingest_assets_share_one_backfill_policy_from_the_environment(monkeypatch):
    assert {a.backfill_policy.max_partitions_per_run for a in (extract, transform, load)} == {
        settings.DEFAULT_HOURS_PER_RUN
    }
    monkeypatch.setenv(settings.HOURS_PER_RUN_VARIABLE, "12")
    assert settings.hours_per_run() == 12
    for bad in ("0", "-1", "six", "169"):
        monkeypatch.setenv(settings.HOURS_PER_RUN_VARIABLE, bad)
        with pytest.raises(settings.ConfigError, match=settings.HOURS_PER_RUN_VARIABLE):
            settings.hours_per_run()


def test_a_terminal_launch_cuts_the_hours_into_consecutive_batches():
    """`lightning-eda backfill --deployment` queues one run per batch: at most N hours, never across a gap."""
    from lightning_eda.orchestration.remote_backfill import hour_batches

    day = [HOUR_2019 + timedelta(hours=h) for h in range(14)]
    assert [str(b) for b in hour_batches(day, 6)] == [
        f"{KEYS[0]}..{partition_key_for_hour(day[5])}",
        f"{partition_key_for_hour(day[6])}..{partition_key_for_hour(day[11])}",
        f"{partition_key_for_hour(day[12])}..{partition_key_for_hour(day[13])}",
    ]
    gappy = [day[0], day[1], day[2], day[5], day[6]]  # two hours missing: the batch must not span them
    batches = hour_batches(list(reversed(gappy)), 2)
    assert [(b.first, b.last) for b in batches] == [(day[0], day[1]), (day[2], day[2]), (day[5], day[6])]
    assert hour_batches([], 6) == []
