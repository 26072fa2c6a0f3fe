"""Benchmark of the gridded products: a day ingested by ``lightning-eda backfill``, then gridded from the store at
2 km with 1-minute frames and 5-minute accumulations, both timed in the same run on the same machine.

The day: the busy real granules re-stamped into the 4,320 20-s slots of 24 hours (``synthetic_hour.make_hour``, the
realistic hour 24 times: about 1.05M flashes and 72M events), served from a local folder (``GOES_SOURCE_DIR``). The
ingest is the real command, ``lightning-eda backfill --no-cluster`` over the day in a fresh data folder (decoding on
every core). The gridding is what the ``gridded_products`` asset runs on the day's window
(:func:`lightning_eda.analysis.grid_runs.grid_window`): each hour read from the Parquet store, gridded, both netCDF
files and its ``grid_cell`` rows written, hours on a pool of processes (``--workers``, default the cores). The map is
not drawn (``--map`` draws the busiest accumulation after the timing). Peak memory: each process's VmHWM.

Run from the project root: ``python benchmarks/bench_grids.py [--hours 24] [--workers N] [--serial]``; ``--serial``
also grids the day again in one process, for the comparison. Writes ``benchmarks/results/grids.txt`` unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from _common import DEFAULT_GLM_DIR, Report, high_water_mib, load_average, machine, real_granules, versions
from bench_store import BUCKET, PRODUCT, build_mirror, run_backfill

from lightning_eda import process_pool
from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.analysis.features import FeatureTransform
from lightning_eda.analysis.grid_runs import GRID_CELL_TABLE, GridRequest, grid_window
from lightning_eda.analysis.window import AnalysisWindow
from lightning_eda.store.parquet_store import ParquetStore

DAY = datetime(2024, 7, 1)


def grid_day(data_dir: Path, hours: list[datetime], workers: int, minutes: int, resolution_km: float) -> dict:
    """Grid the day's window from the store as the asset does; wall time, what was written and the peak memory."""
    shutil.rmtree(data_dir / "grids", ignore_errors=True)
    window = AnalysisWindow(BUCKET, hours[0], hours[-1] + timedelta(hours=1), FeatureTransform(0, -75, 0, 0, 1, 1))
    process_pool.discard_pool()
    load_before = load_average()
    start = time.perf_counter()
    output, grid, _ = grid_window(
        AnalysisStore(ParquetStore(data_dir)),
        window,
        product=PRODUCT,
        request=GridRequest(resolution_km, minutes),
        workers=workers,
    )
    wall = time.perf_counter() - start
    pool = process_pool._pool
    workers_peak = [_peak_mib(pid) for pid in (pool._processes if pool is not None else {})]
    process_pool.discard_pool()
    return {
        "wall": wall,
        "load": f"{load_before} → {load_average()}",
        "output": output,
        "grid": grid,
        "netcdf_mb": sum(path.stat().st_size for path in output.files) / 1e6,
        "table_mb": ParquetStore(data_dir).analysis_file(GRID_CELL_TABLE).stat().st_size / 1e6,
        "workers_peak": workers_peak,
    }


def _peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--resolution-km", type=float, default=2.0)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=process_pool.default_workers())
    parser.add_argument("--serial", action="store_true", help="also grid the day in one process")
    parser.add_argument("--glm-dir", type=Path, default=DEFAULT_GLM_DIR)
    parser.add_argument("--map", type=Path, help="draw the day's busiest accumulation into this PNG")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    report = Report("grids")
    report.say(machine(), versions("numpy", "pandas", "pyproj", "netCDF4", "h5py"))
    hours = [DAY + timedelta(hours=h) for h in range(args.hours)]
    with tempfile.TemporaryDirectory(prefix="bench-grids-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        granules = build_mirror(real_granules(args.glm_dir), work / "mirror", hours)
        report.say(
            f"{len(granules):,} granules re-stamped from the busy real ones over {args.hours} hours "
            f"({sum(p.stat().st_size for p in granules) / 1e9:.2f} GB, built in {time.perf_counter() - t0:.0f} s, "
            "not timed)"
        )
        ingest = run_backfill(work, "day", work / "mirror", hours, None)
        report.say(
            f"ingest: lightning-eda backfill --no-cluster over the {args.hours} hours: {ingest['wall']:.1f} s "
            f"(load {ingest['load_before']} → {ingest['load_after']})"
        )
        runs = [("pool", args.workers)] + ([("one process", 1)] if args.serial else [])
        results = {}
        for name, workers in runs:
            result = results[name] = grid_day(ingest["data_dir"], hours, workers, args.minutes, args.resolution_km)
            totals = result["output"].totals
            report.say(
                f"gridding, {name} ({workers} worker{'s' if workers > 1 else ''}): {result['wall']:.1f} s "
                f"(load {result['load']}); {totals['hours']} hours, {totals['flashes']:,} flashes, "
                f"{totals['events_gridded']:,} events gridded at {args.resolution_km:g} km; "
                f"{len(result['output'].files)} netCDF files ({result['netcdf_mb']:.0f} MB), "
                f"grid_cell {totals['cells']:,} rows ({result['table_mb']:.0f} MB)",
                f"  peak RSS: this process {high_water_mib():.0f} MiB; workers "
                + (", ".join(f"{mib:.0f}" for mib in result["workers_peak"]) or "none")
                + " MiB",
                f"  gridding / ingest = {result['wall'] / ingest['wall']:.2f}",
            )
        if args.map:
            from lightning_eda.plots.fixed_grid_map import fixed_grid_fed_map
            from lightning_eda.plots.output import save_png

            pooled = results["pool"]
            busiest = pooled["output"].busiest
            title = f"{busiest.start:%Y-%m-%d %H:%M} UTC, {args.minutes} min · a day of re-stamped real granules"
            save_png(fixed_grid_fed_map(pooled["grid"], busiest.cells, minutes=args.minutes, title=title), args.map)
    if not args.no_write:
        report.write()


if __name__ == "__main__":
    main()
