"""Asset checks: what a data engineer verifies before trusting the tables. Each is one query in lightning_eda.quality."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check
from dagster_duckdb import DuckDBResource

from lightning_eda import quality
from lightning_eda.constants import DUCKDB_POOL
from lightning_eda.assets.clustering import kmeans_cluster, preprocessor
from lightning_eda.assets.ingestor import load


def _table(rows, header) -> MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


@asset_check(pool=DUCKDB_POOL, asset=load, description="Every latitude in [-90, 90] and longitude in [-180, 180), none missing.")
def coordinates_in_range(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        counts = quality.out_of_range_coordinates(con)
    return AssetCheckResult(passed=sum(counts.values()) == 0, metadata={f"{t}_bad": n for t, n in counts.items()})


@asset_check(pool=DUCKDB_POOL, asset=load, description="No duplicate (source_file, id) rows, and one glm_file row per granule.")
def no_duplicate_keys(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        counts = quality.duplicate_keys(con)
    return AssetCheckResult(passed=sum(counts.values()) == 0, metadata={f"{t}_duplicates": n for t, n in counts.items()})


@asset_check(pool=DUCKDB_POOL, asset=load,
    description="Rows per granule in glm_flash/glm_group/glm_event equal glm_file's counts; failed granules have none.",
)
def row_counts_match_glm_file(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        mismatches = quality.row_count_mismatches(con)
    header = ["source_file", "status", "flashes expected", "found", "groups expected", "found", "events expected", "found"]
    return AssetCheckResult(
        passed=not mismatches,
        metadata={"mismatched_granules": len(mismatches), "examples": _table(mismatches[:10], header)},
    )


@asset_check(pool=DUCKDB_POOL, asset=load,
    description=(
        f"Flash times lie within their granule's span, allowing starts up to {quality.EARLY_START_SECONDS:g} s early "
        "(flashes are written when they end)."
    ),
)
def flash_times_within_granule(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        count, examples = quality.flashes_outside_granule(con)
    return AssetCheckResult(
        passed=count == 0,
        metadata={
            "flashes_outside": count,
            "examples": _table(examples, ["source_file", "flash_id", "flash start", "granule start"]),
        },
    )


@asset_check(pool=DUCKDB_POOL, asset=load,
    description="Every group's parent flash and every event's parent group exist in the same granule.",
)
def parent_ids_consistent(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        counts = quality.orphan_children(con)
    # Some real granules carry orphans (glmtools #77): worth a warning, not a reason to distrust the table.
    return AssetCheckResult(
        passed=sum(counts.values()) == 0, severity=AssetCheckSeverity.WARN, metadata=dict(counts)
    )


@asset_check(pool=DUCKDB_POOL, asset=load, description="No granule failed to download or decode.")
def no_failed_granules(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        failed = quality.failed_granules(con)
    return AssetCheckResult(
        passed=not failed,
        severity=AssetCheckSeverity.WARN,
        metadata={"failed_granules": len(failed), "failures": _table(failed[:20], ["source_file", "error"])},
    )


@asset_check(pool=DUCKDB_POOL, asset=preprocessor, description="Features are finite and z-scored (mean 0, standard deviation 1).")
def features_standardized(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        n, bad, mx, my, sx, sy = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT (isfinite(f_x) AND isfinite(f_y))), "
            "avg(f_x), avg(f_y), stddev_pop(f_x), stddev_pop(f_y) FROM flash_features"
        ).fetchone()
    spread_ok = n < 2 or all(abs(s - 1) < 1e-6 or s == 0 for s in (sx, sy))
    passed = bad == 0 and n > 0 and abs(mx) < 1e-6 and abs(my) < 1e-6 and spread_ok
    return AssetCheckResult(
        passed=bool(passed),
        metadata={"rows": n, "non_finite": bad, "mean_x": mx, "mean_y": my, "std_x": sx, "std_y": sy},
    )


@asset_check(pool=DUCKDB_POOL, asset=kmeans_cluster,
    description="Every preprocessed flash has exactly one cluster, and cluster_summary's counts add up.",
)
def every_flash_clustered(duckdb: DuckDBResource) -> AssetCheckResult:
    with duckdb.get_connection() as con:
        features, assigned, distinct, summed = con.execute(
            """SELECT (SELECT count(*) FROM flash_features),
                      (SELECT count(*) FROM flash_cluster),
                      (SELECT count(*) FROM (SELECT DISTINCT source_file, flash_id FROM flash_cluster)),
                      (SELECT sum(n_flashes) FROM cluster_summary)"""
        ).fetchone()
    passed = features == assigned == distinct == summed
    return AssetCheckResult(
        passed=bool(passed),
        metadata={"features": features, "assigned": assigned, "distinct_assigned": distinct, "summary_total": summed},
    )


all_checks = [
    coordinates_in_range,
    no_duplicate_keys,
    row_counts_match_glm_file,
    flash_times_within_granule,
    parent_ids_consistent,
    no_failed_granules,
    features_standardized,
    every_flash_clustered,
]
