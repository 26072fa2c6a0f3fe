"""Where the ingest's time goes: per-granule costs of the transform, and what the store writes.

A diagnostic beside ``bench_pipeline.py`` and ``bench_store.py``: on the same synthetic hour (180 re-stamped
copies of the real granules), in one process, one granule after another (no worker processes), it times

* netCDF4's bare open + decode of the file (``synthetic_hour.bare_decode``);
* ``lightning_eda.goes.granule.read_granule`` (the project's decoder: every variable from its own attributes, into
  tables);
* ``lightning_eda.ingest.decoding.transform_granule`` (what a transform worker does per granule: read_granule, then
  the three tables conformed to the store's typed Arrow schemas, each row tagged with its ``source_file``);
* ``lightning_eda.goes.granule.granule_to_csvs`` (the CSVs written only with ``LIGHTNING_EDA_CSV=1``; before the
  Parquet store they were the hand-off the ``load`` step read), and the bytes written;
* for comparison, writing the same three tables as per-granule Parquet files with pyarrow's defaults;

then ``ParquetStore.stage`` of the hour's four tables (one zstd Parquet file each, as ``transform_hour`` writes them),
and loads the hour's CSVs and the per-granule Parquet files into a fresh DuckDB database (the CSV statement the
previous design's ``load`` used). Repetitions are interleaved per granule; the best of them is kept per granule.

Last, the whole hour through ``lightning_eda.ingest.decoding.transform_granules`` (no CSVs, as the ingest runs by
default) on one process and on its default worker processes (wall time, interleaved; the pool is the process's
shared one, so only the first call pays its start-up), and what a worker pays before its first granule: a ``spawn``
worker re-imports
the parent's main module, so the time to import a few possible main modules in a fresh interpreter is shown. This
script keeps its own top-level imports light for that reason.

First, the readers' CPU per granule (``time.process_time``, best of ``--reps``, interleaved) on the real granules:
netCDF4's bare decode (every variable, default mask and scale), netCDF4 and h5py reading the decoder's variables
raw (packed, no mask or scale), ``read_granule_arrays`` (the ingest's decoder, NumPy columns) and ``read_granule``
(the same as DataFrames). ``--readers-only`` stops after it.

Run from the project root:
``python benchmarks/transform_breakdown.py [--reps 3] [--glm-dir ../shared/data/glm] [--readers-only]``.
Prints its report and writes it to ``benchmarks/results/transform_breakdown.txt``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from _common import DEFAULT_GLM_DIR, ROOT, Report, load_average, machine, real_granules, timed

from lightning_eda.goes.granule import granule_to_csvs, read_granule, read_granule_arrays
from lightning_eda.ingest.decoding import transform_granule, transform_granules
from lightning_eda.ingest.hourly import files_table
from lightning_eda.process_pool import default_workers
from lightning_eda.store.parquet_store import ParquetStore
from lightning_eda.store.schemas import GLM_SCHEMAS
from lightning_eda.testing.synthetic_hour import bare_decode, make_hour

HOUR = datetime(2019, 7, 1, 18)  # as bench_pipeline.py (not imported: it is heavy, see the module notes)
TABLES = {"flashes": "glm_flash", "groups": "glm_group", "events": "glm_event"}
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp[us]": "TIMESTAMP",
}
# The CSVs' columns in file order (source_file first), as the previous design's load declared them.
CSV_COLUMNS = {
    table: {
        f.name: _DUCKDB_TYPES[str(f.type.value_type if pa.types.is_dictionary(f.type) else f.type)]
        for f in GLM_SCHEMAS[table]
    }
    for table in TABLES.values()
}
MAIN_MODULES = {  # what follows the interpreter on the command line
    "lightning_eda.ingest.decoding (what a worker needs)": ["-c", "import lightning_eda.ingest.decoding"],
    "lightning_eda.cli (main of `lightning-eda run`)": ["-c", "import lightning_eda.cli"],
    "lightning_eda.definitions (Dagster code location)": ["-c", "import lightning_eda.definitions"],
    "bench_pipeline.py --help (its imports, then argparse)": [str(ROOT / "benchmarks" / "bench_pipeline.py"), "--help"],
}


DECODED_VARIABLES = [
    f"{level}_{name}"
    for level, names in {
        "event": ("id", "parent_group_id", "time_offset", "lat", "lon", "energy"),
        "group": ("id", "parent_flash_id", "time_offset", "lat", "lon", "energy", "area", "quality_flag"),
        "flash": ("id", "time_offset_of_first_event", "time_offset_of_last_event", "lat", "lon", "energy", "area",
                  "quality_flag"),
    }.items()
    for name in names
] + ["product_time", "event_count", "group_count", "flash_count"]  # fmt: skip
"""The variables the decoder reads (the others, about half the file, it never opens)."""


def netcdf4_raw(path: Path) -> None:
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        for name in DECODED_VARIABLES:
            variable = ds.variables[name]
            variable.set_auto_maskandscale(False)
            variable[...]


def h5py_raw(path: Path) -> None:
    import h5py

    with h5py.File(path, "r") as file:
        for name in DECODED_VARIABLES:
            file[name][()]


def reader_cpu(granules: list[Path], reps: int) -> dict[str, list[float]]:
    """Each reader's best CPU seconds per granule (``process_time``: the machine's other load does not count)."""
    readers = {
        "netCDF4 bare decode, every variable (baseline)": lambda p: bare_decode([p]),
        "netCDF4 raw, the decoder's variables": netcdf4_raw,
        "h5py raw, the decoder's variables": h5py_raw,
        "read_granule_arrays (the ingest's decoder)": read_granule_arrays,
        "read_granule (DataFrames)": read_granule,
    }
    best = {name: [float("inf")] * len(granules) for name in readers}
    for _ in range(reps):
        for i, path in enumerate(granules):
            for name, read in readers.items():
                start = time.process_time()
                read(path)
                best[name][i] = min(best[name][i], time.process_time() - start)
    return best


def write_parquet(granule, out_dir: Path) -> dict[str, Path]:
    paths = {}
    source_file = granule.meta["source_file"]
    for table, frame in {"flashes": granule.flashes, "groups": granule.groups, "events": granule.events}.items():
        path = out_dir / f"{Path(source_file).stem}_{table}.parquet"
        arrow = pa.Table.from_pandas(
            frame.assign(source_file=source_file)[["source_file", *frame.columns]], preserve_index=False
        )
        pq.write_table(arrow, path)
        paths[table] = path
    return paths


def hour_tables(decoded: list) -> dict[str, pa.Table]:
    """The hour's four tables from ``transform_granule``'s results, as the transform stages them."""
    tables = {"glm_file": files_table([record for record, _ in decoded])}
    for table in TABLES.values():
        tables[table] = pa.concat_tables([granule_tables[table] for _, granule_tables in decoded if granule_tables])
    return tables


def transform_hour_granules(granules: list[Path], work: Path, workers: int) -> None:
    """``transform_granules`` as the ingest calls it (no CSVs). It hands the rows back in memory, or, in the version
    that takes a ``folder``, its decoder processes write them there as Parquet parts."""
    if "folder" in inspect.signature(transform_granules).parameters:
        folder = Path(tempfile.mkdtemp(dir=work))
        transform_granules(granules, folder, workers=workers)
        shutil.rmtree(folder)
    else:
        transform_granules(granules, workers=workers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="passes over each granule; the best is kept (default 3)")
    parser.add_argument("--glm-dir", type=Path, default=DEFAULT_GLM_DIR)
    parser.add_argument("--readers-only", action="store_true", help="only the readers' CPU per granule")
    args = parser.parse_args()
    real = real_granules(args.glm_dir)
    report = Report("transform_breakdown_readers" if args.readers_only else "transform_breakdown")
    report.say(f"{machine()}; one process, granules one after another, best of {args.reps} per granule")
    cpu = reader_cpu(real, max(args.reps, 10))
    baseline = sum(next(iter(cpu.values())))
    report.say(f"CPU per granule, best of {max(args.reps, 10)} (the {len(real)} real granules, interleaved):")
    for name, seconds in cpu.items():
        per = " ".join(f"{1e3 * s:5.1f}" for s in seconds)
        report.say(f"   {name:<48} {per}  mean {1e3 * sum(seconds) / len(seconds):5.1f} ms  "
                   f"{sum(seconds) / baseline:4.2f}x")  # fmt: skip
    report.say(f"(load average {load_average()})")
    if args.readers_only:
        report.write()
        return 0
    with tempfile.TemporaryDirectory(prefix="transform_breakdown_") as tmp:
        work = Path(tmp)
        granules = make_hour(real, work / "hour", HOUR)
        csv_dir, parquet_dir = work / "csv", work / "parquet"
        csv_dir.mkdir()
        parquet_dir.mkdir()
        best = {"bare": [], "read": [], "granule": [], "csv": [], "parquet": []}
        csvs: dict[str, list[Path]] = {table: [] for table in TABLES}
        parquets: dict[str, list[Path]] = {table: [] for table in TABLES}
        rows = 0
        for path in granules:
            times = {key: [] for key in best}
            for _ in range(args.reps):
                times["bare"].append(timed(functools.partial(bare_decode, [path]))[0])
                t, granule = timed(functools.partial(read_granule, path))
                times["read"].append(t)
                times["granule"].append(timed(functools.partial(transform_granule, path))[0])
                t, written = timed(functools.partial(granule_to_csvs, granule, csv_dir))
                times["csv"].append(t)
                t, pq_written = timed(functools.partial(write_parquet, granule, parquet_dir))
                times["parquet"].append(t)
            for key in best:
                best[key].append(min(times[key]))
            for table in TABLES:
                csvs[table].append(written[table])
                parquets[table].append(pq_written[table])
            rows += len(granule.flashes) + len(granule.groups) + len(granule.events)
        n = len(granules)
        nc_bytes = sum(p.stat().st_size for p in granules)
        csv_bytes = sum(p.stat().st_size for paths in csvs.values() for p in paths)
        pq_bytes = sum(p.stat().st_size for paths in parquets.values() for p in paths)
        total = {key: sum(values) for key, values in best.items()}
        report.say(
            f"hour: {n} granules, {nc_bytes / 1e6:.1f} MB of NetCDF, {rows:,} rows (flashes + groups + events)",
            "",
            "per granule (mean of the per-granule bests) and summed over the hour, one core:",
            f"   {'netCDF4 open + decode only':<46} {1e3 * total['bare'] / n:6.1f} ms  {total['bare']:6.2f} s",
            f"   {'read_granule':<46} {1e3 * total['read'] / n:6.1f} ms  {total['read']:6.2f} s  "
            f"({total['read'] / total['bare']:.2f}x bare)",
            f"   {'transform_granule (read + typed Arrow)':<46} {1e3 * total['granule'] / n:6.1f} ms  "
            f"{total['granule']:6.2f} s  ({total['granule'] / total['bare']:.2f}x bare)",
            f"   {'granule_to_csvs (LIGHTNING_EDA_CSV=1 only)':<46} {1e3 * total['csv'] / n:6.1f} ms  "
            f"{total['csv']:6.2f} s  -> {csv_bytes / 1e6:.0f} MB of CSV ({csv_bytes / nc_bytes:.1f}x the NetCDF)",
            f"   {'(per-granule Parquet, pyarrow defaults)':<46} {1e3 * total['parquet'] / n:6.1f} ms  "
            f"{total['parquet']:6.2f} s  -> {pq_bytes / 1e6:.0f} MB of Parquet",
        )
        tables = hour_tables([transform_granule(path) for path in granules])
        store = ParquetStore(work / "store_data")
        stage_times, staged = [], None
        for _ in range(args.reps):
            t, staged = timed(lambda: store.stage(tables))
            stage_times.append(t)
        staged_bytes = sum(p.stat().st_size for p in staged.iterdir())
        report.say(
            "",
            f"ParquetStore.stage of the hour's four tables (zstd, fsync), best of {args.reps}: "
            f"{min(stage_times):.2f} s "
            f"-> {staged_bytes / 1e6:.0f} MB ({staged_bytes / nc_bytes:.2f}x the NetCDF)",
            "",
            "load into a fresh DuckDB database (the hour's three tables, one statement each):",
        )
        for kind, files, reader in (("CSV", csvs, "csv"), ("Parquet", parquets, "parquet")):
            con = duckdb.connect(str(work / f"{reader}.duckdb"))
            start = time.perf_counter()
            for table, name in TABLES.items():
                paths = [str(p) for p in files[table]]
                if reader == "csv":
                    con.execute(
                        f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, header = true, columns = ?, "
                        f"auto_detect = false)",
                        [paths, CSV_COLUMNS[name]],
                    )
                else:
                    con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)", [paths])
            con.execute("CHECKPOINT")
            elapsed = time.perf_counter() - start
            count = sum(con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES.values())
            con.close()
            report.say(f"   from {kind:<8} {elapsed:6.2f} s  ({count:,} rows)")
        workers = default_workers()
        report.say("", f"transform_granules over the hour, wall time (median of {args.reps}, interleaved):")
        walls: dict[int, list[float]] = {1: [], workers: []}
        for _ in range(args.reps):
            for count in walls:
                walls[count].append(timed(functools.partial(transform_hour_granules, granules, work, count))[0])
        for count, values in walls.items():
            label = "one process" if count == 1 else f"{count} worker processes (spawn)"
            report.say(f"   {label:<30} {statistics.median(values):6.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    report.say("", "import time in a fresh interpreter (a spawn worker re-imports the parent's main module first):")
    for label, arguments in MAIN_MODULES.items():
        command = [sys.executable, *arguments]
        elapsed, _ = timed(functools.partial(subprocess.run, command, check=True, capture_output=True))
        report.say(f"   {label:<52} {elapsed:5.2f} s")
    report.say(f"(load average at the end {load_average()})")
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
