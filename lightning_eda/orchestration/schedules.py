"""Unattended runs: ingest each hour once NOAA has published it, then refresh the clustering on it."""

from dagster import (
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SkipReason,
    build_schedule_from_partitioned_job,
    run_status_sensor,
)

from lightning_eda.orchestration.partitions import hour_for_partition_key
from lightning_eda.orchestration.run_config import cluster_run_config

# Granules appear 2–3 s after they end; 20 minutes past the hour leaves room for NOAA's occasional delays.
INGEST_MINUTE_OF_HOUR = 20


def build_automation(ingest_job, cluster_job):
    """The hourly ingest schedule (off until switched on) and the sensor that re-clusters each ingested hour."""
    schedule = build_schedule_from_partitioned_job(
        ingest_job,
        name="hourly_ingest",
        description=f"At :{INGEST_MINUTE_OF_HOUR:02d} each hour, ingest the hour that just ended.",
        minute_of_hour=INGEST_MINUTE_OF_HOUR,
        default_status=DefaultScheduleStatus.STOPPED,
    )

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        monitored_jobs=[ingest_job],
        request_job=cluster_job,
        name="cluster_after_ingest",
        description="When an hour is ingested by the schedule, cluster that hour and redraw the plots.",
        default_status=DefaultSensorStatus.RUNNING,
    )
    def cluster_after_ingest(context):
        run = context.dagster_run
        key = run.tags.get("dagster/partition")
        if not key or run.tags.get("dagster/schedule_name") != "hourly_ingest":
            return SkipReason("only hours ingested by the hourly_ingest schedule are re-clustered automatically")
        hour = hour_for_partition_key(key)
        return RunRequest(
            run_key=f"cluster-{key}",
            run_config=cluster_run_config(hour, hours=1),
            tags={"lightning_eda/window": key},
        )

    return schedule, cluster_after_ingest
