"""What a year of hour folders costs a user's query on ``glm.duckdb``, against the same rows folded into day files.

The hour side is the store as it is: one committed hour of a few rows per table (the real schemas, GeoParquet and
all), then 8,759 more hour folders hard-linked from it (the folder and file counts are a year's, the bytes are not),
queried through ``glm.duckdb``'s views. The day side is what compaction into day files would give: 365 folders, one
file per table holding the day's 24 hours as row groups with an ``hour`` column, queried with ``read_parquet``.
Each query runs in a fresh connection (DuckDB caches nothing between them); ``--cold`` also drops the page cache
before each (needs root), as after a reboot.

    python benchmarks/bench_year_files.py [--hours 8760] [--reps 3] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import _common
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from lightning_eda.ingest.decoding import transform_granule
from lightning_eda.ingest.hourly import files_table
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.store.schemas import GLM_SCHEMAS, GLM_TABLES, conform
from lightning_eda.testing.lcfa_factory import lcfa_name, sample_tables, write_lcfa

BUCKET, PRODUCT = "noaa-goes16", "GLM-L2-LCFA"
START = datetime(2024, 1, 1)
PROBE = datetime(2024, 6, 1, 18)


def one_hour_tables(folder: Path) -> dict[str, pa.Table]:
    """A few rows of every table (2 flashes, 3 groups, 5 events): a granule of the LCFA factory, decoded as the ingest
    decodes it."""
    path = write_lcfa(folder / lcfa_name("G16", PROBE), start=PROBE, **sample_tables())
    record, tables = transform_granule(path)
    return {**tables, "glm_file": files_table([record])}


def hour_store(data_dir: Path, hours: int, tables: dict[str, pa.Table]) -> ParquetStore:
    """A store of ``hours`` hour folders from START: one committed with ``tables``, the others hard links of its
    files."""
    store = ParquetStore(data_dir)
    store.ensure()
    first = HourKey(BUCKET, PRODUCT, START)
    store.commit(first, store.stage(tables))
    source = store.hour_dir(first)
    for index in range(1, hours):
        target = store.hour_dir(HourKey(BUCKET, PRODUCT, START + timedelta(hours=index)))
        target.mkdir(parents=True)
        for path in source.iterdir():
            os.link(path, target / path.name)
    return store


def day_files(root: Path, hours: int, tables: dict[str, pa.Table]) -> Path:
    """The same rows as day files: one per table and day, each hour its own row group, with an ``hour`` column."""
    folder = root / f"bucket={BUCKET}" / f"product={PRODUCT}"
    for day_index in range(-(-hours // 24)):
        day = START + timedelta(days=day_index)
        target = folder / f"day={day:%Y-%m-%d}"
        target.mkdir(parents=True)
        for table in GLM_TABLES:
            data = conform(tables[table], GLM_SCHEMAS[table])
            schema = data.schema.append(pa.field("hour", pa.timestamp("us")))
            with pq.ParquetWriter(target / f"{table}.parquet", schema, compression="zstd") as writer:
                for hour_index in range(24):
                    hour = day + timedelta(hours=hour_index)
                    writer.write_table(data.append_column(schema.field("hour"), pa.array([hour] * data.num_rows)))
    return folder.parents[1]


def query_seconds(connect, sql: str, params: list, reps: int, cold: bool) -> float:
    """The median over ``reps`` of a query's seconds in a fresh connection (after dropping the page cache)."""
    seconds = []
    for _ in range(reps):
        if cold:
            subprocess.run("sync; echo 3 > /proc/sys/vm/drop_caches", shell=True, check=True)
        with connect() as con:
            start = time.perf_counter()
            con.execute(sql, params).fetchall()
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=8760)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each query (root only)")
    args = parser.parse_args()
    report = _common.Report("year_files")
    report.say(_common.machine(), _common.versions("duckdb", "pyarrow"))
    with tempfile.TemporaryDirectory(prefix="bench_year_files_") as tmp:
        work = Path(tmp)
        tables = one_hour_tables(work)
        seconds, store = _common.timed(lambda: hour_store(work / "data", args.hours, tables))
        catalog.refresh_database(store.data_dir)
        files = sum(1 for _ in store.glm_root.rglob("*.parquet"))
        report.say(f"hour store: {args.hours} hour folders, {files} Parquet files, made in {seconds:.1f} s")
        days = day_files(work / "days", args.hours, tables)
        report.say(f"day files: {-(-args.hours // 24)} day folders, {sum(1 for _ in days.rglob('*.parquet'))} files")
        database = str(catalog.database_path(store.data_dir))
        glob = str(days / "bucket=*" / "product=*" / "day=*" / "glm_flash.parquet")
        day_view = f"read_parquet('{glob}', hive_partitioning = true)"
        queries = {
            "one hour's flashes (WHERE hour = ...)": (
                "SELECT count(*), avg(energy) FROM glm_flash WHERE hour = ?",
                f"SELECT count(*), avg(energy) FROM {day_view} WHERE hour = ?",
                [PROBE],
            ),
            "flashes per day, every hour": (
                "SELECT date_trunc('day', hour) AS day, count(*) FROM glm_flash GROUP BY 1",
                f"SELECT date_trunc('day', hour) AS day, count(*) FROM {day_view} GROUP BY 1",
                [],
            ),
        }
        cache = "cold (page cache dropped before each)" if args.cold else "warm"
        report.say(f"median of {args.reps} per query, a fresh connection each, {cache}; load {_common.load_average()}")
        for name, (hour_sql, day_sql, params) in queries.items():
            hours_s = query_seconds(
                lambda: duckdb.connect(database, read_only=True), hour_sql, params, args.reps, args.cold
            )
            days_s = query_seconds(duckdb.connect, day_sql, params, args.reps, args.cold)
            report.say(f"  {name}: hour folders {hours_s:.3f} s, day files {days_s:.3f} s ({hours_s / days_s:.1f}x)")
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
