"""The ``ingestor`` group: extract → transform → load, one UTC hour per partition."""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from lightning_eda.goes.layout import hour_prefix
from lightning_eda.ingest import hourly
from lightning_eda.ingest.archive import ArchiveUnreachable, extract_hour
from lightning_eda.orchestration.constants import DUCKDB_POOL, INGESTOR
from lightning_eda.orchestration.metadata import markdown_table
from lightning_eda.orchestration.partitions import hourly_partitions
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.settings import ConfigError
from lightning_eda.store import database
from lightning_eda.utc import naive_utc


def _hour_paths(context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    """The partition's hour and folders, or a Failure naming the setting that makes them unsafe."""
    try:
        return data.hour_paths(archive, naive_utc(context.partition_time_window.start))
    except ConfigError as exc:
        raise Failure(description=str(exc)) from None


@asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    kinds={"s3", "python"},
    description="Download the hour's GLM LCFA granules (180 × 20 s) from S3 into the data folder.",
)
def extract(context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    paths = _hour_paths(context, archive, data)
    try:
        source = archive.archive()
        report = extract_hour(source, paths.hour, paths.raw_root, max_workers=archive.max_workers)
    except (ConfigError, ArchiveUnreachable) as exc:
        raise Failure(description=str(exc)) from None
    if report.listed == 0:
        raise Failure(
            description=f"no granules under {source.description}/{hour_prefix(archive.product, paths.hour)} "
            f"(the hour may not be published yet, or the bucket has no data for it)"
        )
    hourly.write_extract_report(paths, report)
    for error in report.failed.values():
        context.log.warning(f"download failed: {error}")
    if not report.files:
        raise Failure(description=f"every one of the {report.listed} granules failed to download from {source.description}")
    return MaterializeResult(
        metadata={
            "source": source.description,
            "granules_listed": report.listed,
            "downloaded": len(report.downloaded),
            "already_present": len(report.already_present),
            "download_failures": len(report.failed),
            "bytes_downloaded": report.bytes_downloaded,
            "raw_dir": MetadataValue.path(str(paths.raw_dir)),
        }
    )


@asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    deps=[extract],
    kinds={"netcdf", "csv"},
    description="Decode each granule into flash, group and event time/geo series CSVs; bad granules are recorded.",
)
def transform(context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    paths = _hour_paths(context, archive, data)
    extracted = hourly.read_extract_report(paths)
    raw_files = hourly.granules_to_transform(paths, extracted)
    if not raw_files:
        raise Failure(description=f"no granules in {paths.raw_dir}: materialize `extract` for this hour first")
    records = hourly.transform_hour(raw_files, paths, extracted.get("failed", {}))
    good = [r for r in records if r.status == "loaded"]
    bad = [r for r in records if r.status == "failed"]
    for record in bad:
        context.log.warning(f"granule {record.source_file} failed: {record.error}")
    if not good:
        raise Failure(description=f"all {len(records)} granules of {paths.hour:%Y-%m-%d %H}:00 UTC failed to decode")
    return MaterializeResult(
        metadata={
            "granules": len(good),
            "failed_granules": len(bad),
            "failures": markdown_table([(r.source_file, r.error) for r in bad], ["granule", "error"]) if bad else "none",
            "flashes": sum(r.n_flashes for r in good),
            "groups": sum(r.n_groups for r in good),
            "events": sum(r.n_events for r in good),
            "csv_dir": MetadataValue.path(str(paths.csv_dir)),
        }
    )


@asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    deps=[transform],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    description="Replace the hour's rows in glm_file, glm_flash, glm_group and glm_event (one transaction).",
)
def load(context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    paths = _hour_paths(context, archive, data)
    records = hourly.read_manifest(paths.manifest)
    with data.get_connection() as con:
        counts = hourly.load_hour(con, records, bucket=archive.bucket, product=archive.product, hour=paths.hour)
        summary = database.hour_summary(con, bucket=archive.bucket, hour=paths.hour)
        preview = database.flash_preview(con, bucket=archive.bucket, hour=paths.hour)
    context.log.info(f"loaded {counts} for {paths.hour:%Y-%m-%d %H}:00 UTC into {data.database_path}")
    return MaterializeResult(
        metadata={
            "database": MetadataValue.path(str(data.database_path)),
            "granules_loaded": int(summary["loaded"]),
            "granules_failed": int(summary["failed"]),
            "flashes": counts["glm_flash"],
            "groups": counts["glm_group"],
            "events": counts["glm_event"],
            "time_start": str(summary["time_start"]),
            "time_end": str(summary["time_end"]),
            "preview": MetadataValue.md(preview.to_markdown(index=False)),
        }
    )
