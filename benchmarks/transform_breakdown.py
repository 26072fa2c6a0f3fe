"""Where the ingest's time goes: per-granule costs of the transform, and what the load reads back.

A diagnostic beside ``bench_pipeline.py`` (not part of ``make bench``): on the same synthetic hour (180 re-stamped
copies of the real granules), in one process, one granule after another (no worker processes), it times

* netCDF4's bare open + decode of the file (``synthetic_hour.bare_decode``);
* ``lightning_eda.goes.granule.read_granule`` (the project's decoder: every variable from its own attributes, into tables);
* ``lightning_eda.goes.granule.granule_to_csvs`` (the CSVs the ``load`` step reads), and the bytes written;
* for comparison only, writing the same three tables as Parquet with pyarrow (what a Parquet hand-off would cost);

then loads the hour's CSVs into a fresh DuckDB database with the statement ``store.replace_hour`` uses, and the
Parquet files with ``read_parquet``. Repetitions are interleaved per granule; the best of them is kept per granule.

Last, the whole hour through ``lightning_eda.ingest.transform_granules`` on one process and on its default worker
processes (wall time, interleaved), and what a worker pays before its first granule: a ``spawn`` worker re-imports
the parent's main module, so the time to import a few possible main modules in a fresh interpreter is shown. This
script keeps its own top-level imports light for that reason.

Run from the project root: ``python benchmarks/transform_breakdown.py [--reps 3] [--glm-dir ../shared/data/glm]``.
Prints its report and writes it to ``benchmarks/results/transform_breakdown.txt``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from lightning_eda.goes.granule import granule_to_csvs, read_granule  # noqa: E402
from lightning_eda.ingest.hourly import default_workers, transform_granules  # noqa: E402
from lightning_eda.store.database import CSV_COLUMNS  # noqa: E402
from synthetic_hour import bare_decode, make_hour  # noqa: E402

HOUR = datetime(2019, 7, 1, 18)  # as bench_pipeline.py (not imported: it is heavy, see the module notes)
TABLES = {"flashes": "glm_flash", "groups": "glm_group", "events": "glm_event"}
MAIN_MODULES = {
    "lightning_eda.ingest.hourly (what a worker needs)": "import lightning_eda.ingest.hourly",
    "lightning_eda.cli (main of `lightning-eda run`)": "import lightning_eda.cli",
    "lightning_eda.definitions (Dagster code location)": "import lightning_eda.definitions",
    "bench_pipeline.py (main of the pipeline benchmark)":
        "import sys; sys.path[:0] = [{benchmarks!r}]; import bench_pipeline",
}


def load_average() -> str:
    return "(%.2f, %.2f, %.2f)" % os.getloadavg()


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def write_parquet(granule, out_dir: Path) -> dict[str, Path]:
    paths = {}
    source_file = granule.meta["source_file"]
    for table, frame in {"flashes": granule.flashes, "groups": granule.groups, "events": granule.events}.items():
        path = out_dir / f"{Path(source_file).stem}_{table}.parquet"
        arrow = pa.Table.from_pandas(frame.assign(source_file=source_file)[["source_file", *frame.columns]],
                                     preserve_index=False)
        pq.write_table(arrow, path)
        paths[table] = path
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="passes over each granule; the best is kept (default 3)")
    parser.add_argument("--glm-dir", type=Path, default=ROOT.parent / "shared" / "data" / "glm")
    args = parser.parse_args()
    real = sorted(args.glm_dir.glob("OR_GLM-L2-LCFA_*.nc"))
    if not real:
        print(f"no real granules in {args.glm_dir}", file=sys.stderr)
        return 2
    lines = [f"cores available: {len(os.sched_getaffinity(0))}, load average {load_average()}; one process, "
             f"granules one after another, best of {args.reps} per granule"]
    with tempfile.TemporaryDirectory(prefix="transform_breakdown_") as tmp:
        work = Path(tmp)
        granules = make_hour(real, work / "hour", HOUR)
        csv_dir, parquet_dir = work / "csv", work / "parquet"
        csv_dir.mkdir()
        parquet_dir.mkdir()
        best = {"bare": [], "read": [], "csv": [], "parquet": []}
        csvs: dict[str, list[Path]] = {table: [] for table in TABLES}
        parquets: dict[str, list[Path]] = {table: [] for table in TABLES}
        rows = 0
        for path in granules:
            times = {key: [] for key in best}
            for _ in range(args.reps):
                times["bare"].append(timed(lambda: bare_decode([path]))[0])
                t, granule = timed(lambda: read_granule(path))
                times["read"].append(t)
                t, written = timed(lambda: granule_to_csvs(granule, csv_dir))
                times["csv"].append(t)
                t, pq_written = timed(lambda: write_parquet(granule, parquet_dir))
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
        lines += [
            f"hour: {n} granules, {nc_bytes / 1e6:.1f} MB of NetCDF, {rows:,} rows (flashes + groups + events)",
            "",
            "per granule (mean of the per-granule bests) and summed over the hour, one core:",
            f"   netCDF4 open + decode only     {1e3 * total['bare'] / n:6.1f} ms  {total['bare']:6.2f} s",
            f"   read_granule                   {1e3 * total['read'] / n:6.1f} ms  {total['read']:6.2f} s  "
            f"({total['read'] / total['bare']:.2f}x bare)",
            f"   granule_to_csvs                {1e3 * total['csv'] / n:6.1f} ms  {total['csv']:6.2f} s  "
            f"-> {csv_bytes / 1e6:.0f} MB of CSV ({csv_bytes / nc_bytes:.1f}x the NetCDF)",
            f"   read + CSV (transform's work)  {1e3 * (total['read'] + total['csv']) / n:6.1f} ms  "
            f"{total['read'] + total['csv']:6.2f} s  ({(total['read'] + total['csv']) / total['bare']:.2f}x bare)",
            f"   (Parquet instead of CSV)       {1e3 * total['parquet'] / n:6.1f} ms  {total['parquet']:6.2f} s  "
            f"-> {pq_bytes / 1e6:.0f} MB of Parquet",
            "",
            "load into a fresh DuckDB database (the hour's three tables, one statement each):",
        ]
        for kind, files, reader in (("CSV", csvs, "csv"), ("Parquet", parquets, "parquet")):
            con = duckdb.connect(str(work / f"{reader}.duckdb"))
            start = time.perf_counter()
            for table, name in TABLES.items():
                paths = [str(p) for p in files[table]]
                if reader == "csv":
                    con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, header = true, columns = ?, "
                                f"auto_detect = false)", [paths, CSV_COLUMNS[name]])
                else:
                    con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)", [paths])
            con.execute("CHECKPOINT")
            elapsed = time.perf_counter() - start
            count = sum(con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES.values())
            con.close()
            lines.append(f"   from {kind:<8} {elapsed:6.2f} s  ({count:,} rows)")
        workers = default_workers()
        lines += ["", f"transform_granules over the hour, wall time (median of {args.reps}, interleaved):"]
        walls: dict[int, list[float]] = {1: [], workers: []}
        for rep in range(args.reps):
            for count in walls:
                walls[count].append(timed(lambda: transform_granules(granules, work / f"t{rep}_{count}", count))[0])
        for count, values in walls.items():
            label = "one process" if count == 1 else f"{count} worker processes (spawn)"
            lines.append(f"   {label:<30} {statistics.median(values):6.2f} s  "
                         f"({', '.join(f'{v:.2f}' for v in values)})")
    lines += ["", "import time in a fresh interpreter (a spawn worker re-imports the parent's main module first):"]
    for label, code in MAIN_MODULES.items():
        code = code.format(benchmarks=str(ROOT / "benchmarks"))
        elapsed, _ = timed(lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True))
        lines.append(f"   {label:<52} {elapsed:5.2f} s")
    lines.append(f"(load average at the end {load_average()})")
    report = "\n".join(lines)
    print(report)
    out = ROOT / "benchmarks" / "results" / "transform_breakdown.txt"
    command = " ".join(["python", "benchmarks/transform_breakdown.py", *sys.argv[1:]])
    out.write_text(f"# {datetime.now():%Y-%m-%d %H:%M} {command}\n{report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
