"""A run's cost against the store's size: ``lightning-eda run`` of one loaded hour, alone in the store and with a
year of other hours beside it.

1. One synthetic hour (``--granules`` re-stamped real granules, 180 by default, as a real hour) is loaded with
   ``lightning-eda backfill --no-cluster`` from a local mirror, as ``bench_store.py`` does. Its data folder is copied,
   and the copy gets 8,759 more hour folders (a year of hours with the loaded one) written through
   DuckDB in the store's layout. Those hours are small (a granule's first rows, :data:`SMALL_HOUR_ROWS`, under a new
   name each): the year's file and folder counts are real, its bytes are not (a real year is about 340 GB).
2. ``lightning-eda run`` of the loaded hour (ingest finds the hour complete, then the clustering, maps and tracks),
   in each data folder, repetitions interleaved; the ratio of the medians (target ≤ 1.2, issue 20).
3. Users' queries on ``glm.duckdb``: one hour's flashes by the views' ``hour`` column, and a count over every
   hour, in each folder: what a year's file count costs a query that prunes and one that cannot.

Run from the project root: ``python benchmarks/bench_store_size.py [--reps 3] [--granules 180] [--hours 8760]``.
Results are printed and written to ``benchmarks/results/store_size.txt``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from _common import DEFAULT_GLM_DIR, Report, load_average, machine, real_granules, timed, versions
from bench_store import BUCKET, PRODUCT, cli_command, code_state, command_env, run_backfill

from lightning_eda.goes.layout import hour_prefix
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.testing.synthetic_hour import make_hour

HOUR = datetime(2019, 7, 1, 18)
YEAR_START = HOUR - timedelta(hours=4380)  # the loaded hour in the middle of the year
SMALL_HOUR_ROWS = {"glm_file": 1, "glm_flash": 5, "glm_group": 20, "glm_event": 50}
"""The rows of each small hour: one granule's first ones (a whole granule a year, 160 M events, filled the memory)."""


def add_small_hours(data_dir: Path, count: int) -> float:
    """``count`` hours around :data:`HOUR` (not it), each a few rows of a granule of the loaded hour under its own
    name; seconds.

    Written by DuckDB, one ``COPY ... PARTITION_BY`` per table, in the store's layout (``hour=.../<table>-0.parquet``
    and the ``.version`` file a committed hour has): committed one by one, with the commit's fsyncs, a year took 20
    to 40 minutes on the shared machine.
    """
    store = ParquetStore(data_dir)
    loaded = store.read_all(HourKey(BUCKET, PRODUCT, HOUR))
    files = loaded["glm_file"]
    name = files.filter(pc.equal(files["status"], "loaded"))["source_file"][0].as_py()
    hours = [h for h in (YEAR_START + timedelta(hours=i) for i in range(count + 1)) if h != HOUR]
    product_dir = store.hour_dir(HourKey(BUCKET, PRODUCT, HOUR)).parent
    platform = name.split("_s", 1)[0]
    renamed = (
        f"'{platform}_s' || strftime(h.hour, '%Y%j%H') || '00000_e' || strftime(h.hour, '%Y%j%H') || '00200_c' "
        "|| strftime(h.hour, '%Y%j%H') || '00220.nc'"
    )
    start = time.perf_counter()
    with duckdb.connect(config={"temp_directory": str(data_dir.parent / "duckdb_tmp")}) as con:  # not the cwd
        con.register("hours", pa.table({"hour": hours}))
        for table, data in loaded.items():
            one = data.filter(pc.equal(data["source_file"].cast(pa.string()), name)).slice(0, SMALL_HOUR_ROWS[table])
            con.register("one", one.set_column(0, "source_file", one["source_file"].cast(pa.string())))
            con.execute(
                f"COPY (SELECT one.* REPLACE ({renamed} AS source_file), strftime(h.hour, '%Y-%m-%dT%H') AS hour "
                f"FROM one, hours h) TO '{product_dir}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (hour), "
                f"FILENAME_PATTERN '{table}-{{i}}', OVERWRITE_OR_IGNORE true)"
            )
            con.unregister("one")
    for hour in hours:
        (store.hour_dir(HourKey(BUCKET, PRODUCT, hour)) / ".version").write_text(str(time.time_ns()))
    return time.perf_counter() - start


def run_hour(work: Path, name: str, mirror: Path) -> tuple[float, str]:
    """``lightning-eda run`` of :data:`HOUR` on the data folder ``data_<name>``; wall seconds and the load."""
    env, _, home = command_env(work, name, mirror, None)
    env.update(GOES_YEAR=f"{HOUR:%Y}", GOES_DOY=f"{HOUR:%j}", GOES_HOUR=f"{HOUR:%H}")
    load = load_average()
    start = time.perf_counter()
    proc = subprocess.run([*cli_command(), "run"], env=env, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"lightning-eda run on {name} exited {proc.returncode}")
    return wall, load


def user_queries(data_dir: Path) -> dict[str, float]:
    """Seconds of two queries a user runs on glm.duckdb: one hour by the views' hour column, and all hours."""
    catalog.refresh_database(data_dir)
    times = {}
    with duckdb.connect(str(catalog.database_path(data_dir)), read_only=True) as con:
        times["one hour's flashes (WHERE hour = ...)"] = timed(
            lambda: con.execute("SELECT count(*), avg(energy) FROM glm_flash WHERE hour = ?", [HOUR]).fetchall()
        )[0]
        times["flashes per day, every hour"] = timed(
            lambda: con.execute("SELECT date_trunc('day', hour) AS day, count(*) FROM glm_flash GROUP BY 1").fetchall()
        )[0]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--granules", type=int, default=180, help="granules in the loaded hour (default 180)")
    parser.add_argument("--hours", type=int, default=8760, help="hours in the big store, the loaded one included")
    parser.add_argument("--glm-dir", type=Path, default=DEFAULT_GLM_DIR)
    args = parser.parse_args()
    real = real_granules(args.glm_dir)
    report = Report("store_size")
    report.say(machine() + "; " + code_state(None), versions("duckdb", "pyarrow", "dagster"))
    with tempfile.TemporaryDirectory(prefix="bench_store_size_") as tmp:
        work = Path(tmp)
        mirror = work / "mirror"
        make_hour(real, mirror / BUCKET / hour_prefix(PRODUCT, HOUR), HOUR, count=args.granules)
        loaded = run_backfill(work, "alone", mirror, [HOUR], None)
        shutil.copytree(loaded["data_dir"], work / "data_year", symlinks=True)
        shutil.copytree(loaded["home"], work / "dagster_home_year", symlinks=True)
        seconds = add_small_hours(work / "data_year", args.hours - 1)
        store = ParquetStore(work / "data_year")
        folders = len(store.hours(BUCKET, PRODUCT))
        files = sum(1 for _ in store.glm_root.rglob("*.parquet"))
        report.say(
            f"loaded hour {HOUR:%Y-%m-%d %H}:00 UTC, {args.granules} granules (backfill {loaded['wall']:.1f} s)",
            f"year store: {folders} hour folders, {files} Parquet files; {args.hours - 1} small hours written in "
            f"{seconds:.0f} s (a few rows each, SMALL_HOUR_ROWS: the file count is a year's, the bytes are not)",
            "",
            f"1. lightning-eda run of the loaded hour, {args.reps} repetitions interleaved",
        )
        walls: dict[str, list[float]] = {"alone": [], "year": []}
        for rep in range(args.reps):
            order = ("alone", "year") if rep % 2 == 0 else ("year", "alone")
            for name in order:
                wall, load = run_hour(work, name, mirror)
                walls[name].append(wall)
                report.say(f"   rep {rep}: {name:<5} {wall:6.2f} s  (load average {load})")
        alone, year = statistics.median(walls["alone"]), statistics.median(walls["year"])
        report.say(
            f"   median: alone {alone:.2f} s, with a year of hours {year:.2f} s, ratio {year / alone:.2f} "
            "(target ≤ 1.2)",
            "",
            "2. users' queries on glm.duckdb (first run, cold views)",
        )
        for name in ("alone", "year"):
            for query, secs in user_queries(work / f"data_{name}").items():
                report.say(f"   {name:<5} {query:<42} {secs:6.3f} s")
        report.say(f"(load average at the end {load_average()})")
    report.write()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
