"""Is every granule in the store exactly once, with its rows and its bytes? The soak's and the scale test's check.

Reads through an in-memory DuckDB over the store (``catalog.connect_store``: glm.duckdb's own views, without its file,
which the soak's reader holds open).
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

from _granule_day import PRODUCT

from lightning_eda.goes.layout import hour_prefix, parse_granule_name
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import ParquetStore
from lightning_eda.store.schemas import DATA_TABLES


def entries(folder: Path) -> set[str]:
    """The names in ``folder`` (none when it does not exist yet)."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def totals(con) -> tuple[int, int]:
    """What the soak's reader counts, through the store's own views: (glm_event rows, glm_hour rows)."""
    events = con.execute("SELECT count(*) FROM glm_event").fetchone()[0]
    hours = con.execute("SELECT count(*) FROM glm_hour").fetchone()[0]
    return int(events), int(hours)


def verify(data_dir: Path, bucket: str, expected: dict[str, dict]) -> dict:
    """Every granule exactly once in glm_file, loaded, with its rows and its bytes; no temporary files left."""
    with catalog.connect_store(data_dir) as con:
        files = con.execute(
            "SELECT source_file, count(*), any_value(status), any_value(n_flashes), any_value(n_groups), "
            "any_value(n_events), any_value(hour), any_value(time_start) FROM glm_file GROUP BY 1"
        ).fetchall()
        per_table = {}
        for table in DATA_TABLES:
            per_table[table] = dict(con.execute(f"SELECT source_file, count(*) FROM {table} GROUP BY 1").fetchall())
        duplicate_ids = sum(
            con.execute(f"SELECT count(*) - count(DISTINCT (source_file, {column})) FROM {table}").fetchone()[0]
            for table, column in (("glm_flash", "flash_id"), ("glm_group", "group_id"), ("glm_event", "event_id"))
        )
        statuses = dict(con.execute("SELECT status, count(*) FROM glm_file GROUP BY 1").fetchall())
        final = totals(con)
    seen = {row[0]: row for row in files}
    loaded_once = wrong_counts = time_outside_hour = bad_bytes = 0
    for name, facts in expected.items():
        row = seen.get(name)
        if row is None or row[1] != 1 or row[2] != "loaded":
            continue
        loaded_once += 1
        counts = tuple(row[3:6])
        rows = tuple(per_table[t].get(name, 0) for t in DATA_TABLES)
        if counts != facts["counts"] or rows != facts["counts"]:
            wrong_counts += 1
        hour, time_start = row[6], row[7]
        if time_start is not None and not hour <= time_start < hour + timedelta(hours=1):
            time_outside_hour += 1
        raw = data_dir / "raw" / bucket / hour_prefix(PRODUCT, parse_granule_name(name).start) / name
        if not raw.is_file() or hashlib.sha256(raw.read_bytes()).hexdigest() != facts["sha"]:
            bad_bytes += 1
    # rows of granules glm_file does not list (or lists more than once) are rows too many
    orphan_rows = sum(
        n for table in DATA_TABLES for name, n in per_table[table].items() if name not in seen or seen[name][1] != 1
    )
    return {
        "loaded_once": loaded_once,
        "missing": sum(1 for name in expected if name not in seen),
        "unexpected": sum(1 for name in seen if name not in expected),
        "duplicated": sum(1 for row in files if row[1] != 1),
        "failed": sum(1 for row in files if row[2] != "loaded"),
        "statuses": statuses,
        "wrong_counts": wrong_counts,
        "orphan_rows": orphan_rows,
        "duplicate_ids": int(duplicate_ids),
        "bad_bytes": bad_bytes,
        "part_files": len(list(data_dir.rglob("*.part"))),
        "staging_left": len(entries(ParquetStore(data_dir).staging_root)),
        "time_outside_hour": time_outside_hour,
        "final_counts": {"glm_event": final[0], "glm_hour": final[1]},
    }


STORE_FAULTS = ("duplicated", "missing", "wrong_counts", "orphan_rows", "duplicate_ids", "bad_bytes", "part_files")
"""The keys of :func:`verify`'s report that must be zero in any run that loaded every granule once."""
