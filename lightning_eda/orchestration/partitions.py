"""Partitions: one per UTC hour, since GLM granules are listed and loaded an hour at a time."""

from __future__ import annotations

from datetime import datetime

from dagster import HourlyPartitionsDefinition

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"

# GOES-16's GLM archive begins in 2017; later satellites simply have no granules for the early hours.
hourly_partitions = HourlyPartitionsDefinition(start_date="2017-01-01-00:00", timezone="UTC", fmt=PARTITION_FORMAT)


def partition_key_for_hour(hour: datetime) -> str:
    return hour.strftime(PARTITION_FORMAT)


def hour_for_partition_key(key: str) -> datetime:
    return datetime.strptime(key, PARTITION_FORMAT)
