"""Unattended runs: ingest each hour once NOAA has published it, revisit the hour before, re-cluster what was new."""

from datetime import timedelta

from dagster import (
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    run_status_sensor,
    schedule,
)

from lightning_eda.orchestration.constants import INGEST_MINUTE_OF_HOUR
from lightning_eda.orchestration.partitions import partition_key_for_hour
from lightning_eda.orchestration.run_config import cluster_run_config
from lightning_eda.settings import latest_complete_hour
from lightning_eda.utc import naive_utc

REVISIT_TAG = "lightning_eda/revisit"


def hours_to_ingest(tick) -> list[tuple[str, bool]]:
    """Partition keys a tick asks for: the hour that just ended, then the one before it (revisited).

    The revisit completes an hour whose granules were published late or failed to download: a late granule
    reaches the store at the next tick. A revisit of a complete hour with nothing new costs one listing.
    """
    just_ended = latest_complete_hour(naive_utc(tick))
    return [
        (partition_key_for_hour(just_ended), False),
        (partition_key_for_hour(just_ended - timedelta(hours=1)), True),
    ]


def build_automation(ingest_job, cluster_job):
    """The hourly ingest schedule (off until switched on) and the sensor that re-clusters each newly ingested hour."""

    @schedule(
        job=ingest_job,
        name="hourly_ingest",
        cron_schedule=f"{INGEST_MINUTE_OF_HOUR} * * * *",
        execution_timezone="UTC",
        description=f"At :{INGEST_MINUTE_OF_HOUR:02d} each hour, ingest the hour that just ended and revisit the one "
        "before it (late or missing granules).",
        default_status=DefaultScheduleStatus.STOPPED,
    )
    def hourly_ingest(context: ScheduleEvaluationContext):
        for key, revisit in hours_to_ingest(context.scheduled_execution_time):
            yield RunRequest(
                run_key=f"{key}-revisit" if revisit else key,
                partition_key=key,
                tags={REVISIT_TAG: "true"} if revisit else {},
            )

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        monitored_jobs=[ingest_job],
        request_job=cluster_job,
        name="cluster_after_ingest",
        description="When the schedule ingests a new hour, cluster that hour and redraw the plots.",
        default_status=DefaultSensorStatus.RUNNING,
    )
    def cluster_after_ingest(context):
        run = context.dagster_run
        key = run.tags.get("dagster/partition")
        if not key or run.tags.get("dagster/schedule_name") != "hourly_ingest":
            return SkipReason("only hours ingested by the hourly_ingest schedule are re-clustered automatically")
        if run.tags.get(REVISIT_TAG):
            return SkipReason(f"{key} was a revisit of an earlier hour; the plots follow the newest one")
        return RunRequest(
            run_key=f"cluster-{key}",
            run_config=cluster_run_config(key, hours=1),
            tags={"lightning_eda/window": key},
        )

    return hourly_ingest, cluster_after_ingest
