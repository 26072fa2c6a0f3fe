"""The gridded products of the clustering window: hour by hour onto the ABI fixed grid, into netCDF and ``grid_cell``.

The plain side of the ``gridded_products`` asset. Reads the window's loaded granules (events, groups, flashes) an hour
at a time, grids them (:mod:`lightning_eda.grids.products`), writes each hour's 1-minute frames and N-minute
accumulations as CF netCDF under ``<data_dir>/grids/`` and the accumulations' non-empty cells as the analysis table
``grid_cell``, and draws the busiest N-minute flash extent density. No Dagster here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.analysis.runs import Markdown, Report
from lightning_eda.analysis.window import AnalysisWindow
from lightning_eda.grids import netcdf
from lightning_eda.grids.fixed_grid import Extent, FixedGrid, GeosProjection
from lightning_eda.grids.products import VARIABLES, GriddedHour, check_accumulation, frame_bounds, grid_hour
from lightning_eda.ingest.hourly import HourPaths
from lightning_eda.store import database
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
class _Busiest:
    """The N-minute frame with the most flash extent, kept for the map."""

    total: int = -1
    start: datetime | None = None
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)

    def offer(self, frames: pd.DataFrame, starts: list[datetime]) -> None:
        if frames.empty:
            return
        totals = frames.groupby("frame")["flash_extent_density"].sum()
        frame = int(totals.idxmax())
        if int(totals.max()) > self.total:
            self.total, self.start = int(totals.max()), starts[frame]
            self.cells = frames[frames["frame"] == frame]


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


class GridOutput:
    """What gridding a window writes, hour by hour: each hour's netCDF files, the accumulations' ``grid_cell`` rows
    (written beside the table's file, renamed into place by :meth:`commit`) and the busiest accumulation."""

    def __init__(self, data_dir: Path, bucket: str, table_path: Path, accumulation_minutes: int):
        check_accumulation(accumulation_minutes)
        self.data_dir, self.bucket, self.minutes = Path(data_dir), bucket, accumulation_minutes
        self.table_path = table_path
        self.partial = table_path.with_name(f".{table_path.name}.{os.getpid()}.partial")
        self.schema = ANALYSIS_SCHEMAS[GRID_CELL_TABLE]
        self.writer = pq.ParquetWriter(self.partial, self.schema)
        self.busiest = _Busiest()
        self.files: list[Path] = []
        self.totals = {"hours": 0, "flashes": 0, "events_gridded": 0, "energy_gridded_j": 0.0, "cells": 0}

    def add(self, grid: FixedGrid, gridded: GriddedHour, attributes: dict[str, str]) -> None:
        self.totals["hours"] += 1
        self.totals["flashes"] += int(gridded.counts.get("flashes", 0))
        self.totals["events_gridded"] += int(gridded.counts.get("events_gridded", 0))
        self.totals["energy_gridded_j"] += float(gridded.counts.get("energy_gridded", 0.0))
        if gridded.extent is None:
            logger.info("no lightning to grid in %s", gridded.hour)
            return
        for minutes in sorted({1, self.minutes}):
            frames = gridded.frames(minutes)
            path = netcdf.grid_file(self.data_dir, self.bucket, grid.resolution_km, gridded.hour, minutes)
            self.files.append(netcdf.write_hour(path, grid, gridded.extent, gridded.hour, minutes, frames, attributes))
            if minutes == self.minutes:
                starts, _ = frame_bounds(gridded.hour, minutes)
                self.writer.write_table(conform(cell_rows(grid, frames, starts, minutes), self.schema))
                self.totals["cells"] += len(frames)
                self.busiest.offer(frames, starts)

    def commit(self) -> None:
        self.writer.close()
        os.replace(self.partial, self.table_path)

    def abandon(self) -> None:
        self.writer.close()
        self.partial.unlink(missing_ok=True)


def grid_window(analyses: AnalysisStore, window: AnalysisWindow, *, product: str, request: GridRequest):
    """Grid every loaded hour of the window into a :class:`GridOutput`; returns it, the grid (None when no granule
    is loaded) and where the projection came from."""
    data_dir = analyses.tables.data_dir
    output = GridOutput(
        data_dir, window.bucket, analyses.tables.analysis_file(GRID_CELL_TABLE), request.accumulation_minutes
    )
    grid, extent, source, grid_bucket = None, None, "", None
    try:
        # span by span: over east/west each span is one satellite's bucket, with its own fixed grid and files
        for span in window.spans():
            hours = database.loaded_granule_rows(
                analyses.tables,
                spans=[span],
                product=product,
                tables=("glm_file", "glm_event", "glm_group", "glm_flash"),
            )
            output.bucket = span.bucket
            for rows in hours:
                files = rows["glm_file"]
                if files.empty:
                    continue
                hour = (
                    pd.Timestamp(files["time_start"].min()).floor("h").to_pydatetime()
                )  # the folder follows the start
                if grid is None or grid_bucket != span.bucket:
                    projection, source = window_projection(data_dir, span.bucket, product, hour, files)
                    grid, grid_bucket = FixedGrid(projection, request.resolution_km), span.bucket
                    extent = _requested_extent(grid, window, request)
                gridded = grid_hour(
                    rows["glm_event"], rows["glm_group"], rows["glm_flash"], grid, hour, extent=extent, box=window.box
                )
                first = files.iloc[0]
                attributes = {
                    "platform_ID": str(first.get("platform") or ""),
                    "orbital_slot": str(first.get("orbital_slot") or ""),
                    "bucket": span.bucket,
                }
                output.add(grid, gridded, attributes)
    except BaseException:
        output.abandon()
        raise
    output.commit()
    return output, grid, source


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
