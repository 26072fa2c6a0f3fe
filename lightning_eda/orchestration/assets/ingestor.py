"""The ``ingestor`` group: extract → transform → load, one UTC hour per partition."""


import json
from pathlib import Path

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from lightning_eda.ingest import hourly

from lightning_eda.store import database
from lightning_eda.ingest.archive import ArchiveUnreachable, extract_hour
from lightning_eda.orchestration.constants import DUCKDB_POOL, INGESTOR
from lightning_eda.goes.layout import is_granule_key, hour_prefix
from lightning_eda.orchestration.partitions import hourly_partitions, naive_utc
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.settings import ConfigError

EXTRACT_REPORT = "extract.json"


def _hour(context: AssetExecutionContext):
    return naive_utc(context.partition_time_window.start)


def _checked_hour_paths(archive: GlmArchiveResource, data: LightningDataResource, hour) -> hourly.HourPaths:
    """The hour's folders, or a Failure naming the setting that makes them unsafe."""
    try:
        return data.hour_paths(archive, hour)
    except ConfigError as exc:
        raise Failure(description=str(exc)) from None


@asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    kinds={"s3", "python"},
    description="Download the hour's GLM LCFA granules (180 × 20 s) from S3 into the data folder.",
)
def extract(context: AssetExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    hour = _hour(context)
    try:
        source = archive.archive()
        paths = data.hour_paths(archive, hour)
        report = extract_hour(source, hour, paths.raw_root, max_workers=archive.max_workers)
    except (ConfigError, ArchiveUnreachable) as exc:
        raise Failure(description=str(exc)) from None
    if report.listed == 0:
        raise Failure(
            description=f"no granules under {source.description}/{hour_prefix(archive.product, hour)} "
            f"(the hour may not be published yet, or the bucket has no data for it)"
        )
    paths.csv_dir.mkdir(parents=True, exist_ok=True)
    listed = sorted([*report.downloaded, *report.already_present, *report.failed])
    (paths.csv_dir / EXTRACT_REPORT).write_text(json.dumps({"listed": listed, "failed": report.failed}))
    for name, error in report.failed.items():
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
    hour = _hour(context)
    paths = _checked_hour_paths(archive, data, hour)
    extracted = _extract_report(paths.csv_dir / EXTRACT_REPORT)
    # Only what the last extract listed: a granule withdrawn from the archive since an earlier run is not reloaded.
    listed = set(extracted.get("listed", [])) if "listed" in extracted else None
    raw_files = [
        p
        for p in sorted(paths.raw_dir.glob("*.nc"))
        if is_granule_key(hour_prefix(archive.product, hour) + p.name, archive.product)
        and (listed is None or p.name in listed)
    ]
    if not raw_files:
        raise Failure(description=f"no granules in {paths.raw_dir}: materialize `extract` for this hour first")
    records = hourly.transform_hour(raw_files, paths, extracted.get("failed", {}))
    good = [r for r in records if r.status == "loaded"]
    bad = [r for r in records if r.status == "failed"]
    for record in bad:
        context.log.warning(f"granule {record.source_file} failed: {record.error}")
    if not good:
        raise Failure(description=f"all {len(records)} granules of {hour:%Y-%m-%d %H}:00 UTC failed to decode")
    return MaterializeResult(
        metadata={
            "granules": len(good),
            "failed_granules": len(bad),
            "failures": MetadataValue.md(_failure_table(bad)) if bad else "none",
            "flashes": sum(r.n_flashes for r in good),
            "groups": sum(r.n_groups for r in good),
            "events": sum(r.n_events for r in good),
            "csv_dir": MetadataValue.path(str(paths.csv_dir)),
        }
    )


def _extract_report(path: Path) -> dict:
    """What the hour's last extract listed and failed to fetch (empty before any extract ran)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _failure_table(records) -> str:
    lines = ["| granule | error |", "|---|---|"]
    lines += [f"| {r.source_file} | {str(r.error).replace('|', '/')[:200]} |" for r in records]
    return "\n".join(lines)


@asset(
    group_name=INGESTOR,
    partitions_def=hourly_partitions,
    deps=[transform],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    description="Replace the hour's rows in glm_file, glm_flash, glm_group and glm_event (one transaction).",
)
def load(
    context: AssetExecutionContext,
    archive: GlmArchiveResource,
    data: LightningDataResource,
    duckdb: DuckDBResource,
):
    hour = _hour(context)
    paths = _checked_hour_paths(archive, data, hour)
    records = hourly.read_manifest(paths.manifest)
    data.root.mkdir(parents=True, exist_ok=True)
    with duckdb.get_connection() as con:
        counts = hourly.load_hour(con, records, bucket=archive.bucket, product=archive.product, hour=hour)
        summary = database.hour_summary(con, bucket=archive.bucket, hour=hour)
        preview = con.execute(
            "SELECT source_file, flash_id, time_start, lat, lon, energy, quality_flag FROM glm_flash "
            "WHERE source_file IN (SELECT source_file FROM glm_file WHERE bucket = ? AND hour = ?) "
            "ORDER BY time_start LIMIT 10",
            [archive.bucket, hour],
        ).df()
    context.log.info(f"loaded {counts} for {hour:%Y-%m-%d %H}:00 UTC into {data.database_path}")
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
