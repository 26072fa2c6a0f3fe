"""Benchmark of the gridded products: a synthetic day (about 1M flashes and 72M events) at 2 km, 1-minute frames and
5-minute accumulations, against the time it takes to ingest that day.

The day: the busy real granules (those holding flashes) cycled over the 4,320 20-s slots of 24 hours, each copy's
flash times moved into its slot and given its own ``source_file`` (the realistic hour of
``lightning_eda_tests/realistic_hour.py`` 24 times, with events and groups). Each hour is built in memory (not
timed), then gridded and written exactly as the ``gridded_products`` asset does (:class:`GridOutput`): both netCDF
files, the ``grid_cell`` rows with their lat/lon, the busiest accumulation kept for the map. Timed per step; peak
memory is the process's VmHWM, reset after the granules are decoded. The asset also reads each hour from the Parquet
store (not timed here).

The ingest side is not run here: BENCHMARKS.md section 8 measured a 24-hour backfill of 4,320 real-size granules in
one process at 10.36 partitions a minute (139 s for the day) on the same machine.

Run from the project root: ``python benchmarks/bench_grids.py [--hours 24] [--resolution-km 2] [--map PNG]``;
writes ``benchmarks/results/grids.txt`` (``--no-write`` keeps it). ``--map`` draws the first hour's busiest
5 minutes (the realistic hour's).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from _common import (
    DEFAULT_GLM_DIR,
    Report,
    high_water_mib,
    machine,
    real_granules,
    reset_high_water,
    versions,
)

from lightning_eda.analysis.grid_runs import GRID_CELL_TABLE, GridOutput
from lightning_eda.goes.granule import read_granule
from lightning_eda.grids.fixed_grid import FixedGrid, GeosProjection
from lightning_eda.grids.products import grid_hour

DAY = datetime(2024, 7, 1)
SLOT = timedelta(seconds=20)
BUSY_BYTES = 100_000
INGEST_DAY_SECONDS = 24 / 10.36 * 60  # BENCHMARKS.md section 8: one process, 10.36 hourly partitions a minute


def synthetic_hour(granules, hour: datetime) -> dict[str, pd.DataFrame]:
    """180 slots of the granules, cycled, each slot's flashes starting in it."""
    tables = {"glm_event": [], "glm_group": [], "glm_flash": []}
    for slot in range(180):
        granule = granules[slot % len(granules)]
        name = f"{hour:%Y%m%d%H}_slot{slot:03d}"
        shift = pd.Timestamp(hour + slot * SLOT) - pd.Timestamp(granule.meta["time_start"])
        tables["glm_event"].append(granule.events.assign(source_file=name))
        tables["glm_group"].append(granule.groups.assign(source_file=name))
        tables["glm_flash"].append(
            granule.flashes.assign(source_file=name, time_start=granule.flashes.time_start + shift)
        )
    out = {}
    for table, frames in tables.items():
        frame = pd.concat(frames, ignore_index=True)
        frame["source_file"] = frame["source_file"].astype("category")
        out[table] = frame
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--resolution-km", type=float, default=2.0)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--glm-dir", type=Path, default=DEFAULT_GLM_DIR)
    parser.add_argument("--map", type=Path, help="draw the first hour's busiest accumulation into this PNG")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    report = Report("grids")
    report.say(machine(), versions("numpy", "pandas", "pyproj", "netCDF4", "h5py"))
    paths = [p for p in real_granules(args.glm_dir) if p.stat().st_size > BUSY_BYTES]
    granules = [read_granule(p) for p in paths]
    grid = FixedGrid(GeosProjection.from_granule(paths[0]), args.resolution_km)
    report.say(
        f"{len(paths)} busy granules cycled over {args.hours} hours; {args.resolution_km:g} km "
        f"({grid.step * 1e6:.0f} µrad, footprint {grid.footprint_cells}x{grid.footprint_cells} cells), "
        f"1-min frames and {args.minutes}-min accumulations"
    )
    steps = {"grid": 0.0, "write": 0.0}
    flashes = events = 0
    with tempfile.TemporaryDirectory() as tmp:
        output = GridOutput(Path(tmp), "noaa-goes16", Path(tmp) / f"{GRID_CELL_TABLE}.parquet", args.minutes)
        reset_high_water()
        start = time.perf_counter()
        for h in range(args.hours):
            hour = DAY + timedelta(hours=h)
            rows = synthetic_hour(granules, hour)
            t0 = time.perf_counter()
            gridded = grid_hour(rows["glm_event"], rows["glm_group"], rows["glm_flash"], grid, hour)
            t1 = time.perf_counter()
            output.add(grid, gridded, {"platform_ID": "G16", "orbital_slot": "GOES-East"})
            t2 = time.perf_counter()
            steps["grid"] += t1 - t0
            steps["write"] += t2 - t1
            flashes += len(rows["glm_flash"])
            events += len(rows["glm_event"])
            report.say(
                f"  hour {h:2d}: grid {t1 - t0:5.2f} s, write {t2 - t1:5.2f} s, {gridded.counts['flashes']:,} flashes"
            )
            if h == 0 and args.map:
                from lightning_eda.plots.fixed_grid_map import fixed_grid_fed_map
                from lightning_eda.plots.output import save_png

                busiest = output.busiest
                title = (
                    f"{busiest.start:%Y-%m-%d %H:%M} UTC, {args.minutes} min · realistic hour (cycled real granules)"
                )
                save_png(fixed_grid_fed_map(grid, busiest.cells, minutes=args.minutes, title=title), args.map)
        output.commit()
        total = time.perf_counter() - start
        size = sum(p.stat().st_size for p in output.files) / 1e6
        table_mb = output.table_path.stat().st_size / 1e6
    report.say(
        f"day: {flashes:,} flashes, {events:,} events; {len(output.files)} netCDF files ({size:.1f} MB), "
        f"grid_cell {output.totals['cells']:,} rows ({table_mb:.1f} MB)",
        f"time (building the hours excluded): grid {steps['grid']:.1f} s + write {steps['write']:.1f} s = "
        f"{steps['grid'] + steps['write']:.1f} s; wall incl. building {total:.1f} s",
        f"ingest of the day (BENCHMARKS.md section 8): {INGEST_DAY_SECONDS:.0f} s -> gridding / ingest = "
        f"{(steps['grid'] + steps['write']) / INGEST_DAY_SECONDS * 24 / args.hours:.2f} (scaled to 24 hours)",
        f"peak RSS while gridding: {high_water_mib():.0f} MiB",
    )
    if not args.no_write:
        report.write()


if __name__ == "__main__":
    main()
