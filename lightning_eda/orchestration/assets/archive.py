"""``glm_archive``: what NOAA's archive lists for the recent hours that the store does not hold yet.

An observable source asset, partitioned like the ingest: each observation lists the last few hours (one LIST each)
and records, for every hour where the archive holds a granule the store lacks (new, or republished with another
size), a data version naming those granules. ``extract`` depends on it, and its automation condition
(:mod:`lightning_eda.orchestration.automation`) runs an hour again when that version changes: a late granule, or one
whose download failed, brings its hour back; an hour the store holds whole records nothing and costs one LIST.
"""

from __future__ import annotations

import hashlib
import warnings
from datetime import timedelta

from dagster import DataVersion, DataVersionsByPartition, Failure, observable_source_asset

from lightning_eda.ingest import hourly
from lightning_eda.ingest.archive import ArchiveUnreachable
from lightning_eda.orchestration.automation import REVISIT_HOURS, archive_observation_condition
from lightning_eda.orchestration.constants import ARCHIVE
from lightning_eda.orchestration.partitions import hour_for_partition_key, hourly_partitions, partition_key_for_hour
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.settings import ConfigError


def observe_archive(context, archive: GlmArchiveResource, data: LightningDataResource) -> DataVersionsByPartition:
    """List the recent hours and version each one holding granules the store lacks."""
    if context.has_partition_key:
        latest = hour_for_partition_key(context.partition_key)
    else:  # observed from the UI without a partition: the hour that ended last
        latest = hour_for_partition_key(hourly_partitions.get_last_partition_key())
    versions = {}
    for hour in (latest - timedelta(hours=back) for back in range(REVISIT_HOURS)):
        try:
            paths = data.hour_paths(archive, hour)
            listing = archive.archive(hour).list_hour(hour)
        except (ConfigError, ArchiveUnreachable) as exc:
            raise Failure(description=str(exc)) from None
        gap = hourly.archive_gap(data.store, paths.key, listing)
        context.log.info(f"{hour:%Y-%m-%d %H}:00: {len(listing)} granules listed, {len(gap)} not in the store")
        if gap:
            versions[partition_key_for_hour(hour)] = DataVersion(hashlib.sha256("\n".join(gap).encode()).hexdigest())
    return DataVersionsByPartition(versions)


with warnings.catch_warnings():  # Dagster 1.13 calls observable source assets beta, on every import
    warnings.filterwarnings("ignore", message=".*observable_source_asset.*beta.*")
    glm_archive = observable_source_asset(
        name="glm_archive",
        group_name=ARCHIVE,
        partitions_def=hourly_partitions,
        automation_condition=archive_observation_condition(),
        description=f"NOAA's listing of the last {REVISIT_HOURS} hours, against the store: an hour's data version "
        "names the granules the archive lists and the store lacks (none recorded when it lacks nothing).",
    )(observe_archive)
