"""Data-quality queries over the store's tables as DuckDB sees them; the asset checks wrap these (no Dagster here).

Each query tests one expectation and returns what its check reports: offending rows counted per table (all 0 when the
expectation holds), the offending rows themselves (none when it holds), a count with up to five examples, or, for the
clustering tables, whether it holds and the numbers that say so.
"""

from __future__ import annotations

import duckdb

from lightning_eda.store.schemas import ID_COLUMN

# Flashes are written when they end, so a flash may start up to ~2 s before its granule (docs/glm_format.md);
# allow 3 s.
EARLY_START_SECONDS = 3.0
LATE_END_SECONDS = 1.0


def _examples(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[tuple]:
    return con.execute(sql + " LIMIT 5", params).fetchall()


def out_of_range_coordinates(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = {}
    for table in ID_COLUMN:
        counts[table] = con.execute(
            f"SELECT count(*) FROM {table} WHERE NOT (lat BETWEEN -90 AND 90 AND lon >= -180 AND lon < 180) "
            "OR lat IS NULL OR lon IS NULL"
        ).fetchone()[0]
    return counts


def duplicate_keys(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows beyond the first for each key: (source_file, id) in the data tables, source_file in glm_file."""
    counts = {}
    for table, id_column in ID_COLUMN.items():
        counts[table] = con.execute(
            f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table} "
            f"GROUP BY source_file, {id_column} HAVING count(*) > 1)"
        ).fetchone()[0]
    counts["glm_file"] = con.execute(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM glm_file GROUP BY source_file HAVING n > 1)"
    ).fetchone()[0]
    return counts


def row_count_mismatches(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Granules whose rows in the data tables differ from glm_file's counts (failed granules must have none)."""
    return con.execute(
        """
        WITH fl AS (SELECT source_file, count(*) AS n FROM glm_flash GROUP BY 1),
             gr AS (SELECT source_file, count(*) AS n FROM glm_group GROUP BY 1),
             ev AS (SELECT source_file, count(*) AS n FROM glm_event GROUP BY 1)
        SELECT f.source_file, f.status,
               CASE WHEN f.status = 'loaded' THEN f.n_flashes ELSE 0 END AS expected_flashes, coalesce(fl.n, 0),
               CASE WHEN f.status = 'loaded' THEN f.n_groups ELSE 0 END AS expected_groups, coalesce(gr.n, 0),
               CASE WHEN f.status = 'loaded' THEN f.n_events ELSE 0 END AS expected_events, coalesce(ev.n, 0)
        FROM glm_file f
        LEFT JOIN fl USING (source_file) LEFT JOIN gr USING (source_file) LEFT JOIN ev USING (source_file)
        WHERE expected_flashes <> coalesce(fl.n, 0) OR expected_groups <> coalesce(gr.n, 0)
           OR expected_events <> coalesce(ev.n, 0)
        UNION ALL
        SELECT DISTINCT x.source_file, 'orphan', 0, 0, 0, 0, 0, 0
        FROM (SELECT source_file FROM glm_flash UNION SELECT source_file FROM glm_event) x
        WHERE x.source_file NOT IN (SELECT source_file FROM glm_file)
        ORDER BY 1
        """
    ).fetchall()


def flashes_outside_granule(con: duckdb.DuckDBPyConnection) -> tuple[int, list[tuple]]:
    """Flashes starting more than EARLY_START_SECONDS before, or ending LATE_END_SECONDS after, their granule."""
    where = """
        FROM glm_flash fl JOIN glm_file f USING (source_file)
        WHERE fl.time_start < f.time_start - to_microseconds(CAST(? * 1e6 AS BIGINT))
           OR fl.time_end > f.time_end + to_microseconds(CAST(? * 1e6 AS BIGINT))
           OR fl.time_start > fl.time_end
    """
    params = [EARLY_START_SECONDS, LATE_END_SECONDS]
    count = con.execute("SELECT count(*) " + where, params).fetchone()[0]
    examples = _examples(con, "SELECT fl.source_file, fl.flash_id, fl.time_start, f.time_start " + where, params)
    return count, examples


def orphan_children(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Groups whose parent flash, and events whose parent group, is not in the same granule."""
    groups = con.execute(
        "SELECT count(*) FROM glm_group g ANTI JOIN glm_flash f "
        "ON g.source_file = f.source_file AND g.parent_flash_id = f.flash_id"
    ).fetchone()[0]
    events = con.execute(
        "SELECT count(*) FROM glm_event e ANTI JOIN glm_group g "
        "ON e.source_file = g.source_file AND e.parent_group_id = g.group_id"
    ).fetchone()[0]
    return {"groups_without_flash": groups, "events_without_group": events}


def failed_granules(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "SELECT source_file, error FROM glm_file WHERE status = 'failed' ORDER BY source_file"
    ).fetchall()


def feature_standardization(con: duckdb.DuckDBPyConnection, tolerance: float = 1e-6) -> tuple[bool, dict]:
    """Whether ``flash_features`` is finite and z-scored (mean 0, standard deviation 1 or 0), with the moments."""
    n, bad, mx, my, sx, sy = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE NOT (isfinite(f_x) AND isfinite(f_y))), "
        "avg(f_x), avg(f_y), stddev_pop(f_x), stddev_pop(f_y) FROM flash_features"
    ).fetchone()
    facts = {"rows": n, "non_finite": bad, "mean_x": mx, "mean_y": my, "std_x": sx, "std_y": sy}
    if n == 0 or bad:
        return False, facts
    spread_ok = n < 2 or all(abs(s - 1) < tolerance or s == 0 for s in (sx, sy))
    return bool(abs(mx) < tolerance and abs(my) < tolerance and spread_ok), facts


def clustering_coverage(con: duckdb.DuckDBPyConnection) -> tuple[bool, dict]:
    """Whether every preprocessed flash has exactly one cluster and ``cluster_summary``'s counts add up."""
    features, assigned, distinct, summed = con.execute(
        """SELECT (SELECT count(*) FROM flash_features),
                  (SELECT count(*) FROM flash_cluster),
                  (SELECT count(*) FROM (SELECT DISTINCT source_file, flash_id FROM flash_cluster)),
                  (SELECT sum(n_flashes) FROM cluster_summary)"""
    ).fetchone()
    facts = {"features": features, "assigned": assigned, "distinct_assigned": distinct, "summary_total": summed}
    return bool(features == assigned == distinct == summed), facts
