"""The hourly schedule, the sensor that re-clusters each scheduled hour and the ingest's automation condition,
evaluated as the daemon evaluates them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
    evaluate_automation_conditions,
    materialize,
)
from dagster._core.definitions.observe import observe
from ingest_runs import resources_for

from lightning_eda.definitions import clustering_assets, defs, ingest_assets
from lightning_eda.orchestration.assets.archive import glm_archive
from lightning_eda.orchestration.automation import INGEST_AUTOMATION_SENSOR
from lightning_eda.orchestration.constants import ARCHIVE, INGESTOR
from lightning_eda.orchestration.schedules import REVISIT_TAG
from lightning_eda.store import database
from lightning_eda.testing.real_minute import FIRST_THREE, KEY_2018, serve_2018_minute


@pytest.mark.parametrize(
    "tick, partition",
    [
        (datetime(2024, 3, 5, 13, 20, tzinfo=timezone.utc), "2024-03-05-12:00"),
        (datetime(2025, 1, 1, 0, 20, tzinfo=timezone.utc), "2024-12-31-23:00"),  # across a year boundary
    ],
)
def test_the_schedule_ingests_the_hour_that_just_ended_and_revisits_the_one_before(tick, partition):
    schedule = defs.resolve_schedule_def("hourly_ingest")
    assert schedule.cron_schedule == "20 * * * *"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED  # it downloads every hour: opt in
    new, revisit = schedule.evaluate_tick(
        build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    ).run_requests
    assert new.partition_key == partition and new.run_key == partition and REVISIT_TAG not in new.tags
    before = (datetime.strptime(partition, "%Y-%m-%d-%H:%M") - timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M")
    assert revisit.partition_key == before and revisit.tags[REVISIT_TAG] == "true"
    assert revisit.run_key != before  # the daemon runs a run key once: the revisit must not collide with the first run
    assert schedule.job_name == "ingest_hour"


def test_the_sensor_is_on_and_requests_the_clustering_job():
    sensor = defs.resolve_sensor_def("cluster_after_ingest")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.job_name == "cluster_window"


def _sensor_output(instance, result):
    sensor = defs.resolve_sensor_def("cluster_after_ingest")
    context = build_run_status_sensor_context(
        sensor_name="cluster_after_ingest",
        dagster_event=result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    )
    return sensor(context)


def test_a_scheduled_hour_is_clustered_with_the_config_the_sensor_requests(scheduled_hour):
    data_dir, instance, result = scheduled_hour
    request = _sensor_output(instance, result)
    assert isinstance(request, RunRequest)
    assert request.run_key == f"cluster-{KEY_2018}"  # one clustering per hour, however often the sensor looks
    config = request.run_config["ops"]["preprocessor"]["config"]
    assert config["window_start"] == KEY_2018 and config["window_hours"] == 1  # the partition key, passed as is
    assert not config.get("time_weight_km_per_min")  # an hour clustered in space, as by hand
    fast = {
        "elbow_evaluator": {"config": {"ks": [1, 2, 3, 4], "n_init": 2}},
        "silhouette_evaluator": {"config": {"ks": [2, 3, 4], "n_init": 2}},
        "kmeans_cluster": {"config": {"n_init": 2}},
    }
    run_config = {"ops": {**request.run_config["ops"], **fast}}
    clustered = materialize(clustering_assets, resources=resources_for(data_dir), run_config=run_config)
    assert clustered.success
    with database.connect(data_dir / "glm.duckdb", read_only=True) as con:
        window = con.execute("SELECT window_start, window_end, n_features FROM feature_window").fetchone()
    assert window == (datetime(2018, 7, 2, 4), datetime(2018, 7, 2, 5), 853)


def test_hours_loaded_by_hand_or_backfill_are_not_reclustered(s3, real_granules, tmp_path):
    serve_2018_minute(s3, real_granules)
    instance = DagsterInstance.ephemeral()
    result = materialize(ingest_assets, partition_key=KEY_2018, resources=resources_for(tmp_path), instance=instance)
    assert result.success
    assert isinstance(_sensor_output(instance, result), SkipReason)


def test_a_revisited_hour_is_not_reclustered(s3, real_granules, tmp_path):
    """The plots follow the newest hour: the schedule's revisit of the hour before does not redraw them."""
    serve_2018_minute(s3, real_granules)
    instance = DagsterInstance.ephemeral()
    tags = {"dagster/schedule_name": "hourly_ingest", REVISIT_TAG: "true"}
    result = materialize(
        ingest_assets, partition_key=KEY_2018, resources=resources_for(tmp_path), instance=instance, tags=tags
    )
    assert result.success
    assert isinstance(_sensor_output(instance, result), SkipReason)


def _evaluate(instance, when: datetime, cursor=None):
    return evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=AssetSelection.groups(ARCHIVE, INGESTOR, include_sources=True),
        evaluation_time=when,
        cursor=cursor,
    )


AUTOMATION_BUCKET = "automation-tests"  # its own bucket: the 2018 minute is published there a granule late


def _at(hour: int, minute: int) -> datetime:
    return datetime(2018, 7, 2, hour, minute, tzinfo=timezone.utc)


INGEST_KEYS = ("extract", "transform", "load")


def _requested(result) -> dict[str, set]:
    requested = {key: result.get_requested_partitions(AssetKey(key)) for key in ("glm_archive", *INGEST_KEYS)}
    return {key: partitions for key, partitions in requested.items() if partitions}


def test_the_automation_observes_the_archive_and_ingests_each_hour_the_store_lacks(s3, real_granules, tmp_path):
    """The hour that just ended is observed and ingested at :20; an hour held whole is not run again; a granule
    published late brings its hour back at the next tick; once per tick."""
    sensor = defs.resolve_sensor_def(INGEST_AUTOMATION_SENSOR)
    assert sensor.default_status == DefaultSensorStatus.STOPPED  # like the schedule: it downloads every hour, opt in
    granules = {path.name: path for path in real_granules if path.name in FIRST_THREE}
    first, second, late = sorted(granules)
    for name in (first, second):
        s3.put_granule(AUTOMATION_BUCKET, granules[name])
    resources = resources_for(tmp_path, AUTOMATION_BUCKET)
    instance = DagsterInstance.ephemeral()
    next_hour = "2018-07-02-05:00"

    before = _evaluate(instance, _at(5, 10))
    assert before.total_requested == 0  # the tick at 05:20 has not passed
    tick = _evaluate(instance, _at(5, 21), before.cursor)
    assert _requested(tick) == {"glm_archive": {KEY_2018}}  # the observation first: the ingest waits for it
    assert observe([glm_archive], partition_key=KEY_2018, resources=resources, instance=instance).success
    ingest = _evaluate(instance, _at(5, 22), tick.cursor)
    assert _requested(ingest) == {asset: {KEY_2018} for asset in INGEST_KEYS}  # in one run
    assert materialize(ingest_assets, partition_key=KEY_2018, resources=resources, instance=instance).success
    assert _evaluate(instance, _at(5, 40), ingest.cursor).total_requested == 0  # once per tick

    tick = _evaluate(instance, _at(6, 21), ingest.cursor)
    assert _requested(tick) == {"glm_archive": {next_hour}}
    assert observe([glm_archive], partition_key=next_hour, resources=resources, instance=instance).success
    quiet = _evaluate(instance, _at(6, 22), tick.cursor)
    assert quiet.total_requested == 0  # 04:00 is held whole, 05:00 has no granule: nothing to run

    s3.put_granule(AUTOMATION_BUCKET, granules[late])  # published late
    tick = _evaluate(instance, _at(7, 21), quiet.cursor)
    assert observe([glm_archive], partition_key="2018-07-02-06:00", resources=resources, instance=instance).success
    revisit = _evaluate(instance, _at(7, 22), tick.cursor)
    assert _requested(revisit) == {asset: {KEY_2018} for asset in INGEST_KEYS}
    assert materialize(ingest_assets, partition_key=KEY_2018, resources=resources, instance=instance).success
    with database.connect(tmp_path / "glm.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM glm_flash").fetchone()[0] == 853  # the three granules, once each

    tick = _evaluate(instance, _at(8, 21), revisit.cursor)
    assert observe([glm_archive], partition_key="2018-07-02-07:00", resources=resources, instance=instance).success
    assert _evaluate(instance, _at(8, 22), tick.cursor).total_requested == 0  # whole again: nothing more
    instance.dispose()
