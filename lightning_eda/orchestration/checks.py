"""Asset checks: what a data engineer verifies before trusting the tables.

Each is one query in lightning_eda.store.quality.
"""

from collections.abc import Callable

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    PartitionKeyRange,
    asset_check,
    multi_asset_check,
)

from lightning_eda.orchestration.assets.clustering import kmeans_cluster
from lightning_eda.orchestration.assets.ingestor import load
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.constants import ANALYSIS_POOL
from lightning_eda.orchestration.metadata import markdown_table
from lightning_eda.orchestration.partitions import hour_for_partition_key, hourly_partitions
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.store import quality
from lightning_eda.store.parquet_store import HourKey
from lightning_eda.store.verify import heal_command, verify_hour, verify_store

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _none_counted(check_name: str, counts: dict[str, int], suffix: str = "", **options) -> AssetCheckResult:
    """Passes when every count is 0; each count is shown under its name (with ``suffix``)."""
    return AssetCheckResult(
        check_name=check_name,
        passed=sum(counts.values()) == 0,
        metadata={f"{name}{suffix}": n for name, n in counts.items()},
        **options,
    )


def coordinates_in_range(con) -> AssetCheckResult:
    return _none_counted("coordinates_in_range", quality.out_of_range_coordinates(con), "_bad")


def no_duplicate_keys(con) -> AssetCheckResult:
    return _none_counted("no_duplicate_keys", quality.duplicate_keys(con), "_duplicates")


def row_counts_match_glm_file(con) -> AssetCheckResult:
    mismatches = quality.row_count_mismatches(con)
    header = [
        "source_file",
        "status",
        "flashes expected",
        "found",
        "groups expected",
        "found",
        "events expected",
        "found",
    ]
    return AssetCheckResult(
        check_name="row_counts_match_glm_file",
        passed=not mismatches,
        metadata={"mismatched_granules": len(mismatches), "examples": markdown_table(mismatches[:10], header)},
    )


def flash_times_within_granule(con) -> AssetCheckResult:
    count, examples = quality.flashes_outside_granule(con)
    return AssetCheckResult(
        check_name="flash_times_within_granule",
        passed=count == 0,
        metadata={
            "flashes_outside": count,
            "examples": markdown_table(examples, ["source_file", "flash_id", "flash start", "granule start"]),
        },
    )


def parent_ids_consistent(con) -> AssetCheckResult:
    # Some real granules carry orphans (glmtools #77): worth a warning, not a reason to distrust the table.
    return _none_counted("parent_ids_consistent", quality.orphan_children(con), severity=AssetCheckSeverity.WARN)


def no_failed_granules(con) -> AssetCheckResult:
    failed = quality.failed_granules(con)
    return AssetCheckResult(
        check_name="no_failed_granules",
        passed=not failed,
        severity=AssetCheckSeverity.WARN,
        metadata={"failed_granules": len(failed), "failures": markdown_table(failed[:20], ["source_file", "error"])},
    )


LOAD_CHECKS = {
    coordinates_in_range: "Every latitude in [-90, 90] and longitude in [-180, 180), none missing.",
    no_duplicate_keys: "No duplicate (source_file, id) rows, and one glm_file row per granule.",
    row_counts_match_glm_file: (
        "Rows per granule in glm_flash/glm_group/glm_event equal glm_file's counts; failed granules have none."
    ),
    flash_times_within_granule: (
        f"Flash times lie within their granule's span, allowing starts up to {quality.EARLY_START_SECONDS:g} s early "
        "(flashes are written when they end)."
    ),
    parent_ids_consistent: "Every group's parent flash and every event's parent group exist in the same granule.",
    no_failed_granules: "No granule failed to download or decode.",
}


def files_intact(
    data: LightningDataResource, archive: GlmArchiveResource, hours: list[HourKey] | None
) -> AssetCheckResult:
    """The hours' files against their manifests (footers, sizes, checksums); without partitions (None), every hour's
    footers and sizes (``lightning-eda verify --deep`` compares every checksum)."""
    if hours is not None:
        damage = [d for hour in hours for d in verify_hour(data.store, hour, deep=True)]
    else:
        damage = [d for _, found in verify_store(data.store, archive.bucket, archive.product) for d in found]
    damaged = sorted({d.key.hour for d in damage})
    return AssetCheckResult(
        check_name="files_intact",
        passed=not damage,
        metadata={
            "damaged_files": len(damage),
            "damaged_hours": len(damaged),
            "damage": markdown_table(
                [(d.key.hour, d.file, d.problem) for d in damage[:20]], ["hour", "file", "problem"]
            ),
            "heal_with": heal_command(damaged, deep=hours is not None) if damaged else "nothing to heal",
        },
    )


def _not_checked(check: Callable, why: str) -> AssetCheckResult:
    return AssetCheckResult(check_name=check.__name__, passed=False, metadata={"not_checked": why})


FILES_INTACT_TEXT = (
    "Every Parquet file of the hour is as committed: present, footer readable, rows, size and checksum equal to the "
    "hour's manifest (a truncated or overwritten part, a flipped byte, a file added later)."
)
BLOCKING = {"files_intact", "no_duplicate_keys", "row_counts_match_glm_file"}
"""Checks whose failure means the hour's rows are wrong, not merely unusual: they stop the clustering in the same
run (Dagster's blocking checks), and the hour is re-decoded by its next run."""


# One step runs every check of `load` (each still shows on its own in the UI): a step per check would cost a
# process start each.
# In a partition's run the checks read that hour only (in a batch's run, its hours): checking the whole store after
# every hour would cost more and more as it grows (BENCHMARKS.md, section 8: 3 s after the first hour, 37 s after the
# ninth, with real granules).
# files_intact runs first: the queries of the others cannot read a damaged file, and are reported as not run.
@multi_asset_check(
    name="load_checks",
    specs=[AssetCheckSpec("files_intact", asset=load, description=FILES_INTACT_TEXT, blocking=True)]
    + [
        AssetCheckSpec(fn.__name__, asset=load, description=text, blocking=fn.__name__ in BLOCKING)
        for fn, text in LOAD_CHECKS.items()
    ],
)
def load_checks(context: AssetCheckExecutionContext, archive: GlmArchiveResource, data: LightningDataResource):
    hours = _checked_hours(context, archive, data)
    if hours is not None:
        first, last = hours[0], hours[-1]
        span = f"{first.hour:%Y-%m-%d %H:00}" + (f" .. {last.hour:%Y-%m-%d %H:00}" if len(hours) > 1 else "")
        context.log.info(f"checking the hour{'s' * (len(hours) > 1)} {span} of {first.bucket}/{first.product}")
    intact = files_intact(data, archive, hours)
    yield intact
    if not intact.passed:
        for check in LOAD_CHECKS:
            yield _not_checked(check, "damaged files (see files_intact): the hour cannot be read")
        return
    with data.get_connection(hours=hours) as con:
        for check in LOAD_CHECKS:
            yield check(con)


def _checked_hours(
    context: AssetCheckExecutionContext, archive: GlmArchiveResource, data: LightningDataResource
) -> list[HourKey] | None:
    """The hours of the run's partitions (one, or a batch's range), or None (the whole store) in a run without one."""
    tags = context.run.tags
    if tags.get(PARTITION_TAG):  # Dagster's partition tag, set on every partition's run
        keys = [tags[PARTITION_TAG]]
    elif tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):  # a batch of a backfill (BackfillPolicy.multi_run)
        keys = hourly_partitions.get_partition_keys_in_range(
            PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
        )
    else:
        return None
    return [data.hour_paths(archive, hour_for_partition_key(key)).key for key in keys]


def _judged(data: LightningDataResource, judge: Callable[..., tuple[bool, dict]]) -> AssetCheckResult:
    """The result of one of :mod:`lightning_eda.store.quality`'s judgements over the analysis tables."""
    with data.get_connection(hours=()) as con:  # no GLM hour: they are not read, and listing them all costs
        passed, facts = judge(con)
    return AssetCheckResult(passed=passed, metadata=facts)


@asset_check(
    pool=ANALYSIS_POOL,
    asset=preprocessor,
    description="Features are finite and z-scored (mean 0, standard deviation 1).",
)
def features_standardized(data: LightningDataResource) -> AssetCheckResult:
    return _judged(data, quality.feature_standardization)


@asset_check(
    pool=ANALYSIS_POOL,
    asset=kmeans_cluster,
    description="Every preprocessed flash has exactly one cluster, and cluster_summary's counts add up.",
)
def every_flash_clustered(data: LightningDataResource) -> AssetCheckResult:
    return _judged(data, quality.clustering_coverage)


all_checks = [load_checks, features_standardized, every_flash_clustered]
