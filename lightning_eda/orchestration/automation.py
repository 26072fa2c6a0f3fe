"""Dagster-native automation of the ingest, offered beside the ``hourly_ingest`` schedule (off by default).

Each ingest asset carries :func:`ingest_condition`, Dagster's ``AutomationCondition.on_cron``: once the cron tick at
20 past the hour has passed, the hour that just ended (the latest hour partition) is requested, ``extract`` first and
``transform`` and ``load`` with it, in one run, once per tick. The sensor ``ingest_automation`` evaluates the
conditions; it is stopped until switched on, like the schedule. Use one or the other: the schedule also revisits the
hour before (late granules), which the condition does not; the condition shows in the UI why each hour was requested
or not (**Automation** → ``ingest_automation`` → an evaluation).
"""

from __future__ import annotations

from dagster import AutomationCondition, AutomationConditionSensorDefinition, DefaultSensorStatus

from lightning_eda.orchestration.constants import INGEST_MINUTE_OF_HOUR

INGEST_AUTOMATION_SENSOR = "ingest_automation"
INGEST_CRON = f"{INGEST_MINUTE_OF_HOUR} * * * *"


def ingest_condition() -> AutomationCondition:
    """Materialize the latest hour partition once after each tick of :data:`INGEST_CRON` (UTC), upstream first."""
    return AutomationCondition.on_cron(INGEST_CRON, "UTC")


def build_ingest_automation_sensor(ingest_assets) -> AutomationConditionSensorDefinition:
    """The sensor that evaluates the ingest assets' conditions: stopped by default (it downloads every hour)."""
    return AutomationConditionSensorDefinition(
        INGEST_AUTOMATION_SENSOR,
        target=ingest_assets,
        default_status=DefaultSensorStatus.STOPPED,
        emit_backfills=False,  # one run per hour, as the schedule launches it
        description=f"At :{INGEST_MINUTE_OF_HOUR:02d} each hour, ingest the hour that just ended (the ingest assets' "
        "AutomationCondition.on_cron); an alternative to the hourly_ingest schedule: turn on one of them.",
    )
