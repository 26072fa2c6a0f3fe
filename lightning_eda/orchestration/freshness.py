"""Freshness checks on the hourly ingest partitions, so a stalled schedule shows in the UI.

Dagster's time-partition freshness checks ask, at each tick of :data:`FRESHNESS_DEADLINE_CRON`, whether the hour
that ended before the tick has been materialized; the sensor evaluates them. The schedule ingests an hour at 20
minutes past the next one, so the deadline leaves it half an hour: a check that fails (WARN, never blocking) means
the schedule did not run, or its run failed, for that hour.
"""

from __future__ import annotations

import warnings

from dagster import DefaultSensorStatus, build_sensor_for_freshness_checks, build_time_partition_freshness_checks

FRESHNESS_DEADLINE_CRON = "50 * * * *"
"""Half an hour after ``hourly_ingest``'s tick at 20 past: time for its run to commit the hour."""

FRESHNESS_SENSOR = "ingest_freshness_checks"


def build_freshness(ingest_assets):
    """The freshness checks of the ingest assets and the sensor that evaluates them (stopped by default, like the
    schedule it watches: start both together)."""
    # Dagster 1.13 calls both "superseded" by FreshnessPolicy, which records no check result per evaluation; these
    # checks do, and show red on the asset itself. Their warning would print on every import of the definitions.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is superseded.*")
        checks = build_time_partition_freshness_checks(assets=ingest_assets, deadline_cron=FRESHNESS_DEADLINE_CRON)
        sensor = build_sensor_for_freshness_checks(
            freshness_checks=checks, name=FRESHNESS_SENSOR, default_status=DefaultSensorStatus.STOPPED
        )
    return checks, sensor
