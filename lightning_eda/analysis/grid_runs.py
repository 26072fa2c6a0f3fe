"""The gridded products of the clustering window: hour by hour onto the ABI fixed grid, into netCDF and ``grid_cell``.

The plain side of the ``gridded_products`` asset. Reads the window's loaded granules (events, groups, flashes) an hour
at a time, grids them (:mod:`lightning_eda.grids.products`), writes each hour's 1-minute frames and N-minute
accumulations as CF netCDF under ``<data_dir>/grids/`` and the accumulations' non-empty cells as the analysis table
``grid_cell``, and draws the busiest N-minute flash extent density. No Dagster here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.analysis.features import LatLonBox
from lightning_eda.analysis.runs import Markdown, Report
from lightning_eda.analysis.window import AnalysisWindow
from lightning_eda.goes.satellites import BucketSpan
from lightning_eda.grids import netcdf
from lightning_eda.grids.fixed_grid import Extent, FixedGrid, GeosProjection
from lightning_eda.grids.products import VARIABLES, GriddedHour, check_accumulation, frame_bounds, grid_hour
from lightning_eda.ingest.hourly import HourPaths
from lightning_eda.process_pool import default_workers, discard_pool, may_start_processes, shared_pool
from lightning_eda.store import database
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.store.schemas import ANALYSIS_SCHEMAS, conform

logger = logging.getLogger(__name__)

GRID_CELL_TABLE = "grid_cell"
DEFAULT_RESOLUTION_KM = 2.0
DEFAULT_ACCUMULATION_MINUTES = 5


@dataclass(frozen=True)
class GridRequest:
    """What to grid, every value checked: cell size (km at nadir), accumulation length, the full disk or not."""

    resolution_km: float = DEFAULT_RESOLUTION_KM
    accumulation_minutes: int = DEFAULT_ACCUMULATION_MINUTES
    full_disk: bool = False

    def __post_init__(self) -> None:
        check_accumulation(self.accumulation_minutes)
        FixedGrid(GeosProjection.for_slot("GOES-East"), self.resolution_km)  # refuses an unknown resolution


def window_projection(data_dir: Path, bucket: str, product: str, hour: datetime, files: pd.DataFrame):
    """The projection the window's granules state, from the first one still under ``raw/``; else the nominal one of
    their orbital slot (``LIGHTNING_EDA_KEEP_RAW=0`` deletes the granules once loaded). Returns it and its source."""
    raw_dir = HourPaths(data_dir, bucket, product, hour).raw_dir
    for name in sorted(files["source_file"].astype(str)):
        if (raw_dir / name).is_file():
            return GeosProjection.from_granule(raw_dir / name), name
    slots = files["orbital_slot"].dropna().astype(str)
    if slots.empty:
        raise LookupError(f"no granule of {bucket} {hour:%Y-%m-%d %H}:00 names its orbital slot")
    return GeosProjection.for_slot(slots.iloc[0]), f"nominal {slots.iloc[0]} (no granule kept under raw/)"


@dataclass
class Busiest:
    """The N-minute frame with the most flash extent, kept for the map."""

    total: int = -1
    start: datetime | None = None
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)

    def offer(self, frames: pd.DataFrame, starts: list[datetime]) -> None:
        if frames.empty:
            return
        totals = frames.groupby("frame")["flash_extent_density"].sum()
        frame = int(totals.idxmax())
        self.take(Busiest(int(totals.max()), starts[frame], frames[frames["frame"] == frame]))

    def take(self, other: Busiest) -> None:
        if other.total > self.total:
            self.total, self.start, self.cells = other.total, other.start, other.cells


def cell_rows(
    grid: FixedGrid, frames: pd.DataFrame, starts: list[datetime], minutes: int, *, lat_lon: bool = True
) -> pd.DataFrame:
    """The ``grid_cell`` rows of an hour's frames: time, scan angles and (optionally) the cell centres' lat/lon."""
    x = (frames["ix"].to_numpy(np.float64) + 0.5) * grid.step
    y = (frames["iy"].to_numpy(np.float64) + 0.5) * grid.step
    lat, lon = grid.projection.to_latlon(x, y) if lat_lon else (np.full(len(x), np.nan), np.full(len(x), np.nan))
    return pd.DataFrame(
        {
            "time": pd.to_datetime(np.asarray(starts, dtype="datetime64[us]")[frames["frame"].to_numpy()]),
            "minutes": minutes,
            "x": x,
            "y": y,
            "lat": lat,
            "lon": lon,
            **{name: frames[name].to_numpy() for name in VARIABLES},
            "resolution_km": grid.resolution_km,
        }
    )


@dataclass
class HourOutput:
    """What gridding one hour wrote: its netCDF files, its ``grid_cell`` rows (a part file until
    :meth:`GridOutput.add` appends them to the table) and its counts and busiest accumulation."""

    files: list[Path]
    cell_part: Path | None
    cells: int
    counts: dict[str, float]
    busiest: Busiest


def write_gridded_hour(
    data_dir: Path,
    bucket: str,
    grid: FixedGrid,
    gridded: GriddedHour,
    attributes: dict[str, str],
    minutes: int,
    cell_part: Path,
) -> HourOutput:
    """Write an hour's 1-minute and ``minutes``-minute netCDF files and its accumulations' ``grid_cell`` rows."""
    output = HourOutput([], None, 0, dict(gridded.counts), Busiest())
    if gridded.extent is None:
        logger.info("no lightning to grid in %s", gridded.hour)
        return output
    for frame_minutes in sorted({1, minutes}):
        frames = gridded.frames(frame_minutes)
        path = netcdf.grid_file(data_dir, bucket, grid.resolution_km, gridded.hour, frame_minutes)
        output.files.append(
            netcdf.write_hour(path, grid, gridded.extent, gridded.hour, frame_minutes, frames, attributes)
        )
        if frame_minutes == minutes:
            starts, _ = frame_bounds(gridded.hour, minutes)
            schema = ANALYSIS_SCHEMAS[GRID_CELL_TABLE]
            pq.write_table(conform(cell_rows(grid, frames, starts, minutes), schema), cell_part)
            output.cell_part, output.cells = cell_part, len(frames)
            output.busiest.offer(frames, starts)
    return output


class GridOutput:
    """What gridding a window writes, hour by hour: the hours' netCDF files, their ``grid_cell`` rows (appended in
    hour order to a file beside the table's, renamed into place by :meth:`commit`) and the busiest accumulation."""

    def __init__(self, table_path: Path):
        self.table_path = table_path
        self.partial = table_path.with_name(f".{table_path.name}.{os.getpid()}.partial")
        self.writer = pq.ParquetWriter(self.partial, ANALYSIS_SCHEMAS[GRID_CELL_TABLE])
        self.busiest = Busiest()
        self.files: list[Path] = []
        self.totals = {"hours": 0, "flashes": 0, "events_gridded": 0, "energy_gridded_j": 0.0, "cells": 0}

    def part_path(self, hour: datetime) -> Path:
        """Where one hour's ``grid_cell`` rows wait for :meth:`add`."""
        return self.table_path.with_name(f".{self.table_path.name}.{os.getpid()}.{hour:%Y%m%dT%H}.part")

    def add(self, hour: HourOutput) -> None:
        self.totals["hours"] += 1
        self.totals["flashes"] += int(hour.counts.get("flashes", 0))
        self.totals["events_gridded"] += int(hour.counts.get("events_gridded", 0))
        self.totals["energy_gridded_j"] += float(hour.counts.get("energy_gridded", 0.0))
        self.totals["cells"] += hour.cells
        self.files.extend(hour.files)
        self.busiest.take(hour.busiest)
        if hour.cell_part is not None:
            self.writer.write_table(pq.read_table(hour.cell_part))
            hour.cell_part.unlink()

    def commit(self) -> None:
        self.writer.close()
        os.replace(self.partial, self.table_path)

    def abandon(self) -> None:
        self.writer.close()
        self.partial.unlink(missing_ok=True)
        for part in self.table_path.parent.glob(f".{self.table_path.name}.{os.getpid()}.*.part"):
            part.unlink(missing_ok=True)


GRID_TABLES = ("glm_file", "glm_event", "glm_group", "glm_flash")


@dataclass(frozen=True)
class HourJob:
    """One committed hour of the window to grid, with everything a worker process needs (pickled)."""

    store: ParquetStore
    key: HourKey
    span: BucketSpan
    grid: FixedGrid
    extent: Extent | None
    box: LatLonBox | None
    minutes: int
    cell_part: Path


def grid_store_hour(job: HourJob) -> HourOutput | None:
    """Read one hour's loaded granules from the store, grid them, write the hour's files; None when none is
    loaded. Runs in a worker process: hours share nothing but the ``grid_cell`` table, appended by the parent."""
    rows = database.hour_granule_rows(job.store, job.key, job.span, GRID_TABLES)
    files = rows["glm_file"]
    if files.empty:
        return None
    gridded = grid_hour(
        rows["glm_event"], rows["glm_group"], rows["glm_flash"], job.grid, job.key.hour, extent=job.extent, box=job.box
    )
    first = files.iloc[0]
    attributes = {
        "platform_ID": str(first.get("platform") or ""),
        "orbital_slot": str(first.get("orbital_slot") or ""),
        "bucket": job.key.bucket,
    }
    return write_gridded_hour(
        job.store.data_dir, job.key.bucket, job.grid, gridded, attributes, job.minutes, job.cell_part
    )


def grid_window(
    analyses: AnalysisStore, window: AnalysisWindow, *, product: str, request: GridRequest, workers: int | None = None
):
    """Grid every loaded hour of the window into a :class:`GridOutput`; returns it, the grid (None when no granule
    is loaded) and where the projection came from.

    Hours are independent, so they are gridded on every core (``workers`` processes, default the CPUs available;
    one hour at a time where processes may not start, as in a Celery worker): a day of 2 km grids is CPU-bound
    sorting and deflate, about 6 s an hour on one core.
    """
    store = analyses.tables
    output = GridOutput(store.analysis_file(GRID_CELL_TABLE))
    grid, source, jobs = None, "", []
    try:
        # span by span: over east/west each span is one satellite's bucket, with its own fixed grid and files
        for span in window.spans():
            grid_bucket = None
            for key in database.window_hours(store, span.bucket, span.first_hour, span.end):
                if key.product != product:
                    continue
                if grid_bucket is None:
                    files = store.read(key, "glm_file").to_pandas()
                    if not (files["status"] == "loaded").any():
                        continue
                    projection, source = window_projection(store.data_dir, span.bucket, product, key.hour, files)
                    grid, grid_bucket = FixedGrid(projection, request.resolution_km), span.bucket
                    extent = _requested_extent(grid, window, request)
                jobs.append(
                    HourJob(
                        store,
                        key,
                        span,
                        FixedGrid(replace(grid.projection), grid.resolution_km),  # fresh: no pyproj objects to pickle
                        extent,
                        window.box,
                        request.accumulation_minutes,
                        output.part_path(key.hour),
                    )
                )
        for hour in _run_jobs(jobs, workers):
            if hour is not None:
                output.add(hour)
    except BaseException:
        output.abandon()
        raise
    output.commit()
    return output, grid, source


def _run_jobs(jobs: list[HourJob], workers: int | None) -> Iterator[HourOutput | None]:
    """Each job's output in order: on a pool of processes when several hours and cores allow, else here. A pool that
    breaks (a worker killed, out of memory say) is dropped and the remaining hours run here."""
    workers = min(default_workers() if workers is None else workers, len(jobs))
    if workers < 2 or not may_start_processes():
        yield from map(grid_store_hour, jobs)
        return
    futures = [shared_pool(workers).submit(grid_store_hour, job) for job in jobs]
    for i, future in enumerate(futures):
        try:
            yield future.result()
        except BrokenProcessPool:
            discard_pool()
            logger.warning("a gridding worker died: the window's remaining %d hours run in this process", len(jobs) - i)
            yield from map(grid_store_hour, jobs[i:])
            return


def _requested_extent(grid: FixedGrid, window: AnalysisWindow, request: GridRequest) -> Extent | None:
    if request.full_disk:
        return grid.full_disk()
    if window.box is not None:
        box = window.box
        return grid.box_extent(box.lat_min, box.lat_max, box.lon_min, box.lon_max)
    return None


def gridded_products(
    analyses: AnalysisStore,
    *,
    product: str,
    resolution_km: float = DEFAULT_RESOLUTION_KM,
    accumulation_minutes: int = DEFAULT_ACCUMULATION_MINUTES,
    full_disk: bool = False,
) -> Report:
    """FED, MFA, TOE, AFA and FCD of the window on the ABI fixed grid, as netCDF and ``grid_cell``, and the map of
    the busiest ``accumulation_minutes`` of flash extent density."""
    from lightning_eda.plots.fixed_grid_map import fixed_grid_fed_map

    request = GridRequest(resolution_km, accumulation_minutes, full_disk)
    with analyses.connect() as con:
        window = analyses.read_window(con)
    output, grid, source = grid_window(analyses, window, product=product, request=request)
    if grid is None:
        raise LookupError(f"no loaded granule in {window.text}: materialize the ingestor assets first")
    n, totals, busiest = request.accumulation_minutes, output.totals, output.busiest
    when = f"{busiest.start:%Y-%m-%d %H:%M}" if busiest.start else window.text
    png = fixed_grid_fed_map(
        grid, busiest.cells, minutes=n, title=f"{when} UTC, {n} min · {window.bucket}", extent=window.extent
    )
    plot = analyses.save_plot(png, "gridded_fed", f"{n}-minute flash extent density on the fixed grid")
    files = [str(path) for path in output.files]
    metadata = {
        "map": plot,
        "files": Markdown("\n".join(f"- `{path}`" for path in files) or "none"),
        "netcdf_files": len(files),
        "hours": totals["hours"],
        "frames_1min": 60 * totals["hours"],
        "accumulation_minutes": n,
        "frames_accumulated": 60 // n * totals["hours"],
        "flashes": totals["flashes"],
        "events_gridded": totals["events_gridded"],
        "total_optical_energy_j": totals["energy_gridded_j"],
        "grid_cells": totals["cells"],
        "busiest_frame_flash_extent": max(busiest.total, 0),
        "resolution_km": float(grid.resolution_km),
        "scan_angle_step_urad": grid.step * 1e6,
        "footprint_cells": grid.footprint_cells,
        "projection": grid.projection.cf_attributes(),
        "projection_source": source,
    }
    log = (
        f"{totals['flashes']} flashes of {totals['hours']} hours gridded at {grid.resolution_km:g} km into "
        f"{len(files)} netCDF files under {netcdf.GRIDS_DIR}/ and {totals['cells']} {GRID_CELL_TABLE} rows"
    )
    return Report(metadata, log)
