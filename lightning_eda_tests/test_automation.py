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
from ingest_runs import resources_for

from lightning_eda.definitions import clustering_assets, defs, ingest_assets
from lightning_eda.orchestration.automation import INGEST_AUTOMATION_SENSOR
from lightning_eda.orchestration.constants import INGESTOR
from lightning_eda.orchestration.schedules import REVISIT_TAG
from lightning_eda.store import database
from lightning_eda.testing.real_minute import KEY_2018, serve_2018_minute


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
        asset_selection=AssetSelection.groups(INGESTOR),
        evaluation_time=when,
        cursor=cursor,
    )


def test_the_automation_condition_requests_the_hour_that_just_ended_once_per_tick():
    sensor = defs.resolve_sensor_def(INGEST_AUTOMATION_SENSOR)
    assert sensor.default_status == DefaultSensorStatus.STOPPED  # like the schedule: it downloads every hour, opt in
    instance = DagsterInstance.ephemeral()
    before = _evaluate(instance, datetime(2024, 3, 5, 13, 10, tzinfo=timezone.utc))
    assert before.total_requested == 0  # the tick at 13:20 has not passed
    tick = _evaluate(instance, datetime(2024, 3, 5, 13, 21, tzinfo=timezone.utc), before.cursor)
    for asset in ("extract", "transform", "load"):  # the three together, for the hour that ended at 13:00
        assert tick.get_requested_partitions(AssetKey(asset)) == {"2024-03-05-12:00"}
    after = _evaluate(instance, datetime(2024, 3, 5, 13, 40, tzinfo=timezone.utc), tick.cursor)
    assert after.total_requested == 0  # once per tick
    instance.dispose()
