"""Freshness checks on the hourly ingest partitions: red (WARN) while the recent hours are missing, green once they
are materialized, evaluated as Dagster runs them, on a real (ephemeral) instance."""

from __future__ import annotations

from dagster import AssetMaterialization, AssetSelection, DagsterInstance, DefaultSensorStatus, materialize

from lightning_eda.definitions import defs, ingest_assets, ingest_freshness_checks
from lightning_eda.orchestration.freshness import FRESHNESS_DEADLINE_CRON, FRESHNESS_SENSOR
from lightning_eda.orchestration.partitions import hourly_partitions
from lightning_eda.orchestration.resources import build_resources

INGEST = {"extract", "transform", "load"}


def evaluate(instance, tmp_path) -> dict[str, bool]:
    """Run the freshness checks once, as the sensor's runs do; whether each ingest asset passed."""
    result = materialize(
        [*ingest_assets, *ingest_freshness_checks],
        selection=AssetSelection.checks(*ingest_freshness_checks),
        instance=instance,
        resources=build_resources(tmp_path / "data", bucket="noaa-goes16"),
    )
    return {check.asset_key.to_user_string(): check.passed for check in result.get_asset_check_evaluations()}


def test_every_ingest_asset_has_a_freshness_check_and_a_sensor_evaluates_them():
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert {(asset, "freshness_check") for asset in INGEST} <= checks
    sensor = defs.resolve_sensor_def(FRESHNESS_SENSOR)
    assert sensor.default_status == DefaultSensorStatus.STOPPED  # started with the schedule it watches
    assert FRESHNESS_DEADLINE_CRON == "50 * * * *"  # 30 minutes after hourly_ingest's tick


def test_a_stalled_schedule_fails_the_check_and_a_fresh_hour_passes_it(tmp_path):
    with DagsterInstance.ephemeral() as instance:
        assert evaluate(instance, tmp_path) == dict.fromkeys(INGEST, False)
        recent = hourly_partitions.get_partition_keys()[-3:]  # the hours the latest deadline can ask for
        for key in recent:
            for asset in INGEST:
                instance.report_runless_asset_event(AssetMaterialization(asset_key=asset, partition=key))
        assert evaluate(instance, tmp_path) == dict.fromkeys(INGEST, True)
