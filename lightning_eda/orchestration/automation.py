"""Dagster-native automation of the ingest, offered beside the ``hourly_ingest`` schedule (off by default).

Once the cron tick at 20 past the hour has passed, the sensor ``ingest_automation`` observes ``glm_archive`` (the
archive's listing of the last :data:`REVISIT_HOURS` hours against the store) and requests ``extract``, ``transform``
and ``load`` together for each of those hours whose observed data version changed: the hour that just ended (its
first observation), and an earlier one when the archive lists a granule the store lacks that it did not list before
(published late, or republished with another size), or when one failed to download and the archive still lists it.
An hour the store holds whole records no version and is not run again. The conditions show in the UI why each hour
was requested or not (**Automation** → ``ingest_automation`` → an evaluation). The sensor is stopped until switched
on, like the schedule: use one or the other (the schedule runs the hour before again at every tick, whatever the
archive holds).
"""

from __future__ import annotations

from datetime import timedelta

from dagster import AutomationCondition, AutomationConditionSensorDefinition, DefaultSensorStatus

from lightning_eda.orchestration.constants import INGEST_MINUTE_OF_HOUR

INGEST_AUTOMATION_SENSOR = "ingest_automation"
INGEST_CRON = f"{INGEST_MINUTE_OF_HOUR} * * * *"
REVISIT_HOURS = 3
"""The hours the archive's observation lists at each tick: the one that just ended and the two before it."""


def archive_observation_condition() -> AutomationCondition:
    """Observe the archive once per tick of :data:`INGEST_CRON` (UTC), for the latest hour partition (the observation
    lists the :data:`REVISIT_HOURS` hours up to it)."""
    return (
        AutomationCondition.in_latest_time_window()
        & AutomationCondition.cron_tick_passed(INGEST_CRON, "UTC")
        & ~AutomationCondition.in_progress()
    ).with_label(f"observe the archive at {INGEST_CRON}")


def ingest_condition() -> AutomationCondition:
    """``extract`` runs an hour of the last :data:`REVISIT_HOURS` when the archive's observed version of it changed."""
    return (
        AutomationCondition.in_latest_time_window(timedelta(hours=REVISIT_HOURS))
        & AutomationCondition.any_deps_updated()
        & ~AutomationCondition.in_progress()
    ).with_label("the archive lists granules the store lacks")


def with_upstream_condition() -> AutomationCondition:
    """``transform`` and ``load`` run an hour in the run that extracts it, never on their own."""
    return AutomationCondition.any_deps_match(AutomationCondition.will_be_requested()).with_label(
        "requested with the step before"
    )


def build_ingest_automation_sensor(targets) -> AutomationConditionSensorDefinition:
    """The sensor that evaluates the archive's and the ingest's conditions: stopped by default (it downloads every
    hour)."""
    return AutomationConditionSensorDefinition(
        INGEST_AUTOMATION_SENSOR,
        target=targets,
        default_status=DefaultSensorStatus.STOPPED,
        emit_backfills=False,  # one run per hour, as the schedule launches it
        description=f"At :{INGEST_MINUTE_OF_HOUR:02d} each hour, observe what NOAA's archive lists for the last "
        f"{REVISIT_HOURS} hours and ingest each hour holding granules the store lacks (the hour that just ended, and "
        "earlier ones that gained a granule); an alternative to the hourly_ingest schedule: turn on one of them.",
    )
