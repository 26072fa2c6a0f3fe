"""The ``ingestor`` group: extract → transform → load, one UTC hour per partition.

A backfill's run carries a batch of hours (:mod:`lightning_eda.orchestration.batches`): each asset runs its body once
per hour of the batch, and an hour's failure is that hour's alone.
"""

from dagster import AssetExecutionContext, Config, Failure, MetadataValue
from pydantic import Field

from lightning_eda.goes.layout import hour_prefix
from lightning_eda.ingest import hourly
from lightning_eda.ingest.archive import ArchiveUnreachable
from lightning_eda.ingest.hourly import HourPaths
from lightning_eda.orchestration.assets.archive import glm_archive
from lightning_eda.orchestration.automation import ingest_condition, with_upstream_condition
from lightning_eda.orchestration.batches import batched_asset, each_hour
from lightning_eda.orchestration.constants import INGESTOR
from lightning_eda.orchestration.metadata import markdown_table
from lightning_eda.orchestration.partitions import hourly_partitions
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.settings import ConfigError
from lightning_eda.store import catalog, database


@batched_asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    deps=[glm_archive],  # what the archive lists: its observation triggers the automation's revisits
    automation_condition=ingest_condition(),
    kinds={"s3", "python"},
    description="Download the hour's GLM LCFA granules (180 × 20 s) from S3 that the store does not hold yet.",
)
def extract(context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    yield from each_hour(context, archive, data, lambda paths: _extract(context, archive, data, paths), first=True)


def _extract(
    context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource, paths: HourPaths
) -> dict:
    try:
        source = archive.archive(paths.hour)
        report, damage = hourly.extract_needed(source, paths, data.store, max_workers=archive.max_workers)
    except (ConfigError, ArchiveUnreachable) as exc:
        raise Failure(description=str(exc)) from None
    for problem in damage:
        context.log.warning(f"damaged, the hour is decoded again: {problem}")
    if report.listed == 0:
        raise Failure(
            description=f"no granules under {source.description}/{hour_prefix(archive.product, paths.hour)} "
            f"(the hour may not be published yet, or the bucket has no data for it)"
        )
    for error in report.failed.values():
        context.log.warning(f"download failed (the granule stays missing; the next run retries it): {error}")
    if report.failed and not report.files and not report.already_loaded:
        raise Failure(
            description=f"every one of the {report.listed} granules failed to download from {source.description}"
        )
    return {
        "source": source.description,
        "granules_listed": report.listed,
        "already_loaded": len(report.already_loaded),
        "downloaded": len(report.downloaded),
        "already_present": len(report.already_present),
        "download_failures": len(report.failed),
        "damaged_files": len(damage),
        "bytes_downloaded": report.bytes_downloaded,
        "raw_dir": MetadataValue.path(str(paths.raw_dir)),
    }


class TransformConfig(Config):
    redecode: bool = Field(
        default=False, description="Decode every granule of the hour again, also those already loaded (--force)."
    )


@batched_asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    automation_condition=with_upstream_condition(),
    deps=[extract],
    kinds={"netcdf", "parquet"},
    description="Decode the granules the hour still needs into typed Arrow tables and stage the hour's next version.",
)
def transform(
    context: AssetExecutionContext, config: TransformConfig, archive: GlmArchiveResource, data: LightningDataResource
):
    yield from each_hour(context, archive, data, lambda paths: _transform(context, config, data, paths))


def _transform(
    context: AssetExecutionContext, config: TransformConfig, data: LightningDataResource, paths: HourPaths
) -> dict:
    if not paths.extract_report.is_file() and not hourly.raw_granules(paths) and not data.store.current(paths.key):
        raise Failure(description=f"no granules in {paths.raw_dir}: materialize `extract` for this hour first")
    result = hourly.transform_hour(paths, data.store, redecode=config.redecode, write_csv=data.write_csv)
    bad = [r for r in result.records if r.status == "failed"]
    missing = [r for r in result.records if r.status == "missing"]
    for record in bad:
        context.log.warning(f"granule {record.source_file} failed: {record.error}")
    decoded = result.count("loaded") + len(bad)
    if decoded and not result.count("loaded") and not result.kept:
        raise Failure(description=f"all {decoded} granules of {paths.hour:%Y-%m-%d %H}:00 UTC failed to decode")
    loaded = [r for r in result.records if r.status == "loaded"]
    return {
        "granules": len(loaded),
        "kept_from_store": result.kept,
        "failed_granules": len(bad),
        "missing_granules": len(missing),
        "failures": markdown_table([(r.source_file, r.error) for r in bad + missing], ["granule", "error"])
        if bad or missing
        else "none",
        "flashes": sum(r.n_flashes for r in loaded),
        "groups": sum(r.n_groups for r in loaded),
        "events": sum(r.n_events for r in loaded),
        "staged": MetadataValue.path(str(result.staged)) if result.staged else "nothing changed",
        "healed": markdown_table([(problem,) for problem in result.healed], ["damage replaced"])
        if result.healed
        else "nothing damaged",
    }


@batched_asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    automation_condition=with_upstream_condition(),
    deps=[transform],
    kinds={"parquet", "duckdb"},
    description="Commit the hour's staged version to the Parquet store in one rename (glm_file, glm_flash, glm_group, "
    "glm_event), then refresh glm.duckdb's views.",
)
def load(context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    yield from each_hour(context, archive, data, lambda paths: _load(context, data, paths), commits=True)


def _load(context: AssetExecutionContext, data: LightningDataResource, paths: HourPaths) -> dict:
    try:
        counts = hourly.load_hour(paths, data.store, keep_raw=data.keep_raw)
        status = data.refresh_database()
    except (FileNotFoundError, catalog.CatalogBusy) as exc:
        raise Failure(description=str(exc)) from None
    with data.get_connection(paths.key) as con:
        summary = database.hour_summary(con, bucket=paths.bucket, hour=paths.hour)
        preview = database.flash_preview(con, bucket=paths.bucket, hour=paths.hour)
    complete = summary["missing"] == 0
    if not complete:
        context.log.warning(f"{paths.hour:%Y-%m-%d %H}:00 UTC is incomplete: {database.incomplete_note(summary)}")
    context.log.info(f"committed {counts} for {paths.hour:%Y-%m-%d %H}:00 UTC; glm.duckdb {status}")
    return {
        "store": MetadataValue.path(str(data.store.hour_dir(paths.key))),
        "database": MetadataValue.path(str(data.database_path)),
        "database_status": str(status),
        "complete": complete,
        "granules_loaded": int(summary["loaded"]),
        "granules_failed": int(summary["failed"]),
        "granules_missing": int(summary["missing"]),
        "flashes": int(summary["flashes"]),
        "groups": int(summary["groups"]),
        "events": int(summary["events"]),
        "time_start": str(summary["time_start"]),
        "time_end": str(summary["time_end"]),
        "preview": MetadataValue.md(preview.to_markdown(index=False)),
    }
